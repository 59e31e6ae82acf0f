//! Capture conditions: how the camera sees a clip or video. Drawn once per clip or video in the plan
//! (so the seed decides them), applied per frame by the renderer: face size, out-of-plane head pose,
//! tone, illumination drift and flicker, defocus and motion blur, sensor noise and JPEG quality.

use crate::rng::Rng;
use anyhow::Result;
use serde::Serialize;

/// Ranges each clip's or video's capture conditions are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaptureRanges {
    /// Face size relative to the identity's (CASME II's faces are about 280x340 px in 640x480,
    /// SAMM's larger): the frame is zoomed about the face.
    pub zoom: [f32; 2],
    /// Largest static out-of-plane yaw and pitch, degrees.
    pub out_of_plane_deg: f32,
    /// Defocus: Gaussian blur standard deviation, pixels.
    pub defocus_px: [f32; 2],
    /// Motion blur: length of a linear kernel at a random angle, pixels.
    pub motion_blur_px: [f32; 2],
    /// JPEG quality of the frame files.
    pub jpeg_quality: [i32; 2],
    /// Sensor noise, gray levels (standard deviation).
    pub noise_sigma: [f32; 2],
    /// Tone curve exponent on normalised gray.
    pub gamma: [f32; 2],
    /// Contrast gain about mid-gray.
    pub contrast: [f32; 2],
    /// Largest illumination drift over a clip or ten seconds of video (relative).
    pub drift: f32,
    /// Illumination flicker (relative amplitude).
    pub flicker: [f32; 2],
}

impl CaptureRanges {
    /// The ranges of the `general` and `heldout` presets.
    pub const GENERAL: CaptureRanges = CaptureRanges {
        zoom: [0.8, 1.3],
        out_of_plane_deg: 5.0,
        defocus_px: [0.0, 1.2],
        motion_blur_px: [0.0, 2.0],
        jpeg_quality: [70, 95],
        noise_sigma: [0.5, 4.0],
        gamma: [0.75, 1.35],
        contrast: [0.8, 1.2],
        drift: 0.05,
        flicker: [0.0, 0.03],
    };
}

/// One clip's or video's capture conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capture {
    /// Face size relative to the identity's.
    pub zoom: f32,
    /// Static yaw, degrees.
    pub yaw_deg: f32,
    /// Static pitch, degrees.
    pub pitch_deg: f32,
    /// Defocus blur sigma, pixels.
    pub defocus_px: f32,
    /// Motion blur length, pixels.
    pub motion_blur_px: f32,
    /// Motion blur direction, degrees.
    pub motion_blur_deg: f32,
    /// JPEG quality of the frame files.
    pub jpeg_quality: i32,
    /// Sensor noise, gray levels.
    pub noise_sigma: f32,
    /// Tone curve exponent.
    pub gamma: f32,
    /// Contrast gain about mid-gray.
    pub contrast: f32,
    /// Illumination drift over a clip or ten seconds of video (relative, signed).
    pub drift: f32,
    /// Illumination flicker amplitude (relative).
    pub flicker: f32,
}

impl Capture {
    /// Draws conditions within `r`.
    pub fn draw(rng: &mut Rng, r: &CaptureRanges) -> Capture {
        let mut within = |a: [f32; 2]| a[0] + (a[1] - a[0]) * rng.uniform() as f32;
        let zoom = within(r.zoom);
        let o = r.out_of_plane_deg;
        let yaw_deg = within([-o, o]);
        let pitch_deg = within([-o, o]);
        let defocus_px = within(r.defocus_px);
        let motion_blur_px = within(r.motion_blur_px);
        let motion_blur_deg = within([0.0, 180.0]);
        let q = r.jpeg_quality;
        let jpeg_quality = within([q[0] as f32, q[1] as f32 + 0.999]).floor() as i32;
        let noise_sigma = within(r.noise_sigma);
        let gamma = within(r.gamma);
        let contrast = within(r.contrast);
        let drift = within([-r.drift, r.drift]);
        let flicker = within(r.flicker);
        Capture {
            zoom,
            yaw_deg,
            pitch_deg,
            defocus_px,
            motion_blur_px,
            motion_blur_deg,
            jpeg_quality,
            noise_sigma,
            gamma,
            contrast,
            drift,
            flicker,
        }
    }

    /// The frame → frame homography of the static pose: zoom about `centre`, then a yaw/pitch
    /// rotation of the face plane about `centre` seen by a camera of `focal_px`.
    pub fn pose(&self, centre: [f32; 2], focal_px: f32) -> [f64; 9] {
        let (sy, cy) = (self.yaw_deg as f64).to_radians().sin_cos();
        let (sx, cx) = (self.pitch_deg as f64).to_radians().sin_cos();
        let f = focal_px as f64;
        let z = self.zoom as f64;
        // R = Ry(yaw) · Rx(pitch); the plane point (X, Y, 0) at depth f projects through
        // [[r11, r12, 0], [r21, r22, 0], [r31 / f, r32 / f, 1]] (centred coordinates).
        let tilt = [cy, sy * sx, 0.0, 0.0, cx, 0.0, -sy / f, cy * sx / f, 1.0];
        let zoom = [z, 0.0, 0.0, 0.0, z, 0.0, 0.0, 0.0, 1.0];
        let (px, py) = (centre[0] as f64, centre[1] as f64);
        let from = [1.0, 0.0, -px, 0.0, 1.0, -py, 0.0, 0.0, 1.0];
        let to = [1.0, 0.0, px, 0.0, 1.0, py, 0.0, 0.0, 1.0];
        mul3(&to, &mul3(&tilt, &mul3(&zoom, &from)))
    }
}

/// 3x3 row-major product.
pub fn mul3(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
    let mut out = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            out[r * 3 + c] = (0..3).map(|k| a[r * 3 + k] * b[k * 3 + c]).sum();
        }
    }
    out
}

/// Tone, defocus and motion blur of one gray frame: the light reaching the sensor, as f32 levels.
pub fn apply_optics(gray: &[u8], w: usize, h: usize, c: &Capture) -> Result<Vec<f32>> {
    // The tone curve of every gray level, once per frame rather than once per pixel.
    let inv = 1.0f32 / 255.0;
    let tone: Vec<f32> = (0..256)
        .map(|v| {
            let t = (v as f32 * inv).powf(c.gamma);
            ((t - 0.5) * c.contrast + 0.5) * 255.0
        })
        .collect();
    let mut pixels: Vec<f32> = gray.iter().map(|&v| tone[v as usize]).collect();
    if c.defocus_px < 0.05 && c.motion_blur_px < 0.5 {
        return Ok(pixels);
    }
    use opencv::core::{BORDER_REFLECT, Mat, Point, Size};
    use opencv::prelude::*;
    let mut m = Mat::new_rows_cols_with_data(h as i32, w as i32, &pixels)?.try_clone()?;
    if c.defocus_px >= 0.05 {
        let mut out = Mat::default();
        opencv::imgproc::gaussian_blur(
            &m,
            &mut out,
            Size::new(0, 0),
            c.defocus_px as f64,
            c.defocus_px as f64,
            BORDER_REFLECT,
        )?;
        m = out;
    }
    if c.motion_blur_px >= 0.5 {
        let kernel = line_kernel(c.motion_blur_px, c.motion_blur_deg);
        let side = (kernel.len() as f64).sqrt() as i32;
        let k = Mat::new_rows_cols_with_data(side, side, &kernel)?;
        let mut out = Mat::default();
        opencv::imgproc::filter_2d(
            &m,
            &mut out,
            -1,
            &k,
            Point::new(-1, -1),
            0.0,
            BORDER_REFLECT,
        )?;
        m = out;
    }
    pixels.copy_from_slice(m.data_typed::<f32>()?);
    Ok(pixels)
}

/// A normalised linear blur kernel of `length` pixels at `deg` (odd square, antialiased by
/// sampling the line finely).
fn line_kernel(length: f32, deg: f32) -> Vec<f32> {
    let side = (length.ceil() as usize) | 1;
    let side = side.max(3);
    let c = (side / 2) as f32;
    let (s, co) = deg.to_radians().sin_cos();
    let mut k = vec![0f32; side * side];
    let steps = 64;
    for i in 0..=steps {
        let t = (i as f32 / steps as f32 - 0.5) * length;
        let (x, y) = (c + t * co, c + t * s);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        for (dx, dy, wt) in [
            (0, 0, (1.0 - fx) * (1.0 - fy)),
            (1, 0, fx * (1.0 - fy)),
            (0, 1, (1.0 - fx) * fy),
            (1, 1, fx * fy),
        ] {
            let (xi, yi) = (x0 as i64 + dx, y0 as i64 + dy);
            if (0..side as i64).contains(&xi) && (0..side as i64).contains(&yi) {
                k[yi as usize * side + xi as usize] += wt;
            }
        }
    }
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum.max(1e-9));
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_the_pose_keeps_the_centre() {
        let mut rng = Rng::new(4);
        let r = CaptureRanges::GENERAL;
        for _ in 0..100 {
            let c = Capture::draw(&mut rng, &r);
            assert!((r.zoom[0]..=r.zoom[1]).contains(&c.zoom));
            assert!(c.yaw_deg.abs() <= 5.0 && c.pitch_deg.abs() <= 5.0);
            assert!((70..=95).contains(&c.jpeg_quality), "{}", c.jpeg_quality);
            let h = c.pose([320.0, 240.0], 900.0);
            // The centre maps onto itself.
            let w = h[6] * 320.0 + h[7] * 240.0 + h[8];
            let x = (h[0] * 320.0 + h[1] * 240.0 + h[2]) / w;
            let y = (h[3] * 320.0 + h[4] * 240.0 + h[5]) / w;
            assert!((x - 320.0).abs() < 1e-6 && (y - 240.0).abs() < 1e-6);
        }
        let k = line_kernel(2.0, 30.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn blur_smooths_and_keeps_the_mean() {
        let (w, h) = (32, 32);
        let gray: Vec<u8> = (0..w * h)
            .map(|i| if (i / w + i % w) % 2 == 0 { 200 } else { 50 })
            .collect();
        let c = Capture {
            zoom: 1.0,
            yaw_deg: 0.0,
            pitch_deg: 0.0,
            defocus_px: 1.0,
            motion_blur_px: 2.0,
            motion_blur_deg: 0.0,
            jpeg_quality: 90,
            noise_sigma: 0.0,
            gamma: 1.0,
            contrast: 1.0,
            drift: 0.0,
            flicker: 0.0,
        };
        let px = apply_optics(&gray, w, h, &c).unwrap();
        let mean = px.iter().sum::<f32>() / px.len() as f32;
        assert!((mean - 125.0).abs() < 2.0, "{mean}");
        let spread = px.iter().map(|v| (v - mean).abs()).fold(0.0, f32::max);
        assert!(spread < 20.0, "checkerboard not smoothed: {spread}");
    }
}
