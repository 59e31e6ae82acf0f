//! Regions of the aligned crop whose motion is measured: brows, eyes, mouth corners, chin, and the
//! nose as the rigid reference for head-motion compensation.
//!
//! Regions are placed in a face frame built from the crop template (origin between the eyes, x
//! along the eye line, unit = inter-ocular distance), so they follow `align.*` if the template
//! changes. The offsets were read off SynthME's landmark set mapped through the default template.

use crate::face::CropTemplate;

/// What a region covers; eyes are told apart for the blink rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoiKind {
    /// Brow (inner or outer).
    Brow,
    /// Eye with both lids.
    Eye,
    /// Mouth corner.
    Mouth,
    /// Chin.
    Chin,
}

/// A rectangle of crop pixels, `[x0, y0, x1, y1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    /// Name for reports ("brow_inner_r", ...).
    pub name: &'static str,
    /// What it covers.
    pub kind: RoiKind,
    /// Crop pixel rectangle.
    pub rect: [usize; 4],
}

/// The measured regions and the reference region.
#[derive(Debug, Clone)]
pub struct RoiLayout {
    /// Expression regions.
    pub rois: Vec<Roi>,
    /// Nose region: its motion is head motion and is subtracted from every region's.
    pub reference: [usize; 4],
}

/// (name, kind, centre (u, v) in IOD units from the eye midpoint, half size (w, h) in IOD units).
/// Subject's right is image left (u < 0).
const LAYOUT: [(&str, RoiKind, [f64; 2], [f64; 2]); 9] = [
    ("brow_inner_r", RoiKind::Brow, [-0.28, -0.25], [0.18, 0.14]),
    ("brow_inner_l", RoiKind::Brow, [0.28, -0.25], [0.18, 0.14]),
    ("brow_outer_r", RoiKind::Brow, [-0.85, -0.20], [0.18, 0.14]),
    ("brow_outer_l", RoiKind::Brow, [0.85, -0.20], [0.18, 0.14]),
    ("eye_r", RoiKind::Eye, [-0.55, 0.05], [0.22, 0.17]),
    ("eye_l", RoiKind::Eye, [0.55, 0.05], [0.22, 0.17]),
    ("mouth_r", RoiKind::Mouth, [-0.50, 1.08], [0.22, 0.18]),
    ("mouth_l", RoiKind::Mouth, [0.50, 1.08], [0.22, 0.18]),
    ("chin", RoiKind::Chin, [0.0, 1.62], [0.32, 0.15]),
];

/// Nose: below the eye line, above the mouth, away from cheeks and brows.
const NOSE: ([f64; 2], [f64; 2]) = ([0.0, 0.62], [0.16, 0.16]);

impl RoiLayout {
    /// Places the regions on a crop with this template.
    pub fn new(template: &CropTemplate) -> RoiLayout {
        let [er, el, _] = template.points;
        let mid = [(er[0] + el[0]) / 2.0, (er[1] + el[1]) / 2.0];
        let ex = [el[0] - er[0], el[1] - er[1]];
        let iod = (ex[0] * ex[0] + ex[1] * ex[1]).sqrt().max(1e-6);
        let size = template.size as f64;
        let rect = |c: [f64; 2], h: [f64; 2]| -> [usize; 4] {
            // Eye line direction (cos, sin); the face frame's v axis is its normal (image down).
            let (cs, sn) = (ex[0] / iod, ex[1] / iod);
            let x = mid[0] + iod * (c[0] * cs - c[1] * sn);
            let y = mid[1] + iod * (c[0] * sn + c[1] * cs);
            let (hw, hh) = (iod * h[0], iod * h[1]);
            let clamp = |v: f64| v.round().clamp(0.0, size) as usize;
            let r = [clamp(x - hw), clamp(y - hh), clamp(x + hw), clamp(y + hh)];
            // At least one pixel, inside the crop.
            [
                r[0].min(template.size as usize - 1),
                r[1].min(template.size as usize - 1),
                r[2].max(r[0] + 1).min(template.size as usize),
                r[3].max(r[1] + 1).min(template.size as usize),
            ]
        };
        RoiLayout {
            rois: LAYOUT
                .iter()
                .map(|(name, kind, c, h)| Roi {
                    name,
                    kind: *kind,
                    rect: rect(*c, *h),
                })
                .collect(),
            reference: rect(NOSE.0, NOSE.1),
        }
    }

    /// Index of the chin region (the jaw's motion), if the layout has one.
    pub fn chin(&self) -> Option<usize> {
        self.rois.iter().position(|r| r.kind == RoiKind::Chin)
    }

    /// The default alignment template scaled to a `size`-pixel crop.
    pub fn for_crop_size(size: usize) -> RoiLayout {
        let align = crate::face::AlignConfig {
            size: size as u32,
            ..Default::default()
        };
        RoiLayout::new(&CropTemplate::from_config(&align))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_sit_where_the_face_parts_are_on_the_default_crop() {
        let l = RoiLayout::for_crop_size(128);
        let centre = |name: &str| {
            let r = l.rois.iter().find(|r| r.name == name).unwrap().rect;
            [(r[0] + r[2]) as f64 / 2.0, (r[1] + r[3]) as f64 / 2.0]
        };
        // Eyes at (0.34, 0.40) and (0.66, 0.40), mouth centre at (0.5, 0.76) of 128 px.
        let er = centre("eye_r");
        assert!(
            (er[0] - 0.32 * 128.0).abs() < 3.0 && (er[1] - 0.415 * 128.0).abs() < 3.0,
            "{er:?}"
        );
        let m = centre("mouth_l");
        assert!(
            m[0] > 64.0 + 10.0 && (m[1] - 0.745 * 128.0).abs() < 4.0,
            "{m:?}"
        );
        assert!(centre("brow_inner_r")[1] < er[1] - 5.0);
        assert!(centre("chin")[1] > m[1] + 10.0);
        for r in l.rois.iter().map(|r| r.rect).chain([l.reference]) {
            assert!(
                r[0] < r[2] && r[1] < r[3] && r[2] <= 128 && r[3] <= 128,
                "{r:?}"
            );
        }
        // Scales with the crop.
        let s = RoiLayout::for_crop_size(64);
        assert!((s.reference[0] as i64 * 2 - l.reference[0] as i64).abs() <= 2);
    }
}
