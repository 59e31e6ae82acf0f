//! The README's "Reading events in Python" recipes, run as written: the ```python block after each
//! `<!-- tested: NAME -->` line, against the events of a real `aullm run` on a SynthME long video
//! (what `make demo` does), with only the constants at the top swapped for this run's file, port or
//! stream name. pylsl and websockets read `aullm events replay`; the XDF recipe reads a recording
//! written by `tests/events/write_xdf.py` (EEG at 500 Hz and the events as aullm's Markers stream).
//! Python packages come from `make setup` (.venv); a missing one fails the test with the fix.

mod clients;

use clients::{PATIENCE, python, root, tcp_reader};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The recipes the README must have, each run by one test below.
const RECIPES: [&str; 4] = ["pandas", "pylsl", "websockets", "xdf"];

/// Failsafe for a recipe or a replay to finish (not an assertion on speed: this machine is shared).
const LIMIT: Duration = Duration::from_secs(300);

/// The JSON lines of `aullm run` on a rendered SynthME long video, as `make demo` makes them
/// (the video is deleted afterwards: it is 350 MB).
fn events() -> &'static [String] {
    static E: OnceLock<Vec<String>> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let synth = dir.path().join("synth");
        let file = dir.path().join("events.jsonl");
        aullm(&[
            "synth",
            synth.to_str().unwrap(),
            "--preset",
            "bench",
            "--subjects",
            "1",
            "--clips",
            "0",
            "--long-videos",
            "1",
        ]);
        let video = synth.join("videos/001_1.avi");
        let sink = format!("jsonl:{}", file.display());
        aullm(&["run", video.to_str().unwrap(), "--sink", &sink]);
        let lines: Vec<String> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(!lines.is_empty(), "the demo video gave no events");
        lines
    })
}

/// Runs the aullm binary to the end; it must succeed.
fn aullm(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "aullm {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn parsed() -> Vec<Value> {
    events()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events file in `dir`, byte for byte what `aullm run` wrote.
fn events_file(dir: &Path) -> PathBuf {
    let p = dir.join("events.jsonl");
    std::fs::write(&p, events().join("\n") + "\n").unwrap();
    p
}

/// The model's AU names, in its order (from the first event).
fn au_names(ev: &[Value]) -> Vec<String> {
    ev[0]["aus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["au"].as_str().unwrap().to_string())
        .collect()
}

/// How Python prints the list of an event's present AUs, e.g. `['AU4', 'AU14']`.
fn present(e: &Value) -> String {
    let aus: Vec<String> = e["aus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["present"].as_bool().unwrap())
        .map(|a| format!("'{}'", a["au"].as_str().unwrap()))
        .collect();
    format!("[{}]", aus.join(", "))
}

fn seqs(ev: &[Value]) -> Vec<u64> {
    ev.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The ```python block right after `<!-- tested: NAME -->` in README.md.
fn recipe(name: &str) -> String {
    let readme = readme();
    let head = format!("<!-- tested: {name} -->\n```python\n");
    let at: Vec<usize> = readme.match_indices(&head).map(|(i, _)| i).collect();
    assert_eq!(
        at.len(),
        1,
        "README.md must have exactly one `<!-- tested: {name} -->` line right before a ```python block"
    );
    let body = &readme[at[0] + head.len()..];
    let end = body
        .find("\n```\n")
        .unwrap_or_else(|| panic!("the {name} recipe's block is not closed"));
    body[..=end].to_string()
}

/// `code` with the constant assignment `from` (which must appear once) replaced by `to`.
fn swap(code: &str, from: &str, to: &str) -> String {
    assert_eq!(
        code.matches(from).count(),
        1,
        "the recipe should contain `{from}` once (the test swaps that constant):\n{code}"
    );
    code.replacen(from, to, 1)
}

/// A Python string literal for a path.
fn py_str(p: &Path) -> String {
    serde_json::to_string(p.to_str().unwrap()).unwrap()
}

/// The venv's Python, with the recipes' packages too.
fn python_for_recipes() -> PathBuf {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import pandas, numpy, pyxdf"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import pandas, numpy and pyxdf: run `.venv/bin/pip install -r tests/events/requirements.txt`",
        py.display()
    );
    py
}

/// A running recipe: `code` saved as `dir/recipe.py` and run there; stdout lines on a channel.
struct Recipe {
    child: Child,
    lines: Receiver<String>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn lines_of(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

impl Recipe {
    fn start(code: &str, dir: &Path) -> Recipe {
        let script = dir.join("recipe.py");
        std::fs::write(&script, code).unwrap();
        let mut child = Command::new(python_for_recipes())
            .arg(&script)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let mut e = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        });
        Recipe {
            child,
            lines,
            err: Some(err),
        }
    }

    /// The next line; if none comes, the recipe is stopped and its stderr shown.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(l) => l,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.err.take().unwrap().join().unwrap();
                panic!("the recipe printed nothing:\n{err}");
            }
        }
    }

    /// Waits for the end (failsafe LIMIT); it must exit 0. Returns the lines not yet read.
    fn finish(mut self) -> Vec<String> {
        let ok = wait(&mut self.child, "the recipe");
        let err = self.err.take().unwrap().join().unwrap();
        // The reader thread ends at the pipe's end, after the last line.
        let out: Vec<String> = self.lines.iter().collect();
        assert!(ok, "the recipe failed:\n{}\n{err}", out.join("\n"));
        out
    }
}

/// Waits (failsafe-bounded) for `child`; true if it exited 0.
fn wait(child: &mut Child, what: &str) -> bool {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.success();
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `code` in `dir` to the end and returns what it printed.
fn run(code: &str, dir: &Path) -> Vec<String> {
    Recipe::start(code, dir).finish()
}

/// `aullm events replay FILE ARGS…`, its stderr lines on a channel.
struct Replay {
    child: Child,
    err: Receiver<String>,
    seen: Vec<String>,
}

impl Replay {
    fn start(file: &Path, args: &[&str]) -> Replay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aullm"))
            .args(["events", "replay"])
            .arg(file)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let e = child.stderr.take().unwrap();
        let (tx, err) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(e).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Replay {
            child,
            err,
            seen: Vec::new(),
        }
    }

    /// The address a server sink (`tcp`, `ws`) listens on, from `listening: KIND:… on ADDR`.
    fn listening(&mut self, kind: &str) -> String {
        loop {
            let l = self.err.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!(
                    "replay did not say where {kind} listens:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(l.clone());
            if l.starts_with(&format!("listening: {kind}:")) {
                return l.rsplit(" on ").next().unwrap().to_string();
            }
        }
    }

    /// Waits for the end (failsafe LIMIT); it must exit 0.
    fn finish(mut self) {
        let ok = wait(&mut self.child, "the replay");
        std::thread::sleep(Duration::from_millis(100));
        self.seen.extend(self.err.try_iter());
        assert!(ok, "replay failed:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn readme_has_each_tested_recipe_once() {
    let readme = readme();
    let mut names: Vec<&str> = readme
        .match_indices("<!-- tested: ")
        .map(|(i, m)| {
            let rest = &readme[i + m.len()..];
            &rest[..rest.find(" -->").expect("unclosed <!-- tested: comment")]
        })
        .collect();
    names.sort();
    let mut want = RECIPES.to_vec();
    want.sort();
    assert_eq!(names, want, "README.md's tested recipes");
    for name in RECIPES {
        let code = recipe(name);
        assert!(code.lines().count() > 5, "{name}: {code}");
    }
}

#[test]
fn pandas_recipe_reads_every_event_with_a_column_per_au() {
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(dir.path());
    let ev = parsed();
    let aus = au_names(&ev);
    assert!(
        aus.iter().any(|a| a == "AU12"),
        "the model has AU12: {aus:?}"
    );
    let code = swap(
        &recipe("pandas"),
        r#"EVENTS = "out/demo/events.jsonl""#,
        &format!("EVENTS = {}", py_str(&file)),
    );
    let out = run(&code, dir.path());
    assert_eq!(
        out[0],
        format!("{} events; AUs: {}", ev.len(), aus.join(", ")),
        "{out:#?}"
    );
    let has_au12 = |e: &&Value| {
        e["aus"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["au"] == "AU12" && a["present"] == true)
    };
    let au12: Vec<&Value> = ev.iter().filter(has_au12).collect();
    assert_eq!(
        out[1],
        format!("events with AU12 present: {}", au12.len()),
        "{out:#?}"
    );
    if !au12.is_empty() {
        // The table of those events: a header with the AU12 column, then one row each.
        assert!(out[2].split_whitespace().any(|c| c == "AU12"), "{out:#?}");
        assert!(out.len() >= 3 + au12.len(), "{out:#?}");
        for (row, e) in out[3..].iter().zip(&au12) {
            assert_eq!(
                row.split_whitespace().next().unwrap(),
                e["seq"].to_string(),
                "{out:#?}"
            );
        }
    }
}

#[test]
fn pylsl_recipe_receives_every_event_stamped_at_its_apex() {
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(dir.path());
    let ev = parsed();
    let name = format!("aullm_readme_{}", std::process::id());
    // A TCP client to wait for: the replay publishes only once the recipe's inlets are open.
    let mut replay = Replay::start(
        &file,
        &[
            "--sink",
            "tcp:127.0.0.1:0",
            "--sink",
            &format!("lsl:{name}"),
            "--wait-clients",
            "1",
        ],
    );
    let tcp = replay.listening("tcp");
    let code = swap(
        &recipe("pylsl"),
        r#"STREAM = "aullm""#,
        &format!(r#"STREAM = "{name}""#),
    );
    let code = swap(&code, "N = 10 ", &format!("N = {} ", ev.len()));
    let mut py = Recipe::start(&code, dir.path());
    let first = py.line();
    assert_eq!(
        first,
        format!(
            "connected to {name} and {name}_AU; AU channels: {}",
            au_names(&ev).join(", ")
        )
    );
    let (tcp_got, tcp_done) = tcp_reader(tcp.parse().unwrap(), None);
    let out = py.finish();
    replay.finish();
    tcp_done.join().unwrap();
    let tcp_seqs: Vec<u64> = tcp_got
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(tcp_seqs, seqs(&ev), "the TCP client the replay waited for");
    assert_eq!(out.len(), ev.len(), "one line per event: {out:#?}");
    for (line, e) in out.iter().zip(&ev) {
        // "{timestamp:.3f} event {seq} {kind}: present [...], most likely AUx (p)"
        let w: Vec<&str> = line.split_whitespace().collect();
        let ts: f64 = w[0].parse().unwrap();
        let apex = e["apex"]["lsl_s"].as_f64().unwrap();
        assert!(
            (ts - apex).abs() < 0.002,
            "stamped {ts}, apex {apex}: {line}"
        );
        assert_eq!(
            (w[1], w[2]),
            ("event", e["seq"].to_string().as_str()),
            "{line}"
        );
        assert!(line.contains(&format!("present {},", present(e))), "{line}");
    }
}

#[test]
fn websockets_recipe_receives_every_event_and_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(dir.path());
    let ev = parsed();
    let mut replay = Replay::start(
        &file,
        &[
            "--sink",
            "ws:127.0.0.1:0",
            "--wait-clients",
            "1",
            "--rate",
            "50",
        ],
    );
    let addr = replay.listening("ws");
    let code = swap(
        &recipe("websockets"),
        r#"WS = "ws://127.0.0.1:8765""#,
        &format!(r#"WS = "ws://{addr}""#),
    );
    let out = run(&code, dir.path());
    replay.finish();
    assert_eq!(out.len(), ev.len() + 1, "{out:#?}");
    let got: Vec<u64> = out[..ev.len()]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, seqs(&ev), "{out:#?}");
    for (line, e) in out.iter().zip(&ev) {
        assert!(
            line.ends_with(&format!(": present {}", present(e))),
            "{line}"
        );
    }
    assert_eq!(
        out[ev.len()],
        "aullm closed the connection (code 1000)",
        "{out:#?}"
    );
}

#[test]
fn xdf_recipe_cuts_the_eeg_between_onset_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(dir.path());
    let ev = parsed();
    let xdf = dir.path().join("session.xdf");
    let name = "aullm_recorded";
    let o = Command::new(python_for_recipes())
        .arg(root().join("tests/events/write_xdf.py"))
        .arg(&file)
        .arg(&xdf)
        .arg(name)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let code = swap(
        &recipe("xdf"),
        r#"XDF = "session.xdf""#,
        &format!("XDF = {}", py_str(&xdf)),
    );
    let code = swap(
        &code,
        r#"EVENTS = "out/demo/events.jsonl""#,
        &format!("EVENTS = {}", py_str(&file)),
    );
    let code = swap(
        &code,
        r#"STREAM = "aullm""#,
        &format!(r#"STREAM = "{name}""#),
    );
    let out = run(&code, dir.path());
    assert_eq!(
        out.len(),
        2 * ev.len(),
        "a line per event and per marker: {out:#?}"
    );
    const RATE: f64 = 500.0; // write_xdf.py's EEG
    for (line, e) in out[..ev.len()].iter().zip(&ev) {
        // "event {seq} {kind} [...]: {n} EEG samples, {ms} ms"
        assert!(line.starts_with(&format!("event {} ", e["seq"])), "{line}");
        assert!(line.contains(&format!(" {}: ", present(e))), "{line}");
        let n: f64 = line
            .rsplit(": ")
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let span = e["offset"]["lsl_s"].as_f64().unwrap() - e["onset"]["lsl_s"].as_f64().unwrap();
        assert!(
            (n - span * RATE).abs() <= 1.0,
            "{n} samples for {span} s at {RATE} Hz: {line}"
        );
    }
    for (line, e) in out[ev.len()..].iter().zip(&ev) {
        // "marker {seq} at {stamp:.3f} s (apex lsl_s {apex:.3f})"
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (w[0], w[1]),
            ("marker", e["seq"].to_string().as_str()),
            "{line}"
        );
        let stamp: f64 = w[3].parse().unwrap();
        let apex = e["apex"]["lsl_s"].as_f64().unwrap();
        assert!((stamp - apex).abs() < 0.002, "{line}");
    }
}
