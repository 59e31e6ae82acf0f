//! The `[face]` (detection, tracking) and `[align]` (canonical crop, stabilisation) sections.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Which BlazeFace model finds faces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DetectorModel {
    /// 128 px input: faces filling much of the frame.
    #[default]
    Front,
    /// 256 px input: smaller faces.
    Back,
}

impl DetectorModel {
    /// The manifest artefact holding the model.
    pub fn artefact(self) -> &'static str {
        match self {
            DetectorModel::Front => "blazeface-front",
            DetectorModel::Back => "blazeface-back",
        }
    }
}

/// Face detection (BlazeFace) and multi-face tracking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    /// "front" (128 px input, faces filling much of the frame) or "back" (256 px, smaller faces).
    pub detector: DetectorModel,
    /// Minimum detection score (after sigmoid).
    pub score_threshold: f32,
    /// IoU above which detections are merged by weighted NMS.
    pub nms_iou: f32,
    /// Run the detector every N frames while all tracks are held (1 = every frame). 20 = 10 Hz at
    /// 200 fps: spotting F1 on the tuning and evaluation sets is identical at 10 and 20, for 5% less CPU.
    pub detect_every: u32,
    /// Maximum number of faces tracked at once.
    pub max_faces: usize,
    /// ONNX Runtime intra-op threads for the detector (one was fastest on this model).
    pub intra_threads: usize,
    /// Minimum IoU between a detection and a track's box to continue that track.
    pub match_iou: f32,
    /// A track is dropped after this many consecutive detector runs without a match.
    pub lost_after: u32,
    /// Side of the square a track is re-detected in, as a multiple of its face box.
    pub region_scale: f32,
    /// RGB gains that turn gray frames into the colour input BlazeFace expects (skin-tone tint;
    /// `[1, 1, 1]` = plain gray). Reduces the detector's keypoint bias on gray faces.
    pub gray_tint: [f32; 3],
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self {
            detector: DetectorModel::Front,
            score_threshold: 0.5,
            nms_iou: 0.3,
            detect_every: 20,
            max_faces: 1,
            intra_threads: 1,
            match_iou: 0.3,
            lost_after: 3,
            region_scale: 2.5,
            gray_tint: [1.15, 0.95, 0.8],
        }
    }
}

/// Alignment of each tracked face to a canonical gray crop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// Side of the square aligned crop in pixels.
    pub size: u32,
    /// Canonical eye centres (right eye, left eye in image order) as fractions of `size`.
    pub eye_right: [f32; 2],
    /// See `eye_right`.
    pub eye_left: [f32; 2],
    /// Canonical mouth centre as a fraction of `size`.
    pub mouth: [f32; 2],
    /// Register every crop to the track's reference crop (sub-pixel stabilisation).
    pub stabilise: bool,
    /// Crop region registered to the reference, `[x0, y0, x1, y1]` as fractions (rigid mid-face).
    pub register_region: [f32; 4],
    /// Gauss-Newton iterations of the registration per frame.
    pub refine_iters: u32,
    /// Frames averaged into a new track's reference crop (fewer noisy pixels in the template).
    pub reference_frames: u32,
    /// Keypoint disagreement (crop pixels, RMS over eyes and mouth) that re-anchors the track on the detector.
    pub reanchor_px: f32,
    /// Registration residual (normalised RMS) above which the track asks the detector for help.
    pub lost_residual: f32,
}

impl AlignConfig {
    /// The alignment a dataset clip (one annotated expression) is cut with: this one, without
    /// re-anchoring on detector disagreement. A clip lasts a few hundred milliseconds, too short for
    /// registration to drift, and a re-anchor inside it shifts the whole crop by pixels where the
    /// expression moves it by fractions of one (9 of SynthME's 1080 training clips at
    /// `reanchor_px` 6, README "Faces, tracking and alignment"). A failed registration still
    /// re-anchors.
    pub fn for_clips(&self) -> AlignConfig {
        AlignConfig {
            reanchor_px: f32::INFINITY,
            ..self.clone()
        }
    }
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            size: 128,
            eye_right: [0.34, 0.40],
            eye_left: [0.66, 0.40],
            mouth: [0.50, 0.76],
            stabilise: true,
            register_region: [0.18, 0.22, 0.82, 0.70],
            refine_iters: 3,
            reference_frames: 4,
            reanchor_px: 6.0,
            lost_residual: 0.6,
        }
    }
}

impl FaceConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.detect_every == 0 {
            bail!("face.detect_every must be at least 1");
        }
        if self.max_faces == 0 {
            bail!("face.max_faces must be at least 1");
        }
        Ok(())
    }
}

impl AlignConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let r = self.register_region;
        if !(r[0] >= 0.02
            && r[1] >= 0.02
            && r[2] <= 0.98
            && r[3] <= 0.98
            && r[0] < r[2]
            && r[1] < r[3])
        {
            bail!(
                "align.register_region = {r:?}: expected 0.02 <= x0 < x1 <= 0.98 and the same for y"
            );
        }
        if self.size < 32 {
            bail!("align.size = {}: expected at least 32", self.size);
        }
        Ok(())
    }
}
