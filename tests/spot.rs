//! Spotting on real rendered video through the real path (GStreamer → BlazeFace tracking →
//! aligned crops → Spotter), scored with the MEGC metric against SynthME's annotations.

use aullm::config::Config;
use aullm::data::synth::{SynthConfig, generate};
use aullm::eval::spot_videos::{evaluate_set, score_video};
use aullm::fixtures::{FaceVideoSpec, Motion, Photo, write_face_video_with};
use aullm::ingest::Source;
use aullm::jobs::spot::{load_set, spot_source, track_crops};
use aullm::output::video::VideoCodec;
use aullm::spot::{Interval, IntervalKind, SpotConfig, SpotStats, Spotter, spot_offline};
use std::path::Path;

/// Two 8 s long videos at 200 fps with default amplitudes and nuisances: 4 micros, 1 macro, blinks.
fn small_synth(root: &Path) -> Config {
    let cfg = Config::default();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let sc = SynthConfig {
        seed: 31,
        subjects: 2,
        clips_per_subject: 0,
        long_videos: 2,
        long_seconds: 8.0,
        micros_per_video: 4,
        macros_per_video: 1,
        ..SynthConfig::bench()
    };
    generate(&sc, &photo, root, 2).unwrap();
    cfg
}

#[test]
fn synthme_intervals_are_found_in_time_and_labelled_by_duration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_synth(dir.path());
    let videos = load_set(&cfg, dir.path(), None).unwrap();
    assert_eq!(videos.len(), 2);
    let r = evaluate_set(&cfg.spot, dir.path(), &videos).unwrap();
    eprintln!(
        "{}",
        aullm::eval::spot_videos::render(std::slice::from_ref(&r))
    );
    assert_eq!(r.k, 20, "k = 0.1 s at 200 fps");
    let f1 = r.live.f1.unwrap();
    assert!(f1 >= 0.6, "live F1 {f1}");
    assert!(r.offline.f1.unwrap() >= 0.6, "{:?}", r.offline);
    // Latency rule: every interval decided within 2k frames after its offset.
    assert_eq!(r.live.late, 0, "{:?}", r.live);
    assert!(r.live.max_decision_delay <= 2 * r.k as u64);

    // Labels follow duration: matched macro-expressions come out macro, micro ones micro.
    let mut labelled = (0, 0);
    for v in &videos {
        let mut sp = Spotter::new(&cfg.spot, v.fps, 128).unwrap();
        let mut pred = Vec::new();
        for (i, c) in &v.crops {
            pred.extend(sp.push(*i, c).unwrap());
        }
        pred.extend(sp.finish());
        for p in &pred {
            let micro = (p.offset - p.onset + 1) as f64 / v.fps < cfg.spot.micro_max_s;
            assert_eq!(p.kind == IntervalKind::Micro, micro, "{p:?}");
        }
        let c = score_video(&v.truth, &pred);
        labelled.0 += c.micro.tp;
        labelled.1 += c.macro_.tp;
    }
    assert!(
        labelled.0 >= 4,
        "micro TPs with the micro label: {}",
        labelled.0
    );
    assert!(
        labelled.1 >= 1,
        "macro TPs with the macro label: {}",
        labelled.1
    );

    // Frame-rate scaling: the same video as 100 fps (every second frame) is spotted with k = 10
    // and finds the same expressions (times agree within a few frames of 200 fps).
    let v = &videos[0];
    let half: Vec<(u64, Vec<u8>)> = v
        .crops
        .iter()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, c)| (i / 2, c.clone()))
        .collect();
    assert_eq!(cfg.spot.lag_frames(100.0), 10);
    let full = spot_offline(&cfg.spot, v.fps, 128, v.crops.iter().cloned()).unwrap();
    let halved = spot_offline(&cfg.spot, v.fps / 2.0, 128, half.into_iter()).unwrap();
    let doubled: Vec<_> = halved
        .intervals
        .iter()
        .map(|i| aullm::spot::Interval {
            onset: i.onset * 2,
            apex: i.apex * 2,
            offset: i.offset * 2 + 1,
            ..*i
        })
        .collect();
    let a = score_video(&v.truth, &full.intervals).all;
    let b = score_video(&v.truth, &doubled).all;
    eprintln!("200 fps {a:?}, 100 fps {b:?}");
    assert!(b.tp + 1 >= a.tp && a.tp >= 2, "{a:?} vs {b:?}");
}

fn face_video(dir: &Path, motion: Motion) -> std::path::PathBuf {
    let cfg = Config::default();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let spec = FaceVideoSpec {
        width: 640,
        height: 480,
        fps: 200.0,
        frames: 1000,
        noise_sigma: 2.0,
        motion,
        seed: 5,
    };
    let p = dir.join("face.mkv");
    write_face_video_with(&spec, &photo, &p, VideoCodec::Ffv1).unwrap();
    p
}

#[test]
fn a_still_face_gives_no_interval_and_head_sway_few() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let still = face_video(dir.path(), Motion::Still);
    let mut got = Vec::new();
    let s = spot_source(&cfg, &Source::File(still), None, |iv| {
        got.push(iv.clone());
        Ok(())
    })
    .unwrap();
    assert!((s.fps - 200.0).abs() < 1.0, "{}", s.fps);
    assert_eq!(s.frames, 1000);
    assert!(got.is_empty(), "still face: {got:?}");

    // Head sway (±3 px, ±1°, 1.5 s period, 5 px drift) with no expression at all.
    let dir2 = tempfile::tempdir().unwrap();
    let sway = face_video(
        dir2.path(),
        Motion::Sway {
            amplitude_px: 3.0,
            rotation_deg: 1.0,
            period_frames: 300.0,
            drift_px: 5.0,
        },
    );
    let t = track_crops(&cfg, &sway).unwrap();
    let off = spot_offline(&cfg.spot, t.fps, 128, t.crops.iter().cloned()).unwrap();
    let mut sp = Spotter::new(&cfg.spot, t.fps, 128).unwrap();
    let mut live = Vec::new();
    for (i, c) in &t.crops {
        live.extend(sp.push(*i, c).unwrap());
        assert!(sp.signal().is_none_or(|(j, v)| j == *i && v.is_finite()));
    }
    live.extend(sp.finish());
    eprintln!("sway: live {live:?}, offline {:?}", off.intervals);
    assert!(live.len() <= 1, "{live:?}");
    assert!(off.intervals.len() <= 1, "{:?}", off.intervals);
}

#[test]
fn bad_input_is_a_clear_error() {
    let cfg = Config::default();
    let err = Spotter::new(&cfg.spot, 0.0, 128).err().unwrap();
    assert!(format!("{err:#}").contains("frame rate"), "{err:#}");
    let mut bad = cfg.spot.clone();
    bad.threshold_mads = -1.0;
    let err = Spotter::new(&bad, 200.0, 128).err().unwrap();
    assert!(
        format!("{err:#}").contains("spot.threshold_mads"),
        "{err:#}"
    );
    let mut sp = Spotter::new(&cfg.spot, 200.0, 128).unwrap();
    let err = sp.push(0, &[0u8; 100]).unwrap_err();
    assert!(format!("{err:#}").contains("frame 0"), "{err:#}");
    sp.push(5, &[0u8; 128 * 128]).unwrap();
    let err = sp.push(5, &[0u8; 128 * 128]).unwrap_err();
    assert!(format!("{err:#}").contains("does not increase"), "{err:#}");
}

/// `crop` (size²) scaled by `s` about its centre and shifted by `dx` px: what a re-anchor of the
/// tracker does to the crops from one frame to the next.
fn jumped(crop: &[u8], size: usize, s: f64, dx: f64) -> Vec<u8> {
    let c = (size as f64 - 1.0) / 2.0;
    warped(crop, size, |x, y| ((x - c - dx) / s + c, (y - c) / s + c))
}

/// `crop` (size²) resampled bilinearly: output pixel (x, y) takes the input at `source(x, y)`.
fn warped(crop: &[u8], size: usize, source: impl Fn(f64, f64) -> (f64, f64)) -> Vec<u8> {
    let at = |x: i64, y: i64| {
        crop[(y.clamp(0, size as i64 - 1) as usize) * size + x.clamp(0, size as i64 - 1) as usize]
            as f64
    };
    let mut out = vec![0u8; size * size];
    for y in 0..size {
        for x in 0..size {
            let (sx, sy) = source(x as f64, y as f64);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let v = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1) * (1.0 - fx) * fy
                + at(x0 + 1, y0 + 1) * fx * fy;
            out[y * size + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A smooth 0 → 1 → 0 profile: up over `rise` (first, last frame), down over `fall`.
fn bump(i: u64, rise: (u64, u64), fall: (u64, u64)) -> f64 {
    let r = |a: u64, b: u64| (i.clamp(a, b) - a) as f64 / (b - a) as f64;
    let s = r(rise.0, rise.1) - r(fall.0, fall.1);
    s * s * (3.0 - 2.0 * s)
}

/// Brow rows of the 128 px crop (brows at y ~ 41 px), tapered over 6 rows.
fn brow_band(y: f64) -> f64 {
    ((6.0 - (y - 39.0).abs() + 11.0).clamp(0.0, 6.0)) / 6.0
}

/// A live spotter over 128 px crops to the end: its intervals and counters.
fn spot_live(cfg: &SpotConfig, fps: f64, crops: &[(u64, Vec<u8>)]) -> (Vec<Interval>, SpotStats) {
    let mut sp = Spotter::new(cfg, fps, 128).unwrap();
    let mut got = Vec::new();
    for (i, crop) in crops {
        got.extend(sp.push(*i, crop).unwrap());
    }
    got.extend(sp.finish());
    (got, sp.stats())
}

#[test]
fn a_jump_of_the_crops_is_not_an_expression() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let still = face_video(dir.path(), Motion::Still);
    let t = track_crops(&cfg, &still).unwrap();
    // From frame 500 on, every crop is 4 % larger and 2 px to the right (a re-anchor).
    let crops: Vec<(u64, Vec<u8>)> = t
        .crops
        .iter()
        .map(|(i, c)| {
            (
                *i,
                if *i >= 500 {
                    jumped(c, 128, 1.04, 2.0)
                } else {
                    c.clone()
                },
            )
        })
        .collect();
    let spot = |rebase_px: f64| {
        let mut c = cfg.spot.clone();
        c.rebase_px = rebase_px;
        let (got, _) = spot_live(&c, t.fps, &crops);
        let off = spot_offline(&c, t.fps, 128, crops.iter().cloned()).unwrap();
        (got, off.intervals)
    };
    let (live, off) = spot(cfg.spot.rebase_px);
    assert!(live.is_empty() && off.is_empty(), "{live:?} {off:?}");
    // Without re-basing the jump is seen as a movement for at least the flow lag.
    let (live, off) = spot(0.0);
    assert!(!live.is_empty() && !off.is_empty(), "{live:?} {off:?}");
}

#[test]
fn a_large_expression_that_drags_the_crop_stays_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let still = face_video(dir.path(), Motion::Still);
    let t = track_crops(&cfg, &still).unwrap();
    // A 3 px brow raise over frames 400-640 (rise 80 frames, hold 80, fall 80) that pulls the
    // stabilised crop 1.3 px the other way with it, gradually, as a large expression inside the
    // registration area does: the nose "moves" past rebase_px while the brows move twice as far.
    let truth = (400u64, 640u64);
    let level = |i: u64| bump(i, (400, 480), (560, 640));
    let band = brow_band;
    let crops: Vec<(u64, Vec<u8>)> = t
        .crops
        .iter()
        .map(|(i, c)| {
            let s = level(*i);
            let moved = warped(c, 128, |x, y| (x, y - 1.3 * s + 3.0 * s * band(y)));
            (*i, moved)
        })
        .collect();
    let spot = |drag_ratio: f64| {
        let mut c = cfg.spot.clone();
        c.rebase_drag_ratio = drag_ratio;
        spot_live(&c, t.fps, &crops)
    };
    let iou = |on: u64, off: u64| {
        let inter = (off.min(truth.1) + 1).saturating_sub(on.max(truth.0));
        inter as f64 / ((off.max(truth.1) - on.min(truth.0) + 1) as f64)
    };
    let (got, stats) = spot(cfg.spot.rebase_drag_ratio);
    assert!(cfg.spot.rebase_drag_ratio > 0.0);
    assert!(
        got.iter().any(|iv| iou(iv.onset, iv.offset) >= 0.5) && stats.rebases == 0,
        "{got:?} {stats:?}"
    );
    // Judged a jump instead, the event is dropped when the head passes rebase_px.
    let (got, stats) = spot(0.0);
    assert!(
        stats.rebases >= 1 && !got.iter().any(|iv| iou(iv.onset, iv.offset) >= 0.5),
        "{got:?} {stats:?}"
    );
}

#[test]
fn an_event_pinned_mid_movement_ends_when_the_face_is_back_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let still = face_video(dir.path(), Motion::Still);
    let t = track_crops(&cfg, &still).unwrap();
    // A 1.5 px brow lowerer (frames 300-340) whose event a re-anchor of the crops (2 px to the
    // right from frame 420) cancels; the brows come back up over 450-490. The event that opens on
    // their return is pinned to a lowered-brow frame, which the face never comes back to.
    let level = |i: u64| bump(i, (300, 340), (450, 490));
    let band = brow_band;
    let crops: Vec<(u64, Vec<u8>)> = t
        .crops
        .iter()
        .map(|(i, c)| {
            let (s, dx) = (level(*i), if *i >= 420 { 2.0 } else { 0.0 });
            (*i, warped(c, 128, |x, y| (x - dx, y - 1.5 * s * band(y))))
        })
        .collect();
    let spot = |rest_s: f64| {
        let mut c = cfg.spot.clone();
        c.rest_s = rest_s;
        spot_live(&c, t.fps, &crops)
    };
    let (got, stats) = spot(cfg.spot.rest_s);
    eprintln!("rest frames: {got:?} {stats:?}");
    assert!(cfg.spot.rest_s > 0.0 && stats.rebases >= 1, "{stats:?}");
    let late: Vec<_> = got.iter().filter(|iv| iv.onset >= 420).collect();
    assert!(
        !late.is_empty() && late.iter().all(|iv| iv.offset < 560),
        "{got:?} {stats:?}"
    );
    // Without rest frames the return's event stays open to the end of the video.
    let (got, stats) = spot(0.0);
    eprintln!("without: {got:?} {stats:?}");
    assert!(
        got.iter().any(|iv| iv.onset >= 420 && iv.offset >= 900),
        "{got:?} {stats:?}"
    );
}
