//! The spotting signal: per-region displacement from neutral, rebuilt from chained k-lag flows.
//!
//! Flow between t−k and t alone shows a short expression twice (once when it appears, once k frames
//! later when frame t−k holds it), so each region's displacement is integrated along the chain:
//! `d(t) = f(t−k → t) + λ·d(t−k)`, with a leak λ = exp(−k / (leak_s·fps)) that forgets drift. The
//! signal is the largest region displacement (crop pixels).

use super::flow::RoiFlow;
use super::roi::RoiKind;
use anyhow::{Context, Result, bail};
use opencv::core::{CV_8UC1, Mat, Scalar};
use opencv::prelude::*;
use std::collections::VecDeque;

/// One signal value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Frame index.
    pub index: u64,
    /// Largest region displacement, crop pixels.
    pub value: f32,
    /// Which region it is (index into the layout).
    pub region: usize,
    /// That region's displacement vector.
    pub vector: [f32; 2],
}

struct Entry {
    index: u64,
    crop: Mat,
    disp: Vec<[f32; 2]>,
}

/// Crop history, flow and integration for one face track.
pub struct SignalBuilder {
    k: u64,
    leak_per_frame: f64,
    flow: RoiFlow,
    ring: VecDeque<Entry>,
    spare: Vec<Entry>,
    size: usize,
    scratch: Vec<[f32; 2]>,
}

impl SignalBuilder {
    /// `k` = flow lag in frames; `leak_frames` = integrator time constant in frames.
    pub fn new(flow: RoiFlow, size: usize, k: usize, leak_frames: f64) -> SignalBuilder {
        let n = flow.layout().rois.len();
        SignalBuilder {
            k: k as u64,
            leak_per_frame: (-1.0 / leak_frames.max(1.0)).exp(),
            flow,
            ring: VecDeque::with_capacity(k + 2),
            spare: Vec::new(),
            size,
            scratch: vec![[0.0; 2]; n],
        }
    }

    /// Kind of region `i`.
    pub fn region_kind(&self, i: usize) -> RoiKind {
        self.flow.layout().rois[i].kind
    }

    /// Name of region `i`.
    pub fn region_name(&self, i: usize) -> &'static str {
        self.flow.layout().rois[i].name
    }

    /// Adds frame `index`'s crop; returns its signal once k frames of history exist.
    pub fn push(&mut self, index: u64, crop: &[u8]) -> Result<Option<Sample>> {
        let n = self.size;
        if crop.len() != n * n {
            bail!(
                "spotting: crop of frame {index} has {} bytes, expected {n}x{n} = {}",
                crop.len(),
                n * n
            );
        }
        if let Some(last) = self.ring.back()
            && index <= last.index
        {
            bail!(
                "spotting: frame index {index} does not increase (previous {})",
                last.index
            );
        }
        let mut e = match self.spare.pop() {
            Some(e) => e,
            None => Entry {
                index,
                crop: Mat::new_rows_cols_with_default(n as i32, n as i32, CV_8UC1, Scalar::all(0.0))
                    .context("crop buffer")?,
                disp: vec![[0.0; 2]; self.scratch.len()],
            },
        };
        e.index = index;
        e.crop
            .data_bytes_mut()
            .context("crop buffer")?
            .copy_from_slice(crop);
        // Keep the newest entry at least k frames old at the front: the flow reference.
        while self.ring.len() >= 2 && self.ring[1].index + self.k <= index {
            if let Some(old) = self.ring.pop_front() {
                self.spare.push(old);
            }
        }
        let sample = match self.ring.front() {
            Some(r) if r.index + self.k <= index => {
                self.flow.measure(&r.crop, &e.crop, &mut self.scratch)?;
                let leak = self.leak_per_frame.powf((index - r.index) as f64) as f32;
                let mut best = (0usize, 0f32, [0f32; 2]);
                for (i, (d, (f, p))) in e
                    .disp
                    .iter_mut()
                    .zip(self.scratch.iter().zip(&r.disp))
                    .enumerate()
                {
                    *d = [f[0] + leak * p[0], f[1] + leak * p[1]];
                    let m = (d[0] * d[0] + d[1] * d[1]).sqrt();
                    if m > best.1 {
                        best = (i, m, *d);
                    }
                }
                Some(Sample {
                    index,
                    value: best.1,
                    region: best.0,
                    vector: best.2,
                })
            }
            _ => {
                e.disp.iter_mut().for_each(|d| *d = [0.0; 2]);
                None
            }
        };
        self.ring.push_back(e);
        Ok(sample)
    }
}
