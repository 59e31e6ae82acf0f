//! The `aullm` command line.

use anyhow::{Context, Result};
use aullm::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;
use cli::*;

/// Facial micro-expression Action Units from live cameras and recorded video (AULLM++).
#[derive(Parser)]
#[command(name = "aullm", version, about)]
struct Cli {
    /// Configuration file (TOML); see `aullm config show` for every key and its default.
    #[arg(long, global = true, env = "AULLM_CONFIG")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set face.max_faces=2` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Model cache folder (overrides models.cache_dir and $AULLM_CACHE_DIR).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Model artefacts: list, fetch, verify, or print a path.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Check that every part aullm needs is present and working.
    Doctor,
    /// Configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// List the built-in GStreamer source templates and their parameters.
    Pipelines,
    /// Detect, track and align faces: per-frame CSV (OpenFace style), crops, contact sheet.
    Faces(FacesArgs),
    /// Generate SynthME, the synthetic micro-expression benchmark (CASME II + SAMM-LV layouts).
    Synth(SynthArgs),
    /// Write a test video: the astronaut photo with known head motion and sensor noise (lossless).
    Testvideo(TestvideoArgs),
    /// Micro-expression datasets (CASME II, SAMM, 4DME, CAS(ME)^3, SAMM-LV, CAS(ME)^2).
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Score predictions against a dataset's annotations: per-AU F1, or MEGC spotting F1.
    Score(ScoreArgs),
    /// Export a model bundle (models/NAME/) from a training run with --run, or the front-end alone
    /// (clip → T_v, τ_au) as an ONNX model (opset 17) for ONNX Runtime.
    Export(ExportArgs),
    /// The main job: spot micro-expressions on a source and publish timestamped AU events to sinks.
    Run(RunArgs),
    /// Process recorded videos (files, folders, list files) in parallel: events, per-frame CSV, HTML reports.
    Batch(BatchArgs),
    /// Serve a camera: `run` on a template source that reconnects with back-off when the camera goes away.
    Serve(ServeArgs),
    /// Train AULLM++ (front-end, R-AUGNN, LoRA, AU head; CCR) on datasets, and export the model.
    Train(TrainArgs),
    /// Run a protocol (LOSO, subject k-fold, leave-one-dataset-out): train per fold, score held-out clips, write a report.
    Eval(EvalArgs),
    /// Gather learning-curve points (`aullm eval --max-clips N` reports in DIR/RECIPE/nN/) into
    /// DIR/curve.{md,html,json}: one table, one chart.
    Curve(CurveArgs),
    /// Spot micro/macro-expression intervals (onset, apex, offset) live on a source.
    Spot(SpotArgs),
    /// Evaluate spotting on SAMM-LV-layout folders (e.g. SynthME long videos) with the MEGC metric.
    SpotEval(SpotEvalArgs),
    /// AU events: replay a recorded JSON-lines file to sinks, or validate one.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AULLM_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // OpenCV only sees small images here (128 px crops, flow windows): its worker pool costs more in
    // spinning than it gains, and parallelism comes from pipeline stages and batch jobs instead.
    if let Err(e) = opencv::core::set_num_threads(1) {
        tracing::warn!("could not limit OpenCV to one thread: {e}");
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// A flag the first SIGINT, SIGTERM or SIGHUP raises (printing `message`); a second signal
/// exits at once with [`exit::QUIT`].
fn interrupt_flag(message: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            eprintln!("\nquitting now: queued events and the summary are not written");
            std::process::exit(exit::QUIT.into());
        }
        eprintln!("\n{message} (a second Ctrl-C, SIGTERM or SIGHUP quits at once)");
    });
    flag
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref(), &cli.overrides)?;
    if let Some(d) = &cli.cache_dir {
        cfg.models.cache_dir = d.display().to_string();
    }
    Ok(cfg)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut cfg = load_config(&cli)?;
    match cli.command {
        Command::Models { action } => models(&cfg, action),
        Command::Doctor => {
            let checks = aullm::doctor::run(&cfg);
            let (table, ok) = aullm::doctor::render(&checks);
            print!("{table}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::INCOMPLETE)
            })
        }
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", cfg.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigAction::Ranges,
        } => {
            print!("{}", aullm::config::ranges::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Pipelines => {
            for t in aullm::ingest::template::builtin() {
                let params: Vec<String> =
                    t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "pipeline:{:<8} {}\n    params: {}\n",
                    t.name,
                    t.summary,
                    params.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Faces(args) => {
            if let Some(n) = args.max_faces {
                cfg.face.max_faces = n;
            }
            if let Some(n) = args.detect_every {
                cfg.face.detect_every = n;
            }
            if args.no_stabilise {
                cfg.align.stabilise = false;
            }
            cfg.validate().context("command-line options")?;
            faces(&cfg, args)
        }
        Command::Testvideo(a) => testvideo(&cfg, a),
        Command::Synth(a) => synth(&cfg, a),
        Command::Data { action } => data_command(&cfg, action),
        Command::Score(a) => score_command(a),
        Command::Export(a) => export_command(&cfg, a),
        Command::Run(a) => run_command(&cfg, a),
        Command::Serve(a) => serve_command(&cfg, a),
        Command::Batch(a) => batch_command(&cfg, a),
        Command::Train(a) => train_command(&mut cfg, a),
        Command::Eval(a) => eval_command(&mut cfg, a),
        Command::Curve(a) => curve_command(a),
        Command::Events { action } => events_command(&cfg, action),
        Command::Spot(a) => spot_command(&cfg, a),
        Command::SpotEval(a) => spot_eval_command(&cfg, a),
    }
}
