//! Renders frames: expression displacement over the face, head motion, flicker and sensor noise.

use super::aus::AuSpec;
use super::capture::{Capture, apply_optics, mul3};
use super::identity::Identity;
use super::motion::{Action, Family, actions, field};
use crate::face::Similarity;
use crate::rng::Rng;
use anyhow::{Context, Result};

/// One expression's displacement field over the face region, at apex (weight 1).
pub struct ExpressionField {
    roi: [u32; 4],
    dx: Vec<f32>,
    dy: Vec<f32>,
}

impl ExpressionField {
    /// The AUs' actions on this identity, rendered by `family`.
    pub fn new(id: &Identity, aus: &[AuSpec], family: Family) -> Self {
        let acts: Vec<(Action, f32)> = aus
            .iter()
            .flat_map(|spec| {
                actions(
                    spec.au,
                    spec.side,
                    &spec.shape,
                    &id.landmarks,
                    id.crop_to_frame_scale,
                )
                .into_iter()
                .map(move |a| (a, spec.amplitude))
            })
            .collect();
        Self::from_actions(id, family, &acts)
    }

    /// Arbitrary actions, each scaled by its amplitude (canonical-face pixels), rendered by `family`.
    pub fn from_actions(id: &Identity, family: Family, acts: &[(Action, f32)]) -> Self {
        let roi = id.landmarks.face_roi(id.width, id.height);
        let f = field(family, acts, roi, &id.landmarks);
        Self {
            roi: f.roi,
            dx: f.dx,
            dy: f.dy,
        }
    }
}

/// Onset → apex → offset intensity in [0, 1] (smoothstep rise and fall), 0 outside the interval.
pub fn intensity(frame: f64, onset: f64, apex: f64, offset: f64) -> f32 {
    let smooth = |t: f64| {
        let t = t.clamp(0.0, 1.0);
        t * t * (3.0 - 2.0 * t)
    };
    let v = if frame <= onset || frame >= offset {
        0.0
    } else if frame <= apex {
        smooth((frame - onset) / (apex - onset).max(1e-9))
    } else {
        1.0 - smooth((frame - apex) / (offset - apex).max(1e-9))
    };
    v as f32
}

/// Nuisance settings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Nuisances {
    /// Gaussian sensor noise, gray levels.
    pub noise_sigma: f32,
    /// Illumination flicker, relative amplitude (0.02 = ±2 %).
    pub flicker: f32,
    /// Head micro-motion, peak translation in pixels (frame).
    pub head_px: f32,
    /// Head micro-motion, peak in-plane rotation in degrees.
    pub head_deg: f32,
}

/// Slow head motion and flicker for one clip or video, deterministic from its seed.
pub struct Motion {
    freqs: [f64; 6],
    phases: [f64; 6],
    flicker_hz: f64,
    flicker_phase: f64,
    n: Nuisances,
    fps: f64,
}

impl Motion {
    /// Draws frequencies (0.3–3 Hz sway, 2–10 Hz flicker beat) and phases.
    pub fn new(n: Nuisances, fps: f64, rng: &mut Rng) -> Self {
        let mut freqs = [0.0; 6];
        let mut phases = [0.0; 6];
        for i in 0..6 {
            freqs[i] = 0.3 + 2.7 * rng.uniform();
            phases[i] = std::f64::consts::TAU * rng.uniform();
        }
        Self {
            freqs,
            phases,
            flicker_hz: 2.0 + 8.0 * rng.uniform(),
            flicker_phase: std::f64::consts::TAU * rng.uniform(),
            n,
            fps,
        }
    }

    fn wave(&self, i: usize, t: f64) -> f64 {
        // Two incommensurate sines: smooth, non-periodic within a clip.
        0.5 * ((std::f64::consts::TAU * self.freqs[i] * t + self.phases[i]).sin()
            + (std::f64::consts::TAU * self.freqs[i + 3] * t + self.phases[i + 3]).sin())
    }

    /// Head pose (frame → frame similarity about `centre`) at frame `k`.
    pub fn head(&self, k: u32, centre: [f32; 2]) -> Similarity {
        let t = k as f64 / self.fps;
        let tx = self.n.head_px as f64 * self.wave(0, t);
        let ty = self.n.head_px as f64 * self.wave(1, t);
        let th = (self.n.head_deg as f64).to_radians() * self.wave(2, t);
        let (c, s) = (th.cos(), th.sin());
        let (cx, cy) = (centre[0] as f64, centre[1] as f64);
        Similarity {
            a: c,
            b: s,
            tx: cx - (c * cx - s * cy) + tx,
            ty: cy - (s * cx + c * cy) + ty,
        }
    }

    /// Illumination gain at frame `k`.
    pub fn gain(&self, k: u32) -> f32 {
        let t = k as f64 / self.fps;
        1.0 + self.n.flicker
            * (std::f64::consts::TAU * self.flicker_hz * t + self.flicker_phase).sin() as f32
    }
}

/// Whole-frame conditions of one frame: head pose, illumination gain, sensor noise.
#[derive(Debug, Clone, Copy)]
pub struct FrameConditions {
    /// Frame → frame similarity (head pose).
    pub head: Similarity,
    /// Illumination gain.
    pub gain: f32,
    /// Noise standard deviation, gray levels.
    pub noise_sigma: f32,
    /// The clip's capture conditions (static pose, tone, blur), if drawn.
    pub capture: Option<CaptureView>,
}

/// A capture's per-frame part: its static pose as a homography, and its optics.
#[derive(Debug, Clone, Copy)]
pub struct CaptureView {
    /// Frame → frame homography (zoom and out-of-plane pose), applied after the head sway.
    pub pose: [f64; 9],
    /// Tone and blur.
    pub optics: Capture,
}

/// Renders frames of one identity, reusing buffers and a bank of noise samples.
pub struct Renderer {
    noise: Vec<f32>,
    frame: Vec<u8>,
    mapx: Vec<f32>,
    mapy: Vec<f32>,
}

impl Renderer {
    /// A renderer with its own noise bank (two frames of unit normals).
    pub fn new(w: u32, h: u32, rng: &mut Rng) -> Self {
        let n = (w * h) as usize;
        Self {
            noise: (0..2 * n).map(|_| rng.gaussian() as f32).collect(),
            frame: Vec::new(),
            mapx: Vec::new(),
            mapy: Vec::new(),
        }
    }

    /// Renders one frame: expressions at their weights, then head pose, gain and noise.
    pub fn render(
        &mut self,
        id: &Identity,
        expressions: &[(&ExpressionField, f32)],
        cond: &FrameConditions,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (w, h) = (id.width as usize, id.height as usize);
        self.frame.clear();
        self.frame.extend_from_slice(&id.neutral);
        let active: Vec<&(&ExpressionField, f32)> =
            expressions.iter().filter(|e| e.1 > 0.0).collect();
        if let Some(first) = active.first() {
            // All fields of one identity share the face region.
            let roi = first.0.roi;
            let (rw, rh) = ((roi[2] - roi[0]) as usize, (roi[3] - roi[1]) as usize);
            self.mapx.resize(rw * rh, 0.0);
            self.mapy.resize(rw * rh, 0.0);
            for y in 0..rh {
                for x in 0..rw {
                    let i = y * rw + x;
                    let (mut dx, mut dy) = (0.0, 0.0);
                    for (f, wgt) in &active {
                        dx += wgt * f.dx[i];
                        dy += wgt * f.dy[i];
                    }
                    // Backward map: the pixel now at q came from q − D(q) (D is small and smooth).
                    self.mapx[i] = (x + roi[0] as usize) as f32 - dx;
                    self.mapy[i] = (y + roi[1] as usize) as f32 - dy;
                }
            }
            let patch = remap_from(&id.neutral, w, h, &self.mapx, &self.mapy, rw, rh)?;
            for y in 0..rh {
                let dst = (y + roi[1] as usize) * w + roi[0] as usize;
                self.frame[dst..dst + rw].copy_from_slice(&patch[y * rw..(y + 1) * rw]);
            }
        }
        let (gain, noise_sigma) = (cond.gain, cond.noise_sigma);
        out.resize(w * h, 0);
        let Some(view) = cond.capture else {
            let moved = if cond.head == Similarity::IDENTITY {
                std::mem::take(&mut self.frame)
            } else {
                warp_similarity(&self.frame, w, h, &cond.head)?
            };
            let off = (rng.next_u64() % (w * h) as u64) as usize;
            let noise = &self.noise[off..off + w * h];
            for ((o, &v), &n) in out.iter_mut().zip(&moved).zip(noise) {
                *o = (v as f32 * gain + n * noise_sigma)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
            self.frame = moved;
            return Ok(());
        };
        // Captured: sway, then the static pose, in one perspective warp; tone and blur on the
        // light reaching the sensor; then gain, noise and quantisation.
        let a = cond.head.to_affine();
        let sway = [a[0], a[1], a[2], a[3], a[4], a[5], 0.0, 0.0, 1.0];
        let moved = warp(&self.frame, w, h, &mul3(&view.pose, &sway))?;
        let light = apply_optics(&moved, w, h, &view.optics)?;
        let off = (rng.next_u64() % (w * h) as u64) as usize;
        let noise = &self.noise[off..off + w * h];
        for ((o, &v), &n) in out.iter_mut().zip(&light).zip(noise) {
            *o = (v * gain + n * noise_sigma).round().clamp(0.0, 255.0) as u8;
        }
        self.frame = moved;
        Ok(())
    }
}

/// Bilinear remap of a region from a full gray frame.
fn remap_from(
    src: &[u8],
    w: usize,
    h: usize,
    mapx: &[f32],
    mapy: &[f32],
    rw: usize,
    rh: usize,
) -> Result<Vec<u8>> {
    use opencv::core::{BORDER_REPLICATE, Mat, Scalar};
    use opencv::prelude::*;
    let s = Mat::new_rows_cols_with_data(h as i32, w as i32, src).context("wrapping the frame")?;
    let mx = Mat::new_rows_cols_with_data(rh as i32, rw as i32, mapx)?;
    let my = Mat::new_rows_cols_with_data(rh as i32, rw as i32, mapy)?;
    let mut out = Mat::default();
    opencv::imgproc::remap(
        &s,
        &mut out,
        &mx,
        &my,
        opencv::imgproc::INTER_CUBIC,
        BORDER_REPLICATE,
        Scalar::all(0.0),
    )
    .context("expression remap")?;
    Ok(out.data_bytes()?.to_vec())
}

/// Applies a frame → frame similarity (head pose) to a gray frame (border reflected).
fn warp_similarity(src: &[u8], w: usize, h: usize, t: &Similarity) -> Result<Vec<u8>> {
    let m = t.to_affine();
    warp(
        src,
        w,
        h,
        &[m[0], m[1], m[2], m[3], m[4], m[5], 0.0, 0.0, 1.0],
    )
}

/// Applies a frame → frame matrix to a gray frame (bicubic, border reflected): an affine warp when
/// its last row is (0, 0, 1), else a perspective one.
fn warp(src: &[u8], w: usize, h: usize, m: &[f64; 9]) -> Result<Vec<u8>> {
    use opencv::core::{BORDER_REFLECT, Mat, Scalar, Size};
    use opencv::imgproc::{INTER_CUBIC, warp_affine, warp_perspective};
    use opencv::prelude::*;
    let s = Mat::new_rows_cols_with_data(h as i32, w as i32, src)?;
    let size = Size::new(w as i32, h as i32);
    let mut out = Mat::default();
    let rows = [[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]];
    if rows[2] == [0.0, 0.0, 1.0] {
        let a = Mat::from_slice_2d(&rows[..2])?;
        warp_affine(
            &s,
            &mut out,
            &a,
            size,
            INTER_CUBIC,
            BORDER_REFLECT,
            Scalar::all(0.0),
        )
        .context("head motion warp")?;
    } else {
        let p = Mat::from_slice_2d(&rows)?;
        warp_perspective(
            &s,
            &mut out,
            &p,
            size,
            INTER_CUBIC,
            BORDER_REFLECT,
            Scalar::all(0.0),
        )
        .context("head pose warp")?;
    }
    Ok(out.data_bytes()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_profile_peaks_at_apex_and_vanishes_outside() {
        assert_eq!(intensity(10.0, 10.0, 15.0, 30.0), 0.0);
        assert_eq!(intensity(15.0, 10.0, 15.0, 30.0), 1.0);
        assert_eq!(intensity(30.0, 10.0, 15.0, 30.0), 0.0);
        let a = intensity(12.0, 10.0, 15.0, 30.0);
        let b = intensity(14.0, 10.0, 15.0, 30.0);
        assert!(0.0 < a && a < b && b < 1.0);
    }
}
