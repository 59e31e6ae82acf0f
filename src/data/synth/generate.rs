//! Renders a plan to disk: CASME II-layout clips, long videos (frames + encoded file), annotations.

use super::capture::Capture;
use super::identity::{FaceSource, Identity, make_identity};
use super::plan::{ClipPlan, Event, Plan, SynthConfig, VideoPlan, plan};
use super::render::{
    CaptureView, ExpressionField, FrameConditions, Motion, Nuisances, Renderer, intensity,
};
use crate::data::casme2::casme2_frame_path;
use crate::fixtures::Photo;
use crate::output::video::{VideoCodec, VideoWriter};
use crate::rng::Rng;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Folder of raw clip frames, as in CASME II's release.
pub const CLIPS_DIR: &str = "CASME2_RAW_selected";
/// Folder of long-video frames (SAMM-LV's: one folder per video).
pub const LONG_DIR: &str = "SAMM_longvideos";
/// Folder of encoded long videos.
pub const VIDEO_DIR: &str = "videos";

/// What was generated and how fast.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    /// Output root.
    pub root: PathBuf,
    /// Subjects (identities).
    pub subjects: u32,
    /// Clips written.
    pub clips: usize,
    /// Frames in clips.
    pub clip_frames: u64,
    /// Long videos written.
    pub videos: usize,
    /// Frames in long videos.
    pub video_frames: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Frames rendered and written per second.
    pub frames_per_second: f64,
}

/// Generates the dataset under `root` with `threads` rendering threads, every identity from
/// astronaut.png.
pub fn generate(
    cfg: &SynthConfig,
    photo: &Photo,
    root: &Path,
    threads: usize,
) -> Result<SynthReport> {
    generate_from(cfg, &[FaceSource::astronaut(photo.clone())], root, threads)
}

/// Generates the dataset under `root`; identity i is made from `faces[i % faces.len()]`.
pub fn generate_from(
    cfg: &SynthConfig,
    faces: &[FaceSource],
    root: &Path,
    threads: usize,
) -> Result<SynthReport> {
    anyhow::ensure!(!faces.is_empty(), "no face to make identities from");
    let started = Instant::now();
    let plan = plan(cfg);
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let identities = build_identities(cfg, faces, threads)?;
    run_parallel(plan.clips.len(), threads, |i| {
        write_clip(cfg, &identities, &plan.clips[i], root)
    })?;
    run_parallel(plan.videos.len(), threads, |i| {
        write_video(cfg, &identities, &plan.videos[i], root)
    })?;
    super::annotations::write_all(cfg, &plan, &identities, root)?;
    let clip_frames: u64 = plan.clips.iter().map(|c| c.frames as u64).sum();
    let video_frames: u64 = plan.videos.iter().map(|v| v.frames as u64).sum();
    let seconds = started.elapsed().as_secs_f64();
    Ok(SynthReport {
        root: root.to_path_buf(),
        subjects: cfg.subjects,
        clips: plan.clips.len(),
        clip_frames,
        videos: plan.videos.len(),
        video_frames,
        seconds,
        frames_per_second: (clip_frames + video_frames) as f64 / seconds.max(1e-9),
    })
}

/// The plan a configuration produces (for tests and `--dry-run`).
pub fn planned(cfg: &SynthConfig) -> Plan {
    plan(cfg)
}

fn build_identities(
    cfg: &SynthConfig,
    faces: &[FaceSource],
    threads: usize,
) -> Result<Vec<Identity>> {
    let slots: Vec<Mutex<Option<Identity>>> = (0..cfg.subjects).map(|_| Mutex::new(None)).collect();
    run_parallel(cfg.subjects as usize, threads, |i| {
        let face = &faces[i % faces.len()];
        let id = make_identity(face, i as u32, cfg.seed, cfg.width, cfg.height)?;
        if let Ok(mut s) = slots[i].lock() {
            *s = Some(id);
        }
        Ok(())
    })?;
    slots
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.into_inner()
                .ok()
                .flatten()
                .with_context(|| format!("identity {} was not built", i + 1))
        })
        .collect()
}

/// Runs `job(0..n)` on `threads` threads; the first error wins. Output does not depend on the order.
fn run_parallel(n: usize, threads: usize, job: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(n.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || error.lock().map(|e| e.is_some()).unwrap_or(true) {
                        break;
                    }
                    if let Err(e) = job(i)
                        && let Ok(mut slot) = error.lock()
                    {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Folder of one clip: `ROOT/CASME2_RAW_selected/subNN/EPxx_yy`.
pub fn clip_dir(root: &Path, clip: &ClipPlan) -> PathBuf {
    root.join(CLIPS_DIR)
        .join(format!("sub{:02}", clip.subject))
        .join(&clip.name)
}

/// The motion and per-frame conditions of one clip or video: sway and flicker from the nuisances
/// (a drawn capture replaces their noise and flicker), the capture's pose and optics, and its
/// illumination drift over `drift_frames`.
struct Conditions {
    motion: Motion,
    noise_sigma: f32,
    view: Option<CaptureView>,
    drift_per_frame: f32,
    centre: [f32; 2],
}

impl Conditions {
    fn new(
        mut n: Nuisances,
        capture: Option<&Capture>,
        id: &Identity,
        fps: f64,
        drift_frames: u32,
        rng: &mut Rng,
    ) -> Conditions {
        if let Some(c) = capture {
            n.noise_sigma = c.noise_sigma;
            n.flicker = c.flicker;
        }
        let centre = id.landmarks.nose;
        Conditions {
            motion: Motion::new(n, fps, rng),
            noise_sigma: n.noise_sigma,
            // A camera of about 54° horizontal field of view.
            view: capture.map(|c| CaptureView {
                pose: c.pose(centre, 1.0 * id.width as f32),
                optics: *c,
            }),
            drift_per_frame: capture.map_or(0.0, |c| c.drift / drift_frames.max(1) as f32),
            centre,
        }
    }

    fn at(&self, k: u32) -> FrameConditions {
        FrameConditions {
            head: self.motion.head(k, self.centre),
            gain: self.motion.gain(k) * (1.0 + self.drift_per_frame * k as f32),
            noise_sigma: self.noise_sigma,
            capture: self.view,
        }
    }
}

fn write_clip(cfg: &SynthConfig, ids: &[Identity], clip: &ClipPlan, root: &Path) -> Result<()> {
    let id = &ids[(clip.subject - 1) as usize];
    let dir = clip_dir(root, clip);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = Rng::new(clip.seed);
    let cond = Conditions::new(
        cfg.nuisances,
        clip.capture.as_ref(),
        id,
        cfg.fps,
        clip.frames,
        &mut rng,
    );
    let mut renderer = Renderer::new(id.width, id.height, &mut rng);
    let ev = &clip.event;
    let field = ExpressionField::new(id, &ev.aus, ev.family);
    let blink = clip
        .distractor
        .as_ref()
        .map(|d| (d, ExpressionField::new(id, &d.aus, d.family)));
    let quality = clip.capture.map_or(cfg.jpeg_quality, |c| c.jpeg_quality);
    let mut buf = Vec::new();
    for k in 0..clip.frames {
        let mut weights = vec![(&field, weight(ev, k))];
        if let Some((d, f)) = &blink {
            weights.push((f, weight(d, k)));
        }
        renderer.render(id, &weights, &cond.at(k), &mut rng, &mut buf)?;
        let path = casme2_frame_path(root, clip.subject, &clip.name, clip.first_frame + k, false);
        write_jpeg(&path, &buf, id.width, id.height, quality)?;
    }
    Ok(())
}

/// An event's intensity at frame `k`.
fn weight(e: &Event, k: u32) -> f32 {
    intensity(k as f64, e.onset as f64, e.apex as f64, e.offset as f64)
}

/// Frame file of a long video: `ROOT/SAMM_longvideos/NNN_K/NNN_K_00001.jpg` (1-based, 5 digits).
pub fn long_frame_path(root: &Path, video: &str, k: u32) -> PathBuf {
    root.join(LONG_DIR)
        .join(video)
        .join(format!("{video}_{:05}.jpg", k + 1))
}

fn write_video(cfg: &SynthConfig, ids: &[Identity], v: &VideoPlan, root: &Path) -> Result<()> {
    let id = &ids[(v.subject - 1) as usize];
    let dir = root.join(LONG_DIR).join(&v.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = Rng::new(v.seed);
    // Long videos sway more than clips: a sitting person over seconds.
    let mut n = cfg.nuisances;
    n.head_px *= 3.0;
    n.head_deg *= 3.0;
    let ten_seconds = (10.0 * cfg.fps).round() as u32;
    let cond = Conditions::new(n, v.capture.as_ref(), id, cfg.fps, ten_seconds, &mut rng);
    let mut renderer = Renderer::new(id.width, id.height, &mut rng);
    let fields: Vec<ExpressionField> = v
        .events
        .iter()
        .map(|e| ExpressionField::new(id, &e.aus, e.family))
        .collect();
    let video_path = root.join(VIDEO_DIR).join(format!("{}.avi", v.name));
    let mut writer =
        VideoWriter::create_with(&video_path, VideoCodec::Mjpeg, id.width, id.height, cfg.fps)?;
    let quality = v.capture.map_or(cfg.jpeg_quality, |c| c.jpeg_quality);
    let mut buf = Vec::new();
    for k in 0..v.frames {
        let weights: Vec<(&ExpressionField, f32)> = v
            .events
            .iter()
            .zip(&fields)
            .map(|(e, f)| (f, weight(e, k)))
            .collect();
        renderer.render(id, &weights, &cond.at(k), &mut rng, &mut buf)?;
        write_jpeg(
            &long_frame_path(root, &v.name, k),
            &buf,
            id.width,
            id.height,
            quality,
        )?;
        writer.push(&buf)?;
    }
    writer.finish()?;
    Ok(())
}

/// Writes a gray JPEG (deterministic: same pixels, same bytes).
pub fn write_jpeg(path: &Path, gray: &[u8], w: u32, h: u32, quality: i32) -> Result<()> {
    use opencv::core::Mat;
    let m = Mat::new_rows_cols_with_data(h as i32, w as i32, gray)?;
    let params = [crate::imgio::IMWRITE_JPEG_QUALITY, quality];
    if !crate::imgio::imwrite(path, &m, &params)
        .with_context(|| format!("cannot write {}", path.display()))?
    {
        anyhow::bail!("OpenCV could not write {}", path.display());
    }
    Ok(())
}
