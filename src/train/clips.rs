//! Dataset clips as the model sees them: every frame of each annotated expression run through the
//! same face tracker and alignment as live video, kept as aligned gray crops and cached on disk
//! (aligning is the slow part and does not depend on the model).

use crate::clip::Clip;
use crate::config::Config;
use crate::data::{Dataset, Loaded, Sample, SubjectKey};
use crate::face::FaceTracker;
use crate::stream::camera::{self, DriveOptions, Flow, ImageFrames};
use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Bumped when alignment output changes in a way the cache key cannot see.
const CACHE_VERSION: u32 = 2;

/// One expression's aligned crops (every frame onset..=offset) with its labels.
#[derive(Debug, Clone)]
pub struct AlignedClip {
    /// `dataset/subject/clip`.
    pub key: String,
    /// Whose face it is (splits never separate a subject).
    pub subject: SubjectKey,
    /// The crops and the apex.
    pub clip: Clip,
    /// Coded AUs (any side).
    pub aus: Vec<crate::au::Au>,
}

impl AlignedClip {
    /// 0/1 targets for `aus` (the model's AU order).
    pub fn targets(&self, aus: &[crate::au::Au]) -> Vec<f32> {
        aus.iter()
            .map(|a| f32::from(self.aus.contains(a) as u8))
            .collect()
    }
}

/// The clips of one or more datasets, and the samples that could not be aligned (with why).
#[derive(Debug, Clone, Default)]
pub struct ClipSet {
    /// Aligned clips, in loader order.
    pub clips: Vec<AlignedClip>,
    /// `key: reason` for samples left out.
    pub skipped: Vec<String>,
    /// Identity group per subject where subjects share one (SynthME people from one photo); a
    /// subject not listed is its own group. Subject-wise splits keep a group on one side.
    pub groups: std::collections::BTreeMap<SubjectKey, String>,
}

/// Per-clip metadata stored beside the crops in the cache file.
#[derive(Debug, Serialize, Deserialize)]
struct CachedClip {
    key: String,
    dataset: Dataset,
    subject: String,
    apex: usize,
    aus: Vec<crate::au::Au>,
}

/// Aligns every sample of `loaded` (or reads the result from `cache_dir`, keyed by the samples,
/// their frame files' sizes and the face/alignment configuration).
pub fn load_or_align(
    loaded: &Loaded,
    cfg: &Config,
    cache_dir: &Path,
    threads: usize,
) -> Result<ClipSet> {
    let key = cache_key(loaded, cfg);
    let path = cache_dir.join(format!("{}-{key:016x}.safetensors", loaded.dataset.name()));
    if path.exists() {
        match read_cache(&path) {
            Ok(set) => {
                tracing::info!(
                    "clips: {} aligned clips from cache {}",
                    set.clips.len(),
                    path.display()
                );
                return Ok(set);
            }
            Err(e) => tracing::warn!("clips: ignoring unreadable cache {}: {e:#}", path.display()),
        }
    }
    let set = align_samples(&loaded.samples, cfg, threads)?;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create clip cache folder {}", cache_dir.display()))?;
    write_cache(&path, &set)?;
    Ok(set)
}

/// Runs the face tracker over each sample's frames on `threads` threads.
pub fn align_samples(samples: &[Sample], cfg: &Config, threads: usize) -> Result<ClipSet> {
    let threads = threads.max(1).min(samples.len().max(1));
    let chunk = samples.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Result<AlignedClip, String>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<Vec<Result<AlignedClip, String>>> {
                    let mut tracker =
                        FaceTracker::from_config(&cfg.face, &cfg.align.for_clips(), &cfg.models)?;
                    Ok(part
                        .iter()
                        .map(|smp| {
                            align_one(smp, &mut tracker, cfg.align.size as usize)
                                .map_err(|e| format!("{}: {e:#}", sample_key(smp)))
                        })
                        .collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("an alignment thread panicked"))
            })
            .collect()
    });
    let mut set = ClipSet::default();
    for r in results {
        for c in r? {
            match c {
                Ok(c) => set.clips.push(c),
                Err(e) => set.skipped.push(e),
            }
        }
    }
    if !set.skipped.is_empty() {
        tracing::warn!(
            "clips: {} sample(s) left out: {}",
            set.skipped.len(),
            set.skipped.join("; ")
        );
    }
    Ok(set)
}

/// `dataset/subject/clip`.
pub fn sample_key(s: &Sample) -> String {
    format!("{}/{}/{}", s.dataset.name(), s.subject, s.clip)
}

/// Aligns one sample's frames onset..=offset with the clip alignment (`AlignConfig::for_clips`).
/// Frames where the tracker holds no face reuse the last crop; a sample with no face at all is an
/// error.
fn align_one(s: &Sample, tracker: &mut FaceTracker, size: usize) -> Result<AlignedClip> {
    tracker.reset();
    let mut crops: Vec<Option<Vec<u8>>> = Vec::new();
    // The rate only times the frames; no spotting runs on clips.
    let mut source = ImageFrames::new(sample_key(s), s.frame_paths(), 200.0);
    let rep = camera::drive(&mut source, tracker, &DriveOptions::new(), |f| {
        crops.push(f.faces.into_iter().next().map(|o| o.crop));
        Ok(Flow::Continue)
    })?;
    if let Some(e) = rep.error {
        bail!("{e}");
    }
    let first = crops
        .iter()
        .position(|c| c.is_some())
        .with_context(|| format!("no face found in {} frames", crops.len()))?;
    let mut out = Vec::with_capacity(crops.len() * size * size);
    let mut last = crops[first].clone().unwrap_or_default();
    for c in crops {
        if let Some(c) = c {
            last = c;
        }
        out.extend_from_slice(&last);
    }
    let apex = (s.apex_or_middle().saturating_sub(s.onset)) as usize;
    let n = out.len() / (size * size);
    Ok(AlignedClip {
        key: sample_key(s),
        subject: s.subject_key(),
        clip: Clip {
            size,
            crops: out,
            apex: apex.min(n - 1),
        },
        aus: s.aus.iter().map(|a| a.code).collect(),
    })
}

/// Hash of everything the aligned crops depend on.
fn cache_key(loaded: &Loaded, cfg: &Config) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    CACHE_VERSION.hash(&mut h);
    toml::to_string(&cfg.face).unwrap_or_default().hash(&mut h);
    // The alignment clips are cut with, not the live one: `align.reanchor_px` does not change them.
    toml::to_string(&cfg.align.for_clips())
        .unwrap_or_default()
        .hash(&mut h);
    for s in &loaded.samples {
        sample_key(s).hash(&mut h);
        (s.onset, s.apex, s.offset).hash(&mut h);
        s.aus
            .iter()
            .map(|a| a.code)
            .collect::<Vec<_>>()
            .hash(&mut h);
        for p in [s.frames.path(s.onset), s.frames.path(s.offset)] {
            p.hash(&mut h);
            std::fs::metadata(&p)
                .map(|m| m.len())
                .unwrap_or(0)
                .hash(&mut h);
        }
    }
    h.finish()
}

fn write_cache(path: &Path, set: &ClipSet) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(set.clips.len());
    let mut meta = Vec::with_capacity(set.clips.len());
    for (i, c) in set.clips.iter().enumerate() {
        let (clip, size) = (&c.clip, c.clip.size);
        let t = Tensor::from_vec(
            clip.crops.clone(),
            (clip.frames(), size, size),
            &Device::Cpu,
        )?;
        tensors.push((format!("c{i}"), t));
        meta.push(CachedClip {
            key: c.key.clone(),
            dataset: c.subject.dataset,
            subject: c.subject.subject.clone(),
            apex: c.clip.apex,
            aus: c.aus.clone(),
        });
    }
    let metadata: HashMap<String, String> = [
        ("clips".to_string(), serde_json::to_string(&meta)?),
        ("skipped".to_string(), serde_json::to_string(&set.skipped)?),
    ]
    .into_iter()
    .collect();
    let bytes =
        crate::graph::checkpoint::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)
            .context("cannot serialise the clip cache")?;
    let mut f = crate::atomic::AtomicFile::create(path)?;
    use std::io::Write;
    f.write_all(&bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}

fn read_cache(path: &Path) -> Result<ClipSet> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let clips: Vec<CachedClip> =
        serde_json::from_str(meta.get("clips").map(String::as_str).unwrap_or("[]"))?;
    let skipped: Vec<String> =
        serde_json::from_str(meta.get("skipped").map(String::as_str).unwrap_or("[]"))?;
    let mut set = ClipSet {
        clips: Vec::with_capacity(clips.len()),
        skipped,
        groups: Default::default(),
    };
    for (i, m) in clips.into_iter().enumerate() {
        let view = st.tensor(&format!("c{i}"))?;
        let shape = view.shape();
        if shape.len() != 3 || shape[1] != shape[2] {
            bail!("clip {i} in {} has shape {shape:?}", path.display());
        }
        set.clips.push(AlignedClip {
            key: m.key,
            subject: SubjectKey {
                dataset: m.dataset,
                subject: m.subject,
            },
            clip: Clip {
                size: shape[1],
                crops: view.data().to_vec(),
                apex: m.apex,
            },
            aus: m.aus,
        });
    }
    Ok(set)
}

/// The default clip cache folder: `clips/` under the model cache's parent folder.
pub fn default_cache_dir(cfg: &Config) -> PathBuf {
    let root = cfg.cache_dir();
    root.parent()
        .map(Path::to_path_buf)
        .unwrap_or(root)
        .join("clips")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Loaded {
        Loaded {
            dataset: Dataset::Casme2,
            root: PathBuf::from("d"),
            annotation_file: PathBuf::from("d/coding.xlsx"),
            frames_root: PathBuf::from("d"),
            samples: Vec::new(),
            intervals: Vec::new(),
            problems: Vec::new(),
            excluded_rows: 0,
        }
    }

    #[test]
    fn the_cache_key_follows_the_clip_alignment_not_the_live_one() {
        let loaded = empty();
        let base = Config::default();
        let mut live = base.clone();
        live.align.reanchor_px = 4.0;
        assert_eq!(cache_key(&loaded, &base), cache_key(&loaded, &live));
        let mut size = base.clone();
        size.align.size = 96;
        assert_ne!(cache_key(&loaded, &base), cache_key(&loaded, &size));
    }
}
