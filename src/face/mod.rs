//! The face stage: BlazeFace detection, multi-face tracking, alignment to a stabilised gray crop.
//! Owns `[face]` and `[align]` ([`config`]). May import: frame, onnx, assets, models.

pub mod align;
pub mod bilinear;
pub mod config;
pub mod detect;
pub mod pyramid;
pub mod quality;
pub mod stabilise;
pub mod track;

pub use align::{CropTemplate, Similarity};
pub use config::{AlignConfig, DetectorModel, FaceConfig};
pub use detect::{Detection, FaceDetector};
pub use track::{FaceObservation, FaceTracker, TrackerStats};

use crate::models::ModelsConfig;
use anyhow::Result;

impl FaceTracker {
    /// Loads ONNX Runtime and the configured BlazeFace model (both verified against the manifest).
    pub fn from_config(
        face: &FaceConfig,
        align: &AlignConfig,
        models: &ModelsConfig,
    ) -> Result<FaceTracker> {
        crate::assets::init_onnx(models)?;
        let model = crate::assets::artefact_path(models, face.detector.artefact())?;
        let detector = FaceDetector::new(
            &model,
            face.intra_threads,
            face.score_threshold,
            face.nms_iou,
        )?
        .with_gray_tint(face.gray_tint);
        Ok(FaceTracker::new(detector, face.clone(), align.clone()))
    }
}
