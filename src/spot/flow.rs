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
    size: usize,
    layout: RoiLayout,
}

impl RoiFlow {
    /// DIS "ultrafast" with the given finest pyramid scale (0 = full resolution: sub-pixel motion
    /// of small skin regions survives; the preset's 2 averages it away).
    pub fn new(size: usize, layout: RoiLayout, finest_scale: i32) -> Result<RoiFlow> {
        let mut dis = DISOpticalFlow::create(opencv::video::DISOpticalFlow_PRESET_ULTRAFAST)
            .context("creating DIS optical flow")?;
        dis.set_finest_scale(finest_scale)?;
        Ok(RoiFlow {
            dis,
            flow: Mat::default(),
            size,
            layout,
        })
    }

    /// The regions measured.
    pub fn layout(&self) -> &RoiLayout {
        &self.layout
    }

    /// Flow from `from` to `to` (`size`² gray Mats); writes each region's mean motion minus the
    /// nose region's into `out` (one `[dx, dy]` per region, crop pixels).
    pub fn measure(&mut self, from: &Mat, to: &Mat, out: &mut [[f32; 2]]) -> Result<()> {
        self.dis
            .calc(from, to, &mut self.flow)
            .context("DIS optical flow")?;
        let v: &[Vec2f] = self.flow.data_typed().context("flow field")?;
        let n = self.size;
        let mean = |r: [usize; 4]| -> [f32; 2] {
            let (mut sx, mut sy) = (0f32, 0f32);
            for y in r[1]..r[3] {
                for f in &v[y * n + r[0]..y * n + r[2]] {
                    sx += f[0];
                    sy += f[1];
                }
            }
            let c = ((r[2] - r[0]) * (r[3] - r[1])).max(1) as f32;
            [sx / c, sy / c]
        };
        let head = mean(self.layout.reference);
        for (o, roi) in out.iter_mut().zip(&self.layout.rois) {
            let m = mean(roi.rect);
            *o = [m[0] - head[0], m[1] - head[1]];
        }
        Ok(())
    }
}
