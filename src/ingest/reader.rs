//! The GStreamer side of ingest: pipeline, appsink callbacks on the streaming thread, bus watcher.

use super::stats::IngestStats;
use crate::clock::{mono_now_ns, realtime_now_ns};
use crate::frame::{Frame, FramePool};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An error GStreamer reported, with the element that reported it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("GStreamer element {element}: {message}{}", debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct IngestError {
    /// Path of the element that posted the error, e.g. `/GstPipeline:pipeline0/GstAviDemux:avidemux0`.
    pub element: String,
    /// The error message.
    pub message: String,
    /// GStreamer's debug detail, when given.
    pub debug: Option<String>,
}

/// Control messages that must never be evicted from the frame queue.
pub(crate) enum Control {
    Eos,
    Error(IngestError),
}

/// Everything the appsink callback needs, owned by the streaming thread.
pub(crate) struct SinkState {
    pub frames: Sender<Frame>,
    /// A receiver clone: lets the producer evict the oldest frame when a live consumer lags.
    pub evict: Receiver<Frame>,
    pub control: Sender<Control>,
    pub stats: Arc<IngestStats>,
    pub pool: FramePool,
    pub live: bool,
    pub gray16_shift: u32,
    pub gap_tolerance: f64,
    pub seq: u64,
    pub last_pts: Option<u64>,
    pub last_offset: Option<u64>,
    pub info: Option<(gst::Caps, Layout)>,
    pub stopping: Arc<AtomicBool>,
    /// Buffers for compressed (MJPEG) frames.
    pub jpeg_pool: FramePool,
    /// The region the face thread expects to read (packed by [`pack_rect`]); decoded here, in
    /// the streaming thread, so decoding runs beside the face path.
    pub region_hint: Arc<std::sync::atomic::AtomicU64>,
    /// Only frames whose sequence number is a multiple of this are kept (see
    /// [`crate::ingest::Ingest::set_stride`]); the others are passed over before they are copied
    /// or decoded.
    pub stride: Arc<std::sync::atomic::AtomicU64>,
}

/// Packed hint: decode nothing ahead (the reader decodes what it reads).
pub(crate) const HINT_NONE: u64 = u64::MAX;

/// A rectangle in one word (16 bits per coordinate, so never one of the sentinels above).
pub(crate) fn pack_rect(r: crate::frame::Rect) -> u64 {
    r.iter()
        .fold(0u64, |acc, &v| (acc << 16) | u64::from(v.min(0x7fff)))
}

/// The rectangle [`pack_rect`] packed.
fn unpack_rect(v: u64) -> crate::frame::Rect {
    [
        (v >> 48) as u32 & 0xffff,
        (v >> 32) as u32 & 0xffff,
        (v >> 16) as u32 & 0xffff,
        v as u32 & 0xffff,
    ]
}

/// The largest frame side aullm reads (pixels).
pub const MAX_SIDE: usize = 16_384;

/// What the appsink's caps say a sample holds.
#[derive(Clone)]
pub(crate) enum Layout {
    /// Raw GRAY8/GRAY16 video.
    Raw(gst_video::VideoInfo),
    /// One JPEG image per buffer (MJPEG), kept compressed.
    Jpeg {
        width: Option<u32>,
        height: Option<u32>,
        period_ns: Option<u64>,
    },
}

impl Layout {
    fn of(caps: &gst::CapsRef) -> Option<Layout> {
        let s = caps.structure(0)?;
        if s.name() == "image/jpeg" {
            let period_ns = s
                .get::<gst::Fraction>("framerate")
                .ok()
                .filter(|f| f.numer() > 0 && f.denom() > 0)
                .map(|f| 1_000_000_000u64 * f.denom() as u64 / f.numer() as u64);
            return Some(Layout::Jpeg {
                width: s.get::<i32>("width").ok().map(|v| v as u32),
                height: s.get::<i32>("height").ok().map(|v| v as u32),
                period_ns,
            });
        }
        gst_video::VideoInfo::from_caps(caps).ok().map(Layout::Raw)
    }

    fn period_ns(&self) -> Option<u64> {
        match self {
            Layout::Raw(info) => {
                let fps = info.fps();
                (fps.numer() > 0 && fps.denom() > 0)
                    .then(|| 1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64)
            }
            Layout::Jpeg { period_ns, .. } => *period_ns,
        }
    }
}

impl SinkState {
    /// Converts one sample to a pooled GRAY8 frame (or keeps an MJPEG frame compressed, to be
    /// decoded by region) and queues it (blocking for files, evicting for live).
    pub fn on_sample(
        &mut self,
        sink: &gst_app::AppSink,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
        IngestStats::add(&self.stats.received, 1);
        let arrival_mono = mono_now_ns() as u64;
        let arrival_host = realtime_now_ns() as u64;
        let caps = sample.caps().ok_or(gst::FlowError::NotNegotiated)?;
        let fresh = match &self.info {
            Some((c, _)) => c.as_ptr() != caps.as_ptr() && c != caps,
            None => true,
        };
        if fresh {
            let layout = Layout::of(caps).ok_or(gst::FlowError::NotNegotiated)?;
            self.info = Some((caps.to_owned(), layout));
        }
        let Some((_, layout)) = &self.info else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let layout = layout.clone();
        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
        let period_ns = layout.period_ns();
        let pts = buffer.pts().map(|t| t.nseconds());
        let offset = Some(buffer.offset()).filter(|&o| o != u64::MAX);
        self.count_gaps(pts, offset, period_ns);
        let stride = self.stride.load(Ordering::Relaxed).max(1);
        if !self.seq.is_multiple_of(stride) {
            // Nothing downstream reads this frame: neither copied nor decoded.
            IngestStats::add(&self.stats.skipped, 1);
            self.seq += 1;
            return Ok(gst::FlowSuccess::Ok);
        }

        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        let src = map.as_slice();
        let (w, h) = match &layout {
            Layout::Raw(info) => (info.width() as usize, info.height() as usize),
            Layout::Jpeg { width, height, .. } => match (width, height) {
                (Some(w), Some(h)) => (*w as usize, *h as usize),
                _ => match crate::frame::jpeg::dims(src) {
                    Ok((w, h)) => (w as usize, h as usize),
                    Err(e) => {
                        self.post_error(sink, &format!("frame {}: {e:#}", self.seq));
                        return Err(gst::FlowError::Error);
                    }
                },
            },
        };
        // A header may claim any size: nothing is allocated from it beyond this bound.
        if !(1..=MAX_SIDE).contains(&w) || !(1..=MAX_SIDE).contains(&h) {
            let limit = format!("aullm reads frames up to {MAX_SIDE}x{MAX_SIDE}");
            self.post_error(
                sink,
                &format!("frame {}: {w}x{h} pixels, {limit}", self.seq),
            );
            return Err(gst::FlowError::Error);
        }
        let (pixels, jpeg) = match &layout {
            Layout::Raw(info) => (self.convert(info, src, w, h)?, None),
            Layout::Jpeg { .. } => {
                let mut bytes = self.jpeg_pool.take(src.len());
                bytes.copy_from_slice(src);
                // Decoded later, by region, on the face thread.
                (self.pool.take(w * h), Some(bytes))
            }
        };
        drop(map);

        // Live: the camera's own timestamp on the pipeline clock (CLOCK_MONOTONIC) is the capture time.
        let mono_ns = match (self.live, pts, sink.base_time()) {
            (true, Some(p), Some(base)) => base.nseconds() + p,
            _ => arrival_mono,
        };
        let valid = if jpeg.is_some() {
            [0, 0, 0, 0]
        } else {
            [0, 0, w as u32, h as u32]
        };
        let mut frame = Frame {
            seq: self.seq,
            pts_ns: pts.unwrap_or_else(|| self.seq * period_ns.unwrap_or(0)),
            host_ns: arrival_host,
            mono_ns,
            width: w as u32,
            height: h as u32,
            period_ns,
            pixels,
            jpeg,
            valid,
            decodes: 0,
        };
        let hint = match self.region_hint.load(Ordering::Relaxed) {
            HINT_NONE => None,
            packed => Some(unpack_rect(packed)),
        };
        if let Some(hint) = hint.filter(|_| frame.jpeg.is_some()) {
            // A frame that does not decode goes on compressed: the face thread meets the same
            // error and reports it with the frame.
            let _ = frame.prefetch(hint);
        }
        self.seq += 1;
        self.push(frame)
    }

    /// Losses upstream of a live source show up as holes in its frame counter or clock.
    fn count_gaps(&mut self, pts: Option<u64>, offset: Option<u64>, period_ns: Option<u64>) {
        if self.live {
            let mut missing = 0u64;
            if let (Some(o), Some(lo)) = (offset, self.last_offset)
                && o > lo + 1
            {
                missing = o - lo - 1;
            }
            if let (Some(p), Some(lp), Some(per)) = (pts, self.last_pts, period_ns)
                && p > lp
                && (p - lp) as f64 > self.gap_tolerance * per as f64
            {
                let by_time = ((p - lp) as f64 / per as f64).round() as u64 - 1;
                missing = missing.max(by_time);
            }
            if missing > 0 {
                IngestStats::add(&self.stats.dropped_gap, missing);
                self.seq += missing;
            }
        }
        self.last_pts = pts.or(self.last_pts);
        self.last_offset = offset.or(self.last_offset);
    }

    /// Copies (GRAY8) or scales (GRAY16) a raw frame into a pooled buffer.
    fn convert(
        &self,
        info: &gst_video::VideoInfo,
        src: &[u8],
        w: usize,
        h: usize,
    ) -> Result<crate::frame::PooledBuf, gst::FlowError> {
        let stride = info.stride()[0] as usize;
        let mut pixels = self.pool.take(w * h);
        match info.format() {
            gst_video::VideoFormat::Gray8 => {
                for y in 0..h {
                    let row = &src[y * stride..y * stride + w];
                    pixels[y * w..(y + 1) * w].copy_from_slice(row);
                }
            }
            gst_video::VideoFormat::Gray16Le => {
                let shift = self.gray16_shift;
                for y in 0..h {
                    let row = &src[y * stride..y * stride + 2 * w];
                    for (x, px) in row.chunks_exact(2).enumerate() {
                        let v = u16::from_le_bytes([px[0], px[1]]) >> shift;
                        pixels[y * w + x] = v.min(255) as u8;
                    }
                }
            }
            _ => return Err(gst::FlowError::NotNegotiated),
        }
        Ok(pixels)
    }

    /// Reports an error found in the streaming thread the way GStreamer's own errors arrive.
    fn post_error(&self, sink: &gst_app::AppSink, message: &str) {
        let _ = self.control.send(Control::Error(IngestError {
            element: sink.path_string().to_string(),
            message: message.to_string(),
            debug: None,
        }));
    }

    fn push(&mut self, frame: Frame) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(gst::FlowError::Flushing);
        }
        if !self.live {
            // Files never drop: wait for the consumer (this back-pressures the decoder).
            return match self.frames.send(frame) {
                Ok(()) => Ok(gst::FlowSuccess::Ok),
                Err(_) => Err(gst::FlowError::Flushing),
            };
        }
        match self.frames.try_send(frame) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(TrySendError::Full(frame)) => {
                // The camera thread never waits: evict the oldest queued frame and count it.
                if self.evict.try_recv().is_ok() {
                    IngestStats::add(&self.stats.dropped_queue, 1);
                }
                if self.frames.try_send(frame).is_err() {
                    IngestStats::add(&self.stats.dropped_queue, 1);
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Err(TrySendError::Disconnected(_)) => Err(gst::FlowError::Flushing),
        }
    }
}

/// Installs the appsink callbacks that feed `state`.
pub(crate) fn attach(sink: &gst_app::AppSink, state: SinkState) {
    let state = Arc::new(std::sync::Mutex::new(state));
    let eos_state = state.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| match state.lock() {
                Ok(mut s) => s.on_sample(sink),
                Err(_) => Err(gst::FlowError::Error),
            })
            .eos(move |_| {
                if let Ok(s) = eos_state.lock() {
                    let _ = s.control.send(Control::Eos);
                }
            })
            .build(),
    );
}

/// The error a bus message carries, naming the element that posted it.
pub(crate) fn bus_error(msg: &gst::Message) -> Option<IngestError> {
    let gst::MessageView::Error(e) = msg.view() else {
        return None;
    };
    let element = msg
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "pipeline".into());
    Some(IngestError {
        element,
        message: e.error().to_string(),
        debug: e.debug().map(|d| d.to_string()),
    })
}

/// Watches the bus: errors to the consumer, warnings and QoS drops into the counters.
pub(crate) fn watch_bus(
    bus: gst::Bus,
    control: Sender<Control>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("aullm-gst-bus".into())
        .spawn(move || {
            let mut qos_dropped: std::collections::HashMap<String, u64> = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
                    continue;
                };
                use gst::MessageView;
                match msg.view() {
                    MessageView::Error(_) => {
                        if let Some(e) = bus_error(&msg) {
                            let _ = control.send(Control::Error(e));
                        }
                    }
                    MessageView::Warning(w) => {
                        IngestStats::add(&stats.warnings, 1);
                        tracing::warn!(
                            element = %msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                            "GStreamer warning: {}", w.error()
                        );
                    }
                    MessageView::Qos(q) => {
                        // QoS stats are cumulative per element: count only the increase.
                        let (_, dropped) = q.stats();
                        if let Ok(d) = u64::try_from(dropped.value()) {
                            let key = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                            let prev = qos_dropped.insert(key, d).unwrap_or(0);
                            if d > prev {
                                IngestStats::add(&stats.dropped_qos, d - prev);
                            }
                        }
                    }
                    _ => {}
                }
            }
        })
}
