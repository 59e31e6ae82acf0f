//! `aullm run`, `aullm serve` and `aullm batch`: sinks, model and the live pipeline.

use super::*;
use anyhow::{Context, Result};
use aullm::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct PipelineArgs {
    /// Model name (folder under models/) or path (default stream.model = "default").
    #[arg(long)]
    pub(crate) model: Option<String>,
    #[command(flatten)]
    pub(crate) sinks: SinkArgs,
    /// Print a statistics line every second (stderr).
    #[arg(long)]
    pub(crate) stats: bool,
    /// Frame rate for the spotting windows (default: from the timestamps).
    #[arg(long, value_parser = parse_fps)]
    pub(crate) fps: Option<f64>,
    /// Also write the final summary as JSON here.
    #[arg(long)]
    pub(crate) summary: Option<PathBuf>,
    /// Serve the live monitor page on [IP:]PORT (a bare port listens on --bind, else 127.0.0.1;
    /// the event token applies): tracked face, spotting signal, events and counters.
    #[arg(long, value_name = "[IP:]PORT")]
    pub(crate) ui: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Video file, URI, `pipeline:NAME?k=v&...` (see `aullm pipelines`) or `gst:DESCRIPTION`.
    pub(crate) source: String,
    /// Compare the events with this SAMM-LV-layout folder's annotations (video id = file stem).
    #[arg(long)]
    pub(crate) truth: Option<PathBuf>,
    /// Write the HTML report of this run here (the batch report: spotting signal, intervals, AU
    /// timeline, apex thumbnails; with --truth, the annotation beside the events).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) report: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
}

#[derive(clap::Args)]
pub(crate) struct BatchArgs {
    /// Video files, folders (searched recursively) or list files (.txt/.lst, one path per line).
    #[arg(required_unless_present = "merge")]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Only files in folders whose name matches this glob (default: common video extensions).
    #[arg(long)]
    pub(crate) glob: Option<String>,
    /// Videos processed at once (default: one per core: 5.2x real time on 2 cores against 4.9x with one).
    #[arg(short = 'j', long)]
    pub(crate) jobs: Option<usize>,
    /// Skip videos whose outputs are complete and unchanged (checked against done.json).
    #[arg(long)]
    pub(crate) resume: bool,
    /// Process only shard I of N (1-based) of the sorted inputs, e.g. `--shard $SLURM_ARRAY_TASK_ID/8`.
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// Build one index over these shard output folders (instead of processing videos).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub(crate) merge: Vec<PathBuf>,
    /// Model name (folder under models/) or path (default stream.model).
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub(crate) summary: Option<PathBuf>,
    /// No progress display.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Source template (aravis, pylon, v4l2, rtsp, test, ...; see `aullm pipelines`).
    #[arg(long)]
    pub(crate) template: String,
    /// Template parameter KEY=VALUE (repeatable), e.g. `--param camera=Basler-1234`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub(crate) params: Vec<String>,
    /// Longest wait between reconnection attempts, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) max_backoff: f64,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
}

/// Where events go (shared by every command that produces events).
#[derive(clap::Args)]
pub(crate) struct SinkArgs {
    /// jsonl:PATH, jsonl:- (stdout), tcp:[IP:]PORT, ws:[IP:]PORT or lsl:NAME (repeatable).
    #[arg(long = "sink", value_name = "SPEC")]
    pub(crate) sinks: Vec<String>,
    /// Address for servers given a bare port (default events.bind = 127.0.0.1).
    #[arg(long)]
    pub(crate) bind: Option<String>,
    /// Bearer token TCP/WebSocket clients must present.
    #[arg(long, env = "AULLM_EVENTS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// Sinks, model and options shared by `run` and `serve`; installs the Ctrl-C handler.
pub(crate) struct Pipeline {
    pub(crate) bus: aullm::events::EventBus,
    pub(crate) model_dir: PathBuf,
    pub(crate) opts: aullm::stream::StreamOptions,
    pub(crate) summary: Option<PathBuf>,
    /// The live monitor and its server, with `--ui`.
    pub(crate) ui: Option<(
        std::sync::Arc<aullm::monitor::Monitor>,
        aullm::monitor::http::UiServer,
    )>,
}

/// Parses `--sink` specs and opens them with `--bind`/`--token` and the AU channel order.
/// `pace_by_readers` makes publishing wait for the slowest reader (replay).
pub(crate) fn open_bus(
    cfg: &Config,
    a: &SinkArgs,
    aus: Vec<String>,
    pace_by_readers: bool,
) -> Result<aullm::events::EventBus> {
    Ok(open_bus_with(cfg, a, aus, Vec::new(), pace_by_readers)?.0)
}

/// [`open_bus`] with sinks of the caller's own (the monitor's); also returns the sink options.
fn open_bus_with(
    cfg: &Config,
    a: &SinkArgs,
    aus: Vec<String>,
    extra: Vec<aullm::events::OpenedSink>,
    pace_by_readers: bool,
) -> Result<(aullm::events::EventBus, aullm::events::SinkOptions)> {
    let specs = a
        .sinks
        .iter()
        .map(|s| aullm::events::SinkSpec::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let mut opts = aullm::events::sink_options(
        &cfg.events,
        &cfg.models,
        &specs,
        a.bind.as_deref(),
        a.token.as_deref(),
        aus,
    )?;
    opts.pace_by_readers = pace_by_readers;
    let bus = aullm::events::open_sinks_with(&specs, &opts, extra)?;
    for (name, addr) in bus.local_addrs() {
        eprintln!("listening: {name} on {addr}");
        if !addr.ip().is_loopback() && opts.token.is_none() {
            eprintln!(
                "warning: {name} is open to the network without a token: anyone who can reach {addr} reads every event (set --token)"
            );
        }
    }
    Ok((bus, opts))
}

/// The `--ui` monitor: a sink for the bus, and (once the bus is open) its page server.
fn monitor_sink(
    cfg: &Config,
    ui: Option<&str>,
) -> Result<
    Option<(
        aullm::events::sink::ServerAddr,
        std::sync::Arc<aullm::monitor::Monitor>,
    )>,
> {
    let Some(v) = ui else { return Ok(None) };
    let addr = aullm::events::sink::ServerAddr::parse(v).with_context(|| {
        format!("--ui {v:?}: not a port or IP:PORT (e.g. 8080 or 0.0.0.0:8080)")
    })?;
    Ok(Some((
        addr,
        aullm::monitor::Monitor::new(cfg.spot.threshold_mads as f32),
    )))
}

/// Opens the model's sinks and the monitor; `stop` is the run's signal flag (installed by the
/// caller first, so that a signal during model loading is a clean stop too).
pub(crate) fn open_pipeline(
    cfg: &Config,
    p: PipelineArgs,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<Pipeline> {
    let model_dir =
        aullm::runtime::bundle::locate(p.model.as_deref().unwrap_or(&cfg.stream.model))?;
    let manifest = aullm::runtime::bundle::verify(&model_dir)?;
    let mut sinks = p.sinks;
    if sinks.sinks.is_empty() {
        sinks.sinks.push("jsonl:-".to_string());
    }
    let aus = manifest.aus.iter().map(|a| format!("AU{a}")).collect();
    let monitor = monitor_sink(cfg, p.ui.as_deref())?;
    let extra = monitor
        .iter()
        .map(|(_, m)| aullm::events::OpenedSink {
            name: "ui".into(),
            sink: Box::new(aullm::monitor::sink::MonitorSink(m.clone())),
            counters: Default::default(),
            local_addr: None,
        })
        .collect();
    let (bus, sink_opts) = open_bus_with(cfg, &sinks, aus, extra, false)?;
    let ui = match monitor {
        Some((addr, m)) => {
            m.watch_sinks(
                bus.counters()
                    .into_iter()
                    .filter(|(n, _)| n != "ui")
                    .collect(),
            );
            let addr = addr.resolve(sink_opts.bind);
            let server =
                aullm::monitor::http::UiServer::start(addr, m.clone(), sink_opts.token.clone())?;
            let at = server.local_addr();
            if !at.ip().is_loopback() && sink_opts.token.is_none() {
                eprintln!(
                    "warning: the monitor page on {at} is open to the network without a token (set --token)"
                );
            }
            let hint = if sink_opts.token.is_some() {
                "?token=YOUR_TOKEN"
            } else {
                ""
            };
            eprintln!("monitor: http://{at}/{hint}");
            Some((m, server))
        }
        None => None,
    };
    Ok(Pipeline {
        bus,
        model_dir,
        opts: aullm::stream::StreamOptions {
            fps: p.fps,
            stats_every: p.stats.then(|| std::time::Duration::from_secs(1)),
            stop,
            monitor: ui.as_ref().map(|(m, _)| m.clone()),
            ..aullm::stream::StreamOptions::from_config(cfg)
        },
        summary: p.summary,
        ui,
    })
}

/// The signal flag of `run` and `serve`.
fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    interrupt_flag("stopping: draining the queues")
}

/// Prints the summary (and writes it as JSON when asked); closing the bus drains the sinks first.
pub(crate) fn finish_pipeline(
    p: Pipeline,
    mut last: Option<aullm::stream::RunSummary>,
) -> Result<Option<aullm::stream::RunSummary>> {
    let sinks = p.bus.close();
    if let Some((m, server)) = p.ui {
        // Every event is in the monitor now: let a watching page fetch the last of them.
        m.finish();
        m.linger(std::time::Duration::from_secs(2));
        drop(server);
    }
    if let Some(s) = last.as_mut() {
        s.sinks = sinks;
        eprint!("{}", s.render());
        if let Some(path) = &p.summary {
            write_summary(path, &serde_json::to_string_pretty(s)?)?;
        }
    }
    Ok(last)
}

/// Writes a `--summary` file whole or not at all (a full disk keeps the previous one).
pub(crate) fn write_summary(path: &std::path::Path, json: &str) -> Result<()> {
    let mut f = aullm::atomic::AtomicFile::create(path)?;
    std::io::Write::write_all(&mut f, json.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit().map(|_| ())
}

pub(crate) fn batch_command(cfg: &Config, a: BatchArgs) -> Result<ExitCode> {
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
        write_summary(p, &serde_json::to_string_pretty(&s)?)?;
    }
    Ok(if !s.failed.is_empty() || s.index_error.is_some() {
        ExitCode::from(exit::ERROR)
    } else if !s.not_processed.is_empty() {
        ExitCode::from(exit::INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Refuses a `jsonl:` sink that names the input file itself: opening the sink truncates it.
fn refuse_sink_over_input(source: &str, sinks: &[String]) -> Result<()> {
    let Ok(input) = std::fs::canonicalize(source) else {
        return Ok(()); // not a local file (a URI, a pipeline, a camera)
    };
    for spec in sinks {
        if let Ok(aullm::events::SinkSpec::Jsonl(Some(p))) = aullm::events::SinkSpec::parse(spec)
            && std::fs::canonicalize(&p).is_ok_and(|p| p == input)
        {
            anyhow::bail!(
                "--sink {spec}: that is the input video {source}; writing events there would destroy it (choose another file)"
            );
        }
    }
    Ok(())
}

pub(crate) fn run_command(cfg: &Config, a: RunArgs) -> Result<ExitCode> {
    let stop = stop_flag();
    let source = aullm::ingest::Source::parse(&a.source)?;
    refuse_sink_over_input(&a.source, &a.pipeline.sinks.sinks)?;
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
    // A results file that exists is kept until the source and the model are known to work.
    let keeps_results = a.pipeline.sinks.sinks.iter().any(|s| {
        matches!(aullm::events::SinkSpec::parse(s),
            Ok(aullm::events::SinkSpec::Jsonl(Some(p))) if std::fs::metadata(&p).is_ok_and(|m| m.len() > 0))
    });
    if keeps_results {
        aullm::ingest::Ingest::probe(&source, &cfg.ingest)?;
    }
    let model_dir =
        aullm::runtime::bundle::locate(a.pipeline.model.as_deref().unwrap_or(&cfg.stream.model))?;
    let mut det = aullm::runtime::detector::Detector::load(&model_dir, cfg, None)?;
    let mut p = open_pipeline(cfg, a.pipeline, stop)?;
    p.opts.record = truth.is_some() || a.report.is_some();
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
    if let (Some(path), Some(r)) = (&a.report, &s.recording) {
        let t = truth
            .as_deref()
            .map(|intervals| aullm::batch::report::Truth {
                intervals,
                fps: s.fps,
            });
        let duration = r.frames.last().map_or(0.0, |f| f.timestamp) + 1.0 / s.fps.max(1e-9);
        let id = std::path::Path::new(&a.source)
            .file_stem()
            .map_or(a.source.clone(), |s| s.to_string_lossy().to_string());
        let page =
            aullm::batch::report::video_page(&id, &a.source, r, duration, &s.model, t.as_ref())?;
        let mut f = aullm::atomic::AtomicFile::create(path)?;
        std::io::Write::write_all(&mut f, page.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.commit()?;
        println!("report: {}", path.display());
    }
    if let (Some(t), Some(r)) = (&truth, &s.recording) {
        print!("{}", aullm::eval::truth::compare(&r.events, t));
    }
    Ok(
        if s.error.is_some() || s.sinks.iter().any(|k| k.error.is_some()) {
            ExitCode::from(exit::INCOMPLETE)
        } else if s.interrupted {
            ExitCode::from(exit::INTERRUPTED)
        } else {
            ExitCode::SUCCESS
        },
    )
}

pub(crate) fn serve_command(cfg: &Config, a: ServeArgs) -> Result<ExitCode> {
    let stop = stop_flag();
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
    let p = open_pipeline(cfg, a.pipeline, stop)?;
    let last = aullm::stream::serve::serve(
        cfg,
        &source,
        &p.model_dir,
        &p.bus,
        &p.opts,
        a.max_backoff,
        |s| eprint!("{}", s.render()),
    )?;
    finish_pipeline(p, last)?;
    Ok(ExitCode::SUCCESS)
}
