//! AU events and their sinks: the versioned event record, a non-blocking bus, and sinks that write
//! JSON lines, serve TCP and WebSocket clients, and stream to Lab Streaming Layer.
//! Owns `[events]` ([`config`]). May import: models, assets (liblsl), clock.

pub mod bus;
pub mod clock;
pub mod config;
pub mod lsl_ffi;
pub mod replay;
pub mod schema;
pub mod sink;
pub mod sinks;

pub use bus::{EventBus, SinkStats};
pub use clock::LslClock;
pub use config::EventsConfig;
pub use schema::{AuDecision, AuEvent, ExpressionKind, ModelInfo, SCHEMA, SchemaV1, TimePoint};
pub use sink::{SinkOptions, SinkSpec};

use anyhow::{Context, Result};
pub use bus::{OpenedSink, SinkCounters};
use lsl_ffi::LslLib;
use sinks::server::ServerSink;
use std::path::PathBuf;
use std::sync::Arc;

/// liblsl for `lsl:` sinks: `$LSL_LIB` when set, else the verified `liblsl` artefact.
pub fn lsl_library(models: &crate::models::ModelsConfig) -> Result<PathBuf> {
    match std::env::var_os("LSL_LIB") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => crate::assets::artefact_path(models, "liblsl")
            .context("lsl sinks need liblsl: set LSL_LIB or run `aullm models fetch liblsl`"),
    }
}

/// Opens every sink (servers listen, files are created, LSL outlets appear) and starts the bus.
/// Any failure closes what was opened and names the sink.
pub fn open_sinks(specs: &[SinkSpec], opts: &SinkOptions) -> Result<EventBus> {
    open_sinks_with(specs, opts, Vec::new())
}

/// [`open_sinks`] plus sinks opened by the caller (the live monitor's), driven by the same bus.
pub fn open_sinks_with(
    specs: &[SinkSpec],
    opts: &SinkOptions,
    extra: Vec<OpenedSink>,
) -> Result<EventBus> {
    let lsl = if specs.iter().any(|s| matches!(s, SinkSpec::Lsl(_))) {
        let path = opts.lsl_lib.as_ref().context(
            "lsl sink: no liblsl given (set LSL_LIB or run `aullm models fetch liblsl`)",
        )?;
        Some(Arc::new(LslLib::load(path)?))
    } else {
        None
    };
    let clock = lsl
        .as_deref()
        .map_or(LslClock::monotonic(), LslClock::measured);
    let mut opened = Vec::with_capacity(specs.len());
    for spec in specs {
        let counters = Arc::new(SinkCounters::default());
        let (name, sink, local_addr): (String, Box<dyn sink::Sink>, _) = match spec {
            SinkSpec::Jsonl(path) => (
                spec.to_string(),
                Box::new(sinks::jsonl::JsonlSink::open(path.as_deref())?),
                None,
            ),
            SinkSpec::Tcp(a) => {
                let s = ServerSink::open(
                    "tcp sink",
                    a.resolve(opts.bind),
                    opts,
                    counters.clone(),
                    Box::new(sinks::tcp::admit),
                )?;
                let addr = s.local_addr();
                (format!("tcp:{addr}"), Box::new(s), Some(addr))
            }
            SinkSpec::Ws(a) => {
                let s = ServerSink::open(
                    "ws sink",
                    a.resolve(opts.bind),
                    opts,
                    counters.clone(),
                    Box::new(sinks::ws::admit),
                )?;
                let addr = s.local_addr();
                (format!("ws:{addr}"), Box::new(s), Some(addr))
            }
            SinkSpec::Lsl(name) => {
                let lib = lsl.clone().expect("loaded above");
                (
                    spec.to_string(),
                    Box::new(sinks::lsl::LslSink::open(lib, name, opts, clock)?),
                    None,
                )
            }
        };
        opened.push(OpenedSink {
            name,
            sink,
            counters,
            local_addr,
        });
    }
    opened.extend(extra);
    let mut bus = EventBus::new(opened, opts.queue, clock);
    bus.pace_by_readers = opts.pace_by_readers;
    Ok(bus)
}

/// The sink options of a run: `[events]` configuration, then `--bind` and `--token` (or
/// `$AULLM_EVENTS_TOKEN`), the AU channel order, and liblsl when an `lsl:` sink is requested.
pub fn sink_options(
    events: &EventsConfig,
    models: &crate::models::ModelsConfig,
    specs: &[SinkSpec],
    bind: Option<&str>,
    token: Option<&str>,
    aus: Vec<String>,
) -> Result<SinkOptions> {
    let mut o = SinkOptions::from_config(events);
    if let Some(b) = bind {
        o.bind = b
            .parse()
            .with_context(|| format!("--bind {b:?}: expected an IP address such as 0.0.0.0"))?;
    }
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        o.token = Some(t.to_string());
    }
    o.aus = aus;
    if specs.iter().any(|s| matches!(s, SinkSpec::Lsl(_))) {
        o.lsl_lib = Some(lsl_library(models)?);
    }
    Ok(o)
}
