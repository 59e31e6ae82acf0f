//! The camera path's side of the monitor: it collects the spotting signal on every frame and hands
//! counters, faces and images over every [`HANDOVER`] without ever waiting for a reader.

use super::{CameraView, Gray, Monitor};
use crate::frame::{Frame, Pixels};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the camera path offers a snapshot (5 Hz: enough for a person, nothing for 200 fps).
pub const HANDOVER: Duration = Duration::from_millis(200);
/// Widest face image handed over, pixels.
const FACE_WIDTH: usize = 200;

/// Per-run camera-side state.
pub struct Feed {
    mon: Arc<Monitor>,
    pending: Vec<[f32; 2]>,
    next: Instant,
    /// Recent successful handovers (time, frames, received): the rates are taken over about a second.
    last: std::collections::VecDeque<(Instant, u64, u64)>,
    image_seq: u64,
}

impl Feed {
    /// A feed into `mon`.
    pub fn new(mon: Arc<Monitor>) -> Feed {
        Feed {
            mon,
            pending: Vec::new(),
            next: Instant::now(),
            last: std::collections::VecDeque::new(),
            image_seq: 0,
        }
    }

    /// One spotting-signal sample (stream seconds, value in noise spreads).
    pub fn signal(&mut self, t: f64, v: f32) {
        // Bounded even if the page's reader held the lock for a long time.
        if self.pending.len() < 1 << 16 {
            self.pending.push([t as f32, v]);
        }
    }

    /// Whether a handover is due.
    pub fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Offers a snapshot: `fill` sets the counters and faces; the frame rates are derived here.
    /// Returns without waiting when a reader holds the lock (the next frame tries again).
    pub fn hand_over(
        &mut self,
        frames: u64,
        received: u64,
        face: Option<Gray>,
        crop: Option<Gray>,
        fill: impl FnOnce(&mut CameraView),
    ) {
        let now = Instant::now();
        let (fps_in, fps_processed) = match self.last.front().copied() {
            Some((t, f, r)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-6);
                (
                    received.saturating_sub(r) as f64 / dt,
                    frames.saturating_sub(f) as f64 / dt,
                )
            }
            None => (0.0, 0.0),
        };
        let has_images = face.is_some() || crop.is_some();
        let seq = self.image_seq + has_images as u64;
        let done = self.mon.try_hand_over(
            |v| {
                fill(v);
                v.frames = frames;
                v.fps_in = fps_in;
                v.fps_processed = fps_processed;
                // Each image keeps its last copy until a newer one comes (they are taken on
                // separate clocks).
                if has_images {
                    if face.is_some() {
                        v.face = face;
                    }
                    if crop.is_some() {
                        v.crop = crop;
                    }
                    v.image_seq = seq;
                }
            },
            &mut self.pending,
        );
        if done {
            self.image_seq = seq;
            self.last.push_back((now, frames, received));
            if self.last.len() > 5 {
                self.last.pop_front();
            }
            self.next = now + HANDOVER;
        }
    }
}

/// The region around `bbox` (`[l, t, r, b]`, grown by a quarter) of `frame`, at most
/// [`FACE_WIDTH`] wide (every n-th pixel). None when the region cannot be read.
pub fn face_region(frame: &mut Frame, bbox: [f32; 4]) -> Option<Gray> {
    let (w, h) = (frame.width as f32, frame.height as f32);
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    if !(bw > 1.0 && bh > 1.0) {
        return None;
    }
    let x0 = (bbox[0] - bw / 8.0).clamp(0.0, w) as usize;
    let y0 = (bbox[1] - bh / 8.0).clamp(0.0, h) as usize;
    let x1 = (bbox[2] + bw / 8.0).clamp(0.0, w) as usize;
    let y1 = (bbox[3] + bh / 8.0).clamp(0.0, h) as usize;
    if x1 <= x0 + 1 || y1 <= y0 + 1 {
        return None;
    }
    let stride = frame.width as usize;
    let step = (x1 - x0).div_ceil(FACE_WIDTH).max(1);
    let px = frame
        .region([x0 as u32, y0 as u32, x1 as u32, y1 as u32])
        .ok()?;
    let (ow, oh) = ((x1 - x0).div_ceil(step), (y1 - y0).div_ceil(step));
    let mut pixels = Vec::with_capacity(ow * oh);
    for y in (y0..y1).step_by(step) {
        let row = &px[y * stride..y * stride + stride];
        pixels.extend(row[x0..x1].iter().step_by(step));
    }
    Some(Gray {
        width: ow,
        height: oh,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PooledBuf;

    fn frame(w: u32, h: u32) -> Frame {
        Frame {
            seq: 0,
            pts_ns: 0,
            host_ns: 0,
            mono_ns: 0,
            width: w,
            height: h,
            period_ns: None,
            pixels: PooledBuf::unpooled((0..w * h).map(|i| (i % w) as u8).collect()),
            jpeg: None,
            valid: [0, 0, w, h],
            decodes: 0,
        }
    }

    #[test]
    fn the_face_region_is_taken_around_the_box_and_downscaled() {
        let mut f = frame(640, 480);
        let g = face_region(&mut f, [200.0, 100.0, 520.0, 420.0]).unwrap();
        assert!(g.width <= FACE_WIDTH, "{}", g.width);
        assert_eq!(g.pixels.len(), g.width * g.height);
        // Columns start at the grown box's left edge: 200 − 320/8 = 160.
        assert_eq!(g.pixels[0], 160);
        assert!(face_region(&mut f, [10.0, 10.0, 10.0, 40.0]).is_none());
    }

    #[test]
    fn a_box_outside_the_frame_is_clamped() {
        let mut f = frame(64, 48);
        let g = face_region(&mut f, [40.0, 30.0, 90.0, 80.0]).unwrap();
        assert!(g.width <= 64 && g.height <= 48);
        assert_eq!(g.pixels.len(), g.width * g.height);
    }

    #[test]
    fn a_feed_hands_over_rates_and_images() {
        let m = Monitor::new(7.0);
        let mut feed = Feed::new(m.clone());
        assert!(feed.due());
        feed.signal(0.5, 3.0);
        let crop = Gray {
            width: 2,
            height: 2,
            pixels: vec![1, 2, 3, 4],
        };
        feed.hand_over(10, 12, None, Some(crop), |v| v.clip_queue = 3);
        assert!(!feed.due(), "the next handover waits {HANDOVER:?}");
        let s: serde_json::Value = serde_json::from_str(&m.state_json(0)).unwrap();
        assert_eq!(s["view"]["frames"], 10);
        assert_eq!(s["view"]["clip_queue"], 3);
        assert_eq!(s["view"]["image_seq"], 1);
        assert_eq!(s["signal"][0][1], 3.0);
        assert_eq!(
            m.image(super::super::ImageKind::Crop).unwrap().pixels,
            [1, 2, 3, 4]
        );
    }
}
