//! `aullm eval --model NAME|DIR --dataset FORMAT:PATH ...`: a trained model on annotated data,
//! without training. Clip datasets (CASME II, SAMM, 4DME, CAS(ME)^3, SynthME clips) go through the
//! face path and clip assembly of live inference and the model's Detector: per-clip predictions in
//! `aullm score`'s CSV format and per-AU binary F1 at the model's thresholds, pooled over clips and
//! per subject. Long-video datasets (SAMM-LV layout, SynthME long videos) run the whole pipeline
//! offline per video: MEGC spotting F1 and AU F1 over the matched intervals.

use crate::clip::{CropBox, sample_positions};
use crate::config::Config;
use crate::data::{Dataset, ExpressionKind, LoadOptions};
use crate::eval::metrics::{AuColumn, AuReport, Counts, au_report, mean_defined};
use crate::eval::spotting::SpotCounts;
use crate::eval::truth::{kind_counts, match_events, truth_by_video};
use crate::events::{AuEvent, EventBus, LslClock};
use crate::ingest::Source;
use crate::runtime::detector::{Detector, DetectorSlot};
use crate::stream::StreamOptions;
use crate::train::DatasetArg;
use crate::train::clips::{AlignedClip, default_cache_dir, load_or_align};
use anyhow::{Context, Result, ensure};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What to evaluate and where to write.
#[derive(Debug, Clone)]
pub struct ModelEvalOptions {
    /// The model folder (verified).
    pub model_dir: PathBuf,
    /// Datasets to score on.
    pub datasets: Vec<DatasetArg>,
    /// Output folder: predictions.csv, events/, report.{json,md,html}.
    pub out: PathBuf,
    /// Aligned-clip cache folder (default: beside the model cache).
    pub clip_cache: Option<PathBuf>,
    /// Add the papers' optimistic metric (labelled).
    pub paper_metric: bool,
    /// No progress lines.
    pub quiet: bool,
}

/// Spotting and AU scores over the long videos.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoScores {
    /// Videos run.
    pub videos: usize,
    /// MEGC counts pooled over the videos (IoU >= 0.5, one-to-one).
    pub spotting: SpotCounts,
    /// Spotting F1 pooled over videos (micro).
    pub spotting_f1: Option<f64>,
    /// Mean of the per-video spotting F1 (macro).
    pub spotting_f1_macro: Option<f64>,
    /// MEGC counts of micro-expressions alone (micro truth against the events the spotter called
    /// micro, matched on their own, as `aullm spot-eval` scores them; pooled over videos).
    pub micro_expressions: SpotCounts,
    /// The same for macro-expressions.
    pub macro_expressions: SpotCounts,
    /// Per model AU: counts over matched intervals, pooled over videos.
    pub aus: BTreeMap<crate::au::Au, Counts>,
    /// Mean over AUs of the matched-interval F1.
    pub au_macro_f1: Option<f64>,
}

/// What `eval --model` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEvalOutcome {
    /// Model name.
    pub model: String,
    /// Clip scores (None without a clip dataset).
    pub clips: Option<AuReport>,
    /// Long-video scores (None without long videos).
    pub videos: Option<VideoScores>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The report as Markdown (also in report.md).
    #[serde(skip)]
    pub markdown: String,
}

/// Runs the model over every dataset and writes predictions and the report into `o.out`.
pub fn run(cfg: &Config, o: &ModelEvalOptions) -> Result<ModelEvalOutcome> {
    ensure!(!o.datasets.is_empty(), "no --dataset given");
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("cannot create {}", o.out.display()))?;
    let mut det = Detector::load(&o.model_dir, cfg, None)?;
    let model = det.manifest.name.clone();
    let mut files = Vec::new();
    let mut clips: Vec<AlignedClip> = Vec::new();
    let mut videos: Vec<(PathBuf, Dataset)> = Vec::new();
    let cache = o
        .clip_cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(cfg));
    for a in &o.datasets {
        if a.dataset.is_long_video() {
            videos.push((a.root.clone(), a.dataset));
            continue;
        }
        let loaded = crate::data::load(&a.root, a.dataset, &LoadOptions::default())
            .with_context(|| format!("cannot read {} as {}", a.root.display(), a.dataset.name()))?;
        loaded.require_clean()?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let set = load_or_align(&loaded, cfg, &cache, threads)?;
        clips.extend(set.clips);
        // SynthME writes its long videos beside its clips (SAMM-LV layout, videos/).
        if a.root.join("videos").is_dir()
            && crate::data::load(&a.root, Dataset::SammLv, &LoadOptions::default()).is_ok()
        {
            videos.push((a.root.clone(), Dataset::SammLv));
        }
    }
    let clip_report = if clips.is_empty() {
        None
    } else {
        let (report, csv) = score_clips(&mut det, &clips, o.paper_metric)?;
        let p = o.out.join("predictions.csv");
        write(&p, csv.as_bytes())?;
        files.push(p);
        Some(report)
    };
    let video_scores = if videos.is_empty() {
        None
    } else {
        let events_dir = o.out.join("events");
        std::fs::create_dir_all(&events_dir)
            .with_context(|| format!("cannot create {}", events_dir.display()))?;
        Some(score_videos(cfg, &mut det, &videos, &events_dir, o.quiet)?)
    };
    let mut outcome = ModelEvalOutcome {
        model,
        clips: clip_report,
        videos: video_scores,
        files,
        markdown: String::new(),
    };
    outcome.markdown = render(&outcome, &det);
    let json = serde_json::json!({
        "schema": "aullm.model_eval/1",
        "thresholds": det.manifest.thresholds,
        "aus": det.manifest.aus,
        "outcome": &outcome,
        "metric_note": "binary F1 of the positive class at the model's thresholds; macro = mean over AUs; pooled = counts summed over clips; per subject = the mean of each subject's F1",
    });
    for (name, text) in [
        ("report.json", serde_json::to_string_pretty(&json)?),
        ("report.md", outcome.markdown.clone()),
        (
            "report.html",
            crate::eval::report::html_page("aullm model evaluation", &outcome.markdown, ""),
        ),
    ] {
        let p = o.out.join(name);
        write(&p, text.as_bytes())?;
        outcome.files.push(p);
    }
    Ok(outcome)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = crate::atomic::AtomicFile::create(path)?;
    std::io::Write::write_all(&mut f, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}

/// Clips through the model in batches, as live inference builds them (T crops sampled onset →
/// apex → offset, the centre crop box): the report (per-AU F1, subjects as folds) and the
/// predictions CSV `aullm score` reads.
fn score_clips(
    det: &mut Detector,
    clips: &[AlignedClip],
    paper: bool,
) -> Result<(AuReport, String)> {
    let aus = det.manifest.aus.clone();
    let frames = det.config.frontend.frames;
    let margin = det.config.train.crop_margin;
    let mut probs: Vec<Vec<f32>> = Vec::with_capacity(clips.len());
    let mut data = Vec::new();
    // Batches as large as the live worker's (stream.max_batch is 8; 16 costs no more per clip).
    for batch in clips.chunks(16) {
        data.clear();
        for c in batch {
            let last = (c.clip.frames() - 1) as u64;
            let pos: Vec<usize> = sample_positions(0, c.clip.apex as u64, last, frames)
                .into_iter()
                .map(|p| p as usize)
                .collect();
            let bx = CropBox::centre(c.clip.size, margin);
            c.clip
                .tensor_data(&pos, &det.config.frontend, bx, false, &mut data)
                .with_context(|| format!("clip {}", c.key))?;
        }
        probs.extend(det.predict(&data, batch.len())?);
    }
    let mut subjects: Vec<String> = Vec::new();
    let mut fold = Vec::with_capacity(clips.len());
    for c in clips {
        let s = c.subject.to_string();
        let i = match subjects.iter().position(|x| *x == s) {
            Some(i) => i,
            None => {
                subjects.push(s);
                subjects.len() - 1
            }
        };
        fold.push(i);
    }
    let decisions: Vec<Vec<bool>> = probs.iter().map(|p| det.decide(p)).collect();
    let columns: Vec<AuColumn> = aus
        .iter()
        .enumerate()
        .map(|(j, &code)| AuColumn {
            code,
            truth: clips.iter().map(|c| c.aus.contains(&code)).collect(),
            decision: decisions.iter().map(|d| d[j]).collect(),
            prob: Some(probs.iter().map(|p| p[j] as f64).collect()),
        })
        .collect();
    let report = au_report(&columns, &fold, subjects, paper);
    let mut csv = String::from("dataset,subject,clip");
    for a in &aus {
        let _ = write!(csv, ",AU{a}_p");
    }
    for a in &aus {
        let _ = write!(csv, ",AU{a}_c");
    }
    csv.push('\n');
    for ((c, p), d) in clips.iter().zip(&probs).zip(&decisions) {
        let clip = c.key.rsplit('/').next().unwrap_or(&c.key);
        let _ = write!(
            csv,
            "{},{},{}",
            c.subject.dataset.name(),
            c.subject.subject,
            clip
        );
        for v in p {
            let _ = write!(csv, ",{v:.6}");
        }
        for &v in d {
            csv.push_str(if v { ",1" } else { ",0" });
        }
        csv.push('\n');
    }
    Ok((report, csv))
}

/// The source of one long video: its file under `root/videos/`, else its frame images.
fn video_source(root: &Path, video: &str, frames: &crate::data::FrameSet) -> Result<Source> {
    for ext in ["avi", "mkv", "mp4"] {
        let p = root.join("videos").join(format!("{video}.{ext}"));
        if p.is_file() {
            return Ok(Source::File(p));
        }
    }
    let first = frames.present().first().copied().with_context(|| {
        format!(
            "video {video}: neither videos/{video}.avi|mkv|mp4 nor frames in {}",
            frames.dir.display()
        )
    })?;
    let pattern = frames
        .dir
        .join(format!("{}%0{}d.{}", frames.prefix, frames.pad, frames.ext));
    ensure!(
        matches!(frames.ext.to_ascii_lowercase().as_str(), "jpg" | "jpeg"),
        "video {video}: frames are .{}, only JPEG frame folders are read",
        frames.ext
    );
    Ok(Source::Raw(format!(
        "multifilesrc location=\"{}\" start-index={first} caps=\"image/jpeg,framerate=200/1\" ! jpegdec",
        pattern.display()
    )))
}

/// Runs each annotated long video through the pipeline offline and scores its events.
fn score_videos(
    cfg: &Config,
    det: &mut Detector,
    sets: &[(PathBuf, Dataset)],
    events_dir: &Path,
    quiet: bool,
) -> Result<VideoScores> {
    let mut out = VideoScores::default();
    let mut per_video_f1 = Vec::new();
    for (root, dataset) in sets {
        let loaded = crate::data::load(root, *dataset, &LoadOptions::default())
            .with_context(|| format!("cannot read {} as {}", root.display(), dataset.name()))?;
        loaded.require_clean()?;
        let by_video = truth_by_video(&loaded)?;
        for (video, (truth, frames)) in by_video {
            let source = video_source(root, &video, &frames)?;
            let events = run_offline(cfg, det, &source)?;
            let mut jsonl = String::new();
            for e in &events {
                jsonl.push_str(&e.to_json());
                jsonl.push('\n');
            }
            write(&events_dir.join(format!("{video}.jsonl")), jsonl.as_bytes())?;
            let m = match_events(&events, &truth);
            let c = SpotCounts {
                tp: m.len() as u64,
                fp: (events.len() - m.len()) as u64,
                fn_: (truth.len() - m.len()) as u64,
            };
            per_video_f1.push(c.f1());
            for (kind, counts) in [
                (ExpressionKind::Micro, &mut out.micro_expressions),
                (ExpressionKind::Macro, &mut out.macro_expressions),
            ] {
                let k = kind_counts(&events, &truth, kind);
                counts.tp += k.tp;
                counts.fp += k.fp;
                counts.fn_ += k.fn_;
            }
            out.spotting.tp += c.tp;
            out.spotting.fp += c.fp;
            out.spotting.fn_ += c.fn_;
            for (j, code) in det.manifest.aus.iter().enumerate() {
                let k = out.aus.entry(*code).or_default();
                for &(ti, ei) in &m {
                    k.add(truth[ti].aus.contains(code), events[ei].aus[j].present);
                }
            }
            out.videos += 1;
            if !quiet {
                eprintln!(
                    "{video}: {} events, {} annotated, {} matched",
                    events.len(),
                    truth.len(),
                    m.len()
                );
            }
        }
    }
    out.spotting_f1 = out.spotting.f1();
    out.spotting_f1_macro = mean_defined(per_video_f1);
    out.au_macro_f1 = mean_defined(out.aus.values().map(Counts::f1));
    Ok(out)
}

/// The events of one video through the whole pipeline, offline (stream clock, as `aullm batch`).
fn run_offline(cfg: &Config, det: &mut Detector, source: &Source) -> Result<Vec<AuEvent>> {
    let bus = EventBus::new(Vec::new(), cfg.events.queue, LslClock::monotonic());
    let opts = StreamOptions {
        record: true,
        offline_origin_ns: Some(0),
        ..StreamOptions::from_config(cfg)
    };
    let mut seq = 0;
    let s = crate::stream::run(
        cfg,
        source,
        &mut DetectorSlot::Ready(det),
        &bus,
        &opts,
        &mut seq,
    )?;
    bus.close();
    if let Some(e) = &s.error {
        anyhow::bail!("{}: {e}", source.label());
    }
    Ok(s.recording.map(|r| r.events).unwrap_or_default())
}

/// The report as Markdown.
fn render(o: &ModelEvalOutcome, det: &Detector) -> String {
    let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
    let mut s = format!(
        "# Model evaluation: {}\n\nThe model as shipped (no training), AUs {:?} at its thresholds {:?} (set when it was trained). Binary F1 of the positive class; macro = mean over AUs.\n\n",
        o.model, det.manifest.aus, det.manifest.thresholds
    );
    if let Some(r) = &o.clips {
        let _ = writeln!(
            s,
            "## Clips\n\n{} clips of {} subjects, each through the live face path and clip assembly.\n",
            r.samples,
            r.folds.len()
        );
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let _ = writeln!(
            s,
            "| macro-F1, pooled over clips | {} |",
            f(r.macro_pooled_f1)
        );
        let _ = writeln!(
            s,
            "| macro-F1, mean over subjects | {} |",
            f(r.macro_mean_over_folds_f1)
        );
        if let Some(p) = r.paper_macro_f1 {
            let _ = writeln!(
                s,
                "| paper-compatible ({}) | {p:.3} |",
                crate::eval::score::PAPER_LABEL
            );
        }
        crate::eval::report::au_table(&mut s, r, "subject");
        let _ = writeln!(s, "\n| subject | macro-F1 |\n|---|---|");
        for (name, m) in r.folds.iter().zip(crate::eval::report::fold_macro(r)) {
            let _ = writeln!(s, "| {name} | {} |", f(m));
        }
        s.push('\n');
    }
    if let Some(v) = &o.videos {
        let _ = writeln!(
            s,
            "## Long videos\n\n{} videos through the whole pipeline offline (spotting, clips, model).\n",
            v.videos
        );
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let _ = writeln!(
            s,
            "| spotting (MEGC, IoU >= 0.5): TP / FP / FN | {} / {} / {} |",
            v.spotting.tp, v.spotting.fp, v.spotting.fn_
        );
        let _ = writeln!(
            s,
            "| spotting F1, pooled over videos | {} |",
            f(v.spotting_f1)
        );
        let _ = writeln!(
            s,
            "| spotting F1, mean over videos | {} |",
            f(v.spotting_f1_macro)
        );
        for (name, c) in [
            ("micro-expressions", &v.micro_expressions),
            ("macro-expressions", &v.macro_expressions),
        ] {
            let _ = writeln!(
                s,
                "| spotting F1, {name} alone (TP / FP / FN {} / {} / {}) | {} |",
                c.tp,
                c.fp,
                c.fn_,
                f(c.f1())
            );
        }
        let _ = writeln!(
            s,
            "| AU macro-F1 over matched intervals | {} |",
            f(v.au_macro_f1)
        );
        let _ = writeln!(s, "\n| AU | TP | FP | FN | F1 |\n|---|---|---|---|---|");
        for (au, c) in &v.aus {
            let _ = writeln!(
                s,
                "| AU{au} | {} | {} | {} | {} |",
                c.tp,
                c.fp,
                c.fn_,
                f(c.f1())
            );
        }
    }
    s
}
