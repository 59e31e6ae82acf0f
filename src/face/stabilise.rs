//! Sub-pixel stabilisation of aligned crops by registering each one to the track's reference crop.
//!
//! Micro-expressions move skin by about a pixel, and BlazeFace keypoints jitter by a large fraction of
//! that, so keypoints alone cannot place the crop. Each new crop is instead registered to a reference
//! crop of the same track with a robust inverse-compositional Gauss-Newton fit of a similarity warp
//! (Baker & Matthews 2004) over the rigid middle of the face; keypoints only start tracks and catch
//! failures. Huber weights keep blinks and expressions from dragging the fit.

use super::align::{Similarity, warp_crop, warp_footprint, warp_rect};
use crate::frame::Pixels;
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
    /// Crop pixel indices inside the registration region (row-major over `rect`).
    region: Vec<u32>,
    /// The region as a crop rectangle `[x, y, w, h]`.
    rect: [u32; 4],
    /// Scratch: the region warped from the current frame.
    patch: Vec<u8>,
    /// Reference intensities at the region pixels.
    reference: Vec<f32>,
    /// Steepest-descent images ∇R·∂W/∂p at the region pixels, one array per parameter
    /// (p = scale-rotation a, b, shift x, y); separate arrays let the compiler vectorise the sums.
    steepest: [Vec<f32>; 4],
    /// Standard deviation of the reference over the region (normalises residuals).
    contrast: f32,
    /// Running sum of registered crops while the reference is being averaged.
    accum: Vec<f32>,
    accum_n: u32,
    target_n: u32,
    /// Last frame-to-frame motion in crop coordinates, to predict the next transform.
    velocity: Option<Similarity>,
    centre: f64,
    /// Scratch: residuals, Huber weights and weighted residuals per region pixel.
    scratch: Vec<f32>,
    wts: Vec<f32>,
    weighted: Vec<f32>,
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
        let rect = [
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1) as u32,
            (y1 - y0 + 1) as u32,
        ];
        let mut r = Self {
            size: s,
            region: idx,
            rect,
            patch: Vec::new(),
            reference: Vec::new(),
            steepest: Default::default(),
            contrast: 1.0,
            accum: first_crop.iter().map(|&v| v as f32).collect(),
            accum_n: 1,
            velocity: None,
            target_n: reference_frames.max(1),
            centre: (s as f64 - 1.0) / 2.0,
            scratch: vec![0.0; s * s],
            wts: vec![0.0; s * s],
            weighted: vec![0.0; s * s],
        };
        let first: Vec<f32> = r.accum.clone();
        r.set_reference(&first);
        r
    }

    /// Recomputes the reference, its gradients and steepest-descent images.
    fn set_reference(&mut self, img: &[f32]) {
        let s = self.size;
        self.reference.clear();
        for sd in &mut self.steepest {
            sd.clear();
        }
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        for &i in &self.region {
            let i = i as usize;
            let (x, y) = (i % s, i / s);
            let gx = 0.5 * (img[i + 1] - img[i - 1]);
            let gy = 0.5 * (img[i + s] - img[i - s]);
            let (u, v) = (x as f64 - self.centre, y as f64 - self.centre);
            let (u, v) = (u as f32, v as f32);
            self.steepest[0].push(gx * u + gy * v);
            self.steepest[1].push(-gx * v + gy * u);
            self.steepest[2].push(gx);
            self.steepest[3].push(gy);
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
        px: &mut dyn Pixels,
        crop_to_frame: &mut Similarity,
        crop: &mut Vec<u8>,
        max_iters: u32,
    ) -> Result<Registered> {
        let size = self.size as u32;
        let start = *crop_to_frame;
        // Constant-velocity prediction: smooth head motion then needs one or two iterations.
        if let Some(v) = self.velocity {
            *crop_to_frame = crop_to_frame.compose(&v);
        }
        let mut residual = f32::INFINITY;
        let mut iterations = 0;
        let mut patch = std::mem::take(&mut self.patch);
        for _ in 0..max_iters.max(1) {
            // Iterations only need the region; the full crop is warped once, at the end.
            let (width, height) = px.size();
            let frame = px.region(warp_footprint(crop_to_frame, self.rect, width, height))?;
            warp_rect(frame, width, height, crop_to_frame, self.rect, &mut patch)?;
            iterations += 1;
            let (dp, res) = self.solve(&patch);
            residual = res;
            let Some(dp) = dp else { break };
            // A ← A ∘ W(Δp)⁻¹ (inverse-compositional update).
            let w = self.warp_of(dp);
            *crop_to_frame = crop_to_frame.compose(&w.inverse());
            // Gauss-Newton leaves an error quadratic in its step: after a step of a twentieth of a
            // pixel what remains (~0.003 px) is below the estimate's own noise floor.
            if dp[2].abs() < 0.05 && dp[3].abs() < 0.05 && dp[0].abs() < 3e-4 && dp[1].abs() < 3e-4
            {
                break;
            }
        }
        self.patch = patch;
        let (width, height) = px.size();
        let frame = px.region(warp_footprint(
            crop_to_frame,
            [0, 0, size, size],
            width,
            height,
        ))?;
        warp_crop(frame, width, height, crop_to_frame, size, crop)?;
        let moved = start.inverse().compose(crop_to_frame);
        self.velocity = Some(moved);
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
    fn solve(&mut self, patch: &[u8]) -> (Option<[f64; 4]>, f32) {
        let n = self.region.len();
        // Gain and offset absorb flicker and exposure changes between reference and frame.
        let (mut sc, mut sr, mut scc, mut scr) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (&c, &r) in patch.iter().zip(&self.reference) {
            let c = c as f64;
            let r = r as f64;
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
        let gain = gain.clamp(0.5, 2.0) as f32;
        let offset = (sr / nf) as f32 - gain * (sc / nf) as f32;
        // Residuals, their energy, and a histogram of |e| (quarter gray levels) for a robust scale.
        let err = &mut self.scratch[..n];
        let mut hist = [0u32; 256];
        let mut sq = 0.0f64;
        for ((e, &c), &r) in err.iter_mut().zip(patch).zip(&self.reference) {
            let v = gain * c as f32 + offset - r;
            *e = v;
            sq += (v * v) as f64;
            hist[((v.abs() * 4.0) as usize).min(255)] += 1;
        }
        let residual = ((sq / nf).sqrt() as f32) / self.contrast;
        let mut seen = 0u32;
        let mut mad = 64.0f32;
        for (bin, &count) in hist.iter().enumerate() {
            seen += count;
            if seen * 2 >= n as u32 {
                mad = (bin as f32 + 0.5) / 4.0;
                break;
            }
        }
        // Huber weights: blinks and expressions get less say than the rigid face.
        let k_huber = (1.345 * 1.4826 * mad).max(1.0);
        // Weighted residuals once, then ten dot products over contiguous arrays.
        let we = &mut self.weighted[..n];
        let wts = &mut self.wts[..n];
        for ((w, we), e) in wts.iter_mut().zip(we.iter_mut()).zip(err.iter()) {
            let a = e.abs().max(1e-6);
            *w = (k_huber / a).min(1.0);
            *we = *w * e;
        }
        let [s0, s1, s2, s3] = &self.steepest;
        let g = [dot(s0, we), dot(s1, we), dot(s2, we), dot(s3, we)];
        let h = [
            dot3(wts, s0, s0),
            dot3(wts, s0, s1),
            dot3(wts, s0, s2),
            dot3(wts, s0, s3),
            dot3(wts, s1, s1),
            dot3(wts, s1, s2),
            dot3(wts, s1, s3),
            dot3(wts, s2, s2),
            dot3(wts, s2, s3),
            dot3(wts, s3, s3),
        ];
        let hm = [
            [h[0], h[1], h[2], h[3]],
            [h[1], h[4], h[5], h[6]],
            [h[2], h[5], h[7], h[8]],
            [h[3], h[6], h[8], h[9]],
        ]
        .map(|row| row.map(|v| v as f64));
        (solve4(hm, g.map(|v| v as f64)), residual)
    }
}

/// Σ a·b with eight independent accumulators, so the loop vectorises (f32 sums are not reassociated).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ w·a·b, vectorised like [`dot`].
fn dot3(w: &[f32], a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (cw, ca, cb) = (w.chunks_exact(8), a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = cw
        .remainder()
        .iter()
        .zip(ca.remainder())
        .zip(cb.remainder())
        .map(|((w, x), y)| w * x * y)
        .sum();
    for ((w, x), y) in cw.zip(ca).zip(cb) {
        for l in 0..8 {
            acc[l] += w[l] * x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
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
