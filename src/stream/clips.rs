//! Per-face state on the camera path: the aligned-crop ring, the spotter, and the clip handed to
//! inference when the spotter decides an interval.

use crate::clip::{Clip, sample_positions};
use crate::spot::{Interval, Spotter};
use std::collections::VecDeque;

/// When and where one frame was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameTimes {
    /// Source sequence number (the spotter's frame index).
    pub seq: u64,
    /// Seconds from the first frame of the stream.
    pub stream_s: f64,
    /// Host wall-clock time (CLOCK_REALTIME), ns.
    pub host_ns: i64,
    /// Capture time (CLOCK_MONOTONIC), ns.
    pub mono_ns: i64,
}

/// A spotted interval with the T crops the front-end will read.
#[derive(Debug, Clone)]
pub struct ClipJob {
    /// Face track.
    pub face_id: u32,
    /// The interval.
    pub interval: Interval,
    /// Times of the onset, apex and offset frames.
    pub times: [FrameTimes; 3],
    /// T aligned crops sampled onset → apex → offset (`clip.apex` is the apex's).
    pub clip: Clip,
    /// Whether the onset was older than the ring (the clip starts at the oldest crop kept).
    pub truncated: bool,
}

/// One tracked face: its spotter and the last `capacity` aligned crops.
pub struct FaceState {
    spotter: Spotter,
    ring: VecDeque<(FrameTimes, Vec<u8>)>,
    capacity: usize,
}

impl FaceState {
    /// A face with a spotter and a ring of `capacity` crops (at least 2).
    pub fn new(spotter: Spotter, capacity: usize) -> FaceState {
        FaceState {
            spotter,
            ring: VecDeque::with_capacity(capacity.max(2)),
            capacity: capacity.max(2),
        }
    }

    /// Adds a frame's crop; returns the clips of intervals decided at this frame.
    pub fn push(
        &mut self,
        face_id: u32,
        times: FrameTimes,
        crop: Vec<u8>,
        crop_size: usize,
        frames: usize,
    ) -> anyhow::Result<Vec<ClipJob>> {
        let decided = self.spotter.push(times.seq, &crop)?;
        if self.ring.len() == self.capacity {
            // The ring holds the last `capacity` crops: the oldest leaves (and is freed).
            self.ring.pop_front();
        }
        self.ring.push_back((times, crop));
        Ok(decided
            .into_iter()
            .filter_map(|iv| self.job(face_id, iv, crop_size, frames))
            .collect())
    }

    /// End of stream: clips of intervals still open. After a stop request (`stopped`), an
    /// interval still rising is dropped (counted in [`FaceState::cut`]) rather than cut short.
    pub fn finish(
        &mut self,
        face_id: u32,
        crop_size: usize,
        frames: usize,
        stopped: bool,
    ) -> Vec<ClipJob> {
        let ivs = if stopped {
            self.spotter.stop()
        } else {
            self.spotter.finish()
        };
        ivs.into_iter()
            .filter_map(|iv| self.job(face_id, iv, crop_size, frames))
            .collect()
    }

    /// Intervals dropped because the stream was stopped while they were still rising.
    pub fn cut(&self) -> u64 {
        self.spotter.stats().cut
    }

    /// The latest spotting signal (frame, value).
    pub fn signal(&self) -> Option<(u64, f32)> {
        self.spotter.signal()
    }

    /// Builds the clip for `iv` from the ring (None if the ring holds none of its frames).
    fn job(&self, face_id: u32, iv: Interval, crop_size: usize, frames: usize) -> Option<ClipJob> {
        let oldest = self.ring.front()?.0.seq;
        let newest = self.ring.back()?.0.seq;
        if iv.offset < oldest {
            return None;
        }
        let truncated = iv.onset < oldest;
        let onset = iv.onset.max(oldest);
        let offset = iv.offset.min(newest);
        let apex = iv.apex.clamp(onset, offset);
        let find = |seq: u64| -> &(FrameTimes, Vec<u8>) {
            // Frames may be missing (drops): take the last kept frame at or before `seq`.
            let i = self.ring.partition_point(|(t, _)| t.seq <= seq);
            &self.ring[i.saturating_sub(1)]
        };
        let mut clip = Clip::new(crop_size);
        for p in sample_positions(onset, apex, offset, frames) {
            clip.push(&find(p).1);
        }
        // sample_positions puts the apex last in the rise: position ⌈T/2⌉ − 1.
        clip.apex = frames.div_ceil(2).saturating_sub(1);
        Some(ClipJob {
            face_id,
            interval: iv,
            times: [find(onset).0, find(apex).0, find(offset).0],
            clip,
            truncated,
        })
    }
}
