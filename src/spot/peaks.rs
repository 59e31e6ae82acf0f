//! Events from the signal: open when it crosses the threshold, follow the peak (apex), close when
//! it stays below the edge level for the merge distance; onset and offset are where the signal
//! crosses the edge level (a fraction of the apex height above the baseline).

use super::params::Emit;
use super::roi::RoiKind;
use super::signal::Sample;
use super::threshold::Level;
use super::{Interval, IntervalKind};
use std::collections::VecDeque;

/// Segmenter settings in frames.
#[derive(Debug, Clone, Copy)]
pub struct SegmentRules {
    /// Edge level as a fraction of the apex height above the baseline.
    pub edge_fraction: f32,
    /// Frames below the edge before an event closes (peaks closer than this merge).
    pub merge_frames: u64,
    /// Shortest interval kept.
    pub min_frames: u64,
    /// Longest interval: an event open this long is closed.
    pub max_frames: u64,
    /// Longest micro-expression.
    pub micro_max_frames: u64,
    /// Downward eye motion (px) above which an eye-led event is a blink; 0 = off.
    pub blink_px: f32,
    /// A brow-led event is a blink when both eyes moved down by at least this fraction of the
    /// brow's own downward motion (and by more than `blink_px`).
    pub blink_brow_ratio: f32,
    /// A brow-led event at most this many frames long with both eyes down by more than
    /// `blink_px` is a blink (0: never).
    pub blink_max_frames: u64,
    /// Mouth corners moving apart (px) beyond which a mouth- or chin-led event is a smile, never
    /// speech; 0 = off.
    pub smile_px: f32,
    /// A brow- or eye-led upward event whose brows and eyes all rose at least this fraction of the
    /// highest (at its apex) is speech dragging the nose window; 0 = off.
    pub uniform_rise: f32,
    /// Downward jaw motion (px) above which a mouth- or chin-led event is speech; 0 = off.
    pub jaw_px: f32,
    /// What is emitted.
    pub emit: Emit,
    /// Samples above the threshold before an event opens (1 = the first) ...
    pub confirm_samples: u64,
    /// ... among this many latest samples (at least `confirm_samples`; equal: consecutive).
    pub confirm_window: u64,
    /// Flow lag k: after an event, no new one opens until frame t−k is past its offset (else the
    /// k-lag flow would see the old event again).
    pub lag_frames: u64,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    start: u64,
    level: Level,
    peak: f32,
    apex: u64,
    kind: RoiKind,
    vector: [f32; 2],
    region: &'static str,
    below_since: Option<u64>,
    /// Largest downward jaw motion seen while open.
    jaw: f32,
    /// Largest downward motion of both eyes seen while open.
    eyes: f32,
    /// Largest spread of the mouth corners seen while open.
    apart: f32,
    /// How evenly the brows and eyes rose at the apex.
    uniform: f32,
}

/// What the segmenter decided about an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// An interval to emit.
    Interval(Interval),
    /// Dropped: a blink (eye-led downward motion).
    Blink,
    /// Dropped: speech (mouth- or chin-led, with the jaw dropping).
    Speech,
    /// Dropped: too short, or of a kind not emitted.
    Dropped,
    /// Dropped: still above the threshold when the stream was stopped on request (no offset yet).
    Cut,
}

/// The event state machine of one signal.
pub struct Segmenter {
    rules: SegmentRules,
    history: VecDeque<(u64, f32)>,
    capacity: usize,
    open: Option<Open>,
    last: Option<u64>,
    /// The frame the previous event was decided (or dropped) at. The samples up to it were
    /// measured against that event's pinned reference, so no onset reaches back past it, and the
    /// next event's reference (t − k) must come after it.
    decided: Option<u64>,
    /// While no event is open: whether each of the latest `confirm_window` samples was above the
    /// threshold (newest last), and how many were.
    recent: VecDeque<bool>,
    above: u64,
}

impl Segmenter {
    /// A segmenter with empty history.
    pub fn new(rules: SegmentRules) -> Self {
        let capacity = (rules.max_frames + 2 * rules.merge_frames + 8) as usize;
        Self {
            rules,
            history: VecDeque::with_capacity(capacity),
            capacity,
            open: None,
            last: None,
            decided: None,
            recent: VecDeque::with_capacity(rules.confirm_window.max(1) as usize),
            above: 0,
        }
    }

    /// True while an event is open.
    pub fn in_event(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one sample with the current level (None while the threshold warms up) and the kind and
    /// name of the sample's region; returns a decision when an event closes at this frame.
    pub fn step(
        &mut self,
        s: &Sample,
        level: Option<Level>,
        kind: RoiKind,
        region: &'static str,
    ) -> Option<Decision> {
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back((s.index, s.value));
        self.last = Some(s.index);
        match self.open.as_mut() {
            None => {
                // A single sample over the threshold is noise (an estimate that slipped on one
                // frame); a movement stays over it.
                let over = level.is_some_and(|l| s.value > l.threshold);
                self.remember(over);
                if let Some(l) = level
                    && over
                    && self.confirmed()
                    && s.index >= self.quiet_from()
                    && self.reference_was_quiet(s.index, l.threshold)
                {
                    self.open = Some(Open {
                        start: s.index,
                        level: l,
                        peak: s.value,
                        apex: s.index,
                        kind,
                        vector: s.vector,
                        region,
                        below_since: None,
                        jaw: s.jaw,
                        eyes: s.eyes,
                        apart: s.apart,
                        uniform: s.uniform,
                    });
                }
                None
            }
            Some(o) => {
                o.jaw = o.jaw.max(s.jaw);
                o.eyes = o.eyes.max(s.eyes);
                o.apart = o.apart.max(s.apart);
                if s.value > o.peak {
                    o.peak = s.value;
                    o.apex = s.index;
                    o.kind = kind;
                    o.vector = s.vector;
                    o.region = region;
                    o.uniform = s.uniform;
                }
                let edge = edge_level(o, self.rules.edge_fraction);
                // Back at the rest frame ends the event as surely as back at its reference.
                let back = s.rest.is_some_and(|r| r < edge);
                if s.value >= edge && !back {
                    o.below_since = None;
                } else if o.below_since.is_none() {
                    o.below_since = Some(s.index);
                }
                let quiet = o
                    .below_since
                    .is_some_and(|b| s.index - b >= self.rules.merge_frames);
                if quiet || s.index - o.start >= self.rules.max_frames {
                    self.close(s.index)
                } else {
                    None
                }
            }
        }
    }

    /// The first frame an event may open at: its reference (t − k) after the previous decision.
    fn quiet_from(&self) -> u64 {
        self.decided.map_or(0, |d| d + self.rules.lag_frames + 1)
    }

    /// True when enough of the latest samples were above the threshold: a movement near the
    /// threshold dips under it for a sample now and then (the estimate's noise), a slip of one
    /// frame's estimate does not stay.
    fn confirmed(&self) -> bool {
        self.above >= self.rules.confirm_samples
    }

    /// Adds the newest sample to the confirmation window.
    fn remember(&mut self, over: bool) {
        if self.recent.len() as u64 >= self.rules.confirm_window.max(1)
            && self.recent.pop_front() == Some(true)
        {
            self.above -= 1;
        }
        self.recent.push_back(over);
        self.above += u64::from(over);
    }

    /// True when the frame an event opened now would be measured against (t − k) was itself quiet:
    /// pinning a frame in the middle of motion (the tail of an earlier expression) would leave the
    /// event open as long as the face stays away from that frame.
    fn reference_was_quiet(&self, index: u64, threshold: f32) -> bool {
        let at = index.saturating_sub(self.rules.lag_frames);
        self.history
            .iter()
            .rev()
            .find(|h| h.0 <= at)
            .is_none_or(|h| h.1 < threshold)
    }

    /// Ends the stream on a stop request: an event whose signal has fallen back is closed as at a
    /// normal end; one still above the threshold has no offset yet and is dropped ([`Decision::Cut`]).
    pub fn stop(&mut self) -> Option<Decision> {
        match &self.open {
            Some(o) if o.below_since.is_none() => {
                self.open = None;
                Some(Decision::Cut)
            }
            _ => self.finish(),
        }
    }

    /// Drops an open event (its reference is gone); the next may open after the lag.
    pub fn cancel(&mut self) -> Option<Decision> {
        self.open.take()?;
        self.decided = Some(self.last.unwrap_or(0));
        Some(Decision::Dropped)
    }

    /// Closes an open event at the end of the stream.
    pub fn finish(&mut self) -> Option<Decision> {
        let last = self.last?;
        self.open.as_ref()?;
        self.close(last)
    }

    fn close(&mut self, now: u64) -> Option<Decision> {
        let o = self.open.take()?;
        let edge = edge_level(&o, self.rules.edge_fraction);
        let apex_pos = self.history.iter().position(|h| h.0 == o.apex)?;
        let mut onset = o.apex;
        let floor = self.decided.replace(now);
        for h in self.history.range(..apex_pos).rev() {
            if h.1 < edge || floor.is_some_and(|d| h.0 <= d) {
                break;
            }
            onset = h.0;
        }
        // The offset is the last frame at or above the edge before the final quiet run (a lower
        // bump merged within the merge distance belongs to the interval).
        let mut offset = o.apex;
        for h in self.history.range(apex_pos..) {
            if o.below_since.is_some_and(|b| h.0 >= b) {
                break;
            }
            if h.1 >= edge {
                offset = h.0;
            }
        }
        let frames = offset - onset + 1;
        let r = &self.rules;
        if frames < r.min_frames {
            return Some(Decision::Dropped);
        }
        if r.blink_px > 0.0 && is_blink(&o, r, frames) {
            return Some(Decision::Blink);
        }
        if (r.jaw_px > 0.0 && is_speech(&o, r.jaw_px, r.smile_px))
            || (r.uniform_rise > 0.0 && lifts_upper_face(&o, r.uniform_rise))
        {
            return Some(Decision::Speech);
        }
        let kind = if frames <= r.micro_max_frames {
            IntervalKind::Micro
        } else {
            IntervalKind::Macro
        };
        let wanted = match r.emit {
            Emit::Both => true,
            Emit::Micro => kind == IntervalKind::Micro,
            Emit::Macro => kind == IntervalKind::Macro,
        };
        if !wanted {
            return Some(Decision::Dropped);
        }
        Some(Decision::Interval(Interval {
            onset,
            apex: o.apex,
            offset,
            score: o.peak / o.level.threshold.max(1e-6),
            kind,
            decided_at: now,
            region: o.region,
        }))
    }
}

/// Eye-led downward motion, or a brow-led event during which both eyes moved down by at least
/// `blink_brow_ratio` of the brow's motion: closing lids pull the skin under the brows with them
/// about as far as the lids go, while a brow lowerer (AU4) moves the brows more than the eyes below
/// them.
fn is_blink(o: &Open, r: &SegmentRules, frames: u64) -> bool {
    match o.kind {
        RoiKind::Eye => o.vector[1] > r.blink_px,
        RoiKind::Brow => {
            o.eyes > r.blink_px
                && (o.eyes >= r.blink_brow_ratio * o.vector[1] || frames <= r.blink_max_frames)
        }
        _ => false,
    }
}

/// Talking drops the jaw; no AU spotted here does (AU26 is not among them), and a surprise that
/// opens the mouth is led by the brows. Regions are measured against the nose window, and a smile
/// (AU12) or dimpler (AU14) raises the cheeks into it: the nose "rises", so the chin and the eyes
/// both seem to drop. So the jaw's drop counts from the eyes' when they seemed to drop too, and a
/// mouth-led event is speech only when its corner also moved more down than sideways (a smile
/// pulls the corners up and out, a dimpler in). When the cheeks rise the lids may rise with them,
/// so the eyes need not seem to drop: an event whose mouth corners moved apart by more than
/// `smile_px` (0: never) is a smile whatever its jaw did.
fn is_speech(o: &Open, jaw_px: f32, smile_px: f32) -> bool {
    if smile_px > 0.0 && o.apart > smile_px {
        return false;
    }
    let dropped = o.jaw - o.eyes.max(0.0) > jaw_px;
    match o.kind {
        RoiKind::Chin => dropped,
        RoiKind::Mouth => dropped && o.vector[1] > o.vector[0].abs(),
        _ => false,
    }
}

/// A brow- or eye-led event moving up during which, at its apex, every brow and eye region rose by
/// at least `ratio` of the highest: the regions are measured against the nose window, and talking
/// drags that window down, so the whole upper face seems to rise together. A brow raise (AU1,
/// AU2) lifts the lids less than the brows.
fn lifts_upper_face(o: &Open, ratio: f32) -> bool {
    matches!(o.kind, RoiKind::Brow | RoiKind::Eye) && o.vector[1] < 0.0 && o.uniform >= ratio
}

fn edge_level(o: &Open, fraction: f32) -> f32 {
    o.level.baseline + fraction * (o.peak - o.level.baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> SegmentRules {
        SegmentRules {
            edge_fraction: 0.25,
            merge_frames: 5,
            min_frames: 2,
            max_frames: 400,
            micro_max_frames: 20,
            blink_px: 0.0,
            blink_brow_ratio: 0.75,
            blink_max_frames: 0,
            jaw_px: 0.0,
            smile_px: 0.0,
            uniform_rise: 0.0,
            emit: Emit::Both,
            lag_frames: 3,
            confirm_samples: 1,
            confirm_window: 1,
        }
    }

    fn run(values: &[f32]) -> Vec<Interval> {
        let mut s = Segmenter::new(rules());
        run_with(&mut s, values, RoiKind::Brow, 0.0)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Interval(iv) => Some(iv),
                _ => None,
            })
            .collect()
    }

    /// Every decision over `values`, led by a region of `kind`, the jaw at `jaw` px throughout.
    fn run_with(s: &mut Segmenter, values: &[f32], kind: RoiKind, jaw: f32) -> Vec<Decision> {
        let mut out = feed(s, values, kind, jaw);
        out.extend(s.finish());
        out
    }

    /// The decisions over `values` without ending the stream.
    fn feed(s: &mut Segmenter, values: &[f32], kind: RoiKind, jaw: f32) -> Vec<Decision> {
        feed_moving(s, values, kind, jaw, 0.0, [0.0, 1.0])
    }

    /// A fresh segmenter with `rules` over the whole stream: [`feed_moving`], then the end.
    fn run_moving(
        rules: SegmentRules,
        values: &[f32],
        kind: RoiKind,
        jaw: f32,
        eyes: f32,
        direction: [f32; 2],
    ) -> Vec<Decision> {
        let mut s = Segmenter::new(rules);
        let mut out = feed_moving(&mut s, values, kind, jaw, eyes, direction);
        out.extend(s.finish());
        out
    }

    /// [`feed`] with both eyes moving down by `eyes` × the lead region's value and the lead region
    /// moving along `direction` (a unit vector, y down).
    fn feed_moving(
        s: &mut Segmenter,
        values: &[f32],
        kind: RoiKind,
        jaw: f32,
        eyes: f32,
        direction: [f32; 2],
    ) -> Vec<Decision> {
        feed_samples(s, values, kind, |i, v| Sample {
            jaw,
            eyes: eyes * v,
            ..plain(i, v, direction.map(|c| c * v))
        })
    }

    /// One decision per event for `values` led by `kind`, each sample made by `make(i, value)`.
    fn run_samples(
        rules: SegmentRules,
        values: &[f32],
        kind: RoiKind,
        make: impl Fn(usize, f32) -> Sample,
    ) -> Vec<Decision> {
        let mut s = Segmenter::new(rules);
        let mut out = feed_samples(&mut s, values, kind, make);
        out.extend(s.finish());
        out
    }

    /// Feeds `make(i, value)` for each value at the test level.
    fn feed_samples(
        s: &mut Segmenter,
        values: &[f32],
        kind: RoiKind,
        make: impl Fn(usize, f32) -> Sample,
    ) -> Vec<Decision> {
        let level = Level {
            baseline: 0.1,
            threshold: 0.5,
        };
        let mut out = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            out.extend(s.step(&make(i, v), Some(level), kind, "region"));
        }
        out
    }

    /// A sample of value `v` at `i` moving along `vector`, everything else zero.
    fn plain(i: usize, v: f32, vector: [f32; 2]) -> Sample {
        Sample {
            index: i as u64,
            value: v,
            region: 0,
            vector,
            jaw: 0.0,
            eyes: 0.0,
            apart: 0.0,
            uniform: 0.0,
            rest: None,
        }
    }

    /// One decision per event for `values` led by `kind`, the jaw dropping by `jaw`, the mouth
    /// corners apart by `apart` and the regions `rest(i)` spreads from the rest frame at sample i.
    fn run_full(
        rules: SegmentRules,
        values: &[f32],
        kind: RoiKind,
        (jaw, apart): (f32, f32),
        rest: impl Fn(usize) -> Option<f32>,
    ) -> Vec<Decision> {
        run_samples(rules, values, kind, |i, v| Sample {
            jaw,
            apart,
            rest: rest(i),
            ..plain(i, v, [0.0, v])
        })
    }

    #[test]
    fn a_chin_led_event_whose_mouth_corners_spread_is_a_smile_not_speech() {
        let mut v = vec![0.1f32; 80];
        v[20..50].iter_mut().for_each(|x| *x = 2.0);
        let r = SegmentRules {
            jaw_px: 0.5,
            smile_px: 0.25,
            ..rules()
        };
        let one = |r, apart| run_full(r, &v, RoiKind::Chin, (0.8, apart), |_| None);
        assert!(matches!(one(r, 0.4)[..], [Decision::Interval(_)]));
        // Corners still (talking opens the jaw, not the mouth's width): speech.
        assert_eq!(one(r, 0.1), vec![Decision::Speech]);
        // Off at 0.
        let off = SegmentRules { smile_px: 0.0, ..r };
        assert_eq!(one(off, 0.4), vec![Decision::Speech]);
    }

    #[test]
    fn a_brow_led_rise_of_the_whole_upper_face_is_the_nose_window_moving() {
        let mut v = vec![0.1f32; 80];
        v[20..50].iter_mut().for_each(|x| *x = 2.0);
        let r = SegmentRules {
            uniform_rise: 0.8,
            ..rules()
        };
        let one = |r: SegmentRules, kind, up: f32, uniform: f32| {
            run_samples(r, &v, kind, |i, x| Sample {
                uniform,
                ..plain(i, x, [0.0, -up * x])
            })
        };
        // Brows and eyes all up by nearly the same amount: speech dragging the reference.
        assert_eq!(one(r, RoiKind::Brow, 1.0, 0.9), vec![Decision::Speech]);
        assert_eq!(one(r, RoiKind::Eye, 1.0, 0.85), vec![Decision::Speech]);
        // A brow raise lifts the lids less; a brow lowerer moves down; a mouth-led event is
        // judged by the speech rule, not this one; off at 0.
        assert!(matches!(
            one(r, RoiKind::Brow, 1.0, 0.5)[..],
            [Decision::Interval(_)]
        ));
        assert!(matches!(
            one(r, RoiKind::Brow, -1.0, 0.9)[..],
            [Decision::Interval(_)]
        ));
        assert!(matches!(
            one(r, RoiKind::Mouth, 1.0, 0.9)[..],
            [Decision::Interval(_)]
        ));
        let off = SegmentRules {
            uniform_rise: 0.0,
            ..r
        };
        assert!(matches!(
            one(off, RoiKind::Brow, 1.0, 0.9)[..],
            [Decision::Interval(_)]
        ));
    }

    #[test]
    fn an_event_ends_when_its_regions_are_back_at_the_rest_frame() {
        // Pinned mid-movement: the signal rises at 20 and never comes back to that reference.
        let mut v = vec![0.1f32; 200];
        v[20..].iter_mut().for_each(|x| *x = 2.0);
        // From the rest frame the regions stand 3 spreads away until 40, then at the noise floor.
        let rest = |i: usize| Some(if i < 40 { 3.0 } else { 0.05 });
        let got = run_full(rules(), &v, RoiKind::Brow, (0.0, 0.0), rest);
        let [Decision::Interval(iv)] = got[..] else {
            panic!("{got:?}");
        };
        assert_eq!((iv.onset, iv.offset), (20, 39), "{iv:?}");
        assert_eq!(iv.decided_at, 40 + rules().merge_frames, "{iv:?}");
        // Without a rest frame it stays open to the end.
        let got = run_full(rules(), &v, RoiKind::Brow, (0.0, 0.0), |_| None);
        assert!(
            matches!(got[..], [Decision::Interval(Interval { offset: 199, .. })]),
            "{got:?}"
        );
    }

    #[test]
    fn a_mouth_led_event_with_the_jaw_dropping_is_speech() {
        let mut v = vec![0.1f32; 80];
        v[20..50].iter_mut().for_each(|x| *x = 2.0);
        let speech = SegmentRules {
            jaw_px: 0.5,
            ..rules()
        };
        let one = |kind, jaw| run_with(&mut Segmenter::new(speech), &v, kind, jaw);
        assert_eq!(one(RoiKind::Mouth, 0.8), vec![Decision::Speech]);
        assert_eq!(one(RoiKind::Chin, 0.8), vec![Decision::Speech]);
        // The jaw still or rising (AU17 pushes the chin up), or a brow-led event: an expression.
        assert!(matches!(
            one(RoiKind::Mouth, 0.3)[..],
            [Decision::Interval(_)]
        ));
        assert!(matches!(
            one(RoiKind::Chin, -1.0)[..],
            [Decision::Interval(_)]
        ));
        assert!(matches!(
            one(RoiKind::Brow, 0.8)[..],
            [Decision::Interval(_)]
        ));
        // The corner moved up and out (a smile) or sideways (a dimpler) while the chin seemed to
        // drop: an expression. Down and a little sideways: speech.
        let mouth = |direction| run_moving(speech, &v, RoiKind::Mouth, 0.8, 0.0, direction);
        assert!(matches!(mouth([0.89, -0.45])[..], [Decision::Interval(_)]));
        assert!(matches!(mouth([-0.86, 0.51])[..], [Decision::Interval(_)]));
        assert_eq!(mouth([-0.31, 0.95]), vec![Decision::Speech]);
        // The eyes seemed to drop 0.7 px (0.35 × the signal's 2), nearly as much as the chin's
        // 0.8: the nose window rose under the cheeks, the jaw did not drop. Eyes 0.2 px: speech.
        let chin = |eyes| run_moving(speech, &v, RoiKind::Chin, 0.8, eyes, [0.0, 1.0]);
        assert!(matches!(chin(0.35)[..], [Decision::Interval(_)]));
        assert_eq!(chin(0.1), vec![Decision::Speech]);
        // Off at 0.
        let off = |kind, jaw| run_with(&mut Segmenter::new(rules()), &v, kind, jaw);
        assert!(matches!(
            off(RoiKind::Mouth, 0.8)[..],
            [Decision::Interval(_)]
        ));
    }

    #[test]
    fn a_brow_led_event_with_both_eyes_closing_is_a_blink() {
        let mut v = vec![0.1f32; 80];
        v[20..40].iter_mut().for_each(|x| *x = 1.0);
        let blink = SegmentRules {
            blink_px: 0.25,
            ..rules()
        };
        let with = |kind, eyes| run_moving(blink, &v, kind, 0.0, eyes, [0.0, 1.0]);
        // The brow moves down 1 px and both eyes 0.8: the lids pulled it.
        assert_eq!(with(RoiKind::Brow, 0.8), vec![Decision::Blink]);
        // A brow lowerer: the eyes below move a fifth as much, or with the lids following it,
        // two thirds (below blink_brow_ratio).
        for eyes in [0.2, 0.65] {
            assert!(
                matches!(with(RoiKind::Brow, eyes)[..], [Decision::Interval(_)]),
                "eyes {eyes}"
            );
        }
        // The ratio is a key: at 0.5 the lids' two thirds are a blink.
        let half = SegmentRules {
            blink_brow_ratio: 0.5,
            ..blink
        };
        assert_eq!(
            run_moving(half, &v, RoiKind::Brow, 0.0, 0.65, [0.0, 1.0]),
            vec![Decision::Blink]
        );
        // A mouth-led event is not judged by the eyes.
        assert!(matches!(
            with(RoiKind::Mouth, 0.8)[..],
            [Decision::Interval(_)]
        ));
    }

    #[test]
    fn a_short_brow_led_event_with_both_eyes_down_is_a_blink_whatever_the_brow_did() {
        // The brow moves down 1 px and both eyes 0.4 px (under blink_brow_ratio), for 20 or 40
        // frames.
        let event = |len: usize| {
            let mut v = vec![0.1f32; 100];
            v[20..20 + len].iter_mut().for_each(|x| *x = 1.0);
            v
        };
        let short = SegmentRules {
            blink_px: 0.25,
            blink_max_frames: 30,
            ..rules()
        };
        let with =
            |rules, len, eyes| run_moving(rules, &event(len), RoiKind::Brow, 0.0, eyes, [0.0, 1.0]);
        assert_eq!(with(short, 20, 0.4), vec![Decision::Blink]);
        // Longer than blink_max_frames: an expression whose lids follow the brow.
        assert!(matches!(with(short, 40, 0.4)[..], [Decision::Interval(_)]));
        // Eyes under blink_px: not a blink, however short.
        assert!(matches!(with(short, 20, 0.2)[..], [Decision::Interval(_)]));
        // Off (0): the ratio alone decides, as before.
        let off = SegmentRules {
            blink_max_frames: 0,
            ..short
        };
        assert!(matches!(with(off, 20, 0.4)[..], [Decision::Interval(_)]));
    }

    #[test]
    fn an_onset_never_reaches_back_into_the_previous_event() {
        // A large event, a tail under its edge but over the next one's, then a smaller event: the
        // second's onset walks back through the tail and stops after the first's decision.
        let mut v = vec![0.1f32; 100];
        v[10..20].iter_mut().for_each(|x| *x = 3.0);
        v[20..40].iter_mut().for_each(|x| *x = 0.4);
        v[40..50].iter_mut().for_each(|x| *x = 1.0);
        let ivs = run(&v);
        assert_eq!(ivs.len(), 2, "{ivs:?}");
        assert_eq!((ivs[0].onset, ivs[0].offset), (10, 19));
        assert!(
            ivs[1].onset > ivs[0].decided_at && ivs[1].onset < 40,
            "{ivs:?}"
        );
    }

    #[test]
    fn a_one_sample_spike_opens_nothing_when_confirmation_is_asked() {
        let confirm = SegmentRules {
            confirm_samples: 3,
            confirm_window: 3,
            ..rules()
        };
        let decisions = |v: &[f32]| {
            let mut s = Segmenter::new(confirm);
            run_with(&mut s, v, RoiKind::Brow, 0.0)
        };
        let mut v = vec![0.1f32; 60];
        v[20] = 3.0;
        v[30] = 3.0;
        v[31] = 3.0;
        assert!(decisions(&v).is_empty(), "{:?}", decisions(&v));
        // Without confirmation the same spikes are events (then dropped or kept by length).
        assert!(!run_with(&mut Segmenter::new(rules()), &v, RoiKind::Brow, 0.0).is_empty());
        // A movement that stays over the threshold opens, with its onset where it began.
        let mut w = vec![0.1f32; 60];
        w[20..32].iter_mut().for_each(|x| *x = 2.0);
        match decisions(&w)[..] {
            [Decision::Interval(iv)] => assert_eq!((iv.onset, iv.offset), (20, 31)),
            ref d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_movement_that_dips_under_the_threshold_opens_within_the_confirmation_window() {
        let rules_with = |window| SegmentRules {
            confirm_samples: 3,
            confirm_window: window,
            // Frame t - k is before the movement when it opens on its fourth sample.
            lag_frames: 4,
            ..rules()
        };
        let decisions = |r: SegmentRules, v: &[f32]| {
            let mut s = Segmenter::new(r);
            run_with(&mut s, v, RoiKind::Brow, 0.0)
        };
        // Over the threshold (0.5) on two samples of every three: never three in a row.
        let mut v = vec![0.1f32; 60];
        for (i, x) in v[20..32].iter_mut().enumerate() {
            *x = if i % 3 == 2 { 0.45 } else { 0.9 };
        }
        assert!(decisions(rules_with(3), &v).is_empty());
        match decisions(rules_with(5), &v)[..] {
            [Decision::Interval(iv)] => assert!(iv.onset <= 21 && iv.offset >= 30, "{iv:?}"),
            ref d => panic!("{d:?}"),
        }
        // Two lone spikes inside the window are still not a movement.
        let mut w = vec![0.1f32; 60];
        w[20] = 3.0;
        w[23] = 3.0;
        assert!(decisions(rules_with(5), &w).is_empty());
    }

    #[test]
    fn a_long_confirmation_counts_every_sample_of_its_window() {
        // 70 of the latest 100 samples (a long lag at a high rate): more than a machine word.
        let long = SegmentRules {
            confirm_samples: 70,
            confirm_window: 100,
            lag_frames: 100,
            max_frames: 1000,
            ..rules()
        };
        let mut v = vec![0.1f32; 300];
        for (i, x) in v[20..200].iter_mut().enumerate() {
            *x = if i % 10 == 9 { 0.45 } else { 0.9 };
        }
        let got = run_with(&mut Segmenter::new(long), &v, RoiKind::Brow, 0.0);
        assert!(matches!(got[..], [Decision::Interval(_)]), "{got:?}");
        // 69 samples over within the window are not enough.
        let mut w = vec![0.1f32; 300];
        w[20..89].iter_mut().for_each(|x| *x = 0.9);
        assert!(run_with(&mut Segmenter::new(long), &w, RoiKind::Brow, 0.0).is_empty());
    }

    #[test]
    fn a_cancelled_event_is_dropped_and_the_next_waits_for_the_lag() {
        let mut s = Segmenter::new(rules());
        let mut v = [0.1f32; 30];
        v[10..20].iter_mut().for_each(|x| *x = 2.0);
        assert!(feed(&mut s, &v[..15], RoiKind::Brow, 0.0).is_empty());
        assert!(s.in_event());
        assert_eq!(s.cancel(), Some(Decision::Dropped));
        assert!(!s.in_event());
        assert_eq!(s.cancel(), None);
    }

    #[test]
    fn a_bump_gives_one_interval_at_its_edges() {
        let mut v = vec![0.1f32; 60];
        // Bump from 20 to 30, apex 24 at 2.1.
        for (i, x) in [0.3, 0.7, 1.2, 1.8, 2.1, 1.9, 1.4, 0.9, 0.5, 0.3, 0.2]
            .iter()
            .enumerate()
        {
            v[20 + i] = *x;
        }
        let iv = run(&v);
        assert_eq!(iv.len(), 1, "{iv:?}");
        // Edge = 0.1 + 0.25 * 2.0 = 0.6.
        assert_eq!((iv[0].onset, iv[0].apex, iv[0].offset), (21, 24, 27));
        assert_eq!(iv[0].kind, IntervalKind::Micro);
        assert!(iv[0].decided_at <= 28 + 5);
        // Two bumps 3 frames apart merge; 20 apart do not.
        let mut w = v.clone();
        w[33] = 1.5;
        w[34] = 1.5;
        assert_eq!(run(&w).len(), 1);
        let mut w = v.clone();
        w[48] = 1.5;
        w[49] = 1.5;
        assert_eq!(run(&w).len(), 2);
        // A long plateau is macro.
        let mut w = vec![0.1f32; 100];
        w[10..60].iter_mut().for_each(|x| *x = 2.0);
        let iv = run(&w);
        assert_eq!(iv.len(), 1);
        assert_eq!(iv[0].kind, IntervalKind::Macro);
        assert_eq!((iv[0].onset, iv[0].offset), (10, 59));
    }
}
