//! The identity photos of the manifest (`faces-*`): each is fetched and verified by `aullm models
//! fetch` (make setup fetches them all), and BlazeFace finds usable faces in each, keypoints inside
//! the image; together at least 40 faces of different people.

use aullm::config::Config;
use aullm::data::synth::faces::faces_in;
use aullm::face::FaceDetector;
use aullm::fixtures::Photo;
use aullm::models::Manifest;

#[test]
fn every_identity_photo_is_verified_and_has_usable_faces() {
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let mut det = FaceDetector::new(&model, 1, cfg.face.score_threshold, cfg.face.nms_iou)
        .unwrap()
        .with_gray_tint(cfg.face.gray_tint);
    let manifest = Manifest::embedded();
    let photos: Vec<String> = manifest
        .names()
        .filter(|n| n.starts_with("faces-"))
        .map(String::from)
        .collect();
    assert!(photos.len() >= 20, "{} identity photos", photos.len());
    let mut total = 0;
    for name in photos {
        // Resolving checks the SHA-256 of the cached file against the manifest.
        let path = aullm::assets::artefact_path(&cfg.models, &name)
            .unwrap_or_else(|e| panic!("{name}: {e:#} (run `aullm models fetch --all`)"));
        let photo = Photo::load(&path, [0.0, 0.0]).unwrap();
        let faces = faces_in(&photo, &mut det, &name).unwrap();
        eprintln!("{name}: {} face(s)", faces.len());
        assert!(!faces.is_empty(), "{name}: no usable face");
        for f in &faces {
            let m = f.to_photo.expect("a detected face");
            // The reference eyes land inside the photo.
            for p in [[203.5f32, 101.5], [246.5, 103.5]] {
                let q = [
                    m[0] * p[0] + m[1] * p[1] + m[2],
                    m[3] * p[0] + m[4] * p[1] + m[5],
                ];
                assert!(
                    q[0] >= 0.0
                        && q[1] >= 0.0
                        && q[0] < photo.width as f32
                        && q[1] < photo.height as f32,
                    "{}: eye at {q:?} outside {}x{}",
                    f.label,
                    photo.width,
                    photo.height
                );
            }
        }
        total += faces.len();
    }
    eprintln!("{total} faces");
    assert!(total >= 40, "{total} faces in the identity photos");
}
