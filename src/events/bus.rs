//! The event bus: `publish` never blocks; each sink has a bounded queue and a thread; every event a
//! full queue refuses is counted; `close` drains every queue and returns per-sink statistics.

use super::clock::LslClock;
use super::schema::AuEvent;
use super::sink::{Encoded, Sink};
use crossbeam_channel::{Sender, bounded};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Live counters of one sink, shared by the bus, the sink's thread and its client threads.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Events offered to the sink by `publish`.
    pub published: AtomicU64,
    /// Events the sink's queue refused (full) or that arrived after the sink failed.
    pub dropped: AtomicU64,
    /// Events the sink handled (written to its file/outlet, or handed to every client's queue).
    pub delivered: AtomicU64,
    /// Clients connected now (server sinks).
    pub clients_connected: AtomicU64,
    /// Clients that were ever admitted.
    pub clients_total: AtomicU64,
    /// Clients refused: bad or missing token, failed handshake.
    pub clients_rejected: AtomicU64,
    /// Clients dropped because they did not keep up (queue full or write timed out).
    pub clients_dropped_slow: AtomicU64,
    /// Clients that went away (closed, reset).
    pub clients_disconnected: AtomicU64,
    /// Event copies written to clients.
    pub client_events_sent: AtomicU64,
    /// Event copies a client did not get because it was dropped or went away.
    pub client_events_dropped: AtomicU64,
}

/// A snapshot of one sink's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink spec (`tcp:127.0.0.1:9000` with the bound address).
    pub sink: String,
    /// Events offered by `publish`.
    pub published: u64,
    /// Events handled by the sink.
    pub delivered: u64,
    /// Events lost before the sink: queue full or sink failed.
    pub dropped: u64,
    /// Server sinks: clients connected at the time of the snapshot.
    pub clients_connected: u64,
    /// Server sinks: clients admitted in total.
    pub clients_total: u64,
    /// Server sinks: clients refused (token, handshake).
    pub clients_rejected: u64,
    /// Server sinks: clients dropped as too slow.
    pub clients_dropped_slow: u64,
    /// Server sinks: clients that disconnected.
    pub clients_disconnected: u64,
    /// Server sinks: event copies written to clients.
    pub client_events_sent: u64,
    /// Server sinks: event copies lost by dropped or departed clients.
    pub client_events_dropped: u64,
    /// The sink's error, if it failed (its later events count as dropped).
    pub error: Option<String>,
}

impl SinkStats {
    /// One human-readable line.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} published, {} delivered, {} dropped",
            self.sink, self.published, self.delivered, self.dropped
        );
        if self.clients_total + self.clients_rejected > 0
            || self.sink.starts_with("tcp:")
            || self.sink.starts_with("ws:")
        {
            s += &format!(
                "; clients {} total, {} rejected, {} dropped slow, {} disconnected; {} copies sent, {} lost",
                self.clients_total,
                self.clients_rejected,
                self.clients_dropped_slow,
                self.clients_disconnected,
                self.client_events_sent,
                self.client_events_dropped
            );
        }
        if let Some(e) = &self.error {
            s += &format!("; FAILED: {e}");
        }
        s
    }
}

struct Slot {
    name: String,
    tx: Option<Sender<Arc<Encoded>>>,
    counters: Arc<SinkCounters>,
    error: Arc<Mutex<Option<String>>>,
    worker: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
}

impl Slot {
    fn stats(&self) -> SinkStats {
        let c = &self.counters;
        SinkStats {
            sink: self.name.clone(),
            published: c.published.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            clients_connected: c.clients_connected.load(Relaxed),
            clients_total: c.clients_total.load(Relaxed),
            clients_rejected: c.clients_rejected.load(Relaxed),
            clients_dropped_slow: c.clients_dropped_slow.load(Relaxed),
            clients_disconnected: c.clients_disconnected.load(Relaxed),
            client_events_sent: c.client_events_sent.load(Relaxed),
            client_events_dropped: c.client_events_dropped.load(Relaxed),
            error: self.error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

/// A sink opened by `open_sinks`, ready to be driven by the bus.
pub struct OpenedSink {
    /// Display name (spec with the bound address).
    pub name: String,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Its counters (server sinks update the client counters from their own threads).
    pub counters: Arc<SinkCounters>,
    /// Bound address of a server sink.
    pub local_addr: Option<SocketAddr>,
}

/// Fans events out to sinks without ever blocking the caller.
pub struct EventBus {
    slots: Vec<Slot>,
    clock: LslClock,
    rejected: AtomicU64,
    /// Wait for room in each sink's queue instead of dropping (replay; see `SinkOptions`).
    pub(crate) pace_by_readers: bool,
}

impl EventBus {
    /// Starts one thread per sink, each behind a queue of `queue` events.
    pub fn new(sinks: Vec<OpenedSink>, queue: usize, clock: LslClock) -> EventBus {
        let slots = sinks
            .into_iter()
            .map(|o| {
                let (tx, rx) = bounded::<Arc<Encoded>>(queue.max(1));
                let counters = o.counters.clone();
                let error = Arc::new(Mutex::new(None));
                let err2 = error.clone();
                let mut sink = o.sink;
                let name = o.name.clone();
                let worker = std::thread::Builder::new()
                    .name(format!("sink {name}"))
                    .spawn(move || {
                        let mut failed = false;
                        for ev in rx.iter() {
                            if failed {
                                counters.dropped.fetch_add(1, Relaxed);
                                continue;
                            }
                            match sink.deliver(&ev) {
                                Ok(()) => {
                                    counters.delivered.fetch_add(1, Relaxed);
                                }
                                Err(e) => {
                                    // The sink is broken (disk full, outlet gone): say so once, count the rest.
                                    tracing::error!("sink {name} failed: {e:#}");
                                    *err2.lock().unwrap() = Some(format!("{e:#}"));
                                    counters.dropped.fetch_add(1, Relaxed);
                                    failed = true;
                                }
                            }
                        }
                        if let Err(e) = sink.finish() {
                            tracing::error!("sink {name} failed to finish: {e:#}");
                            let mut slot = err2.lock().unwrap();
                            if slot.is_none() {
                                *slot = Some(format!("{e:#}"));
                            }
                        }
                    })
                    .expect("spawn sink thread");
                Slot {
                    name: o.name,
                    tx: Some(tx),
                    counters: o.counters,
                    error,
                    worker: Some(worker),
                    local_addr: o.local_addr,
                }
            })
            .collect();
        EventBus {
            slots,
            clock,
            rejected: AtomicU64::new(0),
            pace_by_readers: false,
        }
    }

    /// Hands `ev` to every sink's queue; never waits. A full queue counts the event as dropped for that
    /// sink; an invalid event (NaN, out-of-order interval) is counted as rejected and logged.
    pub fn publish(&self, ev: AuEvent) {
        if let Err(e) = ev.validate() {
            self.rejected.fetch_add(1, Relaxed);
            tracing::warn!("event not published: {e:#}");
            return;
        }
        let json = ev.to_json();
        let enc = Arc::new(Encoded { event: ev, json });
        for s in &self.slots {
            s.counters.published.fetch_add(1, Relaxed);
            let Some(tx) = &s.tx else { continue };
            let sent = if self.pace_by_readers {
                tx.send(enc.clone()).is_ok()
            } else {
                tx.try_send(enc.clone()).is_ok()
            };
            if !sent {
                s.counters.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Events refused by `publish` because they failed validation.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// The clock that maps CLOCK_MONOTONIC capture times to LSL time for this run.
    pub fn clock(&self) -> LslClock {
        self.clock
    }

    /// Each server sink's name and bound address (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.slots
            .iter()
            .filter_map(|s| s.local_addr.map(|a| (s.name.clone(), a)))
            .collect()
    }

    /// Server clients connected now, over all sinks.
    pub fn clients_connected(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.counters.clients_connected.load(Relaxed))
            .sum()
    }

    /// Each sink's name and live counters (read by the monitor page while the run goes on).
    pub fn counters(&self) -> Vec<(String, Arc<SinkCounters>)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.counters.clone()))
            .collect()
    }

    /// A snapshot of every sink's counters.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.slots.iter().map(Slot::stats).collect()
    }

    /// Stops accepting events, lets every sink drain its queue and finish, and returns the final counts.
    pub fn close(mut self) -> Vec<SinkStats> {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        for s in &mut self.slots {
            s.tx = None; // the sink thread sees the end after the queued events
        }
        for s in &mut self.slots {
            if let Some(w) = s.worker.take()
                && w.join().is_err()
            {
                *s.error.lock().unwrap() = Some("sink thread panicked".into());
            }
        }
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        self.shutdown();
    }
}
