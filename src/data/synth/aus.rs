//! Action Units as FACS-plausible local skin displacements, and the combinations SynthME samples.
//!
//! Each AU moves skin around facial landmarks by a sum of Gaussian-weighted displacement blobs; the
//! amplitude is given in pixels of the canonical 128 px aligned face (the crop aullm's front-end sees),
//! so a 1.0 px AU moves the aligned crop by one pixel at the blob centre whatever the face size.

use super::identity::Landmarks;
use crate::rng::Rng;

/// Which side of the face an AU acts on (subject's right = image left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Side {
    /// Both sides.
    Both,
    /// Subject's left only (FACS "L").
    Left,
    /// Subject's right only (FACS "R").
    Right,
}

/// The AUs SynthME renders: CASME II's eight plus cheek raise and blink.
pub const SYNTH_AUS: [crate::au::Au; 10] = [1, 2, 4, 6, 7, 12, 14, 15, 17, 45];

/// One displacement blob: centre and spread in pixels, direction as a unit vector per unit amplitude.
#[derive(Debug, Clone, Copy)]
pub struct Blob {
    /// Centre (x, y) in neutral-frame pixels.
    pub centre: [f32; 2],
    /// Gaussian standard deviation in pixels.
    pub sigma: f32,
    /// Displacement at the centre for amplitude 1 (neutral-frame pixels).
    pub vector: [f32; 2],
}

/// (landmark on the subject's right, its mirror on the left, sigma in IOD units, right-side vector).
type BlobPair = ([f32; 2], [f32; 2], f32, [f32; 2]);

/// The blobs of one AU on one face, for amplitude 1 canonical pixel.
pub fn au_blobs(
    au: crate::au::Au,
    side: Side,
    lm: &Landmarks,
    crop_to_frame_scale: f32,
) -> Vec<Blob> {
    let iod = lm.iod();
    let s = crop_to_frame_scale;
    let pairs: &[BlobPair] = &match au {
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
        // Chin raiser (mentalis): chin boss and lower lip up (one midline blob).
        17 => vec![(lm.chin, lm.chin, 0.30, [0.0, -1.0])],
        // Blink (levator relaxation): upper lids down.
        45 => vec![(lm.lid_upper_r, lm.lid_upper_l, 0.09, [0.0, 1.0])],
        _ => vec![],
    };
    let mut out = Vec::new();
    for (r, l, sig, v) in pairs {
        let midline = r == l;
        if midline || side != Side::Left {
            out.push(Blob {
                centre: *r,
                sigma: sig * iod,
                vector: [v[0] * s, v[1] * s],
            });
        }
        // The subject's left mirrors the horizontal component.
        if !midline && side != Side::Right {
            out.push(Blob {
                centre: *l,
                sigma: sig * iod,
                vector: [-v[0] * s, v[1] * s],
            });
        }
    }
    out
}

/// One AU occurrence in a sampled expression.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AuSpec {
    /// FACS AU number.
    pub au: crate::au::Au,
    /// Laterality.
    pub side: Side,
    /// Apex amplitude in canonical 128 px face pixels.
    pub amplitude: f32,
}

impl AuSpec {
    /// CASME II-style code: "12", "L12", "R14".
    pub fn code(&self) -> String {
        match self.side {
            Side::Both => self.au.to_string(),
            Side::Left => format!("L{}", self.au),
            Side::Right => format!("R{}", self.au),
        }
    }
}

/// The co-occurrence table SynthME samples from: (AU combination, weight, estimated emotion).
/// Weights follow the shape of CASME II's published label counts (AU4 and AU12 most frequent,
/// 1+2, 4+7, 6+12, 15+17 as the common pairs); they are documented in README.md.
pub const COMBINATIONS: &[(&[crate::au::Au], f32, &str)] = &[
    (&[4], 0.14, "others"),
    (&[4, 7], 0.10, "disgust"),
    (&[1, 2], 0.10, "surprise"),
    (&[12], 0.09, "happiness"),
    (&[6, 12], 0.09, "happiness"),
    (&[14], 0.07, "repression"),
    (&[15, 17], 0.07, "repression"),
    (&[4, 15, 17], 0.06, "sadness"),
    (&[17], 0.06, "repression"),
    (&[1], 0.05, "others"),
    (&[2], 0.03, "others"),
    (&[7], 0.05, "others"),
    (&[15], 0.04, "sadness"),
    (&[1, 4], 0.03, "sadness"),
    (&[45], 0.02, "others"),
];

/// Draws a combination from [`COMBINATIONS`] with amplitudes in `amp_range` and occasional laterality.
pub fn sample_expression(
    rng: &mut Rng,
    amp_range: [f32; 2],
    lateral_prob: f32,
) -> (Vec<AuSpec>, &'static str) {
    let total: f32 = COMBINATIONS.iter().map(|c| c.1).sum();
    let mut pick = rng.uniform() as f32 * total;
    let mut chosen = COMBINATIONS[0];
    for c in COMBINATIONS {
        if pick < c.1 {
            chosen = *c;
            break;
        }
        pick -= c.1;
    }
    // Asymmetric expressions use one side for all AUs that have two sides (17 is midline).
    let side = if (rng.uniform() as f32) < lateral_prob {
        if rng.uniform() < 0.5 {
            Side::Left
        } else {
            Side::Right
        }
    } else {
        Side::Both
    };
    let base = amp_range[0] + (amp_range[1] - amp_range[0]) * rng.uniform() as f32;
    let aus = chosen
        .0
        .iter()
        .map(|&au| {
            // Co-occurring AUs share an intensity level with some spread, as in FACS codings.
            let jitter = 0.8 + 0.4 * rng.uniform() as f32;
            let amp = if au == 45 {
                // A blink closes the lid: its size is set by the eye, not the micro range.
                4.0
            } else {
                (base * jitter).clamp(amp_range[0], amp_range[1])
            };
            AuSpec {
                au,
                side: if au == 17 || au == 45 {
                    Side::Both
                } else {
                    side
                },
                amplitude: amp,
            }
        })
        .collect();
    (aus, chosen.2)
}

/// CASME II "Action Units" cell for a combination: "1+2", "L12", "4+R14".
pub fn au_string(aus: &[AuSpec]) -> String {
    aus.iter().map(AuSpec::code).collect::<Vec<_>>().join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_weights_sum_to_one_and_every_synth_au_appears() {
        let total: f32 = COMBINATIONS.iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        for au in SYNTH_AUS {
            assert!(COMBINATIONS.iter().any(|c| c.0.contains(&au)), "AU{au}");
        }
    }

    #[test]
    fn sampling_is_deterministic_and_in_range() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        for _ in 0..200 {
            let (x, ex) = sample_expression(&mut a, [0.3, 2.0], 0.2);
            let (y, ey) = sample_expression(&mut b, [0.3, 2.0], 0.2);
            assert_eq!(x, y);
            assert_eq!(ex, ey);
            for s in &x {
                assert!(s.au == 45 || (0.3..=2.0).contains(&s.amplitude));
            }
        }
        assert_eq!(
            au_string(&[
                AuSpec {
                    au: 4,
                    side: Side::Both,
                    amplitude: 1.0
                },
                AuSpec {
                    au: 14,
                    side: Side::Right,
                    amplitude: 1.0
                }
            ]),
            "4+R14"
        );
    }
}
