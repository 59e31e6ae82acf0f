//! Real-time onset/apex/offset spotting on aligned face crops (one [`Spotter`] per face track).
//!
//! Per frame: one translation per region (brows, eyes, mouth corners, chin; [`roi`]) between the
//! crop k frames back and this one, fitted by Lucas–Kanade ([`lk`]; or DIS flow averaged over the
//! region, [`flow`]), minus the nose region's (head motion), chained into a displacement from
//! neutral ([`signal`]); each region scored against its own running noise spread ([`threshold`], [`Decider`]); events with apex, edges, merging,
//! micro/macro labels and the blink and speech rules ([`peaks`]). A jump of the whole crop (a
//! tracker re-anchor) restarts the history. Parameters: `[spot]` ([`params`],
//! calibration/spotting.toml).
//! May import: face (crop geometry). Its evaluation over annotated videos is `eval::spot_videos`.

pub mod flow;
pub mod lk;
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
use threshold::{Level, RunningSpread, Spread, centred_spreads};

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
    /// Events dropped as speech (mouth-led with the jaw dropping).
    pub speech: u64,
    /// Jumps of the crops (tracker re-anchors) that restarted the history.
    pub rebases: u64,
    /// Events dropped as too short or of a kind not emitted.
    pub dropped: u64,
    /// Events still rising when the stream was stopped on request: dropped, not cut short.
    pub cut: u64,
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
        blink_brow_ratio: cfg.blink_brow_ratio as f32,
        blink_max_frames: frames(cfg.blink_max_s, fps) as u64,
        jaw_px: cfg.jaw_px as f32,
        smile_px: cfg.smile_px as f32,
        uniform_rise: cfg.uniform_rise as f32,
        emit: cfg.emit_kind()?,
        lag_frames: cfg.lag_frames(fps) as u64,
        confirm_samples: samples(cfg, fps, frames(cfg.confirm_s, fps)) as u64,
        // At least the samples asked for: a window shorter than confirm_s means consecutive.
        confirm_window: samples(
            cfg,
            fps,
            frames(cfg.confirm_window_s.max(cfg.confirm_s), fps),
        ) as u64,
    })
}

/// Signal samples spanning `n` frames at `fps` (one sample per [`SpotConfig::every`] frames).
fn samples(cfg: &SpotConfig, fps: f64, n: usize) -> usize {
    (n / cfg.every(fps) as usize).max(1)
}

fn builder(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<SignalBuilder> {
    cfg.validate()?;
    if !(fps.is_finite() && fps > 0.0) {
        bail!("spotting: frame rate {fps} is not a positive number");
    }
    if crop_size < 32 {
        bail!("spotting: crop size {crop_size} is below 32 pixels");
    }
    let flow = || -> Result<flow::RoiFlow> {
        Ok(flow::RoiFlow::new(
            crop_size,
            roi::RoiLayout::for_crop_size(crop_size),
            cfg.dis_finest_scale,
            cfg.dis_patch_stride,
            cfg.head_model()?,
        )?
        .with_motion(
            cfg.motion()?,
            cfg.lk_margin_px,
            cfg.lk_reference_margin_px,
            cfg.lag_frames(fps),
        ))
    };
    let b = SignalBuilder::new(
        flow()?,
        crop_size,
        cfg.lag_frames(fps),
        cfg.every(fps) as usize,
        cfg.rebase_px as f32,
        cfg.rebase_drag_ratio as f32,
    );
    Ok(if cfg.rest_s > 0.0 {
        b.with_rest(flow()?)
    } else {
        b
    })
}

/// Where the noise spreads come from: causal running windows (live) or precomputed per sample
/// (offline, look-ahead). One per region, and one for the signal itself: its median is the quiet
/// baseline that onsets and offsets are measured from (the largest of several regions' scores
/// sits above zero even on a still face).
enum Noise {
    Running {
        regions: Vec<RunningSpread>,
        signal: RunningSpread,
    },
    Fixed {
        regions: Vec<Vec<Option<Spread>>>,
        signal: Vec<Option<Spread>>,
        next: usize,
    },
}
/// The decision part of a spotter (per-region noise levels + segmenter), fed with the region
/// displacements of each signal sample.
pub struct Decider {
    noise: Noise,
    mads: f32,
    min_sigma: f32,
    mags: Vec<f32>,
    /// Regions that crossed the threshold during the open event: the event is followed on them
    /// alone (the largest of all regions' scores has a noise floor that blurs the offset).
    active: Vec<bool>,
    latest: Option<f32>,
    /// Each region's noise spread in the latest sample.
    spreads: Vec<Option<Spread>>,
    /// Quiet samples in a row that make a rest frame (0: rest frames off), and the current run.
    rest_samples: usize,
    quiet_run: usize,
    segmenter: Segmenter,
    stats: SpotStats,
}

/// Samples between refreshes of a running or centred spread: a quarter of the lag.
fn spread_step(cfg: &SpotConfig, fps: f64) -> usize {
    samples(cfg, fps, cfg.lag_frames(fps).div_ceil(4))
}

impl Decider {
    /// A live decider for `fps` and `regions` regions (causal running spreads).
    pub fn new(cfg: &SpotConfig, fps: f64, regions: usize) -> Result<Decider> {
        let (window, warmup) = (
            samples(cfg, fps, frames(cfg.window_s, fps)),
            samples(cfg, fps, 2 * cfg.lag_frames(fps)),
        );
        let step = spread_step(cfg, fps);
        let regions = (0..regions)
            .map(|_| RunningSpread::new(window, warmup, step))
            .collect();
        let signal = RunningSpread::new(window, warmup, step);
        Self::with_noise(cfg, fps, Noise::Running { regions, signal })
    }

    /// A decider that uses `regions[r][i]` and `signal[i]` for the i-th sample (offline,
    /// look-ahead levels).
    pub fn with_spreads(
        cfg: &SpotConfig,
        fps: f64,
        regions: Vec<Vec<Option<Spread>>>,
        signal: Vec<Option<Spread>>,
    ) -> Result<Decider> {
        let noise = Noise::Fixed {
            regions,
            signal,
            next: 0,
        };
        Self::with_noise(cfg, fps, noise)
    }

    fn with_noise(cfg: &SpotConfig, fps: f64, noise: Noise) -> Result<Decider> {
        Ok(Decider {
            noise,
            mads: cfg.threshold_mads as f32,
            // A region's threshold never lies less than min_threshold_px above its median.
            min_sigma: (cfg.min_threshold_px / cfg.threshold_mads) as f32,
            mags: Vec::new(),
            active: Vec::new(),
            latest: None,
            spreads: Vec::new(),
            rest_samples: if cfg.rest_s > 0.0 {
                samples(cfg, fps, frames(cfg.rest_s, fps))
            } else {
                0
            },
            quiet_run: 0,
            segmenter: Segmenter::new(rules(cfg, fps)?),
            stats: SpotStats::default(),
        })
    }

    /// True while an event is open.
    pub fn in_event(&self) -> bool {
        self.segmenter.in_event()
    }

    /// Each region's motion magnitude (crop pixels) in the latest sample, layout order.
    pub fn magnitudes(&self) -> &[f32] {
        &self.mags
    }

    /// The latest spotting signal (largest region motion in noise spreads), once warmed up.
    pub fn latest(&self) -> Option<f32> {
        self.latest
    }

    /// The sample `signal` just produced for frame `index`: each region's motion is scored against
    /// its own noise spread and the largest score drives the segmenter. Returns the interval
    /// decided at this frame, if any.
    pub fn step(&mut self, signal: &SignalBuilder, index: u64) -> Option<Interval> {
        self.stats.frames += 1;
        let disp = signal.displacements();
        self.mags.clear();
        self.mags
            .extend(disp.iter().map(|d| (d[0] * d[0] + d[1] * d[1]).sqrt()));
        let mut best: Option<(usize, f32)> = None;
        let mut warm = !self.mags.is_empty();
        let following = self.segmenter.in_event();
        self.active.resize(self.mags.len(), false);
        self.spreads.clear();
        for (r, &m) in self.mags.iter().enumerate() {
            let spread = match &mut self.noise {
                Noise::Running { regions, .. } => regions.get_mut(r).and_then(|t| t.spread()),
                Noise::Fixed { regions, next, .. } => {
                    regions.get(r).and_then(|v| v.get(*next)).copied().flatten()
                }
            };
            self.spreads.push(spread);
            let Some(spread) = spread else {
                warm = false;
                continue;
            };
            let z = spread.score(m, self.min_sigma);
            if z > self.mads {
                self.active[r] = true;
            }
            if (!following || self.active[r]) && best.is_none_or(|b| z > b.1) {
                best = Some((r, z));
            }
        }
        let baseline = match &mut self.noise {
            Noise::Running { signal, .. } => signal.spread(),
            Noise::Fixed { signal, next, .. } => {
                *next += 1;
                signal.get(*next - 1).copied().flatten()
            }
        };
        let (region, value) = best.filter(|_| warm).unwrap_or((0, 0.0));
        self.latest = warm.then_some(value);
        let s = Sample {
            rest: signal
                .rest_displacements()
                .filter(|_| following && warm)
                .and_then(|d| self.rest_score(d)),
            ..Sample::measured(index, (region, value), signal.layout(), disp)
        };
        let level = warm.then(|| Level {
            baseline: baseline.map_or(0.0, |b| b.median.min(self.mads)),
            threshold: self.mads,
        });
        let d = self.segmenter.step(
            &s,
            level,
            signal.region_kind(region),
            signal.region_name(region),
        );
        if !self.segmenter.in_event() {
            self.active.iter_mut().for_each(|a| *a = false);
        }
        self.quiet_run = if !self.segmenter.in_event() && warm && value <= self.mads {
            self.quiet_run + 1
        } else {
            0
        };
        if !self.segmenter.in_event()
            && let Noise::Running {
                regions,
                signal: sig,
            } = &mut self.noise
        {
            for (t, &m) in regions.iter_mut().zip(&self.mags) {
                t.add(m);
            }
            if warm {
                sig.add(value);
            }
        }
        self.record(d)
    }

    /// True when the latest sample ends a quiet run long enough that its reference is a rest frame.
    pub fn at_rest(&self) -> bool {
        self.rest_samples > 0 && self.quiet_run >= self.rest_samples
    }

    /// The largest score, among the regions the open event follows, of their displacements from
    /// the rest frame; none when it follows none.
    fn rest_score(&self, disp: &[[f32; 2]]) -> Option<f32> {
        disp.iter()
            .zip(&self.spreads)
            .zip(&self.active)
            .filter(|(_, a)| **a)
            .filter_map(|((d, s), _)| Some(s.as_ref()?.score(d[0].hypot(d[1]), self.min_sigma)))
            .reduce(f32::max)
    }

    /// The crops jumped: drops the open event, if any (its reference is gone).
    pub fn cancel(&mut self) {
        self.quiet_run = 0;
        self.stats.rebases += 1;
        let d = self.segmenter.cancel();
        self.record(d);
    }

    /// End of stream.
    pub fn finish(&mut self) -> Option<Interval> {
        let d = self.segmenter.finish();
        self.record(d)
    }

    /// End of stream by a stop request (see [`peaks::Segmenter::stop`]).
    pub fn stop(&mut self) -> Option<Interval> {
        let d = self.segmenter.stop();
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
            Decision::Speech => {
                self.stats.speech += 1;
                None
            }
            Decision::Dropped => {
                self.stats.dropped += 1;
                None
            }
            Decision::Cut => {
                self.stats.cut += 1;
                None
            }
        }
    }
}

impl Spotter {
    /// A spotter for crops of `crop_size`² pixels at `fps` frames per second.
    pub fn new(cfg: &SpotConfig, fps: f64, crop_size: usize) -> Result<Spotter> {
        let signal = builder(cfg, fps, crop_size)?;
        Ok(Spotter {
            decider: Decider::new(cfg, fps, signal.regions())?,
            signal,
            latest: None,
        })
    }

    /// Feeds the aligned gray crop (crop_size², row-major) of frame `index` (increasing, may skip);
    /// returns the intervals decided at this frame.
    pub fn push(&mut self, index: u64, crop: &[u8]) -> Result<Vec<Interval>> {
        let pushed = self.signal.push(index, crop)?;
        if self.signal.take_rebase() {
            self.decider.cancel();
        }
        let Some(s) = pushed else {
            return Ok(Vec::new());
        };
        let out = step(&mut self.signal, &mut self.decider, s.index)?;
        self.latest = self.decider.latest().map(|v| (s.index, v));
        Ok(out.into_iter().collect())
    }

    /// Latest (frame index, spotting signal in noise spreads: the largest region motion above its
    /// median, over its spread), for per-frame output; none while the levels warm up.
    pub fn signal(&self) -> Option<(u64, f32)> {
        self.latest
    }

    /// End of stream: the interval still open, if any.
    pub fn finish(&mut self) -> Vec<Interval> {
        self.decider.finish().into_iter().collect()
    }

    /// End of stream by a stop request: the open interval only if its signal has fallen back.
    pub fn stop(&mut self) -> Vec<Interval> {
        self.decider.stop().into_iter().collect()
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

/// Feeds the latest sample to the decider and pins / releases the flow reference as events open
/// and close.
fn step(signal: &mut SignalBuilder, decider: &mut Decider, index: u64) -> Result<Option<Interval>> {
    let out = decider.step(signal, index);
    if decider.in_event() {
        signal.pin()?;
    } else {
        signal.release();
        if decider.at_rest() {
            signal.mark_rest()?;
        }
    }
    Ok(out)
}

/// Offline spotting of one whole video.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineSpots {
    /// (frame index, spotting signal in noise spreads) for every frame with a signal.
    pub signal: Vec<(u64, f32)>,
    /// Intervals in time order.
    pub intervals: Vec<Interval>,
    /// Counters.
    pub stats: SpotStats,
}

/// Offline (look-ahead) spotting over a whole video's crops: a live pass finds the events; each
/// region's noise spread is then taken from a window centred on each frame over the quiet frames
/// (events left out), and a second pass decides with them.
pub fn spot_offline(
    cfg: &SpotConfig,
    fps: f64,
    crop_size: usize,
    crops: impl Iterator<Item = (u64, Vec<u8>)>,
) -> Result<OfflineSpots> {
    let crops: Vec<(u64, Vec<u8>)> = crops.collect();
    // Pass 1: live decisions; record each region's motion and which samples were inside events.
    let mut b = builder(cfg, fps, crop_size)?;
    let mut d = Decider::new(cfg, fps, b.regions())?;
    let mut mags: Vec<Vec<f32>> = vec![Vec::new(); b.regions()];
    let mut inside = Vec::new();
    for (i, c) in &crops {
        let pushed = b.push(*i, c)?;
        if b.take_rebase() {
            d.cancel();
        }
        if let Some(s) = pushed {
            step(&mut b, &mut d, s.index)?;
            for (m, &v) in mags.iter_mut().zip(d.magnitudes()) {
                m.push(v);
            }
            inside.push(d.in_event() || b.is_pinned());
        }
    }
    let (window, every) = (
        samples(cfg, fps, frames(cfg.window_s, fps)),
        spread_step(cfg, fps),
    );
    let regions: Vec<Vec<Option<Spread>>> = mags
        .iter()
        .map(|m| centred_spreads(m, &inside, window, every))
        .collect();
    // The signal those spreads give, and its own centred baseline.
    let min_sigma = (cfg.min_threshold_px / cfg.threshold_mads) as f32;
    let scores: Vec<f32> = (0..inside.len())
        .map(|i| {
            mags.iter()
                .zip(&regions)
                .filter_map(|(m, s)| Some(s[i]?.score(m[i], min_sigma)))
                .fold(0f32, f32::max)
        })
        .collect();
    let signal = centred_spreads(&scores, &inside, window, every);
    // Pass 2: the same path with the look-ahead spreads.
    let mut b = builder(cfg, fps, crop_size)?;
    let mut d = Decider::with_spreads(cfg, fps, regions, signal)?;
    let (mut signal, mut intervals) = (Vec::new(), Vec::new());
    for (i, c) in &crops {
        let pushed = b.push(*i, c)?;
        if b.take_rebase() {
            d.cancel();
        }
        if let Some(s) = pushed {
            intervals.extend(step(&mut b, &mut d, s.index)?);
            if let Some(v) = d.latest() {
                signal.push((s.index, v));
            }
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
