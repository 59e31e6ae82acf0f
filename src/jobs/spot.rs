//! `aullm spot` and the data behind `aullm spot-eval`: the camera-path driver with the spotting
//! stage (one spotter per face track), intervals as they are decided.

use crate::config::Config;
use crate::data::sample::{Dataset, ExpressionKind};
use crate::data::{LoadOptions, load};
use crate::eval::spot_videos::VideoData;
use crate::eval::spotting::Span;
use crate::eval::truth::truth_by_video;
use crate::face::FaceTracker;
use crate::ingest::{Ingest, Source};
use crate::spot::{Interval, SpotStats, Spotter};
use crate::stream::camera::{self, DriveOptions, Flow, TrackCrops};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
    /// Frames whose data could not be decoded (processed as frames without a face).
    pub corrupt_frames: u64,
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

/// Runs the whole path on `source`; `fps_override` replaces the frame rate read from the source.
/// `on_interval` sees each interval when it is decided.
pub fn spot_source(
    cfg: &Config,
    source: &Source,
    fps_override: Option<f64>,
    mut on_interval: impl FnMut(&TrackInterval) -> Result<()>,
) -> Result<SpotSummary> {
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models)?;
    let mut ingest = Ingest::open(source, &cfg.ingest)?;
    let size = cfg.align.size as usize;
    let mut spotters: BTreeMap<u32, Spotter> = BTreeMap::new();
    let mut emitted = 0u64;
    let (mut spot_ns, mut spot_calls) = (0u128, 0u64);
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
    let opts = DriveOptions {
        fps: fps_override,
        stride: camera::Stride::Spotter(cfg.spot.flow_every),
        ..DriveOptions::new()
    };
    let rep = camera::drive(&mut ingest, &mut tracker, &opts, |f| {
        // The windows need the frame rate: spotting starts on the second frame of a file.
        let Some(rate) = f.fps else {
            return Ok(Flow::Continue);
        };
        for o in &f.faces {
            let sp = match spotters.entry(o.track_id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Spotter::new(&cfg.spot, rate, size)?)
                }
            };
            let t = Instant::now();
            let out = sp.push(f.seq, &o.crop)?;
            spot_ns += t.elapsed().as_nanos();
            spot_calls += 1;
            for iv in out {
                emit(o.track_id, iv, rate, &mut emitted)?;
            }
        }
        Ok(Flow::Continue)
    })?;
    let rate = rep.fps.unwrap_or(0.0);
    let mut tracks = BTreeMap::new();
    for (id, sp) in spotters.iter_mut() {
        for iv in sp.finish() {
            emit(*id, iv, rate, &mut emitted)?;
        }
        tracks.insert(*id, sp.stats());
    }
    Ok(SpotSummary {
        source: source.label(),
        frames: rep.frames,
        corrupt_frames: rep.corrupt_frames,
        fps: rate,
        intervals: emitted,
        tracks,
        face_us_per_frame: rep.face_s * 1e6 / rep.frames.max(1) as f64,
        spot_us_per_frame: spot_ns as f64 / 1e3 / spot_calls.max(1) as f64,
        error: rep.error,
    })
}

/// The aligned crops of the first face track of a video file, on the frames the spotter reads
/// (see `spot.flow_every` and [`camera::track_crops`]).
pub fn track_crops(cfg: &Config, path: &Path) -> Result<TrackCrops> {
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models)?;
    let mut ingest = Ingest::open(&Source::File(path.to_path_buf()), &cfg.ingest)?;
    camera::track_crops(
        &mut ingest,
        &mut tracker,
        camera::Stride::Spotter(cfg.spot.flow_every),
    )
}

/// Reads a folder's annotations and tracks every video under `videos/` (crops cached in `cache`).
pub fn load_set(cfg: &Config, root: &Path, cache: Option<&Path>) -> Result<Vec<VideoData>> {
    let loaded = load(root, Dataset::SammLv, &LoadOptions::default())?;
    loaded.require_clean()?;
    let mut truth: BTreeMap<String, Vec<(Span, ExpressionKind)>> = truth_by_video(&loaded)?
        .into_iter()
        .map(|(video, (ivs, _))| (video, ivs.iter().map(|t| (t.span, t.kind)).collect()))
        .collect();
    let dir = root.join("videos");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "avi" || e == "mkv" || e == "mp4")
        })
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{}: no videos (*.avi, *.mkv, *.mp4)", dir.display());
    }
    let mut out = Vec::new();
    for path in names {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("video name")?
            .to_string();
        // Crops tracked on every N-th frame are another cache than every frame's.
        let every = match cfg.spot.flow_every {
            1 => String::new(),
            0 => "_auto".to_string(),
            n => format!("_every{n}"),
        };
        let key = format!(
            "{}_{}{every}",
            root.file_name().and_then(|s| s.to_str()).unwrap_or("set"),
            name
        );
        let cached = cache.map(|c| c.join(format!("{key}.crops")));
        let (fps, crops, face_us) = match cached.as_deref().map(read_cache) {
            Some(Ok(Some((fps, crops)))) => (fps, crops, 0.0),
            _ => {
                let t = track_crops(cfg, &path)?;
                if let Some(c) = cached.as_deref() {
                    write_cache(c, t.fps, &t.crops)?;
                }
                (t.fps, t.crops, t.face_us_per_frame)
            }
        };
        out.push(VideoData {
            truth: truth.remove(&name).unwrap_or_default(),
            name,
            fps,
            crops,
            face_us,
        });
    }
    Ok(out)
}

fn write_cache(path: &Path, fps: f64, crops: &[(u64, Vec<u8>)]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut f = crate::atomic::AtomicFile::create(path)?;
    let size = crops.first().map_or(0, |c| c.1.len()) as u64;
    f.write_all(&fps.to_le_bytes())?;
    f.write_all(&size.to_le_bytes())?;
    for (i, c) in crops {
        f.write_all(&i.to_le_bytes())?;
        f.write_all(c)?;
    }
    f.commit()?;
    Ok(())
}

type Crops = (f64, Vec<(u64, Vec<u8>)>);

fn read_cache(path: &Path) -> Result<Option<Crops>> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    if bytes.len() < 16 {
        bail!("{}: truncated crop cache", path.display());
    }
    let fps = f64::from_le_bytes(bytes[0..8].try_into()?);
    let size = u64::from_le_bytes(bytes[8..16].try_into()?) as usize;
    let mut crops = Vec::new();
    for rec in bytes[16..].chunks(8 + size) {
        if rec.len() != 8 + size {
            bail!("{}: truncated crop cache", path.display());
        }
        crops.push((u64::from_le_bytes(rec[..8].try_into()?), rec[8..].to_vec()));
    }
    Ok(Some((fps, crops)))
}
