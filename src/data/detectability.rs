//! How many of a dataset's annotated frames our face detector finds a face in (`data check --detect`):
//! a dataset whose faces aullm cannot find cannot be trained or evaluated on.

use super::Loaded;
use crate::face::FaceConfig;
use crate::face::FaceDetector;
use crate::models::ModelsConfig;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Detection counts over every annotated frame (onset to offset of each record).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Detectability {
    /// Frames examined.
    pub frames: u64,
    /// Frames with exactly one face.
    pub one_face: u64,
    /// Frames with no face.
    pub no_face: u64,
    /// Frames with more than one face.
    pub several: u64,
    /// Frames per subject with exactly one face, and examined.
    pub per_subject: BTreeMap<String, (u64, u64)>,
}

impl Detectability {
    /// Fraction of frames with exactly one face.
    pub fn rate(&self) -> f64 {
        self.one_face as f64 / self.frames.max(1) as f64
    }

    /// Human-readable lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "\nface detection: one face in {}/{} frames ({:.2}%), none in {}, several in {}\n",
            self.one_face,
            self.frames,
            100.0 * self.rate(),
            self.no_face,
            self.several
        );
        for (subject, (ok, n)) in &self.per_subject {
            if ok < n {
                s.push_str(&format!("  {subject}: {ok}/{n}\n"));
            }
        }
        s
    }
}

/// Runs BlazeFace (as configured) on every annotated frame of `loaded`.
pub fn detectability(
    loaded: &Loaded,
    face: &FaceConfig,
    models: &ModelsConfig,
) -> Result<Detectability> {
    use opencv::prelude::*;
    crate::assets::init_onnx(models)?;
    let model = crate::assets::artefact_path(models, face.detector.artefact())?;
    let mut det = FaceDetector::new(
        &model,
        face.intra_threads,
        face.score_threshold,
        face.nms_iou,
    )?
    .with_gray_tint(face.gray_tint);
    let mut out = Detectability::default();
    let ranges = loaded
        .samples
        .iter()
        .map(|s| (&s.subject, &s.frames, s.onset, s.offset))
        .chain(
            loaded
                .intervals
                .iter()
                .map(|i| (&i.subject, &i.frames, i.onset, i.offset.unwrap_or(i.onset))),
        );
    for (subject, frames, onset, offset) in ranges {
        for n in onset..=offset {
            let p = frames.path(n);
            if !p.exists() {
                continue;
            }
            let img = crate::imgio::imread(&p, crate::imgio::IMREAD_GRAYSCALE)
                .with_context(|| format!("cannot read {}", p.display()))?;
            if img.empty() {
                anyhow::bail!("cannot decode {}", p.display());
            }
            let faces = det.detect(img.data_bytes()?, img.cols() as usize, img.rows() as usize)?;
            out.frames += 1;
            let e = out.per_subject.entry(subject.clone()).or_default();
            e.1 += 1;
            match faces.len() {
                0 => out.no_face += 1,
                1 => {
                    out.one_face += 1;
                    e.0 += 1;
                }
                _ => out.several += 1,
            }
        }
    }
    Ok(out)
}
