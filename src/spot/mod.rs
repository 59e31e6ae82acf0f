//! Real-time onset/apex/offset spotting on aligned face crops (one [`Spotter`] per face track).
//!
//! Per frame: DIS optical flow between the crop k frames back and this one ([`flow`]), one mean
//! vector per region (brows, eyes, mouth corners, chin; [`roi`]) minus the nose region's (head
//! motion), chained into a displacement from neutral ([`signal`]); an adaptive threshold over a
//! running window ([`threshold`]); events with apex, edges, merging and micro/macro labels
//! ([`peaks`]). Parameters: `[spot]` ([`params`], calibration/spotting.toml).

pub mod eval;
pub mod flow;
pub mod params;
pub mod peaks;
pub mod roi;
pub mod run;
pub mod signal;
pub mod threshold;

pub use params::SpotConfig;

use anyhow::{Result, bail};
use params::frames;
use peaks::{Decision, SegmentRules, Segmenter};
use serde::Serialize;
use signal::{Sample, SignalBuilder};
use threshold::{RunningThreshold, centred_levels};

/// Micro- or macro-expression, by duration (`spot.micro_max_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalKind {
    /// Shorter than `micro_max_s`.
    Micro,
    /// Longer.
    Macro,
}

/// A spotted expression: inclusive frame indices as given to [`Spotter::push`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// First frame.
    pub onset: u64,
    /// Frame of the largest displacement.
    pub apex: u64,
    /// Last frame (inclusive).
    pub offset: u64,
    /// Apex height over the threshold it crossed (> 1).
    pub score: f32,
    /// Micro or macro.
    pub kind: IntervalKind,
    /// Frame at which the interval was decided (emitted).
    pub decided_at: u64,
    /// Region that moved most at the apex.
    pub region: &'static str,
}

/// Counters of one spotter.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SpotStats {
    /// Crops pushed.
    pub frames: u64,
    /// Intervals emitted.
    pub intervals: u64,
    /// Events dropped as blinks.
    pub blinks: u64,
    /// Events dropped as too short or of a kind not emitted.
    pub dropped: u64,
}

/// Live spotter for one face track.
pub struct Spotter {
    signal: SignalBuilder,
    decider: Decider,
    latest: Option<(u64, f32)>,
}

/// The causal decision part of a spotter (threshold + segmenter), fed with signal samples.
pub struct Decider {
    threshold: RunningThreshold,
    segmenter: Segmenter,
    stats: SpotStats,
}

impl Decider {
    /// A decider for `fps`.
    pub fn new(cfg: &SpotConfig, fps: f64) -> Result<Decider> {
        let k = cfg.lag_frames(fps);
        Ok(Decider {
            threshold: RunningThreshold::new(
                frames(cfg.window_s, fps),
                2 * k,
                cfg.threshold_mads as f32,
                cfg.min_threshold_px as f32,
            ),
            segmenter: Segmenter::new(rules(cfg, fps)?),
            stats: SpotStats::default(),
        })
    }

    /// One sample of a region of `kind` named `name`; the interval decided at this frame, if any.
    pub fn step(&mut self, s: &Sample, kind: roi::RoiKind, name: &'static str) -> Option<Interval> {
        self.stats.frames += 1;
        let level = self.threshold.level();
        let d = self.segmenter.step(s, level, kind, name);
        if !self.segmenter.in_event() {
            self.threshold.add(s.value);
        }
        self.record(d)
    }

    /// End of stream.
    pub fn finish(&mut self) -> Option<Interval> {
        let d = self.segmenter.finish();
        self.record(d)
    }

    /// Counters.
    pub fn stats(&self) -> SpotStats {
        self.stats
    }

    fn record(&mut self, d: Option<Decision>) -> Option<Interval> {
        match d? {
            Decision::Interval(i) => {
                self.stats.intervals += 1;
                Some(i)
            }
            Decision::Blink => {
                self.stats.blinks += 1;
                None
            }
            Decision::Dropped => {
                self.stats.dropped += 1;
                None
            }
        }
    }
}

fn rules(cfg: &SpotConfig, fps: f64) -> Result<SegmentRules> {
    Ok(SegmentRules {
        edge_fraction: cfg.edge_fraction as f32,
        merge_frames: frames(cfg.min_distance_s, fps) as u64,
        min_frames: frames(cfg.min_duration_s, fps).max(1) as u64,
        max_frames: frames(cfg.max_duration_s, fps).max(2) as u64,
        // Strictly shorter than micro_max_s is micro.
        micro_max_frames: (cfg.micro_max_s * fps).ceil() as u64 - 1,
        blink_px: cfg.blink_px as f32,
        emit: cfg.emit_kind()?,
    })
}

fn builder(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<SignalBuilder> {
    cfg.validate()?;
    if !(fps.is_finite() && fps > 0.0) {
        bail!("spotting: frame rate {fps} is not a positive number");
    }
    if crop_size < 32 {
        bail!("spotting: crop size {crop_size} is below 32 pixels");
    }
    let layout = roi::RoiLayout::for_crop_size(crop_size);
    let flow = flow::RoiFlow::new(crop_size, layout, cfg.dis_finest_scale)?;
    Ok(SignalBuilder::new(
        flow,
        crop_size,
        cfg.lag_frames(fps),
        cfg.leak_s * fps,
    ))
}

impl Spotter {
    /// A spotter for crops of `crop_size`² pixels at `fps` frames per second.
    pub fn new(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<Spotter> {
        Ok(Spotter {
            signal: builder(cfg, fps, crop_size)?,
            decider: Decider::new(cfg, fps)?,
            latest: None,
        })
    }

    /// Feeds the aligned gray crop (crop_size², row-major) of frame `index` (increasing, may skip);
    /// returns the intervals decided at this frame.
    pub fn push(&mut self, index: u64, crop: &[u8]) -> Result<Vec<Interval>> {
        let Some(s) = self.signal.push(index, crop)? else {
            return Ok(Vec::new());
        };
        self.latest = Some((s.index, s.value));
        let kind = self.signal.region_kind(s.region);
        let name = self.signal.region_name(s.region);
        Ok(self.decider.step(&s, kind, name).into_iter().collect())
    }

    /// Latest (frame index, spotting signal in crop pixels), for per-frame output.
    pub fn signal(&self) -> Option<(u64, f32)> {
        self.latest
    }

    /// End of stream: the interval still open, if any.
    pub fn finish(&mut self) -> Vec<Interval> {
        self.decider.finish().into_iter().collect()
    }

    /// What the spotter has done (frames counts frames with a signal).
    pub fn stats(&self) -> SpotStats {
        self.decider.stats()
    }
}

/// The signal builder alone (for offline use and parameter sweeps over recorded signals).
pub fn signal_builder(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<SignalBuilder> {
    builder(cfg, fps, crop_size)
}

/// Offline spotting of one whole video.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineSpots {
    /// (frame index, spotting signal) for every frame with a signal.
    pub signal: Vec<(u64, f32)>,
    /// Intervals in time order.
    pub intervals: Vec<Interval>,
    /// Counters.
    pub stats: SpotStats,
}

/// Offline (look-ahead) spotting over a whole video's crops: the threshold window is centred on
/// each frame and recomputed without the frames of the first pass's events.
pub fn spot_offline(
    cfg: &SpotConfig,
    fps: f64,
    crop_size: usize,
    crops: impl Iterator<Item = (u64, Vec<u8>)>,
) -> Result<OfflineSpots> {
    let mut b = builder(cfg, fps, crop_size)?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut frames_in = 0;
    for (i, c) in crops {
        frames_in += 1;
        if let Some(s) = b.push(i, &c)? {
            samples.push(s);
        }
    }
    let values: Vec<f32> = samples.iter().map(|s| s.value).collect();
    let window = frames(cfg.window_s, fps);
    let step = cfg.lag_frames(fps).div_ceil(4);
    let mut exclude = vec![false; values.len()];
    let mut result = Vec::new();
    let mut stats = SpotStats::default();
    for _pass in 0..2 {
        let levels = centred_levels(
            &values,
            &exclude,
            window,
            step,
            cfg.threshold_mads as f32,
            cfg.min_threshold_px as f32,
        );
        let mut seg = Segmenter::new(rules(cfg, fps)?);
        stats = SpotStats {
            frames: frames_in,
            ..Default::default()
        };
        result.clear();
        let mut decide = |d: Option<Decision>, stats: &mut SpotStats| match d {
            Some(Decision::Interval(i)) => {
                stats.intervals += 1;
                result.push(i);
            }
            Some(Decision::Blink) => stats.blinks += 1,
            Some(Decision::Dropped) => stats.dropped += 1,
            None => {}
        };
        let mut event_start: Option<usize> = None;
        for (j, s) in samples.iter().enumerate() {
            let d = seg.step(s, levels[j], b.region_kind(s.region), b.region_name(s.region));
            match (seg.in_event(), event_start) {
                (true, None) => event_start = Some(j),
                (false, Some(a)) => {
                    exclude[a..=j].iter_mut().for_each(|e| *e = true);
                    event_start = None;
                }
                _ => {}
            }
            decide(d, &mut stats);
        }
        decide(seg.finish(), &mut stats);
    }
    Ok(OfflineSpots {
        signal: samples.iter().map(|s| (s.index, s.value)).collect(),
        intervals: result,
        stats,
    })
}
