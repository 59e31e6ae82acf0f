//! The AU combinations SynthME samples, with laterality, intensity and each occurrence's shape.
//!
//! Amplitudes are pixels of the canonical 128 px aligned face (the crop aullm's front-end sees), so a
//! 1.0 px AU moves the aligned crop by one pixel at its action point whatever the face size; where
//! and how the skin moves is [`super::motion`]'s.

use super::motion::{Shape, Variation};
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

/// One AU occurrence in a sampled expression.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AuSpec {
    /// FACS AU number.
    pub au: crate::au::Au,
    /// Laterality.
    pub side: Side,
    /// Apex amplitude in canonical 128 px face pixels.
    pub amplitude: f32,
    /// This occurrence's departure from the manual's action.
    #[serde(skip_serializing_if = "Shape::is_nominal")]
    pub shape: Shape,
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

/// FACS intensity levels A (trace) to E (maximum) as shares of the amplitude range, with how often
/// each is drawn: micro-expressions are mostly low-intensity.
pub const INTENSITY_LEVELS: [(char, f32); 5] = [
    ('A', 0.25),
    ('B', 0.30),
    ('C', 0.25),
    ('D', 0.12),
    ('E', 0.08),
];

/// Draws a combination from [`COMBINATIONS`] with amplitudes in `amp_range` and occasional laterality.
/// With a `variation`, the amplitude comes from a FACS intensity level (A–E, one fifth of the range
/// each, weighted by [`INTENSITY_LEVELS`]) and each AU gets its own [`Shape`].
pub fn sample_expression(
    rng: &mut Rng,
    amp_range: [f32; 2],
    lateral_prob: f32,
    variation: Option<&Variation>,
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
    let span = amp_range[1] - amp_range[0];
    let base = match variation {
        None => amp_range[0] + span * rng.uniform() as f32,
        Some(_) => {
            let mut pick = rng.uniform() as f32;
            let mut level = INTENSITY_LEVELS.len() - 1;
            for (i, (_, w)) in INTENSITY_LEVELS.iter().enumerate() {
                if pick < *w {
                    level = i;
                    break;
                }
                pick -= w;
            }
            let fifth = span / INTENSITY_LEVELS.len() as f32;
            amp_range[0] + fifth * (level as f32 + rng.uniform() as f32)
        }
    };
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
                shape: variation.map_or(Shape::NOMINAL, |v| Shape::draw(rng, v)),
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
            let (x, ex) = sample_expression(&mut a, [0.3, 2.0], 0.2, None);
            let (y, ey) = sample_expression(&mut b, [0.3, 2.0], 0.2, None);
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
                    amplitude: 1.0,
                    shape: Shape::NOMINAL,
                },
                AuSpec {
                    au: 14,
                    side: Side::Right,
                    amplitude: 1.0,
                    shape: Shape::NOMINAL,
                }
            ]),
            "4+R14"
        );
    }
}
