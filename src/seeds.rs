//! Seeds of sub-tasks: every random choice follows from the config's one
//! seed through [`derive_seed`]; [`seeded_normal`] draws from such a seed.

use crate::error::Result;
use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A seed for a named sub-task (`"expert"`, `"eval"`, ...) and indices, so
/// every random choice follows from the config's one seed.
pub fn derive_seed(seed: u64, task: &str, indices: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in task.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for i in indices {
        for b in i.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A tensor of shape `dims` (f32) of standard normal draws from `rng`
/// (Box–Muller), for initial values that must follow from a seed (candle's
/// own `randn` is not seeded per call).
pub fn seeded_normal(rng: &mut ChaCha8Rng, dims: &[usize], dev: &Device) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Ok(Tensor::from_vec(v, dims, dev)?)
}
