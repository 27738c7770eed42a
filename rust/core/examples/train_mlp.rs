//! Train a small neural network with ferroptim-core alone (no Python): a 2-32-1 tanh MLP that
//! separates two concentric rings, with full-batch Adam. Run with
//! `cargo run --release -p ferroptim-core --example train_mlp`.
//!
//! Exits with an error if the model does not reach 97% training accuracy.

use ferroptim_core::{adam_step, AdamConfig, TensorRef};

const HIDDEN: usize = 32;
const SAMPLES: usize = 512;

/// Deterministic uniform numbers in [0, 1) (xorshift64*).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// Points on two noisy rings (radius 1: label 0, radius 2: label 1).
fn rings(rng: &mut Rng) -> (Vec<[f32; 2]>, Vec<f32>) {
    (0..SAMPLES)
        .map(|i| {
            let label = (i % 2) as f32;
            let radius = 1.0 + label + 0.15 * rng.normal();
            let angle = 2.0 * std::f32::consts::PI * rng.uniform();
            ([radius * angle.cos(), radius * angle.sin()], label)
        })
        .unzip()
}

/// Parameters (and gradients) in torch's layout: w1 (HIDDEN, 2), b1, w2 (1, HIDDEN), b2.
struct Mlp {
    tensors: [Vec<f32>; 4],
}

impl Mlp {
    fn new(rng: &mut Rng) -> Self {
        let init = |n: usize, fan_in: usize, rng: &mut Rng| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            (0..n)
                .map(|_| (2.0 * rng.uniform() - 1.0) * bound)
                .collect()
        };
        Mlp {
            tensors: [
                init(HIDDEN * 2, 2, rng),
                init(HIDDEN, 2, rng),
                init(HIDDEN, HIDDEN, rng),
                init(1, HIDDEN, rng),
            ],
        }
    }

    /// Mean binary cross-entropy, accuracy, and the gradients of the loss.
    fn loss_and_grads(&self, x: &[[f32; 2]], y: &[f32]) -> (f32, f32, [Vec<f32>; 4]) {
        let [w1, b1, w2, b2] = &self.tensors;
        let mut grads = self.tensors.clone().map(|t| vec![0.0; t.len()]);
        let (mut loss, mut correct) = (0.0, 0);
        let scale = 1.0 / x.len() as f32;
        for (xi, &yi) in x.iter().zip(y) {
            let h: Vec<f32> = (0..HIDDEN)
                .map(|j| (w1[2 * j] * xi[0] + w1[2 * j + 1] * xi[1] + b1[j]).tanh())
                .collect();
            let z = b2[0] + h.iter().zip(w2).map(|(a, b)| a * b).sum::<f32>();
            let prob = 1.0 / (1.0 + (-z).exp());
            loss += (z.max(0.0) - z * yi + (-z.abs()).exp().ln_1p()) * scale;
            correct += usize::from((prob > 0.5) == (yi > 0.5));
            let dz = (prob - yi) * scale;
            grads[3][0] += dz;
            for j in 0..HIDDEN {
                grads[2][j] += dz * h[j];
                let dpre = dz * w2[j] * (1.0 - h[j] * h[j]);
                grads[0][2 * j] += dpre * xi[0];
                grads[0][2 * j + 1] += dpre * xi[1];
                grads[1][j] += dpre;
            }
        }
        (loss, correct as f32 / x.len() as f32, grads)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (x, y) = rings(&mut rng);
    let mut model = Mlp::new(&mut rng);
    let mut state: Vec<[Vec<f32>; 2]> = model
        .tensors
        .iter()
        .map(|t| [vec![0.0; t.len()], vec![0.0; t.len()]])
        .collect();
    let cfg = AdamConfig {
        lr: 0.02,
        ..AdamConfig::default()
    };
    let mut accuracy = 0.0;
    for step in 1..=600u64 {
        let (loss, acc, grads) = model.loss_and_grads(&x, &y);
        accuracy = acc;
        if step % 100 == 0 || step == 1 {
            println!(
                "step {step:4}  loss {loss:.4}  accuracy {:.1}%",
                100.0 * acc
            );
        }
        let mut tensors: Vec<TensorRef<'_, f32>> = model
            .tensors
            .iter_mut()
            .zip(&grads)
            .zip(state.iter_mut())
            .map(|((p, g), [m, v])| TensorRef::new(p, g, step).with_state(m).with_state(v))
            .collect();
        adam_step(&mut tensors, &cfg)?;
    }
    if accuracy < 0.97 {
        return Err(format!("training accuracy {accuracy} below 0.97").into());
    }
    println!("final training accuracy {:.1}%", 100.0 * accuracy);
    Ok(())
}
