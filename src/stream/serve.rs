//! `aullm serve`: the live pipeline on a camera that may go away. The source is opened again with
//! exponential back-off (reset once a connection has run for a minute); the sinks stay up and the
//! events keep one numbering across reconnections.

use super::{RunSummary, StreamOptions};
use crate::config::Config;
use crate::events::EventBus;
use crate::ingest::Source;
use crate::runtime::detector::{Detector, DetectorSlot};
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A connection that ran this long resets the back-off: the camera came back.
const STABLE_S: f64 = 60.0;

/// Runs `source` into `bus` until `opts.stop` is raised, reconnecting after each end of stream
/// or error; waits 1 s, then twice as long each time up to `max_backoff_s`. Returns the last
/// connection's summary. `on_summary` sees each connection's summary as it ends.
pub fn serve(
    cfg: &Config,
    source: &Source,
    model_dir: &Path,
    bus: &EventBus,
    opts: &StreamOptions,
    max_backoff_s: f64,
    mut on_summary: impl FnMut(&RunSummary),
) -> Result<Option<RunSummary>> {
    let label = source.label();
    let mut seq = 0;
    let mut backoff = 1.0f64;
    let mut last = None;
    let stopped = || opts.stop.load(Ordering::SeqCst);
    // Loaded once: the model does not change when the camera comes back (and reloading it on
    // every reconnection grew the process by tens of MB per minute in the soak).
    let mut det = Detector::load(model_dir, cfg, None)?;
    while !stopped() {
        let started = Instant::now();
        match super::run(
            cfg,
            source,
            &mut DetectorSlot::Ready(&mut det),
            bus,
            opts,
            &mut seq,
        ) {
            Ok(s) => {
                on_summary(&s);
                let clean = s.error.is_none();
                last = Some(s);
                if clean && stopped() {
                    break;
                }
            }
            Err(e) => eprintln!("source {label}: {e:#}"),
        }
        // Each connection's threads (GStreamer's, inference) leave freed frame buffers in their own
        // malloc arenas; without a trim the process grows by a frame queue per new arena (soak).
        release_freed_memory();
        if started.elapsed().as_secs_f64() > STABLE_S {
            backoff = 1.0;
        }
        eprintln!("reconnecting to {label} in {backoff:.0} s");
        let until = Instant::now() + Duration::from_secs_f64(backoff);
        while Instant::now() < until && !stopped() {
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2.0).min(max_backoff_s);
    }
    Ok(last)
}

/// Returns memory freed by finished connections to the system (glibc keeps it per arena).
fn release_freed_memory() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
