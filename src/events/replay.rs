//! Reading recorded events (JSON lines) and republishing them to sinks, optionally re-timed to now
//! and paced, e.g. to play a recorded session into LSL.

use super::bus::EventBus;
use super::clock::LslClock;
use super::schema::AuEvent;
use crate::clock::{mono_now_ns, realtime_now_ns};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The longest line read as an event (an event is a few kB; `/dev/zero` has no line end at all).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads and validates every event of a JSON-lines file (blank lines skipped); errors name file:line.
pub fn read_events(path: &Path) -> Result<Vec<AuEvent>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for i in 1.. {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {} line {i}", path.display()))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            anyhow::bail!(
                "{} line {i}: longer than {MAX_LINE_BYTES} bytes, not an event line",
                path.display()
            );
        }
        let line = std::str::from_utf8(&buf)
            .with_context(|| format!("{} line {i}: not UTF-8 text", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = AuEvent::from_json(line.trim_end_matches(['\n', '\r']))
            .with_context(|| format!("{} line {i}", path.display()))?;
        out.push(ev);
    }
    Ok(out)
}

/// Shifts every time point so the first event's onset is now (host and monotonic clocks), keeping
/// the recorded spacing; `lsl_s` is recomputed with `clock`.
pub fn retime(events: &mut [AuEvent], clock: &LslClock) {
    let Some(first) = events.first() else { return };
    let dm = mono_now_ns() - first.onset.mono_ns;
    let dh = realtime_now_ns() - first.onset.host_ns;
    for ev in events {
        for t in [&mut ev.onset, &mut ev.apex, &mut ev.offset] {
            t.mono_ns += dm;
            t.host_ns += dh;
            t.lsl_s = clock.lsl_s(t.mono_ns);
        }
    }
}

/// Publishes `events` in order, at `rate` events per second if given, until done or `stop` is set.
/// Returns how many were published.
pub fn replay(events: &[AuEvent], bus: &EventBus, rate: Option<f64>, stop: &AtomicBool) -> usize {
    let start = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        if let Some(hz) = rate.filter(|r| *r > 0.0) {
            let due = start + Duration::from_secs_f64(i as f64 / hz);
            while Instant::now() < due {
                if stop.load(Relaxed) {
                    return i;
                }
                std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        if stop.load(Relaxed) {
            return i;
        }
        bus.publish(ev.clone());
    }
    events.len()
}

/// A replay to an open bus: wait for clients, optionally re-time, publish paced, close.
#[derive(Debug, Clone, Copy, Default)]
pub struct Session {
    /// Events per second (None: as fast as the sinks take them).
    pub rate: Option<f64>,
    /// Shift times so the first onset is now (see [`retime`]).
    pub retime: bool,
    /// TCP/WebSocket clients to wait for before publishing.
    pub wait_clients: u64,
}

impl Session {
    /// Publishes `events` to `bus` until done or `stop`, then closes the bus (every published
    /// event reaches the sinks). Returns (events published, events rejected, per-sink stats).
    pub fn run(
        &self,
        events: &mut [AuEvent],
        bus: EventBus,
        stop: &AtomicBool,
    ) -> (usize, u64, Vec<super::SinkStats>) {
        while bus.clients_connected() < self.wait_clients && !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.retime {
            retime(events, &bus.clock());
        }
        let n = replay(events, &bus, self.rate, stop);
        let rejected = bus.rejected();
        (n, rejected, bus.close())
    }
}
