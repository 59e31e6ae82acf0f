//! Adaptive levels: the running median and robust spread (1.4826·MAD) of each region's motion over
//! a window of quiet samples. A region's threshold is its median + c·spread; the spotting signal is
//! the largest region motion in units of its own spread ([`Spread::score`]), so a region whose
//! motion is noisy (a blurred chin, a JPEG-blocky mouth) does not raise the bar for the others.

use std::collections::VecDeque;

/// Robust location and spread of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Median (the quiet baseline).
    pub median: f32,
    /// 1.4826 × median absolute deviation (a standard deviation for Gaussian noise).
    pub sigma: f32,
}

impl Spread {
    /// How many spreads `v` lies above the median; the spread is floored at `min_sigma`.
    pub fn score(&self, v: f32, min_sigma: f32) -> f32 {
        (v - self.median) / self.sigma.max(min_sigma).max(1e-6)
    }
}

/// Decision level of the segmenter, in signal units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The quiet baseline.
    pub baseline: f32,
    /// Decision threshold.
    pub threshold: f32,
}

/// Median and spread of `values` (reordered in place); `None` when empty.
pub fn spread_of(values: &mut [f32]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let median = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    let mad = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
    Some(Spread {
        median,
        sigma: 1.4826 * mad,
    })
}

/// Causal running spread of one region over its last `window` quiet samples (samples inside an
/// event are not added, so a long expression does not raise the level against itself). The spread
/// is recomputed every `every` samples: it moves on the scale of the window, not of a frame.
pub struct RunningSpread {
    window: usize,
    warmup: usize,
    every: usize,
    since: usize,
    values: VecDeque<f32>,
    scratch: Vec<f32>,
    current: Option<Spread>,
}

impl RunningSpread {
    /// `window` samples, a spread after `warmup` samples, refreshed every `every` samples.
    pub fn new(window: usize, warmup: usize, every: usize) -> Self {
        let window = window.max(1);
        Self {
            window,
            warmup: warmup.clamp(1, window),
            every: every.max(1),
            since: usize::MAX,
            values: VecDeque::with_capacity(window),
            scratch: Vec::with_capacity(window),
            current: None,
        }
    }

    /// Adds a quiet sample.
    pub fn add(&mut self, v: f32) {
        if self.values.len() == self.window {
            self.values.pop_front();
        }
        self.values.push_back(v);
        self.since = self.since.saturating_add(1);
    }

    /// The current spread, once warmed up.
    pub fn spread(&mut self) -> Option<Spread> {
        if self.values.len() < self.warmup {
            return None;
        }
        if self.current.is_none() || self.since >= self.every {
            self.scratch.clear();
            self.scratch.extend(self.values.iter().copied());
            self.current = spread_of(&mut self.scratch);
            self.since = 0;
        }
        self.current
    }
}

/// Centred (look-ahead) spreads of one region's whole signal: the window is centred on each frame
/// and samples flagged in `exclude` are left out. Spreads are recomputed every `step` frames.
pub fn centred_spreads(
    values: &[f32],
    exclude: &[bool],
    window: usize,
    step: usize,
) -> Vec<Option<Spread>> {
    let n = values.len();
    let half = window / 2;
    let step = step.max(1);
    let mut out = vec![None; n];
    let mut scratch = Vec::with_capacity(window + 1);
    let mut i = 0;
    while i < n {
        let (a, b) = (i.saturating_sub(half), (i + half + 1).min(n));
        scratch.clear();
        scratch.extend((a..b).filter(|&j| !exclude[j]).map(|j| values[j]));
        let s = spread_of(&mut scratch);
        for o in &mut out[i..(i + step).min(n)] {
            *o = s;
        }
        i += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_outliers() {
        let mut v: Vec<f32> = (0..101).map(|i| 1.0 + (i % 5) as f32 * 0.1).collect();
        v[3] = 50.0;
        let s = spread_of(&mut v).unwrap();
        assert!((s.median - 1.2).abs() < 1e-6, "{s:?}");
        assert!((s.sigma - 1.4826 * 0.1).abs() < 1e-5, "{s:?}");
        // Two spreads above the median; a floor larger than the spread rules.
        assert!((s.score(1.2 + 2.0 * s.sigma, 0.0) - 2.0).abs() < 1e-4);
        assert!((s.score(1.7, 1.0) - 0.5).abs() < 1e-5);
        let mut t = RunningSpread::new(10, 5, 3);
        for _ in 0..4 {
            t.add(1.0);
        }
        assert!(t.spread().is_none());
        t.add(1.0);
        assert_eq!(t.spread().unwrap().median, 1.0);
        // Refreshed every 3 samples, not every sample.
        t.add(9.0);
        t.add(9.0);
        assert_eq!(t.spread().unwrap().median, 1.0);
        t.add(9.0);
        assert_eq!(t.spread().unwrap().median, 1.0, "6 of 8 still 1.0");
        for _ in 0..6 {
            t.add(9.0);
        }
        assert_eq!(t.spread().unwrap().median, 9.0);
    }

    #[test]
    fn centred_spreads_skip_excluded_samples() {
        let v: Vec<f32> = (0..50)
            .map(|i| if (20..30).contains(&i) { 5.0 } else { 1.0 })
            .collect();
        let ex: Vec<bool> = (0..50).map(|i| (20..30).contains(&i)).collect();
        let s = centred_spreads(&v, &ex, 20, 4);
        assert!(s.iter().all(|s| s.unwrap().median == 1.0));
        let all = centred_spreads(&v, &[false; 50], 12, 1);
        assert_eq!(all[25].unwrap().median, 5.0);
    }
}
