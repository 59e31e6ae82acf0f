//! The live monitor behind `--ui`: one self-contained page showing what the pipeline sees while it
//! runs — the tracked face and its aligned crop, the spotting signal against its threshold, each
//! event as it is published, and the counters a lab watches.
//!
//! The camera path never waits for it: [`feed::Feed`] hands copies over a few times a second with
//! `try_lock` and keeps them for the next try when a reader holds the lock. The HTTP threads
//! ([`http`]) read those snapshots, so a slow or stalled browser loses updates, not frames. Events
//! reach it as one more sink on the bus ([`sink`]).
//!
//! May import: events, ingest. Imported by stream/ and the command line only.

pub mod feed;
pub mod http;
pub mod sink;

use crate::events::bus::SinkCounters;
use crate::ingest::IngestCounts;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of spotting signal the page plots.
pub const SIGNAL_SECONDS: f64 = 10.0;
/// Events the monitor keeps for pages that join late.
const EVENTS_KEPT: usize = 500;
/// Most events one poll returns (a page catching up asks again).
const EVENTS_PER_POLL: usize = 100;

/// A gray image handed to the page (the face region or the aligned crop).
#[derive(Debug, Clone, Default)]
pub struct Gray {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Packed rows.
    pub pixels: Vec<u8>,
}

/// One tracked face on the latest frame.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FaceBox {
    /// Track id.
    pub id: u32,
    /// `[l, t, r, b]` in frame pixels.
    pub bbox: [f32; 4],
    /// Whether the detector confirmed it on this frame.
    pub detected: bool,
    /// Score of the latest detection.
    pub confidence: f32,
}

/// What the camera path last handed over.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraView {
    /// Source label.
    pub source: String,
    /// Frame rate the spotter uses.
    pub fps: f64,
    /// Frame width and height.
    pub frame_size: [u32; 2],
    /// Presentation time of the latest frame, s.
    pub stream_s: f64,
    /// Frames processed by the face path (this connection).
    pub frames: u64,
    /// Frames per second arriving from the source, over the last handover.
    pub fps_in: f64,
    /// Frames per second processed, over the last handover.
    pub fps_processed: f64,
    /// Ingest counters (drops by cause).
    pub ingest: IngestCounts,
    /// MJPEG frames that could not be decoded.
    pub corrupt_frames: u64,
    /// Clips waiting for inference.
    pub clip_queue: usize,
    /// Room in the clip queue.
    pub clip_capacity: usize,
    /// Clips dropped because the queue was full.
    pub clips_dropped: u64,
    /// Intervals spotted.
    pub intervals: u64,
    /// Faces on the latest frame.
    pub faces: Vec<FaceBox>,
    /// Bumped whenever the images change.
    pub image_seq: u64,
    /// The first face's region of the frame (downscaled).
    #[serde(skip)]
    pub face: Option<Gray>,
    /// The first face's aligned crop.
    #[serde(skip)]
    pub crop: Option<Gray>,
}

/// Shared between the camera path, the event sink and the HTTP threads.
pub struct Monitor {
    view: Mutex<CameraView>,
    signal: Mutex<VecDeque<[f32; 2]>>,
    events: Mutex<EventLog>,
    sinks: Mutex<Vec<(String, Arc<SinkCounters>)>>,
    threshold: f32,
    started: Instant,
    finished: AtomicBool,
    polls: AtomicU64,
    polls_after_finish: AtomicU64,
}

/// The latest events with their running index.
#[derive(Default)]
struct EventLog {
    /// Events received so far.
    total: u64,
    /// The last `EVENTS_KEPT` as JSON text.
    recent: VecDeque<String>,
}

impl Monitor {
    /// A monitor whose signal plot draws the spotting threshold at `threshold` (noise spreads).
    pub fn new(threshold: f32) -> Arc<Monitor> {
        Arc::new(Monitor {
            view: Mutex::new(CameraView::default()),
            signal: Mutex::new(VecDeque::new()),
            events: Mutex::new(EventLog::default()),
            sinks: Mutex::new(Vec::new()),
            threshold,
            started: Instant::now(),
            finished: AtomicBool::new(false),
            polls: AtomicU64::new(0),
            polls_after_finish: AtomicU64::new(0),
        })
    }

    /// The sinks whose delivery and client counters the page shows.
    pub fn watch_sinks(&self, sinks: Vec<(String, Arc<SinkCounters>)>) {
        *lock(&self.sinks) = sinks;
    }

    /// Records one published event (its JSON line).
    pub fn event(&self, json: &str) {
        let mut log = lock(&self.events);
        log.total += 1;
        log.recent.push_back(json.to_string());
        if log.recent.len() > EVENTS_KEPT {
            log.recent.pop_front();
        }
    }

    /// Marks the run as over: the page says so once it has fetched the last state.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// After [`Monitor::finish`]: waits (at most `max`) until a page that was watching has fetched
    /// the final state, so the last events reach it before the process exits.
    pub fn linger(&self, max: Duration) {
        if self.polls.load(Ordering::SeqCst) == 0 {
            return;
        }
        let until = Instant::now() + max;
        while self.polls_after_finish.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The camera's handover: never waits; false when a reader held the lock (try again later).
    pub(crate) fn try_hand_over(
        &self,
        view: impl FnOnce(&mut CameraView),
        signal: &mut Vec<[f32; 2]>,
    ) -> bool {
        let (Ok(mut v), Ok(mut s)) = (self.view.try_lock(), self.signal.try_lock()) else {
            return false;
        };
        view(&mut v);
        s.extend(signal.drain(..));
        let newest = s.back().map_or(0.0, |p| p[0]);
        while s
            .front()
            .is_some_and(|p| (newest - p[0]) as f64 > SIGNAL_SECONDS)
        {
            s.pop_front();
        }
        true
    }

    /// The page's state as JSON: counters, faces, the signal, and the events after index `after`.
    pub fn state_json(&self, after: u64) -> String {
        let finished = self.finished.load(Ordering::SeqCst);
        self.polls.fetch_add(1, Ordering::SeqCst);
        let view = lock(&self.view).clone();
        let signal: Vec<[f32; 2]> = lock(&self.signal).iter().copied().collect();
        let (total, events) = {
            let log = lock(&self.events);
            let first = log.total - log.recent.len() as u64;
            let skip = after.saturating_sub(first) as usize;
            let evs: Vec<String> = log
                .recent
                .iter()
                .skip(skip)
                .take(EVENTS_PER_POLL)
                .cloned()
                .collect();
            (log.total, (first.max(after), evs))
        };
        let sinks: Vec<serde_json::Value> = lock(&self.sinks)
            .iter()
            .map(|(name, c)| {
                let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
                serde_json::json!({
                    "sink": name,
                    "published": r(&c.published),
                    "delivered": r(&c.delivered),
                    "dropped": r(&c.dropped),
                    "clients": r(&c.clients_connected),
                })
            })
            .collect();
        let mut s = String::with_capacity(4096 + events.1.iter().map(String::len).sum::<usize>());
        let _ = write!(
            s,
            "{{\"finished\":{finished},\"uptime_s\":{:.1},\"threshold\":{},\"view\":{},\"sinks\":{},\"signal\":{},\"events_total\":{total},\"events_from\":{},\"events\":[{}]}}",
            self.started.elapsed().as_secs_f64(),
            self.threshold,
            serde_json::to_string(&view).unwrap_or_else(|_| "null".into()),
            serde_json::Value::Array(sinks),
            serde_json::to_string(&signal).unwrap_or_else(|_| "[]".into()),
            events.0,
            events.1.join(",")
        );
        if finished {
            self.polls_after_finish.fetch_add(1, Ordering::SeqCst);
        }
        s
    }

    /// The face region (`face`) or the aligned crop, when the camera has handed one over.
    pub fn image(&self, which: ImageKind) -> Option<Gray> {
        let v = lock(&self.view);
        match which {
            ImageKind::Face => v.face.clone(),
            ImageKind::Crop => v.crop.clone(),
        }
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// The two images the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The face's region of the frame.
    Face,
    /// The aligned crop the model reads.
    Crop,
}

/// A poisoned lock still holds usable monitor data (a display, not a record): take it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: &Monitor, after: u64) -> serde_json::Value {
        serde_json::from_str(&m.state_json(after)).expect("state is JSON")
    }

    #[test]
    fn events_are_returned_after_the_index_a_page_has_seen() {
        let m = Monitor::new(7.0);
        for k in 0..3 {
            m.event(&format!("{{\"seq\":{k}}}"));
        }
        let s = parse(&m, 0);
        assert_eq!(s["events_total"], 3);
        assert_eq!(s["events"].as_array().unwrap().len(), 3);
        let s = parse(&m, 2);
        assert_eq!(s["events_from"], 2);
        assert_eq!(s["events"][0]["seq"], 2);
        assert_eq!(parse(&m, 3)["events"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn a_late_page_gets_the_kept_events_and_where_they_start() {
        let m = Monitor::new(7.0);
        for k in 0..(EVENTS_KEPT + 50) {
            m.event(&format!("{{\"seq\":{k}}}"));
        }
        let s = parse(&m, 0);
        assert_eq!(s["events_from"], 50);
        assert_eq!(s["events"].as_array().unwrap().len(), EVENTS_PER_POLL);
        assert_eq!(s["events"][0]["seq"], 50);
    }

    #[test]
    fn handover_fails_instead_of_waiting_and_keeps_the_signal() {
        let m = Monitor::new(7.0);
        let mut pending = vec![[0.0, 1.0], [0.005, 2.0]];
        let held = m.view.lock().unwrap();
        assert!(!m.try_hand_over(|v| v.frames = 1, &mut pending));
        assert_eq!(
            pending.len(),
            2,
            "nothing lost while a reader holds the lock"
        );
        drop(held);
        assert!(m.try_hand_over(|v| v.frames = 1, &mut pending));
        assert!(pending.is_empty());
        let s = parse(&m, 0);
        assert_eq!(s["view"]["frames"], 1);
        assert_eq!(s["signal"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_signal_keeps_the_last_seconds_only() {
        let m = Monitor::new(7.0);
        let mut pending: Vec<[f32; 2]> = (0..3000).map(|k| [k as f32 / 100.0, 0.0]).collect();
        assert!(m.try_hand_over(|_| {}, &mut pending));
        let s = parse(&m, 0);
        let sig = s["signal"].as_array().unwrap();
        let first = sig[0][0].as_f64().unwrap();
        let last = sig[sig.len() - 1][0].as_f64().unwrap();
        assert!(last - first <= SIGNAL_SECONDS + 1e-3, "{first}..{last}");
    }
}
