//! Similarity transforms between frame and canonical crop, and the warp that makes the crop.

use super::bilinear::GrayView;
use anyhow::Result;

/// A 2D similarity `x' = a·x − b·y + tx, y' = b·x + a·y + ty` (rotation, uniform scale, shift).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// scale·cos θ
    pub a: f64,
    /// scale·sin θ
    pub b: f64,
    /// x shift
    pub tx: f64,
    /// y shift
    pub ty: f64,
}

impl Similarity {
    /// The identity transform.
    pub const IDENTITY: Similarity = Similarity {
        a: 1.0,
        b: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    /// Maps a point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform (a similarity with non-zero scale is always invertible).
    pub fn inverse(&self) -> Similarity {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub fn compose(&self, other: &Similarity) -> Similarity {
        Similarity {
            a: self.a * other.a - self.b * other.b,
            b: self.b * other.a + self.a * other.b,
            tx: self.a * other.tx - self.b * other.ty + self.tx,
            ty: self.b * other.tx + self.a * other.ty + self.ty,
        }
    }

    /// Uniform scale factor.
    pub fn scale(&self) -> f64 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    /// Least-squares similarity taking `src[i]` to `dst[i]` (Umeyama without reflection).
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Similarity> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let mean = |pts: &[[f64; 2]]| {
            let s = pts[..n]
                .iter()
                .fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
            [s[0] / n as f64, s[1] / n as f64]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (px, py) = (src[i][0] - ms[0], src[i][1] - ms[1]);
            let (qx, qy) = (dst[i][0] - md[0], dst[i][1] - md[1]);
            num_a += px * qx + py * qy;
            num_b += px * qy - py * qx;
            den += px * px + py * py;
        }
        if den <= 1e-12 {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        Some(Similarity {
            a,
            b,
            tx: md[0] - (a * ms[0] - b * ms[1]),
            ty: md[1] - (b * ms[0] + a * ms[1]),
        })
    }

    /// As a row-major 2x3 affine matrix.
    pub fn to_affine(&self) -> [f64; 6] {
        [self.a, -self.b, self.tx, self.b, self.a, self.ty]
    }
}

/// Canonical crop geometry: where the eyes and mouth land in the crop.
#[derive(Debug, Clone, Copy)]
pub struct CropTemplate {
    /// Crop side in pixels.
    pub size: u32,
    /// Right eye, left eye, mouth in crop pixels.
    pub points: [[f64; 2]; 3],
}

impl CropTemplate {
    /// Builds the template from the alignment configuration (fractions of the crop size).
    pub fn from_config(cfg: &crate::face::AlignConfig) -> Self {
        let s = cfg.size as f64;
        let p = |f: [f32; 2]| [f[0] as f64 * s, f[1] as f64 * s];
        Self {
            size: cfg.size,
            points: [p(cfg.eye_right), p(cfg.eye_left), p(cfg.mouth)],
        }
    }

    /// The crop→frame transform that puts detected right eye, left eye and mouth on the template.
    pub fn crop_to_frame(&self, keypoints: &[[f32; 2]; 6]) -> Option<Similarity> {
        let kp = |i: usize| [keypoints[i][0] as f64, keypoints[i][1] as f64];
        let frame_pts = [kp(0), kp(1), kp(3)];
        Similarity::fit(&self.points, &frame_pts)
    }
}

/// Warps the gray frame into a `size`×`size` crop with `crop_to_frame` (bilinear, border replicated).
pub fn warp_crop(
    frame: &[u8],
    width: usize,
    height: usize,
    crop_to_frame: &Similarity,
    size: u32,
    out: &mut Vec<u8>,
) -> Result<()> {
    warp_rect(frame, width, height, crop_to_frame, [0, 0, size, size], out)
}

/// Warps only the crop rectangle `[x, y, w, h]` (crop coordinates) into `out` (`w*h` bytes): the
/// registration needs just its region, a fraction of the crop.
///
/// When the face is larger in the frame than in the crop (scale ≥ 1.5) the needed frame region is first
/// reduced by Gaussian pyramid levels: bilinear sampling alone would alias, and aliasing turns sub-pixel
/// skin motion — the signal micro-expressions live in — into noise.
pub fn warp_rect(
    frame: &[u8],
    width: usize,
    height: usize,
    crop_to_frame: &Similarity,
    rect: [u32; 4],
    out: &mut Vec<u8>,
) -> Result<()> {
    let shift = Similarity {
        a: 1.0,
        b: 0.0,
        tx: rect[0] as f64,
        ty: rect[1] as f64,
    };
    let rect_to_frame = crop_to_frame.compose(&shift);
    let levels = pyramid_levels(crop_to_frame.scale());
    let whole = GrayView::packed(&frame[..width * height], width, height);
    let (w, h) = (rect[2] as usize, rect[3] as usize);
    out.resize(w * h, 0);
    if levels == 0 {
        warp_into(whole, &rect_to_frame, out, w, h);
        return Ok(());
    }
    // Frame region the rectangle needs, with room for the pyramid kernel.
    let corners = [
        [0.0, 0.0],
        [w as f64, 0.0],
        [0.0, h as f64],
        [w as f64, h as f64],
    ]
    .map(|c| rect_to_frame.apply(c));
    let margin = 4.0 * (1u32 << levels) as f64;
    let x0 = (corners.iter().map(|c| c[0]).fold(f64::INFINITY, f64::min) - margin)
        .floor()
        .max(0.0) as i32;
    let y0 = (corners.iter().map(|c| c[1]).fold(f64::INFINITY, f64::min) - margin)
        .floor()
        .max(0.0) as i32;
    let x1 = (corners
        .iter()
        .map(|c| c[0])
        .fold(f64::NEG_INFINITY, f64::max)
        + margin)
        .ceil()
        .min(width as f64) as i32;
    let y1 = (corners
        .iter()
        .map(|c| c[1])
        .fold(f64::NEG_INFINITY, f64::max)
        + margin)
        .ceil()
        .min(height as f64) as i32;
    if x1 - x0 < 8 || y1 - y0 < 8 {
        // The face left the frame: sample the (replicated) border as before.
        warp_into(whole, &rect_to_frame, out, w, h);
        return Ok(());
    }
    // pyrDown keeps pixel centres at even positions: level pixel q sits at frame x0 + 2^L·q.
    let k = (1u32 << levels) as f64;
    let to_level = Similarity {
        a: 1.0 / k,
        b: 0.0,
        tx: -(x0 as f64) / k,
        ty: -(y0 as f64) / k,
    };
    let rect_to_level = to_level.compose(&rect_to_frame);
    let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
    let (mut lw, mut lh) = (x1 - x0, y1 - y0);
    for _ in 0..levels {
        (lw, lh) = super::pyramid::level_size(lw, lh);
    }
    // A face filling the frame puts crop pixels beyond the level's edge; a replicated border
    // around the level keeps them on the warp's fast path (same values as sampling the edge).
    let reach = [
        [0.0, 0.0],
        [w as f64, 0.0],
        [0.0, h as f64],
        [w as f64, h as f64],
    ]
    .map(|c| rect_to_level.apply(c))
    .iter()
    .map(|p| {
        (-p[0])
            .max(-p[1])
            .max(p[0] - (lw as f64 - 2.0))
            .max(p[1] - (lh as f64 - 2.0))
    })
    .fold(0.0f64, f64::max);
    let pad = if reach > 0.0 {
        (reach.ceil() as usize + 2).min(MAX_PAD)
    } else {
        0
    };
    PYRAMID.with_borrow_mut(|(level, spare, rows)| {
        let mut src = GrayView {
            data: &whole.data[y0 * width + x0..],
            width: x1 - x0,
            height: y1 - y0,
            stride: width,
        };
        let mut size = (0, 0);
        for l in 0..levels {
            let last = l + 1 == levels;
            size = super::pyramid::pyr_down(src, if last { pad } else { 0 }, spare, rows);
            std::mem::swap(level, spare);
            src = GrayView::packed(level, size.0, size.1);
        }
        let padded = GrayView::packed(level, size.0 + 2 * pad, size.1 + 2 * pad);
        super::bilinear::warp_affine_padded(padded, pad, &rect_to_level.to_affine(), out, w, h);
    });
    Ok(())
}

thread_local! {
    /// Per-thread pyramid buffers (the level, the one being built, and the row pass's sums).
    static PYRAMID: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<u16>)> = Default::default();
}

/// Widest replicated border put around a pyramid level (pixels further out take the slow path).
const MAX_PAD: usize = 32;

/// The frame pixels [`warp_rect`] reads for `rect` (crop coordinates) under `crop_to_frame`: the
/// rectangle's image in the frame, plus the bilinear neighbour or, when pyramid levels are used,
/// their kernel's reach.
pub fn warp_footprint(
    crop_to_frame: &Similarity,
    rect: [u32; 4],
    width: usize,
    height: usize,
) -> crate::frame::Rect {
    let (x, y, w, h) = (
        rect[0] as f64,
        rect[1] as f64,
        rect[2] as f64,
        rect[3] as f64,
    );
    let corners = [[x, y], [x + w, y], [x, y + h], [x + w, y + h]].map(|c| crop_to_frame.apply(c));
    let levels = pyramid_levels(crop_to_frame.scale());
    let margin = if levels == 0 {
        2.0
    } else {
        4.0 * (1u32 << levels) as f64 + 2.0
    };
    crate::frame::footprint(&corners, margin, width, height)
}

/// Bilinear inverse-mapped warp of `src` into `out` (`w`×`h`), border replicated.
fn warp_into(src: GrayView, t: &Similarity, out: &mut [u8], w: usize, h: usize) {
    super::bilinear::warp_affine(src, &t.to_affine(), out, w, h);
}

/// Pyramid levels that bring a crop→frame scale below 1.5 (one level halves it).
pub fn pyramid_levels(scale: f64) -> u32 {
    let mut levels = 0;
    let mut s = scale;
    while s >= 1.5 && levels < 4 {
        s /= 2.0;
        levels += 1;
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let t = Similarity {
            a: 1.2 * 0.3f64.cos(),
            b: 1.2 * 0.3f64.sin(),
            tx: 5.0,
            ty: -3.0,
        };
        let src = [[0.0, 0.0], [10.0, 0.0], [3.0, 8.0]];
        let dst: Vec<[f64; 2]> = src.iter().map(|p| t.apply(*p)).collect();
        let f = Similarity::fit(&src, &dst).unwrap();
        assert!((f.a - t.a).abs() < 1e-9 && (f.b - t.b).abs() < 1e-9);
        assert!((f.tx - t.tx).abs() < 1e-9 && (f.ty - t.ty).abs() < 1e-9);
        let id = f.compose(&f.inverse());
        assert!((id.a - 1.0).abs() < 1e-12 && id.b.abs() < 1e-12 && id.tx.abs() < 1e-9);
    }
}
