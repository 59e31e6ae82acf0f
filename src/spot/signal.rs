//! The spotting signal: per-region motion between the crop k frames back and this one.
//!
//! Flow between t−k and t alone shows a short expression twice (once when it appears, once k frames
//! later when frame t−k holds it) and shows a long one only while it changes. So while an event is
//! open the reference is pinned ([`SignalBuilder::pin`]) to the frame the event was first seen
//! against (before its onset): the signal is then the displacement from that neutral frame, which
//! rises to the apex and returns to the noise floor at the offset. The signal is the largest region
//! motion (crop pixels), nose motion (head) subtracted.

use super::flow::RoiFlow;
use super::roi::{RoiKind, RoiLayout};
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
    /// Downward motion of the chin region (px; negative is up): the jaw, for the speech rule.
    pub jaw: f32,
    /// Downward motion of the eye that moved down least (px): both lids closing, for the blink rule.
    pub eyes: f32,
    /// How far the mouth corners moved apart (px, mean outward motion of both): a smile, for
    /// the speech rule.
    pub apart: f32,
    /// How evenly the brows and eyes rose: the smallest upward motion among them over the
    /// largest (0 when none rose). Near 1, the nose window they are measured from moved down.
    pub uniform: f32,
    /// While an event is open: how far (noise spreads) the regions it follows stand from the
    /// latest rest frame, when that frame is older than the event's reference ([`SignalBuilder::mark_rest`]).
    pub rest: Option<f32>,
}

impl Sample {
    /// Frame `index`'s sample from every region's displacement (`disp`, layout order): region
    /// `driver.0` drives it with value `driver.1`; the whole-face measures come from `disp`. No
    /// rest distance (only the decider knows whether an event is open).
    pub fn measured(
        index: u64,
        driver: (usize, f32),
        layout: &RoiLayout,
        disp: &[[f32; 2]],
    ) -> Sample {
        let (region, value) = driver;
        Sample {
            index,
            value,
            region,
            vector: disp.get(region).copied().unwrap_or([0.0; 2]),
            jaw: layout
                .chin()
                .and_then(|c| disp.get(c))
                .map_or(0.0, |d| d[1]),
            eyes: eyes_down(layout, disp),
            apart: mouth_apart(layout, disp),
            uniform: upper_face_rise(layout, disp),
            rest: None,
        }
    }
}

struct Entry {
    index: u64,
    crop: Mat,
    disp: Vec<[f32; 2]>,
}

/// Crop history, flow and integration for one face track.
pub struct SignalBuilder {
    k: u64,
    /// Flow is measured on frames whose index is a multiple of this.
    every: u64,
    flow: RoiFlow,
    pinned: Option<Entry>,
    ring: VecDeque<Entry>,
    spare: Vec<Entry>,
    size: usize,
    scratch: Vec<[f32; 2]>,
    /// Head motion (px) that marks a discontinuity of the crops rather than a movement.
    rebase_px: f32,
    /// Set when the latest crop was a discontinuity; taken by [`SignalBuilder::take_rebase`].
    rebased: bool,
    /// While pinned, a region moving this many times the head's motion means an expression
    /// dragged the crop, not a jump (0: never).
    drag_ratio: f32,
    /// The latest rest frame and its own flow state (None: rest frames are off).
    rest: Option<Rest>,
}

/// A rest frame: the reference of the latest sample taken on a face at rest. An event whose
/// reference was pinned in the middle of a movement (the return of an expression, the tail of
/// speech) never sees the face come back to that reference; it does see it come back to rest.
struct Rest {
    flow: RoiFlow,
    frame: Option<Entry>,
    /// Each region's displacement from the rest frame in the latest sample, when measured.
    disp: Vec<[f32; 2]>,
    measured: bool,
}

impl SignalBuilder {
    /// `k` = flow lag in frames; flow is measured on every `every`-th frame (by index); a head
    /// motion above `rebase_px` (0 = never) restarts the history ([`SignalBuilder::take_rebase`])
    /// unless, during an event, a region moved `drag_ratio` times as far (0 = always restart).
    pub fn new(
        flow: RoiFlow,
        size: usize,
        k: usize,
        every: usize,
        rebase_px: f32,
        drag_ratio: f32,
    ) -> SignalBuilder {
        let n = flow.layout().rois.len();
        SignalBuilder {
            k: k as u64,
            every: every.max(1) as u64,
            flow,
            pinned: None,
            ring: VecDeque::with_capacity(k + 2),
            spare: Vec::new(),
            size,
            scratch: vec![[0.0; 2]; n],
            rebase_px,
            rebased: false,
            drag_ratio,
            rest: None,
        }
    }

    /// Also measures, while an event is open, each region's displacement from the latest rest
    /// frame (with `flow`, a second instance of the same measurement: it keeps its own templates).
    pub fn with_rest(mut self, flow: RoiFlow) -> SignalBuilder {
        let n = self.scratch.len();
        self.rest = Some(Rest {
            flow,
            frame: None,
            disp: vec![[0.0; 2]; n],
            measured: false,
        });
        self
    }

    /// Takes the latest sample's reference (t − k) as the rest frame: the decider saw no motion
    /// over the threshold for a while. Nothing while pinned.
    pub fn mark_rest(&mut self) -> Result<()> {
        let Some(index) = self.ring.front().map(|f| f.index) else {
            return Ok(());
        };
        let Some(rest) = self.rest.as_ref() else {
            return Ok(());
        };
        if self.pinned.is_some() || rest.frame.as_ref().is_some_and(|f| f.index == index) {
            return Ok(());
        }
        let mut p = self.spare_entry();
        p.index = index;
        if let Some(front) = self.ring.front() {
            front
                .crop
                .copy_to(&mut p.crop)
                .context("keeping the rest frame")?;
        }
        if let Some(old) = self.rest.as_mut().and_then(|r| r.frame.replace(p)) {
            self.spare.push(old);
        }
        Ok(())
    }

    /// Each region's displacement from the rest frame in the latest sample: only while pinned to
    /// a reference later than the rest frame by more than the lag (else the two are the same
    /// neutral face and the event's own reference is the better one).
    pub fn rest_displacements(&self) -> Option<&[[f32; 2]]> {
        self.rest
            .as_ref()
            .filter(|r| r.measured)
            .map(|r| r.disp.as_slice())
    }

    /// The layout of the regions measured.
    pub fn layout(&self) -> &RoiLayout {
        self.flow.layout()
    }

    /// Kind of region `i`.
    pub fn region_kind(&self, i: usize) -> RoiKind {
        self.flow.layout().rois[i].kind
    }

    /// Name of region `i`.
    pub fn region_name(&self, i: usize) -> &'static str {
        self.flow.layout().rois[i].name
    }

    /// Every region's displacement at the latest frame (crop pixels), in layout order.
    pub fn displacements(&self) -> &[[f32; 2]] {
        self.ring.back().map_or(&[], |e| &e.disp)
    }

    /// The nose region's (head's) motion in the latest sample, crop pixels.
    pub fn head(&self) -> [f32; 2] {
        self.flow.head()
    }

    /// Number of regions.
    pub fn regions(&self) -> usize {
        self.scratch.len()
    }

    /// Pins the reference the latest sample was measured against: later samples measure motion
    /// from it until [`release`](Self::release).
    pub fn pin(&mut self) -> Result<()> {
        if self.pinned.is_none() {
            self.pin_front()?;
        }
        Ok(())
    }

    /// Back to the k-frame lag.
    pub fn release(&mut self) {
        if let Some(p) = self.pinned.take() {
            self.spare.push(p);
        }
    }

    /// True while the reference is pinned.
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Adds frame `index`'s crop; returns its signal once k frames of history exist (frames off
    /// the `every` grid are skipped and give none).
    pub fn push(&mut self, index: u64, crop: &[u8]) -> Result<Option<Sample>> {
        if !index.is_multiple_of(self.every) {
            return Ok(None);
        }
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
                crop: Mat::new_rows_cols_with_default(
                    n as i32,
                    n as i32,
                    CV_8UC1,
                    Scalar::all(0.0),
                )
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
        let reference = match &self.pinned {
            Some(p) => Some(p),
            None => self.ring.front().filter(|r| r.index + self.k <= index),
        };
        let sample = match reference {
            Some(r) => {
                self.flow
                    .measure((r.index, &r.crop), (index, &e.crop), &mut self.scratch)?;
                let [hx, hy] = self.flow.head();
                let head = (hx * hx + hy * hy).sqrt();
                if self.rebase_px > 0.0 && head > self.rebase_px && !self.dragged(head) {
                    // The whole crop jumped against its reference (the tracker re-anchored on
                    // the detector): no face moves like that. Start the history again here.
                    // The rest frame stays: measured against the nose, a re-anchor's shift
                    // cancels, and a face that does not line up with it cannot end an event.
                    self.release();
                    self.spare.extend(self.ring.drain(..));
                    e.disp.iter_mut().for_each(|d| *d = [0.0; 2]);
                    self.ring.push_back(e);
                    self.rebased = true;
                    self.flow.reset();
                    return Ok(None);
                }
                let mut best = (0usize, 0f32);
                for (i, (d, f)) in e.disp.iter_mut().zip(&self.scratch).enumerate() {
                    *d = *f;
                    let m = (f[0] * f[0] + f[1] * f[1]).sqrt();
                    if m > best.1 {
                        best = (i, m);
                    }
                }
                let pinned_at = self.pinned.as_ref().map(|p| p.index);
                self.measure_rest(pinned_at, (index, &e.crop))?;
                Some(Sample::measured(
                    index,
                    (best.0, best.1),
                    self.flow.layout(),
                    &e.disp,
                ))
            }
            None => {
                e.disp.iter_mut().for_each(|d| *d = [0.0; 2]);
                None
            }
        };
        self.ring.push_back(e);
        Ok(sample)
    }

    /// True when, against a pinned reference, some region moved `drag_ratio` times as far as the
    /// head (`head`, px): a large expression inside the registration area pulled the stabilised
    /// crop along with it, gradually; a re-anchor of the tracker moves every region with the nose
    /// (the regions, measured against the nose, stay below it), and talking moves the chin and
    /// the mouth about as far as it drags the crop.
    fn dragged(&self, head: f32) -> bool {
        self.pinned.is_some()
            && self.drag_ratio > 0.0
            && self
                .scratch
                .iter()
                .any(|f| (f[0] * f[0] + f[1] * f[1]).sqrt() > self.drag_ratio * head)
    }

    /// True once after a crop that was a discontinuity (history restarted; an open event must
    /// be dropped: its reference is gone).
    pub fn take_rebase(&mut self) -> bool {
        std::mem::take(&mut self.rebased)
    }

    /// Measures the rest frame against the crop of `current` when pinned (at `pinned_at`) to a
    /// reference more than the lag after it.
    fn measure_rest(&mut self, pinned_at: Option<u64>, current: (u64, &Mat)) -> Result<()> {
        let k = self.k;
        let Some(r) = self.rest.as_mut() else {
            return Ok(());
        };
        r.measured = false;
        let (Some(p), Some(f)) = (pinned_at, r.frame.as_ref()) else {
            return Ok(());
        };
        if p <= f.index + k {
            return Ok(());
        }
        r.flow.measure((f.index, &f.crop), current, &mut r.disp)?;
        r.measured = true;
        Ok(())
    }

    /// A history entry to overwrite (reused when one is spare).
    fn spare_entry(&mut self) -> Entry {
        match self.spare.pop() {
            Some(p) => p,
            None => Entry {
                index: 0,
                crop: Mat::default(),
                disp: vec![[0.0; 2]; self.scratch.len()],
            },
        }
    }

    /// Copies the current reference (front of the ring) into the pinned slot.
    fn pin_front(&mut self) -> Result<()> {
        let mut p = self.spare_entry();
        let Some(front) = self.ring.front() else {
            self.spare.push(p);
            return Ok(());
        };
        p.index = front.index;
        front
            .crop
            .copy_to(&mut p.crop)
            .context("pinning the reference crop")?;
        self.pinned = Some(p);
        Ok(())
    }
}

/// How far the mouth corners moved apart: the mean over mouth regions of their motion away from
/// the nose's vertical (0 without mouth regions). Talking opens the jaw and leaves the corners'
/// width; a smile (AU12) pulls them out.
pub fn mouth_apart(layout: &RoiLayout, disp: &[[f32; 2]]) -> f32 {
    let mid = (layout.reference[0] + layout.reference[2]) as f32 / 2.0;
    let (mut sum, mut n) = (0f32, 0u32);
    for (r, d) in layout.rois.iter().zip(disp) {
        if r.kind == RoiKind::Mouth {
            let centre = (r.rect[0] + r.rect[2]) as f32 / 2.0;
            sum += if centre < mid { -d[0] } else { d[0] };
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}

/// How evenly the upper face rose: the smallest upward motion of the brow and eye regions over the
/// largest, 0 when none rose (or there are none). Speech drags the nose window down, and every
/// region above it then seems to rise by the same amount; a brow raise lifts the lids less.
pub fn upper_face_rise(layout: &RoiLayout, disp: &[[f32; 2]]) -> f32 {
    let ups = layout
        .rois
        .iter()
        .zip(disp)
        .filter(|(r, _)| matches!(r.kind, RoiKind::Brow | RoiKind::Eye))
        .map(|(_, d)| -d[1]);
    let (lo, hi) = ups.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), u| {
        (lo.min(u), hi.max(u))
    });
    if hi > 0.0 && lo.is_finite() {
        lo.max(0.0) / hi
    } else {
        0.0
    }
}

/// The smaller downward motion of the two eye regions (0 without eyes): a blink closes both lids.
pub fn eyes_down(layout: &RoiLayout, disp: &[[f32; 2]]) -> f32 {
    let mut eyes = layout
        .rois
        .iter()
        .zip(disp)
        .filter(|(r, _)| r.kind == RoiKind::Eye)
        .map(|(_, d)| d[1]);
    match eyes.next() {
        Some(first) => eyes.fold(first, f32::min),
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mouth_corners_moving_out_are_apart_and_moving_together_sideways_are_not() {
        let layout = RoiLayout::for_crop_size(128);
        let with = |r: [f32; 2], l: [f32; 2]| {
            let disp: Vec<[f32; 2]> = layout
                .rois
                .iter()
                .map(|roi| match roi.name {
                    "mouth_r" => r,
                    "mouth_l" => l,
                    _ => [0.0, 0.0],
                })
                .collect();
            mouth_apart(&layout, &disp)
        };
        // Subject's right corner is image left: out is -x there, +x on the other side.
        assert!((with([-0.4, -0.2], [0.4, -0.2]) - 0.4).abs() < 1e-6);
        // A residual sideways head motion moves both corners the same way: no spread.
        assert!(with([0.3, 0.0], [0.3, 0.0]).abs() < 1e-6);
        // Talking: the corners follow the jaw down and in a little.
        assert!(with([0.05, 0.4], [-0.05, 0.4]) < 0.0);
    }

    #[test]
    fn the_upper_face_rising_evenly_is_told_from_a_brow_raise() {
        let layout = RoiLayout::for_crop_size(128);
        let rise = |brow: f32, eye: f32| {
            let disp: Vec<[f32; 2]> = layout
                .rois
                .iter()
                .map(|roi| match roi.kind {
                    RoiKind::Brow => [0.0, -brow],
                    RoiKind::Eye => [0.0, -eye],
                    _ => [0.0, 0.5],
                })
                .collect();
            upper_face_rise(&layout, &disp)
        };
        assert!((rise(0.8, 0.8) - 1.0).abs() < 1e-6);
        assert!((rise(2.0, 0.5) - 0.25).abs() < 1e-6);
        // Nothing rose, or the eyes went down: 0.
        assert_eq!(rise(-0.5, -0.5), 0.0);
        assert_eq!(rise(1.0, -0.2), 0.0);
    }
}
