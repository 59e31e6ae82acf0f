//! `aullm spot` and `aullm spot-eval`.

use super::parse_fps;
use anyhow::{Result, bail};
use aullm::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct SpotArgs {
    /// Video file, URI, `pipeline:NAME?...` or `gst:...`.
    pub(crate) source: String,
    /// Print each interval as a JSON line (`aullm.spot_interval/1`) and the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Frame rate for the spotting windows (default: from the timestamps).
    #[arg(long, value_parser = parse_fps)]
    pub(crate) fps: Option<f64>,
}

#[derive(clap::Args)]
pub(crate) struct SpotEvalArgs {
    /// SAMM-LV-layout folders with `videos/` (e.g. written by `aullm synth`).
    #[arg(required = true)]
    pub(crate) roots: Vec<PathBuf>,
    /// Keep each video's aligned crops here and reuse them (skips face tracking on later runs).
    #[arg(long)]
    pub(crate) crop_cache: Option<PathBuf>,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Grid-search the swept parameters on these folders pooled (tuning data only) and print the best.
    #[arg(long)]
    pub(crate) sweep: bool,
    /// Write per-frame region displacements as CSV files into this folder (tuning aid).
    #[arg(long)]
    pub(crate) dump: Option<PathBuf>,
}

pub(crate) fn spot_command(cfg: &Config, a: SpotArgs) -> Result<ExitCode> {
    let source = aullm::ingest::Source::parse(&a.source)?;
    let summary = aullm::jobs::spot::spot_source(cfg, &source, a.fps, |iv| {
        if a.json {
            println!("{}", serde_json::to_string(iv)?);
        } else {
            let i = &iv.interval;
            println!(
                "face {} {:?} onset {} apex {} offset {} ({:.3}-{:.3} s) score {:.2} region {}",
                iv.face_id,
                i.kind,
                i.onset,
                i.apex,
                i.offset,
                iv.onset_s,
                iv.offset_s,
                i.score,
                i.region
            );
        }
        Ok(())
    })?;
    if a.json {
        eprintln!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!(
            "{}: {} frames at {:.1} fps, {} intervals; face {:.0} µs/frame, spotting {:.0} µs/frame/face",
            summary.source,
            summary.frames,
            summary.fps,
            summary.intervals,
            summary.face_us_per_frame,
            summary.spot_us_per_frame
        );
        if summary.corrupt_frames > 0 {
            eprintln!(
                "{} frame(s) could not be decoded (no face on them)",
                summary.corrupt_frames
            );
        }
    }
    if let Some(e) = summary.error {
        bail!("the stream ended with an error: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn spot_eval_command(cfg: &Config, a: SpotEvalArgs) -> Result<ExitCode> {
    use aullm::eval::spot_videos as eval;
    let mut results = Vec::new();
    // A sweep pools every root's videos: one F1 over all tuning sets, not a best per set.
    let mut pooled = Vec::new();
    for root in &a.roots {
        let videos = aullm::jobs::spot::load_set(cfg, root, a.crop_cache.as_deref())?;
        if let Some(d) = &a.dump {
            eval::dump_signals(&cfg.spot, &videos, d)?;
        }
        if a.sweep {
            pooled.extend(videos);
            continue;
        }
        results.push(eval::evaluate_set(&cfg.spot, root, &videos)?);
    }
    if a.sweep {
        let best = eval::sweep(&cfg.spot, &pooled)?;
        for (f1, c) in best.iter().take(15) {
            println!(
                "F1 {f1:.3}  threshold_mads {} min_threshold_px {} edge_fraction {} blink_px {} min_distance_s {} jaw_px {}",
                c.threshold_mads,
                c.min_threshold_px,
                c.edge_fraction,
                c.blink_px,
                c.min_distance_s,
                c.jaw_px
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "schema": "aullm.spot_eval/1",
        "spot": cfg.spot,
        "sets": results,
    }))?;
    if let Some(p) = &a.out {
        let mut f = aullm::atomic::AtomicFile::create(p)?;
        std::io::Write::write_all(&mut f, json.as_bytes())?;
        f.commit()?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", eval::render(&results));
    }
    Ok(ExitCode::SUCCESS)
}
