//! What SynthME generates, decided up front from the seed: clips, long videos and their events.
//! Planning is separate from rendering so annotations are byte-identical for a seed whatever the
//! rendering speed, thread count or output format.

use super::aus::{AuSpec, Side, sample_expression};
use super::capture::{Capture, CaptureRanges};
use super::motion::{Family, Shape, Variation};
use super::render::Nuisances;
use crate::rng::Rng;
use serde::Serialize;

/// Generator settings (`aullm synth` flags and presets).
#[derive(Debug, Clone, Serialize)]
pub struct SynthConfig {
    /// Master seed.
    pub seed: u64,
    /// Number of identities (subjects).
    pub subjects: u32,
    /// Micro-expression clips per subject.
    pub clips_per_subject: u32,
    /// Long videos (spotting), spread over the subjects.
    pub long_videos: u32,
    /// Length of each long video in seconds.
    pub long_seconds: f64,
    /// Micro-expressions per long video.
    pub micros_per_video: u32,
    /// Macro-expression distractors per long video.
    pub macros_per_video: u32,
    /// Blinks per minute in long videos (nuisance, not annotated as expressions).
    pub blinks_per_minute: f64,
    /// Frame rate.
    pub fps: f64,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// Micro-expression apex amplitude range, canonical 128 px face pixels.
    pub amplitude: [f32; 2],
    /// Macro-expression amplitude range.
    pub macro_amplitude: [f32; 2],
    /// Micro-expression duration range (onset to offset), milliseconds.
    pub duration_ms: [f64; 2],
    /// Macro-expression duration range, milliseconds (longer than 500 ms).
    pub macro_duration_ms: [f64; 2],
    /// Probability that an expression is one-sided (L/R).
    pub lateral_prob: f32,
    /// Nuisances.
    pub nuisances: Nuisances,
    /// JPEG quality of frame files (a drawn capture's quality replaces it).
    pub jpeg_quality: i32,
    /// Displacement families; each expression is rendered by one, drawn uniformly.
    pub families: Vec<Family>,
    /// Per-occurrence variation of each AU's action and FACS intensity levels (none: the manual's
    /// action at a uniform amplitude).
    pub variation: Option<Variation>,
    /// Capture conditions drawn per clip and video (none: only the nuisances above).
    pub capture: Option<CaptureRanges>,
    /// Durations drawn as CASME II's are distributed (else uniform over `duration_ms`).
    pub casme2_timing: bool,
    /// Speech-like mouth movements (lips part, jaw drop; not annotated) per minute of long video.
    pub speech_per_minute: f64,
    /// Probability that a clip also holds a blink (a distractor, not annotated).
    pub clip_blink_prob: f64,
    /// An evaluation set (a held-out family or held-out identities): `aullm train` refuses it.
    pub evaluation_only: bool,
}

impl SynthConfig {
    /// Tiny: seconds to generate; for CI.
    pub fn ci() -> Self {
        Self {
            subjects: 3,
            clips_per_subject: 2,
            long_videos: 1,
            long_seconds: 3.0,
            micros_per_video: 2,
            macros_per_video: 1,
            ..Self::bench()
        }
    }

    /// The benchmark: 24 subjects × 10 clips plus 8 long videos.
    pub fn bench() -> Self {
        Self {
            seed: 1,
            subjects: 24,
            clips_per_subject: 10,
            long_videos: 8,
            long_seconds: 12.0,
            micros_per_video: 5,
            macros_per_video: 2,
            blinks_per_minute: 12.0,
            fps: 200.0,
            width: 640,
            height: 480,
            amplitude: [0.3, 2.0],
            macro_amplitude: [3.0, 6.0],
            duration_ms: [40.0, 500.0],
            macro_duration_ms: [600.0, 2000.0],
            lateral_prob: 0.15,
            nuisances: Nuisances {
                noise_sigma: 1.5,
                flicker: 0.01,
                head_px: 0.4,
                head_deg: 0.2,
            },
            jpeg_quality: 95,
            families: vec![Family::Blobs],
            variation: None,
            capture: None,
            casme2_timing: false,
            speech_per_minute: 0.0,
            clip_blink_prob: 0.0,
            evaluation_only: false,
        }
    }

    /// The training data of models/default: 36 subjects x 10 clips and 8 long videos, rendered by
    /// the blob and muscle families with per-occurrence variation, drawn capture conditions,
    /// CASME II timing, blinks and speech as distractors.
    pub fn general() -> Self {
        Self {
            subjects: 36,
            families: vec![Family::Blobs, Family::Muscles],
            variation: Some(Variation::GENERAL),
            capture: Some(CaptureRanges::GENERAL),
            casme2_timing: true,
            speech_per_minute: 6.0,
            clip_blink_prob: 0.1,
            ..Self::bench()
        }
    }

    /// The held-out evaluation set: the mesh family only (never trained on), otherwise drawn like
    /// [`SynthConfig::general`], from another seed; written as evaluation-only.
    pub fn heldout() -> Self {
        Self {
            seed: 2,
            subjects: 8,
            families: vec![Family::Mesh],
            evaluation_only: true,
            ..Self::general()
        }
    }
}

/// A planned expression: which AUs, when, how strong.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// AUs with sides and apex amplitudes.
    pub aus: Vec<AuSpec>,
    /// Estimated emotion (CASME II vocabulary).
    pub emotion: String,
    /// Onset, apex, offset as frame indices from the start of the clip or video (0-based).
    pub onset: u32,
    /// See `onset`.
    pub apex: u32,
    /// See `onset`.
    pub offset: u32,
    /// "micro", "macro", "blink" or "speech".
    pub kind: String,
    /// The displacement family that renders it.
    pub family: Family,
}

/// A planned micro-expression clip in CASME II layout.
#[derive(Debug, Clone, Serialize)]
pub struct ClipPlan {
    /// Subject number (1-based).
    pub subject: u32,
    /// Clip folder name, e.g. `EP03_01`.
    pub name: String,
    /// Number of the first frame file (`img{first}.jpg`), arbitrary like CASME II's.
    pub first_frame: u32,
    /// Frames in the clip (onset to offset inclusive).
    pub frames: u32,
    /// The expression (onset = 0, offset = frames − 1).
    pub event: Event,
    /// Seed for this clip's nuisances.
    pub seed: u64,
    /// Capture conditions, when drawn.
    pub capture: Option<Capture>,
    /// A blink inside the clip (distractor, not annotated).
    pub distractor: Option<Event>,
}

/// A planned long video with several expressions.
#[derive(Debug, Clone, Serialize)]
pub struct VideoPlan {
    /// Subject number (1-based).
    pub subject: u32,
    /// Video name, e.g. `006_1` style: `{subject:03}_{k}`.
    pub name: String,
    /// Frames in the video.
    pub frames: u32,
    /// Expressions and blinks, in time order.
    pub events: Vec<Event>,
    /// Seed for this video's nuisances.
    pub seed: u64,
    /// Capture conditions, when drawn.
    pub capture: Option<Capture>,
}

/// Everything to generate.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Clips.
    pub clips: Vec<ClipPlan>,
    /// Long videos.
    pub videos: Vec<VideoPlan>,
}

fn frames_for(ms: f64, fps: f64) -> u32 {
    ((ms / 1000.0 * fps).round() as u32).max(3)
}

/// Draws an event of `frames` frames starting at `onset` with apex 25–55 % in.
fn event(
    rng: &mut Rng,
    aus: Vec<AuSpec>,
    emotion: &str,
    onset: u32,
    frames: u32,
    kind: &str,
    family: Family,
) -> Event {
    let apex_frac = 0.25 + 0.3 * rng.uniform();
    let offset = onset + frames - 1;
    let apex = (onset + ((frames - 1) as f64 * apex_frac).round() as u32)
        .clamp(onset + 1, offset.saturating_sub(1).max(onset + 1));
    Event {
        aus,
        emotion: emotion.to_string(),
        onset,
        apex,
        offset,
        kind: kind.to_string(),
        family,
    }
}

/// One of the configured families, drawn uniformly (no draw when there is one).
fn pick_family(rng: &mut Rng, families: &[Family]) -> Family {
    match families {
        [] => Family::Blobs,
        [one] => *one,
        many => many[(rng.next_u64() % many.len() as u64) as usize],
    }
}

/// A micro-expression's duration in ms: uniform over `range`, or with `casme2` a log-normal around
/// 300 ms (CASME II's micro-expressions last at most 500 ms, most 200–400 ms), kept inside `range`.
fn micro_ms(rng: &mut Rng, range: [f64; 2], casme2: bool) -> f64 {
    if casme2 {
        (300.0 * (0.3 * rng.gaussian()).exp()).clamp(range[0].max(100.0), range[1])
    } else {
        range[0] + (range[1] - range[0]) * rng.uniform()
    }
}

/// A blink: the upper lids close (its size is set by the eye, not the micro range).
fn blink() -> AuSpec {
    AuSpec {
        au: 45,
        side: Side::Both,
        amplitude: 4.0,
        shape: Shape::NOMINAL,
    }
}

/// Speech-like mouth movement: lips part and the jaw drops, 1.5–4 canonical pixels.
fn speech(rng: &mut Rng) -> Vec<AuSpec> {
    let amplitude = 1.5 + 2.5 * rng.uniform() as f32;
    [25, 26]
        .into_iter()
        .map(|au| AuSpec {
            au,
            side: Side::Both,
            amplitude,
            shape: Shape::NOMINAL,
        })
        .collect()
}

/// Plans the whole dataset from the configuration.
pub fn plan(cfg: &SynthConfig) -> Plan {
    let mut clips = Vec::new();
    for s in 0..cfg.subjects {
        let mut rng = Rng::new(cfg.seed.wrapping_mul(1_000_003) ^ ((s as u64 + 1) * 0x51_7CC1));
        for c in 0..cfg.clips_per_subject {
            let var = cfg.variation.as_ref();
            let (aus, emotion) = sample_expression(&mut rng, cfg.amplitude, cfg.lateral_prob, var);
            let ms = micro_ms(&mut rng, cfg.duration_ms, cfg.casme2_timing);
            let frames = frames_for(ms, cfg.fps);
            let first_frame = 1 + (rng.next_u64() % 240) as u32;
            let ev = event(&mut rng, aus, emotion, 0, frames, "micro", Family::Blobs);
            let name = format!("EP{:02}_{:02}", c + 1, 1 + (rng.next_u64() % 3));
            let seed = rng.next_u64();
            // Draws that the original SynthME did not make come after its own, so its data stay
            // the same for a seed.
            let family = pick_family(&mut rng, &cfg.families);
            let capture = cfg.capture.as_ref().map(|r| Capture::draw(&mut rng, r));
            let distractor = (cfg.clip_blink_prob > 0.0 && rng.uniform() < cfg.clip_blink_prob)
                .then(|| {
                    let len = frames_for(100.0 + 100.0 * rng.uniform(), cfg.fps);
                    let start = (rng.uniform() * frames.saturating_sub(len) as f64) as u32;
                    let len = len.min(frames - start);
                    event(
                        &mut rng,
                        vec![blink()],
                        "others",
                        start,
                        len,
                        "blink",
                        family,
                    )
                })
                .filter(|e| e.offset > e.onset + 1);
            clips.push(ClipPlan {
                subject: s + 1,
                name,
                first_frame,
                frames,
                event: Event { family, ..ev },
                seed,
                capture,
                distractor,
            });
        }
    }
    let mut videos = Vec::new();
    let mut rng = Rng::new(cfg.seed ^ 0x100E_71DE);
    for v in 0..cfg.long_videos {
        let subject = 1 + v % cfg.subjects.max(1);
        let total = (cfg.long_seconds * cfg.fps).round() as u32;
        let mut kinds: Vec<&str> = Vec::new();
        kinds.extend(std::iter::repeat_n("micro", cfg.micros_per_video as usize));
        kinds.extend(std::iter::repeat_n("macro", cfg.macros_per_video as usize));
        let blinks = (cfg.blinks_per_minute * cfg.long_seconds / 60.0).round() as usize;
        kinds.extend(std::iter::repeat_n("blink", blinks));
        let talks = (cfg.speech_per_minute * cfg.long_seconds / 60.0).round() as usize;
        kinds.extend(std::iter::repeat_n("speech", talks));
        // Shuffle, then lay the events out in order with gaps so they never overlap.
        for i in (1..kinds.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            kinds.swap(i, j);
        }
        let mut events = Vec::new();
        let lengths: Vec<(u32, &str)> = kinds
            .iter()
            .map(|k| {
                let ms = match *k {
                    "macro" => {
                        cfg.macro_duration_ms[0]
                            + (cfg.macro_duration_ms[1] - cfg.macro_duration_ms[0]) * rng.uniform()
                    }
                    "blink" => 100.0 + 100.0 * rng.uniform(),
                    "speech" => 600.0 + 900.0 * rng.uniform(),
                    _ => micro_ms(&mut rng, cfg.duration_ms, cfg.casme2_timing),
                };
                (frames_for(ms, cfg.fps), *k)
            })
            .collect();
        let busy: u32 = lengths.iter().map(|l| l.0).sum();
        let margin = (0.3 * cfg.fps) as u32;
        let free = total.saturating_sub(busy + 2 * margin);
        let gap = free / (lengths.len() as u32 + 1);
        let mut t = margin;
        for (frames, kind) in lengths {
            t += (gap as f64 * (0.5 + rng.uniform())) as u32 + 1;
            if t + frames + margin > total {
                break;
            }
            let var = cfg.variation.as_ref();
            let (aus, emotion) = match kind {
                "blink" => (vec![blink()], "others"),
                "speech" => (speech(&mut rng), "others"),
                "macro" => sample_expression(&mut rng, cfg.macro_amplitude, cfg.lateral_prob, var),
                _ => sample_expression(&mut rng, cfg.amplitude, cfg.lateral_prob, var),
            };
            let family = pick_family(&mut rng, &cfg.families);
            events.push(event(&mut rng, aus, emotion, t, frames, kind, family));
            t += frames;
        }
        let seed = rng.next_u64();
        let capture = cfg.capture.as_ref().map(|r| Capture::draw(&mut rng, r));
        videos.push(VideoPlan {
            subject,
            name: format!("{:03}_{}", subject, 1 + v / cfg.subjects.max(1)),
            frames: total,
            events,
            seed,
            capture,
        });
    }
    Plan { clips, videos }
}
