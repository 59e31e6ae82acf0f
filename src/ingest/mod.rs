//! Frames from files, URIs, camera templates or raw GStreamer descriptions, as pooled GRAY8 [`Frame`]s.
//! Owns `[ingest]` ([`config`]). May import: frame, clock.

pub mod config;
pub mod container;
pub mod mapped_src;
mod reader;
pub mod source;
pub mod stats;
pub mod template;

pub use config::{IngestConfig, LiveMode};
pub use reader::IngestError;
pub use source::Source;
pub use stats::{IngestCounts, IngestStats};

use crate::frame::{Frame, FramePool};
use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{Receiver, Sender};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use reader::{Control, SinkState};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Name of the appsink aullm appends to every source description.
const SINK_NAME: &str = "aullm_sink";
/// Name given to a file template's trailing decodebin when MJPEG may stay compressed.
const DECODE_NAME: &str = "aullm_decode";

/// Makes the file template's decodebin stop at JPEG images (and raw media) and links its first
/// video pad: JPEG straight to the appsink, anything else through GStreamer's gray conversion.
fn link_on_pad(pipeline: &gst::Pipeline) -> Result<()> {
    let dec = pipeline
        .by_name(DECODE_NAME)
        .ok_or_else(|| anyhow!("no decodebin in the file pipeline"))?;
    let stop_at = gst::Caps::from_str(
        "image/jpeg; video/x-raw(ANY); audio/x-raw(ANY); text/x-raw(ANY); subpicture/x-dvd; subpicture/x-pgs",
    )
    .context("decodebin caps")?;
    dec.set_property("caps", &stop_at);
    let weak = pipeline.downgrade();
    let linked = Arc::new(AtomicBool::new(false));
    dec.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(name) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let branch = if name == "image/jpeg" {
            format!("appsink name={SINK_NAME} sync=false caps=image/jpeg")
        } else if name.starts_with("video/") {
            format!(
                "videoconvert ! video/x-raw,format=(string){{GRAY8,GRAY16_LE}} ! appsink name={SINK_NAME} sync=false"
            )
        } else {
            return;
        };
        if linked.swap(true, Ordering::SeqCst) {
            return; // one video stream is read
        }
        let result = (|| -> Result<()> {
            let bin = gst::parse::bin_from_description(&branch, true)?;
            pipeline.add(&bin)?;
            bin.sync_state_with_parent()?;
            let sink = bin
                .static_pad("sink")
                .ok_or_else(|| anyhow!("branch has no sink pad"))?;
            pad.link(&sink)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!("cannot link the decoded stream ({name}): {e:#}");
        }
    });
    Ok(())
}

/// Initialises GStreamer once per process.
pub fn init_gstreamer() -> Result<()> {
    gst::init().context(
        "GStreamer failed to initialise (is libgstreamer1.0 installed? run `make setup`)",
    )?;
    mapped_src::register().context("cannot register aullm's file source with GStreamer")
}

/// An open source delivering frames in order until end of stream or an error.
pub struct Ingest {
    pipeline: gst::Pipeline,
    frames: Receiver<Frame>,
    control: Receiver<Control>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    live: bool,
    label: String,
    pending_error: Option<IngestError>,
    ended: bool,
    eos_seen: bool,
    drain: Duration,
    declared_duration_ns: Option<u64>,
    last_pts_ns: Option<u64>,
    frame_period_ns: Option<u64>,
    file: Option<std::path::PathBuf>,
    /// Set by a [`StopHandle`]: the stream ends early on purpose, which is not truncation.
    stop_requested: Arc<AtomicBool>,
    /// Region the face path expects to read next, packed (see `reader::pack_rect`).
    region_hint: Arc<std::sync::atomic::AtomicU64>,
    /// Keep every N-th frame (see [`Ingest::set_stride`]).
    stride: Arc<std::sync::atomic::AtomicU64>,
    /// A frame taken from the queue by [`Ingest::peek_next`], delivered next.
    ahead: Option<Frame>,
}

/// Stops a running source from another thread (Ctrl-C): the stream ends cleanly at the next frame.
#[derive(Clone)]
pub struct StopHandle {
    pipeline: gst::Pipeline,
    requested: Arc<AtomicBool>,
}

impl StopHandle {
    /// Sends end-of-stream into the pipeline; queued frames are still delivered, and the end is
    /// an interruption, not a short file.
    pub fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.pipeline.send_event(gst::event::Eos::new());
    }
}

impl Ingest {
    /// Opens `source` and reads its first frame, then closes it: whether the source can be read
    /// at all, asked before anything is written for it.
    pub fn probe(source: &Source, cfg: &IngestConfig) -> Result<()> {
        let mut ingest = Ingest::open(source, cfg)?;
        match ingest.next_frame() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(anyhow!("source {}: no video frames", source.label())),
            Err(e) => Err(anyhow!("source {}: {e}", source.label())),
        }
    }

    /// Builds and starts the pipeline for `source`.
    pub fn open(source: &Source, cfg: &IngestConfig) -> Result<Ingest> {
        init_gstreamer()?;
        let dir = (!cfg.pipelines_dir.is_empty()).then(|| Path::new(&cfg.pipelines_dir));
        let head = source.description(dir)?;
        let label = source.label();
        // An MJPEG file stays compressed to the face thread, which decodes the regions it reads;
        // everything else is decoded and converted to gray by GStreamer.
        let regions =
            cfg.decode_regions && source.is_file() && head.trim_end().ends_with("decodebin");
        let desc = if regions {
            format!("{head} name={DECODE_NAME}")
        } else {
            format!(
                "{head} ! videoconvert ! video/x-raw,format=(string){{GRAY8,GRAY16_LE}} ! appsink name={SINK_NAME} sync=false"
            )
        };
        tracing::debug!(%desc, "ingest pipeline");
        let element = gst::parse::launch(&desc).map_err(|e| {
            anyhow!("source {label}: cannot build GStreamer pipeline `{desc}`: {e}")
        })?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("source {label}: description did not make a pipeline"))?;
        if let Some(path) = source.file_location() {
            set_file_location(&pipeline, &path);
        }
        if regions {
            link_on_pad(&pipeline).with_context(|| format!("source {label}"))?;
        }
        // The pipeline clock is CLOCK_MONOTONIC, the clock LSL timestamps live on.
        let clock = gst::SystemClock::obtain();
        clock.set_property("clock-type", gst::ClockType::Monotonic);
        pipeline.use_clock(Some(&clock));

        let stats = Arc::new(IngestStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let bus = pipeline
            .bus()
            .ok_or_else(|| anyhow!("pipeline has no bus"))?;
        let bus_thread = reader::watch_bus(bus, ctl_tx.clone(), stats.clone(), stop.clone())
            .context("cannot start the GStreamer bus thread")?;

        let mut ingest = Ingest {
            pipeline: pipeline.clone(),
            frames: crossbeam_channel::never(),
            control: ctl_rx,
            stats: stats.clone(),
            stop: stop.clone(),
            bus_thread: Some(bus_thread),
            live: false,
            label: label.clone(),
            pending_error: None,
            ended: false,
            eos_seen: false,
            drain: Duration::from_secs_f64(cfg.error_drain_s.max(0.0)),
            declared_duration_ns: None,
            last_pts_ns: None,
            frame_period_ns: None,
            file: source.local_file(),
            stop_requested: Arc::new(AtomicBool::new(false)),
            // Until the reader says what it reads, it decodes what it asks for itself.
            region_hint: Arc::new(std::sync::atomic::AtomicU64::new(reader::HINT_NONE)),
            stride: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            ahead: None,
        };

        // PAUSED tells live sources (no preroll) from files; a failure here is a startup error.
        let live = match pipeline.set_state(gst::State::Paused) {
            Ok(gst::StateChangeSuccess::NoPreroll) => true,
            Ok(_) => {
                let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
                if res.is_err() {
                    return Err(ingest.startup_error());
                }
                false
            }
            Err(_) => return Err(ingest.startup_error()),
        };
        let live = match cfg.live {
            LiveMode::Yes => true,
            LiveMode::No => false,
            LiveMode::Auto => live && !source.is_file(),
        };
        ingest.live = live;
        if !live {
            ingest.declared_duration_ns = pipeline
                .query_duration::<gst::ClockTime>()
                .map(|d| d.nseconds());
        }

        // The decoding branch (and its appsink) may only exist once the demuxer found the stream.
        let sink = pipeline
            .by_name(SINK_NAME)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| anyhow!("source {label}: the file has no video stream"))?;
        // Compressed frames are decoded as they are queued, with the face thread's latest region:
        // a short queue keeps that region close to the frames it is used for.
        let depth = if regions {
            cfg.queue_frames.min(8)
        } else {
            cfg.queue_frames
        };
        let (tx, rx): (Sender<Frame>, Receiver<Frame>) = crossbeam_channel::bounded(depth.max(1));
        ingest.frames = rx.clone();
        reader::attach(
            &sink,
            SinkState {
                frames: tx,
                evict: rx,
                control: ctl_tx,
                stats,
                // Enough spares for a full queue plus the frames the consumer holds.
                pool: FramePool::new(cfg.queue_frames + 8),
                live,
                gray16_shift: cfg.gray16_bits.saturating_sub(8),
                gap_tolerance: cfg.gap_tolerance,
                seq: 0,
                last_pts: None,
                last_offset: None,
                info: None,
                stopping: stop,
                jpeg_pool: FramePool::new(cfg.queue_frames + 8),
                region_hint: ingest.region_hint.clone(),
                stride: ingest.stride.clone(),
            },
        );
        if pipeline.set_state(gst::State::Playing).is_err() {
            return Err(ingest.startup_error());
        }
        Ok(ingest)
    }

    /// Tells the decoder which region of the coming frames the face path will read (MJPEG files
    /// decode only that, beside the face thread); reads outside it still decode, on the reader's
    /// thread.
    /// `None`: decode nothing ahead; the reader decodes what it reads, on its own thread.
    pub fn set_decode_hint(&self, rect: Option<crate::frame::Rect>) {
        let v = rect.map_or(reader::HINT_NONE, reader::pack_rect);
        self.region_hint.store(v, Ordering::Relaxed);
    }

    /// Keeps only the frames whose sequence number is a multiple of `n` (1: every frame); the
    /// others are counted as skipped and never copied or decoded. Frames keep their sequence
    /// numbers and timestamps, so a consumer sees a 200 fps stream with every other frame absent.
    /// Frames queued before the call are passed over as they leave the queue (and counted).
    pub fn set_stride(&self, n: u64) {
        self.stride.store(n.max(1), Ordering::Relaxed);
    }

    /// The error GStreamer posted while starting, or a generic one naming the source.
    fn startup_error(&mut self) -> anyhow::Error {
        match self.control.recv_timeout(Duration::from_secs(2)) {
            Ok(Control::Error(e)) => anyhow!("source {}: {e}", self.label),
            _ => anyhow!(
                "source {}: GStreamer could not start the pipeline",
                self.label
            ),
        }
    }

    /// True when the source is live (frames may be dropped, and each drop is counted).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The source's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Counters so far.
    pub fn counts(&self) -> IngestCounts {
        self.stats.snapshot()
    }

    /// The shared counters (for a stats printer on another thread).
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// A handle that ends the stream from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            pipeline: self.pipeline.clone(),
            requested: self.stop_requested.clone(),
        }
    }

    /// Whether the stream was ended by [`StopHandle::stop`] rather than by its own end.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    /// Duration the container declares (files), if known.
    pub fn declared_duration_ns(&self) -> Option<u64> {
        self.declared_duration_ns
    }

    /// The next frame; `Ok(None)` at a clean end of stream. An error comes only after every frame
    /// decoded before it was delivered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, IngestError> {
        if let Some(f) = self.ahead.take() {
            return Ok(Some(self.deliver(f)));
        }
        if self.ended {
            return Ok(None);
        }
        loop {
            // Frames first: control messages only matter once the queue is empty.
            if let Ok(f) = self.frames.try_recv() {
                if let Some(f) = self.kept(f) {
                    return Ok(Some(self.deliver(f)));
                }
                continue;
            }
            if self.eos_seen {
                return self.finish();
            }
            let deadline = self
                .pending_error
                .as_ref()
                .map(|_| Instant::now() + self.drain);
            crossbeam_channel::select! {
                recv(self.frames) -> f => {
                    let Ok(f) = f else {
                        return self.finish();
                    };
                    if let Some(f) = self.kept(f) {
                        return Ok(Some(self.deliver(f)));
                    }
                }
                recv(self.control) -> c => match c {
                    Ok(Control::Eos) | Err(_) => self.eos_seen = true,
                    Ok(Control::Error(e)) => {
                        if self.pending_error.is_none() {
                            self.pending_error = Some(e);
                        }
                    }
                },
                default(deadline.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600))) => {
                    if self.pending_error.is_some() {
                        return self.finish();
                    }
                }
            }
        }
    }

    /// The frame [`Ingest::next_frame`] returns next, when it is already queued (never waits):
    /// the face thread decodes it together with the current one.
    pub fn peek_next(&mut self) -> Option<&mut Frame> {
        while self.ahead.is_none() && !self.ended {
            let f = self.frames.try_recv().ok()?;
            self.ahead = self.kept(f);
        }
        self.ahead.as_mut()
    }

    /// The frame, unless a stride set after it was queued passes it over (counted as skipped).
    fn kept(&self, f: Frame) -> Option<Frame> {
        let stride = self.stride.load(Ordering::Relaxed).max(1);
        if f.seq.is_multiple_of(stride) {
            return Some(f);
        }
        IngestStats::add(&self.stats.skipped, 1);
        None
    }

    fn deliver(&mut self, f: Frame) -> Frame {
        IngestStats::add(&self.stats.delivered, 1);
        if let Some(lp) = self.last_pts_ns
            && f.pts_ns > lp
        {
            let d = f.pts_ns - lp;
            self.frame_period_ns = Some(self.frame_period_ns.map_or(d, |p| p.min(d)));
        }
        self.last_pts_ns = Some(f.pts_ns);
        f
    }

    /// Whether the pipeline's bus is still watched for errors and warnings: until the stream ends
    /// (its end stops and joins the watcher, so that closing the source does not wait for it).
    pub fn bus_watched(&self) -> bool {
        self.bus_thread.is_some()
    }

    /// Stops the bus thread and waits for it. A wake-up message saves the rest of its poll interval,
    /// which every close used to wait out (up to 50 ms). Called while the pipeline still runs: the
    /// change to NULL flushes the bus, which would drop that message.
    fn stop_bus_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.bus_thread.take() {
            if let Some(bus) = self.pipeline.bus() {
                let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty(
                    "aullm-stop",
                )));
            }
            let _ = t.join();
        }
    }

    /// Ends the stream: a pending GStreamer error, or a file that stopped well short of its declared
    /// length (truncated), is reported; otherwise a clean end.
    fn finish(&mut self) -> Result<Option<Frame>, IngestError> {
        self.ended = true;
        let demuxer = self.demuxer_path();
        self.stop_bus_thread();
        // A source that fails posts its error and then ends the stream: the end can arrive here
        // before the bus thread forwarded the error, so take what it sent and what is still on
        // the bus (stopping the pipeline flushes it) before calling the end clean.
        while let Ok(c) = self.control.try_recv() {
            if let Control::Error(e) = c {
                self.pending_error.get_or_insert(e);
            }
        }
        if let Some(bus) = self.pipeline.bus() {
            while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                if let Some(e) = reader::bus_error(&msg) {
                    self.pending_error.get_or_insert(e);
                }
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(e) = self.pending_error.take() {
            if self.stop_requested() {
                // An end-of-stream sent while the pipeline was still starting makes some elements
                // (typefind) fail: the stop, not the source, ended it.
                tracing::debug!("after a stop request: {e}");
                return Ok(None);
            }
            return Err(e);
        }
        if self.stop_requested() {
            // Stopped on request: the file was not read to its end, so its length says nothing.
            return Ok(None);
        }
        if let Some(reason) = self.file.as_deref().and_then(container::truncation) {
            return Err(IngestError {
                element: demuxer.unwrap_or_else(|| self.label.clone()),
                message: format!("{}: {reason}", self.label),
                debug: None,
            });
        }
        if let (Some(declared), Some(last), Some(period)) = (
            self.declared_duration_ns,
            self.last_pts_ns,
            self.frame_period_ns,
        ) {
            let got = last + period;
            // Two frame periods of slack absorb rounding in container durations.
            if got + 2 * period < declared {
                return Err(IngestError {
                    element: self.label.clone(),
                    message: format!(
                        "stream ended at {:.3} s but the container declares {:.3} s: the file is truncated or corrupt",
                        got as f64 / 1e9,
                        declared as f64 / 1e9
                    ),
                    debug: None,
                });
            }
        }
        Ok(None)
    }
}

/// Gives every element whose `location` is [`source::FILE_LOCATION`] the real path (set as a
/// property, so quotes, `!` and newlines in file names never meet the launch syntax).
fn set_file_location(pipeline: &gst::Pipeline, path: &Path) {
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        if e.find_property("location").is_some()
            && e.property::<Option<String>>("location").as_deref() == Some(source::FILE_LOCATION)
        {
            e.set_property("location", path.to_string_lossy().to_string());
        }
    }
}

impl Ingest {
    /// Path of the demuxer GStreamer picked for a file (the element a container problem belongs to).
    fn demuxer_path(&self) -> Option<String> {
        self.pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .find_map(|e| {
                let f = e.factory()?;
                f.klass()
                    .contains("Demux")
                    .then(|| e.path_string().to_string())
            })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop_bus_thread();
        // Unblock a streaming thread waiting on a full queue before tearing the pipeline down.
        while self.frames.try_recv().is_ok() {}
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
