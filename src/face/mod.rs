//! The face stage: BlazeFace detection, multi-face tracking, alignment to a stabilised gray crop.

pub mod align;
pub mod detect;
pub mod quality;
pub mod stabilise;
pub mod track;

pub use align::{CropTemplate, Similarity};
pub use detect::{Detection, FaceDetector};
pub use track::{FaceObservation, FaceTracker, TrackerStats};

use crate::config::Config;
use anyhow::Result;

impl FaceTracker {
    /// Loads ONNX Runtime and the configured BlazeFace model (both verified against the manifest).
    pub fn from_config(cfg: &Config) -> Result<FaceTracker> {
        crate::assets::init_onnx(cfg)?;
        let name = match cfg.face.detector.as_str() {
            "back" => "blazeface-back",
            _ => "blazeface-front",
        };
        let model = crate::assets::artefact_path(cfg, name)?;
        let detector = FaceDetector::new(
            &model,
            cfg.face.intra_threads,
            cfg.face.score_threshold,
            cfg.face.nms_iou,
        )?
        .with_gray_tint(cfg.face.gray_tint);
        Ok(FaceTracker::new(
            detector,
            cfg.face.clone(),
            cfg.align.clone(),
        ))
    }
}
