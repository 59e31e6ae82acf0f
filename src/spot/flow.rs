//! DIS optical flow between two aligned crops, reduced to one mean motion vector per region with the
//! nose region's motion (residual head motion) subtracted.

use super::roi::RoiLayout;
use anyhow::{Context, Result};
use opencv::core::{Mat, Ptr, Vec2f};
use opencv::prelude::*;
use opencv::video::DISOpticalFlow;

/// How residual head motion is taken out of each region's motion (`spot.head_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadModel {
    /// The nose region's mean motion (a translation).
    Nose,
    /// A similarity motion (translation, rotation, scale) fitted robustly to the flow over the
    /// whole face: a head that turns or nods by a degree moves the outer brows and the chin
    /// differently from the nose, which a translation cannot take out.
    Similarity,
}

/// How each region's motion is measured (`spot.motion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    /// Dense DIS flow, averaged over the region.
    Dis,
    /// One Lucas–Kanade translation fitted per region ([`super::lk`]).
    Lk,
}

/// Reusable DIS state and flow buffer for one crop size.
pub struct RoiFlow {
    /// Crop side (pixels).
    size: usize,
    /// DIS, unless the regions are measured by Lucas–Kanade.
    dis: Option<Ptr<DISOpticalFlow>>,
    flow: Mat,
    /// The part of the crop the flow is computed on: the regions' bounding box plus a margin.
    window: opencv::core::Rect,
    /// Continuous copies of the window (DIS needs continuous images); reused every frame.
    a: Mat,
    b: Mat,
    layout: RoiLayout,
    /// The nose region's motion in the latest measurement (the head, crop pixels).
    head: [f32; 2],
    head_model: HeadModel,
    /// Residual magnitudes and weights of the fit (reused).
    residuals: Vec<f32>,
    weights: Vec<f32>,
    /// Per-region Lucas–Kanade, when `spot.motion = "lk"` (regions, then the nose).
    lk: Option<super::lk::RegionLk>,
    /// Its output, one translation per region and the nose last (reused).
    lk_out: Vec<[f32; 2]>,
}

/// Context kept around the regions so DIS patches at their borders see real texture.
const MARGIN: usize = 8;

impl RoiFlow {
    /// DIS "ultrafast" with the given finest pyramid scale (0 = full resolution: sub-pixel motion
    /// of small skin regions survives; the preset's 2 averages it away).
    pub fn new(
        size: usize,
        layout: RoiLayout,
        finest_scale: i32,
        patch_stride: i32,
        head_model: HeadModel,
    ) -> Result<RoiFlow> {
        let mut dis = DISOpticalFlow::create(opencv::video::DISOpticalFlow_PRESET_ULTRAFAST)
            .context("creating DIS optical flow")?;
        dis.set_finest_scale(finest_scale)?;
        dis.set_patch_stride(patch_stride)?;
        let rects = layout.rois.iter().map(|r| r.rect).chain([layout.reference]);
        let (mut x0, mut y0, mut x1, mut y1) = (size, size, 0, 0);
        for r in rects {
            x0 = x0.min(r[0]);
            y0 = y0.min(r[1]);
            x1 = x1.max(r[2]);
            y1 = y1.max(r[3]);
        }
        let (x0, y0) = (x0.saturating_sub(MARGIN), y0.saturating_sub(MARGIN));
        let (x1, y1) = ((x1 + MARGIN).min(size), (y1 + MARGIN).min(size));
        let window =
            opencv::core::Rect::new(x0 as i32, y0 as i32, (x1 - x0) as i32, (y1 - y0) as i32);
        Ok(RoiFlow {
            size,
            dis: Some(dis),
            flow: Mat::default(),
            window,
            a: Mat::default(),
            b: Mat::default(),
            layout,
            head: [0.0; 2],
            head_model,
            residuals: Vec::new(),
            weights: Vec::new(),
            lk: None,
            lk_out: Vec::new(),
        })
    }

    /// Measures with `motion`. Lucas–Kanade windows are the regions grown by `margin` pixels,
    /// except below the brows (the lids would move them in a blink), and the nose region grown by
    /// `reference_margin` (a larger rigid window: every region is measured against it, so its
    /// noise is in all of them). References are at most `lag` frames back unless pinned.
    pub fn with_motion(
        mut self,
        motion: Motion,
        margin: usize,
        reference_margin: usize,
        lag: usize,
    ) -> RoiFlow {
        self.lk = match motion {
            Motion::Dis => None,
            Motion::Lk => {
                let grown = |r: &super::roi::Roi| {
                    let down = if r.kind == super::roi::RoiKind::Brow {
                        0
                    } else {
                        margin
                    };
                    (r.rect, [margin, margin, margin, down])
                };
                let rects: Vec<([usize; 4], [usize; 4])> = (self.layout.rois.iter().map(grown))
                    .chain([(self.layout.reference, [reference_margin; 4])])
                    .collect();
                self.lk_out = vec![[0.0; 2]; rects.len()];
                // DIS's buffers are not needed.
                self.dis = None;
                Some(super::lk::RegionLk::new(self.size, &rects, lag))
            }
        };
        self
    }

    /// Forgets running estimates (the history restarted).
    pub fn reset(&mut self) {
        if let Some(lk) = &mut self.lk {
            lk.reset();
        }
    }

    /// The nose region's motion in the latest measurement (crop pixels): residual head motion.
    pub fn head(&self) -> [f32; 2] {
        self.head
    }

    /// The regions measured.
    pub fn layout(&self) -> &RoiLayout {
        &self.layout
    }

    /// Motion from frame `from` to frame `to` (index and `size`² gray Mat; an index always names
    /// the same crop); writes each region's motion minus the nose region's into `out` (one
    /// `[dx, dy]` per region, crop pixels).
    pub fn measure(
        &mut self,
        (from_index, from): (u64, &Mat),
        (to_index, to): (u64, &Mat),
        out: &mut [[f32; 2]],
    ) -> Result<()> {
        if let Some(lk) = &mut self.lk {
            let a = from.data_bytes().context("reference crop")?;
            let b = to.data_bytes().context("crop")?;
            lk.measure((from_index, a), (to_index, b), &mut self.lk_out);
            let head = *self.lk_out.last().unwrap_or(&[0.0; 2]);
            self.head = head;
            for (o, d) in out.iter_mut().zip(&self.lk_out) {
                *o = [d[0] - head[0], d[1] - head[1]];
            }
            return Ok(());
        }
        from.roi(self.window)
            .context("flow window")?
            .copy_to(&mut self.a)
            .context("flow window")?;
        to.roi(self.window)
            .context("flow window")?
            .copy_to(&mut self.b)
            .context("flow window")?;
        let dis = self.dis.as_mut().context("DIS optical flow released")?;
        dis.calc(&self.a, &self.b, &mut self.flow)
            .context("DIS optical flow")?;
        let v: &[Vec2f] = self.flow.data_typed().context("flow field")?;
        let (n, ox, oy) = (
            self.window.width as usize,
            self.window.x as usize,
            self.window.y as usize,
        );
        let mean = |r: [usize; 4]| -> [f32; 2] {
            let (mut sx, mut sy) = (0f32, 0f32);
            for y in r[1] - oy..r[3] - oy {
                for f in &v[y * n + r[0] - ox..y * n + r[2] - ox] {
                    sx += f[0];
                    sy += f[1];
                }
            }
            let c = ((r[2] - r[0]) * (r[3] - r[1])).max(1) as f32;
            [sx / c, sy / c]
        };
        let head = mean(self.layout.reference);
        self.head = head;
        let field = Field {
            v,
            width: n,
            height: self.window.height as usize,
            x0: ox,
            y0: oy,
        };
        let model = match self.head_model {
            HeadModel::Nose => None,
            HeadModel::Similarity => {
                Some(field.fit_similarity(&mut self.residuals, &mut self.weights))
            }
        };
        for (o, roi) in out.iter_mut().zip(&self.layout.rois) {
            let m = mean(roi.rect);
            // The model is affine, so its mean over the region is its value at the centre.
            let h = match &model {
                None => head,
                Some(s) => s.at(
                    (roi.rect[0] + roi.rect[2]) as f32 / 2.0 - 0.5,
                    (roi.rect[1] + roi.rect[3]) as f32 / 2.0 - 0.5,
                ),
            };
            *o = [m[0] - h[0], m[1] - h[1]];
        }
        Ok(())
    }
}

/// A flow field over the window at (`x0`, `y0`) of the crop.
struct Field<'a> {
    v: &'a [Vec2f],
    width: usize,
    height: usize,
    x0: usize,
    y0: usize,
}

/// A similarity motion in crop coordinates: (u, v) = (tx + a x − b y, ty + b x + a y), with a the
/// scale change and b the rotation (small angles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    a: f32,
    b: f32,
    tx: f32,
    ty: f32,
}

impl Similarity {
    /// The motion it predicts at crop point (x, y).
    pub fn at(&self, x: f32, y: f32) -> [f32; 2] {
        [
            self.tx + self.a * x - self.b * y,
            self.ty + self.b * x + self.a * y,
        ]
    }
}

/// Every second pixel in each direction: the head's motion is smooth, and DIS's own patches are 8 px.
const FIT_STRIDE: usize = 2;
/// Re-weighting rounds after the least-squares start.
const FIT_ROUNDS: usize = 3;
/// Tukey's biweight constant, in robust spreads of the residual magnitude.
const TUKEY_C: f32 = 4.685;

impl Field<'_> {
    /// The similarity that explains most of the field, by iteratively re-weighted least squares
    /// (Tukey weights): an expression moves a few regions, the head moves all of them, so the
    /// expression's pixels are down-weighted as outliers. `residuals` and `weights` are reused
    /// buffers (one value per sampled pixel).
    fn fit_similarity(&self, residuals: &mut Vec<f32>, weights: &mut Vec<f32>) -> Similarity {
        weights.clear();
        self.for_each(|_, _, _, _| weights.push(1.0));
        let mut fit = self.weighted_fit(weights);
        for _ in 0..FIT_ROUNDS {
            residuals.clear();
            self.for_each(|x, y, u, v| {
                let p = fit.at(x, y);
                residuals.push((u - p[0]).hypot(v - p[1]));
            });
            if residuals.is_empty() {
                break;
            }
            weights.clear();
            weights.extend_from_slice(residuals);
            let mid = weights.len() / 2;
            let (_, med, _) = weights.select_nth_unstable_by(mid, f32::total_cmp);
            let c = (TUKEY_C * 1.4826 * *med).max(1e-3);
            weights.clear();
            weights.extend(residuals.iter().map(|r| {
                let r = r / c;
                if r < 1.0 { (1.0 - r * r).powi(2) } else { 0.0 }
            }));
            fit = self.weighted_fit(weights);
        }
        fit
    }

    /// Calls `f(x, y, u, v)` on the sampled pixels (crop coordinates).
    fn for_each(&self, mut f: impl FnMut(f32, f32, f32, f32)) {
        for j in (0..self.height).step_by(FIT_STRIDE) {
            for i in (0..self.width).step_by(FIT_STRIDE) {
                let m = self.v[j * self.width + i];
                f((self.x0 + i) as f32, (self.y0 + j) as f32, m[0], m[1]);
            }
        }
    }

    /// Closed-form weighted least squares of a similarity, `w` holding one weight per sampled
    /// pixel in [`for_each`](Self::for_each) order.
    fn weighted_fit(&self, w: &[f32]) -> Similarity {
        // Sums in f64: thousands of sub-pixel terms.
        let (mut sw, mut sx, mut sy, mut su, mut sv) = (0f64, 0f64, 0f64, 0f64, 0f64);
        let mut i = 0;
        self.for_each(|x, y, u, v| {
            let k = w[i] as f64;
            i += 1;
            sw += k;
            sx += k * x as f64;
            sy += k * y as f64;
            su += k * u as f64;
            sv += k * v as f64;
        });
        if sw <= 0.0 {
            return Similarity {
                a: 0.0,
                b: 0.0,
                tx: 0.0,
                ty: 0.0,
            };
        }
        let (mx, my, mu, mv) = (sx / sw, sy / sw, su / sw, sv / sw);
        let (mut num_a, mut num_b, mut den) = (0f64, 0f64, 0f64);
        let mut i = 0;
        self.for_each(|x, y, u, v| {
            let k = w[i] as f64;
            i += 1;
            let (xc, yc) = (x as f64 - mx, y as f64 - my);
            let (uc, vc) = (u as f64 - mu, v as f64 - mv);
            num_a += k * (xc * uc + yc * vc);
            num_b += k * (xc * vc - yc * uc);
            den += k * (xc * xc + yc * yc);
        });
        let (a, b) = if den > 0.0 {
            (num_a / den, num_b / den)
        } else {
            (0.0, 0.0)
        };
        Similarity {
            a: a as f32,
            b: b as f32,
            tx: (mu - (a * mx - b * my)) as f32,
            ty: (mv - (b * mx + a * my)) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field of a given similarity plus, in one corner block, an extra local motion.
    fn field(s: Similarity, local: [f32; 2], w: usize, h: usize) -> Vec<Vec2f> {
        let mut v = Vec::with_capacity(w * h);
        for j in 0..h {
            for i in 0..w {
                let p = s.at((10 + i) as f32, (20 + j) as f32);
                let extra = if i < w / 4 && j < h / 4 {
                    local
                } else {
                    [0.0; 2]
                };
                v.push(Vec2f::from([p[0] + extra[0], p[1] + extra[1]]));
            }
        }
        v
    }

    #[test]
    fn the_head_is_fitted_through_a_local_expression() {
        // A one-degree turn with a slight zoom and a shift, and a 1.5 px "brow raise" in 1/16 of
        // the window.
        let truth = Similarity {
            a: 0.004,
            b: 0.0175,
            tx: 0.3,
            ty: -0.2,
        };
        let (w, h) = (96, 100);
        let v = field(truth, [0.0, -1.5], w, h);
        let f = Field {
            v: &v,
            width: w,
            height: h,
            x0: 10,
            y0: 20,
        };
        let fit = f.fit_similarity(&mut Vec::new(), &mut Vec::new());
        for (x, y) in [(10.0, 20.0), (105.0, 20.0), (60.0, 119.0)] {
            let (p, q) = (fit.at(x, y), truth.at(x, y));
            assert!(
                (p[0] - q[0]).abs() < 0.02 && (p[1] - q[1]).abs() < 0.02,
                "at ({x}, {y}): fitted {p:?}, true {q:?}"
            );
        }
        // Plain least squares is pulled by the expression: the robust rounds are what remove it.
        let plain = f.weighted_fit(&vec![1.0; (w / 2) * (h / 2)]);
        let (p, q) = (plain.at(60.0, 119.0), truth.at(60.0, 119.0));
        assert!((p[0] - q[0]).hypot(p[1] - q[1]) > 0.05, "{p:?} vs {q:?}");
    }
}
