//! `aullm train` and the training half of `aullm eval`: dataset clips, protocols (all data, a
//! subject split, LOSO, subject k-fold, leave-one-dataset-out), the loop, checkpoints.
//! Includes the protocol runner ([`protocol`]) that trains each fold and hands plain scores to
//! `eval::report`. May import: config, data, eval, graph, clip, stream (the camera-path driver
//! for clip extraction), face, models, atomic, rng, runtime (model folders, to start from one).

pub mod alloc;
pub mod clips;
pub mod fold_result;
pub mod optim;
pub mod protocol;
pub mod state;
pub mod thresholds;
pub mod trainer;

use crate::au::Au;
use crate::config::Config;
use crate::data::{Dataset, LoadOptions, SubjectKey};
use crate::eval::split::{self, Fold};
use anyhow::{Context, Result, bail, ensure};
use clips::{AlignedClip, ClipSet};
use std::collections::BTreeMap;
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
                        "--dataset {s:?}: unknown format {other:?} (synth, casme2, samm, fourdme, casme3a; sammlv, casme2lv for eval --model)"
                    )
                })?,
        };
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
        ensure!(
            !a.dataset.is_long_video(),
            "--dataset {}:{}: {} annotates long videos (spotting), not clips to train on (`aullm eval --model` scores a model on it)",
            a.dataset.name(),
            a.root.display(),
            a.dataset.name()
        );
        ensure!(
            !crate::data::synth::annotations::evaluation_only(&a.root)?,
            "--dataset {}: written by `aullm synth` as an evaluation set (held-out family or held-out identities); it never trains a model (`aullm eval --model` scores one on it)",
            a.root.display()
        );
        let loaded = crate::data::load(&a.root, a.dataset, &LoadOptions::default())
            .with_context(|| format!("cannot read {} as {}", a.root.display(), a.dataset.name()))?;
        loaded.require_clean()?;
        ensure!(
            !loaded.samples.is_empty(),
            "{} has no clips",
            loaded.annotation_file.display()
        );
        let set = clips::load_or_align(&loaded, cfg, cache_dir, threads)?;
        for (subject, group) in crate::data::synth::annotations::photo_groups(&a.root)? {
            let key = SubjectKey {
                dataset: a.dataset,
                subject,
            };
            all.groups.insert(key, group);
        }
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
    /// Cross-dataset: train on every clip of `train`, test on every clip of `test`, on the AUs
    /// the paper evaluates on all of them (`cross:casme2>samm`, `cross:casme2+samm>fourdme`).
    Cross {
        /// Training datasets.
        train: Vec<Dataset>,
        /// The test dataset.
        test: Dataset,
    },
    /// Every ordered pair of the datasets given (C→S, S→C, ...; the paper's Table IV).
    CrossPairs,
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
            "cross:pairs" => Protocol::CrossPairs,
            _ if s.starts_with("cross:") => {
                let (train, test) = s[6..].split_once('>').with_context(|| {
                    format!("--protocol {s:?}: expected cross:TRAIN>TEST, e.g. cross:casme2>samm")
                })?;
                let dataset = |name: &str| -> Result<Dataset> {
                    Dataset::ALL
                        .into_iter()
                        .find(|d| d.name() == name.trim() && !d.is_long_video())
                        .with_context(|| {
                            format!(
                                "--protocol {s:?}: unknown dataset {name:?} (casme2, samm, fourdme, casme3a)"
                            )
                        })
                };
                Protocol::Cross {
                    train: train.split('+').map(dataset).collect::<Result<_>>()?,
                    test: dataset(test)?,
                }
            }
            _ if s.starts_with("split:") => {
                Protocol::Split(s[6..].split(',').map(|x| x.trim().to_string()).collect())
            }
            _ => bail!(
                "--protocol {s:?}: expected all, loso, kfold:K, lodo, cross:TRAIN>TEST, cross:pairs or split:DATASET/SUBJECT,..."
            ),
        })
    }
}

/// The folds of `protocol` over `clips` (subjects never cross; the splitter checks). LOSO and
/// k-fold leave out whole identity groups (`groups`: SynthME people from one photo; a subject not
/// listed is its own group).
pub fn folds(
    protocol: &Protocol,
    clips: &[AlignedClip],
    groups: &BTreeMap<SubjectKey, String>,
) -> Result<Vec<Fold>> {
    let keys: Vec<SubjectKey> = clips.iter().map(|c| c.subject.clone()).collect();
    // Splitting on group keys keeps each group, and so each subject, on one side.
    let group_keys: Vec<SubjectKey> = keys.iter().map(|k| group_key(k, groups)).collect();
    match protocol {
        Protocol::All => Ok(vec![Fold::new(
            "all",
            &keys,
            (0..keys.len()).collect(),
            Vec::new(),
            Vec::new(),
        )?]),
        Protocol::Loso => split::loso(&group_keys),
        Protocol::Kfold(k) => split::subject_kfold(&group_keys, *k),
        Protocol::Lodo => split::leave_one_dataset_out(&keys, split::paper_aus),
        Protocol::Cross { train, test } => Ok(vec![split::cross_dataset(
            &keys,
            train,
            *test,
            split::paper_aus,
        )?]),
        Protocol::CrossPairs => split::cross_dataset_pairs(&keys, split::paper_aus),
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

/// The AUs a protocol trains and scores: the model's (`frontend.aus`, in that order) that every
/// fold evaluates. Cross-dataset folds evaluate only the AUs their datasets share; other folds
/// (empty `aus`) evaluate all of the model's.
pub fn protocol_aus(model_aus: &[Au], folds: &[Fold]) -> Result<Vec<Au>> {
    let kept: Vec<Au> = model_aus
        .iter()
        .copied()
        .filter(|&a| folds.iter().all(|f| f.aus.is_empty() || f.aus.contains(&a)))
        .collect();
    ensure!(
        !kept.is_empty(),
        "none of frontend.aus {model_aus:?} is evaluated by every fold (shared AUs: {:?})",
        folds.iter().map(|f| &f.aus).collect::<Vec<_>>()
    );
    Ok(kept)
}

/// `cfg` training and scoring only `aus` (the AU head and the graph get one node per AU).
pub fn with_aus(cfg: &Config, aus: &[Au]) -> Config {
    let mut c = cfg.clone();
    if c.frontend.aus != aus {
        c.frontend.aus = aus.to_vec();
        c.reasoner.num_aus = aus.len();
    }
    c
}

/// Splits a fold's training indices into inner-train and validation by subject, or by identity
/// group under `train.val_by = "group"` (see [`split::inner_split`]).
pub fn inner_split(
    train: &[usize],
    clips: &[AlignedClip],
    groups: &BTreeMap<SubjectKey, String>,
    tc: &crate::config::TrainConfig,
) -> (Vec<usize>, Vec<usize>) {
    let keys: Vec<SubjectKey> = match tc.val_by {
        crate::config::ValBy::Subject => clips.iter().map(|c| c.subject.clone()).collect(),
        crate::config::ValBy::Group => clips
            .iter()
            .map(|c| group_key(&c.subject, groups))
            .collect(),
    };
    let refs: Vec<&SubjectKey> = keys.iter().collect();
    split::inner_split(train, &refs, tc.val_fraction, tc.seed)
}

/// The key a subject's identity group splits on (the subject itself when it has no group).
fn group_key(k: &SubjectKey, groups: &BTreeMap<SubjectKey, String>) -> SubjectKey {
    SubjectKey {
        dataset: k.dataset,
        subject: groups.get(k).cloned().unwrap_or_else(|| k.subject.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::Clip;

    fn clip(d: Dataset, subject: &str) -> AlignedClip {
        AlignedClip {
            key: format!("{}/{subject}/c", d.name()),
            subject: SubjectKey {
                dataset: d,
                subject: subject.into(),
            },
            clip: Clip::new(8),
            aus: vec![],
        }
    }

    #[test]
    fn cross_dataset_protocols_parse_and_name_bad_datasets() {
        assert_eq!(
            "cross:casme2>samm".parse::<Protocol>().unwrap(),
            Protocol::Cross {
                train: vec![Dataset::Casme2],
                test: Dataset::Samm
            }
        );
        assert_eq!(
            "cross:casme2+samm>fourdme".parse::<Protocol>().unwrap(),
            Protocol::Cross {
                train: vec![Dataset::Casme2, Dataset::Samm],
                test: Dataset::FourDme
            }
        );
        assert_eq!(
            "cross:pairs".parse::<Protocol>().unwrap(),
            Protocol::CrossPairs
        );
        let e = "cross:casme2>sammlv".parse::<Protocol>().unwrap_err();
        assert!(e.to_string().contains("sammlv"), "{e}");
        assert!("cross:casme2".parse::<Protocol>().is_err());
    }

    #[test]
    fn cross_dataset_folds_train_and_score_the_shared_aus() {
        let clips = vec![
            clip(Dataset::Casme2, "sub01"),
            clip(Dataset::Casme2, "sub02"),
            clip(Dataset::Samm, "006"),
        ];
        let model = [1, 2, 4, 7, 12, 14, 15, 17];
        let c2s = Protocol::Cross {
            train: vec![Dataset::Casme2],
            test: Dataset::Samm,
        };
        let f = folds(&c2s, &clips, &BTreeMap::new()).unwrap();
        assert_eq!(
            (f[0].train.clone(), f[0].test.clone()),
            (vec![0, 1], vec![2])
        );
        // CASME II ∩ SAMM in the paper's lists: AU2, 4, 7, 12.
        assert_eq!(protocol_aus(&model, &f).unwrap(), vec![2, 4, 7, 12]);
        let lodo = folds(&Protocol::Lodo, &clips, &BTreeMap::new()).unwrap();
        assert_eq!(lodo.len(), 2);
        assert_eq!(protocol_aus(&model, &lodo).unwrap(), vec![2, 4, 7, 12]);
        // Within-dataset protocols keep the model's AUs.
        let loso = folds(&Protocol::Loso, &clips, &BTreeMap::new()).unwrap();
        assert_eq!(protocol_aus(&model, &loso).unwrap(), model.to_vec());
        // A model without any shared AU is an error, not an empty run.
        assert!(protocol_aus(&[1, 14], &f).is_err());
        let cfg = with_aus(&Config::default(), &[2, 4, 7, 12]);
        assert_eq!(cfg.frontend.aus, vec![2, 4, 7, 12]);
        assert_eq!(cfg.reasoner.num_aus, 4);
        cfg.validate().unwrap();
    }

    #[test]
    fn people_from_one_photo_stay_on_one_side_of_every_fold() {
        let clips: Vec<AlignedClip> = ["sub01", "sub02", "sub03", "sub04", "sub05", "sub06"]
            .iter()
            .flat_map(|s| [clip(Dataset::Casme2, s), clip(Dataset::Casme2, s)])
            .collect();
        let key = |s: &str| SubjectKey {
            dataset: Dataset::Casme2,
            subject: s.into(),
        };
        // sub01..sub03 are three people in one group photo; the others are single portraits.
        let groups: BTreeMap<SubjectKey, String> = ["sub01", "sub02", "sub03"]
            .iter()
            .map(|s| (key(s), "faces-group".to_string()))
            .collect();
        let loso = folds(&Protocol::Loso, &clips, &groups).unwrap();
        assert_eq!(
            loso.len(),
            4,
            "one fold per photo: the group and three portraits"
        );
        for protocol in [Protocol::Loso, Protocol::Kfold(2), Protocol::Kfold(3)] {
            for f in folds(&protocol, &clips, &groups).unwrap() {
                let tested = |s: &str| f.test.iter().any(|&i| clips[i].subject == key(s));
                assert!(
                    tested("sub01") == tested("sub02") && tested("sub02") == tested("sub03"),
                    "{protocol:?} {} splits the group photo",
                    f.name
                );
            }
        }
        // Without groups every subject is its own.
        assert_eq!(
            folds(&Protocol::Loso, &clips, &BTreeMap::new())
                .unwrap()
                .len(),
            6
        );
        // The inner validation split keeps the photo together only under val_by = "group".
        let train: Vec<usize> = (0..clips.len()).collect();
        let split_photo = |tc: &crate::config::TrainConfig| {
            (1..40).any(|seed| {
                let tc = crate::config::TrainConfig { seed, ..tc.clone() };
                let (tr, va) = inner_split(&train, &clips, &groups, &tc);
                assert_eq!(tr.len() + va.len(), clips.len());
                let val = |s: &str| va.iter().any(|&i| clips[i].subject == key(s));
                !(val("sub01") == val("sub02") && val("sub02") == val("sub03"))
            })
        };
        let by_subject = crate::config::TrainConfig {
            val_fraction: 0.34,
            ..Default::default()
        };
        let by_group = crate::config::TrainConfig {
            val_by: crate::config::ValBy::Group,
            ..by_subject.clone()
        };
        assert!(
            split_photo(&by_subject),
            "subjects split the photo for some seed"
        );
        assert!(!split_photo(&by_group), "groups never split the photo");
    }
}
