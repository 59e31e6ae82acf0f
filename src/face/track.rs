//! Multi-face tracking: detect every N frames (or when a track is lost), follow faces in between by
//! registration, keep stable ids, and emit a stabilised aligned crop per face per frame.

use super::align::{CropTemplate, Similarity, warp_crop, warp_footprint};
use super::detect::{Detection, FaceDetector, iou};
use super::stabilise::Registration;
use crate::face::AlignConfig;
use crate::face::FaceConfig;
use crate::frame::{Frame, Gray, Pixels, Rect};
use anyhow::Result;

/// One tracked face in one frame.
#[derive(Debug, Clone)]
pub struct FaceObservation {
    /// Stable track id (1, 2, ... in order of appearance).
    pub track_id: u32,
    /// Box in frame pixels `[l, t, r, b]`, following the registered crop between detections.
    pub bbox: [f32; 4],
    /// The six BlazeFace keypoints in frame pixels (carried by the crop transform between detections).
    pub keypoints: [[f32; 2]; 6],
    /// Score of the track's latest detection.
    pub confidence: f32,
    /// True when the detector ran and matched this face on this frame.
    pub detected: bool,
    /// Aligned gray crop, `size`×`size`.
    pub crop: Vec<u8>,
    /// Crop→frame similarity transform.
    pub crop_to_frame: Similarity,
    /// Registration residual (normalised; 0 without stabilisation).
    pub residual: f32,
}

/// Per-track state.
struct Track {
    id: u32,
    crop_to_frame: Similarity,
    /// Keypoints in crop coordinates at the last anchor: carried through the transform each frame.
    keypoints_crop: [[f64; 2]; 6],
    bbox_crop: [f64; 4],
    confidence: f32,
    misses: u32,
    /// Consecutive detections that contradicted the followed transform.
    disagreements: u32,
    registration: Option<Registration>,
    needs_detection: bool,
}

/// Counters of what the tracker did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TrackerStats {
    /// Frames processed.
    pub frames: u64,
    /// Detector runs.
    pub detector_runs: u64,
    /// Tracks started.
    pub tracks_started: u64,
    /// Tracks re-anchored on the detector because registration drifted or failed.
    pub reanchors: u64,
    /// Tracks dropped after missing detections.
    pub tracks_lost: u64,
    /// Registrations run (one per tracked face per frame when stabilising).
    pub registrations: u64,
    /// Gauss-Newton iterations over all registrations.
    pub registration_iterations: u64,
}

/// The face stage: detector + tracks + alignment.
pub struct FaceTracker {
    detector: FaceDetector,
    face: FaceConfig,
    align: AlignConfig,
    template: CropTemplate,
    tracks: Vec<Track>,
    next_id: u32,
    frame_index: u64,
    stats: TrackerStats,
}

impl FaceTracker {
    /// A tracker around a loaded detector.
    pub fn new(detector: FaceDetector, face: FaceConfig, align: AlignConfig) -> Self {
        Self {
            template: CropTemplate::from_config(&align),
            detector,
            face,
            align,
            tracks: Vec::new(),
            next_id: 1,
            frame_index: 0,
            stats: TrackerStats::default(),
        }
    }

    /// Forgets every track (a new, unrelated sequence follows); the detector stays loaded.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.next_id = 1;
        self.frame_index = 0;
    }

    /// What the tracker has done so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// The detector (for benchmarks of the detector alone).
    pub fn detector_mut(&mut self) -> &mut FaceDetector {
        &mut self.detector
    }

    /// Processes one gray frame and returns every tracked face on it.
    pub fn process(
        &mut self,
        gray: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Vec<FaceObservation>> {
        self.process_pixels(&mut Gray {
            data: gray,
            width,
            height,
        })
    }

    /// Processes one ingest frame: a frame still compressed is decoded only around the faces
    /// (the whole frame when the detector searches it).
    pub fn process_frame(&mut self, frame: &mut Frame) -> Result<Vec<FaceObservation>> {
        if frame.jpeg.is_some() {
            let hint = self.read_hint(frame.width as usize, frame.height as usize);
            frame.prefetch(hint)?;
        }
        self.process_pixels(frame)
    }

    /// The frame region the next [`Self::process_pixels`] call will read: every track's crop
    /// neighbourhood, the detector's squares when a detection is due, or the whole frame when the
    /// detector searches it. Reads outside it still work (they decode more), only slower.
    pub fn read_hint(&self, width: usize, height: usize) -> Rect {
        let scheduled = self
            .frame_index
            .is_multiple_of(self.face.detect_every as u64);
        let whole_search = scheduled && self.tracks.len() < self.face.max_faces;
        // Room for a frame's head motion at the predicted transform.
        self.region_hint(width, height, 8.0, whole_search, |t| {
            scheduled || t.needs_detection
        })
    }

    /// The region to decode for the coming frame and the one after it together: its
    /// [`read_hint`](Self::read_hint) while neither frame searches for faces (no detection due or
    /// needed, which reads more), else `None`.
    pub fn pair_hint(&self, width: usize, height: usize) -> Option<Rect> {
        let every = self.face.detect_every as u64;
        let due = |i: u64| i.is_multiple_of(every);
        let searching = due(self.frame_index)
            || due(self.frame_index + 1)
            || self.tracks.iter().any(|t| t.needs_detection);
        (!self.tracks.is_empty() && !searching).then(|| self.read_hint(width, height))
    }

    /// The region worth decoding for frames still in the ingest queue (ahead of this tracker):
    /// every track's crop and detector neighbourhoods with room for the motion of a queue's worth
    /// of frames, or the whole frame while faces are missing.
    pub fn decode_hint(&self, width: usize, height: usize) -> Rect {
        const QUEUE_MOTION_PX: f64 = 24.0;
        let missing = self.tracks.len() < self.face.max_faces;
        self.region_hint(width, height, QUEUE_MOTION_PX, missing, |_| true)
    }

    /// Union of the tracks' crop footprints (and detector squares where `detect(track)`), grown by
    /// `motion_px`; the whole frame when `whole` or without tracks.
    fn region_hint(
        &self,
        width: usize,
        height: usize,
        motion_px: f64,
        whole: bool,
        detect: impl Fn(&Track) -> bool,
    ) -> Rect {
        let all = [0, 0, width as u32, height as u32];
        if self.tracks.is_empty() || whole {
            return all;
        }
        let size = self.align.size;
        let mut hint: Option<Rect> = None;
        let mut add = |r: Rect| {
            hint = Some(match hint {
                None => r,
                Some(h) => [
                    h[0].min(r[0]),
                    h[1].min(r[1]),
                    h[2].max(r[2]),
                    h[3].max(r[3]),
                ],
            });
        };
        for t in &self.tracks {
            let a = &t.crop_to_frame;
            let c = warp_footprint(a, [0, 0, size, size], width, height);
            add(crate::frame::footprint(
                &[[c[0] as f64, c[1] as f64], [c[2] as f64, c[3] as f64]],
                motion_px,
                width,
                height,
            ));
            if detect(t) {
                let b = t.bbox_crop;
                let corners =
                    [[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]].map(|c| a.apply(c));
                let bb = crate::frame::footprint(&corners, 0.0, width, height);
                let side = self.face.region_scale as f64
                    * (bb[2] as f64 - bb[0] as f64).max(bb[3] as f64 - bb[1] as f64);
                let (cx, cy) = ((bb[0] + bb[2]) as f64 / 2.0, (bb[1] + bb[3]) as f64 / 2.0);
                let h = side / 2.0;
                add(crate::frame::footprint(
                    &[[cx - h, cy - h], [cx + h, cy + h]],
                    motion_px,
                    width,
                    height,
                ));
            }
        }
        hint.unwrap_or(all)
    }

    /// Processes one frame read by region.
    pub fn process_pixels(&mut self, px: &mut dyn Pixels) -> Result<Vec<FaceObservation>> {
        let (width, height) = px.size();
        self.stats.frames += 1;
        let size = self.align.size;
        let mut out: Vec<FaceObservation> = Vec::with_capacity(self.tracks.len());

        // 1. Follow existing tracks by registration (or keep their transform without stabilisation).
        for t in &mut self.tracks {
            let mut crop = Vec::new();
            let mut residual = 0.0;
            match t.registration.as_mut() {
                Some(reg) => {
                    let r =
                        reg.register(px, &mut t.crop_to_frame, &mut crop, self.align.refine_iters)?;
                    residual = r.residual;
                    self.stats.registrations += 1;
                    self.stats.registration_iterations += r.iterations as u64;
                    if !r.residual.is_finite() || r.residual > self.align.lost_residual {
                        t.needs_detection = true;
                    }
                }
                None => {
                    let fp = warp_footprint(&t.crop_to_frame, [0, 0, size, size], width, height);
                    warp_crop(
                        px.region(fp)?,
                        width,
                        height,
                        &t.crop_to_frame,
                        size,
                        &mut crop,
                    )?
                }
            }
            out.push(observation(t, crop, residual, false));
        }

        // 2. Detect on schedule or when a track asks: each track is re-detected in its own
        //    neighbourhood (full detector resolution on the face), the whole frame is searched only
        //    for faces not yet tracked.
        let scheduled = self
            .frame_index
            .is_multiple_of(self.face.detect_every as u64);
        let asked = self.tracks.iter().any(|t| t.needs_detection);
        if scheduled || asked {
            self.refresh_tracks(px, &mut out)?;
        }
        if self.tracks.len() < self.face.max_faces && (scheduled || self.tracks.is_empty()) {
            self.stats.detector_runs += 1;
            let dets = self.detector.detect(px.all()?, width, height)?;
            self.start_tracks(&dets, px, &mut out)?;
        }
        // Observations of tracks dropped this frame go too.
        out.retain(|o| self.tracks.iter().any(|t| t.id == o.track_id));
        self.frame_index += 1;
        Ok(out)
    }

    /// Re-detects every track inside its neighbourhood; re-anchors tracks whose registration failed or
    /// that the detector contradicts twice in a row; drops tracks the detector no longer finds.
    fn refresh_tracks(&mut self, px: &mut dyn Pixels, out: &mut [FaceObservation]) -> Result<()> {
        let (width, height) = px.size();
        let mut keep = vec![true; self.tracks.len()];
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            let b = out[ti].bbox;
            let side = self.face.region_scale * (b[2] - b[0]).max(b[3] - b[1]);
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            self.stats.detector_runs += 1;
            let square = [cx - side / 2.0, cy - side / 2.0, side];
            let gray = px.region(detector_footprint(square, width, height))?;
            let dets = self.detector.detect_region(gray, width, height, square)?;
            let best = dets
                .iter()
                .filter(|d| iou(&b, &d.bbox) >= self.face.match_iou)
                .max_by(|x, y| x.score.total_cmp(&y.score));
            let Some(d) = best else {
                t.misses += 1;
                keep[ti] = t.misses < self.face.lost_after;
                continue;
            };
            t.misses = 0;
            t.confidence = d.score;
            // Detector vs. followed transform, in crop pixels (RMS over eyes and mouth).
            let inv = t.crop_to_frame.inverse();
            let mut sq = 0.0;
            for k in [0usize, 1, 3] {
                let p = inv.apply([d.keypoints[k][0] as f64, d.keypoints[k][1] as f64]);
                let q = t.keypoints_crop[k];
                sq += (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
            }
            let disagreement = (sq / 3.0).sqrt() as f32;
            t.disagreements = if disagreement > self.align.reanchor_px {
                t.disagreements + 1
            } else {
                0
            };
            // One contradicting detection is more likely detector noise than registration drift.
            let reanchor = t.needs_detection || t.disagreements >= 2 || t.registration.is_none();
            if reanchor && let Some(a) = self.template.crop_to_frame(&d.keypoints) {
                if t.registration.is_some() {
                    self.stats.reanchors += 1;
                    tracing::debug!(
                        track = t.id,
                        disagreement,
                        asked = t.needs_detection,
                        "re-anchoring track"
                    );
                }
                anchor(t, d, a, &self.align, px, &mut out[ti].crop)?;
                t.disagreements = 0;
            }
            t.needs_detection = false;
            let crop = std::mem::take(&mut out[ti].crop);
            out[ti] = observation(t, crop, out[ti].residual, true);
        }
        let lost = keep.iter().filter(|k| !**k).count() as u64;
        self.stats.tracks_lost += lost;
        if lost > 0 {
            let mut it = keep.iter();
            self.tracks.retain(|_| *it.next().unwrap_or(&true));
        }
        Ok(())
    }

    /// Starts tracks for detections that no track covers, best first, up to `max_faces`.
    fn start_tracks(
        &mut self,
        dets: &[Detection],
        px: &mut dyn Pixels,
        out: &mut Vec<FaceObservation>,
    ) -> Result<()> {
        let (width, height) = px.size();
        out.retain(|o| self.tracks.iter().any(|t| t.id == o.track_id));
        for d in dets {
            if self.tracks.len() >= self.face.max_faces {
                break;
            }
            if out.iter().any(|o| iou(&o.bbox, &d.bbox) > 0.1) {
                continue;
            }
            // A whole-frame detection sees a small face at low resolution: look again at its
            // neighbourhood before anchoring, so the track starts from sharp keypoints.
            let side = self.face.region_scale * (d.bbox[2] - d.bbox[0]).max(d.bbox[3] - d.bbox[1]);
            let (cx, cy) = ((d.bbox[0] + d.bbox[2]) / 2.0, (d.bbox[1] + d.bbox[3]) / 2.0);
            self.stats.detector_runs += 1;
            let square = [cx - side / 2.0, cy - side / 2.0, side];
            let gray = px.region(detector_footprint(square, width, height))?;
            let closer = self
                .detector
                .detect_region(gray, width, height, square)?
                .into_iter()
                .filter(|r| iou(&r.bbox, &d.bbox) >= self.face.match_iou)
                .max_by(|x, y| x.score.total_cmp(&y.score));
            let d = closer.as_ref().unwrap_or(d);
            let Some(a) = self.template.crop_to_frame(&d.keypoints) else {
                continue;
            };
            let mut t = Track {
                id: self.next_id,
                crop_to_frame: a,
                keypoints_crop: [[0.0; 2]; 6],
                bbox_crop: [0.0; 4],
                confidence: d.score,
                misses: 0,
                disagreements: 0,
                registration: None,
                needs_detection: false,
            };
            self.next_id += 1;
            self.stats.tracks_started += 1;
            let mut crop = Vec::new();
            anchor(&mut t, d, a, &self.align, px, &mut crop)?;
            out.push(observation(&t, crop, 0.0, true));
            self.tracks.push(t);
        }
        Ok(())
    }
}

/// The frame pixels the detector reads for its square `[left, top, side]` (bilinear neighbour included).
fn detector_footprint(square: [f32; 3], width: usize, height: usize) -> Rect {
    let [l, t, s] = square.map(|v| v as f64);
    crate::frame::footprint(&[[l, t], [l + s, t + s]], 2.0, width, height)
}

/// (Re)starts a track on a detection: transform from keypoints, fresh reference crop.
fn anchor(
    t: &mut Track,
    d: &Detection,
    crop_to_frame: Similarity,
    align: &AlignConfig,
    px: &mut dyn Pixels,
    crop: &mut Vec<u8>,
) -> Result<()> {
    let (width, height) = px.size();
    t.crop_to_frame = crop_to_frame;
    let inv = crop_to_frame.inverse();
    for k in 0..6 {
        t.keypoints_crop[k] = inv.apply([d.keypoints[k][0] as f64, d.keypoints[k][1] as f64]);
    }
    let tl = inv.apply([d.bbox[0] as f64, d.bbox[1] as f64]);
    let br = inv.apply([d.bbox[2] as f64, d.bbox[3] as f64]);
    t.bbox_crop = [tl[0], tl[1], br[0], br[1]];
    let fp = warp_footprint(
        &crop_to_frame,
        [0, 0, align.size, align.size],
        width,
        height,
    );
    warp_crop(
        px.region(fp)?,
        width,
        height,
        &crop_to_frame,
        align.size,
        crop,
    )?;
    t.registration = align.stabilise.then(|| {
        Registration::new(
            crop,
            align.size,
            align.register_region,
            align.reference_frames,
        )
    });
    Ok(())
}

/// The observation a track makes with its current transform.
fn observation(t: &Track, crop: Vec<u8>, residual: f32, detected: bool) -> FaceObservation {
    let a = &t.crop_to_frame;
    let keypoints = t.keypoints_crop.map(|k| {
        let p = a.apply(k);
        [p[0] as f32, p[1] as f32]
    });
    // The box follows the transform: map the crop-space box corners and take their extent.
    let b = t.bbox_crop;
    let corners = [[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]].map(|c| a.apply(c));
    let xs = corners.map(|c| c[0]);
    let ys = corners.map(|c| c[1]);
    let min = |v: [f64; 4]| v.iter().cloned().fold(f64::INFINITY, f64::min) as f32;
    let max = |v: [f64; 4]| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max) as f32;
    FaceObservation {
        track_id: t.id,
        bbox: [min(xs), min(ys), max(xs), max(ys)],
        keypoints,
        confidence: t.confidence,
        detected,
        crop,
        crop_to_frame: t.crop_to_frame,
        residual,
    }
}
