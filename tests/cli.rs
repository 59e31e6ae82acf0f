//! The `aullm` binary as users run it: exit codes and the errors they read.

use std::path::Path;
use std::process::{Command, Output};

fn aullm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aullm"))
        .args(args)
        .output()
        .expect("running aullm")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn unknown_config_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lab.toml");
    std::fs::write(&p, "[align]\nsize = 128\nstabilize = true\n").unwrap();
    let o = aullm(&["--config", p.to_str().unwrap(), "config", "show"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("stabilize"), "{t}");
    assert!(t.contains("lab.toml"), "{t}");
}

#[test]
fn config_show_prints_every_section_with_overrides_applied() {
    let o = aullm(&["--set", "face.max_faces=4", "config", "show"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    for section in ["[models]", "[ingest]", "[face]", "[align]"] {
        assert!(t.contains(section), "{t}");
    }
    assert!(t.contains("max_faces = 4"), "{t}");
    // What `config show` prints loads back as a configuration file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shown.toml");
    std::fs::write(&p, t.as_bytes()).unwrap();
    let again = aullm(&["--config", p.to_str().unwrap(), "config", "show"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(again.stdout, o.stdout);
}

/// A manifest with one local-file artefact and the given hash.
fn manifest_with(dir: &Path, sha: &str) -> std::path::PathBuf {
    let payload = dir.join("payload.bin");
    std::fs::write(&payload, b"aullm test payload\n").unwrap();
    let m = dir.join("manifest.toml");
    std::fs::write(
        &m,
        format!(
            "[[artefact]]\nname = \"payload\"\ndescription = \"test\"\nlicense = \"none\"\nkind = \"file\"\n\
             package = \"{}\"\nfile = \"payload.bin\"\nsha256 = \"{sha}\"\nrequired = true\n",
            payload.display()
        ),
    )
    .unwrap();
    m
}

#[test]
fn manifest_hash_mismatch_is_an_error_naming_the_artefact() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let wrong = "0".repeat(64);
    let m = manifest_with(dir.path(), &wrong);
    let set = format!("models.manifest={}", m.display());
    let o = aullm(&[
        "--set",
        &set,
        "--cache-dir",
        cache.to_str().unwrap(),
        "models",
        "fetch",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("payload"), "{t}");
    assert!(t.contains("sha256"), "{t}");
    assert!(
        !cache.join("payload").join("payload.bin").exists(),
        "a bad file never lands in the cache"
    );

    // With the right hash it fetches, verifies, and `models path` prints the file.
    let right = aullm::models::sha256_file(&dir.path().join("payload.bin")).unwrap();
    let m = manifest_with(dir.path(), &right);
    let set = format!("models.manifest={}", m.display());
    let base = [
        "--set",
        &set,
        "--cache-dir",
        cache.to_str().unwrap(),
        "models",
    ];
    let o = aullm(&[&base[..], &["fetch"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let o = aullm(&[&base[..], &["path", "payload"]].concat());
    let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(path.ends_with("payload.bin"), "{path}");
    // Tampering is caught by verify.
    std::fs::write(&path, b"tampered").unwrap();
    let o = aullm(&[&base[..], &["verify", "payload"]].concat());
    assert!(!o.status.success());
    assert!(text(&o).contains("payload"), "{}", text(&o));
}

#[test]
fn doctor_passes_after_setup() {
    let o = aullm(&["doctor"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("ONNX Runtime") && t.contains("1.31.1"), "{t}");
    assert!(t.contains("liblsl"), "{t}");
    assert!(
        t.contains("front-end engine") && t.contains("ONNX Runtime ("),
        "{t}"
    );
    // A GPU the loaded ONNX Runtime cannot use moves the front-end to candle, and doctor says so.
    let o = aullm(&["--set", "reasoner.device=cuda:0", "doctor"]);
    let t = text(&o);
    assert!(
        t.contains("candle on cuda:0") && t.contains("no CUDA execution provider"),
        "{t}"
    );
}

#[test]
fn faces_on_a_truncated_file_exits_non_zero_and_keeps_the_csv() {
    let cfg = aullm::config::Config::default();
    let video = aullm::assets::artefact_path(&cfg.models, "megamind").unwrap();
    let bytes = std::fs::read(&video).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.avi");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let o = aullm(&[
        "faces",
        cut.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("avidemux") && t.contains("truncated"), "{t}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let frames = summary["frames"].as_u64().unwrap();
    assert!(frames > 60, "{summary}");
    let csv = std::fs::read_to_string(out.join("faces.csv")).unwrap();
    assert!(csv.lines().count() as u64 > frames);
}

#[test]
fn missing_source_file_is_named() {
    let o = aullm(&["faces", "/nonexistent/interview.mp4"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/interview.mp4"));
}

#[test]
fn eval_shard_outside_its_count_is_refused_with_the_expected_form() {
    for bad in ["2/2", "1", "x/2", "0/0"] {
        let o = aullm(&[
            "eval",
            "--dataset",
            "synth:/nonexistent",
            "--out",
            "/nonexistent",
            "--shard",
            bad,
        ]);
        assert!(!o.status.success(), "--shard {bad} accepted");
        let t = text(&o);
        assert!(t.contains("expected I/N with 0 <= I < N"), "{bad}: {t}");
    }
}

#[test]
fn a_jsonl_sink_naming_the_input_video_is_refused_and_the_video_kept() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.mkv");
    let o = aullm(&[
        "testvideo",
        video.to_str().unwrap(),
        "--frames",
        "10",
        "--codec",
        "raw",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let before = std::fs::read(&video).unwrap();
    // The same file under another spelling of its path.
    let other = dir.path().join(".").join("v.mkv");
    let o = aullm(&[
        "run",
        video.to_str().unwrap(),
        "--sink",
        &format!("jsonl:{}", other.display()),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("is the input video") && t.contains("v.mkv"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(&video).unwrap(),
        before,
        "the video is intact"
    );
}
