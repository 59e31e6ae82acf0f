//! Real-time onset/apex/offset spotting on aligned face crops (one [`Spotter`] per face track).
//!
//! Per frame: DIS optical flow between the crop k frames back and this one ([`flow`]), one mean
//! vector per region (brows, eyes, mouth corners, chin; [`roi`]) minus the nose region's (head
//! motion), chained into a displacement from neutral ([`signal`]); an adaptive threshold over a
//! running window ([`threshold`]); events with apex, edges, merging and micro/macro labels
//! ([`peaks`]). Parameters: `[spot]` ([`params`], calibration/spotting.toml).
//! May import: face (crop geometry). Its evaluation over annotated videos is `eval::spot_videos`.

pub mod flow;
pub mod params;
pub mod peaks;
pub mod roi;
pub mod signal;
pub mod threshold;

pub use params::SpotConfig;

use anyhow::{Result, bail};
use params::frames;
use peaks::{Decision, SegmentRules, Segmenter};
use serde::Serialize;
use signal::{Sample, SignalBuilder};
use threshold::{Level, RunningThreshold, centred_levels};

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

fn rules(cfg: &SpotConfig, fps: f64) -> Result<SegmentRules> {
    Ok(SegmentRules {
        edge_fraction: cfg.edge_fraction as f32,
        merge_frames: frames(cfg.min_distance_s, fps) as u64,
        min_frames: frames(cfg.min_duration_s, fps).max(1) as u64,
        max_frames: frames(cfg.max_duration_s, fps).max(2) as u64,
        // Strictly shorter than micro_max_s is micro.
        micro_max_frames: ((cfg.micro_max_s * fps).ceil() as u64).saturating_sub(1),
        blink_px: cfg.blink_px as f32,
        emit: cfg.emit_kind()?,
        lag_frames: cfg.lag_frames(fps) as u64,
    })
}

/// Signal samples spanning `n` frames (one sample per `flow_every` frames).
fn samples(cfg: &SpotConfig, n: usize) -> usize {
    (n / cfg.flow_every.max(1) as usize).max(1)
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
    let flow = flow::RoiFlow::new(
        crop_size,
        layout,
        cfg.dis_finest_scale,
        cfg.dis_patch_stride,
    )?;
    Ok(SignalBuilder::new(
        flow,
        crop_size,
        cfg.lag_frames(fps),
        cfg.flow_every as usize,
    ))
}

/// Where decision levels come from: a causal running window (live) or precomputed (offline).
enum Levels {
    Running(RunningThreshold),
    Fixed(Vec<Option<Level>>, usize),
}

/// The decision part of a spotter (threshold + segmenter), fed with signal samples.
pub struct Decider {
    levels: Levels,
    segmenter: Segmenter,
    stats: SpotStats,
}

impl Decider {
    /// A live decider for `fps` (causal running threshold).
    pub fn new(cfg: &SpotConfig, fps: f64) -> Result<Decider> {
        let k = cfg.lag_frames(fps);
        Ok(Decider {
            levels: Levels::Running(RunningThreshold::new(
                samples(cfg, frames(cfg.window_s, fps)),
                samples(cfg, 2 * k),
                cfg.threshold_mads as f32,
                cfg.min_threshold_px as f32,
            )),
            segmenter: Segmenter::new(rules(cfg, fps)?),
            stats: SpotStats::default(),
        })
    }

    /// A decider that uses `levels[i]` for the i-th sample (offline, look-ahead levels).
    pub fn with_levels(cfg: &SpotConfig, fps: f64, levels: Vec<Option<Level>>) -> Result<Decider> {
        Ok(Decider {
            levels: Levels::Fixed(levels, 0),
            segmenter: Segmenter::new(rules(cfg, fps)?),
            stats: SpotStats::default(),
        })
    }

    /// True while an event is open.
    pub fn in_event(&self) -> bool {
        self.segmenter.in_event()
    }

    /// One sample of a region of `kind` named `name`; the interval decided at this frame, if any.
    pub fn step(&mut self, s: &Sample, kind: roi::RoiKind, name: &'static str) -> Option<Interval> {
        self.stats.frames += 1;
        let level = match &mut self.levels {
            Levels::Running(t) => t.level(),
            Levels::Fixed(v, i) => {
                *i += 1;
                v.get(*i - 1).copied().flatten()
            }
        };
        let d = self.segmenter.step(s, level, kind, name);
        if !self.segmenter.in_event()
            && let Levels::Running(t) = &mut self.levels
        {
            t.add(s.value);
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
        Ok(step(&mut self.signal, &mut self.decider, &s)?
            .into_iter()
            .collect())
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

/// The signal builder alone (for inspection while tuning).
pub fn signal_builder(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<SignalBuilder> {
    builder(cfg, fps, crop_size)
}

/// Feeds a sample to the decider and pins / releases the flow reference as events open and close.
fn step(signal: &mut SignalBuilder, decider: &mut Decider, s: &Sample) -> Result<Option<Interval>> {
    let kind = signal.region_kind(s.region);
    let name = signal.region_name(s.region);
    let out = decider.step(s, kind, name);
    if decider.in_event() {
        signal.pin()?;
    } else if signal.is_pinned() {
        signal.release();
    }
    Ok(out)
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

/// Offline (look-ahead) spotting over a whole video's crops: a live pass finds the events; the
/// threshold is then taken from a window centred on each frame over the quiet frames (events left
/// out), and a second pass decides with it.
pub fn spot_offline(
    cfg: &SpotConfig,
    fps: f64,
    crop_size: usize,
    crops: impl Iterator<Item = (u64, Vec<u8>)>,
) -> Result<OfflineSpots> {
    let crops: Vec<(u64, Vec<u8>)> = crops.collect();
    // Pass 1: live decisions; record the signal and which samples were inside events.
    let mut b = builder(cfg, fps, crop_size)?;
    let mut d = Decider::new(cfg, fps)?;
    let (mut values, mut inside) = (Vec::new(), Vec::new());
    for (i, c) in &crops {
        if let Some(s) = b.push(*i, c)? {
            values.push(s.value);
            step(&mut b, &mut d, &s)?;
            inside.push(d.in_event() || b.is_pinned());
        }
    }
    let levels = centred_levels(
        &values,
        &inside,
        samples(cfg, frames(cfg.window_s, fps)),
        samples(cfg, cfg.lag_frames(fps).div_ceil(4)),
        cfg.threshold_mads as f32,
        cfg.min_threshold_px as f32,
    );
    // Pass 2: the same path with the look-ahead levels.
    let mut b = builder(cfg, fps, crop_size)?;
    let mut d = Decider::with_levels(cfg, fps, levels)?;
    let (mut signal, mut intervals) = (Vec::new(), Vec::new());
    for (i, c) in &crops {
        if let Some(s) = b.push(*i, c)? {
            signal.push((s.index, s.value));
            intervals.extend(step(&mut b, &mut d, &s)?);
        }
    }
    intervals.extend(d.finish());
    let mut stats = d.stats();
    stats.frames = crops.len() as u64;
    Ok(OfflineSpots {
        signal,
        intervals,
        stats,
    })
}
