//! Low-precision state: every SIMD level and thread count gives the same bits, and the fused pass
//! equals "widen, float32 step, narrow" done separately (which is what the NumPy reference does).

mod common;

use common::{each_setting, first_disagreement, Rng};
use ferroptim_core::lowp::{self, bf16, Bf16TensorRef, Quant8State, Quant8TensorRef, QuantMap};
use ferroptim_core::lowp::{Quantizer, Rounding, BLOCK};
use ferroptim_core::optim::HyperValue;
use ferroptim_core::*;

const SIZES: [usize; 8] = [0, 1, 7, 255, 256, 257, 1000, 100_003];
const STEPS: u64 = 4;

fn adam_cfg(amsgrad: bool) -> AdamConfig {
    AdamConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        decoupled_weight_decay: true,
        amsgrad,
        grad_clip: GradClip {
            scale: 0.75,
            clip_value: Some(0.9),
        },
        ..AdamConfig::default()
    }
}

fn lion_cfg() -> LionConfig {
    LionConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        ..LionConfig::default()
    }
}

fn grads(rng: &mut Rng) -> Vec<Vec<f32>> {
    SIZES.iter().map(|&n| rng.vec(n)).collect()
}

/// One `(parameter, gradient, state)` per entry of `SIZES`, as one step sees them.
type Tensors<'a, S> = Vec<(&'a mut Vec<f32>, &'a Vec<f32>, &'a mut S)>;

/// `STEPS` steps on one tensor per entry of `SIZES` (parameters and gradients drawn from
/// `Rng::new(seed)`, `states` one per tensor): `step(t, tensors)` runs step `t`. Returns the
/// parameters' bits.
fn run_steps<S>(
    seed: u64,
    states: &mut [S],
    mut step: impl FnMut(u64, Tensors<'_, S>),
) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut params: Vec<Vec<f32>> = grads(&mut rng);
    for t in 1..=STEPS {
        let gs = grads(&mut rng);
        let tensors = params.iter_mut().zip(&gs).zip(states.iter_mut());
        step(t, tensors.map(|((p, g), s)| (p, g, s)).collect());
    }
    params.iter().flatten().map(|x| x.to_bits()).collect()
}

/// bfloat16-state optimizer run: params and states' bits after `STEPS` steps.
fn run_bf16(
    n_state: usize,
    rounding: Rounding,
    step: &dyn Fn(&mut [Bf16TensorRef<'_>]),
) -> Vec<u32> {
    let mut states: Vec<Vec<Vec<u16>>> = SIZES
        .iter()
        .map(|&n| vec![vec![0u16; n]; n_state])
        .collect();
    let mut bits = run_steps(3, &mut states, |t, tensors| {
        let mut tensors: Vec<Bf16TensorRef<'_>> = tensors
            .into_iter()
            .enumerate()
            .map(|(i, (p, g, s))| {
                let r = match rounding {
                    Rounding::Stochastic { seed, .. } => Rounding::Stochastic {
                        seed,
                        stream: i as u64,
                    },
                    r => r,
                };
                s.iter_mut()
                    .fold(Bf16TensorRef::new(p, g, t, r), |acc, s| acc.with_state(s))
            })
            .collect();
        step(&mut tensors);
    });
    bits.extend(states.iter().flatten().flatten().map(|&b| u32::from(b)));
    bits
}

/// 8-bit-state optimizer run: params', codes' and absmax's bits after `STEPS` steps.
fn run_8bit(maps: &[QuantMap], step: &dyn Fn(&mut [Quant8TensorRef<'_>])) -> Vec<u32> {
    let mut states: Vec<Vec<(Vec<u8>, Vec<f32>)>> = SIZES
        .iter()
        .map(|&n| vec![(vec![0u8; n], vec![0f32; n.div_ceil(BLOCK)]); maps.len()])
        .collect();
    let mut bits = run_steps(5, &mut states, |t, tensors| {
        let mut tensors: Vec<Quant8TensorRef<'_>> = tensors
            .into_iter()
            .map(|(p, g, s)| {
                s.iter_mut().zip(maps).fold(
                    Quant8TensorRef::new(p, g, t),
                    |acc, ((codes, absmax), &map)| {
                        acc.with_state(Quant8State { codes, absmax, map })
                    },
                )
            })
            .collect();
        step(&mut tensors);
    });
    for (codes, absmax) in states.iter().flatten() {
        bits.extend(codes.iter().map(|&c| u32::from(c)));
        bits.extend(absmax.iter().map(|x| x.to_bits()));
    }
    bits
}

fn assert_same_everywhere(name: &str, f: impl Fn() -> Vec<u32>) {
    let runs = each_setting(|_, _| f());
    if let Some(bad) = first_disagreement(&runs) {
        panic!(
            "{name}: {:?} with {} threads differs",
            bad.level, bad.threads
        );
    }
}

const SR: Rounding = Rounding::Stochastic {
    seed: 42,
    stream: 0,
};

#[test]
fn bf16_same_bits_at_every_level_and_thread_count() {
    for (rounding, amsgrad) in [(SR, false), (SR, true), (Rounding::NearestEven, false)] {
        let cfg = adam_cfg(amsgrad);
        assert_same_everywhere("adam bf16", || {
            run_bf16(cfg.state_count(), rounding, &|t| {
                lowp::adam_step_bf16(t, &cfg).unwrap()
            })
        });
    }
    let cfg = lion_cfg();
    assert_same_everywhere("lion bf16", || {
        run_bf16(1, SR, &|t| lowp::lion_step_bf16(t, &cfg).unwrap())
    });
}

#[test]
fn quant8_same_bits_at_every_level_and_thread_count() {
    use QuantMap::{Signed, Unsigned};
    for amsgrad in [false, true] {
        let cfg = adam_cfg(amsgrad);
        let maps: &[QuantMap] = if amsgrad {
            &[Signed, Unsigned, Unsigned]
        } else {
            &[Signed, Unsigned]
        };
        assert_same_everywhere("adam 8bit", || {
            run_8bit(maps, &|t| lowp::adam_step_8bit(t, &cfg).unwrap())
        });
    }
    let cfg = lion_cfg();
    assert_same_everywhere("lion 8bit", || {
        run_8bit(&[Signed], &|t| lowp::lion_step_8bit(t, &cfg).unwrap())
    });
}

/// A problem of `n` elements for the fused-equals-separate tests, drawn from `Rng::new(seed)`:
/// parameters, gradients and starting moments `m = 0.1 x`, `v = 0.01 x^2` (two more draws of `x`).
fn adam_problem(seed: u64, n: usize) -> [Vec<f32>; 4] {
    let mut rng = Rng::new(seed);
    let p: Vec<f32> = rng.vec(n);
    let g: Vec<f32> = rng.vec(n);
    let m = rng.vec::<f32>(n).iter().map(|x| x * 0.1).collect();
    let v = rng.vec::<f32>(n).iter().map(|x| x * x * 0.01).collect();
    [p, g, m, v]
}

/// The float32 Adam step a fused low-precision step is compared with.
fn float32_adam(
    p: &mut [f32],
    g: &[f32],
    step: u64,
    m: &mut [f32],
    v: &mut [f32],
    cfg: &AdamConfig,
) {
    let t = TensorRef::new(p, g, step).with_state(m).with_state(v);
    adam_step(&mut [t], cfg).unwrap();
}

#[test]
fn fused_bf16_equals_widen_step_narrow() {
    let n = 3 * BLOCK + 17;
    let cfg = adam_cfg(false);
    let [p0, g, m_init, v_init] = adam_problem(9, n);
    let m0: Vec<u16> = m_init.iter().map(|&x| bf16::narrow_nearest(x)).collect();
    let v0: Vec<u16> = v_init.iter().map(|&x| bf16::narrow_nearest(x)).collect();
    let (step, seed, stream) = (7, 11, 3);
    // Fused.
    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
    let rounding = Rounding::Stochastic { seed, stream };
    let t = Bf16TensorRef::new(&mut p, &g, step, rounding)
        .with_state(&mut m)
        .with_state(&mut v);
    lowp::adam_step_bf16(&mut [t], &cfg).unwrap();
    // Separately.
    let (mut pe, mut mw, mut vw) = (p0.clone(), vec![0f32; n], vec![0f32; n]);
    bf16::widen_slice(&m0, &mut mw);
    bf16::widen_slice(&v0, &mut vw);
    float32_adam(&mut pe, &g, step, &mut mw, &mut vw, &cfg);
    let (mut me, mut ve) = (vec![0u16; n], vec![0u16; n]);
    bf16::narrow_slice(&mw, &mut me, Some((seed, step, stream, 0)), 0);
    bf16::narrow_slice(&vw, &mut ve, Some((seed, step, stream, 1)), 0);
    assert_eq!(p, pe);
    assert_eq!(m, me);
    assert_eq!(v, ve);
}

/// One tensor of an Adam step with 8-bit state: the first moment's `(codes, absmax)` on the signed
/// map, the second's on the unsigned one.
fn adam_8bit_tensor<'a>(
    p: &'a mut [f32],
    g: &'a [f32],
    step: u64,
    (m_codes, m_absmax): (&'a mut [u8], &'a mut [f32]),
    (v_codes, v_absmax): (&'a mut [u8], &'a mut [f32]),
) -> Quant8TensorRef<'a> {
    let state = |codes, absmax, map| Quant8State { codes, absmax, map };
    Quant8TensorRef::new(p, g, step)
        .with_state(state(m_codes, m_absmax, QuantMap::Signed))
        .with_state(state(v_codes, v_absmax, QuantMap::Unsigned))
}

#[test]
fn fused_8bit_equals_dequantize_step_requantize() {
    let n = 2 * BLOCK + 100;
    let cfg = adam_cfg(false);
    let [p0, g, m_init, v_init] = adam_problem(10, n);
    let (qs, qu) = (
        Quantizer::get(QuantMap::Signed),
        Quantizer::get(QuantMap::Unsigned),
    );
    let (mut mc, mut ma) = (vec![0u8; n], vec![0f32; n.div_ceil(BLOCK)]);
    let (mut vc, mut va) = (vec![0u8; n], vec![0f32; n.div_ceil(BLOCK)]);
    for b in 0..n.div_ceil(BLOCK) {
        let r = b * BLOCK..((b + 1) * BLOCK).min(n);
        ma[b] = qs.quantize_block(&m_init[r.clone()], &mut mc[r.clone()]);
        va[b] = qu.quantize_block(&v_init[r.clone()], &mut vc[r]);
    }
    let (mc0, ma0, vc0, va0) = (mc.clone(), ma.clone(), vc.clone(), va.clone());
    let mut p = p0.clone();
    let t = adam_8bit_tensor(&mut p, &g, 3, (&mut mc, &mut ma), (&mut vc, &mut va));
    lowp::adam_step_8bit(&mut [t], &cfg).unwrap();
    let (mut pe, mut mw, mut vw) = (p0, vec![0f32; n], vec![0f32; n]);
    for b in 0..n.div_ceil(BLOCK) {
        let r = b * BLOCK..((b + 1) * BLOCK).min(n);
        qs.dequantize_block(&mc0[r.clone()], ma0[b], &mut mw[r.clone()]);
        qu.dequantize_block(&vc0[r.clone()], va0[b], &mut vw[r]);
    }
    float32_adam(&mut pe, &g, 3, &mut mw, &mut vw, &cfg);
    assert_eq!(p, pe);
    for b in 0..n.div_ceil(BLOCK) {
        let r = b * BLOCK..((b + 1) * BLOCK).min(n);
        let mut codes = vec![0u8; r.len()];
        assert_eq!(ma[b], qs.quantize_block(&mw[r.clone()], &mut codes));
        assert_eq!(mc[r.clone()], codes[..]);
        assert_eq!(va[b], qu.quantize_block(&vw[r.clone()], &mut codes));
        assert_eq!(vc[r], codes[..]);
    }
}

#[test]
fn refused_calls_change_nothing() {
    let mut p = vec![1.0f32; 300];
    let g = vec![0.5f32; 300];
    let (mut mc, mut ma) = (vec![7u8; 300], vec![1f32; 1]); // absmax needs 2 blocks
    let (mut vc, mut va) = (vec![7u8; 300], vec![1f32; 2]);
    let t = adam_8bit_tensor(&mut p, &g, 1, (&mut mc, &mut ma), (&mut vc, &mut va));
    let err = lowp::adam_step_8bit(&mut [t], &AdamConfig::default()).unwrap_err();
    assert!(err.to_string().contains("absmax"), "{err}");
    assert!(
        p.iter().all(|&x| x == 1.0) && mc.iter().all(|&c| c == 7) && vc.iter().all(|&c| c == 7)
    );
    let mut m = vec![0u16; 300];
    let t = Bf16TensorRef::new(&mut p, &g, 1, SR).with_state(&mut m);
    let err = lowp::adam_step_bf16(&mut [t], &AdamConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::StateCount {
                got: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    let t = Bf16TensorRef::new(&mut p, &g, 0, SR).with_state(&mut m);
    assert!(matches!(
        lowp::lion_step_bf16(&mut [t], &LionConfig::default()),
        Err(Error::ZeroStep { .. })
    ));
    assert!(p.iter().all(|&x| x == 1.0) && m.iter().all(|&b| b == 0));
}

/// bfloat16 state on optimizer `cfg` equals widen, the float32 step, narrow (with the random bits
/// of [`bf16::state_bits`]), at every SIMD level and thread count, over several steps.
fn check_every_optimizer_bf16<C: Optimizer>(name: &str) {
    // Every state list on: momentum, amsgrad, centered; some weight decay.
    let mut cfg = C::default();
    cfg.set("momentum", HyperValue::Real(0.9));
    cfg.set("amsgrad", HyperValue::Flag(true));
    cfg.set("centered", HyperValue::Flag(true));
    cfg.set("weight_decay", HyperValue::Real(0.01));
    assert_eq!(cfg.state_count(), C::STATES.len(), "{name}");
    let n_state = cfg.state_count();
    let n_tensors = SIZES.len();
    let (seed, stream0) = (17, 4);
    let run = |fused: bool| -> Vec<u32> {
        let mut rng = Rng::new(21);
        let mut params: Vec<Vec<f32>> = grads(&mut rng);
        let mut states: Vec<Vec<Vec<u16>>> = SIZES
            .iter()
            .map(|&n| vec![vec![0u16; n]; n_state])
            .collect();
        let mut scalars = vec![1.0f32; if C::SCALARS.is_some() { n_tensors } else { 0 }];
        for t in 1..=STEPS {
            let gs = grads(&mut rng);
            if fused {
                let mut tensors: Vec<Bf16TensorRef<'_>> = params
                    .iter_mut()
                    .zip(&gs)
                    .zip(states.iter_mut())
                    .enumerate()
                    .map(|(i, ((p, g), s))| {
                        let r = Rounding::Stochastic {
                            seed,
                            stream: stream0 + i as u64,
                        };
                        s.iter_mut()
                            .fold(Bf16TensorRef::new(p, g, t, r), |acc, s| acc.with_state(s))
                    })
                    .collect();
                lowp::step_bf16(&cfg, &mut tensors, &mut scalars).unwrap();
                continue;
            }
            let mut wide: Vec<Vec<Vec<f32>>> = states
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|b| {
                            let mut w = vec![0f32; b.len()];
                            bf16::widen_slice(b, &mut w);
                            w
                        })
                        .collect()
                })
                .collect();
            let mut tensors: Vec<TensorRef<'_, f32>> = params
                .iter_mut()
                .zip(&gs)
                .zip(wide.iter_mut())
                .map(|((p, g), s)| {
                    s.iter_mut()
                        .fold(TensorRef::new(p, g, t), |acc, s| acc.with_state(s))
                })
                .collect();
            cfg.step(&mut tensors, &mut scalars).unwrap();
            for (i, (w, s)) in wide.iter().zip(states.iter_mut()).enumerate() {
                for (k, (w, s)) in w.iter().zip(s.iter_mut()).enumerate() {
                    let stream = stream0 + i as u64;
                    bf16::narrow_slice(w, s, Some((seed, t, stream, k)), 0);
                }
            }
        }
        let mut bits: Vec<u32> = params.iter().flatten().map(|x| x.to_bits()).collect();
        bits.extend(states.iter().flatten().flatten().map(|&b| u32::from(b)));
        bits.extend(scalars.iter().map(|x| x.to_bits()));
        bits
    };
    let separate = run(false);
    let runs = each_setting(|_, _| run(true));
    for r in &runs {
        assert!(
            r.outcome == separate,
            "{name}: {:?} with {} threads differs from widen-step-narrow",
            r.level,
            r.threads
        );
    }
}

macro_rules! every_optimizer_bf16 {
    ($($kernel:ident: $cfg:ident,)*) => {
        #[test]
        fn every_optimizer_bf16_equals_widen_step_narrow() {
            $( check_every_optimizer_bf16::<$cfg>(stringify!($kernel)); )*
        }
    };
}

for_each_optimizer!(every_optimizer_bf16);
