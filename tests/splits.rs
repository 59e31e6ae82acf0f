//! The splitter never lets a subject cross a split: LOSO, subject k-fold, cross-dataset pairs and
//! leave-one-dataset-out, on many pseudo-random sample lists.

use aullm::data::{Dataset, SubjectKey};
use aullm::eval::split::{
    Fold, cross_dataset, cross_dataset_pairs, leave_one_dataset_out, loso, paper_aus, subject_kfold,
};
use std::collections::BTreeSet;

/// A deterministic sample list: `n` samples over a few subjects of three datasets, where SAMM and
/// CASME II share subject numbers (different people).
fn keys(seed: u64, n: usize) -> Vec<SubjectKey> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = [Dataset::Casme2, Dataset::Samm, Dataset::FourDme][(x >> 33) as usize % 3];
            let s = (x >> 40) as usize % 6;
            SubjectKey {
                dataset: d,
                subject: format!("{s:03}"),
            }
        })
        .collect()
}

fn assert_disjoint(keys: &[SubjectKey], f: &Fold) {
    let train: BTreeSet<&SubjectKey> = f.train.iter().map(|&i| &keys[i]).collect();
    let test: BTreeSet<&SubjectKey> = f.test.iter().map(|&i| &keys[i]).collect();
    assert!(
        train.is_disjoint(&test),
        "{}: {:?}",
        f.name,
        train.intersection(&test).collect::<Vec<_>>()
    );
    let tr: BTreeSet<usize> = f.train.iter().copied().collect();
    assert!(f.test.iter().all(|i| !tr.contains(i)), "{}", f.name);
    f.verify(keys).unwrap();
}

#[test]
fn loso_and_kfold_are_subject_disjoint_and_test_everything_once() {
    for seed in 0..50 {
        let k = keys(seed, 60);
        let n_subjects = k.iter().collect::<BTreeSet<_>>().len();
        let folds = loso(&k).unwrap();
        assert_eq!(folds.len(), n_subjects);
        let mut tested = vec![0; k.len()];
        for f in &folds {
            assert_disjoint(&k, f);
            assert_eq!(f.train.len() + f.test.len(), k.len());
            let subjects: BTreeSet<&SubjectKey> = f.test.iter().map(|&i| &k[i]).collect();
            assert_eq!(subjects.len(), 1);
            f.test.iter().for_each(|&i| tested[i] += 1);
        }
        assert!(tested.iter().all(|&t| t == 1));
        for kk in [2, 3, 5] {
            let folds = subject_kfold(&k, kk).unwrap();
            assert_eq!(folds.len(), kk);
            let mut tested = vec![0; k.len()];
            for f in &folds {
                assert_disjoint(&k, f);
                assert!(!f.test.is_empty());
                f.test.iter().for_each(|&i| tested[i] += 1);
            }
            assert!(tested.iter().all(|&t| t == 1));
        }
        // Reproducible.
        let a: Vec<Vec<usize>> = subject_kfold(&k, 3)
            .unwrap()
            .into_iter()
            .map(|f| f.test)
            .collect();
        let b: Vec<Vec<usize>> = subject_kfold(&k, 3)
            .unwrap()
            .into_iter()
            .map(|f| f.test)
            .collect();
        assert_eq!(a, b);
    }
}

#[test]
fn cross_dataset_splits_use_the_au_intersection() {
    let k = keys(7, 90);
    let pairs = cross_dataset_pairs(&k, paper_aus).unwrap();
    assert_eq!(pairs.len(), 6);
    for f in &pairs {
        assert_disjoint(&k, f);
    }
    let cs = pairs.iter().find(|f| f.name == "C→S").unwrap();
    assert_eq!(cs.aus, [2, 4, 7, 12]);
    assert!(cs.train.iter().all(|&i| k[i].dataset == Dataset::Casme2));
    assert!(cs.test.iter().all(|&i| k[i].dataset == Dataset::Samm));
    let cd = cross_dataset(&k, &[Dataset::Casme2], Dataset::FourDme, paper_aus).unwrap();
    assert_eq!(cd.name, "C→D");
    assert_eq!(cd.aus, [1, 2, 4, 7, 12, 17]);
    let lodo = leave_one_dataset_out(&k, paper_aus).unwrap();
    assert_eq!(lodo.len(), 3);
    for f in &lodo {
        assert_disjoint(&k, f);
    }
    assert!(
        lodo.iter()
            .any(|f| f.name == "CS→D" && f.aus == [2, 4, 7, 12])
    );
    assert!(cross_dataset(&k, &[Dataset::Samm], Dataset::Samm, paper_aus).is_err());
}

#[test]
fn hand_made_folds_that_leak_are_refused() {
    let k = keys(3, 30);
    let mut f = loso(&k).unwrap().remove(0);
    // Move one test sample into train: its subject is now on both sides.
    let moved = f.test.pop().unwrap();
    if !f.test.is_empty() {
        f.train.push(moved);
        let e = f.verify(&k).unwrap_err();
        assert!(e.to_string().contains("both train and test"), "{e}");
    }
    assert!(Fold::new("x", &k, vec![0], vec![k.len()], vec![]).is_err());
    assert!(loso(&k[..1]).is_err());
    assert!(subject_kfold(&k, 1).is_err());
}
