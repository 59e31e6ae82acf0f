//! Cross-validation splits that keep every subject on one side: leave-one-subject-out, subject
//! k-fold, and cross-dataset (train on some datasets, test on another, on their AU intersection).
//!
//! Splits work on one [`SubjectKey`] per sample (the dataset is part of a subject's identity), and
//! every [`Fold`] is checked on construction: a subject in both train and test is an error, never
//! a silent leak.

use crate::au::Au;
use crate::data::{Dataset, SubjectKey};
use crate::rng::Rng;
use anyhow::{Result, bail, ensure};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One train/test split: indices into the sample list it was made from.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// Name: the held-out subject ("casme2/sub01"), "fold 3/5", or a protocol ("C→S").
    pub name: String,
    /// Training sample indices (sorted).
    pub train: Vec<usize>,
    /// Test sample indices (sorted).
    pub test: Vec<usize>,
    /// AUs evaluated in this fold (cross-dataset: the intersection); empty = the caller's list.
    pub aus: Vec<Au>,
}

impl Fold {
    /// Builds a fold and enforces that no subject is on both sides and no sample is used twice.
    pub fn new(
        name: impl Into<String>,
        keys: &[SubjectKey],
        mut train: Vec<usize>,
        mut test: Vec<usize>,
        aus: Vec<Au>,
    ) -> Result<Self> {
        let name = name.into();
        train.sort_unstable();
        test.sort_unstable();
        for &i in train.iter().chain(&test) {
            ensure!(
                i < keys.len(),
                "fold {name}: sample index {i} is out of range ({} samples)",
                keys.len()
            );
        }
        let train_subjects: BTreeSet<&SubjectKey> = train.iter().map(|&i| &keys[i]).collect();
        if let Some(&i) = test.iter().find(|&&i| train_subjects.contains(&keys[i])) {
            bail!(
                "fold {name}: subject {} is in both train and test (subjects never cross a split)",
                keys[i]
            );
        }
        Ok(Self {
            name,
            train,
            test,
            aus,
        })
    }

    /// Asserts the invariant again (for folds built elsewhere or edited).
    pub fn verify(&self, keys: &[SubjectKey]) -> Result<()> {
        Fold::new(
            self.name.clone(),
            keys,
            self.train.clone(),
            self.test.clone(),
            self.aus.clone(),
        )
        .map(|_| ())
    }
}

/// Sample indices per subject, subjects sorted (so fold order is reproducible).
fn subjects(keys: &[SubjectKey]) -> BTreeMap<&SubjectKey, Vec<usize>> {
    subjects_of(keys, &(0..keys.len()).collect::<Vec<_>>())
}

/// Leave-one-subject-out: one fold per subject, tested on that subject, trained on all others.
pub fn loso(keys: &[SubjectKey]) -> Result<Vec<Fold>> {
    let by_subject = subjects(keys);
    ensure!(
        by_subject.len() >= 2,
        "leave-one-subject-out needs at least 2 subjects, got {}",
        by_subject.len()
    );
    by_subject
        .iter()
        .map(|(k, test)| {
            let train = (0..keys.len())
                .filter(|i| keys[*i] != **k)
                .collect::<Vec<_>>();
            Fold::new(k.to_string(), keys, train, test.clone(), Vec::new())
        })
        .collect()
}

/// Subject k-fold: subjects (largest first) go to the fold with the fewest samples so far, as
/// scikit-learn's GroupKFold does; deterministic.
pub fn subject_kfold(keys: &[SubjectKey], k: usize) -> Result<Vec<Fold>> {
    let by_subject = subjects(keys);
    ensure!(k >= 2, "k-fold needs k >= 2, got {k}");
    ensure!(
        by_subject.len() >= k,
        "{k}-fold needs at least {k} subjects, got {}",
        by_subject.len()
    );
    let mut order: Vec<(&SubjectKey, &Vec<usize>)> =
        by_subject.iter().map(|(k, v)| (*k, v)).collect();
    // Largest subjects first; the BTreeMap order breaks ties, so the result is reproducible.
    order.sort_by_key(|(_, idx)| std::cmp::Reverse(idx.len()));
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (_, idx) in order {
        let f = (0..k).min_by_key(|&f| (folds[f].len(), f)).unwrap_or(0);
        folds[f].extend(idx);
    }
    folds
        .iter()
        .enumerate()
        .map(|(f, test)| {
            let in_test: BTreeSet<usize> = test.iter().copied().collect();
            let train = (0..keys.len()).filter(|i| !in_test.contains(i)).collect();
            Fold::new(
                format!("fold {}/{k}", f + 1),
                keys,
                train,
                test.clone(),
                Vec::new(),
            )
        })
        .collect()
}

/// `fold` learning from at most `n` of its training clips (0 = all), drawn evenly over its
/// subjects: subjects in a seeded order take one clip each in turn, each from its own seeded
/// shuffle. The draw order depends only on the fold and the seed, so a smaller `n` takes a prefix
/// of a larger one's clips (nested learning-curve points). The test side is unchanged.
pub fn cap_training(fold: &Fold, keys: &[SubjectKey], n: usize, seed: u64) -> Result<Fold> {
    if n == 0 || fold.train.len() <= n {
        return Ok(fold.clone());
    }
    let mut rng = Rng::new(seed ^ 0x00c4_9c1a_5e11);
    let mut by_subject: Vec<Vec<usize>> = subjects_of(keys, &fold.train).into_values().collect();
    for clips in &mut by_subject {
        shuffle(clips, &mut rng);
    }
    shuffle(&mut by_subject, &mut rng);
    let mut picked = Vec::with_capacity(n);
    let mut round = 0;
    while picked.len() < n {
        for clips in &by_subject {
            if picked.len() < n && round < clips.len() {
                picked.push(clips[round]);
            }
        }
        round += 1;
    }
    Fold::new(
        fold.name.clone(),
        keys,
        picked,
        fold.test.clone(),
        fold.aus.clone(),
    )
}

/// Fisher–Yates with the project's seeded generator.
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The indices `idx` per subject, subjects sorted.
fn subjects_of<'a>(keys: &'a [SubjectKey], idx: &[usize]) -> BTreeMap<&'a SubjectKey, Vec<usize>> {
    let mut m: BTreeMap<&SubjectKey, Vec<usize>> = BTreeMap::new();
    for &i in idx {
        m.entry(&keys[i]).or_default().push(i);
    }
    m
}

/// The AUs every listed dataset evaluates (`aus_of` gives each dataset's list).
pub fn au_intersection(datasets: &[Dataset], aus_of: impl Fn(Dataset) -> Vec<Au>) -> Vec<Au> {
    let mut it = datasets.iter();
    let Some(first) = it.next() else {
        return Vec::new();
    };
    let mut set: BTreeSet<Au> = aus_of(*first).into_iter().collect();
    for d in it {
        let other: BTreeSet<Au> = aus_of(*d).into_iter().collect();
        set = set.intersection(&other).copied().collect();
    }
    set.into_iter().collect()
}

/// Cross-dataset: train on every sample of `train`, test on every sample of `test`, evaluated on
/// the AUs all of them share. Named with the papers' letters ("C→S", "CS→D").
pub fn cross_dataset(
    keys: &[SubjectKey],
    train: &[Dataset],
    test: Dataset,
    aus_of: impl Fn(Dataset) -> Vec<Au>,
) -> Result<Fold> {
    ensure!(
        !train.is_empty(),
        "cross-dataset split without a training dataset"
    );
    ensure!(
        !train.contains(&test),
        "cross-dataset split: {test} is both a training and the test dataset"
    );
    let tr: Vec<usize> = (0..keys.len())
        .filter(|&i| train.contains(&keys[i].dataset))
        .collect();
    let te: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].dataset == test)
        .collect();
    ensure!(!tr.is_empty(), "cross-dataset split: no training samples");
    ensure!(!te.is_empty(), "cross-dataset split: no samples of {test}");
    let mut all = train.to_vec();
    all.push(test);
    let aus = au_intersection(&all, &aus_of);
    ensure!(
        !aus.is_empty(),
        "cross-dataset split: the datasets share no AU"
    );
    let name = format!(
        "{}→{}",
        train.iter().map(|d| d.letter()).collect::<String>(),
        test.letter()
    );
    Fold::new(name, keys, tr, te, aus)
}

/// Every ordered pair of the datasets present (C→S, S→C, C→D, ...), as in the paper's Table IV.
pub fn cross_dataset_pairs(
    keys: &[SubjectKey],
    aus_of: impl Fn(Dataset) -> Vec<Au>,
) -> Result<Vec<Fold>> {
    let present: BTreeSet<Dataset> = keys.iter().map(|k| k.dataset).collect();
    ensure!(
        present.len() >= 2,
        "cross-dataset pairs need at least 2 datasets, got {}",
        present.len()
    );
    let mut out = Vec::new();
    for &a in &present {
        for &b in &present {
            if a != b {
                out.push(cross_dataset(keys, &[a], b, &aus_of)?);
            }
        }
    }
    Ok(out)
}

/// Leave-one-dataset-out: for each dataset, train on all the others and test on it.
pub fn leave_one_dataset_out(
    keys: &[SubjectKey],
    aus_of: impl Fn(Dataset) -> Vec<Au>,
) -> Result<Vec<Fold>> {
    let present: BTreeSet<Dataset> = keys.iter().map(|k| k.dataset).collect();
    ensure!(
        present.len() >= 2,
        "leave-one-dataset-out needs at least 2 datasets, got {}",
        present.len()
    );
    present
        .iter()
        .map(|&test| {
            let train: Vec<Dataset> = present.iter().copied().filter(|&d| d != test).collect();
            cross_dataset(keys, &train, test, &aus_of)
        })
        .collect()
}

/// The AU list the paper evaluates for a dataset, for [`cross_dataset`]'s `aus_of`; datasets the
/// paper does not evaluate give an empty list (so they share no AU until the caller says which).
pub fn paper_aus(d: Dataset) -> Vec<Au> {
    d.paper_aus().map(|a| a.to_vec()).unwrap_or_default()
}

/// Splits a fold's training indices (into `keys`, one subject per sample) into inner-train and
/// validation by subject: about
/// `fraction` of the subjects (at least one when there are two or more), chosen by `seed`.
pub fn inner_split(
    train: &[usize],
    keys: &[&SubjectKey],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let subjects: BTreeSet<&SubjectKey> = train.iter().map(|&i| keys[i]).collect();
    let mut subjects: Vec<&SubjectKey> = subjects.into_iter().collect();
    if fraction <= 0.0 || subjects.len() < 2 {
        return (train.to_vec(), Vec::new());
    }
    shuffle(&mut subjects, &mut Rng::new(seed ^ 0x0005_eed0_f7a1));
    let n_val = ((subjects.len() as f64 * fraction).round() as usize).clamp(1, subjects.len() - 1);
    let val_subjects: BTreeSet<&SubjectKey> = subjects[..n_val].iter().copied().collect();
    train
        .iter()
        .partition(|&&i| !val_subjects.contains(keys[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: Dataset, s: &str) -> SubjectKey {
        SubjectKey {
            dataset: d,
            subject: s.to_string(),
        }
    }

    #[test]
    fn capped_training_sets_are_nested_spread_over_subjects_and_keep_the_test_side() {
        let keys: Vec<SubjectKey> = (0..40)
            .map(|i| key(Dataset::Casme2, &format!("sub{:02}", i / 10)))
            .collect();
        let fold = Fold::new("f", &keys, (0..30).collect(), (30..40).collect(), vec![]).unwrap();
        let small = cap_training(&fold, &keys, 7, 3).unwrap();
        let large = cap_training(&fold, &keys, 13, 3).unwrap();
        assert_eq!(small.train.len(), 7);
        assert_eq!(large.train.len(), 13);
        assert!(
            small.train.iter().all(|i| large.train.contains(i)),
            "not nested"
        );
        assert_eq!(small.test, fold.test);
        // Three subjects, seven clips: 3 + 2 + 2 in some order, never 7 of one person.
        let mut per = BTreeMap::new();
        for &i in &small.train {
            *per.entry(&keys[i]).or_insert(0) += 1;
        }
        let mut counts: Vec<i32> = per.into_values().collect();
        counts.sort();
        assert_eq!(counts, vec![2, 2, 3]);
        // Another seed draws other clips; 0 and a cap above the pool keep every clip.
        assert_ne!(cap_training(&fold, &keys, 7, 4).unwrap().train, small.train);
        assert_eq!(cap_training(&fold, &keys, 0, 3).unwrap().train, fold.train);
        assert_eq!(cap_training(&fold, &keys, 99, 3).unwrap().train, fold.train);
    }

    #[test]
    fn a_fold_with_a_shared_subject_is_refused() {
        let keys = vec![key(Dataset::Casme2, "sub01"), key(Dataset::Casme2, "sub01")];
        let e = Fold::new("bad", &keys, vec![0], vec![1], vec![]).unwrap_err();
        assert!(e.to_string().contains("both train and test"), "{e}");
        // Same subject id in another dataset is another person.
        let keys = vec![key(Dataset::Casme2, "006"), key(Dataset::Samm, "006")];
        Fold::new("ok", &keys, vec![0], vec![1], vec![]).unwrap();
    }
}
