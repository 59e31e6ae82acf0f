//! A finished fold's result (`fold-NAME/result.json`): its counts, training summary, thresholds
//! and held-out predictions, bound to the configuration and to the exact clips (keys, crops,
//! labels) it was trained and tested on. A protocol resumed without the fold's checkpoint (kept
//! elsewhere, deleted for disk, another machine) scores the fold from this file instead of
//! retraining it; a file written for anything else is refused, never silently mixed in.

use super::clips::AlignedClip;
use super::trainer::TrainSummary;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name inside a fold's folder.
pub const RESULT_FILE: &str = "result.json";

/// Version of the file's layout (a change makes older files unreadable on purpose).
pub const FORMAT: u32 = 1;

/// One held-out clip's scores, as the fold produced them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPrediction {
    /// `dataset/subject/clip`.
    pub key: String,
    /// Probability per AU.
    pub prob: Vec<f32>,
}

/// What a finished fold leaves behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldResult {
    /// Layout version.
    pub format: u32,
    /// Fold name.
    pub fold: String,
    /// Hash of the configuration (as the checkpoint's) and of every clip's key, crops, apex and
    /// labels on the fold's training, validation and test sides.
    pub fingerprint: String,
    /// Clips trained on, validated on, tested on.
    pub counts: [usize; 3],
    /// The training run (its thresholds decide the predictions).
    pub summary: TrainSummary,
    /// Held-out predictions in test order.
    pub predictions: Vec<SavedPrediction>,
}

/// The clips of one fold, by side.
pub struct FoldClips<'a> {
    /// Training side.
    pub train: &'a [&'a AlignedClip],
    /// Validation side (thresholds).
    pub val: &'a [&'a AlignedClip],
    /// Held-out side.
    pub test: &'a [&'a AlignedClip],
}

/// The fingerprint of a fold: the training state's hash (configuration, epochs excluded, and the
/// training/validation keys) extended by the epochs asked for and every clip's content, so a
/// result made from other crops (another face path, another machine's decoder) never matches.
pub fn fingerprint(cfg: &Config, clips: &FoldClips<'_>) -> String {
    let state = super::state::TrainState::new(cfg, clips.train, clips.val).fingerprint;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state.hash(&mut h);
    cfg.train.epochs.hash(&mut h);
    for (side, list) in [clips.train, clips.val, clips.test].iter().enumerate() {
        side.hash(&mut h);
        list.len().hash(&mut h);
        for c in list.iter() {
            c.key.hash(&mut h);
            c.clip.size.hash(&mut h);
            c.clip.apex.hash(&mut h);
            c.clip.crops.hash(&mut h);
            c.aus.hash(&mut h);
        }
    }
    format!("{:016x}", h.finish())
}

/// The result file of the fold whose folder is `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(RESULT_FILE)
}

/// Writes `r` into `dir` (complete or not at all).
pub fn save(dir: &Path, r: &FoldResult) -> Result<()> {
    let file = path(dir);
    let mut f = crate::atomic::AtomicFile::create(&file)?;
    f.write_all(serde_json::to_string_pretty(r)?.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.commit()?;
    Ok(())
}

/// Removes `dir`'s result (the fold is being trained again).
pub fn remove(dir: &Path) -> Result<()> {
    let file = path(dir);
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// Whether `dir` holds a result file (valid or not: [`load`] checks).
pub fn exists(dir: &Path) -> bool {
    path(dir).exists()
}

/// The result in `dir`, if there is one, checked against this run's `fingerprint` and held-out
/// clips: a file for another configuration or other clips is an error naming it.
pub fn load(dir: &Path, fingerprint: &str, test: &[&AlignedClip]) -> Result<Option<FoldResult>> {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let r: FoldResult = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a fold result", file.display()))?;
    if r.format != FORMAT {
        bail!(
            "{}: format {} (this aullm writes {FORMAT}); delete it to train the fold again",
            file.display(),
            r.format
        );
    }
    if r.fingerprint != fingerprint {
        bail!(
            "{}: written for another configuration or other clips (fingerprint {}, this run {}); delete it to train the fold again",
            file.display(),
            r.fingerprint,
            fingerprint
        );
    }
    let keys_match = r.predictions.len() == test.len()
        && r.predictions.iter().zip(test).all(|(p, c)| p.key == c.key);
    if !keys_match || r.summary.stopped_early {
        bail!(
            "{}: its predictions do not cover this fold's held-out clips; delete it to train the fold again",
            file.display()
        );
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::Clip;
    use crate::data::{Dataset, SubjectKey};

    fn clip(key: &str, crops: Vec<u8>, aus: Vec<crate::au::Au>) -> AlignedClip {
        AlignedClip {
            key: key.into(),
            subject: SubjectKey {
                dataset: Dataset::Casme2,
                subject: "sub01".into(),
            },
            clip: Clip {
                size: 2,
                crops,
                apex: 1,
            },
            aus,
        }
    }

    #[test]
    fn the_fingerprint_follows_crops_labels_sides_and_epochs() {
        let cfg = Config::default();
        let a = clip("casme2/sub01/EP01", vec![1; 8], vec![1]);
        let b = clip("casme2/sub01/EP02", vec![2; 8], vec![12]);
        let of = |cfg: &Config, train: &[&AlignedClip], test: &[&AlignedClip]| {
            fingerprint(
                cfg,
                &FoldClips {
                    train,
                    val: &[],
                    test,
                },
            )
        };
        let base = of(&cfg, &[&a], &[&b]);
        assert_eq!(base, of(&cfg, &[&a], &[&b]), "not deterministic");
        let mut crops = b.clone();
        crops.clip.crops[3] = 9;
        assert_ne!(base, of(&cfg, &[&a], &[&crops]), "a changed crop");
        let mut labels = b.clone();
        labels.aus = vec![14];
        assert_ne!(base, of(&cfg, &[&a], &[&labels]), "changed labels");
        assert_ne!(base, of(&cfg, &[&b], &[&a]), "sides swapped");
        let mut longer = cfg.clone();
        longer.train.epochs += 1;
        assert_ne!(base, of(&longer, &[&a], &[&b]), "more epochs");
    }
}
