//! Clip assembly: which T frames of an interval the front-end sees, and the tensor data it reads.
//! Live inference, batch processing and training all build clips here, so a model sees the same
//! input in every mode.
//! May import: graph (the `[frontend]` section), rng.

use crate::graph::config::ClipInput;
use crate::graph::config::FrontendConfig;
use crate::rng::Rng;
use anyhow::{Context, Result, ensure};
use opencv::core::{Mat, Rect, Size};
use opencv::prelude::*;

/// Gain on the onset-difference channel: one gray level becomes 1/16, so a 0.5 px shift of a
/// 40-level edge (the smallest micro-expressions) reads about 1.25, the scale of the gray channel.
pub const DIFF_GAIN: f32 = 16.0;

/// Aligned gray crops of one expression in time order, with its apex among them: the one clip type
/// of live inference (T sampled crops), batch and training (every frame onset..=offset).
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Side of each square crop.
    pub size: usize,
    /// Frames back to back, each `size`², row-major.
    pub crops: Vec<u8>,
    /// Index of the apex frame.
    pub apex: usize,
}

impl Clip {
    /// An empty clip of `size`² crops.
    pub fn new(size: usize) -> Clip {
        Clip {
            size,
            crops: Vec::new(),
            apex: 0,
        }
    }

    /// Appends a frame (`size`² bytes).
    pub fn push(&mut self, crop: &[u8]) {
        debug_assert_eq!(crop.len(), self.size * self.size);
        self.crops.extend_from_slice(crop);
    }

    /// Frames held.
    pub fn frames(&self) -> usize {
        self.crops.len() / (self.size * self.size).max(1)
    }

    /// Frame `i`'s crop.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.size * self.size;
        &self.crops[i * n..(i + 1) * n]
    }

    /// The apex frame's crop.
    pub fn apex_frame(&self) -> &[u8] {
        self.frame(self.apex)
    }

    /// Appends the front-end's tensor data for the frames at `positions` (see [`clip_data`]).
    pub fn tensor_data(
        &self,
        positions: &[usize],
        cfg: &FrontendConfig,
        bx: CropBox,
        flip: bool,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let frames: Vec<&[u8]> = positions.iter().map(|&p| self.frame(p)).collect();
        clip_data(&frames, self.size, cfg, bx, flip, out)
    }
}

/// T frame positions over `onset..=offset` through `apex`: the first ⌈T/2⌉ spread from onset to
/// apex (both included), the rest from just after apex to offset, so apex is always seen and the
/// rise and the fall get equal shares.
pub fn sample_positions(onset: u64, apex: u64, offset: u64, t: usize) -> Vec<u64> {
    let offset = offset.max(onset);
    let apex = apex.clamp(onset, offset);
    let rise = t.div_ceil(2);
    let fall = t - rise;
    let mut out = Vec::with_capacity(t);
    for i in 0..rise {
        let f = if rise == 1 {
            1.0
        } else {
            i as f64 / (rise - 1) as f64
        };
        out.push(onset + (f * (apex - onset) as f64).round() as u64);
    }
    for i in 1..=fall {
        let f = i as f64 / fall as f64;
        out.push(apex + (f * (offset - apex) as f64).round() as u64);
    }
    out
}

/// Temporal jitter for training: each position except the first (the onset reference) moves by up
/// to `max` frames, staying inside `onset..=offset` and in order.
pub fn jitter_positions(pos: &mut [u64], onset: u64, offset: u64, max: u64, rng: &mut Rng) {
    if max == 0 {
        return;
    }
    for i in 1..pos.len() {
        let d = (rng.uniform() * (2 * max + 1) as f64).floor() as i64 - max as i64;
        let lo = pos[i - 1].max(onset) as i64;
        pos[i] = (pos[i] as i64 + d).clamp(lo, offset as i64) as u64;
    }
}

/// The square of the aligned crop a clip is cut from (then resized to `frontend.size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Side.
    pub side: usize,
}

impl CropBox {
    /// The centred box inference uses: `margin` pixels in from each edge.
    pub fn centre(crop_size: usize, margin: usize) -> CropBox {
        let margin = margin.min(crop_size / 4);
        CropBox {
            x: margin,
            y: margin,
            side: crop_size - 2 * margin,
        }
    }

    /// A box of the same side at a random offset (training's random-crop augmentation).
    pub fn random(crop_size: usize, margin: usize, rng: &mut Rng) -> CropBox {
        let c = CropBox::centre(crop_size, margin);
        let span = (crop_size - c.side + 1) as f64;
        CropBox {
            x: (rng.uniform() * span).floor() as usize,
            y: (rng.uniform() * span).floor() as usize,
            side: c.side,
        }
    }
}

/// Appends the clip tensor data [C, T, S, S] (f32, row-major) for `frames` (T aligned gray crops of
/// `crop_size`²) to `out`: each frame cut to `bx`, resized to S = `cfg.size` (area filter), mirrored
/// if `flip`, then channel 0 = gray / 255 − 0.5 and, for `gray_diff`, channel 1 =
/// (frame − first frame) / 255 × [`DIFF_GAIN`]; for `flow`, channels 1–2 = the optical flow from the
/// first frame × [`FLOW_GAIN`] and channel 3 = its strain × [`STRAIN_GAIN`].
pub fn clip_data(
    frames: &[&[u8]],
    crop_size: usize,
    cfg: &FrontendConfig,
    bx: CropBox,
    flip: bool,
    out: &mut Vec<f32>,
) -> Result<()> {
    ensure!(
        frames.len() == cfg.frames,
        "a clip needs frontend.frames = {} frames, got {}",
        cfg.frames,
        frames.len()
    );
    ensure!(
        bx.x + bx.side <= crop_size && bx.y + bx.side <= crop_size && bx.side > 0,
        "crop box {bx:?} does not fit a {crop_size} px crop"
    );
    let s = cfg.size;
    let mut resized: Vec<Vec<u8>> = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        ensure!(
            f.len() == crop_size * crop_size,
            "frame {i} of the clip has {} bytes, expected {crop_size}x{crop_size}",
            f.len()
        );
        resized.push(resize_box(f, crop_size, bx, s, flip).context("resizing a clip frame")?);
    }
    let base = out.len();
    out.reserve(cfg.input.channels() * cfg.frames * s * s);
    for r in &resized {
        out.extend(r.iter().map(|&v| v as f32 / 255.0 - 0.5));
    }
    match cfg.input {
        ClipInput::Gray => {}
        ClipInput::GrayDiff => {
            let first = &resized[0];
            for r in &resized {
                out.extend(
                    r.iter()
                        .zip(first)
                        .map(|(&v, &v0)| (v as f32 - v0 as f32) / 255.0 * DIFF_GAIN),
                );
            }
        }
        ClipInput::Flow => {
            let flows = resized
                .iter()
                .map(|r| onset_flow(&resized[0], r, s))
                .collect::<Result<Vec<_>>>()
                .context("optical flow of a clip frame")?;
            for c in 0..2 {
                for f in &flows {
                    out.extend(f.iter().skip(c).step_by(2).map(|v| v * FLOW_GAIN));
                }
            }
            for f in &flows {
                out.extend(strain(f, s).into_iter().map(|v| v * STRAIN_GAIN));
            }
        }
    }
    debug_assert_eq!(out.len() - base, cfg.input.channels() * cfg.frames * s * s);
    Ok(())
}

/// Gain on the flow channels: a quarter pixel of motion at the front-end's resolution reads 1.
pub const FLOW_GAIN: f32 = 4.0;

/// Gain on the strain channel: a strain of 1/16 (a quarter pixel over four) reads 1.
pub const STRAIN_GAIN: f32 = 16.0;

/// Dense optical flow (Farnebäck) from the onset frame to `frame`, both `s`² gray: interleaved
/// (x, y) per pixel, in pixels. The onset frame itself gives zeros without a computation.
fn onset_flow(onset: &[u8], frame: &[u8], s: usize) -> Result<Vec<f32>> {
    if onset == frame {
        return Ok(vec![0.0; 2 * s * s]);
    }
    let a = Mat::new_rows_cols_with_data(s as i32, s as i32, onset)?;
    let b = Mat::new_rows_cols_with_data(s as i32, s as i32, frame)?;
    let mut flow = Mat::default();
    // Two pyramid levels and a 9 px window: micro-expressions move under a pixel at this size.
    opencv::video::calc_optical_flow_farneback(&a, &b, &mut flow, 0.5, 2, 9, 3, 5, 1.1, 0)?;
    Ok(flow
        .data_typed::<opencv::core::Vec2f>()?
        .iter()
        .flat_map(|v| [v[0], v[1]])
        .collect())
}

/// Optical strain magnitude of an interleaved flow field: sqrt(εxx² + εyy² + 2εxy²) with
/// εxy = (∂u/∂y + ∂v/∂x) / 2, central differences inside, one-sided at the border.
fn strain(flow: &[f32], s: usize) -> Vec<f32> {
    let at = |x: usize, y: usize, c: usize| flow[2 * (y * s + x) + c];
    let d = |x: usize, y: usize, c: usize, horizontal: bool| {
        let (lo, hi) = if horizontal {
            ((x.saturating_sub(1), y), ((x + 1).min(s - 1), y))
        } else {
            ((x, y.saturating_sub(1)), (x, (y + 1).min(s - 1)))
        };
        let span = if horizontal { hi.0 - lo.0 } else { hi.1 - lo.1 };
        (at(hi.0, hi.1, c) - at(lo.0, lo.1, c)) / span.max(1) as f32
    };
    let mut out = Vec::with_capacity(s * s);
    for y in 0..s {
        for x in 0..s {
            let exx = d(x, y, 0, true);
            let eyy = d(x, y, 1, false);
            let exy = 0.5 * (d(x, y, 0, false) + d(x, y, 1, true));
            out.push((exx * exx + eyy * eyy + 2.0 * exy * exy).sqrt());
        }
    }
    out
}

/// Cuts `bx` out of a `crop_size`² gray crop and resizes it to `s`², mirrored when `flip`.
fn resize_box(crop: &[u8], crop_size: usize, bx: CropBox, s: usize, flip: bool) -> Result<Vec<u8>> {
    let m = Mat::new_rows_cols_with_data(crop_size as i32, crop_size as i32, crop)?;
    let roi = Mat::roi(
        &m,
        Rect::new(bx.x as i32, bx.y as i32, bx.side as i32, bx.side as i32),
    )?;
    let mut dst = Mat::default();
    let interp = if bx.side > s {
        opencv::imgproc::INTER_AREA
    } else {
        opencv::imgproc::INTER_LINEAR
    };
    opencv::imgproc::resize(
        &roi,
        &mut dst,
        Size::new(s as i32, s as i32),
        0.0,
        0.0,
        interp,
    )?;
    if flip {
        let mut f = Mat::default();
        opencv::core::flip(&dst, &mut f, 1)?;
        dst = f;
    }
    Ok(dst.data_bytes()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_cover_onset_apex_offset_in_order() {
        let p = sample_positions(10, 20, 40, 8);
        assert_eq!(p.len(), 8);
        assert_eq!(p[0], 10);
        assert!(p.contains(&20));
        assert_eq!(*p.last().unwrap(), 40);
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
        // Apex at the onset and a one-frame interval stay valid.
        assert_eq!(sample_positions(5, 5, 5, 4), vec![5, 5, 5, 5]);
        let q = sample_positions(0, 0, 9, 5);
        assert_eq!(q[0], 0);
        assert_eq!(*q.last().unwrap(), 9);
    }

    #[test]
    fn jitter_stays_inside_and_ordered() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut p = sample_positions(100, 130, 180, 8);
            jitter_positions(&mut p, 100, 180, 3, &mut rng);
            assert_eq!(p[0], 100);
            assert!(p.iter().all(|&x| (100..=180).contains(&x)), "{p:?}");
            assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
        }
    }

    #[test]
    fn clip_data_has_gray_and_difference_channels() {
        let cfg = FrontendConfig {
            frames: 2,
            size: 32,
            ..FrontendConfig::default()
        };
        let a = vec![100u8; 64 * 64];
        let mut b = a.clone();
        for v in b.iter_mut().take(64 * 32) {
            *v = 116; // top half brighter by 16 levels
        }
        let mut out = Vec::new();
        clip_data(&[&a, &b], 64, &cfg, CropBox::centre(64, 0), false, &mut out).unwrap();
        assert_eq!(out.len(), 2 * 2 * 32 * 32);
        let plane = 32 * 32;
        assert!((out[0] - (100.0 / 255.0 - 0.5)).abs() < 1e-6);
        // Channel 1, frame 0 is zero; frame 1 top half is 16/255*16 ≈ 1.0, bottom half 0.
        assert!(out[2 * plane..3 * plane].iter().all(|&v| v == 0.0));
        let top = out[3 * plane];
        let bottom = out[4 * plane - 1];
        assert!((top - 16.0 / 255.0 * DIFF_GAIN).abs() < 1e-5, "{top}");
        assert_eq!(bottom, 0.0);
        // Wrong frame count and a box outside the crop are errors.
        assert!(clip_data(&[&a], 64, &cfg, CropBox::centre(64, 0), false, &mut out).is_err());
        let bad = CropBox {
            x: 10,
            y: 10,
            side: 60,
        };
        assert!(clip_data(&[&a, &b], 64, &cfg, bad, false, &mut out).is_err());
    }

    #[test]
    fn flow_channels_measure_a_shift_from_the_onset_frame() {
        let cfg = FrontendConfig {
            frames: 2,
            size: 64,
            input: ClipInput::Flow,
            ..FrontendConfig::default()
        };
        // A smooth texture, then the same texture one pixel to the right.
        let tex = |x: f32, y: f32| 128.0 + 50.0 * (x * 0.31).sin() * (y * 0.23).cos();
        let a: Vec<u8> = (0..64 * 64)
            .map(|i| tex((i % 64) as f32, (i / 64) as f32) as u8)
            .collect();
        let b: Vec<u8> = (0..64 * 64)
            .map(|i| tex((i % 64) as f32 - 1.0, (i / 64) as f32) as u8)
            .collect();
        let mut out = Vec::new();
        clip_data(&[&a, &b], 64, &cfg, CropBox::centre(64, 0), false, &mut out).unwrap();
        let plane = 64 * 64;
        assert_eq!(out.len(), 4 * 2 * plane);
        let mean = |c: usize, f: usize| {
            let p = &out[(c * 2 + f) * plane..(c * 2 + f + 1) * plane];
            // The middle, away from the border.
            let mid: Vec<f32> = (16..48)
                .flat_map(|y| (16..48).map(move |x| p[y * 64 + x]))
                .collect();
            mid.iter().sum::<f32>() / mid.len() as f32
        };
        assert_eq!(mean(1, 0), 0.0);
        let (u, v) = (mean(1, 1) / FLOW_GAIN, mean(2, 1) / FLOW_GAIN);
        assert!((u - 1.0).abs() < 0.2 && v.abs() < 0.2, "flow ({u}, {v})");
        // A rigid shift has (almost) no strain.
        assert!(mean(3, 1) / STRAIN_GAIN < 0.1, "{}", mean(3, 1));
    }

    #[test]
    fn flip_mirrors_columns() {
        let cfg = FrontendConfig {
            frames: 1,
            size: 32,
            input: ClipInput::Gray,
            ..FrontendConfig::default()
        };
        let mut a = vec![0u8; 32 * 32];
        for r in 0..32 {
            a[r * 32] = 255; // left column white
        }
        let (mut o1, mut o2) = (Vec::new(), Vec::new());
        clip_data(&[&a], 32, &cfg, CropBox::centre(32, 0), false, &mut o1).unwrap();
        clip_data(&[&a], 32, &cfg, CropBox::centre(32, 0), true, &mut o2).unwrap();
        assert_eq!(o1[0], 0.5);
        assert_eq!(o2[31], 0.5);
        assert_eq!(o2[0], -0.5);
    }
}
