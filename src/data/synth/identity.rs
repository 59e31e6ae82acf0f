//! Synthetic identities: a real face photo (astronaut.png) reshaped and re-lit into distinct people.
//!
//! Each identity changes face geometry (size, width, height, feature placement through a smooth
//! displacement field, mirroring), appearance (gamma, contrast, skin texture, lighting direction) and the
//! background, all drawn from the identity's own seed, so identities are reproducible and distinct.

use crate::fixtures::Photo;
use crate::rng::Rng;
use anyhow::{Context, Result};
use std::sync::Arc;

/// Facial landmarks that anchor the AU displacement fields, in neutral-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Landmarks {
    /// Eye centres (subject's right = image left).
    pub eye_r: [f32; 2],
    /// See `eye_r`.
    pub eye_l: [f32; 2],
    /// Inner and outer brow points.
    pub brow_inner_r: [f32; 2],
    /// See `brow_inner_r`.
    pub brow_outer_r: [f32; 2],
    /// See `brow_inner_r`.
    pub brow_inner_l: [f32; 2],
    /// See `brow_inner_r`.
    pub brow_outer_l: [f32; 2],
    /// Upper and lower eyelid centres.
    pub lid_upper_r: [f32; 2],
    /// See `lid_upper_r`.
    pub lid_upper_l: [f32; 2],
    /// See `lid_upper_r`.
    pub lid_lower_r: [f32; 2],
    /// See `lid_upper_r`.
    pub lid_lower_l: [f32; 2],
    /// Cheek centres below the eyes.
    pub cheek_r: [f32; 2],
    /// See `cheek_r`.
    pub cheek_l: [f32; 2],
    /// Mouth corners.
    pub mouth_r: [f32; 2],
    /// See `mouth_r`.
    pub mouth_l: [f32; 2],
    /// Chin boss.
    pub chin: [f32; 2],
    /// Nose tip.
    pub nose: [f32; 2],
}

impl Landmarks {
    /// Inter-ocular distance in pixels.
    pub fn iod(&self) -> f32 {
        ((self.eye_l[0] - self.eye_r[0]).powi(2) + (self.eye_l[1] - self.eye_r[1]).powi(2)).sqrt()
    }

    /// Applies `f` to every point.
    fn map(&self, f: impl Fn([f32; 2]) -> [f32; 2]) -> Landmarks {
        Landmarks {
            eye_r: f(self.eye_r),
            eye_l: f(self.eye_l),
            brow_inner_r: f(self.brow_inner_r),
            brow_outer_r: f(self.brow_outer_r),
            brow_inner_l: f(self.brow_inner_l),
            brow_outer_l: f(self.brow_outer_l),
            lid_upper_r: f(self.lid_upper_r),
            lid_upper_l: f(self.lid_upper_l),
            lid_lower_r: f(self.lid_lower_r),
            lid_lower_l: f(self.lid_lower_l),
            cheek_r: f(self.cheek_r),
            cheek_l: f(self.cheek_l),
            mouth_r: f(self.mouth_r),
            mouth_l: f(self.mouth_l),
            chin: f(self.chin),
            nose: f(self.nose),
        }
    }

    /// Swaps left and right (after a horizontal mirror the subject's right lands on the image right).
    fn swap_sides(&self) -> Landmarks {
        Landmarks {
            eye_r: self.eye_l,
            eye_l: self.eye_r,
            brow_inner_r: self.brow_inner_l,
            brow_outer_r: self.brow_outer_l,
            brow_inner_l: self.brow_inner_r,
            brow_outer_l: self.brow_outer_r,
            lid_upper_r: self.lid_upper_l,
            lid_upper_l: self.lid_upper_r,
            lid_lower_r: self.lid_lower_l,
            lid_lower_l: self.lid_lower_r,
            cheek_r: self.cheek_l,
            cheek_l: self.cheek_r,
            mouth_r: self.mouth_l,
            mouth_l: self.mouth_r,
            ..*self
        }
    }

    /// Bounding box `[x0, y0, x1, y1]` of the face region the AUs can touch, with a margin.
    pub fn face_roi(&self, width: u32, height: u32) -> [u32; 4] {
        let iod = self.iod();
        let xs = [
            self.brow_outer_r[0],
            self.brow_outer_l[0],
            self.cheek_r[0],
            self.cheek_l[0],
        ];
        let x0 = xs.iter().cloned().fold(f32::INFINITY, f32::min) - 0.6 * iod;
        let x1 = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max) + 0.6 * iod;
        let y0 = self.brow_inner_r[1].min(self.brow_outer_l[1]) - 0.7 * iod;
        let y1 = self.chin[1] + 0.7 * iod;
        let c = |v: f32, hi: u32| v.clamp(0.0, hi as f32) as u32;
        [c(x0, width), c(y0, height), c(x1, width), c(y1, height)]
    }
}

/// Landmarks of astronaut.png (512x512), read off the photo; the eyes agree with BlazeFace's.
pub fn astronaut_landmarks() -> Landmarks {
    Landmarks {
        eye_r: [203.5, 101.5],
        eye_l: [246.5, 103.5],
        brow_inner_r: [215.0, 91.5],
        brow_outer_r: [192.0, 93.0],
        brow_inner_l: [233.5, 92.0],
        brow_outer_l: [258.5, 94.0],
        lid_upper_r: [203.5, 98.5],
        lid_upper_l: [246.5, 100.5],
        lid_lower_r: [203.5, 106.0],
        lid_lower_l: [246.5, 108.0],
        cheek_r: [200.0, 123.0],
        cheek_l: [250.0, 123.0],
        mouth_r: [205.0, 141.5],
        mouth_l: [245.0, 140.0],
        chin: [225.0, 172.0],
        nose: [225.0, 128.0],
    }
}

/// The face an identity is made from: a photo, and where in it the reference face layout
/// ([`astronaut_landmarks`], in astronaut.png's pixels) lands. The identity is built in reference
/// coordinates and its pixels are read from the photo through `to_photo`.
#[derive(Clone)]
pub struct FaceSource {
    /// The whole photo, gray (shared by the faces of a group photo).
    pub photo: Arc<Photo>,
    /// Reference (astronaut.png) pixels → this photo's pixels, as `[a, b, tx, c, d, ty]`
    /// (x' = a·x + b·y + tx, y' = c·x + d·y + ty); `None` for astronaut.png itself.
    pub to_photo: Option<[f32; 6]>,
    /// Where the face comes from (file and face number), for provenance.
    pub label: String,
}

impl FaceSource {
    /// astronaut.png as the reference face (its identities are bit-identical to those made from
    /// the photo before other faces existed).
    pub fn astronaut(photo: Photo) -> FaceSource {
        FaceSource {
            photo: Arc::new(photo),
            to_photo: None,
            label: "astronaut.png".into(),
        }
    }

    /// A face of `photo` at BlazeFace keypoints (right eye, left eye, mouth centre: the subject's
    /// right is the image left): the similarity that carries the reference eyes onto them (the
    /// eyes are the detector's most precise points: identities made so place their eyes as well as
    /// the reference layout does). `None` for a face the upright frontal layout does not fit: the
    /// mouth more than 0.3 eye distances off the perpendicular through the eyes' midpoint (a
    /// turned head), or not 0.7 to 1.5 eye distances below the eye line.
    pub fn at_keypoints(
        photo: Arc<Photo>,
        eye_r: [f32; 2],
        eye_l: [f32; 2],
        mouth: [f32; 2],
        label: impl Into<String>,
    ) -> Option<FaceSource> {
        let (dx, dy) = (eye_l[0] - eye_r[0], eye_l[1] - eye_r[1]);
        let iod = dx.hypot(dy);
        let mid = [(eye_r[0] + eye_l[0]) / 2.0, (eye_r[1] + eye_l[1]) / 2.0];
        let (mx, my) = (mouth[0] - mid[0], mouth[1] - mid[1]);
        // Along the eye line and perpendicular to it (down the face), in eye distances.
        let along = (mx * dx + my * dy) / (iod * iod);
        let down = (my * dx - mx * dy) / (iod * iod);
        if iod <= 0.0 || along.abs() > 0.3 || !(0.7..=1.5).contains(&down) {
            return None;
        }
        let r = astronaut_landmarks();
        Some(FaceSource {
            photo,
            to_photo: Some(similarity_fit(&[r.eye_r, r.eye_l], &[eye_r, eye_l])),
            label: label.into(),
        })
    }

    /// Reference pixels → photo pixels.
    fn map(&self, p: [f32; 2]) -> [f32; 2] {
        match self.to_photo {
            None => p,
            Some([a, b, tx, c, d, ty]) => [a * p[0] + b * p[1] + tx, c * p[0] + d * p[1] + ty],
        }
    }

    /// Photo pixels per reference pixel.
    pub fn scale(&self) -> f32 {
        self.to_photo
            .map_or(1.0, |m| (m[0] * m[0] + m[3] * m[3]).sqrt())
    }
}

/// The least-squares similarity (rotation, uniform scale, translation) taking `from` to `to`, as
/// `[a, b, tx, c, d, ty]` with a = d = s·cos θ, c = −b = s·sin θ.
pub fn similarity_fit(from: &[[f32; 2]], to: &[[f32; 2]]) -> [f32; 6] {
    let n = from.len() as f32;
    let mean = |v: &[[f32; 2]]| {
        let (x, y) = v.iter().fold((0.0, 0.0), |a, p| (a.0 + p[0], a.1 + p[1]));
        [x / n, y / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut sxx, mut sxy, mut norm) = (0.0f32, 0.0f32, 0.0f32);
    for (f, t) in from.iter().zip(to) {
        let (fx, fy) = (f[0] - mf[0], f[1] - mf[1]);
        let (tx, ty) = (t[0] - mt[0], t[1] - mt[1]);
        sxx += fx * tx + fy * ty;
        sxy += fx * ty - fy * tx;
        norm += fx * fx + fy * fy;
    }
    let (a, c) = (sxx / norm.max(1e-9), sxy / norm.max(1e-9));
    [
        a,
        -c,
        mt[0] - (a * mf[0] - c * mf[1]),
        c,
        a,
        mt[1] - (c * mf[0] + a * mf[1]),
    ]
}

/// A synthetic person at a neutral pose in a full frame.
pub struct Identity {
    /// Identity index (subject number − 1).
    pub index: u32,
    /// Neutral frame, gray, `width`×`height`.
    pub neutral: Vec<u8>,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Landmarks in the neutral frame.
    pub landmarks: Landmarks,
    /// Canonical-crop pixels → frame pixels (IOD in frame / IOD in the 128 px crop).
    pub crop_to_frame_scale: f32,
    /// Parameters drawn for this identity (for the dataset's README / provenance).
    pub description: String,
    /// The face it was made from (`faces-NAME#k`, or `astronaut`).
    pub face: String,
}

/// A smooth displacement blob used to reshape faces.
struct Bump {
    c: [f32; 2],
    sigma: f32,
    v: [f32; 2],
}

fn bumps_at(bumps: &[Bump], p: [f32; 2]) -> [f32; 2] {
    let mut d = [0.0f32; 2];
    for b in bumps {
        let r2 = (p[0] - b.c[0]).powi(2) + (p[1] - b.c[1]).powi(2);
        let w = (-r2 / (2.0 * b.sigma * b.sigma)).exp();
        d[0] += w * b.v[0];
        d[1] += w * b.v[1];
    }
    d
}

/// Frame pixels per canonical-crop pixel for a face with these landmarks: the scale of the similarity
/// the face stage fits from eyes and mouth to the default alignment template, so AU amplitudes are
/// exactly pixels of the aligned 128 px crop.
pub fn aligned_scale(lm: &Landmarks) -> f32 {
    let tpl = crate::face::CropTemplate::from_config(&crate::face::AlignConfig::default());
    let mouth = [
        (lm.mouth_r[0] + lm.mouth_l[0]) / 2.0,
        (lm.mouth_r[1] + lm.mouth_l[1]) / 2.0,
    ];
    let mut kp = [[0f32; 2]; 6];
    kp[0] = lm.eye_r;
    kp[1] = lm.eye_l;
    kp[3] = mouth;
    tpl.crop_to_frame(&kp)
        .map_or(lm.iod() / (0.32 * 128.0), |a| a.scale() as f32)
}

/// Builds identity `index` from a face, deterministically from `seed`. Everything is laid out in
/// reference (astronaut.png) pixels; the pixels come from the face's photo.
pub fn make_identity(
    face: &FaceSource,
    index: u32,
    seed: u64,
    width: u32,
    height: u32,
) -> Result<Identity> {
    let mut rng = Rng::new(seed ^ (0xA5A5_0000 + index as u64 * 7919));
    let base = astronaut_landmarks();
    let iod_photo = base.iod();
    // Geometry: face size, aspect, position, mirroring.
    let scale = uni(&mut rng, 2.0, 2.5) as f32;
    let sx = scale * uni(&mut rng, 0.9, 1.1) as f32;
    let sy = scale * uni(&mut rng, 0.93, 1.07) as f32;
    let rot = uni(&mut rng, -4.0, 4.0).to_radians() as f32;
    let mirror = index % 2 == 1;
    let centre_photo = [225.0f32, 125.0];
    let centre_frame = [
        width as f32 / 2.0 + uni(&mut rng, -40.0, 40.0) as f32,
        height as f32 / 2.0 + uni(&mut rng, -20.0, 25.0) as f32,
    ];
    // Feature placement: eyes apart/together, brows up/down, mouth up/down, nose length, jaw width.
    let e = iod_photo;
    let spread = uni(&mut rng, -0.07, 0.07) as f32 * e;
    let brow = uni(&mut rng, -0.07, 0.07) as f32 * e;
    let mouth = uni(&mut rng, -0.08, 0.08) as f32 * e;
    let nose = uni(&mut rng, -0.05, 0.05) as f32 * e;
    let jaw = uni(&mut rng, -0.08, 0.08) as f32 * e;
    let bumps = vec![
        Bump {
            c: base.eye_r,
            sigma: 0.35 * e,
            v: [-spread, 0.0],
        },
        Bump {
            c: base.eye_l,
            sigma: 0.35 * e,
            v: [spread, 0.0],
        },
        Bump {
            c: [224.0, 92.0],
            sigma: 0.4 * e,
            v: [0.0, -brow],
        },
        Bump {
            c: [225.0, 141.0],
            sigma: 0.4 * e,
            v: [0.0, mouth],
        },
        Bump {
            c: base.nose,
            sigma: 0.25 * e,
            v: [0.0, nose],
        },
        Bump {
            c: [190.0, 160.0],
            sigma: 0.35 * e,
            v: [-jaw, 0.0],
        },
        Bump {
            c: [260.0, 160.0],
            sigma: 0.35 * e,
            v: [jaw, 0.0],
        },
    ];
    // photo → frame: p' = p + bumps(p); q = R·S·(p' − c) (x mirrored) + centre.
    let (cr, sr) = (rot.cos(), rot.sin());
    let fwd = |p: [f32; 2]| -> [f32; 2] {
        let d = bumps_at(&bumps, p);
        let (mut x, y) = (
            (p[0] + d[0] - centre_photo[0]) * sx,
            (p[1] + d[1] - centre_photo[1]) * sy,
        );
        if mirror {
            x = -x;
        }
        [
            centre_frame[0] + cr * x - sr * y,
            centre_frame[1] + sr * x + cr * y,
        ]
    };
    let inv_affine = |q: [f32; 2]| -> [f32; 2] {
        let (dx, dy) = (q[0] - centre_frame[0], q[1] - centre_frame[1]);
        let (mut x, y) = (cr * dx + sr * dy, -sr * dx + cr * dy);
        if mirror {
            x = -x;
        }
        [x / sx + centre_photo[0], y / sy + centre_photo[1]]
    };
    // Backward map for remap: solve p + bumps(p) = p' by two fixed-point steps (bumps are small).
    let (w, h) = (width as usize, height as usize);
    let mut mapx = vec![0f32; w * h];
    let mut mapy = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let pp = inv_affine([x as f32, y as f32]);
            let mut p = pp;
            for _ in 0..2 {
                let d = bumps_at(&bumps, p);
                p = [pp[0] - d[0], pp[1] - d[1]];
            }
            mapx[y * w + x] = p[0];
            mapy[y * w + x] = p[1];
        }
    }
    let warped = match face.to_photo {
        None => remap_gray(
            &face.photo.gray,
            face.photo.width,
            face.photo.height,
            &mapx,
            &mapy,
            w,
            h,
        )?,
        Some(_) => {
            let (mut px, mut py) = (vec![0f32; w * h], vec![0f32; w * h]);
            for i in 0..w * h {
                let q = face.map([mapx[i], mapy[i]]);
                px[i] = q[0];
                py[i] = q[1];
            }
            remap_gray(
                &face.photo.gray,
                face.photo.width,
                face.photo.height,
                &px,
                &py,
                w,
                h,
            )?
        }
    };

    // Appearance: tone curve, skin texture, lighting, background.
    let gamma = uni(&mut rng, 0.7, 1.4) as f32;
    let contrast = uni(&mut rng, 0.75, 1.15) as f32;
    let bright = uni(&mut rng, -20.0, 20.0) as f32;
    let light_dir = uni(&mut rng, 0.0, std::f64::consts::TAU) as f32;
    let light = uni(&mut rng, 0.05, 0.25) as f32;
    let tex_amp = uni(&mut rng, 0.02, 0.07) as f32;
    let texture = smooth_noise(w, h, 24, &mut rng);
    let grain = smooth_noise(w, h, 2, &mut rng);
    let bg_level = uni(&mut rng, 30.0, 200.0) as f32;
    let bg_grad = [
        uni(&mut rng, -0.15, 0.15) as f32,
        uni(&mut rng, -0.15, 0.15) as f32,
    ];
    let bg_tex_amp = uni(&mut rng, 5.0, 30.0) as f32;
    let bg_texture = smooth_noise(w, h, 40, &mut rng);
    let stripes = if rng.uniform() < 0.4 {
        uni(&mut rng, 0.01, 0.05) as f32
    } else {
        0.0
    };
    // Head region (face and hair) in photo coordinates: an ellipse; outside it is background.
    let head_c = [225.0f32, 112.0];
    let head_ax = [82.0f32, 100.0];
    let lm = base.map(fwd);
    let lm = if mirror { lm.swap_sides() } else { lm };
    let fc = [
        (lm.eye_r[0] + lm.eye_l[0]) / 2.0,
        (lm.eye_r[1] + lm.eye_l[1] + lm.mouth_r[1] + lm.mouth_l[1]) / 4.0,
    ];
    let reach = lm.iod() * 2.5;
    let mut neutral = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let p = [mapx[i], mapy[i]];
            let v = warped[i] as f32 / 255.0;
            let mut v = v.max(0.0).powf(gamma);
            v = (v - 0.5) * contrast + 0.5;
            let (dx, dy) = (x as f32 - fc[0], y as f32 - fc[1]);
            let along = (dx * light_dir.cos() + dy * light_dir.sin()) / reach;
            v *= 1.0 + light * along.clamp(-1.0, 1.0) + tex_amp * texture[i];
            let face_val = v * 255.0 + bright + 3.0 * grain[i];
            let bg = bg_level
                + 255.0 * (bg_grad[0] * x as f32 / w as f32 + bg_grad[1] * y as f32 / h as f32)
                + bg_tex_amp * bg_texture[i]
                + if stripes > 0.0 {
                    15.0 * (x as f32 * stripes * std::f32::consts::TAU).sin()
                } else {
                    0.0
                };
            // Soft edge of the head ellipse (in photo units), feathered over ~6 photo pixels.
            let r = ((p[0] - head_c[0]) / head_ax[0]).powi(2)
                + ((p[1] - head_c[1]) / head_ax[1]).powi(2);
            let alpha = ((1.0 - r.sqrt()) * 15.0 + 0.5).clamp(0.0, 1.0);
            neutral[i] = (alpha * face_val + (1.0 - alpha) * bg)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    let description = format!(
        "scale {scale:.2} aspect {:.2} roll {:.1}deg mirror {mirror} gamma {gamma:.2} contrast {contrast:.2} \
         light {light:.2}@{:.0}deg texture {tex_amp:.3} background {bg_level:.0}",
        sx / sy,
        rot.to_degrees(),
        light_dir.to_degrees()
    );
    Ok(Identity {
        index,
        neutral,
        width,
        height,
        crop_to_frame_scale: aligned_scale(&lm),
        landmarks: lm,
        description,
        face: face.label.clone(),
    })
}

fn uni(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

/// Bicubic remap of a gray image with per-pixel source coordinates (border reflected).
pub fn remap_gray(
    src: &[u8],
    sw: u32,
    sh: u32,
    mapx: &[f32],
    mapy: &[f32],
    w: usize,
    h: usize,
) -> Result<Vec<u8>> {
    use opencv::core::{BORDER_REFLECT, Mat, Scalar};
    use opencv::prelude::*;
    let s =
        Mat::new_rows_cols_with_data(sh as i32, sw as i32, src).context("wrapping the photo")?;
    let mx = Mat::new_rows_cols_with_data(h as i32, w as i32, mapx).context("map x")?;
    let my = Mat::new_rows_cols_with_data(h as i32, w as i32, mapy).context("map y")?;
    let mut out = Mat::default();
    opencv::imgproc::remap(
        &s,
        &mut out,
        &mx,
        &my,
        opencv::imgproc::INTER_CUBIC,
        BORDER_REFLECT,
        Scalar::all(0.0),
    )
    .context("remap")?;
    Ok(out.data_bytes()?.to_vec())
}

/// Smooth random field in [-1, 1] with features about `cell` pixels across (bilinear upsampled grid).
pub fn smooth_noise(w: usize, h: usize, cell: usize, rng: &mut Rng) -> Vec<f32> {
    let gw = w / cell + 2;
    let gh = h / cell + 2;
    let grid: Vec<f32> = (0..gw * gh)
        .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let fy = y as f32 / cell as f32;
        let (y0, ty) = (fy as usize, fy.fract());
        for x in 0..w {
            let fx = x as f32 / cell as f32;
            let (x0, tx) = (fx as usize, fx.fract());
            let g = |gx: usize, gy: usize| grid[gy * gw + gx];
            let top = g(x0, y0) * (1.0 - tx) + g(x0 + 1, y0) * tx;
            let bot = g(x0, y0 + 1) * (1.0 - tx) + g(x0 + 1, y0 + 1) * tx;
            out[y * w + x] = top * (1.0 - ty) + bot * ty;
        }
    }
    out
}
