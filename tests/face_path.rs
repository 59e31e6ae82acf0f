//! Integration tests of ingest → face → alignment on real media fetched by `make setup`.

use aullm::config::Config;
use aullm::face::quality::{crop_shift, jitter_rms};
use aullm::face::{FaceDetector, FaceTracker};
use aullm::fixtures::{FaceVideoSpec, Motion, Photo, write_face_video};
use aullm::ingest::{Ingest, Source};
use aullm::jobs::faces::{FacesOptions, run};
use std::path::Path;

fn cfg() -> Config {
    Config::default()
}

fn faces_opts(dir: &Path) -> FacesOptions {
    FacesOptions {
        csv: dir.join("faces.csv"),
        crops: None,
        contact_sheet: Some(dir.join("sheet.png")),
        max_frames: None,
    }
}

/// Crops of the first track for every frame of `video` (panics if a frame has no face).
fn track_crops(cfg: &Config, video: &Path) -> Vec<Vec<u8>> {
    track_crops_with(cfg, &cfg.align, video).0
}

/// [`track_crops`] with the alignment `align`, and the tracker's counters.
fn track_crops_with(
    cfg: &Config,
    align: &aullm::face::AlignConfig,
    video: &Path,
) -> (Vec<Vec<u8>>, aullm::face::TrackerStats) {
    let mut tracker = FaceTracker::from_config(&cfg.face, align, &cfg.models).unwrap();
    let mut ingest = Ingest::open(&Source::File(video.to_path_buf()), &cfg.ingest).unwrap();
    let mut crops = Vec::new();
    while let Some(mut f) = ingest.next_frame().unwrap() {
        let faces = tracker.process_frame(&mut f).unwrap();
        assert_eq!(faces.len(), 1, "frame {}: expected one face", f.seq);
        if std::env::var_os("AULLM_TEST_TRACE").is_some() {
            eprintln!(
                "frame {} residual {:.3} detected {} kp={:?}",
                f.seq,
                faces[0].residual,
                faces[0].detected,
                &faces[0].keypoints[..2]
            );
        }
        crops.push(faces[0].crop.clone());
    }
    let st = tracker.stats();
    eprintln!(
        "{} frames: {} detector runs, {} re-anchors, {:.2} registration iterations/frame",
        st.frames,
        st.detector_runs,
        st.reanchors,
        st.registration_iterations as f64 / st.registrations.max(1) as f64
    );
    (crops, st)
}

fn eye_errors(f: &aullm::face::Detection) -> (f32, f32) {
    let d = |p: [f32; 2], q: [f32; 2]| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
    (
        d(f.keypoints[0], [205.0, 100.0]),
        d(f.keypoints[1], [249.0, 108.0]),
    )
}

#[test]
fn astronaut_one_face_with_eyes_in_place() {
    use opencv::prelude::*;
    let cfg = cfg();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let path = aullm::assets::artefact_path(&cfg.models, "astronaut").unwrap();
    let bgr = aullm::imgio::imread(&path, aullm::imgio::IMREAD_COLOR).unwrap();
    let mut rgb = opencv::core::Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).unwrap();
    let (w, h) = (rgb.cols() as usize, rgb.rows() as usize);
    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let mut det = FaceDetector::new(&model, 1, 0.5, 0.3)
        .unwrap()
        .with_gray_tint(cfg.face.gray_tint);
    let faces = det.detect_rgb(rgb.data_bytes().unwrap(), w, h).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let (r, l) = eye_errors(&faces[0]);
    assert!(
        r < 6.0 && l < 6.0,
        "colour: eyes off by {r:.1} / {l:.1} px: {:?}",
        faces[0]
    );
    assert!(faces[0].score > 0.8, "score {}", faces[0].score);

    // The gray path (what cameras deliver) finds the same single face, eyes within a few pixels.
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let gray = det.detect(&photo.gray, w, h).unwrap();
    assert_eq!(gray.len(), 1, "{gray:?}");
    let (r, l) = eye_errors(&gray[0]);
    eprintln!("gray input: eye errors {r:.1} / {l:.1} px");
    assert!(r < 8.0 && l < 8.0, "gray: eyes off by {r:.1} / {l:.1} px");
}

#[test]
fn megamind_faces_in_almost_every_frame() {
    let cfg = cfg();
    let video = aullm::assets::artefact_path(&cfg.models, "megamind").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = run(&cfg, &Source::File(video), &faces_opts(dir.path()), |_| {}).unwrap();
    assert_eq!(s.error, None);
    assert_eq!(s.frames, 270);
    assert!(s.frames_with_face as f64 >= 0.95 * 270.0, "{}", s.render());
    assert!(s.monotonic_timestamps);
    assert_eq!(s.ingest.dropped(), 0);
    let csv = std::fs::read_to_string(dir.path().join("faces.csv")).unwrap();
    let frames: std::collections::BTreeSet<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(frames.len(), 270, "every frame has a CSV row");
    assert!(dir.path().join("sheet.png").exists());
}

#[test]
fn test_source_without_a_face_ends_cleanly() {
    let cfg = cfg();
    let dir = tempfile::tempdir().unwrap();
    let src = Source::parse("pipeline:test?pattern=snow&frames=60&live=false&width=320&height=240")
        .unwrap();
    let s = run(&cfg, &src, &faces_opts(dir.path()), |_| {}).unwrap();
    assert_eq!(s.error, None);
    assert_eq!(s.frames, 60);
    assert_eq!(s.faces, 0);
    assert_eq!(s.frames_with_face, 0);
}

#[test]
fn truncated_file_reports_the_demuxer_after_processing_what_decoded() {
    let cfg = cfg();
    let video = aullm::assets::artefact_path(&cfg.models, "megamind").unwrap();
    let bytes = std::fs::read(&video).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.avi");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let s = run(&cfg, &Source::File(cut), &faces_opts(dir.path()), |_| {}).unwrap();
    let err = s.error.clone().expect("a truncated file is an error");
    assert!(err.contains("avidemux"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(
        s.frames > 30 && s.frames < 270,
        "frames before the cut: {}",
        s.frames
    );
    let rows = std::fs::read_to_string(dir.path().join("faces.csv"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(
        rows > s.frames,
        "CSV keeps the processed frames ({rows} lines)"
    );
}

fn still_spec(frames: u32) -> FaceVideoSpec {
    FaceVideoSpec {
        width: 640,
        height: 480,
        fps: 200.0,
        frames,
        noise_sigma: 2.0,
        motion: Motion::Still,
        seed: 7,
    }
}

#[test]
fn still_face_crops_are_stable_to_a_twentieth_of_a_pixel() {
    let cfg = cfg();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("still.mkv");
    write_face_video(&still_spec(80), &photo, &video).unwrap();

    let stable = jitter_rms(&track_crops(&cfg, &video), cfg.align.size).unwrap();
    let mut raw_cfg = cfg.clone();
    raw_cfg.align.stabilise = false;
    raw_cfg.face.detect_every = 1;
    let raw = jitter_rms(&track_crops(&raw_cfg, &video), cfg.align.size).unwrap();
    eprintln!("crop jitter: stabilised {stable:.4} px RMS, keypoints only {raw:.4} px RMS");
    assert!(stable < 0.05, "stabilised jitter {stable} px");
    assert!(
        stable < raw / 2.0,
        "stabilisation must beat raw keypoints ({stable} vs {raw})"
    );
}

#[test]
fn clip_alignment_keeps_one_anchor_where_live_alignment_re_anchors() {
    // A hair-trigger disagreement threshold and a detection on every frame: live alignment follows
    // the detector's keypoint noise with re-anchors; a dataset clip must keep its first anchor.
    let mut cfg = cfg();
    cfg.face.detect_every = 1;
    cfg.align.reanchor_px = 0.05;
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("still.mkv");
    write_face_video(&still_spec(40), &photo, &video).unwrap();

    let (live_crops, live) = track_crops_with(&cfg, &cfg.align, &video);
    let (clip_crops, clip) = track_crops_with(&cfg, &cfg.align.for_clips(), &video);
    let live_jitter = jitter_rms(&live_crops, cfg.align.size).unwrap();
    let clip_jitter = jitter_rms(&clip_crops, cfg.align.size).unwrap();
    eprintln!(
        "re-anchors: live {}, clip {}; jitter: live {live_jitter:.4} px, clip {clip_jitter:.4} px",
        live.reanchors, clip.reanchors
    );
    assert!(live.reanchors > 0, "the live tracker never re-anchored");
    assert_eq!(clip.reanchors, 0, "the clip tracker re-anchored");
    assert!(clip_jitter < 0.05, "clip crop jitter {clip_jitter} px");
}

#[test]
fn shift_measurement_reads_known_sub_pixel_shifts() {
    let cfg = cfg();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let a = aullm::face::Similarity {
        a: 1.0,
        b: 0.0,
        tx: 160.0,
        ty: 60.0,
    };
    let mut base = Vec::new();
    aullm::face::align::warp_crop(&photo.gray, 512, 512, &a, 128, &mut base).unwrap();
    for (dx, dy) in [(0.05, 0.0), (0.3, -0.2), (0.0, 0.7)] {
        let t = a.compose(&aullm::face::Similarity {
            a: 1.0,
            b: 0.0,
            tx: -dx,
            ty: -dy,
        });
        let mut moved = Vec::new();
        aullm::face::align::warp_crop(&photo.gray, 512, 512, &t, 128, &mut moved).unwrap();
        let (mx, my) = crop_shift(&base, &moved, 128).unwrap();
        assert!(
            (mx - dx).abs() < 0.03 && (my - dy).abs() < 0.03,
            "({mx}, {my}) vs ({dx}, {dy})"
        );
    }
}

#[test]
fn moving_head_is_followed() {
    let cfg = cfg();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("sway.mkv");
    let spec = FaceVideoSpec {
        motion: Motion::Sway {
            amplitude_px: 12.0,
            rotation_deg: 4.0,
            period_frames: 60.0,
            drift_px: 20.0,
        },
        ..still_spec(120)
    };
    write_face_video(&spec, &photo, &video).unwrap();
    let crops = track_crops(&cfg, &video);
    // The face moved by tens of pixels and turned; its aligned crop must not.
    let mut worst = 0.0f64;
    for c in &crops {
        let (dx, dy) = crop_shift(&crops[0], c, cfg.align.size).unwrap();
        worst = worst.max((dx * dx + dy * dy).sqrt());
    }
    eprintln!("largest crop displacement vs. frame 0 under head motion: {worst:.3} px");
    assert!(worst < 0.5, "crop displaced by {worst} px");
}

#[test]
fn two_faces_keep_their_ids() {
    use aullm::face::Similarity;
    use aullm::rng::Rng;
    let mut cfg = cfg();
    cfg.face.max_faces = 2;
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let (w, h) = (480usize, 240usize);
    let mut rng = Rng::new(3);
    let mut ids_left = std::collections::BTreeSet::new();
    let mut ids_right = std::collections::BTreeSet::new();
    for i in 0..40 {
        // Two copies of the face, 240 px apart, drifting in opposite directions.
        let mut frame = vec![0u8; w * h];
        for (k, dx) in [(0usize, i as f64 * 0.5), (1, -(i as f64) * 0.5)] {
            let t = Similarity {
                a: 1.5,
                b: 0.0,
                tx: 120.0 + 240.0 * k as f64 + dx - 1.5 * photo.anchor[0],
                ty: 110.0 - 1.5 * photo.anchor[1],
            };
            let inv = t.inverse();
            for y in 0..h {
                for x in (k * 240)..((k + 1) * 240) {
                    let p = inv.apply([x as f64, y as f64]);
                    let (px, py) = (p[0].round() as i64, p[1].round() as i64);
                    if px >= 0 && py >= 0 && (px as u32) < photo.width && (py as u32) < photo.height
                    {
                        let v = photo.gray[py as usize * photo.width as usize + px as usize] as f64;
                        frame[y * w + x] = (v + 2.0 * rng.gaussian()).clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        let faces = tracker.process(&frame, w, h).unwrap();
        assert_eq!(faces.len(), 2, "frame {i}: {faces:?}");
        for f in &faces {
            let cx = (f.bbox[0] + f.bbox[2]) / 2.0;
            if cx < 240.0 {
                ids_left.insert(f.track_id);
            } else {
                ids_right.insert(f.track_id);
            }
        }
    }
    assert_eq!(ids_left.len(), 1, "left face keeps one id: {ids_left:?}");
    assert_eq!(ids_right.len(), 1, "right face keeps one id: {ids_right:?}");
    assert_ne!(ids_left, ids_right);
    assert_eq!(tracker.stats().tracks_started, 2);
}

#[test]
fn mjpeg_decoded_by_region_tracks_exactly_as_whole_frames() {
    let cfg = cfg();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("sway.avi");
    let spec = FaceVideoSpec {
        motion: Motion::Sway {
            amplitude_px: 12.0,
            rotation_deg: 4.0,
            period_frames: 60.0,
            drift_px: 20.0,
        },
        ..still_spec(80)
    };
    aullm::fixtures::write_face_video_with(
        &spec,
        &photo,
        &video,
        aullm::output::video::VideoCodec::Mjpeg,
    )
    .unwrap();
    // `pair`: as the camera driver does on the face thread, each frame still compressed is
    // decoded together with the next queued one where the tracker allows (counted in `paired`).
    let mut paired = 0;
    let mut run = |regions: bool, pair: bool| {
        let mut c = cfg.clone();
        c.ingest.decode_regions = regions;
        let mut tracker = FaceTracker::from_config(&c.face, &c.align, &c.models).unwrap();
        let mut ingest = Ingest::open(&Source::File(video.clone()), &c.ingest).unwrap();
        let (mut out, mut decoded, mut whole) = (Vec::new(), 0u64, 0u64);
        while let Some(mut f) = ingest.next_frame().unwrap() {
            if pair
                && let Some(rect) = tracker.pair_hint(f.width as usize, f.height as usize)
                && let Some(next) = ingest.peek_next()
            {
                let seq = next.seq;
                f.prefetch_pair(next, rect).unwrap();
                if next.valid[2] > next.valid[0] {
                    paired += 1;
                }
                assert_eq!(
                    ingest.peek_next().map(|n| n.seq),
                    Some(seq),
                    "the same frame waits"
                );
            }
            for o in tracker.process_frame(&mut f).unwrap() {
                out.push((f.seq, o.crop, o.crop_to_frame, o.keypoints));
            }
            decoded += ((f.valid[2] - f.valid[0]) * (f.valid[3] - f.valid[1])) as u64;
            whole += (f.width * f.height) as u64;
        }
        (out, decoded as f64 / whole as f64)
    };
    let (by_region, fraction) = run(true, false);
    let (by_frame, _) = run(false, false);
    let (by_pairs, _) = run(true, true);
    assert_eq!(by_region.len(), 80, "one face on every frame");
    assert!(
        by_region == by_frame,
        "region decoding changed a crop, transform or keypoint"
    );
    assert!(
        by_pairs == by_frame,
        "decoding frames in pairs changed a crop, transform or keypoint"
    );
    // Frames next to a detection (every 20th) go alone; most others in pairs.
    assert!(paired >= 25, "{paired} pairs in 80 frames");

    // The camera driver on the face thread (no decoding ahead) pairs frames the same way.
    use aullm::stream::camera::{DriveOptions, Flow, drive};
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let mut ingest = Ingest::open(&Source::File(video.clone()), &cfg.ingest).unwrap();
    let opts = DriveOptions {
        decode_ahead: false,
        ..DriveOptions::new()
    };
    let mut driven = Vec::new();
    drive(&mut ingest, &mut tracker, &opts, |f| {
        for o in f.faces {
            driven.push((f.seq, o.crop, o.crop_to_frame, o.keypoints));
        }
        Ok(Flow::Continue)
    })
    .unwrap();
    assert!(driven == by_frame, "the driver's pairs changed a crop");
    eprintln!("decoded {:.0}% of the pixels", 100.0 * fraction);
    assert!(fraction < 0.8, "decoded {fraction} of the frame area");
}
