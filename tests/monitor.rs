//! The `--ui` live monitor seen by a real browser: headless Chromium (Debian's `chromium`, installed
//! by `make setup`) opens the page while `aullm run` processes a SynthME video paced at 200 fps.
//! The page's event list must show exactly the events the jsonl sink wrote, the camera path must
//! drop nothing with the page open, and a client that connects and never reads must change nothing
//! the run computes. The page's screenshot is kept in `$CARGO_TARGET_TMPDIR/monitor.png`.

mod clients;

use aullm::events::AuEvent;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `aullm run` on `video` paced at the frame rate (as a camera delivers), with the monitor on a
/// free port; returns the process and the page's address once it is listening.
fn start_run(video: &Path, out: &Path) -> (Child, SocketAddr) {
    let src = format!(
        "gst:filesrc location={} ! decodebin ! videoconvert ! clocksync",
        video.display()
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .arg("run")
        .arg(&src)
        .args([
            "--set",
            "ingest.live=yes",
            "--fps",
            "200",
            "--ui",
            "127.0.0.1:0",
        ])
        // One second of frame queue (default 64 frames): the CI machine is shared and noisy.
        .args(["--set", "ingest.queue_frames=200"])
        .arg("--model")
        .arg(&model)
        .arg("--sink")
        .arg(format!("jsonl:{}", out.join("events.jsonl").display()))
        .arg("--summary")
        .arg(out.join("summary.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aullm run");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "aullm run ended before its monitor listened"
        );
        if let Some(rest) = line.trim().strip_prefix("monitor: http://") {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    // Keep draining stderr so the process never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, addr)
}

fn wait(child: &mut Child) {
    let st = child.wait().unwrap();
    assert!(st.success(), "aullm run failed: {st}");
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn events(out: &Path) -> Vec<AuEvent> {
    std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| AuEvent::from_json(l).unwrap())
        .collect()
}

/// Headless Chromium on `url`, driven over the DevTools protocol.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is not installed: run `make setup` (apt package chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let t0 = Instant::now();
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.parse().ok()))
            {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "chromium did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let page = loop {
            let list = http_get(port, "/json/list");
            let targets: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
            let found = targets.as_array().and_then(|a| {
                a.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            if let Some(ws) = found {
                break ws;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no page target");
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ws, _) = tungstenite::client(page.as_str(), stream).expect("DevTools handshake");
        Browser {
            child,
            ws,
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(tungstenite::Message::Text(msg.into()))
            .unwrap();
        loop {
            let m = self.ws.read().expect("DevTools connection");
            if let tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page and returns its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET to Chromium's DevTools HTTP endpoint (which keeps connections open: read by length).
fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    match r.read_exact(&mut body) {
        Ok(()) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    }
}

/// What the page shows: its status and each listed event (seq and text).
const READ_PAGE: &str = "JSON.stringify({status: document.getElementById('status').textContent, \
     events: [...document.querySelectorAll('#events li')].map(li => ({seq: +li.dataset.seq, text: li.textContent}))})";

#[test]
fn the_monitor_page_shows_every_event_and_costs_the_camera_nothing() {
    let root = tempfile::tempdir().unwrap();
    let video = clients::long_video(root.path(), 5);

    // 1. A browser watching the whole run.
    let out1 = root.path().join("watched");
    std::fs::create_dir_all(&out1).unwrap();
    // Chromium starts (a CPU-heavy second) before the paced run, as a lab opens its browser first.
    let mut browser = Browser::open("about:blank");
    let (mut run, addr) = start_run(&video, &out1);
    browser.call("Page.navigate", json!({"url": format!("http://{addr}/")}));
    let mut page = Value::Null;
    let t0 = Instant::now();
    while run.try_wait().unwrap().is_none() {
        // Before the page has loaded there is nothing to read yet.
        if let Some(p) = browser.eval(READ_PAGE).as_str() {
            page = serde_json::from_str(p).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "run did not end");
        std::thread::sleep(Duration::from_millis(300));
    }
    wait(&mut run);
    // The page keeps what it showed after the run ends.
    if let Some(p) = browser.eval(READ_PAGE).as_str() {
        page = serde_json::from_str(p).unwrap();
    }
    let shot = browser.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().unwrap());
    let shot_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor.png");
    std::fs::write(&shot_path, &png).unwrap();
    eprintln!("screenshot: {}", shot_path.display());
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    drop(browser);

    let written = events(&out1);
    assert!(
        written.len() >= 3,
        "the video holds 4 expressions; {} events",
        written.len()
    );
    assert_eq!(page["status"], "run ended", "{page}");
    let shown = page["events"].as_array().unwrap();
    let mut shown_seqs: Vec<u64> = shown.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    shown_seqs.sort();
    let written_seqs: Vec<u64> = written.iter().map(|e| e.seq).collect();
    assert_eq!(shown_seqs, written_seqs, "the page lists the jsonl events");
    for e in &written {
        let text = shown
            .iter()
            .find(|s| s["seq"].as_u64() == Some(e.seq))
            .and_then(|s| s["text"].as_str())
            .unwrap();
        let kind = format!("{:?}", e.kind).to_lowercase();
        assert!(text.contains(&kind), "event {}: {text}", e.seq);
        for a in &e.aus {
            let at = text
                .find(&format!("{} ", a.au))
                .unwrap_or_else(|| panic!("{} missing in {text}", a.au));
            let shown_p: f32 = text[at + a.au.len() + 1..]
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (shown_p - a.probability).abs() <= 0.0051,
                "event {} {}: page {shown_p}, jsonl {}",
                e.seq,
                a.au,
                a.probability
            );
        }
    }
    let s1 = summary(&out1);
    assert_eq!(s1["ingest"]["dropped_queue"], 0, "{s1}");
    assert_eq!(s1["ingest"]["dropped_gap"], 0, "{s1}");

    // 2. Clients that never read: one asks for the state over and over without reading, one
    //    connects and says nothing. The run must compute exactly the same events, dropping nothing.
    let out2 = root.path().join("stalled");
    std::fs::create_dir_all(&out2).unwrap();
    let (mut run, addr) = start_run(&video, &out2);
    let silent = TcpStream::connect(addr).unwrap();
    let mut stalled = Vec::new();
    while run.try_wait().unwrap().is_none() {
        if stalled.len() < 64
            && let Ok(mut s) = TcpStream::connect(addr)
        {
            let _ = s.write_all(b"GET /state.json HTTP/1.1\r\nHost: x\r\n\r\n");
            stalled.push(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait(&mut run);
    drop((silent, stalled));
    let s2 = summary(&out2);
    assert_eq!(s2["ingest"]["dropped_queue"], 0, "{s2}");
    assert_eq!(s2["ingest"]["dropped_gap"], 0, "{s2}");
    let key = |v: &[AuEvent]| -> Vec<(u64, u64, u64)> {
        v.iter()
            .map(|e| (e.seq, e.onset.frame, e.offset.frame))
            .collect()
    };
    assert_eq!(
        key(&events(&out2)),
        key(&written),
        "stalled monitor clients changed the events"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for ch in b.chunks(4) {
        let n = ch
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, &c)| n | (val(c) as u32) << (18 - 6 * k));
        out.extend_from_slice(&n.to_be_bytes()[1..ch.len()]);
    }
    out
}
