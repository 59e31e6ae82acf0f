//! Adaptive threshold: running median + c·1.4826·MAD of the signal over a window, floored.

use std::collections::VecDeque;

/// Robust location and spread of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Median (the quiet baseline).
    pub baseline: f32,
    /// Decision threshold.
    pub threshold: f32,
}

/// Median and threshold of `values` (reordered in place); `None` when empty.
pub fn level_of(values: &mut [f32], mads: f32, floor: f32) -> Option<Level> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let median = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    let mad = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
    Some(Level {
        baseline: median,
        threshold: (median + mads * 1.4826 * mad).max(floor),
    })
}

/// Causal running threshold over the last `window` quiet samples (samples inside an event are not
/// added, so a long expression does not raise the threshold against itself).
pub struct RunningThreshold {
    window: usize,
    warmup: usize,
    mads: f32,
    floor: f32,
    values: VecDeque<f32>,
    scratch: Vec<f32>,
}

impl RunningThreshold {
    /// `window` samples, decisions after `warmup` samples.
    pub fn new(window: usize, warmup: usize, mads: f32, floor: f32) -> Self {
        Self {
            window: window.max(1),
            warmup: warmup.clamp(1, window.max(1)),
            mads,
            floor,
            values: VecDeque::with_capacity(window.max(1)),
            scratch: Vec::with_capacity(window.max(1)),
        }
    }

    /// Adds a quiet sample.
    pub fn add(&mut self, v: f32) {
        if self.values.len() == self.window {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }

    /// The current level, once warmed up.
    pub fn level(&mut self) -> Option<Level> {
        if self.values.len() < self.warmup {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.values.iter().copied());
        level_of(&mut self.scratch, self.mads, self.floor)
    }
}

/// Centred (look-ahead) levels for a whole signal: the window is centred on each frame and samples
/// flagged in `exclude` are left out. Levels are recomputed every `step` frames.
pub fn centred_levels(
    values: &[f32],
    exclude: &[bool],
    window: usize,
    step: usize,
    mads: f32,
    floor: f32,
) -> Vec<Option<Level>> {
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
        let l = level_of(&mut scratch, mads, floor);
        for o in &mut out[i..(i + step).min(n)] {
            *o = l;
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
        let l = level_of(&mut v, 3.0, 0.0).unwrap();
        assert!((l.baseline - 1.2).abs() < 1e-6, "{l:?}");
        assert!(l.threshold > 1.3 && l.threshold < 2.0, "{l:?}");
        let mut t = RunningThreshold::new(10, 5, 3.0, 5.0);
        for _ in 0..4 {
            t.add(1.0);
        }
        assert!(t.level().is_none());
        t.add(1.0);
        assert_eq!(t.level().unwrap().threshold, 5.0, "floor");
    }
}
