//! The `aullm` command line.

use anyhow::{Context, Result, bail};
use aullm::config::Config;
use aullm::jobs::faces::{CropsOutput, FacesOptions};
use aullm::models::{FetchOutcome, ModelCache};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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

#[derive(clap::Args)]
struct PipelineArgs {
    /// Model name (folder under models/) or path (default stream.model = "default").
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Print a statistics line every second (stderr).
    #[arg(long)]
    stats: bool,
    /// Frame rate for the spotting windows (default: from the timestamps).
    #[arg(long)]
    fps: Option<f64>,
    /// Also write the final summary as JSON here.
    #[arg(long)]
    summary: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Video file, URI, `pipeline:NAME?k=v&...` (see `aullm pipelines`) or `gst:DESCRIPTION`.
    source: String,
    /// Compare the events with this SAMM-LV-layout folder's annotations (video id = file stem).
    #[arg(long)]
    truth: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(clap::Args)]
struct BatchArgs {
    /// Video files, folders (searched recursively) or list files (.txt/.lst, one path per line).
    #[arg(required_unless_present = "merge")]
    inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Only files in folders whose name matches this glob (default: common video extensions).
    #[arg(long)]
    glob: Option<String>,
    /// Videos processed at once (default: one per core: 5.2x real time on 2 cores against 4.9x with one).
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// Skip videos whose outputs are complete and unchanged (checked against done.json).
    #[arg(long)]
    resume: bool,
    /// Process only shard I of N (1-based) of the sorted inputs, e.g. `--shard $SLURM_ARRAY_TASK_ID/8`.
    #[arg(long)]
    shard: Option<String>,
    /// Build one index over these shard output folders (instead of processing videos).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    merge: Vec<PathBuf>,
    /// Model name (folder under models/) or path (default stream.model).
    #[arg(long)]
    model: Option<String>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Source template (aravis, pylon, v4l2, rtsp, test, ...; see `aullm pipelines`).
    #[arg(long)]
    template: String,
    /// Template parameter KEY=VALUE (repeatable), e.g. `--param camera=Basler-1234`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Longest wait between reconnection attempts, seconds.
    #[arg(long, default_value_t = 30.0)]
    max_backoff: f64,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(clap::Args)]
struct CommonTrainArgs {
    /// Dataset as FORMAT:PATH (synth, casme2, samm, fourdme, casme3a); repeatable.
    #[arg(long = "dataset", required = true, value_name = "FORMAT:PATH")]
    datasets: Vec<aullm::train::DatasetArg>,
    /// Output folder (checkpoints, report, model).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    resume: bool,
    /// Stop each run after this many optimiser steps (smoke tests).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Epochs (overrides train.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Ablation variant (overrides frontend.ablation): full, no_augnn, fully_connected,
    /// self_loops_only, no_efp, f_mid_only, f_high_only, mlp_head, no_ccr.
    #[arg(long)]
    ablation: Option<String>,
    /// Aligned-clip cache folder (default: `clips/` beside the model cache).
    #[arg(long)]
    clip_cache: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    common: CommonTrainArgs,
    /// Protocol: all (one model on every subject; exported) or split:DATASET/SUBJECT,... .
    #[arg(long, default_value = "all")]
    protocol: aullm::train::Protocol,
    /// Model name written under --out/model (manifest id).
    #[arg(long, default_value = "aullm-model")]
    name: String,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    common: CommonTrainArgs,
    /// Protocol: loso, kfold:K, lodo, split:DATASET/SUBJECT,...
    #[arg(long, default_value = "loso")]
    protocol: aullm::train::Protocol,
    /// Also print the published papers' optimistic metric (labelled as such).
    #[arg(long)]
    paper_metric: bool,
    /// Train at most N folds that are not finished yet, then write a report of the finished folds
    /// labelled partial (with --resume, to spread a long protocol over several runs)
    #[arg(long, value_name = "N")]
    max_folds: Option<usize>,
    /// Train only the folds whose index is I modulo N (finished folds are still scored), so that N
    /// processes can share one protocol and --out; the report is partial until all are done
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
}

/// `I/N` with I < N.
fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
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

#[derive(Subcommand)]
enum EventsAction {
    /// Republish recorded events (JSON lines) to sinks: jsonl, tcp, ws, lsl.
    Replay(ReplayArgs),
    /// Check that every line of a file is a valid aullm.au_event/1 event.
    Validate {
        /// JSON-lines file of events.
        file: PathBuf,
    },
}

/// Where events go (shared by every command that produces events).
#[derive(clap::Args)]
struct SinkArgs {
    /// jsonl:PATH, jsonl:- (stdout), tcp:[IP:]PORT, ws:[IP:]PORT or lsl:NAME (repeatable).
    #[arg(long = "sink", value_name = "SPEC")]
    sinks: Vec<String>,
    /// Address for servers given a bare port (default events.bind = 127.0.0.1).
    #[arg(long)]
    bind: Option<String>,
    /// Bearer token TCP/WebSocket clients must present.
    #[arg(long, env = "AULLM_EVENTS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// JSON-lines file of events.
    file: PathBuf,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Events per second (default: as fast as the sinks take them).
    #[arg(long)]
    rate: Option<f64>,
    /// Shift times so the first onset is now (host, monotonic and LSL clocks), keeping the spacing.
    #[arg(long)]
    retime: bool,
    /// Wait for this many TCP/WebSocket clients before publishing.
    #[arg(long, default_value_t = 0)]
    wait_clients: u64,
    /// Also write the per-sink statistics as JSON here.
    #[arg(long)]
    stats: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SpotArgs {
    /// Video file, URI, `pipeline:NAME?...` or `gst:...`.
    source: String,
    /// Print each interval as a JSON line (`aullm.spot_interval/1`) and the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Frame rate for the spotting windows (default: from the timestamps).
    #[arg(long)]
    fps: Option<f64>,
}

#[derive(clap::Args)]
struct SpotEvalArgs {
    /// SAMM-LV-layout folders with `videos/` (e.g. written by `aullm synth`).
    #[arg(required = true)]
    roots: Vec<PathBuf>,
    /// Keep each video's aligned crops here and reuse them (skips face tracking on later runs).
    #[arg(long)]
    crop_cache: Option<PathBuf>,
    /// Write the report (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Grid-search the swept parameters on these folders (tuning data only) and print the best.
    #[arg(long)]
    sweep: bool,
    /// Write per-frame region displacements as CSV files into this folder (tuning aid).
    #[arg(long)]
    dump: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Output ONNX file (front-end alone; not with --run).
    #[arg(required_unless_present = "run", conflicts_with = "run")]
    onnx: Option<PathBuf>,
    /// Front-end checkpoint (safetensors); without it the `[frontend]` configuration with random weights.
    #[arg(long, conflicts_with = "run")]
    checkpoint: Option<PathBuf>,
    /// Also write the (random or loaded) weights as a checkpoint here.
    #[arg(long, conflicts_with = "run")]
    save_checkpoint: Option<PathBuf>,
    /// Training run folder (`aullm train --out`): writes a model bundle from its checkpoint, or
    /// from a fold's with --fold.
    #[arg(long, requires = "name")]
    run: Option<PathBuf>,
    /// Model name (manifest id) of the bundle.
    #[arg(long)]
    name: Option<String>,
    /// Fold of a multi-fold run, as the report names it (e.g. casme2/sub01).
    #[arg(long, requires = "run")]
    fold: Option<String>,
    /// Bundle folder [default: models/NAME].
    #[arg(long, requires = "run")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output folder.
    out: PathBuf,
    /// ci (tiny, seconds) or bench (24 subjects x 10 clips + 8 long videos).
    #[arg(long, default_value = "ci")]
    preset: String,
    /// Master seed (same seed, same bytes).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of subjects (identities).
    #[arg(long)]
    subjects: Option<u32>,
    /// Clips per subject.
    #[arg(long)]
    clips: Option<u32>,
    /// Number of long videos.
    #[arg(long)]
    long_videos: Option<u32>,
    /// Micro-expression amplitude range in canonical-face pixels, e.g. 0.3,2.0.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    amplitude: Option<Vec<f32>>,
    /// Sensor noise (gray levels).
    #[arg(long)]
    noise: Option<f32>,
    /// Illumination flicker (relative amplitude).
    #[arg(long)]
    flicker: Option<f32>,
    /// Head micro-motion, peak pixels.
    #[arg(long)]
    head_px: Option<f32>,
    /// Head micro-rotation, peak degrees.
    #[arg(long)]
    head_deg: Option<f32>,
    /// Blinks per minute in long videos (0 disables).
    #[arg(long)]
    blinks: Option<f64>,
    /// Macro-expression distractors per long video.
    #[arg(long)]
    macros: Option<u32>,
    /// Micro-expressions per long video.
    #[arg(long)]
    micros: Option<u32>,
    /// Rendering threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct TestvideoArgs {
    /// Output file (.mkv).
    out: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 400)]
    frames: u32,
    /// Frame rate.
    #[arg(long, default_value_t = 200.0)]
    fps: f64,
    /// Frame width.
    #[arg(long, default_value_t = 640)]
    width: u32,
    /// Frame height.
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// Sensor noise (standard deviation, gray levels).
    #[arg(long, default_value_t = 2.0)]
    noise: f64,
    /// Head motion: still or sway (±6 px, ±2°, plus a 10 px drift).
    #[arg(long, default_value = "sway")]
    motion: String,
    /// ffv1 (lossless, compact) or raw (uncompressed GRAY8, cheapest to decode).
    #[arg(long, default_value = "ffv1")]
    codec: String,
    /// Noise seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Every artefact in the manifest with its state.
    List,
    /// Fetch artefacts (all required ones by default) from their registries and verify them.
    Fetch {
        /// Names to fetch; none = every required artefact (`--all` for every one).
        names: Vec<String>,
        /// Fetch optional artefacts too.
        #[arg(long)]
        all: bool,
        /// Fetch again even when a verified copy is present.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash cached artefacts against the manifest.
    Verify {
        /// Names to verify; none = every cached artefact.
        names: Vec<String>,
    },
    /// Print the verified path of one artefact.
    Path {
        /// Artefact name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (defaults, file, overrides).
    Show,
}

#[derive(clap::Args)]
struct FacesArgs {
    /// A video file, a URI, `pipeline:NAME?key=value&...` (see `aullm pipelines`) or `gst:DESCRIPTION`.
    source: String,
    /// Output folder (faces.csv, contact_sheet.png, crops/).
    #[arg(short, long, default_value = "out/faces")]
    out: PathBuf,
    /// Also write aligned crops: a folder of PNGs, or a video file ending in .mkv (lossless) / .avi.
    #[arg(long)]
    crops: Option<PathBuf>,
    /// Skip the contact sheet.
    #[arg(long)]
    no_contact_sheet: bool,
    /// Maximum number of faces tracked at once (face.max_faces).
    #[arg(long)]
    max_faces: Option<usize>,
    /// Run the detector every N frames (face.detect_every).
    #[arg(long)]
    detect_every: Option<u32>,
    /// Disable sub-pixel stabilisation (crops follow raw keypoints).
    #[arg(long)]
    no_stabilise: bool,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
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
            ExitCode::from(2)
        }
    }
}

/// A flag the first Ctrl-C raises (printing `message`); a second Ctrl-C exits at once.
fn interrupt_flag(message: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\n{message} (Ctrl-C again to quit now)");
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
                ExitCode::from(1)
            })
        }
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", cfg.to_toml());
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
        Command::Events { action } => events_command(&cfg, action),
        Command::Spot(a) => spot_command(&cfg, a),
        Command::SpotEval(a) => spot_eval_command(&cfg, a),
    }
}

/// Sinks, model and options shared by `run` and `serve`; installs the Ctrl-C handler.
struct Pipeline {
    bus: aullm::events::EventBus,
    model_dir: PathBuf,
    opts: aullm::stream::StreamOptions,
    summary: Option<PathBuf>,
}

/// Parses `--sink` specs and opens them with `--bind`/`--token` and the AU channel order.
fn open_bus(cfg: &Config, a: &SinkArgs, aus: Vec<String>) -> Result<aullm::events::EventBus> {
    let specs = a
        .sinks
        .iter()
        .map(|s| aullm::events::SinkSpec::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let opts =
        aullm::events::sink_options(&cfg.events, &cfg.models, &specs, a.bind.as_deref(), a.token.as_deref(), aus)?;
    let bus = aullm::events::open_sinks(&specs, &opts)?;
    for (name, addr) in bus.local_addrs() {
        eprintln!("listening: {name} on {addr}");
    }
    Ok(bus)
}

fn open_pipeline(cfg: &Config, p: PipelineArgs) -> Result<Pipeline> {
    let model_dir = aullm::runtime::bundle::locate(p.model.as_deref().unwrap_or(&cfg.stream.model))?;
    let manifest = aullm::runtime::bundle::verify(&model_dir)?;
    let mut sinks = p.sinks;
    if sinks.sinks.is_empty() {
        sinks.sinks.push("jsonl:-".to_string());
    }
    let aus = manifest.aus.iter().map(|a| format!("AU{a}")).collect();
    let bus = open_bus(cfg, &sinks, aus)?;
    let stop = interrupt_flag("stopping: draining the queues");
    Ok(Pipeline {
        bus,
        model_dir,
        opts: aullm::stream::StreamOptions {
            fps: p.fps,
            stats_every: p.stats.then(|| std::time::Duration::from_secs(1)),
            stop,
            ..aullm::stream::StreamOptions::from_config(cfg)
        },
        summary: p.summary,
    })
}

/// Prints the summary (and writes it as JSON when asked); closing the bus drains the sinks first.
fn finish_pipeline(
    p: Pipeline,
    mut last: Option<aullm::stream::RunSummary>,
) -> Result<Option<aullm::stream::RunSummary>> {
    let sinks = p.bus.close();
    if let Some(s) = last.as_mut() {
        s.sinks = sinks;
        eprint!("{}", s.render());
        if let Some(path) = &p.summary {
            std::fs::write(path, serde_json::to_string_pretty(s)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(last)
}

fn batch_command(cfg: &Config, a: BatchArgs) -> Result<ExitCode> {
    if !a.merge.is_empty() {
        let rows = aullm::batch::write_index(&a.merge, &a.out)?;
        let failed = rows.iter().filter(|r| r.status != "ok").count();
        println!(
            "index of {} videos ({failed} failed) written to {}",
            rows.len(),
            a.out.join("index.html").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stop = interrupt_flag("stopping: finishing the videos in progress");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let o = aullm::batch::BatchOptions {
        inputs: a.inputs,
        glob: a.glob,
        out: a.out,
        jobs: a.jobs.unwrap_or(cores.max(1)),
        resume: a.resume,
        shard: a
            .shard
            .as_deref()
            .map(aullm::batch::inputs::parse_shard)
            .transpose()?,
        model_dir: aullm::runtime::bundle::locate(a.model.as_deref().unwrap_or(&cfg.stream.model))?,
        quiet: a.quiet,
        stop,
    };
    let s = aullm::batch::run(cfg, &o)?;
    eprint!("{}", s.render());
    println!("index: {}", o.out.join("index.html").display());
    if let Some(p) = &a.summary {
        std::fs::write(p, serde_json::to_string_pretty(&s)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(if s.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn run_command(cfg: &Config, a: RunArgs) -> Result<ExitCode> {
    let source = aullm::ingest::Source::parse(&a.source)?;
    let truth = match &a.truth {
        Some(root) => {
            let stem = std::path::Path::new(&a.source)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .context("--truth needs a video file source (its name is the video id)")?;
            Some(aullm::eval::truth::load_truth(root, &stem)?)
        }
        None => None,
    };
    let mut p = open_pipeline(cfg, a.pipeline)?;
    p.opts.record = truth.is_some();
    let mut det = aullm::runtime::detector::Detector::load(&p.model_dir, cfg, None)?;
    let mut seq = 0;
    let r = aullm::stream::run(
        cfg,
        &source,
        &mut aullm::runtime::detector::DetectorSlot::Ready(&mut det),
        &p.bus,
        &p.opts,
        &mut seq,
    );
    let summary = match r {
        Ok(s) => Some(s),
        Err(e) => {
            finish_pipeline(p, None)?;
            return Err(e);
        }
    };
    let s = finish_pipeline(p, summary)?.expect("summary");
    if let (Some(t), Some(r)) = (&truth, &s.recording) {
        print!("{}", aullm::eval::truth::compare(&r.events, t));
    }
    Ok(if s.error.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn serve_command(cfg: &Config, a: ServeArgs) -> Result<ExitCode> {
    let mut spec = format!("pipeline:{}", a.template);
    if !a.params.is_empty() {
        spec.push('?');
        spec.push_str(&a.params.join("&"));
    }
    if let Some(f) = a.pipeline.fps
        && !a.params.iter().any(|p| p.starts_with("fps="))
    {
        spec.push(if a.params.is_empty() { '?' } else { '&' });
        spec.push_str(&format!("fps={f}"));
    }
    let source = aullm::ingest::Source::parse(&spec)?;
    let p = open_pipeline(cfg, a.pipeline)?;
    let mut seq = 0;
    let mut backoff = 1.0f64;
    let mut last = None;
    // Events keep one numbering and the sinks stay up across reconnections.
    while !p.opts.stop.load(std::sync::atomic::Ordering::SeqCst) {
        let mut det = aullm::runtime::detector::Detector::load(&p.model_dir, cfg, None)?;
        let started = std::time::Instant::now();
        match aullm::stream::run(
            cfg,
            &source,
            &mut aullm::runtime::detector::DetectorSlot::Ready(&mut det),
            &p.bus,
            &p.opts,
            &mut seq,
        ) {
            Ok(s) => {
                eprint!("{}", s.render());
                let clean = s.error.is_none();
                last = Some(s);
                if clean && p.opts.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) => eprintln!("source {spec}: {e:#}"),
        }
        if started.elapsed().as_secs_f64() > 60.0 {
            backoff = 1.0; // it ran for a while: the camera came back
        }
        eprintln!("reconnecting to {spec} in {backoff:.0} s");
        let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(backoff);
        while std::time::Instant::now() < until
            && !p.opts.stop.load(std::sync::atomic::Ordering::SeqCst)
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        backoff = (backoff * 2.0).min(a.max_backoff);
    }
    finish_pipeline(p, last)?;
    Ok(ExitCode::SUCCESS)
}

/// Applies the shared training flags to the configuration and builds the protocol options.
fn protocol_options(
    cfg: &mut Config,
    c: CommonTrainArgs,
    protocol: aullm::train::Protocol,
    paper_metric: bool,
    parts: (Option<usize>, Option<(usize, usize)>),
) -> Result<aullm::train::protocol::ProtocolOptions> {
    if let Some(e) = c.epochs {
        cfg.train.epochs = e;
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

fn train_command(cfg: &mut Config, a: TrainArgs) -> Result<ExitCode> {
    let o = protocol_options(cfg, a.common, a.protocol, false, (None, None))?;
    let (outcome, net) = aullm::train::protocol::run(cfg, &o)?;
    std::fs::write(
        o.out.join("training.json"),
        serde_json::to_string_pretty(&outcome)?,
    )?;
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

fn eval_command(cfg: &mut Config, a: EvalArgs) -> Result<ExitCode> {
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

fn spot_command(cfg: &Config, a: SpotArgs) -> Result<ExitCode> {
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
    }
    if let Some(e) = summary.error {
        bail!("the stream ended with an error: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn spot_eval_command(cfg: &Config, a: SpotEvalArgs) -> Result<ExitCode> {
    use aullm::eval::spot_videos as eval;
    let mut results = Vec::new();
    for root in &a.roots {
        let videos = aullm::jobs::spot::load_set(cfg, root, a.crop_cache.as_deref())?;
        if let Some(d) = &a.dump {
            eval::dump_signals(&cfg.spot, &videos, d)?;
        }
        if a.sweep {
            let best = eval::sweep(&cfg.spot, &videos)?;
            for (f1, c) in best.iter().take(15) {
                println!(
                    "F1 {f1:.3}  threshold_mads {} min_threshold_px {} edge_fraction {} blink_px {} min_distance_s {}",
                    c.threshold_mads,
                    c.min_threshold_px,
                    c.edge_fraction,
                    c.blink_px,
                    c.min_distance_s
                );
            }
            continue;
        }
        results.push(eval::evaluate_set(&cfg.spot, root, &videos)?);
    }
    if a.sweep {
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

fn events_command(cfg: &Config, action: EventsAction) -> Result<ExitCode> {
    use aullm::events::replay;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = match action {
        EventsAction::Validate { file } => {
            let n = replay::read_events(&file)?.len();
            println!("{}: {n} valid events", file.display());
            return Ok(ExitCode::SUCCESS);
        }
        EventsAction::Replay(a) => a,
    };
    if a.sinks.sinks.is_empty() {
        bail!("events replay needs at least one --sink");
    }
    let mut events = replay::read_events(&a.file)?;
    let aus = events
        .first()
        .map(|e| e.aus.iter().map(|d| d.au.clone()).collect())
        .unwrap_or_default();
    let bus = open_bus(cfg, &a.sinks, aus)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    // Ctrl-C stops publishing; the queues still drain so every published event reaches the sinks.
    let _ = ctrlc::set_handler(move || s2.store(true, Ordering::Relaxed));
    while bus.clients_connected() < a.wait_clients && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if a.retime {
        replay::retime(&mut events, &bus.clock());
    }
    let n = replay::replay(&events, &bus, a.rate, &stop);
    let rejected = bus.rejected();
    let stats = bus.close();
    eprintln!(
        "replayed {n} of {} events from {}",
        events.len(),
        a.file.display()
    );
    for s in &stats {
        eprintln!("  {}", s.render());
    }
    if let Some(p) = &a.stats {
        let json = serde_json::json!({ "events": n, "rejected": rejected, "sinks": stats });
        let mut f = aullm::atomic::AtomicFile::create(p)?;
        std::io::Write::write_all(&mut f, serde_json::to_string_pretty(&json)?.as_bytes())?;
        f.commit()?;
    }
    Ok(if stats.iter().any(|s| s.error.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn export_command(cfg: &Config, a: ExportArgs) -> Result<ExitCode> {
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

fn synth(cfg: &Config, a: SynthArgs) -> Result<ExitCode> {
    use aullm::data::synth::SynthConfig;
    let mut sc = match a.preset.as_str() {
        "ci" => SynthConfig::ci(),
        "bench" => SynthConfig::bench(),
        other => bail!("--preset {other:?}: expected ci or bench"),
    };
    if let Some(v) = a.seed {
        sc.seed = v;
    }
    if let Some(v) = a.subjects {
        sc.subjects = v.max(1);
    }
    if let Some(v) = a.clips {
        sc.clips_per_subject = v;
    }
    if let Some(v) = a.long_videos {
        sc.long_videos = v;
    }
    if let Some(v) = a.amplitude {
        if v.len() != 2 || !(0.0 < v[0] && v[0] <= v[1]) {
            bail!("--amplitude {v:?}: expected LOW,HIGH with 0 < LOW <= HIGH");
        }
        sc.amplitude = [v[0], v[1]];
    }
    if let Some(v) = a.noise {
        sc.nuisances.noise_sigma = v.max(0.0);
    }
    if let Some(v) = a.flicker {
        sc.nuisances.flicker = v.max(0.0);
    }
    if let Some(v) = a.head_px {
        sc.nuisances.head_px = v.max(0.0);
    }
    if let Some(v) = a.head_deg {
        sc.nuisances.head_deg = v.max(0.0);
    }
    if let Some(v) = a.blinks {
        sc.blinks_per_minute = v.max(0.0);
    }
    if let Some(v) = a.macros {
        sc.macros_per_video = v;
    }
    if let Some(v) = a.micros {
        sc.micros_per_video = v;
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let photo = aullm::fixtures::Photo::astronaut(&cfg.models)?;
    let r = aullm::data::synth::generate(&sc, &photo, &a.out, threads)?;
    println!(
        "wrote {}: {} subjects, {} clips ({} frames), {} long videos ({} frames) in {:.1} s ({:.0} frames/s)",
        r.root.display(),
        r.subjects,
        r.clips,
        r.clip_frames,
        r.videos,
        r.video_frames,
        r.seconds,
        r.frames_per_second
    );
    Ok(ExitCode::SUCCESS)
}

fn testvideo(cfg: &Config, a: TestvideoArgs) -> Result<ExitCode> {
    use aullm::fixtures::{FaceVideoSpec, Motion, Photo, write_face_video_with};
    use aullm::output::video::VideoCodec;
    let motion = match a.motion.as_str() {
        "still" => Motion::Still,
        "sway" => Motion::Sway {
            amplitude_px: 6.0,
            rotation_deg: 2.0,
            period_frames: a.fps,
            drift_px: 10.0,
        },
        other => bail!("--motion {other:?}: expected still or sway"),
    };
    let codec = match a.codec.as_str() {
        "ffv1" => VideoCodec::Ffv1,
        "raw" => VideoCodec::Raw,
        other => bail!("--codec {other:?}: expected ffv1 or raw"),
    };
    if a.out.extension().and_then(|e| e.to_str()) != Some("mkv") {
        bail!("{}: test videos are Matroska files (.mkv)", a.out.display());
    }
    let spec = FaceVideoSpec {
        width: a.width,
        height: a.height,
        fps: a.fps,
        frames: a.frames,
        noise_sigma: a.noise,
        motion,
        seed: a.seed,
    };
    let photo = Photo::astronaut(&cfg.models)?;
    write_face_video_with(&spec, &photo, &a.out, codec)?;
    println!(
        "wrote {} ({} frames, {}x{} at {} fps)",
        a.out.display(),
        a.frames,
        a.width,
        a.height,
        a.fps
    );
    Ok(ExitCode::SUCCESS)
}

fn faces(cfg: &Config, args: FacesArgs) -> Result<ExitCode> {
    let source = aullm::ingest::Source::parse(&args.source)?;
    let opts = FacesOptions {
        csv: args.out.join("faces.csv"),
        crops: args.crops.as_deref().map(CropsOutput::parse),
        contact_sheet: (!args.no_contact_sheet).then(|| args.out.join("contact_sheet.png")),
        max_frames: args.max_frames,
    };
    let summary = aullm::jobs::faces::run(cfg, &source, &opts, |stop| {
        // Ctrl-C ends the stream cleanly: queued frames are processed and outputs completed.
        let _ = ctrlc::set_handler(move || stop.stop());
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    if let Some(e) = &summary.error {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn models(cfg: &Config, action: ModelsAction) -> Result<ExitCode> {
    let manifest = aullm::assets::manifest(&cfg.models)?;
    let cache = ModelCache::new(cfg.cache_dir());
    match action {
        ModelsAction::List => {
            println!("cache: {}", cache.root().display());
            for a in &manifest.artefacts {
                let state = match cache.status(a) {
                    aullm::models::ArtefactStatus::Ok => "verified".to_string(),
                    aullm::models::ArtefactStatus::Missing => "missing".to_string(),
                    aullm::models::ArtefactStatus::Mismatch { .. } => "HASH MISMATCH".to_string(),
                };
                println!(
                    "{:<16} {:<9} {:<14} {}{}",
                    a.name,
                    if a.required { "required" } else { "optional" },
                    state,
                    a.description,
                    if a.license.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", a.license)
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Fetch { names, all, force } => {
            let list: Vec<&aullm::models::Artefact> = if names.is_empty() {
                manifest
                    .artefacts
                    .iter()
                    .filter(|a| all || a.required)
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| manifest.get(n))
                    .collect::<Result<_>>()?
            };
            let mut failed = 0;
            for a in list {
                match cache.fetch(a, force) {
                    Ok(FetchOutcome::AlreadyPresent) => {
                        println!("ok       {:<16} {}", a.name, cache.path_of(a).display())
                    }
                    Ok(FetchOutcome::Fetched(p)) => {
                        println!("fetched  {:<16} {}", a.name, p.display())
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("FAILED   {:<16} {e:#}", a.name);
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} artefact(s) could not be fetched");
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Verify { names } => {
            let list: Vec<&aullm::models::Artefact> = if names.is_empty() {
                manifest.artefacts.iter().collect()
            } else {
                names
                    .iter()
                    .map(|n| manifest.get(n))
                    .collect::<Result<_>>()?
            };
            let mut bad = 0;
            for a in list {
                if names.is_empty()
                    && matches!(cache.status(a), aullm::models::ArtefactStatus::Missing)
                {
                    println!("missing  {}", a.name);
                    continue;
                }
                match cache.verify(a) {
                    Ok(p) => println!("ok       {:<16} {}", a.name, p.display()),
                    Err(e) => {
                        bad += 1;
                        eprintln!("FAILED   {e:#}");
                    }
                }
            }
            Ok(if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ModelsAction::Path { name } => {
            let a = manifest.get(&name)?;
            println!("{}", cache.resolve(a)?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Subcommand)]
enum DataAction {
    /// Validate a dataset folder: annotations, apex inside onset..offset, frame files; counts per
    /// AU and per subject. Exits 1 when there are errors.
    Check(DataCheckArgs),
}

/// How a dataset folder is read (shared by `data check` and `score`).
#[derive(clap::Args)]
struct LoadArgs {
    /// Annotation file, when not found by its published name in the folder.
    #[arg(long)]
    annotations: Option<PathBuf>,
    /// Folder holding the subject folders, when not a published name.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    /// Frames: auto, raw or cropped.
    #[arg(long, default_value = "auto")]
    frames: aullm::data::FrameVariant,
    /// Uncertain AUs ("14 or 15", "?"): error, first, all or drop.
    #[arg(long, default_value = "error")]
    ambiguous: aullm::data::AmbiguityRule,
    /// 4DME AUs marked "(k)": error, include or exclude.
    #[arg(long, default_value = "error")]
    k_marked: aullm::data::KRule,
}

impl LoadArgs {
    fn options(&self) -> aullm::data::LoadOptions {
        aullm::data::LoadOptions {
            au: aullm::data::AuRules {
                ambiguous: self.ambiguous,
                k_marked: self.k_marked,
            },
            annotations: self.annotations.clone(),
            frames_dir: self.frames_dir.clone(),
            frames: self.frames,
        }
    }
}

#[derive(clap::Args)]
struct DataCheckArgs {
    /// Dataset folder.
    root: PathBuf,
    /// Dataset format: casme2, samm, fourdme, casme3a, sammlv or casme2lv.
    #[arg(long)]
    format: aullm::data::Dataset,
    #[command(flatten)]
    load: LoadArgs,
    /// Check the annotations only, not the frame files.
    #[arg(long)]
    no_frames: bool,
    /// Also run the face detector on every annotated frame and report how often it finds one face.
    #[arg(long)]
    detect: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// Predictions: per-clip CSV (dataset,subject,clip[,fold],AU<n>_p|AU<n>_c...) or, for
    /// spotting, intervals as CSV (video,onset,offset[,type]) or JSON Lines.
    #[arg(long)]
    pred: PathBuf,
    /// Dataset folder with the ground-truth annotations.
    #[arg(long)]
    gt: PathBuf,
    /// Its format: casme2, samm, fourdme, casme3a (AU detection) or sammlv, casme2lv (spotting).
    #[arg(long)]
    format: aullm::data::Dataset,
    #[command(flatten)]
    load: LoadArgs,
    /// Decision threshold for probabilities (choose it without the test data).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Per-AU thresholds, CSV rows `AU<n>,<threshold>` (override --threshold).
    #[arg(long)]
    thresholds: Option<PathBuf>,
    /// Only these AUs, e.g. `--aus 1,2,4,7,12,14,15,17`.
    #[arg(long, value_delimiter = ',')]
    aus: Option<Vec<u16>>,
    /// Also print the published papers' variant (optimistic: threshold swept on the test
    /// predictions, mean of positive- and negative-class F1).
    #[arg(long)]
    paper_compatible: bool,
    /// Score the predicted clips even when some annotated clips have no prediction.
    #[arg(long)]
    allow_missing: bool,
    /// Spotting: ground-truth intervals with unknown offset: error, apex or drop.
    #[arg(long, default_value = "error")]
    unknown_offset: aullm::eval::score::UnknownOffset,
    /// Spotting: score only micro or macro expressions.
    #[arg(long)]
    expressions: Option<aullm::data::ExpressionKind>,
    /// Print the scores as JSON.
    #[arg(long)]
    json: bool,
}

fn data_command(cfg: &Config, action: DataAction) -> Result<ExitCode> {
    match action {
        DataAction::Check(a) => {
            let loaded = aullm::data::load(&a.root, a.format, &a.load.options())?;
            let report = aullm::data::check::check(
                &loaded,
                aullm::data::check::CheckOptions {
                    frames: !a.no_frames,
                },
            );
            let detect = if a.detect {
                Some(aullm::data::detectability::detectability(&loaded, &cfg.face, &cfg.models)?)
            } else {
                None
            };
            if a.json {
                let mut v = serde_json::to_value(&report)?;
                if let (Some(d), Some(obj)) = (&detect, v.as_object_mut()) {
                    obj.insert("detection".into(), serde_json::to_value(d)?);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", report.render());
                if let Some(d) = &detect {
                    print!("{}", d.render());
                }
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn score_command(a: ScoreArgs) -> Result<ExitCode> {
    let opts = aullm::eval::score::ScoreOptions {
        pred: a.pred,
        gt: a.gt,
        format: a.format,
        load: a.load.options(),
        threshold: a.threshold,
        thresholds: a.thresholds,
        aus: a.aus,
        paper: a.paper_compatible,
        allow_missing: a.allow_missing,
        unknown_offset: a.unknown_offset,
        kind: a.expressions,
    };
    let report = aullm::eval::score::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
