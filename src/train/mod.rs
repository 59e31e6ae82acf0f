//! `aullm train` and the training half of `aullm eval`: dataset clips, protocols (all data, a
//! subject split, LOSO, subject k-fold, leave-one-dataset-out), the loop, checkpoints.

pub mod alloc;
pub mod clips;
pub mod optim;
pub mod protocol;
pub mod state;
pub mod thresholds;
pub mod trainer;

use crate::config::Config;
use crate::data::{Dataset, LoadOptions, SubjectKey};
use crate::eval::split::{self, Fold};
use crate::rng::Rng;
use anyhow::{Context, Result, bail, ensure};
use clips::{AlignedClip, ClipSet};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A `--dataset FORMAT:PATH` argument (`synth` is SynthME, read by the CASME II loader).
#[derive(Debug, Clone)]
pub struct DatasetArg {
    /// The loader.
    pub dataset: Dataset,
    /// The folder.
    pub root: PathBuf,
}

impl FromStr for DatasetArg {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (fmt, path) = s.split_once(':').with_context(|| {
            format!(
                "--dataset {s:?}: expected FORMAT:PATH, e.g. synth:out/synth or casme2:/data/CASME2"
            )
        })?;
        let dataset = match fmt {
            "synth" | "synthme" => Dataset::Casme2,
            other => Dataset::ALL
                .into_iter()
                .find(|d| d.name() == other)
                .with_context(|| {
                    format!(
                        "--dataset {s:?}: unknown format {other:?} (synth, casme2, samm, fourdme, casme3a)"
                    )
                })?,
        };
        ensure!(
            !dataset.is_long_video(),
            "--dataset {s:?}: {} annotates long videos (spotting), not clips to train on",
            dataset.name()
        );
        Ok(DatasetArg {
            dataset,
            root: PathBuf::from(path),
        })
    }
}

/// Loads and aligns every dataset's clips (cached under `cache_dir`).
pub fn load_clips(
    args: &[DatasetArg],
    cfg: &Config,
    cache_dir: &Path,
    threads: usize,
) -> Result<ClipSet> {
    ensure!(!args.is_empty(), "no --dataset given");
    let mut all = ClipSet::default();
    for a in args {
        let loaded = crate::data::load(&a.root, a.dataset, &LoadOptions::default())
            .with_context(|| format!("cannot read {} as {}", a.root.display(), a.dataset.name()))?;
        loaded.require_clean()?;
        ensure!(
            !loaded.samples.is_empty(),
            "{} has no clips",
            loaded.annotation_file.display()
        );
        let set = clips::load_or_align(&loaded, cfg, cache_dir, threads)?;
        all.clips.extend(set.clips);
        all.skipped.extend(set.skipped);
    }
    Ok(all)
}

/// How clips are split into training and test folds.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// Train on everything (no test fold): the model to ship.
    All,
    /// Leave-one-subject-out.
    Loso,
    /// Subject k-fold (GroupKFold).
    Kfold(usize),
    /// Leave-one-dataset-out (on the datasets' shared AUs).
    Lodo,
    /// Test on the listed subjects (`dataset/subject`), train on the rest.
    Split(Vec<String>),
}

impl FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "all" => Protocol::All,
            "loso" => Protocol::Loso,
            "lodo" => Protocol::Lodo,
            _ if s.starts_with("kfold:") => Protocol::Kfold(
                s[6..]
                    .parse()
                    .ok()
                    .filter(|&k: &usize| k >= 2)
                    .with_context(|| format!("--protocol {s:?}: expected kfold:K with K >= 2"))?,
            ),
            _ if s.starts_with("split:") => {
                Protocol::Split(s[6..].split(',').map(|x| x.trim().to_string()).collect())
            }
            _ => bail!(
                "--protocol {s:?}: expected all, loso, kfold:K, lodo or split:DATASET/SUBJECT,..."
            ),
        })
    }
}

/// The folds of `protocol` over `clips` (subjects never cross; the splitter checks).
pub fn folds(protocol: &Protocol, clips: &[AlignedClip]) -> Result<Vec<Fold>> {
    let keys: Vec<SubjectKey> = clips.iter().map(|c| c.subject.clone()).collect();
    match protocol {
        Protocol::All => Ok(vec![Fold::new(
            "all",
            &keys,
            (0..keys.len()).collect(),
            Vec::new(),
            Vec::new(),
        )?]),
        Protocol::Loso => split::loso(&keys),
        Protocol::Kfold(k) => split::subject_kfold(&keys, *k),
        Protocol::Lodo => split::leave_one_dataset_out(&keys, split::paper_aus),
        Protocol::Split(names) => {
            let test: Vec<usize> = (0..keys.len())
                .filter(|&i| names.iter().any(|n| *n == keys[i].to_string()))
                .collect();
            ensure!(
                !test.is_empty(),
                "--protocol split: none of {names:?} is a subject here (subjects look like {})",
                keys.first().map(|k| k.to_string()).unwrap_or_default()
            );
            let train = (0..keys.len()).filter(|i| !test.contains(i)).collect();
            Ok(vec![Fold::new("split", &keys, train, test, Vec::new())?])
        }
    }
}

/// Splits a fold's training indices into inner-train and validation by subject: about
/// `fraction` of the subjects (at least one when there are two or more), chosen by `seed`.
pub fn inner_split(
    train: &[usize],
    clips: &[AlignedClip],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let subjects: BTreeSet<&SubjectKey> = train.iter().map(|&i| &clips[i].subject).collect();
    let mut subjects: Vec<&SubjectKey> = subjects.into_iter().collect();
    if fraction <= 0.0 || subjects.len() < 2 {
        return (train.to_vec(), Vec::new());
    }
    let mut rng = Rng::new(seed ^ 0x0005_eed0_f7a1);
    for i in (1..subjects.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        subjects.swap(i, j);
    }
    let n_val = ((subjects.len() as f64 * fraction).round() as usize).clamp(1, subjects.len() - 1);
    let val_subjects: BTreeSet<&SubjectKey> = subjects[..n_val].iter().copied().collect();
    train
        .iter()
        .partition(|&&i| !val_subjects.contains(&clips[i].subject))
}
