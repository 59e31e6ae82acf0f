//! Generated face videos with known motion and sensor noise, for alignment tests and benchmarks.
//! A real face photo (astronaut.png from the manifest) is moved by an exact similarity per frame,
//! noise is added, and the result is encoded losslessly so the real ingest path reads it back.

use crate::face::Similarity;
use crate::output::video::{VideoCodec, VideoWriter};
use crate::rng::Rng;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// How the face moves over the clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// Perfectly still head: only sensor noise changes between frames.
    Still,
    /// Smooth head sway: translation of `amplitude_px` and rotation of `rotation_deg` along a sine with
    /// `period_frames`, plus a linear drift of `drift_px` over the clip.
    Sway {
        /// Peak translation in pixels.
        amplitude_px: f64,
        /// Peak in-plane rotation in degrees.
        rotation_deg: f64,
        /// Sine period in frames.
        period_frames: f64,
        /// Total linear drift in x over the clip.
        drift_px: f64,
    },
}

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct FaceVideoSpec {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frame rate.
    pub fps: f64,
    /// Number of frames.
    pub frames: u32,
    /// Gaussian sensor noise, standard deviation in gray levels.
    pub noise_sigma: f64,
    /// Head motion.
    pub motion: Motion,
    /// Noise seed.
    pub seed: u64,
}

/// A gray photo with the point to centre in the frame.
#[derive(Clone)]
pub struct Photo {
    /// Pixels, row-major.
    pub gray: Vec<u8>,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// The point of the photo placed at the frame centre (e.g. between the eyes).
    pub anchor: [f64; 2],
}

impl Photo {
    /// Loads an image file as gray.
    pub fn load(path: &Path, anchor: [f64; 2]) -> Result<Photo> {
        use opencv::prelude::*;
        let m = crate::imgio::imread(path, crate::imgio::IMREAD_GRAYSCALE)
            .with_context(|| format!("cannot read image {}", path.display()))?;
        if m.empty() {
            bail!("cannot decode image {}", path.display());
        }
        Ok(Photo {
            gray: m.data_bytes()?.to_vec(),
            width: m.cols() as u32,
            height: m.rows() as u32,
            anchor,
        })
    }

    /// The astronaut photo from the model cache, anchored between the eyes.
    pub fn astronaut(models: &crate::models::ModelsConfig) -> Result<Photo> {
        let p = crate::assets::artefact_path(models, "astronaut")?;
        Photo::load(&p, [227.0, 115.0])
    }
}

/// The photo→frame transform of frame `i`.
pub fn frame_transform(spec: &FaceVideoSpec, photo: &Photo, i: u32) -> Similarity {
    let (dx, dy, rot) = match spec.motion {
        Motion::Still => (0.0, 0.0, 0.0),
        Motion::Sway {
            amplitude_px,
            rotation_deg,
            period_frames,
            drift_px,
        } => {
            let ph = 2.0 * std::f64::consts::PI * i as f64 / period_frames;
            let drift = drift_px * i as f64 / spec.frames.max(1) as f64;
            (
                amplitude_px * ph.sin() + drift,
                0.5 * amplitude_px * (0.7 * ph).cos(),
                rotation_deg.to_radians() * (0.5 * ph).sin(),
            )
        }
    };
    let (c, s) = (rot.cos(), rot.sin());
    let centre = [spec.width as f64 / 2.0 + dx, spec.height as f64 / 2.0 + dy];
    // Rotate about the anchor, then put the anchor at the (moving) frame centre.
    Similarity {
        a: c,
        b: s,
        tx: centre[0] - (c * photo.anchor[0] - s * photo.anchor[1]),
        ty: centre[1] - (s * photo.anchor[0] + c * photo.anchor[1]),
    }
}

/// Renders frame `i` into `out` (`width*height` bytes).
pub fn render_frame(
    spec: &FaceVideoSpec,
    photo: &Photo,
    i: u32,
    rng: &mut Rng,
    out: &mut Vec<u8>,
) -> Result<()> {
    use opencv::core::{BORDER_REFLECT, Mat, Scalar, Size};
    let t = frame_transform(spec, photo, i);
    let src = Mat::new_rows_cols_with_data(photo.height as i32, photo.width as i32, &photo.gray)?;
    let m = t.to_affine();
    let m = Mat::from_slice_2d(&[[m[0], m[1], m[2]], [m[3], m[4], m[5]]])?;
    let (w, h) = (spec.width as usize, spec.height as usize);
    let mut f32img = Mat::default();
    {
        use opencv::prelude::*;
        let mut srcf = Mat::default();
        src.convert_to(&mut srcf, opencv::core::CV_32F, 1.0, 0.0)?;
        opencv::imgproc::warp_affine(
            &srcf,
            &mut f32img,
            &m,
            Size::new(w as i32, h as i32),
            opencv::imgproc::INTER_CUBIC,
            BORDER_REFLECT,
            Scalar::all(0.0),
        )?;
        let px = f32img.data_typed::<f32>()?;
        out.resize(w * h, 0);
        for (o, v) in out.iter_mut().zip(px) {
            let n = if spec.noise_sigma > 0.0 {
                rng.gaussian() * spec.noise_sigma
            } else {
                0.0
            };
            *o = (*v as f64 + n).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(())
}

/// Byte offsets of the JPEG start-of-image markers in an MJPEG file (one per frame; entropy-coded
/// data never holds `FF D8`), for tests that damage a chosen frame.
pub fn jpeg_starts(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(3)
        .enumerate()
        .filter(|(_, w)| w == &[0xff, 0xd8, 0xff])
        .map(|(i, _)| i)
        .collect()
}

/// Writes the clip as a lossless video (`.mkv`, FFV1) and returns the true photo→frame transforms.
pub fn write_face_video(
    spec: &FaceVideoSpec,
    photo: &Photo,
    path: &Path,
) -> Result<Vec<Similarity>> {
    write_face_video_with(spec, photo, path, VideoCodec::Ffv1)
}

/// As [`write_face_video`] with a chosen codec (`Raw` for decode-free benchmarks).
pub fn write_face_video_with(
    spec: &FaceVideoSpec,
    photo: &Photo,
    path: &Path,
    codec: VideoCodec,
) -> Result<Vec<Similarity>> {
    let mut w = VideoWriter::create_with(path, codec, spec.width, spec.height, spec.fps)?;
    let mut rng = Rng::new(spec.seed);
    let mut buf = Vec::new();
    let mut truth = Vec::with_capacity(spec.frames as usize);
    for i in 0..spec.frames {
        render_frame(spec, photo, i, &mut rng, &mut buf)?;
        w.push(&buf)?;
        truth.push(frame_transform(spec, photo, i));
    }
    w.finish()?;
    Ok(truth)
}

/// Largest absolute element-wise difference of two tensors of one shape (panics on a mismatch: for tests).
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("tensors of one shape and dtype f32")
}
