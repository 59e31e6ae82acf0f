//! Shared by the event, pipeline and batch tests: the Python WebSocket client and pylsl inlet of
//! `tests/events/client.py` (from the `.venv` that `make setup` builds), TCP readers, and a small
//! model bundle.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failsafe for waits on other processes (not an assertion on speed).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with websockets + pylsl that `make setup` installs (or $AULLM_TEST_PYTHON).
pub fn python() -> PathBuf {
    let py = std::env::var_os("AULLM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import websockets, pylsl"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import websockets and pylsl: run `make python-test-deps` (part of `make setup`)",
        py.display()
    );
    py
}

/// A running Python client whose stdout lines arrive on a channel.
pub struct Py {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Py {
    pub fn start(args: &[&str]) -> Py {
        let mut child = Command::new(python())
            .arg(root().join("tests/events/client.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python client");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Py { child, lines }
    }

    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("python client said nothing")
    }

    /// Lines until "END" (exclusive).
    pub fn until_end(&self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l == "END" {
                return v;
            }
            assert!(
                l != "TIMEOUT" && l != "NOT FOUND" && !l.starts_with("UNCLEAN"),
                "python client: {l}"
            );
            v.push(l);
        }
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (failsafe-bounded) until `cond` holds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP client reading JSON lines into a shared list (after an optional AUTH exchange).
pub fn tcp_reader(
    a: SocketAddr,
    token: Option<&str>,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let mut s = TcpStream::connect(a).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    if let Some(t) = token {
        writeln!(s, "AUTH {t}").unwrap();
        let mut ok = String::new();
        r.read_line(&mut ok).unwrap();
        assert_eq!(ok, "OK\n");
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let h = std::thread::spawn(move || {
        for l in r.lines().map_while(Result::ok) {
            g.lock().unwrap().push(l);
        }
    });
    (got, h)
}

/// A model bundle `name` in `dir`: a tiny, untrained front-end (32 px, 4 frames) before the real
/// SmolLM2 reasoner with a fresh adapter, thresholds 0.5.
pub fn tiny_model(dir: &std::path::Path, name: &str) -> PathBuf {
    let cfg = aullm::config::Config::load(
        None,
        &[
            "frontend.size=32".into(),
            "frontend.frames=4".into(),
            "frontend.channels=[4, 8, 8, 12]".into(),
            "frontend.node_dim=8".into(),
            "frontend.head_hidden=8".into(),
        ],
    )
    .unwrap();
    let net = aullm::graph::model::Net::new(
        &cfg.net_spec(),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    let model = dir.join("model");
    aullm::export::bundle::export(&net, &cfg, &[0.5; 8], name, &model).unwrap();
    model
}

/// A 6 s SynthME long video (200 fps, bench amplitudes and nuisances, 3 micro-expressions and
/// 1 macro) rendered into `root` from the astronaut photo; returns its path.
pub fn long_video(root: &std::path::Path, seed: u64) -> PathBuf {
    let cfg = aullm::config::Config::default();
    let photo = aullm::fixtures::Photo::astronaut(&cfg.models).unwrap();
    let sc = aullm::data::synth::SynthConfig {
        seed,
        subjects: 1,
        clips_per_subject: 0,
        long_videos: 1,
        long_seconds: 6.0,
        micros_per_video: 3,
        macros_per_video: 1,
        ..aullm::data::synth::SynthConfig::bench()
    };
    aullm::data::synth::generate(&sc, &photo, root, 2).unwrap();
    root.join("videos/001_1.avi")
}
