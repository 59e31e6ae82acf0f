//! Counters shared between the GStreamer threads and the consumer: every lost frame is counted.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated from the streaming and bus threads.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Buffers that reached the appsink.
    pub received: AtomicU64,
    /// Frames handed to the consumer.
    pub delivered: AtomicU64,
    /// Oldest frames evicted because the consumer fell behind a live source.
    pub dropped_queue: AtomicU64,
    /// Frames missing from the source itself (sequence or timestamp gaps).
    pub dropped_gap: AtomicU64,
    /// Frames GStreamer reported dropped in QoS messages.
    pub dropped_qos: AtomicU64,
    /// GStreamer warnings posted on the bus.
    pub warnings: AtomicU64,
    /// Frames passed over on purpose (`spot.flow_every` > 1: only every N-th frame is read).
    pub skipped: AtomicU64,
}

/// A point-in-time copy of [`IngestStats`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct IngestCounts {
    /// See [`IngestStats::received`].
    pub received: u64,
    /// See [`IngestStats::delivered`].
    pub delivered: u64,
    /// See [`IngestStats::dropped_queue`].
    pub dropped_queue: u64,
    /// See [`IngestStats::dropped_gap`].
    pub dropped_gap: u64,
    /// See [`IngestStats::dropped_qos`].
    pub dropped_qos: u64,
    /// See [`IngestStats::warnings`].
    pub warnings: u64,
    /// See [`IngestStats::skipped`].
    pub skipped: u64,
}

impl IngestCounts {
    /// All frames lost for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue + self.dropped_gap + self.dropped_qos
    }
}

impl IngestStats {
    /// Reads all counters.
    pub fn snapshot(&self) -> IngestCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestCounts {
            received: r(&self.received),
            delivered: r(&self.delivered),
            dropped_queue: r(&self.dropped_queue),
            dropped_gap: r(&self.dropped_gap),
            dropped_qos: r(&self.dropped_qos),
            warnings: r(&self.warnings),
            skipped: r(&self.skipped),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
