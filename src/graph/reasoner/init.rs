//! Seeded uniform initialisation, fast enough to fill the 1.5B-parameter random mode in seconds.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Shape, Tensor};

/// Elements per independently seeded chunk: the values do not depend on the thread count.
const CHUNK: usize = 1 << 18;

/// SplitMix64 step: a tiny, well-mixed generator (one per chunk, seeded from the chunk index).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives a stream seed from a base seed and a label (e.g. a tensor name).
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    // FNV-1a over the label, then one SplitMix round so nearby labels diverge.
    let mut h: u64 = 0xCBF2_9CE4_8422_2325 ^ seed;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    splitmix(&mut h)
}

/// `n` values uniform in `[-bound, bound)`, the same for a given seed on any machine.
pub fn uniform_vec(seed: u64, n: usize, bound: f32) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let fill = |chunk_idx: usize, chunk: &mut [f32]| {
        let mut state = seed ^ (chunk_idx as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        for v in chunk.iter_mut() {
            // 24 random bits -> [0, 1) exactly representable in f32.
            let u = (splitmix(&mut state) >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
            *v = (2.0 * u - 1.0) * bound;
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 4 * CHUNK || threads == 1 {
        for (i, c) in out.chunks_mut(CHUNK).enumerate() {
            fill(i, c);
        }
        return out;
    }
    // Chunks are dealt round-robin to the threads; each chunk's values depend only on its index.
    let mut per_thread: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in out.chunks_mut(CHUNK).enumerate() {
        per_thread[i % threads].push((i, c));
    }
    std::thread::scope(|s| {
        for work in per_thread {
            s.spawn(move || {
                for (i, c) in work {
                    fill(i, c);
                }
            });
        }
    });
    out
}

/// A tensor of uniform values in `[-bound, bound)` (generated on the CPU in f32, then moved).
pub fn uniform(
    seed: u64,
    shape: impl Into<Shape>,
    bound: f32,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let data = uniform_vec(seed, shape.elem_count(), bound);
    let t = Tensor::from_vec(data, shape.clone(), &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .and_then(|t| t.to_device(device))
        .with_context(|| format!("cannot create a random tensor of shape {shape:?}"))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_deterministic_bounded_and_centred() {
        let a = uniform_vec(7, 5 * CHUNK + 3, 0.5);
        let b = uniform_vec(7, 5 * CHUNK + 3, 0.5);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        let var = a.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / a.len() as f64;
        // Uniform on [-b, b): variance b^2 / 3.
        assert!((var - 0.25 / 3.0).abs() < 1e-3, "var {var}");
        assert_ne!(uniform_vec(8, 16, 0.5), uniform_vec(7, 16, 0.5));
        assert_ne!(derive_seed(1, "a"), derive_seed(1, "b"));
    }
}
