//! Spotting evaluation on SAMM-LV-layout folders (SynthME long videos, tracked into crops by
//! `jobs::spot::load_set`): crops → spotter → MEGC scoring (IoU ≥ 0.5, one-to-one, pooled), live and offline, with the latency rule
//! (an interval is decided within 2k frames after its offset) and per-frame cost.

use crate::data::sample::ExpressionKind;
use crate::eval::spotting::{Span, SpotCounts};
use crate::spot::{Interval, IntervalKind, SpotConfig, Spotter, spot_offline};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One long video ready for spotting.
pub struct VideoData {
    /// Video id (sheet key).
    pub name: String,
    /// Frame rate.
    pub fps: f64,
    /// (frame index from 0, aligned crop) of the first face track.
    pub crops: Vec<(u64, Vec<u8>)>,
    /// Annotated intervals (1-based inclusive frames) and kinds.
    pub truth: Vec<(Span, ExpressionKind)>,
    /// Face tracking time per frame, µs (0 when read from the cache).
    pub face_us: f64,
}

/// MEGC counts for all intervals and per kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KindCounts {
    /// Every prediction against every annotated interval (labels ignored).
    pub all: SpotCounts,
    /// Predictions labelled micro against micro-expressions.
    pub micro: SpotCounts,
    /// Predictions labelled macro against macro-expressions.
    pub macro_: SpotCounts,
}

impl KindCounts {
    fn add(&mut self, o: &KindCounts) {
        for (a, b) in [
            (&mut self.all, o.all),
            (&mut self.micro, o.micro),
            (&mut self.macro_, o.macro_),
        ] {
            a.tp += b.tp;
            a.fp += b.fp;
            a.fn_ += b.fn_;
        }
    }
}

/// Scores one video's intervals (0-based frames) against its truth (1-based frames).
pub fn score_video(truth: &[(Span, ExpressionKind)], pred: &[Interval]) -> KindCounts {
    let span = |i: &Interval| Span {
        onset: i.onset as u32 + 1,
        offset: i.offset as u32 + 1,
    };
    let t = |k: Option<ExpressionKind>| -> Vec<Span> {
        truth
            .iter()
            .filter(|x| k.is_none_or(|k| x.1 == k))
            .map(|x| x.0)
            .collect()
    };
    let p = |k: Option<IntervalKind>| -> Vec<Span> {
        pred.iter()
            .filter(|x| k.is_none_or(|k| x.kind == k))
            .map(span)
            .collect()
    };
    KindCounts {
        all: SpotCounts::between(&t(None), &p(None)),
        micro: SpotCounts::between(
            &t(Some(ExpressionKind::Micro)),
            &p(Some(IntervalKind::Micro)),
        ),
        macro_: SpotCounts::between(
            &t(Some(ExpressionKind::Macro)),
            &p(Some(IntervalKind::Macro)),
        ),
    }
}

/// Results of one mode (live or offline) on one set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModeResult {
    /// Pooled counts.
    pub counts: KindCounts,
    /// F1 over all intervals.
    pub f1: Option<f64>,
    /// F1 of micro-expressions.
    pub f1_micro: Option<f64>,
    /// F1 of macro-expressions.
    pub f1_macro: Option<f64>,
    /// Largest (decision frame − predicted offset), frames (live only).
    pub max_decision_delay: u64,
    /// Intervals decided later than 2k frames after their offset (live only; must be 0).
    pub late: u64,
    /// Largest (decision frame − annotated offset) over matched intervals, frames (live only).
    pub max_delay_after_true_offset: i64,
}

impl ModeResult {
    fn finish(mut self) -> Self {
        self.f1 = self.counts.all.f1();
        self.f1_micro = self.counts.micro.f1();
        self.f1_macro = self.counts.macro_.f1();
        self
    }
}

/// Results on one folder.
#[derive(Debug, Clone, Serialize)]
pub struct SetResult {
    /// Folder.
    pub root: PathBuf,
    /// Videos.
    pub videos: usize,
    /// Frames with a face crop.
    pub frames: u64,
    /// Annotated micro-expressions.
    pub truth_micro: usize,
    /// Annotated macro-expressions.
    pub truth_macro: usize,
    /// Flow lag k in frames.
    pub k: usize,
    /// Live spotter.
    pub live: ModeResult,
    /// Offline (look-ahead) spotter.
    pub offline: ModeResult,
    /// Live spotting cost per frame, µs (flow + decision).
    pub spot_us_per_frame: f64,
    /// Face tracking cost per frame, µs (0 when crops came from the cache).
    pub face_us_per_frame: f64,
}

/// Spots every video of a loaded set live and offline and scores them.
pub fn evaluate_set(cfg: &SpotConfig, root: &Path, videos: &[VideoData]) -> Result<SetResult> {
    let mut live = ModeResult::default();
    let mut offline = ModeResult::default();
    let (mut frames, mut spot_ns, mut face_us) = (0u64, 0u128, 0.0);
    let mut k = 0;
    for v in videos {
        k = cfg.lag_frames(v.fps);
        let size = (v.crops.first().map_or(0, |c| c.1.len()) as f64).sqrt() as usize;
        let mut sp = Spotter::new(cfg, v.fps, size)?;
        let mut pred = Vec::new();
        let t = Instant::now();
        for (i, c) in &v.crops {
            pred.extend(sp.push(*i, c)?);
        }
        pred.extend(sp.finish());
        spot_ns += t.elapsed().as_nanos();
        frames += v.crops.len() as u64;
        face_us += v.face_us * v.crops.len() as f64;
        live.counts.add(&score_video(&v.truth, &pred));
        for p in &pred {
            let delay = p.decided_at.saturating_sub(p.offset);
            live.max_decision_delay = live.max_decision_delay.max(delay);
            if delay > 2 * k as u64 {
                live.late += 1;
            }
            let ps = Span {
                onset: p.onset as u32 + 1,
                offset: p.offset as u32 + 1,
            };
            if let Some(t) = v.truth.iter().find(|t| t.0.matches(&ps)) {
                let d = p.decided_at as i64 + 1 - t.0.offset as i64;
                live.max_delay_after_true_offset = live.max_delay_after_true_offset.max(d);
            }
        }
        let off = spot_offline(cfg, v.fps, size, v.crops.iter().cloned())?;
        offline.counts.add(&score_video(&v.truth, &off.intervals));
    }
    Ok(SetResult {
        root: root.to_path_buf(),
        videos: videos.len(),
        frames,
        truth_micro: videos
            .iter()
            .flat_map(|v| &v.truth)
            .filter(|t| t.1 == ExpressionKind::Micro)
            .count(),
        truth_macro: videos
            .iter()
            .flat_map(|v| &v.truth)
            .filter(|t| t.1 == ExpressionKind::Macro)
            .count(),
        k,
        live: live.finish(),
        offline: offline.finish(),
        spot_us_per_frame: spot_ns as f64 / 1e3 / frames.max(1) as f64,
        face_us_per_frame: face_us / frames.max(1) as f64,
    })
}

/// A markdown table of the results.
pub fn render(results: &[SetResult]) -> String {
    let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}"));
    let mut s = String::from(
        "| set | videos | micro/macro | live F1 all | live F1 micro | live F1 macro | TP/FP/FN (live, all) | offline F1 all | max delay (frames, 2k) | spot µs/frame |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let c = r.live.counts.all;
        s.push_str(&format!(
            "| {} | {} | {}/{} | {} | {} | {} | {}/{}/{} | {} | {} ({}) | {:.0} |\n",
            r.root.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            r.videos,
            r.truth_micro,
            r.truth_macro,
            f(r.live.f1),
            f(r.live.f1_micro),
            f(r.live.f1_macro),
            c.tp,
            c.fp,
            c.fn_,
            f(r.offline.f1),
            r.live.max_decision_delay,
            2 * r.k,
            r.spot_us_per_frame,
        ));
    }
    s
}

/// Live F1 (all intervals) of `cfg` on loaded videos (videos spotted in parallel).
pub fn live_f1(cfg: &SpotConfig, videos: &[VideoData]) -> Result<f64> {
    let spot = |v: &VideoData| -> Result<KindCounts> {
        let size = (v.crops.first().map_or(0, |c| c.1.len()) as f64).sqrt() as usize;
        let mut sp = Spotter::new(cfg, v.fps, size)?;
        let mut pred = Vec::new();
        for (i, c) in &v.crops {
            pred.extend(sp.push(*i, c)?);
        }
        pred.extend(sp.finish());
        Ok(score_video(&v.truth, &pred))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = videos.len().div_ceil(threads).max(1);
    let counts: Vec<Result<KindCounts>> = std::thread::scope(|s| {
        let jobs: Vec<_> = videos
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut total = KindCounts::default();
                    for v in chunk {
                        total.add(&spot(v)?);
                    }
                    Ok(total)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("spotting thread panicked")))
            })
            .collect()
    });
    let mut total = KindCounts::default();
    for c in counts {
        total.add(&c?);
    }
    Ok(total.all.f1().unwrap_or(0.0))
}

/// Coordinate search of the swept parameters on a loaded set (tuning data only; never on the
/// evaluation sets): two rounds, one parameter at a time around `base`. Returns every (F1, config) tried, best first.
pub fn sweep(base: &SpotConfig, videos: &[VideoData]) -> Result<Vec<(f64, SpotConfig)>> {
    type Set = fn(&mut SpotConfig, f64);
    let axes: [(&str, &[f64], Set); 6] = [
        ("threshold_mads", &[4.0, 6.0, 7.0], |c, v| {
            c.threshold_mads = v
        }),
        ("min_threshold_px", &[0.08, 0.16], |c, v| {
            c.min_threshold_px = v
        }),
        ("edge_fraction", &[0.15, 0.35], |c, v| c.edge_fraction = v),
        ("blink_px", &[0.25, 0.6], |c, v| c.blink_px = v),
        ("min_distance_s", &[0.1], |c, v| c.min_distance_s = v),
        ("jaw_px", &[0.0, 0.4, 0.8], |c, v| c.jaw_px = v),
    ];
    let mut best = (live_f1(base, videos)?, base.clone());
    let mut tried = vec![best.clone()];
    for round in 0..2 {
        for (name, values, set) in &axes {
            for &v in *values {
                let mut c = best.1.clone();
                set(&mut c, v);
                if c == best.1 || c.validate().is_err() {
                    continue;
                }
                let f1 = live_f1(&c, videos)?;
                eprintln!("round {round} {name} = {v}: F1 {f1:.3}");
                tried.push((f1, c.clone()));
                if f1 > best.0 {
                    best = (f1, c);
                }
            }
        }
    }
    tried.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(tried)
}

/// Writes each video's per-frame region displacements as CSV (`DIR/<video>.csv`: frame, signal,
/// then dx, dy per region) for inspection while tuning.
pub fn dump_signals(cfg: &SpotConfig, videos: &[VideoData], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for v in videos {
        let size = (v.crops.first().map_or(0, |c| c.1.len()) as f64).sqrt() as usize;
        let mut b = crate::spot::signal_builder(cfg, v.fps, size)?;
        let mut text = String::from("frame,signal,head_dx,head_dy");
        for r in 0..b.regions() {
            let n = b.region_name(r);
            text.push_str(&format!(",{n}_dx,{n}_dy"));
        }
        text.push('\n');
        for (i, c) in &v.crops {
            if let Some(s) = b.push(*i, c)? {
                let h = b.head();
                text.push_str(&format!(
                    "{},{:.4},{:.4},{:.4}",
                    s.index, s.value, h[0], h[1]
                ));
                for d in b.displacements() {
                    text.push_str(&format!(",{:.4},{:.4}", d[0], d[1]));
                }
                text.push('\n');
            }
        }
        let p = dir.join(format!("{}.csv", v.name));
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        let mut sp = Spotter::new(cfg, v.fps, size)?;
        let mut pred = Vec::new();
        let mut live = String::from("frame,signal\n");
        for (i, c) in &v.crops {
            pred.extend(sp.push(*i, c)?);
            if let Some((j, x)) = sp.signal() {
                live.push_str(&format!("{j},{x:.4}\n"));
            }
        }
        pred.extend(sp.finish());
        let p = dir.join(format!("{}.intervals.json", v.name));
        std::fs::write(&p, serde_json::to_string(&pred)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        let p = dir.join(format!("{}.stats.json", v.name));
        std::fs::write(&p, serde_json::to_string(&sp.stats())?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        let off = crate::spot::spot_offline(cfg, v.fps, size, v.crops.iter().cloned())?;
        let p = dir.join(format!("{}.offline.json", v.name));
        std::fs::write(&p, serde_json::to_string(&off.intervals)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        let p = dir.join(format!("{}.live.csv", v.name));
        std::fs::write(&p, live).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
