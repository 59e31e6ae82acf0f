//! `aullm spot SOURCE`: ingest → face tracking → one spotter per track → intervals as they are decided.

use super::{Interval, SpotStats, Spotter};
use crate::config::Config;
use crate::face::FaceTracker;
use crate::ingest::{Ingest, Source};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One decided interval of one face track.
#[derive(Debug, Clone, Serialize)]
pub struct TrackInterval {
    /// Schema tag of the JSON line.
    pub schema: &'static str,
    /// Face track id.
    pub face_id: u32,
    /// The interval (frame indices = the source's frame sequence numbers).
    #[serde(flatten)]
    pub interval: Interval,
    /// Onset time, seconds from the first frame.
    pub onset_s: f64,
    /// Offset time, seconds from the first frame.
    pub offset_s: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SpotSummary {
    /// Source label.
    pub source: String,
    /// Frames read.
    pub frames: u64,
    /// Frame rate used for the spotting windows.
    pub fps: f64,
    /// Intervals emitted.
    pub intervals: u64,
    /// Per-track spotter counters.
    pub tracks: BTreeMap<u32, SpotStats>,
    /// Mean face-tracking time per frame, µs.
    pub face_us_per_frame: f64,
    /// Mean spotting time per tracked face per frame, µs.
    pub spot_us_per_frame: f64,
    /// The error that ended the stream, if any.
    pub error: Option<String>,
}

/// Runs the whole path on `source`; `fps_override` replaces the frame rate read from timestamps.
/// `on_interval` sees each interval when it is decided.
pub fn spot_source(
    cfg: &Config,
    source: &Source,
    fps_override: Option<f64>,
    mut on_interval: impl FnMut(&TrackInterval) -> Result<()>,
) -> Result<SpotSummary> {
    let mut tracker = FaceTracker::from_config(cfg)?;
    let mut ingest = Ingest::open(source, &cfg.ingest)?;
    let size = cfg.align.size as usize;
    let mut spotters: BTreeMap<u32, Spotter> = BTreeMap::new();
    let (mut frames, mut emitted) = (0u64, 0u64);
    let (mut first_pts, mut fps) = (None::<u64>, fps_override);
    let (mut face_ns, mut spot_ns, mut spot_calls) = (0u128, 0u128, 0u64);
    let mut error = None;
    let mut emit = |id: u32, iv: Interval, fps: f64, emitted: &mut u64| -> Result<()> {
        *emitted += 1;
        on_interval(&TrackInterval {
            schema: "aullm.spot_interval/1",
            face_id: id,
            interval: iv,
            onset_s: iv.onset as f64 / fps,
            offset_s: iv.offset as f64 / fps,
        })
    };
    loop {
        let mut frame = match ingest.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        };
        frames += 1;
        match first_pts {
            None => first_pts = Some(frame.pts_ns),
            Some(p0) if fps.is_none() && frame.pts_ns > p0 && frame.seq > 0 => {
                fps = Some(1e9 * frame.seq as f64 / (frame.pts_ns - p0) as f64);
            }
            _ => {}
        }
        let t0 = Instant::now();
        let faces = tracker.process_frame(&mut frame)?;
        ingest.set_decode_hint(Some(
            tracker.decode_hint(frame.width as usize, frame.height as usize),
        ));
        let t1 = Instant::now();
        face_ns += (t1 - t0).as_nanos();
        // The windows need the frame rate: spotting starts on the second frame of a file.
        let Some(rate) = fps else { continue };
        for f in &faces {
            let sp = match spotters.entry(f.track_id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Spotter::new(&cfg.spot, rate, size)?)
                }
            };
            let t = Instant::now();
            let out = sp.push(frame.seq, &f.crop)?;
            spot_ns += t.elapsed().as_nanos();
            spot_calls += 1;
            for iv in out {
                emit(f.track_id, iv, rate, &mut emitted)?;
            }
        }
    }
    let rate = fps.unwrap_or(0.0);
    let mut tracks = BTreeMap::new();
    for (id, sp) in spotters.iter_mut() {
        for iv in sp.finish() {
            emit(*id, iv, rate, &mut emitted)?;
        }
        tracks.insert(*id, sp.stats());
    }
    Ok(SpotSummary {
        source: source.label(),
        frames,
        fps: rate,
        intervals: emitted,
        tracks,
        face_us_per_frame: face_ns as f64 / 1e3 / frames.max(1) as f64,
        spot_us_per_frame: spot_ns as f64 / 1e3 / spot_calls.max(1) as f64,
        error,
    })
}

/// The aligned crops of the first face track of a video file, with the frame rate and the time
/// face tracking took per frame (µs).
pub struct TrackCrops {
    /// Frame rate from the timestamps.
    pub fps: f64,
    /// (frame sequence number, crop) of the first track.
    pub crops: Vec<(u64, Vec<u8>)>,
    /// Frames read.
    pub frames: u64,
    /// Mean tracking time per frame, µs.
    pub face_us_per_frame: f64,
}

/// Tracks the faces of a video file and keeps the first track's crops.
pub fn track_crops(cfg: &Config, path: &Path) -> Result<TrackCrops> {
    let mut tracker = FaceTracker::from_config(cfg)?;
    let mut ingest = Ingest::open(&Source::File(path.to_path_buf()), &cfg.ingest)?;
    let (mut crops, mut frames, mut face_ns) = (Vec::new(), 0u64, 0u128);
    let (mut p0, mut last) = (None::<u64>, (0u64, 0u64));
    while let Some(mut frame) = ingest
        .next_frame()
        .with_context(|| format!("reading {}", path.display()))?
    {
        frames += 1;
        p0.get_or_insert(frame.pts_ns);
        last = (frame.seq, frame.pts_ns);
        let t = Instant::now();
        let faces = tracker.process_frame(&mut frame)?;
        ingest.set_decode_hint(Some(
            tracker.decode_hint(frame.width as usize, frame.height as usize),
        ));
        face_ns += t.elapsed().as_nanos();
        if let Some(f) = faces.iter().min_by_key(|f| f.track_id) {
            crops.push((frame.seq, f.crop.clone()));
        }
    }
    let span = last.1.saturating_sub(p0.unwrap_or(0));
    if last.0 == 0 || span == 0 {
        anyhow::bail!("{}: fewer than two frames, no frame rate", path.display());
    }
    Ok(TrackCrops {
        fps: 1e9 * last.0 as f64 / span as f64,
        crops,
        frames,
        face_us_per_frame: face_ns as f64 / 1e3 / frames.max(1) as f64,
    })
}
