//! Identity sources from real photos: every large, level face BlazeFace finds in a photo becomes a
//! [`FaceSource`] (group photos give one per person).

use super::identity::FaceSource;
use crate::face::{Detection, FaceDetector};
use crate::fixtures::Photo;
use anyhow::Result;

/// Smallest distance between the eyes (photo pixels) of a face worth making identities from: the
/// face is drawn about 95 px between the eyes, so smaller faces would be mostly upsampling blur.
pub const MIN_IOD_PX: f32 = 24.0;

/// Smallest detector score: an identity made from a false detection would be no face at all.
pub const MIN_SCORE: f32 = 0.8;

/// Largest roll of the eye line (degrees): identities are drawn upright from the reference layout.
pub const MAX_ROLL_DEG: f32 = 20.0;

/// The faces of `photo`: detections over the whole image and over overlapping squares of a half
/// and a third of its shorter side (small faces of group photos reach the detector's resolution
/// there), merged ([`same_face`]), kept when the detector is sure ([`MIN_SCORE`]) and the eyes
/// are at least [`MIN_IOD_PX`] apart and level within [`MAX_ROLL_DEG`], and the reference layout
/// fits (see [`FaceSource::at_keypoints`]). Sorted left to right, labelled `label#k`.
pub fn faces_in(photo: &Photo, det: &mut FaceDetector, label: &str) -> Result<Vec<FaceSource>> {
    let (w, h) = (photo.width as usize, photo.height as usize);
    let mut found: Vec<Detection> = det.detect(&photo.gray, w, h)?;
    let short = w.min(h) as f32;
    for parts in [2.0f32, 3.0] {
        let side = short / parts;
        let step = side / 2.0;
        let mut y = 0.0;
        while y + side <= h as f32 + 0.5 {
            let mut x = 0.0;
            while x + side <= w as f32 + 0.5 {
                for d in det.detect_region(&photo.gray, w, h, [x, y, side])? {
                    match found.iter_mut().find(|f| same_face(f, &d)) {
                        Some(f) if f.score < d.score => *f = d,
                        Some(_) => {}
                        None => found.push(d),
                    }
                }
                x += step;
            }
            y += step;
        }
    }
    found.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
    let shared = std::sync::Arc::new(photo.clone());
    Ok(found
        .iter()
        .filter(|d| usable(d))
        .filter_map(|d| {
            let [eye_r, eye_l, _, mouth, ..] = d.keypoints;
            FaceSource::at_keypoints(shared.clone(), eye_r, eye_l, mouth, String::new())
        })
        .enumerate()
        .map(|(k, mut f)| {
            f.label = format!("{label}#{k}");
            f
        })
        .collect())
}

/// Two detections of one face: overlapping boxes, or eyes centred within half an eye distance
/// (a face seen whole and in a tile gets boxes of different extent).
fn same_face(a: &Detection, b: &Detection) -> bool {
    let mid = |d: &Detection| {
        let [r, l, ..] = d.keypoints;
        (
            [(r[0] + l[0]) / 2.0, (r[1] + l[1]) / 2.0],
            (l[0] - r[0]).hypot(l[1] - r[1]),
        )
    };
    let ((ma, ia), (mb, ib)) = (mid(a), mid(b));
    a.iou(b) > 0.3 || (ma[0] - mb[0]).hypot(ma[1] - mb[1]) < 0.5 * ia.min(ib)
}

/// Confident, large enough and level enough, with the mouth below the eyes.
fn usable(d: &Detection) -> bool {
    let [eye_r, eye_l, _, mouth, ..] = d.keypoints;
    let (dx, dy) = (eye_l[0] - eye_r[0], eye_l[1] - eye_r[1]);
    let iod = (dx * dx + dy * dy).sqrt();
    let roll = dy.atan2(dx).to_degrees();
    let eyes_y = (eye_r[1] + eye_l[1]) / 2.0;
    d.score >= MIN_SCORE
        && iod >= MIN_IOD_PX
        && roll.abs() <= MAX_ROLL_DEG
        && mouth[1] > eyes_y + 0.5 * iod
}

/// The identity photos held out of training: single-person photos of people who appear in no other
/// photo, chosen by that rule alone before any model was trained or scored on them.
pub const HELDOUT_PHOTOS: [&str; 7] = [
    "faces-clm-seanconnery",
    "faces-clm-audrey",
    "faces-clm-cage",
    "faces-clm-queen20-crop",
    "faces-clm-chuck-crop",
    "faces-grace-hopper",
    "faces-pyfeat-15-f13-anc-ph",
];

/// Which of the manifest's identity photos to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoSet {
    /// Every photo.
    All,
    /// The photos training may use (all but [`HELDOUT_PHOTOS`]).
    Train,
    /// Only [`HELDOUT_PHOTOS`].
    Heldout,
}

impl PhotoSet {
    /// Whether the artefact `name` belongs to this set.
    pub fn holds(self, name: &str) -> bool {
        let held = HELDOUT_PHOTOS.contains(&name);
        match self {
            PhotoSet::All => true,
            PhotoSet::Train => !held,
            PhotoSet::Heldout => held,
        }
    }
}

/// Every usable face of the manifest's identity photos in `set` (artefacts named `faces-*`, fetched
/// by `aullm models fetch --all`), in manifest order: the identity sources of `synth --faces photos`.
pub fn manifest_faces(
    models: &crate::models::ModelsConfig,
    face: &crate::face::FaceConfig,
    set: PhotoSet,
) -> Result<Vec<FaceSource>> {
    crate::assets::init_onnx(models)?;
    let model = crate::assets::artefact_path(models, "blazeface-front")?;
    let mut det = FaceDetector::new(&model, 1, face.score_threshold, face.nms_iou)?
        .with_gray_tint(face.gray_tint);
    let manifest = crate::assets::manifest(models)?;
    let mut out = Vec::new();
    for name in manifest
        .names()
        .filter(|n| n.starts_with("faces-") && set.holds(n))
    {
        let path = crate::assets::artefact_path(models, name)?;
        let photo = Photo::load(&path, [0.0, 0.0])?;
        out.extend(faces_in(&photo, &mut det, name)?);
    }
    anyhow::ensure!(
        !out.is_empty(),
        "the manifest names no identity photo with a usable face"
    );
    Ok(out)
}
