//! Per-AU decision thresholds, chosen on training-side data only (the inner validation split).

use crate::eval::metrics::Counts;

/// The threshold on `prob` that maximises binary (positive-class) F1 on `truth`; midpoints between
/// neighbouring probabilities are the candidates, ties go to the threshold nearest 0.5. With no
/// positive in `truth` there is nothing to tune: 0.5.
pub fn best_f1_threshold(truth: &[bool], prob: &[f32]) -> f32 {
    if !truth.iter().any(|&t| t) {
        return 0.5;
    }
    let mut sorted: Vec<f32> = prob.iter().copied().filter(|p| p.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    sorted.dedup();
    let mut candidates: Vec<f32> = sorted.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    candidates.push(0.5);
    if let Some(&lo) = sorted.first() {
        candidates.push(lo - 1e-6);
    }
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for &c in &candidates {
        let decision: Vec<bool> = prob.iter().map(|&p| p >= c).collect();
        let f1 = Counts::of(truth, &decision).f1().unwrap_or(0.0);
        let better = f1 > best.0 + 1e-12
            || ((f1 - best.0).abs() <= 1e-12 && (c - 0.5).abs() < (best.1 - 0.5).abs());
        if better {
            best = (f1, c);
        }
    }
    best.1
}

/// Thresholds for every AU column: `probs[i][j]` is sample i, AU j.
pub fn choose_thresholds(truth: &[Vec<bool>], probs: &[Vec<f32>], num_aus: usize) -> Vec<f32> {
    (0..num_aus)
        .map(|j| {
            let t: Vec<bool> = truth.iter().map(|r| r[j]).collect();
            let p: Vec<f32> = probs.iter().map(|r| r[j]).collect();
            best_f1_threshold(&t, &p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_scores_get_a_separating_threshold() {
        let t = [false, false, true, true, false];
        let p = [0.1, 0.2, 0.3, 0.35, 0.05];
        let th = best_f1_threshold(&t, &p);
        assert!(th > 0.2 && th <= 0.3, "{th}");
    }

    #[test]
    fn no_positive_keeps_one_half() {
        assert_eq!(best_f1_threshold(&[false, false], &[0.9, 0.1]), 0.5);
    }

    #[test]
    fn thresholds_are_per_column() {
        let truth = vec![vec![true, false], vec![false, true]];
        let probs = vec![vec![0.9, 0.2], vec![0.1, 0.3]];
        let th = choose_thresholds(&truth, &probs, 2);
        assert!(th[0] > 0.1 && th[0] <= 0.9);
        assert!(th[1] > 0.2 && th[1] <= 0.3, "{th:?}");
    }
}
