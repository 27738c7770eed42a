"""Low-precision optimizer state kernels: native == NumPy reference bit for bit (parameters,
bfloat16 state, 8-bit codes and absmax, steps, mu_products) at every SIMD level and with 1 or 2
threads, over several steps with odd sizes and skipped tensors; the bfloat16 kernels of every
optimizer of the registry (every state list on, and the defaults); the 8-bit code is the nearest
map value by brute force; refused calls change nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim._native as native
import ferroptim.reference as reference
from conftest import KERNELS, hyper, slot_layout
from ferroptim.reference import lowp_formats as fmt

# Around a 256-element block, plus a total above the parallel threshold (pieces on the pool).
SIZES = [1, 7, 255, 256, 257, 1000, native.GRAIN_ELEMENTS + 300, 3 * native.GRAIN_ELEMENTS + 17]
ADAM = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, maximize=False,
            decoupled_weight_decay=True, grad_scale=0.8, clip_value=2.5)  # fmt: skip
ADAM_LERP_END = dict(ADAM, amsgrad=False, beta1=0.3, decoupled_weight_decay=False)
LION = dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.1, maximize=True)

# kernel name -> (optimizer, format, extra hyperparameters, number of states)
CASES = {
    "adam_bf16_sr": ("adam", "bf16", dict(ADAM, amsgrad=False, stochastic_rounding=True), 2),
    "adam_bf16_rne": ("adam", "bf16", dict(ADAM, amsgrad=False, stochastic_rounding=False), 2),
    # beta1 < 0.5: the lerp from the gradient's end; L2 decay (the explicit AVX-512 Adam loop's
    # other compile-time forms).
    "adam_bf16_sr_lerp_end": ("adam", "bf16", dict(ADAM_LERP_END, stochastic_rounding=True), 2),
    "amsgrad_bf16_sr": ("adam", "bf16", dict(ADAM, amsgrad=True, stochastic_rounding=True), 3),
    "lion_bf16_sr": ("lion", "bf16", dict(LION, stochastic_rounding=True), 1),
    "adam_8bit": ("adam", "8bit", dict(ADAM, amsgrad=False), 2),
    "amsgrad_8bit": ("adam", "8bit", dict(ADAM, amsgrad=True, decoupled_weight_decay=False), 3),
    "lion_8bit": ("lion", "8bit", dict(LION), 1),
    # No gradient option: the 8-bit loop uses the gradient in place (no prepared copy).
    "adam_8bit_plain": (
        "adam",
        "8bit",
        dict(ADAM, amsgrad=False, weight_decay=0.0, grad_scale=1.0, clip_value=None),
        2,
    ),
}


def make_problem(case: str, sizes: list[int], seed: int = 0) -> dict:
    _, form, _, n_state = CASES[case]
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    if form == "bf16":
        states = [[np.zeros(n, np.uint16) for n in sizes] for _ in range(n_state)]
    else:
        states = [
            [(np.zeros(n, np.uint8), np.zeros(-(-n // 256), np.float32)) for n in sizes]
            for _ in range(n_state)
        ]
    return dict(params=params, states=states, steps=np.zeros(len(sizes), np.int64))


def call(backend, case: str, problem: dict, grads: list, stream_offset: int = 5) -> None:
    kind, form, hyper, n_state = CASES[case]
    p, s, steps = problem["params"], problem["states"], problem["steps"]
    hyper = dict(hyper)
    if form == "bf16":
        hyper.update(seed=1234, stream_offset=stream_offset)
        if kind == "adam":
            third = s[2] if n_state == 3 else None
            backend.adam_step_bf16(p, grads, s[0], s[1], third, steps, **hyper)
        else:
            backend.lion_step_bf16(p, grads, s[0], steps, **hyper)
        return
    lists = [([c for c, _ in lst], [a for _, a in lst]) for lst in s]
    if kind == "adam":
        third = lists[2] if n_state == 3 else (None, None)
        backend.adam_step_8bit(p, grads, *lists[0], *lists[1], *third, steps, **hyper)
    else:
        backend.lion_step_8bit(p, grads, *lists[0], steps, **hyper)


def flat(problem: dict) -> list[np.ndarray]:
    out = [*problem["params"], problem["steps"]]
    for lst in problem["states"]:
        for item in lst:
            out.extend(item if isinstance(item, tuple) else [item])
    return out


def assert_same_arrays(a: list[np.ndarray], b: list[np.ndarray], what: str = "") -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), f"{what}first difference at {np.flatnonzero(x != y)[:5]}"


def assert_same_bits(a: dict, b: dict) -> None:
    assert_same_arrays(flat(a), flat(b))


def step_both_backends(nat: dict, step, arrays, sizes: list[int], seed: int, what: str) -> None:
    """Step ``nat`` with the native kernels and a copy of it with the reference, ``step(backend,
    problem, grads)``, 3 times on the same gradients (drawn from ``seed``); at the second step
    the first tensor has none (it keeps its state and step). ``arrays(problem)``: every array,
    the same bits in both after each step."""
    ref = copy.deepcopy(nat)
    rng = np.random.default_rng(seed)
    for n_step in range(3):
        grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        if n_step == 1:
            grads[0] = None
        step(native, nat, grads)
        step(reference, ref, grads)
        assert_same_arrays(arrays(nat), arrays(ref), f"{what} step {n_step}: ")


@pytest.mark.parametrize("case", CASES)
def test_native_equals_reference_every_level(case, simd_level, num_threads):
    def step(backend, problem, grads):
        call(backend, case, problem, grads)

    step_both_backends(make_problem(case, SIZES), step, flat, SIZES, 99, case)


# ----- bfloat16 state on every optimizer of the registry -----------------------------------------
BF16_SIZES = [1, 7, 255, 1000, native.GRAIN_ELEMENTS + 300]


def bf16_problem(kernel: str, hp: dict, seed: int = 0) -> dict:
    """Float32 parameters, and per positional slot: bfloat16 state (random small values, |x|
    for non-negative states), None for a list the options leave off, or float32 scalars."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in BF16_SIZES]
    slots: list = []
    for _, kind in slot_layout(kernel, hp):
        if kind == "none":
            slots.append(None)
        elif kind == "mu":
            slots.append(np.ones(len(BF16_SIZES), np.float32))
        else:
            values = [np.abs(rng.standard_normal(n)).astype(np.float32) * 0.01 for n in BF16_SIZES]
            slots.append([fmt.bf16_narrow(v, None) for v in values])
    return dict(params=params, slots=slots, steps=np.zeros(len(BF16_SIZES), np.int64))


def bf16_call(backend, kernel: str, hp: dict, problem: dict, grads: list, sr: bool) -> None:
    step = getattr(backend, f"{kernel}_step_bf16")
    step(problem["params"], grads, *problem["slots"], problem["steps"], **hp,
         stochastic_rounding=sr, seed=99, stream_offset=3)  # fmt: skip


def bf16_arrays(problem: dict) -> list[np.ndarray]:
    out = [*problem["params"], problem["steps"]]
    for slot in problem["slots"]:
        out.extend([] if slot is None else slot if isinstance(slot, list) else [slot])
    return out


def bf16_run_both(kernel: str, hp: dict, sr: bool = True) -> None:
    def step(backend, problem, grads):
        bf16_call(backend, kernel, hp, problem, grads, sr)

    step_both_backends(bf16_problem(kernel, hp), step, bf16_arrays, BF16_SIZES, 7, kernel)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_optimizer_bf16_native_equals_reference_every_level(kernel, simd_level, num_threads):
    bf16_run_both(kernel, hyper(kernel, full=True))


@pytest.mark.parametrize("sr", [True, False], ids=["stochastic", "nearest"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_optimizer_bf16_defaults(kernel, sr):
    bf16_run_both(kernel, hyper(kernel), sr=sr)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_optimizer_bf16_refuses_float64_and_float_state(kernel):
    hp = hyper(kernel, full=True)
    for backend in (native, reference):
        problem = bf16_problem(kernel, hp)
        before = copy.deepcopy(problem)
        grads = [np.ones(n, np.float32) for n in BF16_SIZES]
        problem["params"][1] = problem["params"][1].astype(np.float64)
        with pytest.raises(TypeError, match=r"params\[1\].*float32"):
            bf16_call(backend, kernel, hp, problem, grads, True)
        problem["params"][1] = before["params"][1].copy()
        first = next(i for i, s in enumerate(problem["slots"]) if isinstance(s, list))
        problem["slots"][first][2] = problem["slots"][first][2].astype(np.float32)
        with pytest.raises(TypeError, match="uint16"):
            bf16_call(backend, kernel, hp, problem, grads, True)
        problem["slots"][first][2] = before["slots"][first][2].copy()
        for x, y in zip(bf16_arrays(problem), bf16_arrays(before), strict=True):
            assert x.tobytes() == y.tobytes()
        with pytest.raises(TypeError, match="seed"):
            hp_no_seed = dict(hp, stochastic_rounding=True, stream_offset=0)
            getattr(backend, f"{kernel}_step_bf16")(
                problem["params"], grads, *problem["slots"], problem["steps"], **hp_no_seed
            )


def test_stream_offset_and_seed_change_the_bits():
    base = make_problem("adam_bf16_sr", [4096])
    other = copy.deepcopy(base)
    grads = [np.full(4096, 0.3, np.float32)]
    call(native, "adam_bf16_sr", base, grads, stream_offset=0)
    call(native, "adam_bf16_sr", other, grads, stream_offset=1)
    # Same float32 update, different rounding draws: some state elements differ.
    assert base["params"][0].tobytes() == other["params"][0].tobytes()
    assert (base["states"][1][0] != other["states"][1][0]).any()


def test_reference_hash_matches_published_splitmix():
    assert fmt.splitmix64(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("signed", [True, False])
def test_quantize_is_nearest_by_brute_force(signed):
    rng = np.random.default_rng(1)
    qmap = fmt.dynamic_map(signed).astype(np.float64)
    thresholds = fmt._thresholds(signed)
    x = np.concatenate(
        [
            rng.standard_normal(20000) * 10.0 ** rng.integers(-9, 1, 20000),
            thresholds,
            np.nextafter(thresholds, np.float32(-np.inf)),
            [0.0, -0.0, 1e-30, -1e-30],
        ]
    ).astype(np.float32)
    x = np.clip(x, -1, 1) if signed else np.clip(np.abs(x), 0, 1)
    # Blocks of 255 values led by a 1.0: every block's absmax is 1, so x is quantized unscaled.
    x = np.concatenate([x, np.zeros((-x.size) % 255, np.float32)]).reshape(-1, 255)
    blocks = np.concatenate([np.ones((x.shape[0], 1), np.float32), x], axis=1).reshape(-1)
    codes, absmax = fmt.quantize(blocks, signed)
    assert (absmax == 1).all()
    dist = np.abs(qmap[None, :] - blocks[:, None].astype(np.float64))
    np.testing.assert_array_equal(np.abs(qmap[codes] - blocks), dist.min(axis=1))
    # The native kernel finds the same codes: a Lion step with beta2 = 0 stores m = g.
    native_codes = np.zeros(blocks.size, np.uint8)
    native_absmax = np.zeros(blocks.size // 256, np.float32)
    param = np.zeros(blocks.size, np.float32)
    steps = np.zeros(1, np.int64)
    if signed:
        native.lion_step_8bit([param], [blocks], [native_codes], [native_absmax], steps, lr=0.0,
                              beta1=0.0, beta2=0.0, weight_decay=0.0, maximize=False)  # fmt: skip
        np.testing.assert_array_equal(native_codes, codes)
        np.testing.assert_array_equal(native_absmax, absmax)


def _native_signed_codes(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and absmax of ``blocks`` on the signed map from the native kernel: a Lion step with
    beta1 = beta2 = 0 stores m = g."""
    codes = np.zeros(blocks.size, np.uint8)
    absmax = np.zeros(-(-blocks.size // 256), np.float32)
    param = np.zeros(blocks.size, np.float32)
    native.lion_step_8bit([param], [blocks], [codes], [absmax], np.zeros(1, np.int64), lr=0.0,
                          beta1=0.0, beta2=0.0, weight_decay=0.0, maximize=False)  # fmt: skip
    return codes, absmax


def test_normalized_value_is_times_the_reciprocal(simd_level):
    """Values are normalized as ``x * (1 / absmax)`` for a normal absmax (bitsandbytes' kernels),
    which picks another code than ``x / absmax`` next to thresholds; natively too at every level;
    a subnormal absmax divides."""
    rng = np.random.default_rng(5)
    t = fmt._thresholds(True)[:255]
    rows = []
    for a in rng.uniform(0.5, 4.0, 400).astype(np.float32):
        x = (t * a).astype(np.float32)
        near = np.concatenate(
            [x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))]
        )
        near = np.clip(near, -a, a)
        with np.errstate(all="ignore"):
            by_div = np.searchsorted(t, near / a, side="right")
            by_mul = np.searchsorted(t, near * (np.float32(1) / a), side="right")
        differ = near[by_div != by_mul][:255]
        if differ.size:
            rows.append(np.concatenate([[a], differ, np.zeros(255 - differ.size, np.float32)]))
    assert len(rows) > 100
    blocks = np.concatenate(rows).astype(np.float32)
    codes, absmax = fmt.quantize(blocks, True)
    b = blocks.reshape(-1, 256)
    expected = np.searchsorted(t, b * (np.float32(1) / absmax[:, None]), side="right")
    np.testing.assert_array_equal(codes.reshape(-1, 256), expected)
    with np.errstate(all="ignore"):
        divided = np.searchsorted(t, b / absmax[:, None], side="right")
    assert (divided != expected).sum() >= len(rows)
    native_codes, native_absmax = _native_signed_codes(blocks)
    np.testing.assert_array_equal(native_codes, codes)
    np.testing.assert_array_equal(native_absmax, absmax)
    tiny = (rng.uniform(-1, 1, 256) * 1e-39).astype(np.float32)
    codes, absmax = fmt.quantize(tiny, True)
    assert 0 < absmax[0] < np.finfo(np.float32).tiny
    np.testing.assert_array_equal(codes, np.searchsorted(t, tiny / absmax[0], side="right"))
    native_codes, native_absmax = _native_signed_codes(tiny)
    np.testing.assert_array_equal(native_codes, codes)
    np.testing.assert_array_equal(native_absmax, absmax)


@pytest.mark.parametrize("case", ["adam_8bit", "adam_8bit_plain", "lion_8bit"])
def test_8bit_blocks_with_zero_tiny_and_nonfinite_state(case, simd_level, num_threads):
    """Blocks whose absmax is 0, subnormal, infinite or NaN (quantized by division or left to the
    scalar code) among normal blocks, whose codes are written while the next block is updated:
    native == reference at every level and thread count."""
    sizes = [256 * 9 + 100]
    nat = make_problem(case, sizes)
    ref = copy.deepcopy(nat)
    rng = np.random.default_rng(3)
    for _ in range(3):
        g = rng.standard_normal(sizes[0]).astype(np.float32)
        g[256:512] = 0.0
        g[768:1024] *= np.float32(1e-41)
        g[1300] = np.inf
        g[1800] = np.nan
        call(native, case, nat, [g])
        call(reference, case, ref, [g])
        assert_same_arrays(flat(nat), flat(ref))


def test_absmax_zero_block_and_nan():
    codes, absmax = fmt.quantize(np.zeros(300, np.float32), True)
    assert (absmax == 0).all() and (codes == 127).all()
    assert (fmt.dequantize(codes, absmax, True) == 0).all()
    x = np.ones(10, np.float32)
    x[3] = np.nan
    codes, absmax = fmt.quantize(x, False)
    assert np.isnan(absmax[0]) and np.isnan(fmt.dequantize(codes, absmax, False)).all()


def test_native_map_equals_reference_map():
    for signed in (True, False):
        np.testing.assert_array_equal(
            np.array(native.dynamic_map(signed), np.float32), fmt.dynamic_map(signed)
        )


@pytest.mark.parametrize("backend", [native, reference], ids=["native", "reference"])
def test_refused_calls_change_nothing(backend):
    problem = make_problem("adam_8bit", [300, 10])
    before = copy.deepcopy(problem)
    grads = [np.ones(300, np.float32), np.ones(10, np.float32)]
    problem["states"][1][1] = (problem["states"][1][1][0], np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="absmax"):
        call(backend, "adam_8bit", problem, grads)
    problem["states"][1][1] = before["states"][1][1]
    problem["states"][0][0] = (
        problem["states"][0][0][0].astype(np.int8),
        problem["states"][0][0][1],
    )
    with pytest.raises(TypeError, match="uint8"):
        call(backend, "adam_8bit", problem, grads)
    problem["states"][0][0] = before["states"][0][0]
    assert_same_bits(problem, before)
    bf = make_problem("adam_bf16_sr", [5])
    bf_before = copy.deepcopy(bf)
    bf["states"][0][0] = bf["states"][0][0].astype(np.float32)
    with pytest.raises(TypeError, match="uint16"):
        call(backend, "adam_bf16_sr", bf, [np.ones(5, np.float32)])
    with pytest.raises(TypeError, match="float32"):
        call(backend, "adam_bf16_sr", bf_before, [np.ones(5, np.float64)])
    with pytest.raises(ValueError, match="lr"):
        backend.lion_step_8bit([], [], [], [], np.zeros(0, np.int64), lr=-1.0, beta1=0.9,
                               beta2=0.99, weight_decay=0.0, maximize=False)  # fmt: skip
    assert_same_bits(bf_before, make_problem("adam_bf16_sr", [5]))
