//! AU detection metrics as DESIGN.md's evaluation rules define them.
//!
//! - Per-AU F1 is binary, of the positive class: `2·TP / (2·TP + FP + FN)`, as scikit-learn's
//!   `f1_score(y, ŷ)` computes it. Where it is undefined (no positive in the truth and none
//!   predicted) it is `None` (scikit-learn's `zero_division=np.nan`) and left out of means, not
//!   counted as 0.
//! - **Pooled over folds**: one F1 from the confusion counts of every test prediction.
//! - **Mean over folds**: the mean of the per-fold F1 over the folds where it is defined.
//! - Macro = the unweighted mean over AUs of the defined per-AU values, for each of the two.
//! - The published papers' variant ([`paper_sweep`]), only on request and labelled optimistic:
//!   per AU, the threshold is swept over the pooled test probabilities and the score is the mean of
//!   the positive- and negative-class F1 (scikit-learn `average="macro"`, `zero_division=0`).

use serde::Serialize;

/// Confusion counts of one AU (positive class).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// True negatives.
    pub tn: u64,
}

impl Counts {
    /// Counts of decisions against the truth.
    pub fn of(truth: &[bool], decision: &[bool]) -> Self {
        let mut c = Counts::default();
        for (&y, &p) in truth.iter().zip(decision) {
            c.add(y, p);
        }
        c
    }

    /// Adds one prediction.
    pub fn add(&mut self, truth: bool, decision: bool) {
        match (truth, decision) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// Binary F1 of the positive class; `None` when no positive is in the truth or predicted.
    pub fn f1(&self) -> Option<f64> {
        f1_from(self.tp, self.fp, self.fn_)
    }

    /// F1 of the negative class (the roles of 0 and 1 swapped).
    pub fn negative_f1(&self) -> Option<f64> {
        f1_from(self.tn, self.fn_, self.fp)
    }

    /// Precision; `None` when nothing is predicted positive.
    pub fn precision(&self) -> Option<f64> {
        let d = self.tp + self.fp;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }

    /// Recall; `None` when the truth has no positive.
    pub fn recall(&self) -> Option<f64> {
        let d = self.tp + self.fn_;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }

    /// Positives in the truth.
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }
}

/// `2·TP / (2·TP + FP + FN)`, the form scikit-learn evaluates (so results agree to the bit).
fn f1_from(tp: u64, fp: u64, fn_: u64) -> Option<f64> {
    let denom = 2 * tp + fp + fn_;
    (denom > 0).then(|| (2 * tp) as f64 / denom as f64)
}

/// Mean of the values that are defined; `None` if none is.
pub fn mean_defined(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean of positive- and negative-class F1, each 0 where undefined (scikit-learn's
/// `f1_score(y, ŷ, average="macro", labels=[0, 1], zero_division=0)`).
pub fn class_mean_f1(c: &Counts) -> f64 {
    (c.f1().unwrap_or(0.0) + c.negative_f1().unwrap_or(0.0)) / 2.0
}

/// The published variant's result for one AU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PaperScore {
    /// Threshold chosen on the test predictions (decision: p ≥ threshold; +∞ = all negative).
    pub threshold: f64,
    /// Mean of positive- and negative-class F1 at that threshold.
    pub f1: f64,
}

/// Scores that differ by less than this are a tie; the lowest threshold wins a tie.
const TIE: f64 = 1e-12;

/// Sweeps the threshold over every distinct probability (and +∞) and keeps the best
/// [`class_mean_f1`]. Optimistic: the threshold is fitted to the test data it is scored on.
pub fn paper_sweep(truth: &[bool], prob: &[f64]) -> PaperScore {
    let mut idx: Vec<usize> = (0..prob.len()).collect();
    idx.sort_by(|&a, &b| prob[a].total_cmp(&prob[b]));
    let total_pos = truth.iter().filter(|&&y| y).count() as u64;
    let total_neg = truth.len() as u64 - total_pos;
    // Walk thresholds upwards: at distinct value v, everything with p >= v is positive.
    let mut candidates: Vec<(f64, Counts)> = Vec::new();
    let (mut below_pos, mut below_neg) = (0u64, 0u64);
    let mut i = 0;
    while i < idx.len() {
        let v = prob[idx[i]];
        let counts = Counts {
            tp: total_pos - below_pos,
            fp: total_neg - below_neg,
            fn_: below_pos,
            tn: below_neg,
        };
        candidates.push((v, counts));
        while i < idx.len() && prob[idx[i]] == v {
            if truth[idx[i]] {
                below_pos += 1;
            } else {
                below_neg += 1;
            }
            i += 1;
        }
    }
    candidates.push((
        f64::INFINITY,
        Counts {
            tp: 0,
            fp: 0,
            fn_: total_pos,
            tn: total_neg,
        },
    ));
    let scores: Vec<f64> = candidates.iter().map(|(_, c)| class_mean_f1(c)).collect();
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let k = scores.iter().position(|&s| s >= best - TIE).unwrap_or(0);
    PaperScore {
        threshold: candidates[k].0,
        f1: scores[k],
    }
}

/// One AU's inputs: truth, decisions, and probabilities when the predictions have them.
#[derive(Debug, Clone)]
pub struct AuColumn {
    /// FACS code.
    pub code: crate::au::Au,
    /// Ground truth per sample.
    pub truth: Vec<bool>,
    /// Decision per sample.
    pub decision: Vec<bool>,
    /// Probability per sample (needed for the paper variant's sweep).
    pub prob: Option<Vec<f64>>,
}

/// One AU's results.
#[derive(Debug, Clone, Serialize)]
pub struct AuResult {
    /// FACS code.
    pub code: crate::au::Au,
    /// Counts over all test predictions.
    pub pooled: Counts,
    /// F1 from the pooled counts.
    pub pooled_f1: Option<f64>,
    /// F1 per fold (fold order of [`AuReport::folds`]).
    pub fold_f1: Vec<Option<f64>>,
    /// Mean of the defined per-fold F1.
    pub mean_over_folds_f1: Option<f64>,
    /// Folds where F1 is defined.
    pub folds_defined: usize,
    /// Paper variant, when asked for.
    pub paper: Option<PaperScore>,
    /// Whether the paper variant swept a threshold (false: decisions only, no probabilities).
    pub paper_swept: bool,
}

/// Results over all AUs.
#[derive(Debug, Clone, Serialize)]
pub struct AuReport {
    /// Fold names, in the order of every `fold_f1`.
    pub folds: Vec<String>,
    /// Number of test samples.
    pub samples: usize,
    /// Per-AU results.
    pub aus: Vec<AuResult>,
    /// Macro F1 pooled over folds (mean over AUs with a defined pooled F1).
    pub macro_pooled_f1: Option<f64>,
    /// Macro F1 mean over folds (mean over AUs of their mean-over-folds F1).
    pub macro_mean_over_folds_f1: Option<f64>,
    /// Macro of the paper variant (optimistic, paper-compatible), when asked for.
    pub paper_macro_f1: Option<f64>,
}

/// Scores AUs. `fold[i]` is sample i's index into `fold_names`.
pub fn au_report(
    columns: &[AuColumn],
    fold: &[usize],
    fold_names: Vec<String>,
    paper: bool,
) -> AuReport {
    let n_folds = fold_names.len();
    let aus: Vec<AuResult> = columns
        .iter()
        .map(|c| {
            let pooled = Counts::of(&c.truth, &c.decision);
            let mut per = vec![Counts::default(); n_folds];
            for ((&y, &p), &f) in c.truth.iter().zip(&c.decision).zip(fold) {
                per[f].add(y, p);
            }
            let fold_f1: Vec<Option<f64>> = per.iter().map(Counts::f1).collect();
            let paper_score = paper.then(|| match &c.prob {
                Some(p) => paper_sweep(&c.truth, p),
                None => PaperScore {
                    threshold: f64::NAN,
                    f1: class_mean_f1(&pooled),
                },
            });
            AuResult {
                code: c.code,
                pooled,
                pooled_f1: pooled.f1(),
                mean_over_folds_f1: mean_defined(fold_f1.iter().copied()),
                folds_defined: fold_f1.iter().flatten().count(),
                fold_f1,
                paper: paper_score,
                paper_swept: paper && c.prob.is_some(),
            }
        })
        .collect();
    AuReport {
        folds: fold_names,
        samples: fold.len(),
        macro_pooled_f1: mean_defined(aus.iter().map(|a| a.pooled_f1)),
        macro_mean_over_folds_f1: mean_defined(aus.iter().map(|a| a.mean_over_folds_f1)),
        paper_macro_f1: paper
            .then(|| mean_defined(aus.iter().map(|a| a.paper.map(|p| p.f1))))
            .flatten(),
        aus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_edge_cases_follow_sklearn() {
        // No positive anywhere: undefined (sklearn zero_division=nan).
        assert_eq!(Counts::of(&[false, false], &[false, false]).f1(), None);
        // Predicted positives but none true: 0, not undefined.
        assert_eq!(Counts::of(&[false, false], &[true, false]).f1(), Some(0.0));
        let c = Counts::of(&[true, true, false, false], &[true, false, true, false]);
        assert_eq!(c.f1(), Some(0.5));
        assert_eq!(class_mean_f1(&c), 0.5);
    }

    #[test]
    fn sweep_finds_the_separating_threshold() {
        let y = [false, false, true, true];
        let p = [0.1, 0.2, 0.7, 0.9];
        let s = paper_sweep(&y, &p);
        assert_eq!(s.threshold, 0.7);
        assert_eq!(s.f1, 1.0);
    }
}
