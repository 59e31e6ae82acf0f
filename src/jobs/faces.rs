//! `aullm faces SOURCE`: ingest → face → alignment, written as an OpenFace-style CSV plus crops.

use crate::config::Config;
use crate::face::FaceTracker;
use crate::face::track::TrackerStats;
use crate::ingest::{Ingest, IngestCounts, Source, StopHandle};
use crate::output::contact_sheet::ContactSheet;
use crate::output::face_csv::FaceCsv;
use crate::output::video::VideoWriter;
use crate::stream::camera::{self, DriveOptions, Flow};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where aligned crops go.
#[derive(Debug, Clone)]
pub enum CropsOutput {
    /// One PNG per face per frame: `DIR/face<ID>/<frame>.png`.
    Folder(PathBuf),
    /// One video per face: `STEM_face<ID>.mkv|avi`.
    Video(PathBuf),
}

impl CropsOutput {
    /// A `.mkv`/`.avi` path means video, anything else a folder.
    pub fn parse(p: &Path) -> Self {
        match p.extension().and_then(|e| e.to_str()) {
            Some("mkv") | Some("avi") => CropsOutput::Video(p.to_path_buf()),
            _ => CropsOutput::Folder(p.to_path_buf()),
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct FacesOptions {
    /// The per-frame CSV.
    pub csv: PathBuf,
    /// Aligned crops, if wanted.
    pub crops: Option<CropsOutput>,
    /// Contact sheet PNG, if wanted.
    pub contact_sheet: Option<PathBuf>,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
}

/// What happened, printed at the end and returned to callers and tests.
#[derive(Debug, Clone, Serialize)]
pub struct FacesSummary {
    /// Source label.
    pub source: String,
    /// Frames processed.
    pub frames: u64,
    /// Frames on which at least one face was tracked.
    pub frames_with_face: u64,
    /// Distinct face tracks.
    pub faces: u64,
    /// Stream duration covered (first to last timestamp + one frame), seconds.
    pub stream_seconds: f64,
    /// Stream frame rate estimated from timestamps.
    pub stream_fps: f64,
    /// Frames per wall-clock second through the whole path.
    pub processing_fps: f64,
    /// True when the source was live.
    pub live: bool,
    /// Ingest counters (drops by cause).
    pub ingest: IngestCounts,
    /// Tracker counters.
    pub tracker: TrackerStats,
    /// True when every presentation timestamp increased.
    pub monotonic_timestamps: bool,
    /// Frames whose data could not be decoded (written as frames without a face).
    pub corrupt_frames: u64,
    /// The error that ended the stream, if any (after every decoded frame was processed).
    pub error: Option<String>,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

/// Per-face crop sinks.
enum CropSink {
    Folder(PathBuf),
    Video(PathBuf, BTreeMap<u32, VideoWriter>),
}

/// Runs the job. Returns the summary even when the stream ended in an error (see `summary.error`);
/// outputs hold everything processed before it.
pub fn run(
    cfg: &Config,
    source: &Source,
    opts: &FacesOptions,
    on_start: impl FnOnce(StopHandle),
) -> Result<FacesSummary> {
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models)?;
    let mut ingest = Ingest::open(source, &cfg.ingest)?;
    on_start(ingest.stop_handle());
    let mut csv = FaceCsv::create(&opts.csv)?;
    let mut sheet = opts
        .contact_sheet
        .as_ref()
        .map(|_| ContactSheet::new(cfg.align.size, 8, 6));
    let mut crops = opts.crops.as_ref().map(|c| match c {
        CropsOutput::Folder(d) => CropSink::Folder(d.clone()),
        CropsOutput::Video(p) => CropSink::Video(p.clone(), BTreeMap::new()),
    });
    let started = Instant::now();
    let mut with_face = 0u64;
    let mut track_ids = std::collections::BTreeSet::new();
    let drive_opts = DriveOptions {
        max_frames: opts.max_frames,
        ..DriveOptions::new()
    };
    let rep = camera::drive(&mut ingest, &mut tracker, &drive_opts, |f| {
        let faces = &f.faces;
        csv.write_frame(f.index, f.seq, f.stream_s(), faces)
            .with_context(|| format!("writing {}", opts.csv.display()))?;
        if !faces.is_empty() {
            with_face += 1;
        }
        for o in faces {
            track_ids.insert(o.track_id);
            if let Some(s) = sheet.as_mut()
                && o.track_id == faces[0].track_id
            {
                s.offer(f.index, &o.crop);
            }
            match crops.as_mut() {
                Some(CropSink::Folder(dir)) => {
                    write_crop_png(dir, o.track_id, f.index, &o.crop, cfg.align.size)?
                }
                Some(CropSink::Video(path, writers)) => {
                    let w = match writers.entry(o.track_id) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let p = per_face_path(path, o.track_id);
                            // The source's rate; 25 fps for a one-frame file without one.
                            let fps = f.fps.unwrap_or(25.0);
                            e.insert(VideoWriter::create(
                                &p,
                                cfg.align.size,
                                cfg.align.size,
                                fps,
                            )?)
                        }
                    };
                    w.push(&o.crop)?;
                }
                None => {}
            }
        }
        Ok(Flow::Continue)
    })?;
    let frames = rep.frames;
    let wall = started.elapsed().as_secs_f64();
    let mut outputs = vec![csv.finish()?];
    if let Some(CropSink::Video(_, writers)) = crops {
        for (_, w) in writers {
            outputs.push(w.finish()?);
        }
    } else if let Some(CropSink::Folder(d)) = crops {
        outputs.push(d);
    }
    if let (Some(s), Some(p)) = (sheet, opts.contact_sheet.as_ref()) {
        if s.is_empty() {
            tracing::warn!(
                "no face was tracked: contact sheet {} not written",
                p.display()
            );
        } else {
            s.write_png(p)?;
            outputs.push(p.clone());
        }
    }
    Ok(FacesSummary {
        source: source.label(),
        frames,
        frames_with_face: with_face,
        faces: track_ids.len() as u64,
        stream_seconds: rep.stream_seconds(),
        stream_fps: rep.min_period_ns.map_or(0.0, |p| 1e9 / p as f64),
        processing_fps: if wall > 0.0 {
            frames as f64 / wall
        } else {
            0.0
        },
        live: ingest.is_live(),
        ingest: ingest.counts(),
        tracker: tracker.stats(),
        monotonic_timestamps: rep.monotonic,
        corrupt_frames: rep.corrupt_frames,
        error: rep.error,
        outputs,
    })
}

/// `crops.mkv` → `crops_face2.mkv`.
fn per_face_path(path: &Path, id: u32) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("crops");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("mkv");
    path.with_file_name(format!("{stem}_face{id}.{ext}"))
}

fn write_crop_png(dir: &Path, id: u32, frame: u64, crop: &[u8], size: u32) -> Result<()> {
    let d = dir.join(format!("face{id}"));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let p = d.join(format!("{:06}.png", frame + 1));
    let png = crate::imgio::png::gray(crop, size as usize, size as usize)
        .with_context(|| format!("face {id} frame {frame}: a crop that is not {size}x{size}"))?;
    std::fs::write(&p, &png).with_context(|| format!("cannot write {}", p.display()))
}

impl FacesSummary {
    /// Human-readable summary lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("source            {}\n", self.source));
        s.push_str(&format!(
            "frames            {} ({:.2} s of stream at {:.1} fps, {})\n",
            self.frames,
            self.stream_seconds,
            self.stream_fps,
            if self.live { "live" } else { "file" }
        ));
        s.push_str(&format!(
            "faces             {} track(s); a face on {} of {} frames ({:.1}%)\n",
            self.faces,
            self.frames_with_face,
            self.frames,
            100.0 * self.frames_with_face as f64 / self.frames.max(1) as f64
        ));
        s.push_str(&format!(
            "processing        {:.0} frames/s\n",
            self.processing_fps
        ));
        let i = &self.ingest;
        s.push_str(&format!(
            "drops             {} (queue {}, source gaps {}, QoS {})\n",
            i.dropped(),
            i.dropped_queue,
            i.dropped_gap,
            i.dropped_qos
        ));
        if self.corrupt_frames > 0 {
            s.push_str(&format!(
                "corrupt           {} frame(s) could not be decoded (no face on them)\n",
                self.corrupt_frames
            ));
        }
        s.push_str(&format!(
            "detector          {} runs, {} re-anchors, {} tracks lost\n",
            self.tracker.detector_runs, self.tracker.reanchors, self.tracker.tracks_lost
        ));
        let t = &self.tracker;
        s.push_str(&format!(
            "registration      {} crops, {:.2} Gauss-Newton iterations each\n",
            t.registrations,
            t.registration_iterations as f64 / t.registrations.max(1) as f64
        ));
        for o in &self.outputs {
            s.push_str(&format!("wrote             {}\n", o.display()));
        }
        s
    }
}
