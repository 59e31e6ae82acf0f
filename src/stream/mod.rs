//! The live pipeline behind `aullm run` and `aullm serve`:
//!
//! GStreamer streaming thread → frame queue (drop-oldest when live) → face/align/spot thread (this
//! module's caller) → bounded clip queue → inference worker (ONNX Runtime front-end + candle
//! reasoner, batching the clips that wait) → event bus → sinks.
//!
//! The camera path never waits on inference or sinks: a full clip queue drops the clip (counted), a
//! slow sink drops events (counted by the bus). End of stream and Ctrl-C drain every queue.
//!
//! Holds: the camera-path driver every video-reading command uses ([`camera`]), per-face clip
//! assembly ([`clips`]), the inference worker ([`worker`]), the reconnecting camera ([`serve`]).
//! May import: config, ingest, face, spot, clip, runtime, events, frame, clock. Never train/.

pub mod camera;
pub mod clips;
pub mod serve;
pub mod worker;

use crate::clock::{process_cpu_s, thread_cpu_s};
use crate::config::Config;
use crate::events::{EventBus, SinkStats};
use crate::face::FaceTracker;
use crate::ingest::{Ingest, IngestCounts, Source};
use crate::runtime::detector::DetectorSlot;
use crate::spot::Spotter;
use anyhow::{Context, Result};
use camera::{DriveOptions, Flow};
use clips::{ClipJob, FaceState, FrameTimes};
use crossbeam_channel::TrySendError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use worker::{EventOut, WorkerReport};

/// How a run is driven (the `[stream]` configuration and command-line flags).
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Frame rate for the spotting windows (None: from the timestamps).
    pub fps: Option<f64>,
    /// Clips waiting for inference; a full queue drops the newest clip (counted).
    pub clip_queue: usize,
    /// Most clips per model call.
    pub max_batch: usize,
    /// Seconds of aligned crops kept per face.
    pub ring_s: f64,
    /// Print a statistics line this often.
    pub stats_every: Option<Duration>,
    /// Set to stop (Ctrl-C): the source ends at the next frame and the queues drain.
    pub stop: Arc<AtomicBool>,
    /// Keep every event, a row per face per frame, and each event's apex crop (batch reports).
    pub record: bool,
    /// Offline processing of a recording: frame times come from the stream (`host_ns` = this
    /// origin + presentation time, `mono_ns` = presentation time), so outputs are reproducible;
    /// latency is not meaningful and is written as 0.
    pub offline_origin_ns: Option<i64>,
    /// Position in the source so far, frames (progress display).
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// MJPEG frames are decoded (by region) in GStreamer's thread, beside the face path; false
    /// decodes them on the face thread only, which costs less CPU when every core is busy anyway
    /// (a batch with a worker per core).
    pub decode_ahead: bool,
    /// The live monitor (`--ui`) the camera path hands snapshots to.
    pub monitor: Option<Arc<crate::monitor::Monitor>>,
}

impl StreamOptions {
    /// Options from `[stream]` with nothing recorded.
    pub fn from_config(cfg: &Config) -> StreamOptions {
        StreamOptions {
            fps: None,
            clip_queue: cfg.stream.clip_queue,
            max_batch: cfg.stream.max_batch,
            ring_s: cfg.stream.ring_s,
            stats_every: None,
            stop: Arc::new(AtomicBool::new(false)),
            record: false,
            offline_origin_ns: None,
            progress: None,
            decode_ahead: true,
            monitor: None,
        }
    }
}

/// One face on one frame (the per-frame CSV).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameRow {
    /// Source frame number.
    pub frame: u64,
    /// Face track id.
    pub face_id: u32,
    /// Seconds from the first frame.
    pub timestamp: f64,
    /// Detector confidence of the track.
    pub confidence: f32,
    /// Whether a face is tracked on this frame (rows with `face_id` 0 and `success` false mark
    /// frames without one).
    pub success: bool,
    /// Whether the detector confirmed the face on this frame (else the tracker carried it).
    pub detected: bool,
    /// Spotting signal (largest region motion in noise spreads), when the spotter has one for this frame.
    pub signal: Option<f32>,
}

/// What a recorded run kept.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Events in publication order.
    pub events: Vec<crate::events::AuEvent>,
    /// Per face per frame.
    pub frames: Vec<FrameRow>,
    /// Apex crop of each event (by event seq), `crop_size`² gray.
    pub apex_crops: BTreeMap<u64, Vec<u8>>,
    /// Side of the crops.
    pub crop_size: usize,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub median_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `v` (nearest rank).
    pub fn of(v: &[f64]) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Latency {
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: *s.last().unwrap_or(&0.0),
        }
    }
}

/// CPU seconds per stage and their share of one core over the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuShare {
    /// Wall seconds of the run.
    pub wall_s: f64,
    /// Face detection, tracking, alignment and spotting (the camera path).
    pub face_spot_s: f64,
    /// Front-end and reasoner.
    pub inference_s: f64,
    /// Everything else in the process: GStreamer decoding/streaming threads and sinks.
    pub ingest_and_sinks_s: f64,
}

/// What a run did; every loss is here.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Source label.
    pub source: String,
    /// Model id and where its front-end ran.
    pub model: String,
    /// ONNX Runtime provider of the front-end.
    pub execution_provider: String,
    /// Frame rate used by the spotter.
    pub fps: f64,
    /// Frames processed by the face/spot thread.
    pub frames: u64,
    /// Frames per wall second.
    pub frames_per_s: f64,
    /// Ingest counters (frames dropped by cause).
    pub ingest: IngestCounts,
    /// Faces seen (track ids).
    pub faces: u64,
    /// Intervals the spotter decided.
    pub intervals: u64,
    /// Clips dropped because the inference queue was full.
    pub clips_dropped: u64,
    /// Clips whose onset was older than the crop ring.
    pub clips_truncated: u64,
    /// MJPEG frames whose data could not be decoded: skipped, as GStreamer's decoder skips them.
    pub corrupt_frames: u64,
    /// Events published.
    pub events: u64,
    /// Event latency: offset frame capture → published.
    pub latency: Latency,
    /// CPU per stage.
    pub cpu: CpuShare,
    /// Per-sink delivery.
    pub sinks: Vec<SinkStats>,
    /// The error that ended the stream or the worker, if any.
    pub error: Option<String>,
    /// A recorded source stopped by a signal before its end (a live source's stop is its end).
    pub interrupted: bool,
    /// Intervals still rising at the stop: dropped (they had no offset), not cut short.
    pub cut_at_stop: u64,
    /// Events, frame rows and apex crops, when `StreamOptions::record` was set.
    #[serde(skip)]
    pub recording: Option<Recording>,
}

impl RunSummary {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        let c = &self.cpu;
        // With a stride the count is of the frames read; say how many were passed over on purpose.
        let passed = match self.ingest.skipped {
            0 => String::new(),
            n => format!(" read, {n} passed over (spot.flow_every)"),
        };
        let mut s = format!(
            "{}: {} frames{passed} at {:.1} fps ({:.0} frames/s processed), dropped {} (queue {}, gaps {}, QoS {}), corrupt {}, faces {}\n\
             intervals {}, clips dropped {} (queue full), truncated {}, events {} (latency median {:.1} ms, p99 {:.1} ms)\n\
             model {} on {}; CPU over {:.1} s: face+spot {:.0}%, inference {:.0}%, ingest+sinks {:.0}% of one core\n",
            self.source,
            self.frames,
            self.fps,
            self.frames_per_s,
            self.ingest.dropped(),
            self.ingest.dropped_queue,
            self.ingest.dropped_gap,
            self.ingest.dropped_qos,
            self.corrupt_frames,
            self.faces,
            self.intervals,
            self.clips_dropped,
            self.clips_truncated,
            self.events,
            self.latency.median_ms,
            self.latency.p99_ms,
            self.model,
            self.execution_provider,
            c.wall_s,
            100.0 * c.face_spot_s / c.wall_s.max(1e-9),
            100.0 * c.inference_s / c.wall_s.max(1e-9),
            100.0 * c.ingest_and_sinks_s / c.wall_s.max(1e-9),
        );
        for k in &self.sinks {
            s.push_str(&k.render());
            s.push('\n');
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("error: {e}\n"));
        }
        if self.interrupted {
            s.push_str(&format!(
                "interrupted: stopped by a signal before the end of the input; every event computed was published, {} interval(s) still rising at the stop dropped\n",
                self.cut_at_stop
            ));
        }
        s
    }
}

/// The event bus as the worker's output.
struct BusOut<'a>(&'a EventBus);

impl EventOut for BusOut<'_> {
    fn publish(&mut self, ev: crate::events::AuEvent) {
        self.0.publish(ev);
    }
    fn clock(&self) -> crate::events::LslClock {
        self.0.clock()
    }
}

/// Runs `source` through the whole pipeline into `bus`, numbering events from `*seq`.
pub fn run(
    cfg: &Config,
    source: &Source,
    det: &mut DetectorSlot<'_>,
    bus: &EventBus,
    opts: &StreamOptions,
    seq: &mut u64,
) -> Result<RunSummary> {
    let t0 = Instant::now();
    let cpu0 = process_cpu_s();
    // The detector's session (8 ms; the first one waits for ONNX Runtime) is made while the
    // pipeline starts and prerolls (13-20 ms, mostly waiting): the two used to run in turn.
    let (tracker, ingest) = std::thread::scope(|s| {
        let tracker = std::thread::Builder::new()
            .name("aullm-tracker-init".into())
            .spawn_scoped(s, || {
                FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models)
            });
        let ingest = Ingest::open(source, &cfg.ingest);
        let tracker = match tracker {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the face tracker's set-up panicked"))),
            Err(_) => FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models),
        };
        (tracker, ingest)
    });
    let mut tracker = tracker?;
    let mut ingest = ingest?;
    let model = det.name();
    let frames_per_clip = det.frames_per_clip();
    let (tx, rx) = crossbeam_channel::bounded::<ClipJob>(opts.clip_queue.max(1));
    let label = source.label();
    let batching = if ingest.is_live() {
        worker::Batching::Waiting(opts.max_batch)
    } else {
        worker::Batching::Fixed(opts.max_batch)
    };
    std::thread::scope(|s| -> Result<RunSummary> {
        let worker = std::thread::Builder::new()
            .name("aullm-infer".into())
            .spawn_scoped(s, {
                let label = label.clone();
                let seq = &mut *seq;
                let record = opts.record;
                let offline = opts.offline_origin_ns.is_some();
                move || {
                    let mut out = BusOut(bus);
                    // A model still loading is waited for here; the camera path goes on.
                    match det.get() {
                        Ok(det) => {
                            worker::run(det, rx, &mut out, &label, batching, seq, record, offline)
                        }
                        Err(e) => WorkerReport {
                            error: Some(format!("{e:#}")),
                            ..WorkerReport::default()
                        },
                    }
                }
            })
            .context("cannot start the inference thread")?;
        let cam = camera_path(cfg, &mut ingest, &mut tracker, tx, opts, frames_per_clip);
        let rep: WorkerReport = worker.join().unwrap_or_else(|_| WorkerReport {
            error: Some("the inference thread panicked".into()),
            ..WorkerReport::default()
        });
        let mut cam = cam?;
        let wall = t0.elapsed().as_secs_f64();
        let recording = opts.record.then(|| Recording {
            events: rep.kept.clone(),
            frames: std::mem::take(&mut cam.rows),
            apex_crops: rep.apex_crops.clone(),
            crop_size: cfg.align.size as usize,
        });
        let total_cpu = process_cpu_s() - cpu0;
        Ok(RunSummary {
            source: label.clone(),
            model: model.clone(),
            execution_provider: rep.provider.clone(),
            fps: cam.fps,
            frames: cam.frames,
            frames_per_s: cam.frames as f64 / wall.max(1e-9),
            ingest: ingest.counts(),
            faces: cam.faces,
            intervals: cam.intervals,
            clips_dropped: cam.clips_dropped,
            clips_truncated: cam.clips_truncated,
            corrupt_frames: cam.corrupt_frames,
            events: rep.events,
            latency: Latency::of(&rep.latencies_ms),
            cpu: CpuShare {
                wall_s: wall,
                face_spot_s: cam.cpu_s,
                inference_s: rep.cpu_s,
                ingest_and_sinks_s: (total_cpu - cam.cpu_s - rep.cpu_s).max(0.0),
            },
            sinks: bus.stats(),
            error: cam.error.or(rep.error),
            interrupted: cam.stopped && !ingest.is_live(),
            cut_at_stop: cam.cut_at_stop,
            recording,
        })
    })
}

/// What the camera path counted.
#[derive(Debug, Default)]
struct CameraReport {
    fps: f64,
    frames: u64,
    faces: u64,
    intervals: u64,
    clips_dropped: u64,
    clips_truncated: u64,
    corrupt_frames: u64,
    cpu_s: f64,
    error: Option<String>,
    rows: Vec<FrameRow>,
    stopped: bool,
    cut_at_stop: u64,
}

/// The face/align/spot loop on the calling thread (the camera-path driver with the clip stage);
/// closes the clip queue when the stream ends.
fn camera_path(
    cfg: &Config,
    ingest: &mut Ingest,
    tracker: &mut FaceTracker,
    tx: crossbeam_channel::Sender<ClipJob>,
    opts: &StreamOptions,
    frames_per_clip: usize,
) -> Result<CameraReport> {
    let cpu0 = thread_cpu_s();
    let size = cfg.align.size as usize;
    let mut rep = CameraReport::default();
    let mut faces: BTreeMap<u32, FaceState> = BTreeMap::new();
    let mut last_stats = Instant::now();
    // A recording is never dropped from: a full clip queue waits for inference instead.
    let blocking = !ingest.is_live();
    let ingest_stats = ingest.stats();
    let drive_opts = DriveOptions {
        fps: opts.fps,
        decode_ahead: opts.decode_ahead,
        stop: Some(opts.stop.clone()),
        max_frames: None,
        face_image_every: opts
            .monitor
            .as_ref()
            .map(|_| crate::monitor::feed::HANDOVER),
        // Frames the spotter passes over are not decoded or tracked either (clips take the
        // nearest kept frame at or before each sampled position).
        stride: camera::Stride::Spotter(cfg.spot.flow_every),
    };
    let mut feed = opts.monitor.clone().map(crate::monitor::feed::Feed::new);
    let label = ingest.label().to_string();
    let mut corrupt_seen = 0u64;
    let driven = camera::drive(ingest, tracker, &drive_opts, |f| {
        // The windows need the frame rate: on a file without a declared rate, spotting starts
        // on the second frame.
        let Some(rate) = f.fps else {
            return Ok(Flow::Continue);
        };
        let times = match opts.offline_origin_ns {
            Some(origin) => FrameTimes {
                seq: f.seq,
                stream_s: f.stream_s(),
                host_ns: origin + f.rel_ns as i64,
                mono_ns: f.rel_ns as i64,
            },
            None => FrameTimes {
                seq: f.seq,
                stream_s: f.stream_s(),
                host_ns: f.host_ns as i64,
                mono_ns: f.mono_ns as i64,
            },
        };
        if let Some(p) = &opts.progress {
            // Position in the source (frames passed over by a stride count as done).
            p.store(f.seq + 1, Ordering::Relaxed);
        }
        if opts.record && f.faces.is_empty() {
            rep.rows.push(FrameRow {
                frame: times.seq,
                face_id: 0,
                timestamp: times.stream_s,
                confidence: 0.0,
                success: false,
                detected: false,
                signal: None,
            });
        }
        corrupt_seen += f.corrupt as u64;
        let first = f.faces.iter().map(|o| o.track_id).min();
        let boxes: Vec<crate::monitor::FaceBox> = match &feed {
            Some(_) => f
                .faces
                .iter()
                .map(|o| crate::monitor::FaceBox {
                    id: o.track_id,
                    bbox: o.bbox,
                    detected: o.detected,
                    confidence: o.confidence,
                })
                .collect(),
            None => Vec::new(),
        };
        let mut first_crop = None;
        for o in f.faces {
            let (id, confidence, detected) = (o.track_id, o.confidence, o.detected);
            let st = match faces.entry(o.track_id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    rep.faces += 1;
                    let capacity = (opts.ring_s * rate).ceil() as usize;
                    e.insert(FaceState::new(
                        Spotter::new(&cfg.spot, rate, size)?,
                        capacity,
                    ))
                }
            };
            let is_first = Some(id) == first;
            if is_first
                && let Some(feed) = feed.as_mut()
                && feed.due()
            {
                first_crop = Some(crate::monitor::Gray {
                    width: size,
                    height: size,
                    pixels: o.crop.clone(),
                });
            }
            let before = st.signal();
            for job in st.push(o.track_id, times, o.crop, size, frames_per_clip)? {
                send(&tx, job, &mut rep, blocking);
            }
            if is_first
                && let Some(feed) = feed.as_mut()
                && let Some((frame, v)) = st.signal()
                && before.map(|b| b.0) != Some(frame)
            {
                // The signal's frame trails the newest frame by the spotter's lag.
                let t = times.stream_s - times.seq.saturating_sub(frame) as f64 / rate;
                feed.signal(t, v);
            }
            if opts.record {
                rep.rows.push(FrameRow {
                    frame: times.seq,
                    face_id: id,
                    timestamp: times.stream_s,
                    confidence,
                    success: true,
                    detected,
                    signal: st.signal().filter(|(f, _)| *f == times.seq).map(|(_, v)| v),
                });
            }
        }
        if let Some(feed) = feed.as_mut()
            && feed.due()
        {
            let c = ingest_stats.snapshot();
            let (w, h, stream_s) = (f.width, f.height, times.stream_s);
            let (intervals, clips_dropped, queued) = (rep.intervals, rep.clips_dropped, tx.len());
            // Frames a stride passes over are not waiting for the face path: "in" counts the
            // frames it has to read, so the two rates agree whenever it keeps up.
            let wanted = c.received.saturating_sub(c.skipped);
            feed.hand_over(f.index + 1, wanted, f.face_image, first_crop, |v| {
                if v.source != label {
                    v.source = label.clone();
                }
                v.fps = rate;
                v.frame_size = [w, h];
                v.stream_s = stream_s;
                v.ingest = c;
                v.clip_queue = queued;
                v.clip_capacity = opts.clip_queue.max(1);
                v.clips_dropped = clips_dropped;
                v.intervals = intervals;
                v.corrupt_frames = corrupt_seen;
                v.faces = boxes;
            });
        }
        if let Some(every) = opts.stats_every
            && last_stats.elapsed() >= every
        {
            last_stats = Instant::now();
            let c = ingest_stats.snapshot();
            eprintln!(
                "[stats] frames {} dropped {} (queue {}, gaps {}, QoS {}) faces {} intervals {} clips queued {} dropped {}",
                f.index + 1,
                c.dropped(),
                c.dropped_queue,
                c.dropped_gap,
                c.dropped_qos,
                faces.len(),
                rep.intervals,
                tx.len(),
                rep.clips_dropped
            );
        }
        Ok(Flow::Continue)
    })?;
    for (id, st) in faces.iter_mut() {
        for job in st.finish(*id, size, frames_per_clip, driven.stopped) {
            send(&tx, job, &mut rep, blocking);
        }
        rep.cut_at_stop += st.cut();
    }
    rep.stopped = driven.stopped;
    drop(tx); // the worker drains what is queued, then stops
    rep.frames = driven.frames;
    rep.corrupt_frames = driven.corrupt_frames;
    rep.error = driven.error;
    rep.fps = driven.fps.unwrap_or(0.0);
    rep.cpu_s = thread_cpu_s() - cpu0;
    Ok(rep)
}

/// Hands a clip to inference: live, without waiting (a full queue drops it, counted); from a
/// recording, waiting for room.
fn send(
    tx: &crossbeam_channel::Sender<ClipJob>,
    job: ClipJob,
    rep: &mut CameraReport,
    blocking: bool,
) {
    rep.intervals += 1;
    rep.clips_truncated += job.truncated as u64;
    if blocking {
        if tx.send(job).is_err() {
            rep.clips_dropped += 1;
        }
    } else if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(job) {
        rep.clips_dropped += 1;
    }
}
