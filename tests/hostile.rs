//! Hostile but fair inputs through the real binary (issue 19): a header that declares 4e9 fps,
//! file names GStreamer's launch syntax cannot quote, a bad input beside a previous results file,
//! an endless line, out-of-range configuration, and SIGTERM / SIGHUP in the middle of a run and
//! of a batch. Each test reproduces a defect that once crashed, lost or overwrote something.

mod clients;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn aullm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aullm"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A 6 s SynthME long video (shared by the tests of this file) and the shipped model's folder.
fn video() -> &'static Path {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        clients::long_video(&root, 21)
    })
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

/// `aullm batch INPUT --out OUT --model default --quiet -j JOBS`.
fn batch(input: &Path, out: &Path, jobs: &str) -> Command {
    let mut c = aullm();
    c.arg("batch")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(model())
        .args(["--quiet", "-j", jobs]);
    c
}

/// An MJPEG AVI of a second of noise whose headers (avih and strh) declare `fps`.
fn avi_declaring(path: &Path, rate: u32, scale: u32) {
    let mut w = aullm::output::video::VideoWriter::create(path, 160, 120, 50.0).unwrap();
    let mut rng = aullm::rng::Rng::new(5);
    for _ in 0..50 {
        let f: Vec<u8> = (0..160 * 120)
            .map(|_| 90 + (rng.uniform() * 30.0) as u8)
            .collect();
        w.push(&f).unwrap();
    }
    w.finish().unwrap();
    let mut b = std::fs::read(path).unwrap();
    let at = |b: &[u8], tag: &[u8]| b.windows(4).position(|w| w == tag).unwrap() + 8;
    let avih = at(&b, b"avih");
    let us = (1e6 * scale as f64 / rate as f64) as u32;
    b[avih..avih + 4].copy_from_slice(&us.to_le_bytes());
    let strh = at(&b, b"strh");
    b[strh + 20..strh + 24].copy_from_slice(&scale.to_le_bytes());
    b[strh + 24..strh + 28].copy_from_slice(&rate.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// Item 1: a header declaring 4e9 fps aborted the process (a 64 GB allocation); in a batch it
/// killed the whole run before any index. Now it is one failed video with a clear reason.
#[test]
fn an_absurd_frame_rate_is_a_clear_error_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let bad = input.join("rate.avi");
    avi_declaring(&bad, 4_000_000_000, 1);
    std::fs::copy(video(), input.join("good.avi")).unwrap();

    let o = aullm()
        .arg("run")
        .arg(&bad)
        .arg("--model")
        .arg(model())
        .args(["--sink", "jsonl:-"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(matches!(o.status.code(), Some(1 | 2)), "{:?} {e}", o.status);
    assert!(
        e.contains("frame rate") && e.contains("--fps") && e.contains("rate.avi"),
        "{e}"
    );

    let out = dir.path().join("out");
    let o = batch(&input, &out, "1").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("1 processed") && e.contains("1 failed"), "{e}");
    let failed = std::fs::read_to_string(out.join("rate/failed.json")).unwrap();
    assert!(failed.contains("frame rate"), "{failed}");
    let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert_eq!(index.lines().count(), 3, "{index}");

    // The same bound on what a user types, before anything starts.
    for args in [
        vec!["--fps", "1e12"],
        vec!["--set", "stream.ring_s=1e9"],
        vec!["--set", "ingest.queue_frames=4000000000"],
    ] {
        let o = aullm()
            .arg("run")
            .arg(video())
            .args(&args)
            .args(["--sink", "jsonl:-"])
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains("outside") || e.contains("expected"),
            "{args:?}: {e}"
        );
    }
}

/// Item 12: names with `!`, `"` or a newline could not be processed (they reached GStreamer's
/// launch syntax); the index's video column was not quoted.
#[test]
fn any_file_name_is_processed_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let names = ["wow!.avi", "say \"hi\".avi", "two\nlines.avi"];
    for n in names {
        std::fs::copy(video(), input.join(n)).unwrap();
    }
    let out = dir.path().join("out");
    let o = batch(&input, &out, "2").output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("3 processed") && e.contains("0 failed"), "{e}");
    let mut r = csv::Reader::from_path(out.join("index.csv")).unwrap();
    let mut ids: Vec<String> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(&rec[2], "ok", "{rec:?}");
            rec[0].to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["say \"hi\"", "two\nlines", "wow!"]);
}

/// Item 3: a bad input wiped the previous results file before the input was even opened.
#[test]
fn a_bad_input_or_model_keeps_the_previous_results() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("events.jsonl");
    std::fs::write(&results, "{\"previous\": true}\n").unwrap();
    let not_video = dir.path().join("notes.avi");
    std::fs::write(&not_video, "these are notes, not a video").unwrap();
    let sink = format!("jsonl:{}", results.display());
    for (input, model) in [
        (dir.path().join("missing.avi"), model()),
        (not_video, model()),
        (video().to_path_buf(), dir.path().join("no-model")),
    ] {
        let o = aullm()
            .arg("run")
            .arg(&input)
            .arg("--model")
            .arg(&model)
            .args(["--sink", &sink])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(&results).unwrap(),
            "{\"previous\": true}\n",
            "{input:?}: {}",
            stderr(&o)
        );
    }
}

/// Item 7: `events validate /dev/zero` grew without bound (one endless line).
#[test]
fn an_endless_line_is_refused_at_once() {
    let o = aullm()
        .args(["events", "validate", "/dev/zero"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("/dev/zero line 1") && e.contains("longer than"),
        "{e}"
    );
}

/// Item 13: ranges are checked with the key named; TOML errors carry line and column; a key a
/// model folder defines is not silently ignored.
#[test]
fn configuration_errors_name_key_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lab.toml");
    std::fs::write(&cfg, "[face]\nmax_faces = 2\n\n[spot]\nlag_s = = 0.1\n").unwrap();
    let o = aullm()
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("lab.toml:5:"), "{e}");
    let o = aullm()
        .args(["--set", "reasoner.threads=100000", "config", "show"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("reasoner.threads = 100000"),
        "{}",
        stderr(&o)
    );
    let o = aullm()
        .arg("run")
        .arg(video())
        .arg("--model")
        .arg(model())
        .args([
            "--set",
            "reasoner.weights=random-qwen2-1.5b",
            "--sink",
            "jsonl:-",
        ])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("reasoner.weights") && e.contains("defines"),
        "{e}"
    );
    let o = aullm().args(["config", "ranges"]).output().unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| `stream.ring_s` |"), "{table}");
}

/// Sends `sig` to the child once `ready` holds, waits, and returns its exit code and stderr.
fn signal_when(
    mut child: std::process::Child,
    sig: i32,
    ready: impl FnMut() -> bool,
) -> (Option<i32>, String) {
    clients::wait_for("the run to be under way", ready);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let status = child.wait().unwrap();
    let mut e = String::new();
    child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    (status.code(), e)
}

/// Items 4 and 5: SIGTERM killed `run` at once (no drain, no summary); Ctrl-C on a recorded file
/// was reported as a truncated file with an interval cut at the stop.
#[test]
fn sigterm_drains_a_run_and_reports_it_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (events, summary) = (
        dir.path().join("events.jsonl"),
        dir.path().join("summary.json"),
    );
    let child = aullm()
        .arg("run")
        .arg(video())
        .arg("--model")
        .arg(model())
        .arg("--sink")
        .arg(format!("jsonl:{}", events.display()))
        .arg("--summary")
        .arg(&summary)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The sinks open once the model is loaded; the 1200 frames take seconds after that.
    let (code, e) = signal_when(child, libc::SIGTERM, || {
        events.exists() && {
            std::thread::sleep(std::time::Duration::from_millis(300));
            true
        }
    });
    assert_eq!(code, Some(130), "{e}");
    assert!(
        !e.contains("truncated or corrupt") && e.contains("interrupted"),
        "{e}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["interrupted"], true, "{s}");
    assert!(
        s["frames"].as_u64().unwrap() < 1200,
        "stopped part-way: {s}"
    );
    assert!(s["error"].is_null(), "{s}");
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
    assert_eq!(
        text.lines().count() as u64,
        s["events"].as_u64().unwrap(),
        "every event written"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Items 4 and 6: SIGHUP killed `batch` at once; Ctrl-C made it look like success with the
/// unprocessed videos simply missing from the index.
#[test]
fn sighup_stops_a_batch_that_says_what_it_did_not_process() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in ["a.avi", "b.avi", "c.avi", "d.avi"] {
        std::fs::copy(video(), input.join(n)).unwrap();
    }
    let out = dir.path().join("out");
    let child = batch(&input, &out, "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, e) = signal_when(child, libc::SIGHUP, || out.join("a/done.json").exists());
    assert_eq!(code, Some(130), "{e}");
    assert!(e.contains("not processed") && e.contains("--resume"), "{e}");
    let mut r = csv::Reader::from_path(out.join("index.csv")).unwrap();
    let status: Vec<(String, String)> = r
        .records()
        .map(|x| x.unwrap())
        .map(|x| (x[0].to_string(), x[2].to_string()))
        .collect();
    assert_eq!(status.len(), 4, "every input is in the index: {status:?}");
    assert_eq!(status[0], ("a".to_string(), "ok".to_string()));
    assert!(status.iter().any(|s| s.1 == "not processed"), "{status:?}");
}

/// `serve` when its source goes away and comes back: here a file that ends (as a camera unplugged)
/// and is opened again; sinks stay up, event numbering goes on, and SIGTERM ends it cleanly.
#[test]
fn serve_reconnects_when_the_source_comes_back_and_numbering_goes_on() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut child = aullm()
        .args(["serve", "--template", "file", "--param"])
        .arg(format!("location={}", video().display()))
        .arg("--model")
        .arg(model())
        .args(["--max-backoff", "1", "--sink"])
        .arg(format!("jsonl:{}", events.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (lines, err) = (lines.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let reconnects = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("reconnecting"))
            .count()
    };
    // Patience per play of the video, not for both: on a loaded test machine one play can take
    // tens of seconds.
    clients::wait_for("the first reconnection", || reconnects() >= 1);
    clients::wait_for("the second reconnection", || reconnects() >= 2);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(status.success(), "a live session ends with a signal: {log}");
    let evs: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{log}");
    // Played twice at least: the first expression of the video is reported by two connections.
    let first = evs[0]["onset"]["frame"].clone();
    let again = evs.iter().filter(|e| e["onset"]["frame"] == first).count();
    assert!(again >= 2, "{again} times: {log}");
}
