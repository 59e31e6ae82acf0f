//! Sub-pixel stabilisation of aligned crops by registering each one to the track's reference crop.
//!
//! Micro-expressions move skin by about a pixel, and BlazeFace keypoints jitter by a large fraction of
//! that, so keypoints alone cannot place the crop. Each new crop is instead registered to a reference
//! crop of the same track with a robust inverse-compositional Gauss-Newton fit of a similarity warp
//! (Baker & Matthews 2004) over the rigid middle of the face; keypoints only start tracks and catch
//! failures. Huber weights keep blinks and expressions from dragging the fit.

use super::align::{Similarity, warp_crop};
use anyhow::Result;

/// Result of registering one frame.
#[derive(Debug, Clone, Copy)]
pub struct Registered {
    /// Residual RMS after the fit, relative to the reference's contrast (0 = perfect).
    pub residual: f32,
    /// Total correction applied this frame, in crop pixels (translation magnitude).
    pub correction_px: f32,
    /// Gauss-Newton iterations used.
    pub iterations: u32,
}

/// The reference crop of one track with everything the inverse-compositional fit precomputes.
pub struct Registration {
    size: usize,
    /// Crop pixel indices inside the registration region.
    region: Vec<u32>,
    /// Reference intensities at the region pixels.
    reference: Vec<f32>,
    /// Steepest-descent rows ∇R·∂W/∂p at the region pixels (p = scale-rotation a, b, shift x, y).
    steepest: Vec<[f32; 4]>,
    /// Standard deviation of the reference over the region (normalises residuals).
    contrast: f32,
    /// Running sum of registered crops while the reference is being averaged.
    accum: Vec<f32>,
    accum_n: u32,
    target_n: u32,
    centre: f64,
    /// Scratch: crop as f32 and per-pixel residuals/weights.
    scratch: Vec<f32>,
    weights: Vec<f32>,
}

impl Registration {
    /// Starts from the first crop of a track. `region` is `[x0, y0, x1, y1]` as fractions of the crop.
    pub fn new(first_crop: &[u8], size: u32, region: [f32; 4], reference_frames: u32) -> Self {
        let s = size as usize;
        let lo = |f: f32| ((f * size as f32).round() as usize).clamp(1, s - 2);
        let (x0, y0, x1, y1) = (lo(region[0]), lo(region[1]), lo(region[2]), lo(region[3]));
        let mut idx = Vec::with_capacity((x1 - x0) * (y1 - y0));
        for y in y0..=y1 {
            for x in x0..=x1 {
                idx.push((y * s + x) as u32);
            }
        }
        let mut r = Self {
            size: s,
            region: idx,
            reference: Vec::new(),
            steepest: Vec::new(),
            contrast: 1.0,
            accum: first_crop.iter().map(|&v| v as f32).collect(),
            accum_n: 1,
            target_n: reference_frames.max(1),
            centre: (s as f64 - 1.0) / 2.0,
            scratch: vec![0.0; s * s],
            weights: Vec::new(),
        };
        let first: Vec<f32> = r.accum.clone();
        r.set_reference(&first);
        r
    }

    /// Recomputes the reference, its gradients and steepest-descent images.
    fn set_reference(&mut self, img: &[f32]) {
        let s = self.size;
        self.reference.clear();
        self.steepest.clear();
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        for &i in &self.region {
            let i = i as usize;
            let (x, y) = (i % s, i / s);
            let gx = 0.5 * (img[i + 1] - img[i - 1]);
            let gy = 0.5 * (img[i + s] - img[i - s]);
            let (u, v) = (x as f64 - self.centre, y as f64 - self.centre);
            let (u, v) = (u as f32, v as f32);
            self.steepest
                .push([gx * u + gy * v, -gx * v + gy * u, gx, gy]);
            self.reference.push(img[i]);
            sum += img[i] as f64;
            sum2 += (img[i] as f64).powi(2);
        }
        let n = self.region.len().max(1) as f64;
        let var = (sum2 / n - (sum / n).powi(2)).max(1e-6);
        self.contrast = var.sqrt() as f32;
    }

    /// True while the reference is still being averaged from the first frames.
    pub fn building(&self) -> bool {
        self.accum_n < self.target_n
    }

    /// Registers the frame: refines `crop_to_frame` in place and leaves the final crop in `crop`.
    pub fn register(
        &mut self,
        frame: &[u8],
        width: usize,
        height: usize,
        crop_to_frame: &mut Similarity,
        crop: &mut Vec<u8>,
        max_iters: u32,
    ) -> Result<Registered> {
        let size = self.size as u32;
        let start = *crop_to_frame;
        let mut residual = f32::INFINITY;
        let mut iterations = 0;
        let mut fresh = false;
        for _ in 0..max_iters.max(1) {
            warp_crop(frame, width, height, crop_to_frame, size, crop)?;
            iterations += 1;
            let (dp, res) = self.solve(crop);
            residual = res;
            let Some(dp) = dp else {
                fresh = true;
                break;
            };
            // A ← A ∘ W(Δp)⁻¹ (inverse-compositional update).
            let w = self.warp_of(dp);
            *crop_to_frame = crop_to_frame.compose(&w.inverse());
            let small = dp[2].abs() < 2e-3
                && dp[3].abs() < 2e-3
                && dp[0].abs() < 2e-5
                && dp[1].abs() < 2e-5;
            if small {
                // The last update is far below what the eye or the spotter can see: skip a re-warp.
                fresh = true;
                break;
            }
        }
        if !fresh {
            warp_crop(frame, width, height, crop_to_frame, size, crop)?;
        }
        let moved = start.inverse().compose(crop_to_frame);
        let c = [self.centre, self.centre];
        let shifted = moved.apply(c);
        let correction_px = (((shifted[0] - c[0]).powi(2) + (shifted[1] - c[1]).powi(2)).sqrt()
            / start.scale()) as f32;
        if self.building() {
            for (a, &v) in self.accum.iter_mut().zip(crop.iter()) {
                *a += v as f32;
            }
            self.accum_n += 1;
            if !self.building() {
                let n = self.accum_n as f32;
                let mean: Vec<f32> = self.accum.iter().map(|v| v / n).collect();
                self.set_reference(&mean);
            }
        }
        Ok(Registered {
            residual,
            correction_px,
            iterations,
        })
    }

    /// The similarity in absolute crop coordinates for parameters `p` about the crop centre.
    fn warp_of(&self, p: [f64; 4]) -> Similarity {
        let c = self.centre;
        let (a, b) = (1.0 + p[0], p[1]);
        Similarity {
            a,
            b,
            tx: p[2] + c - (a * c - b * c),
            ty: p[3] + c - (b * c + a * c),
        }
    }

    /// One robust Gauss-Newton step: returns Δp (None when the system is degenerate) and the
    /// normalised residual before the step.
    #[allow(clippy::needless_range_loop)] // index form mirrors the normal equations
    fn solve(&mut self, crop: &[u8]) -> (Option<[f64; 4]>, f32) {
        let n = self.region.len();
        // Gain and offset absorb flicker and exposure changes between reference and frame.
        let (mut sc, mut sr, mut scc, mut scr) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (k, &i) in self.region.iter().enumerate() {
            let c = crop[i as usize] as f64;
            let r = self.reference[k] as f64;
            sc += c;
            sr += r;
            scc += c * c;
            scr += c * r;
        }
        let nf = n as f64;
        let var_c = scc / nf - (sc / nf).powi(2);
        let gain = if var_c > 1e-6 {
            (scr / nf - sc * sr / (nf * nf)) / var_c
        } else {
            1.0
        };
        let gain = gain.clamp(0.5, 2.0);
        let offset = sr / nf - gain * sc / nf;
        let err = &mut self.scratch[..n];
        let mut sq = 0.0f64;
        for (k, &i) in self.region.iter().enumerate() {
            let e = (gain * crop[i as usize] as f64 + offset) as f32 - self.reference[k];
            err[k] = e;
            sq += (e as f64).powi(2);
        }
        let residual = ((sq / nf).sqrt() as f32) / self.contrast;
        // Huber weights from a robust scale (median absolute residual).
        self.weights.clear();
        self.weights.extend(err.iter().map(|e| e.abs()));
        let mid = n / 2;
        let mad = *self
            .weights
            .select_nth_unstable_by(mid, |a, b| a.total_cmp(b))
            .1;
        let k_huber = (1.345 * 1.4826 * mad).max(1.0);
        let mut h = [[0.0f64; 4]; 4];
        let mut g = [0.0f64; 4];
        for (k, e) in err.iter().enumerate() {
            let w = if e.abs() <= k_huber {
                1.0
            } else {
                k_huber / e.abs()
            } as f64;
            let sd = self.steepest[k];
            for r in 0..4 {
                let wr = w * sd[r] as f64;
                g[r] += wr * *e as f64;
                for c in r..4 {
                    h[r][c] += wr * sd[c] as f64;
                }
            }
        }
        for r in 0..4 {
            for c in 0..r {
                h[r][c] = h[c][r];
            }
        }
        (solve4(h, g), residual)
    }
}

/// Solves the 4x4 symmetric system `h·x = g` by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // index form mirrors the elimination
fn solve4(mut h: [[f64; 4]; 4], mut g: [f64; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let piv = (col..4).max_by(|&a, &b| h[a][col].abs().total_cmp(&h[b][col].abs()))?;
        if h[piv][col].abs() < 1e-9 {
            return None;
        }
        h.swap(col, piv);
        g.swap(col, piv);
        for r in col + 1..4 {
            let f = h[r][col] / h[col][col];
            for c in col..4 {
                h[r][c] -= f * h[col][c];
            }
            g[r] -= f * g[col];
        }
    }
    let mut x = [0.0; 4];
    for r in (0..4).rev() {
        let mut s = g[r];
        for c in r + 1..4 {
            s -= h[r][c] * x[c];
        }
        x[r] = s / h[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve4_solves() {
        let h = [
            [4.0, 1.0, 0.0, 0.0],
            [1.0, 3.0, 0.5, 0.0],
            [0.0, 0.5, 2.0, 0.1],
            [0.0, 0.0, 0.1, 1.0],
        ];
        let x = [1.0, -2.0, 0.5, 3.0];
        let mut g = [0.0; 4];
        for r in 0..4 {
            for c in 0..4 {
                g[r] += h[r][c] * x[c];
            }
        }
        let s = solve4(h, g).unwrap();
        for i in 0..4 {
            assert!((s[i] - x[i]).abs() < 1e-9);
        }
    }
}
