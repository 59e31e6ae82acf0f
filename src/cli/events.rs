//! `aullm events replay|validate`.

use super::*;
use anyhow::{Result, bail};
use aullm::config::Config;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum EventsAction {
    /// Republish recorded events (JSON lines) to sinks: jsonl, tcp, ws, lsl.
    Replay(ReplayArgs),
    /// Check that every line of a file is a valid aullm.au_event/1 event.
    Validate {
        /// JSON-lines file of events.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// JSON-lines file of events.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) sinks: SinkArgs,
    /// Events per second (default: as fast as the sinks take them).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Shift times so the first onset is now (host, monotonic and LSL clocks), keeping the spacing.
    #[arg(long)]
    pub(crate) retime: bool,
    /// Wait for this many TCP/WebSocket clients before publishing.
    #[arg(long, default_value_t = 0)]
    pub(crate) wait_clients: u64,
    /// Also write the per-sink statistics as JSON here.
    #[arg(long)]
    pub(crate) stats: Option<PathBuf>,
}

pub(crate) fn events_command(cfg: &Config, action: EventsAction) -> Result<ExitCode> {
    use aullm::events::replay;
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
    // Nothing here is live: publishing waits for the slowest reader rather than dropping.
    let bus = open_bus(cfg, &a.sinks, aus, true)?;
    // A signal stops publishing; the queues still drain so every published event reaches the sinks.
    let stop = interrupt_flag("stopping: draining the sinks");
    let session = replay::Session {
        rate: a.rate,
        retime: a.retime,
        wait_clients: a.wait_clients,
    };
    let (n, rejected, stats) = session.run(&mut events, bus, &stop);
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
        write_summary(p, &serde_json::to_string_pretty(&json)?)?;
    }
    Ok(if stats.iter().any(|s| s.error.is_some()) {
        ExitCode::from(super::exit::INCOMPLETE)
    } else if n < events.len() {
        ExitCode::from(super::exit::INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}
