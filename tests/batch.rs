//! `aullm batch` end to end through the real binary on a folder of rendered SynthME videos, a
//! truncated file and a video without a face: outputs match the live pipeline, failures are
//! reported with a non-zero exit code, a killed batch resumes to the same bytes, shards add up to
//! the unsharded run, and the per-frame CSV loads in pandas with the documented columns.

mod clients;

use aullm::config::Config;
use aullm::data::synth::{SynthConfig, generate};
use aullm::events::{EventBus, LslClock};
use aullm::fixtures::Photo;
use aullm::ingest::Source;
use aullm::output::video::VideoWriter;
use aullm::stream::StreamOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

struct Fixture {
    videos: PathBuf,
    model: PathBuf,
}

/// Three 3 s SynthME videos, a truncated copy of one, and 1 s of a face-less scene; a model bundle
/// (tiny front-end, SmolLM2 reasoner).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let cfg = Config::default();
        let photo = Photo::astronaut(&cfg.models).unwrap();
        let sc = SynthConfig {
            seed: 9,
            subjects: 3,
            clips_per_subject: 0,
            long_videos: 3,
            long_seconds: 3.0,
            micros_per_video: 2,
            macros_per_video: 0,
            ..SynthConfig::bench()
        };
        generate(&sc, &photo, &root.join("synth"), 2).unwrap();
        let videos = root.join("in");
        std::fs::create_dir_all(videos.join("day2")).unwrap();
        for (src, dst) in [
            ("001_1", "a.avi"),
            ("002_1", "b.avi"),
            ("003_1", "day2/c.avi"),
        ] {
            std::fs::copy(
                root.join(format!("synth/videos/{src}.avi")),
                videos.join(dst),
            )
            .unwrap();
        }
        let bytes = std::fs::read(videos.join("a.avi")).unwrap();
        std::fs::write(videos.join("broken.avi"), &bytes[..bytes.len() / 3]).unwrap();
        let mut w = VideoWriter::create(&videos.join("empty_room.avi"), 320, 240, 50.0).unwrap();
        let mut rng = aullm::rng::Rng::new(3);
        for _ in 0..50 {
            let f: Vec<u8> = (0..320 * 240)
                .map(|_| 100 + (rng.uniform() * 20.0) as u8)
                .collect();
            w.push(&f).unwrap();
        }
        w.finish().unwrap();
        std::fs::write(videos.join("notes.txt"), "not a video").unwrap();
        let model = clients::tiny_model(&root, "batch-test");
        Fixture { videos, model }
    })
}

fn batch(args: &[&str], out: &Path) -> Output {
    let f = fixture();
    Command::new(env!("CARGO_BIN_EXE_aullm"))
        .arg("batch")
        .arg(&f.videos)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(&f.model)
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

/// The outputs that must be reproducible: events, per-frame CSV and report of each video.
fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for id in ["a", "b", "day2__c"] {
        for f in ["events.jsonl", "frames.csv", "report.html"] {
            let p = out.join(id).join(f);
            if let Ok(b) = std::fs::read(&p) {
                v.push((format!("{id}/{f}"), b));
            }
        }
    }
    v
}

#[test]
fn folder_with_bad_files_matches_live_pipeline_and_reports_failures() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let o = batch(&["-j", "2"], out.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{stderr}");
    assert_eq!(
        o.status.code(),
        Some(2),
        "failures must give a non-zero exit code"
    );
    assert!(
        stderr.contains("3 processed") && stderr.contains("2 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("empty_room") && stderr.contains("no face"),
        "{stderr}"
    );
    let index = std::fs::read_to_string(out.path().join("index.csv")).unwrap();
    assert_eq!(index.lines().count(), 1 + 5, "{index}");
    assert!(out.path().join("index.html").exists());
    assert!(
        !out.path().join("notes").exists(),
        "non-video files are not inputs"
    );

    // The live pipeline on the same video gives the same events (frame numbers, kinds, AUs).
    let cfg = Config::default();
    let mut det = aullm::runtime::detector::Detector::load(&f.model, &cfg, None).unwrap();
    let bus = EventBus::new(Vec::new(), 64, LslClock::monotonic());
    let opts = StreamOptions {
        record: true,
        ..StreamOptions::from_config(&cfg)
    };
    let mut seq = 0;
    let live = aullm::stream::run(
        &cfg,
        &Source::File(f.videos.join("b.avi")),
        &mut aullm::runtime::detector::DetectorSlot::Ready(&mut det),
        &bus,
        &opts,
        &mut seq,
    )
    .unwrap();
    bus.close();
    let live = live.recording.unwrap().events;
    let batch_events: Vec<aullm::events::AuEvent> =
        std::fs::read_to_string(out.path().join("b/events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| aullm::events::AuEvent::from_json(l).unwrap())
            .collect();
    assert!(!live.is_empty());
    assert_eq!(live.len(), batch_events.len());
    for (l, b) in live.iter().zip(&batch_events) {
        assert_eq!(
            (l.onset.frame, l.apex.frame, l.offset.frame),
            (b.onset.frame, b.apex.frame, b.offset.frame)
        );
        assert_eq!(l.kind, b.kind);
        // Clips may be batched differently live: probabilities agree to float tolerance.
        for (x, y) in l.aus.iter().zip(&b.aus) {
            assert_eq!(x.au, y.au);
            assert!(
                (x.probability - y.probability).abs() < 1e-4,
                "{x:?} vs {y:?}"
            );
        }
        assert_eq!(l.onset.stream_s, b.onset.stream_s);
    }

    // The per-frame CSV loads in pandas with the documented columns, a row per frame.
    let py = clients::python();
    let csv = out.path().join("b/frames.csv");
    let check = Command::new(py)
        .args([
            "-c",
            "import sys, pandas as pd\n\
             df = pd.read_csv(sys.argv[1])\n\
             need = ['frame','face_id','timestamp','confidence','success','detected','spot_signal','AU12_p','AU12_c']\n\
             missing = [c for c in need if c not in df.columns]\n\
             assert not missing, missing\n\
             assert df['frame'].is_monotonic_increasing\n\
             assert df['AU12_p'].notna().sum() > 0 and df['AU12_p'].isna().sum() > 0\n\
             print(len(df))",
        ])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let rows: usize = String::from_utf8_lossy(&check.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(rows >= 590, "{rows} rows for a 600-frame video");
}

#[test]
fn killed_batch_resumes_to_the_same_outputs_and_shards_add_up() {
    let whole = tempfile::tempdir().unwrap();
    assert_eq!(batch(&["-j", "1"], whole.path()).status.code(), Some(2));
    let want = outputs(whole.path());
    assert_eq!(want.len(), 9);

    // Kill a run as soon as its first video is complete, then resume.
    let cut = tempfile::tempdir().unwrap();
    let f = fixture();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .arg("batch")
        .arg(&f.videos)
        .arg("--out")
        .arg(cut.path())
        .arg("--model")
        .arg(&f.model)
        .args(["--quiet", "-j", "1"])
        .spawn()
        .unwrap();
    clients::wait_for("a first complete video", || {
        std::fs::read_dir(cut.path())
            .map(|d| d.flatten().any(|e| e.path().join("done.json").exists()))
            .unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before: Vec<PathBuf> = std::fs::read_dir(cut.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("done.json").exists())
        .collect();
    assert!(!before.is_empty());
    let o = batch(&["-j", "1", "--resume"], cut.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{} already complete", before.len())),
        "{stderr}"
    );
    assert_eq!(
        outputs(cut.path()),
        want,
        "resumed outputs differ from an uninterrupted run"
    );
    // Issue 19, item 8: the killed run's temporary files are swept by the resume.
    let mut partials = Vec::new();
    let mut stack = vec![cut.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().ends_with(".partial") {
                partials.push(e.path());
            }
        }
    }
    assert!(partials.is_empty(), "left behind: {partials:?}");

    // Shards 1/3, 2/3, 3/3 into one folder equal the unsharded run; --merge indexes them.
    let sharded = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        batch(&["-j", "1", "--shard", &format!("{i}/3")], sharded.path());
    }
    assert_eq!(outputs(sharded.path()), want);
    let merged = tempfile::tempdir().unwrap();
    let m = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .args(["batch", "--merge"])
        .arg(sharded.path())
        .arg("--out")
        .arg(merged.path())
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let idx = std::fs::read_to_string(merged.path().join("index.csv")).unwrap();
    assert_eq!(idx.lines().count(), 1 + 5, "{idx}");
}
