"""Time ``opt.step(grads)`` of several ferroptim builds side by side, interleaved.

Each build runs in its own worker process (its own interpreter, so its own ``ferroptim``);
the driver asks the workers in turn, optimizer by optimizer and round by round (the order of
the builds rotates each round), so load that comes and goes hits every build alike. Each answer
is the minimum over blocks of consecutive steps (a block that was preempted only adds to the
others); the table gives the median of those minima over the rounds.

    python tools/compare_builds.py old=../old-checkout/.venv/bin/python now=.venv/bin/python
    python tools/compare_builds.py --tiny --rounds 9 old=... now=...

``--workload`` picks the tensors: ``mlp`` (default, the six tensors of a 784-64-64-10 MLP,
55,050 float32), ``tiny`` (six one-element tensors: the call's fixed cost; also ``--tiny``),
``transformer`` (the bench's GPT-style 13,719,552 float32 in 75 tensors) or ``single`` (one
tensor of 2**24). For the large ones, use few steps per block, e.g. ``--blocks 3 --inner 2``.
Set ``FERROPTIM_NUM_THREADS`` to compare at one kernel thread. The workers use only the
optimizer classes, so any build since the first can be compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

#: the mlp workload's tensors (784-64-64-10)
MLP_SHAPES = ((64, 784), (64,), (64, 64), (64,), (10, 64), (10,))
_D = 384  # the transformer's width: embedding, 6 pre-norm blocks, final LayerNorm
_BLOCK = (
    (3 * _D, _D), (3 * _D,), (_D, _D), (_D,), (_D,), (_D,),
    (4 * _D, _D), (4 * _D,), (_D, 4 * _D), (_D,), (_D,), (_D,),
)  # fmt: skip
#: each workload's tensor shapes (``ferroptim.bench.workloads``'s, written out for old builds)
WORKLOADS: dict[str, tuple[tuple[int, ...], ...]] = {
    "mlp": MLP_SHAPES,
    "tiny": ((1,),) * 6,
    "transformer": ((8000, _D), *(_BLOCK * 6), (_D,), (_D,)),
    "single": ((2**24,),),
}
#: workloads whose optimizers are not kept between requests (220 MB and more of arrays each)
LARGE = ("transformer", "single")
#: benchmark rows: (class, options)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD": ("SGD", {"lr": 0.01}),
    "SGD-momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "SGD-nesterov": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "Adagrad": ("Adagrad", {}),
    "Adadelta": ("Adadelta", {}),
    "RMSprop": ("RMSprop", {}),
    "Adam": ("Adam", {}),
    "AdamW": ("AdamW", {}),
    "AMSGrad": ("Adam", {"amsgrad": True}),
    "Adamax": ("Adamax", {}),
    "NAdam": ("NAdam", {}),
    "RAdam": ("RAdam", {}),
    "Lion": ("Lion", {}),
}


def worker() -> None:
    """Answer ``name blocks inner workload`` lines with the minimum µs per step over the
    blocks."""
    import numpy as np

    import ferroptim.optim as optim

    rng = np.random.default_rng(0)
    built: dict[tuple[str, str], Any] = {}
    for line in sys.stdin:
        name, blocks, inner, workload = line.split()
        key = (name, workload)
        if key not in built:
            if workload in LARGE:
                built.clear()  # one large optimizer's arrays at a time
            cls, options = CONFIGS[name]
            shapes = WORKLOADS[workload]
            params = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
            grads = [(rng.standard_normal(s) * 1e-3).astype(np.float32) for s in shapes]
            opt = getattr(optim, cls)(params, **options)
            built[key] = (opt, grads)
        opt, grads = built[key]
        for _ in range(2 if workload in LARGE else 20):
            opt.step(grads)
        best = float("inf")
        for _ in range(int(blocks)):
            start = time.perf_counter_ns()
            for _ in range(int(inner)):
                opt.step(grads)
            best = min(best, (time.perf_counter_ns() - start) / int(inner))
        print(json.dumps(best / 1e3), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", metavar="LABEL=PYTHON")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="six one-element tensors")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="mlp")
    parser.add_argument("--optimizers", help="comma-separated rows (default: all)")
    args = parser.parse_args()
    builds = dict(b.split("=", 1) for b in args.builds)
    names = args.optimizers.split(",") if args.optimizers else list(CONFIGS)
    workers = {
        label: subprocess.Popen(
            [python, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for label, python in builds.items()
    }
    labels = list(builds)
    times: dict[str, dict[str, list[float]]] = {n: {b: [] for b in labels} for n in names}
    for r in range(args.rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for name in names:
            for label in order:
                w = workers[label]
                assert w.stdin is not None and w.stdout is not None
                workload = "tiny" if args.tiny else args.workload
                w.stdin.write(f"{name} {args.blocks} {args.inner} {workload}\n")
                w.stdin.flush()
                times[name][label].append(json.loads(w.stdout.readline()))
    for w in workers.values():
        assert w.stdin is not None
        w.stdin.close()
        w.wait()
    first = labels[0]
    ratios = [f"{b} / {first}" for b in labels[1:]]
    print("| optimizer | " + " | ".join([f"{b} µs" for b in labels] + ratios) + " |")
    print("|:--|" + "--:|" * (2 * len(labels) - 1))
    for name in names:
        med = {b: statistics.median(times[name][b]) for b in labels}
        cells = [f"{med[b]:.2f}" for b in labels] + [
            f"{med[b] / med[first]:.2f}" for b in labels[1:]
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
