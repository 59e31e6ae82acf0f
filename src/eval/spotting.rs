//! Spotting F1 by the MEGC protocol: intervals are inclusive frame sets; a prediction is a true
//! positive when it is matched to a ground-truth interval with IoU ≥ 0.5, one-to-one; TP, FP and
//! FN are summed over all videos before precision, recall and F1 are computed.
//!
//! One-to-one matching is a maximum bipartite matching on the pairs with IoU ≥ 0.5, so the TP
//! count does not depend on the order intervals are listed in.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// An inclusive frame interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Span {
    /// First frame.
    pub onset: u32,
    /// Last frame (inclusive).
    pub offset: u32,
}

impl Span {
    /// Number of frames.
    pub fn len(&self) -> u64 {
        u64::from(self.offset.saturating_sub(self.onset)) + 1
    }

    /// Always false: a span has at least one frame.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Frames in both.
    pub fn intersection(&self, other: &Span) -> u64 {
        let lo = self.onset.max(other.onset);
        let hi = self.offset.min(other.offset);
        if hi >= lo { u64::from(hi - lo) + 1 } else { 0 }
    }

    /// Intersection over union of the two frame sets.
    pub fn iou(&self, other: &Span) -> f64 {
        let i = self.intersection(other);
        i as f64 / (self.len() + other.len() - i) as f64
    }

    /// IoU ≥ 0.5, decided in integers (2·|A∩B| ≥ |A∪B|) so no rounding can flip it.
    pub fn matches(&self, other: &Span) -> bool {
        let i = self.intersection(other);
        2 * i >= self.len() + other.len() - i
    }
}

/// Pooled spotting counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpotCounts {
    /// Matched predictions.
    pub tp: u64,
    /// Unmatched predictions.
    pub fp: u64,
    /// Unmatched ground-truth intervals.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl SpotCounts {
    /// Precision; `None` without predictions.
    pub fn precision(&self) -> Option<f64> {
        let d = self.tp + self.fp;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }

    /// Recall; `None` without ground truth.
    pub fn recall(&self) -> Option<f64> {
        let d = self.tp + self.fn_;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }

    /// F1 = 2·TP / (2·TP + FP + FN); `None` when there is neither truth nor prediction.
    pub fn f1(&self) -> Option<f64> {
        let d = 2 * self.tp + self.fp + self.fn_;
        (d > 0).then(|| (2 * self.tp) as f64 / d as f64)
    }
}

impl SpotCounts {
    /// MEGC counts of `pred` against `truth`: one-to-one matches are TP, the rest FP and FN.
    pub fn between(truth: &[Span], pred: &[Span]) -> SpotCounts {
        let tp = matched_pairs(truth, pred);
        SpotCounts {
            tp,
            fp: pred.len() as u64 - tp,
            fn_: truth.len() as u64 - tp,
        }
    }
}

/// The number of one-to-one matches with IoU ≥ 0.5 (maximum bipartite matching).
pub fn matched_pairs(truth: &[Span], pred: &[Span]) -> u64 {
    let edges: Vec<Vec<usize>> = pred
        .iter()
        .map(|p| {
            truth
                .iter()
                .enumerate()
                .filter(|(_, t)| p.matches(t))
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; truth.len()];
    let mut n = 0;
    for p in 0..pred.len() {
        let mut seen = vec![false; truth.len()];
        if augment(p, &edges, &mut owner, &mut seen) {
            n += 1;
        }
    }
    n
}

/// Kuhn's augmenting path from prediction `p`.
fn augment(p: usize, edges: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &t in &edges[p] {
        if seen[t] {
            continue;
        }
        seen[t] = true;
        if owner[t].is_none_or(|q| augment(q, edges, owner, seen)) {
            owner[t] = Some(p);
            return true;
        }
    }
    false
}

/// Spotting results.
#[derive(Debug, Clone, Serialize)]
pub struct SpotReport {
    /// Counts pooled over videos.
    pub counts: SpotCounts,
    /// Precision of the pooled counts.
    pub precision: Option<f64>,
    /// Recall of the pooled counts.
    pub recall: Option<f64>,
    /// F1 of the pooled counts.
    pub f1: Option<f64>,
    /// Videos with ground truth.
    pub videos: usize,
    /// Videos predicted on that have no ground-truth interval (their predictions count as FP).
    pub videos_without_truth: Vec<String>,
}

/// Scores predicted intervals against the truth, both keyed by video id.
pub fn spotting_report(
    truth: &BTreeMap<String, Vec<Span>>,
    pred: &BTreeMap<String, Vec<Span>>,
) -> SpotReport {
    let mut c = SpotCounts::default();
    let videos: BTreeSet<&String> = truth.keys().chain(pred.keys()).collect();
    let empty = Vec::new();
    for v in &videos {
        let t = truth.get(*v).unwrap_or(&empty);
        let p = pred.get(*v).unwrap_or(&empty);
        let tp = matched_pairs(t, p);
        c.tp += tp;
        c.fp += p.len() as u64 - tp;
        c.fn_ += t.len() as u64 - tp;
    }
    SpotReport {
        counts: c,
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        videos: truth.len(),
        videos_without_truth: pred
            .keys()
            .filter(|v| !truth.contains_key(*v))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: u32, b: u32) -> Span {
        Span {
            onset: a,
            offset: b,
        }
    }

    #[test]
    fn iou_is_on_inclusive_frame_sets() {
        assert_eq!(s(1, 10).iou(&s(1, 10)), 1.0);
        // 1..10 and 6..15: 5 shared of 15 frames.
        assert_eq!(s(1, 10).iou(&s(6, 15)), 5.0 / 15.0);
        // 1..10 and 4..13: 7 of 13 ≥ 0.5.
        assert!(s(1, 10).matches(&s(4, 13)));
        // Exactly one half: 1..4 and 3..4 share 2 of 4 frames.
        assert_eq!(s(1, 4).iou(&s(3, 4)), 0.5);
        assert!(s(1, 4).matches(&s(3, 4)));
        assert!(!s(1, 5).matches(&s(4, 5)));
        assert_eq!(s(1, 3).iou(&s(4, 6)), 0.0);
    }

    #[test]
    fn matching_is_one_to_one_and_maximal() {
        // Two predictions on one truth: one TP, one FP.
        assert_eq!(matched_pairs(&[s(10, 20)], &[s(10, 20), s(11, 20)]), 1);
        // Greedy-by-order would give p0→t0 and leave p1 unmatched; the maximum matching gives 2.
        let truth = [s(0, 9), s(5, 14)];
        let pred = [s(3, 11), s(0, 8)];
        assert!(pred[0].matches(&truth[0]) && pred[0].matches(&truth[1]));
        assert!(pred[1].matches(&truth[0]) && !pred[1].matches(&truth[1]));
        assert_eq!(matched_pairs(&truth, &pred), 2);
    }

    #[test]
    fn counts_pool_over_videos() {
        let mut truth = BTreeMap::new();
        truth.insert("v1".to_string(), vec![s(0, 9), s(100, 109)]);
        truth.insert("v2".to_string(), vec![s(50, 59)]);
        let mut pred = BTreeMap::new();
        pred.insert("v1".to_string(), vec![s(1, 9), s(300, 310)]);
        pred.insert("v3".to_string(), vec![s(0, 5)]);
        let r = spotting_report(&truth, &pred);
        assert_eq!(
            r.counts,
            SpotCounts {
                tp: 1,
                fp: 2,
                fn_: 2
            }
        );
        assert_eq!(r.f1, Some(2.0 / 6.0));
        assert_eq!(r.videos_without_truth, vec!["v3".to_string()]);
    }
}
