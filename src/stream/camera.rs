//! The one camera-path driver. Every command that reads video (`run`, `serve`, `batch`, `faces`,
//! `spot`, `spot-eval`, training clip extraction) reads frames through [`drive`]: frame source →
//! face tracking → the caller's stages (spotting, clip assembly, CSV rows, ...). One policy for the
//! frame rate, the MJPEG decode hint, corrupt frames, errors, end of stream and stop requests lives
//! here, so the commands cannot disagree about them.

use crate::face::{FaceObservation, FaceTracker};
use crate::frame::{CorruptFrame, Frame, PooledBuf, Rect};
use crate::ingest::Ingest;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Frame rates the camera path accepts, declared, measured or given: the spotting windows and the
/// crop rings are sized from the rate, so a damaged header (4e9 fps) must stop here, not in an
/// allocation.
pub const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.5..=10_000.0;

/// Where frames come from: a GStreamer [`Ingest`], or the frame images of a dataset sample.
pub trait FrameSource {
    /// The next frame; `Ok(None)` at a clean end of stream.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// The region of the coming frames the face path will read (MJPEG decodes only that ahead).
    fn set_decode_hint(&self, rect: Option<Rect>);
    /// Passes over frames whose sequence number is not a multiple of `n` (1: none) without
    /// decoding them; frames keep their sequence numbers.
    fn set_stride(&self, n: u64);
    /// Ends the stream at the next frame; frames already queued are still delivered.
    fn stop(&self);
    /// A label for messages (file name, camera).
    fn label(&self) -> String;
    /// The frame [`next_frame`](Self::next_frame) returns next, when one is already waiting
    /// (nothing is waited for); sources without a queue have none.
    fn peek_next(&mut self) -> Option<&mut Frame> {
        None
    }
}

impl FrameSource for Ingest {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(Ingest::next_frame(self)?)
    }
    fn set_decode_hint(&self, rect: Option<Rect>) {
        Ingest::set_decode_hint(self, rect)
    }
    fn set_stride(&self, n: u64) {
        Ingest::set_stride(self, n)
    }
    fn stop(&self) {
        self.stop_handle().stop()
    }
    fn label(&self) -> String {
        Ingest::label(self).to_string()
    }
    fn peek_next(&mut self) -> Option<&mut Frame> {
        Ingest::peek_next(self)
    }
}

/// Frames from image files (a dataset sample's folder), read in order as gray. Presentation times
/// advance by `period_ns` per image.
pub struct ImageFrames {
    paths: std::vec::IntoIter<PathBuf>,
    next: u64,
    period_ns: u64,
    stopped: AtomicBool,
    stride: std::sync::atomic::AtomicU64,
    label: String,
}

impl ImageFrames {
    /// A source over `paths`, `fps` frames per second (the dataset's rate).
    pub fn new(label: impl Into<String>, paths: Vec<PathBuf>, fps: f64) -> ImageFrames {
        ImageFrames {
            paths: paths.into_iter(),
            next: 0,
            period_ns: (1e9 / fps.max(1e-3)) as u64,
            stopped: AtomicBool::new(false),
            stride: std::sync::atomic::AtomicU64::new(1),
            label: label.into(),
        }
    }
}

impl FrameSource for ImageFrames {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        use opencv::prelude::*;
        if self.stopped.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let stride = self.stride.load(Ordering::Relaxed).max(1);
        while !self.next.is_multiple_of(stride) {
            if self.paths.next().is_none() {
                return Ok(None);
            }
            self.next += 1;
        }
        let Some(path) = self.paths.next() else {
            return Ok(None);
        };
        let img = crate::imgio::imread(&path, crate::imgio::IMREAD_GRAYSCALE)
            .with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(!img.empty(), "cannot read frame {}", path.display());
        let (w, h) = (img.cols() as u32, img.rows() as u32);
        let img = if img.is_continuous() {
            img
        } else {
            img.try_clone()?
        };
        let seq = self.next;
        self.next += 1;
        Ok(Some(Frame {
            seq,
            pts_ns: seq * self.period_ns,
            host_ns: 0,
            mono_ns: 0,
            width: w,
            height: h,
            period_ns: Some(self.period_ns),
            pixels: PooledBuf::unpooled(img.data_bytes()?.to_vec()),
            jpeg: None,
            valid: [0, 0, w, h],
            decodes: 0,
        }))
    }
    fn set_decode_hint(&self, _rect: Option<Rect>) {}
    fn set_stride(&self, n: u64) {
        self.stride.store(n.max(1), Ordering::Relaxed);
    }
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
    fn label(&self) -> String {
        self.label.clone()
    }
}

/// How the driver reads a source.
#[derive(Debug, Clone, Default)]
pub struct DriveOptions {
    /// Frame rate to use (None: the rate the source declares, else measured from timestamps).
    pub fps: Option<f64>,
    /// Publish the tracker's region to the MJPEG decoder after each frame (decoding ahead on
    /// GStreamer's thread); false decodes on the face thread only.
    pub decode_ahead: bool,
    /// Set to stop: the source ends at the next frame and what is queued is still processed.
    pub stop: Option<Arc<AtomicBool>>,
    /// Read at most this many frames.
    pub max_frames: Option<u64>,
    /// Copy the first face's region of the frame this often (the live monitor's picture).
    pub face_image_every: Option<std::time::Duration>,
    /// Which frames are read: the others are neither decoded nor tracked.
    pub stride: Stride,
}

/// Which frames of a source the driver reads; the others are passed over undecoded and keep
/// their place in the sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stride {
    /// Every frame.
    #[default]
    All,
    /// Every n-th frame.
    Every(u64),
    /// The frames a spotter reads with this `spot.flow_every` setting at the stream's rate
    /// ([`crate::spot::params::flow_every_at`]), decided once the rate is known.
    Spotter(u32),
}

impl Stride {
    /// The frame step at `fps` (None while a rate-dependent step waits for the rate).
    fn step(self, fps: Option<f64>) -> Option<u64> {
        match self {
            Stride::All => Some(1),
            Stride::Every(n) => Some(n.max(1)),
            Stride::Spotter(setting) => {
                fps.map(|f| crate::spot::params::flow_every_at(setting, f).into())
            }
        }
    }
}

impl DriveOptions {
    /// Decoding ahead, everything else from the source.
    pub fn new() -> DriveOptions {
        DriveOptions {
            decode_ahead: true,
            ..DriveOptions::default()
        }
    }
}

/// One frame after face tracking, handed to the caller's stages. The frame's pixels are already
/// back in the pool.
#[derive(Debug, Clone)]
pub struct TrackedFrame {
    /// Frames read before this one.
    pub index: u64,
    /// The source's sequence number.
    pub seq: u64,
    /// Presentation time minus the first frame's, ns.
    pub rel_ns: u64,
    /// Host wall-clock arrival time, ns since the epoch.
    pub host_ns: u64,
    /// CLOCK_MONOTONIC capture time, ns.
    pub mono_ns: u64,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// The frame rate known so far (None on the first frame of a file without a declared rate).
    pub fps: Option<f64>,
    /// Tracked faces with their aligned crops (none on a corrupt frame).
    pub faces: Vec<FaceObservation>,
    /// The frame's compressed data could not be decoded.
    pub corrupt: bool,
    /// The first face's region of the frame, when `face_image_every` asked for one now.
    pub face_image: Option<crate::monitor::Gray>,
}

impl TrackedFrame {
    /// Seconds from the first frame.
    pub fn stream_s(&self) -> f64 {
        self.rel_ns as f64 / 1e9
    }
}

/// What a stage tells the driver after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next frame.
    Continue,
    /// Stop reading (the source is told to stop).
    Stop,
}

/// What the driver counted.
#[derive(Debug, Clone, Default)]
pub struct DriveReport {
    /// Frames read (with a stride, the frames kept).
    pub frames: u64,
    /// Frames whose compressed data the decoder rejected (processed as frames without a face).
    pub corrupt_frames: u64,
    /// The frame rate used (None: fewer than two frames and no declared rate).
    pub fps: Option<f64>,
    /// First and last presentation times, ns.
    pub pts_range: Option<(u64, u64)>,
    /// Smallest step between consecutive presentation times, ns.
    pub min_period_ns: Option<u64>,
    /// Whether presentation times always increased.
    pub monotonic: bool,
    /// Wall seconds spent in face tracking.
    pub face_s: f64,
    /// The error that ended the stream, if any (frames before it were processed).
    pub error: Option<String>,
    /// Whether a stop request (`DriveOptions::stop`) ended the stream before its own end.
    pub stopped: bool,
}

impl DriveReport {
    /// Seconds of stream covered, counting the last frame's period.
    pub fn stream_seconds(&self) -> f64 {
        match self.pts_range {
            Some((a, b)) => (b - a + self.min_period_ns.unwrap_or(0)) as f64 / 1e9,
            None => 0.0,
        }
    }
}

/// Reads `source` to its end (or an error, a stop request, `max_frames`, or a stage's
/// [`Flow::Stop`]), tracking faces on every frame and handing each to `stage`. A stage's error
/// ends the drive and is returned; a source's error is recorded in the report after every frame
/// before it was processed.
pub fn drive<S: FrameSource + ?Sized>(
    source: &mut S,
    tracker: &mut FaceTracker,
    opts: &DriveOptions,
    mut stage: impl FnMut(TrackedFrame) -> Result<Flow>,
) -> Result<DriveReport> {
    let mut rep = DriveReport {
        fps: opts.fps,
        monotonic: true,
        ..DriveReport::default()
    };
    let mut stopped = false;
    let mut last_pts: Option<u64> = None;
    let mut next_image = Instant::now();
    // Until a rate-dependent step is known (a file without a declared rate), every frame is read.
    let mut stride = opts.stride.step(opts.fps);
    if let Some(n) = stride {
        source.set_stride(n);
    }
    loop {
        if opts.max_frames.is_some_and(|m| rep.frames >= m) {
            break;
        }
        if !stopped
            && let Some(s) = &opts.stop
            && s.load(Ordering::SeqCst)
        {
            source.stop();
            stopped = true;
        }
        let mut frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                rep.error = Some(format!("{e:#}"));
                break;
            }
        };
        let p0 = rep.pts_range.map_or(frame.pts_ns, |r| r.0);
        rep.pts_range = Some((p0, frame.pts_ns));
        if let Some(lp) = last_pts {
            if frame.pts_ns <= lp {
                rep.monotonic = false;
            } else {
                let d = frame.pts_ns - lp;
                rep.min_period_ns = Some(rep.min_period_ns.map_or(d, |p| p.min(d)));
            }
        }
        last_pts = Some(frame.pts_ns);
        update_fps(&mut rep.fps, &frame, p0);
        if let Some(f) = rep.fps.filter(|f| !FPS_RANGE.contains(f)) {
            let whence = if opts.fps.is_some() {
                "given"
            } else if frame.period_ns.is_some() {
                "declared by the source"
            } else {
                "measured from the timestamps"
            };
            anyhow::bail!(
                "{}: frame rate {f} fps ({whence}) is outside {}..={} fps: a damaged header or \
                 timestamps? Give the true rate with --fps",
                source.label(),
                FPS_RANGE.start(),
                FPS_RANGE.end()
            );
        }
        if stride.is_none()
            && let Some(n) = opts.stride.step(rep.fps)
        {
            stride = Some(n);
            source.set_stride(n);
        }
        if !frame.seq.is_multiple_of(stride.unwrap_or(1)) {
            // The frame whose timestamps told the rate (a file without a declared one) came
            // before the source knew the stride; the sources pass over every later one.
            continue;
        }
        let index = rep.frames;
        rep.frames += 1;
        let (w, h) = (frame.width, frame.height);
        let t0 = Instant::now();
        if !opts.decode_ahead
            && frame.undecoded()
            && let Some(rect) = tracker.pair_hint(w as usize, h as usize)
            && let Some(next) = source.peek_next()
        {
            // The next frame is decoded beside this one (its reader finds it done); an error is
            // met again, and reported, by the tracker's own decode.
            let _ = frame.prefetch_pair(next, rect);
        }
        let tracked = tracker.process_frame(&mut frame);
        if opts.decode_ahead {
            source.set_decode_hint(Some(tracker.decode_hint(w as usize, h as usize)));
        }
        rep.face_s += t0.elapsed().as_secs_f64();
        let (faces, corrupt) = match tracked {
            Ok(faces) => (faces, false),
            Err(e) => {
                let Some(c) = e.downcast_ref::<CorruptFrame>() else {
                    return Err(e);
                };
                rep.corrupt_frames += 1;
                if rep.corrupt_frames == rep.frames && rep.frames >= 10 {
                    // Nothing decodes: a JPEG variant libjpeg cannot turn into gray, not damage.
                    rep.error = Some(format!(
                        "{}: none of the first {} frames could be decoded ({c}); set ingest.decode_regions = false to let GStreamer decode them",
                        source.label(),
                        rep.frames
                    ));
                    break;
                }
                if rep.corrupt_frames <= 10 {
                    tracing::warn!("{}: {c}: no face on it", source.label());
                }
                (Vec::new(), true)
            }
        };
        let face_image = match (
            opts.face_image_every,
            faces.iter().min_by_key(|o| o.track_id),
        ) {
            (Some(every), Some(o)) if Instant::now() >= next_image => {
                next_image = Instant::now() + every;
                crate::monitor::feed::face_region(&mut frame, o.bbox)
            }
            _ => None,
        };
        let tf = TrackedFrame {
            index,
            seq: frame.seq,
            rel_ns: frame.pts_ns.saturating_sub(p0),
            host_ns: frame.host_ns,
            mono_ns: frame.mono_ns,
            width: w,
            height: h,
            fps: rep.fps,
            faces,
            corrupt,
            face_image,
        };
        drop(frame); // back to the pool before the heavier stages
        if stage(tf)? == Flow::Stop {
            if !stopped {
                source.stop();
            }
            break;
        }
    }
    rep.stopped = stopped;
    Ok(rep)
}

/// The frame rate: the source's declared period, else measured over the frames so far (known
/// from the second frame on).
fn update_fps(fps: &mut Option<f64>, frame: &Frame, p0: u64) {
    if fps.is_none()
        && let Some(p) = frame.period_ns.filter(|&p| p > 0)
    {
        *fps = Some(1e9 / p as f64);
    }
    if fps.is_none() && frame.seq > 0 && frame.pts_ns > p0 {
        *fps = Some(1e9 * frame.seq as f64 / (frame.pts_ns - p0) as f64);
    }
}

/// The aligned crops of the first face track of a source, with the frame rate and the face
/// tracking time per frame.
pub struct TrackCrops {
    /// Frame rate.
    pub fps: f64,
    /// (frame sequence number, crop) of the lowest track id on each frame that has one.
    pub crops: Vec<(u64, Vec<u8>)>,
    /// Frames read (with a stride, the frames kept).
    pub frames: u64,
    /// Mean tracking time per frame, µs.
    pub face_us_per_frame: f64,
}

/// Tracks the faces of `source` on every `stride`-th frame and keeps the first track's crops; a
/// source error is an error.
pub fn track_crops<S: FrameSource + ?Sized>(
    source: &mut S,
    tracker: &mut FaceTracker,
    stride: Stride,
) -> Result<TrackCrops> {
    let mut crops = Vec::new();
    let opts = DriveOptions {
        stride,
        ..DriveOptions::new()
    };
    let rep = drive(source, tracker, &opts, |f| {
        if let Some(o) = f.faces.into_iter().min_by_key(|o| o.track_id) {
            crops.push((f.seq, o.crop));
        }
        Ok(Flow::Continue)
    })?;
    if let Some(e) = rep.error {
        anyhow::bail!("reading {}: {e}", source.label());
    }
    let fps = rep
        .fps
        .with_context(|| format!("{}: fewer than two frames, no frame rate", source.label()))?;
    Ok(TrackCrops {
        fps,
        crops,
        frames: rep.frames,
        face_us_per_frame: rep.face_s * 1e6 / rep.frames.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_frames_with_a_stride_keep_every_nth_image_and_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..7u8 {
            let p = dir.path().join(format!("{i}.png"));
            let img = opencv::core::Mat::new_rows_cols_with_default(
                4,
                6,
                opencv::core::CV_8UC1,
                opencv::core::Scalar::all(f64::from(i * 10)),
            )
            .unwrap();
            crate::imgio::imwrite(&p, &img, &[]).unwrap();
            paths.push(p);
        }
        let mut src = ImageFrames::new("t", paths, 200.0);
        src.set_stride(3);
        let mut got = Vec::new();
        while let Some(mut f) = src.next_frame().unwrap() {
            let v = f.data().unwrap()[0];
            got.push((f.seq, f.pts_ns, v));
        }
        assert_eq!(
            got,
            vec![(0, 0, 0), (3, 15_000_000, 30), (6, 30_000_000, 60)]
        );
    }
}
