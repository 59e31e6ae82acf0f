//! `aullm train`, `aullm eval` and `aullm export`.

use super::*;
use anyhow::{Context, Result};
use aullm::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct CommonTrainArgs {
    /// Dataset as FORMAT:PATH (synth, casme2, samm, fourdme, casme3a); repeatable.
    #[arg(long = "dataset", required = true, value_name = "FORMAT:PATH")]
    pub(crate) datasets: Vec<aullm::train::DatasetArg>,
    /// Output folder (checkpoints, report, model).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Stop each run after this many optimiser steps (smoke tests).
    #[arg(long)]
    pub(crate) max_steps: Option<u64>,
    /// Epochs (overrides train.epochs).
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// Ablation variant (overrides frontend.ablation): full, no_augnn, fully_connected,
    /// self_loops_only, no_efp, f_mid_only, f_high_only, mlp_head, no_ccr.
    #[arg(long)]
    pub(crate) ablation: Option<String>,
    /// Aligned-clip cache folder (default: `clips/` beside the model cache).
    #[arg(long)]
    pub(crate) clip_cache: Option<PathBuf>,
    /// Start the front-end from a trained model (name under models/, e.g. default, or a model
    /// folder) to fine-tune it, or from a finished run of the same protocol (sets
    /// train.init_frontend).
    #[arg(long, value_name = "MODEL|RUN")]
    pub(crate) init: Option<String>,
    /// Learn from at most N clips per fold, drawn evenly over its subjects (a learning-curve
    /// point; sets train.max_clips).
    #[arg(long, value_name = "N")]
    pub(crate) max_clips: Option<usize>,
    /// No progress lines.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) common: CommonTrainArgs,
    /// Protocol: all (one model on every subject; exported) or split:DATASET/SUBJECT,... .
    #[arg(long, default_value = "all")]
    pub(crate) protocol: aullm::train::Protocol,
    /// Model name written under --out/model (manifest id).
    #[arg(long, default_value = "aullm-model")]
    pub(crate) name: String,
}

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) common: CommonTrainArgs,
    /// Protocol: loso, kfold:K, lodo, cross:TRAIN>TEST (e.g. cross:casme2>samm), cross:pairs,
    /// split:DATASET/SUBJECT,...
    #[arg(long, default_value = "loso")]
    pub(crate) protocol: aullm::train::Protocol,
    /// Also print the published papers' optimistic metric (labelled as such).
    #[arg(long)]
    pub(crate) paper_metric: bool,
    /// Train at most N folds that are not finished yet, then write a report of the finished folds
    /// labelled partial (with --resume, to spread a long protocol over several runs)
    #[arg(long, value_name = "N")]
    pub(crate) max_folds: Option<usize>,
    /// Train only the folds whose index is I modulo N (finished folds are still scored), so that N
    /// processes can share one protocol and --out; the report is partial until all are done
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub(crate) shard: Option<(usize, usize)>,
    /// Score this trained model (name under models/ or folder) on the datasets, without training:
    /// clip datasets give per-clip predictions (predictions.csv, `aullm score`'s format), long-video
    /// datasets (sammlv, SynthME long videos) the whole pipeline's spotting and AU F1.
    #[arg(long, value_name = "NAME|DIR", conflicts_with_all = ["protocol", "max_folds", "shard", "resume", "max_steps", "epochs", "ablation", "init", "max_clips"])]
    pub(crate) model: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct CurveArgs {
    /// Folder holding RECIPE/nN/report.json (one `aullm eval --max-clips N --out DIR/RECIPE/nN` each).
    pub(crate) dir: PathBuf,
    /// Title of the page.
    #[arg(long, default_value = "aullm learning curve")]
    pub(crate) title: String,
}

/// `aullm curve DIR`.
pub(crate) fn curve_command(a: CurveArgs) -> Result<ExitCode> {
    let points = aullm::eval::curve::write(&a.dir, &a.title)?;
    print!("{}", aullm::eval::curve::render_markdown(&points, &a.title));
    eprintln!("wrote {}", a.dir.join("curve.html").display());
    Ok(ExitCode::SUCCESS)
}

/// `I/N` with I < N.
pub(crate) fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("--shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/2");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Output ONNX file (front-end alone; not with --run).
    #[arg(required_unless_present = "run", conflicts_with = "run")]
    pub(crate) onnx: Option<PathBuf>,
    /// Front-end checkpoint (safetensors); without it the `[frontend]` configuration with random weights.
    #[arg(long, conflicts_with = "run")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Also write the (random or loaded) weights as a checkpoint here.
    #[arg(long, conflicts_with = "run")]
    pub(crate) save_checkpoint: Option<PathBuf>,
    /// Training run folder (`aullm train --out`): writes a model bundle from its checkpoint, or
    /// from a fold's with --fold.
    #[arg(long, requires = "name")]
    pub(crate) run: Option<PathBuf>,
    /// Model name (manifest id) of the bundle.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Fold of a multi-fold run, as the report names it (e.g. casme2/sub01).
    #[arg(long, requires = "run")]
    pub(crate) fold: Option<String>,
    /// Bundle folder [default: models/NAME].
    #[arg(long, requires = "run")]
    pub(crate) out: Option<PathBuf>,
}

/// Applies the shared training flags to the configuration and builds the protocol options.
pub(crate) fn protocol_options(
    cfg: &mut Config,
    c: CommonTrainArgs,
    protocol: aullm::train::Protocol,
    paper_metric: bool,
    parts: (Option<usize>, Option<(usize, usize)>),
) -> Result<aullm::train::protocol::ProtocolOptions> {
    if let Some(e) = c.epochs {
        cfg.train.epochs = e;
    }
    if let Some(init) = &c.init {
        cfg.train.init_frontend = init.clone();
    }
    if let Some(n) = c.max_clips {
        cfg.train.max_clips = n;
    }
    if let Some(a) = &c.ablation {
        cfg.frontend.ablation = toml::Value::String(a.clone()).try_into().map_err(|_| {
            anyhow::anyhow!("--ablation {a:?}: not a known variant (see `aullm eval --help`)")
        })?;
    }
    cfg.validate().context("command-line options")?;
    let interrupt = interrupt_flag("interrupted: finishing this step and writing a checkpoint");
    Ok(aullm::train::protocol::ProtocolOptions {
        datasets: c.datasets,
        protocol,
        out: c.out,
        resume: c.resume,
        max_steps: c.max_steps,
        cache_dir: c.clip_cache,
        root: aullm::train::protocol::default_root(),
        quiet: c.quiet,
        interrupt: Some(interrupt),
        paper_metric,
        max_folds: parts.0,
        shard: parts.1,
    })
}

pub(crate) fn train_command(cfg: &mut Config, a: TrainArgs) -> Result<ExitCode> {
    let o = protocol_options(cfg, a.common, a.protocol, false, (None, None))?;
    let (outcome, net) = aullm::train::protocol::run(cfg, &o)?;
    std::fs::write(
        o.out.join("training.json"),
        serde_json::to_string_pretty(&outcome)?,
    )?;
    if net.is_none() && outcome.protocol_folds == 1 && o.protocol != aullm::train::Protocol::All {
        anyhow::bail!(
            "the fold in {} was scored from its saved result.json and its checkpoint is gone, so there is no network to export: run it again without --resume",
            o.out.display()
        );
    }
    if let Some(net) = net {
        let th = &outcome
            .folds
            .last()
            .context("no fold trained")?
            .summary
            .thresholds;
        let dir = o.out.join("model");
        let m = aullm::export::bundle::export(&net, cfg, th, &a.name, &dir)?;
        println!(
            "model {} written to {} ({} files)",
            a.name,
            dir.display(),
            m.files.len()
        );
    }
    if let Some(r) = &outcome.report {
        print!(
            "{}",
            aullm::eval::report::render_markdown(&outcome.report_info(cfg), r, Some(cfg))
        );
        for f in &outcome.report_files {
            println!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn eval_command(cfg: &mut Config, a: EvalArgs) -> Result<ExitCode> {
    if let Some(m) = &a.model {
        let o = aullm::jobs::eval_model::ModelEvalOptions {
            model_dir: aullm::runtime::bundle::locate(m)?,
            datasets: a.common.datasets,
            out: a.common.out,
            clip_cache: a.common.clip_cache,
            paper_metric: a.paper_metric,
            quiet: a.common.quiet,
        };
        let outcome = aullm::jobs::eval_model::run(cfg, &o)?;
        print!("{}", outcome.markdown);
        for f in &outcome.files {
            println!("wrote {}", f.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let o = protocol_options(
        cfg,
        a.common,
        a.protocol,
        a.paper_metric,
        (a.max_folds, a.shard),
    )?;
    let (outcome, _) = aullm::train::protocol::run(cfg, &o)?;
    let r = outcome
        .report
        .as_ref()
        .context("the protocol has no test fold")?;
    print!(
        "{}",
        aullm::eval::report::render_markdown(&outcome.report_info(cfg), r, Some(cfg))
    );
    for f in &outcome.report_files {
        println!("wrote {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn export_command(cfg: &Config, a: ExportArgs) -> Result<ExitCode> {
    use aullm::graph::{checkpoint, frontend};
    if let Some(run) = &a.run {
        let name = a.name.as_deref().context("--run needs --name")?;
        let ck = aullm::jobs::export::checkpoint_of(run, a.fold.as_deref())?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("models").join(name));
        let root = aullm::train::protocol::default_root();
        let m = aullm::jobs::export::export_run(&ck, cfg, name, &out, &root)?;
        println!(
            "model {name} written to {} from {} ({} files, decider {})",
            out.display(),
            ck.display(),
            m.files.len(),
            m.decider
        );
        return Ok(ExitCode::SUCCESS);
    }
    let onnx = a
        .onnx
        .as_deref()
        .context("give the ONNX file to write, or --run")?;
    let dev = candle_core::Device::Cpu;
    let model = match &a.checkpoint {
        Some(p) => checkpoint::load(p, &dev)?,
        None => {
            let root = std::env::current_dir().context("cannot read the current folder")?;
            let spec = frontend::FrontendSpec::from_config(&cfg.frontend, &root)?;
            eprintln!("warning: no --checkpoint: exporting random weights");
            frontend::FrontendModel::new(&spec, &dev)?
        }
    };
    if let Some(p) = &a.save_checkpoint {
        checkpoint::save(&model, p)?;
    }
    aullm::export::frontend_onnx::export_frontend(&model, onnx)?;
    let c = &model.net.spec().config;
    println!(
        "wrote {} ({:?}, clip [batch, 1, {}, {}, {}] → t_v [batch, 1, {}]{}; {} parameters)",
        onnx.display(),
        c.ablation,
        c.frames,
        c.size,
        c.size,
        c.width,
        if model.net.augnn().is_some() {
            format!(", tau_au [batch, {}, {}]", c.aus.len(), c.width)
        } else {
            String::new()
        },
        model.parameter_count()
    );
    Ok(ExitCode::SUCCESS)
}
