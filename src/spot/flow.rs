//! DIS optical flow between two aligned crops, reduced to one mean motion vector per region with the
//! nose region's motion (residual head motion) subtracted.

use super::roi::RoiLayout;
use anyhow::{Context, Result};
use opencv::core::{Mat, Ptr, Vec2f};
use opencv::prelude::*;
use opencv::video::DISOpticalFlow;

/// Reusable DIS state and flow buffer for one crop size.
pub struct RoiFlow {
    dis: Ptr<DISOpticalFlow>,
    flow: Mat,
    /// The part of the crop the flow is computed on: the regions' bounding box plus a margin.
    window: opencv::core::Rect,
    /// Continuous copies of the window (DIS needs continuous images); reused every frame.
    a: Mat,
    b: Mat,
    layout: RoiLayout,
    /// The nose region's motion in the latest measurement (the head, crop pixels).
    head: [f32; 2],
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
            dis,
            flow: Mat::default(),
            window,
            a: Mat::default(),
            b: Mat::default(),
            layout,
            head: [0.0; 2],
        })
    }

    /// The nose region's motion in the latest measurement (crop pixels): residual head motion.
    pub fn head(&self) -> [f32; 2] {
        self.head
    }

    /// The regions measured.
    pub fn layout(&self) -> &RoiLayout {
        &self.layout
    }

    /// Flow from `from` to `to` (`size`² gray Mats); writes each region's mean motion minus the
    /// nose region's into `out` (one `[dx, dy]` per region, crop pixels).
    pub fn measure(&mut self, from: &Mat, to: &Mat, out: &mut [[f32; 2]]) -> Result<()> {
        from.roi(self.window)
            .context("flow window")?
            .copy_to(&mut self.a)
            .context("flow window")?;
        to.roi(self.window)
            .context("flow window")?
            .copy_to(&mut self.b)
            .context("flow window")?;
        self.dis
            .calc(&self.a, &self.b, &mut self.flow)
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
        for (o, roi) in out.iter_mut().zip(&self.layout.rois) {
            let m = mean(roi.rect);
            *o = [m[0] - head[0], m[1] - head[1]];
        }
        Ok(())
    }
}
