//! SynthME: determinism, detectability by our BlazeFace, real AU amplitudes, distinct identities.

use aullm::config::Config;
use aullm::data::synth::aus::{AuSpec, Side};
use aullm::data::synth::identity::{FaceSource, make_identity};
use aullm::data::synth::motion::{Action, Family, Shape};
use aullm::data::synth::render::{ExpressionField, FrameConditions, Renderer};
use aullm::data::synth::{SynthConfig, generate};
use aullm::face::{CropTemplate, FaceDetector, Similarity};
use aullm::fixtures::Photo;
use aullm::rng::Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

fn tiny() -> SynthConfig {
    SynthConfig {
        subjects: 2,
        clips_per_subject: 2,
        long_videos: 1,
        long_seconds: 1.5,
        micros_per_video: 1,
        macros_per_video: 1,
        ..SynthConfig::ci()
    }
}

/// sha256 of every file under `root`, by relative path.
fn digest_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_files_whatever_the_thread_count() {
    let photo = Photo::astronaut(&Config::default().models).unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ra = generate(&tiny(), &photo, a.path(), 1).unwrap();
    generate(&tiny(), &photo, b.path(), 2).unwrap();
    let (da, db) = (digest_tree(a.path()), digest_tree(b.path()));
    assert_eq!(
        da.len() as u64,
        ra.clip_frames + ra.video_frames + 6,
        "frames + 2 sheets x 2 + truth + video"
    );
    let differing: Vec<&String> = da.keys().filter(|k| da.get(*k) != db.get(*k)).collect();
    assert!(
        differing.is_empty(),
        "files differ between runs: {differing:?}"
    );
    assert_eq!(da.len(), db.len());
    // A different seed changes the data.
    let c = tempfile::tempdir().unwrap();
    generate(&SynthConfig { seed: 99, ..tiny() }, &photo, c.path(), 2).unwrap();
    let dc = digest_tree(c.path());
    assert_ne!(
        da.get("CASME2-coding-synth.csv"),
        dc.get("CASME2-coding-synth.csv")
    );
}

#[test]
fn generated_faces_are_found_by_our_detector() {
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sc = SynthConfig {
        subjects: 6,
        clips_per_subject: 2,
        long_videos: 0,
        ..SynthConfig::ci()
    };
    generate(&sc, &photo, dir.path(), 2).unwrap();
    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let mut det = FaceDetector::new(&model, 1, cfg.face.score_threshold, cfg.face.nms_iou)
        .unwrap()
        .with_gray_tint(cfg.face.gray_tint);
    let (mut frames, mut found) = (0, 0);
    for (rel, _) in digest_tree(dir.path()) {
        if !rel.ends_with(".jpg") {
            continue;
        }
        let img =
            aullm::imgio::imread(dir.path().join(&rel), aullm::imgio::IMREAD_GRAYSCALE).unwrap();
        use opencv::prelude::*;
        let (w, h) = (img.cols() as usize, img.rows() as usize);
        let faces = det.detect(img.data_bytes().unwrap(), w, h).unwrap();
        frames += 1;
        found += (faces.len() == 1) as usize;
    }
    let rate = found as f64 / frames as f64;
    eprintln!(
        "BlazeFace found exactly one face in {found}/{frames} SynthME frames ({:.2}%)",
        100.0 * rate
    );
    assert!(frames > 100);
    assert!(rate >= 0.99, "{rate}");
}

/// Largest displacement (px) between two aligned crops by DIS optical flow, and where it is.
fn peak_flow(a: &[u8], b: &[u8], size: i32) -> (f32, [f32; 2]) {
    use opencv::core::{Mat, Vec2f};
    use opencv::prelude::*;
    let ma = Mat::new_rows_cols_with_data(size, size, a).unwrap();
    let mb = Mat::new_rows_cols_with_data(size, size, b).unwrap();
    let mut dis =
        opencv::video::DISOpticalFlow::create(opencv::video::DISOpticalFlow_PRESET_MEDIUM).unwrap();
    let mut flow = Mat::default();
    dis.calc(&ma, &mb, &mut flow).unwrap();
    let v = flow.data_typed::<Vec2f>().unwrap();
    // Ignore the border, where flow is unreliable.
    let mut best = (0f32, [0f32; 2]);
    for y in 8..size - 8 {
        for x in 8..size - 8 {
            let f = v[(y * size + x) as usize];
            let m = (f[0] * f[0] + f[1] * f[1]).sqrt();
            if m > best.0 {
                best = (m, [x as f32, y as f32]);
            }
        }
    }
    best
}

#[test]
fn au_amplitude_is_in_canonical_face_pixels() {
    let cfg = Config::default();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let id = make_identity(&FaceSource::astronaut(photo.clone()), 0, 7, 640, 480).unwrap();
    let mut rng = Rng::new(1);
    let mut r = Renderer::new(640, 480, &mut rng);
    let clean = FrameConditions {
        head: Similarity::IDENTITY,
        gain: 1.0,
        noise_sigma: 0.0,
        capture: None,
    };
    // Align with the identity's own eyes and mouth, the way the face stage would.
    let lm = id.landmarks;
    let mouth = [
        (lm.mouth_r[0] + lm.mouth_l[0]) / 2.0,
        (lm.mouth_r[1] + lm.mouth_l[1]) / 2.0,
    ];
    let mut kp = [[0f32; 2]; 6];
    kp[0] = lm.eye_r;
    kp[1] = lm.eye_l;
    kp[3] = mouth;
    let tpl = CropTemplate::from_config(&cfg.align);
    let a = tpl.crop_to_frame(&kp).unwrap();
    let crop = |frame: &[u8]| {
        let mut c = Vec::new();
        aullm::face::align::warp_crop(frame, 640, 480, &a, 128, &mut c).unwrap();
        c
    };
    let mut neutral = Vec::new();
    r.render(&id, &[], &clean, &mut rng, &mut neutral).unwrap();
    let neutral_crop = crop(&neutral);

    // Units: a blob far wider than the face is a rigid shift of `amp` canonical pixels.
    for amp in [0.5f32, 1.0] {
        let wide = Action {
            point: lm.nose,
            extent: 50.0 * lm.iod(),
            vector: [id.crop_to_frame_scale, 0.0],
        };
        let field = ExpressionField::from_actions(&id, Family::Blobs, &[(wide, amp)]);
        let mut moved = Vec::new();
        r.render(&id, &[(&field, 1.0)], &clean, &mut rng, &mut moved)
            .unwrap();
        // Only the face region is displaced: measure on the crop's middle.
        let (dx, dy) = mid_shift(&neutral_crop, &crop(&moved));
        eprintln!("rigid {amp} px field: measured shift ({dx:.3}, {dy:.3}) px in the aligned crop");
        assert!(
            (dx - amp as f64).abs() < 0.05 && dy.abs() < 0.05,
            "({dx}, {dy}) vs {amp}"
        );
    }

    // Each AU moves skin where FACS says, and nowhere else.
    let tpl_pts = |p: [f32; 2]| {
        let q = a.inverse().apply([p[0] as f64, p[1] as f64]);
        [q[0] as f32, q[1] as f32]
    };
    // Every displacement family puts the motion there.
    for ((au, amp, (r_at, l_at)), family) in [
        (12u16, 1.5f32, (lm.mouth_r, lm.mouth_l)),
        (1, 1.5, (lm.brow_inner_r, lm.brow_inner_l)),
        (4, 2.0, (lm.brow_inner_r, lm.brow_inner_l)),
        (17, 1.5, (lm.chin, lm.chin)),
        (7, 1.5, (lm.lid_lower_r, lm.lid_lower_l)),
    ]
    .into_iter()
    .flat_map(|a| Family::ALL.into_iter().map(move |f| (a, f)))
    {
        let (r_at, l_at) = (tpl_pts(r_at), tpl_pts(l_at));
        let field = ExpressionField::new(
            &id,
            &[AuSpec {
                au,
                side: Side::Both,
                amplitude: amp,
                shape: Shape::NOMINAL,
            }],
            family,
        );
        let mut apex = Vec::new();
        r.render(&id, &[(&field, 1.0)], &clean, &mut rng, &mut apex)
            .unwrap();
        let (peak, pos) = peak_flow(&neutral_crop, &crop(&apex), 128);
        let d = |at: [f32; 2]| ((pos[0] - at[0]).powi(2) + (pos[1] - at[1]).powi(2)).sqrt();
        let dist = d(r_at).min(d(l_at));
        eprintln!(
            "AU{au} ({family:?}) at {amp} px: peak flow {peak:.2} px at {pos:?}, {dist:.1} px from its landmark"
        );
        // DIS smooths local motion, so it reads a Gaussian bump's peak low; the rigid case above checks units.
        assert!(
            peak > 0.3 * amp && peak < 1.3 * amp,
            "AU{au} ({family:?}): peak {peak} for {amp}"
        );
        assert!(
            dist < 20.0,
            "AU{au} ({family:?}) moved the wrong place: {pos:?} vs {r_at:?} / {l_at:?}"
        );
    }
}

/// Shift of the crops' central 64x64 region by phase correlation.
fn mid_shift(a: &[u8], b: &[u8]) -> (f64, f64) {
    let cut = |c: &[u8]| -> Vec<u8> {
        (32..96)
            .flat_map(|y| c[y * 128 + 32..y * 128 + 96].to_vec())
            .collect()
    };
    aullm::face::quality::crop_shift(&cut(a), &cut(b), 64).unwrap()
}

#[test]
fn identities_differ_in_geometry_and_appearance() {
    let photo = Photo::astronaut(&Config::default().models).unwrap();
    let ids: Vec<_> = (0..6)
        .map(|i| make_identity(&FaceSource::astronaut(photo.clone()), i, 1, 640, 480).unwrap())
        .collect();
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            let (a, b) = (&ids[i], &ids[j]);
            let mad: f64 = a
                .neutral
                .iter()
                .zip(&b.neutral)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum::<f64>()
                / a.neutral.len() as f64;
            let geo = (a.landmarks.iod() - b.landmarks.iod()).abs()
                + (a.landmarks.chin[1]
                    - a.landmarks.eye_r[1]
                    - (b.landmarks.chin[1] - b.landmarks.eye_r[1]))
                    .abs();
            assert!(
                mad > 8.0,
                "identities {i} and {j} look alike (mean |diff| {mad:.1})"
            );
            assert!(geo > 1.0, "identities {i} and {j} have the same geometry");
        }
    }
}

#[test]
fn the_dataset_loaders_read_what_synth_wrote() {
    use aullm::data::{LoadOptions, casme2, sammlv};
    let photo = Photo::astronaut(&Config::default().models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    generate(&cfg, &photo, dir.path(), 2).unwrap();
    let plan = aullm::data::synth::generate::planned(&cfg);

    let clips = casme2::load(dir.path(), &LoadOptions::default()).unwrap();
    assert!(clips.problems.is_empty(), "{:?}", clips.problems);
    assert_eq!(clips.samples.len(), plan.clips.len());
    for (s, p) in clips.samples.iter().zip(&plan.clips) {
        assert_eq!(s.subject, format!("sub{:02}", p.subject));
        assert_eq!(s.clip, p.name);
        assert_eq!(s.onset, p.first_frame + p.event.onset);
        assert_eq!(s.apex, Some(p.first_frame + p.event.apex));
        assert_eq!(s.offset, p.first_frame + p.event.offset);
        let got: Vec<(u16, String)> = s
            .aus
            .iter()
            .map(|a| (a.code, format!("{:?}", a.side)))
            .collect();
        let want: Vec<(u16, String)> = p
            .event
            .aus
            .iter()
            .map(|a| (a.au, format!("{:?}", a.side).replace("Both", "None")))
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{}", p.name);
        assert!(s.frames.path(s.onset).exists());
        assert!(s.frames.path(s.offset).exists());
    }

    let lv = sammlv::load(dir.path(), &LoadOptions::default()).unwrap();
    assert!(lv.problems.is_empty(), "{:?}", lv.problems);
    let annotated: Vec<_> = plan.videos[0]
        .events
        .iter()
        .filter(|e| e.kind != "blink")
        .collect();
    assert_eq!(lv.intervals.len(), annotated.len());
    for (i, e) in lv.intervals.iter().zip(annotated) {
        assert_eq!(i.video, plan.videos[0].name);
        assert_eq!((i.onset, i.offset), (e.onset + 1, Some(e.offset + 1)));
        assert!(
            i.frames.path(i.onset).exists(),
            "{:?}",
            i.frames.path(i.onset)
        );
    }
}

/// The least-squares similarity recovers a known one from three points.
#[test]
fn similarity_fit_recovers_a_known_similarity() {
    use aullm::data::synth::identity::similarity_fit;
    let (s, th, t) = (1.7f32, 0.3f32, [12.0f32, -5.0]);
    let m = |p: [f32; 2]| {
        [
            s * (th.cos() * p[0] - th.sin() * p[1]) + t[0],
            s * (th.sin() * p[0] + th.cos() * p[1]) + t[1],
        ]
    };
    let from = [[203.5, 101.5], [246.5, 103.5], [225.0, 140.75]];
    let to: Vec<[f32; 2]> = from.iter().map(|&p| m(p)).collect();
    let [a, b, tx, c, d, ty] = similarity_fit(&from, &to);
    for (&p, q) in from.iter().zip(&to) {
        let r = [a * p[0] + b * p[1] + tx, c * p[0] + d * p[1] + ty];
        assert!(
            (r[0] - q[0]).abs() < 1e-2 && (r[1] - q[1]).abs() < 1e-2,
            "{r:?} vs {q:?}"
        );
    }
}

/// A face found in a photo (here astronaut.png itself, through the detector) makes identities
/// whose landmarks land on the drawn face: the detector finds the face where the identity says.
#[test]
fn identities_from_a_detected_face_put_the_face_at_their_landmarks() {
    use aullm::data::synth::faces::faces_in;
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let mut det = FaceDetector::new(&model, 1, cfg.face.score_threshold, cfg.face.nms_iou)
        .unwrap()
        .with_gray_tint(cfg.face.gray_tint);
    let faces = faces_in(&photo, &mut det, "astronaut.png").unwrap();
    assert_eq!(faces.len(), 1, "one face in astronaut.png");
    let f = &faces[0];
    // The detected layout is the reference one up to the detector's keypoint error.
    assert!((f.scale() - 1.0).abs() < 0.15, "scale {}", f.scale());
    // Eye error (detector keypoint vs identity landmark, in IODs), worst over a few identities,
    // for the detected face and for the reference layout of the same photo.
    let mut worst = |src: &FaceSource| -> f32 {
        let mut w = 0f32;
        for i in 0..4 {
            let id = make_identity(src, i, 3, 640, 480).unwrap();
            let found = det.detect(&id.neutral, 640, 480).unwrap();
            let best = found
                .iter()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .expect("a face in the identity's frame");
            let lm = id.landmarks;
            for (got, want) in [(best.keypoints[0], lm.eye_r), (best.keypoints[1], lm.eye_l)] {
                w = w.max((got[0] - want[0]).hypot(got[1] - want[1]) / lm.iod());
            }
        }
        w
    };
    let detected = worst(f);
    let reference = worst(&FaceSource::astronaut(photo.clone()));
    eprintln!("eye error / IOD: detected face {detected:.3}, reference layout {reference:.3}");
    assert!(detected < 0.25, "{detected}");
    assert!(detected < reference + 0.1, "{detected} vs {reference}");
}
