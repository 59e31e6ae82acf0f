//! FACS motion rendered by several displacement families, so that no single kernel defines an AU.
//!
//! An AU is described once, as the FACS manual does: which skin point moves ([`Action`]: a landmark
//! pair), how far the movement reaches and in which direction. A [`Family`] turns those actions into a
//! dense displacement field in its own way: isotropic Gaussian blobs, elongated fields along muscle
//! lines, or a piecewise-affine warp of a triangulated face mesh. Each occurrence of an AU also gets
//! its own [`Shape`] (centre shift, spread, direction jitter) so no two expressions share a kernel.

use super::identity::Landmarks;
use crate::rng::Rng;
use anyhow::{Result, bail};
use serde::Serialize;

/// How actions become a displacement field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Isotropic Gaussian blobs at the action points (SynthME's original family).
    Blobs,
    /// Elongated fields along muscle lines: skin pulled towards the muscle's fixed end, strongest
    /// at the insertion and fading along the muscle.
    Muscles,
    /// A triangulated face mesh (0.12 IOD cells anchored at the eyes) whose vertices move by a conical
    /// fall-off around each action point, interpolated piecewise-affinely: compact, linear, and
    /// unlike either smooth family. The held-out family.
    Mesh,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 3] = [Family::Blobs, Family::Muscles, Family::Mesh];

    /// The family's name on the command line and in `synth_truth.json`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Blobs => "blobs",
            Family::Muscles => "muscles",
            Family::Mesh => "mesh",
        }
    }

    /// Parses a family name.
    pub fn parse(s: &str) -> Result<Family> {
        match Family::ALL.into_iter().find(|f| f.name() == s) {
            Some(f) => Ok(f),
            None => bail!("unknown motion family {s:?} (blobs, muscles, mesh)"),
        }
    }
}

/// How much each occurrence of an AU varies around the manual's description.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variation {
    /// Largest shift of an action point, in inter-ocular distances.
    pub shift_iod: f32,
    /// Range of the spread multiplier.
    pub spread: [f32; 2],
    /// Largest rotation of the direction, degrees.
    pub turn_deg: f32,
}

impl Variation {
    /// The variation the `general` and `heldout` presets draw from.
    pub const GENERAL: Variation = Variation {
        shift_iod: 0.06,
        spread: [0.7, 1.4],
        turn_deg: 20.0,
    };
}

/// One occurrence's departure from the manual's action (drawn in the plan, so the seed decides it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shape {
    /// Shift of the action point in IOD units on the subject's right (mirrored on the left).
    pub shift: [f32; 2],
    /// Spread multiplier.
    pub spread: f32,
    /// Rotation of the direction, degrees (mirrored on the left).
    pub turn_deg: f32,
}

impl Shape {
    /// The manual's action, unchanged.
    pub const NOMINAL: Shape = Shape {
        shift: [0.0, 0.0],
        spread: 1.0,
        turn_deg: 0.0,
    };

    /// True for [`Shape::NOMINAL`] (left out of `synth_truth.json`).
    pub fn is_nominal(&self) -> bool {
        *self == Shape::NOMINAL
    }

    /// Draws a shape within `v`.
    pub fn draw(rng: &mut Rng, v: &Variation) -> Shape {
        let mut sym = |a: f32| (2.0 * rng.uniform() as f32 - 1.0) * a;
        let shift = [sym(v.shift_iod), sym(v.shift_iod)];
        let turn_deg = sym(v.turn_deg);
        let spread = v.spread[0] + (v.spread[1] - v.spread[0]) * rng.uniform() as f32;
        Shape {
            shift,
            spread,
            turn_deg,
        }
    }
}

/// One FACS action on one side, in frame pixels: the skin point that moves, how far the movement
/// reaches, and the displacement there for an amplitude of one canonical-crop pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Action {
    /// The skin point (the muscle's insertion), frame pixels.
    pub point: [f32; 2],
    /// Reach of the movement (a Gaussian's standard deviation), frame pixels.
    pub extent: f32,
    /// Displacement at the point for amplitude 1, frame pixels.
    pub vector: [f32; 2],
}

/// (right-side point, left-side point, extent in IOD, right-side direction) of an AU's action.
type Described = ([f32; 2], [f32; 2], f32, [f32; 2]);

/// The FACS manual's description of `au` on this face: where, how far, which way (subject's right;
/// the left mirrors it). AUs 25/26 (lips part, jaw drop) describe speech, a distractor.
pub fn described(au: crate::au::Au, lm: &Landmarks) -> Vec<Described> {
    let mid = |a: [f32; 2], b: [f32; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let iod = lm.iod();
    let mouth = mid(lm.mouth_r, lm.mouth_l);
    let lower_lip = [mouth[0], mouth[1] + 0.12 * iod];
    match au {
        // Inner brow raiser (frontalis, pars medialis): inner brows up.
        1 => vec![(lm.brow_inner_r, lm.brow_inner_l, 0.20, [0.0, -1.0])],
        // Outer brow raiser (frontalis, pars lateralis): outer brows up.
        2 => vec![(lm.brow_outer_r, lm.brow_outer_l, 0.20, [0.0, -1.0])],
        // Brow lowerer (corrugator, procerus): inner brows down and towards the midline.
        4 => vec![
            (lm.brow_inner_r, lm.brow_inner_l, 0.18, [0.45, 0.9]),
            (lm.brow_outer_r, lm.brow_outer_l, 0.18, [0.2, 0.5]),
        ],
        // Cheek raiser (orbicularis oculi, pars orbitalis): cheeks and lower lids up.
        6 => vec![
            (lm.cheek_r, lm.cheek_l, 0.25, [0.0, -1.0]),
            (lm.lid_lower_r, lm.lid_lower_l, 0.12, [0.0, -0.5]),
        ],
        // Lid tightener (orbicularis oculi, pars palpebralis): lower lids up and in.
        7 => vec![(lm.lid_lower_r, lm.lid_lower_l, 0.10, [0.15, -1.0])],
        // Lip corner puller (zygomaticus major): corners up and out.
        12 => vec![(lm.mouth_r, lm.mouth_l, 0.20, [-0.6, -0.8])],
        // Dimpler (buccinator): corners pulled inwards.
        14 => vec![(lm.mouth_r, lm.mouth_l, 0.16, [0.95, -0.1])],
        // Lip corner depressor (depressor anguli oris): corners down.
        15 => vec![(lm.mouth_r, lm.mouth_l, 0.18, [-0.2, 1.0])],
        // Chin raiser (mentalis): chin boss and lower lip up (one midline action).
        17 => vec![(lm.chin, lm.chin, 0.30, [0.0, -1.0])],
        // Lips part (depressor labii, relaxed mentalis): lower lip down.
        25 => vec![(lower_lip, lower_lip, 0.16, [0.0, 1.0])],
        // Jaw drop (masseter relaxed): lower lip and chin down together.
        26 => vec![
            (lower_lip, lower_lip, 0.18, [0.0, 0.8]),
            (lm.chin, lm.chin, 0.35, [0.0, 1.0]),
        ],
        // Blink (levator relaxation): upper lids down.
        45 => vec![(lm.lid_upper_r, lm.lid_upper_l, 0.09, [0.0, 1.0])],
        _ => vec![],
    }
}

/// The actions of one AU occurrence on this face, in frame pixels, for amplitude 1 canonical pixel.
pub fn actions(
    au: crate::au::Au,
    side: super::aus::Side,
    shape: &Shape,
    lm: &Landmarks,
    crop_to_frame_scale: f32,
) -> Vec<Action> {
    use super::aus::Side;
    let iod = lm.iod();
    let (sin, cos) = shape.turn_deg.to_radians().sin_cos();
    let mut out = Vec::new();
    for (r, l, extent, v) in described(au, lm) {
        let midline = r == l;
        let turned = [v[0] * cos - v[1] * sin, v[0] * sin + v[1] * cos];
        let right = Action {
            point: [r[0] + shape.shift[0] * iod, r[1] + shape.shift[1] * iod],
            extent: extent * shape.spread * iod,
            vector: [
                turned[0] * crop_to_frame_scale,
                turned[1] * crop_to_frame_scale,
            ],
        };
        if midline || side != Side::Left {
            out.push(right);
        }
        // The subject's left mirrors every horizontal quantity.
        if !midline && side != Side::Right {
            out.push(Action {
                point: [l[0] - shape.shift[0] * iod, l[1] + shape.shift[1] * iod],
                extent: right.extent,
                vector: [-right.vector[0], right.vector[1]],
            });
        }
    }
    out
}

/// A displacement field over a region of the frame: `dx`, `dy` row-major over `roi`.
pub struct Field {
    /// `[x0, y0, x1, y1]` in frame pixels.
    pub roi: [u32; 4],
    /// Horizontal displacement.
    pub dx: Vec<f32>,
    /// Vertical displacement.
    pub dy: Vec<f32>,
}

impl Field {
    fn zero(roi: [u32; 4]) -> Field {
        let n = ((roi[2] - roi[0]) * (roi[3] - roi[1])) as usize;
        Field {
            roi,
            dx: vec![0.0; n],
            dy: vec![0.0; n],
        }
    }

    fn width(&self) -> usize {
        (self.roi[2] - self.roi[0]) as usize
    }

    fn height(&self) -> usize {
        (self.roi[3] - self.roi[1]) as usize
    }

    /// Adds `f(p)`'s displacement for every pixel of the region within `reach` of `point`.
    fn add_near(&mut self, point: [f32; 2], reach: f32, f: impl Fn([f32; 2]) -> [f32; 2]) {
        let (w, h) = (self.width(), self.height());
        let (ox, oy) = (self.roi[0] as f32, self.roi[1] as f32);
        let lo = |c: f32, o: f32| ((c - reach - o).max(0.0)) as usize;
        let hi =
            |c: f32, o: f32, n: usize| ((c + reach - o).max(0.0) as usize).min(n.saturating_sub(1));
        let (x0, x1) = (lo(point[0], ox), hi(point[0], ox, w));
        let (y0, y1) = (lo(point[1], oy), hi(point[1], oy, h));
        for y in y0..=y1.max(y0).min(h.saturating_sub(1)) {
            for x in x0..=x1.max(x0).min(w.saturating_sub(1)) {
                let d = f([x as f32 + ox, y as f32 + oy]);
                self.dx[y * w + x] += d[0];
                self.dy[y * w + x] += d[1];
            }
        }
    }
}

/// The displacement field of `actions` (each with its amplitude) as `family` renders them.
pub fn field(family: Family, actions: &[(Action, f32)], roi: [u32; 4], lm: &Landmarks) -> Field {
    let mut out = Field::zero(roi);
    if out.dx.is_empty() {
        return out;
    }
    match family {
        Family::Blobs => {
            for (a, amp) in actions {
                blob(&mut out, a, *amp)
            }
        }
        Family::Muscles => {
            for (a, amp) in actions {
                muscle(&mut out, a, *amp)
            }
        }
        Family::Mesh => mesh(&mut out, actions, lm),
    }
    out
}

/// Gaussian blob: `amp · v · exp(−|p − c|² / 2σ²)`.
fn blob(out: &mut Field, a: &Action, amp: f32) {
    let inv = 1.0 / (2.0 * a.extent * a.extent);
    out.add_near(a.point, 3.5 * a.extent, |p| {
        let r2 = (p[0] - a.point[0]).powi(2) + (p[1] - a.point[1]).powi(2);
        let w = (-r2 * inv).exp() * amp;
        [w * a.vector[0], w * a.vector[1]]
    });
}

/// Muscle line from the insertion (the action point) towards the fixed end, 2.5 extents away along
/// the pull: full displacement at the insertion, fading linearly towards the fixed end, a
/// short Gaussian tail beyond the insertion, and a Gaussian profile (one extent) across the line.
fn muscle(out: &mut Field, a: &Action, amp: f32) {
    let m = a.vector[0].hypot(a.vector[1]);
    if m <= 0.0 {
        return;
    }
    let u = [a.vector[0] / m, a.vector[1] / m];
    let len = 2.5 * a.extent;
    let across = a.extent;
    let tail = a.extent;
    out.add_near(a.point, len + 3.0 * across, |p| {
        let r = [p[0] - a.point[0], p[1] - a.point[1]];
        let along = r[0] * u[0] + r[1] * u[1];
        let perp = r[0] * -u[1] + r[1] * u[0];
        let w_along = if along < 0.0 {
            (-(along * along) / (2.0 * tail * tail)).exp()
        } else if along < len {
            1.0 - along / len
        } else {
            0.0
        };
        let w = w_along * (-(perp * perp) / (2.0 * across * across)).exp() * amp;
        [w * a.vector[0], w * a.vector[1]]
    });
}

/// Piecewise-affine warp: a triangulated grid of 0.12 IOD cells, anchored at the eyes' midpoint,
/// whose vertices move by a cone of radius 3 extents around each action; inside each triangle the
/// displacement is the barycentric blend of its vertices'.
fn mesh(out: &mut Field, actions: &[(Action, f32)], lm: &Landmarks) {
    let cell = 0.12 * lm.iod();
    let anchor = [
        (lm.eye_r[0] + lm.eye_l[0]) / 2.0,
        (lm.eye_r[1] + lm.eye_l[1]) / 2.0,
    ];
    let (ox, oy) = (out.roi[0] as f32, out.roi[1] as f32);
    let (w, h) = (out.width(), out.height());
    // Grid indices covering the region, aligned so that a vertex sits on `anchor`.
    let i0 = ((ox - anchor[0]) / cell).floor() as i32 - 1;
    let i1 = ((ox + w as f32 - anchor[0]) / cell).ceil() as i32 + 1;
    let j0 = ((oy - anchor[1]) / cell).floor() as i32 - 1;
    let j1 = ((oy + h as f32 - anchor[1]) / cell).ceil() as i32 + 1;
    let vertex = |i: i32, j: i32| [anchor[0] + i as f32 * cell, anchor[1] + j as f32 * cell];
    let moved = |p: [f32; 2]| {
        let mut d = [0.0f32; 2];
        for (a, amp) in actions {
            let r = (p[0] - a.point[0]).hypot(p[1] - a.point[1]) / (3.0 * a.extent);
            let k = (1.0 - r).max(0.0) * amp;
            d[0] += k * a.vector[0];
            d[1] += k * a.vector[1];
        }
        d
    };
    let cols = (i1 - i0 + 1) as usize;
    let disp: Vec<[f32; 2]> = (j0..=j1)
        .flat_map(|j| (i0..=i1).map(move |i| (i, j)))
        .map(|(i, j)| moved(vertex(i, j)))
        .collect();
    for y in 0..h {
        for x in 0..w {
            let p = [x as f32 + ox, y as f32 + oy];
            let gx = (p[0] - anchor[0]) / cell - i0 as f32;
            let gy = (p[1] - anchor[1]) / cell - j0 as f32;
            let (ci, cj) = (gx.floor() as usize, gy.floor() as usize);
            let (fx, fy) = (gx - ci as f32, gy - cj as f32);
            let at = |di: usize, dj: usize| disp[(cj + dj) * cols + ci + di];
            // Each cell is split along its main diagonal into two triangles.
            let (a, b, c, wa, wb, wc) = if fx >= fy {
                (at(0, 0), at(1, 0), at(1, 1), 1.0 - fx, fx - fy, fy)
            } else {
                (at(0, 0), at(0, 1), at(1, 1), 1.0 - fy, fy - fx, fx)
            };
            out.dx[y * w + x] += wa * a[0] + wb * b[0] + wc * c[0];
            out.dy[y * w + x] += wa * a[1] + wb * b[1] + wc * c[1];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::aus::Side;
    use crate::data::synth::identity::astronaut_landmarks;

    fn peak(f: &Field) -> f32 {
        f.dx.iter()
            .zip(&f.dy)
            .map(|(x, y)| x.hypot(*y))
            .fold(0.0, f32::max)
    }

    #[test]
    fn every_family_moves_the_skin_by_the_amplitude_and_only_near_the_action() {
        let lm = astronaut_landmarks();
        let roi = lm.face_roi(512, 512);
        for au in [1, 4, 12, 17] {
            let acts: Vec<(Action, f32)> = actions(au, Side::Both, &Shape::NOMINAL, &lm, 1.0)
                .into_iter()
                .map(|a| (a, 1.5))
                .collect();
            for fam in Family::ALL {
                let f = field(fam, &acts, roi, &lm);
                let p = peak(&f);
                assert!((1.2..=2.2).contains(&p), "AU{au} {fam:?}: peak {p}");
                // Far from every action (the top-left corner of the region) nothing moves.
                assert!(f.dx[0].hypot(f.dy[0]) < 1e-3, "AU{au} {fam:?}");
            }
        }
    }

    #[test]
    fn families_differ_and_shapes_move_the_action() {
        let lm = astronaut_landmarks();
        let roi = lm.face_roi(512, 512);
        let acts: Vec<(Action, f32)> = actions(12, Side::Both, &Shape::NOMINAL, &lm, 1.0)
            .into_iter()
            .map(|a| (a, 1.0))
            .collect();
        let fields: Vec<Field> = Family::ALL
            .iter()
            .map(|&f| field(f, &acts, roi, &lm))
            .collect();
        for i in 0..3 {
            for j in i + 1..3 {
                let d: f32 = fields[i]
                    .dy
                    .iter()
                    .zip(&fields[j].dy)
                    .map(|(a, b)| (a - b).abs())
                    .sum();
                assert!(
                    d > 10.0,
                    "families {i} and {j} give nearly the same field ({d})"
                );
            }
        }
        let shape = Shape {
            shift: [0.05, 0.0],
            spread: 1.2,
            turn_deg: 10.0,
        };
        let moved = actions(12, Side::Both, &shape, &lm, 1.0);
        let plain = actions(12, Side::Both, &Shape::NOMINAL, &lm, 1.0);
        // Right and left move apart (mirror), directions turn the other way on the left.
        assert!(moved[0].point[0] > plain[0].point[0]);
        assert!(moved[1].point[0] < plain[1].point[0]);
        assert!((moved[0].vector[0] + moved[1].vector[0]).abs() < 1e-6);
        assert_eq!(Family::parse("mesh").unwrap(), Family::Mesh);
        assert!(Family::parse("warp").is_err());
    }
}
