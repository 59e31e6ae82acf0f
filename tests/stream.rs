//! The live pipeline end to end on a rendered SynthME long video: GStreamer → face → spot → clip →
//! ONNX Runtime front-end + candle SmolLM2 reasoner → events → jsonl, TCP, a Python WebSocket
//! client and a pylsl inlet. Events match the ground truth and are identical across sinks; a TCP
//! client that never reads does not change what the run computes.

mod clients;

use aullm::config::Config;
use aullm::events::{AuEvent, EventBus, SinkOptions, SinkSpec, lsl_library, open_sinks};
use aullm::ingest::Source;
use aullm::spot::{Interval, IntervalKind};
use aullm::stream::{RunSummary, StreamOptions};
use clients::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One 6 s SynthME long video (200 fps, default amplitudes and nuisances, 3 micro-expressions,
/// 1 macro) and a model bundle (tiny front-end, SmolLM2 reasoner with a fresh adapter), made once.
struct Fixture {
    root: PathBuf,
    video: PathBuf,
    model: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let video = long_video(&root, 5);
        let model = tiny_model(&root, "test-model");
        Fixture { video, root, model }
    })
}

fn options() -> StreamOptions {
    StreamOptions::from_config(&Config::default())
}

/// Runs the fixture video into `bus`.
fn run(bus: &EventBus) -> RunSummary {
    let f = fixture();
    let cfg = Config::default();
    let mut det = aullm::runtime::detector::Detector::load(&f.model, &cfg, None).unwrap();
    let mut seq = 0;
    aullm::stream::run(
        &cfg,
        &Source::File(f.video.clone()),
        &mut aullm::runtime::detector::DetectorSlot::Ready(&mut det),
        bus,
        &options(),
        &mut seq,
    )
    .unwrap()
}

fn sink_options(specs: &[SinkSpec]) -> SinkOptions {
    let aus = [1, 2, 4, 7, 12, 14, 15, 17]
        .iter()
        .map(|a| format!("AU{a}"))
        .collect();
    let mut o = aullm::events::sink_options(
        &Config::default().events,
        &Config::default().models,
        specs,
        None,
        None,
        aus,
    )
    .unwrap();
    if specs.iter().any(|s| matches!(s, SinkSpec::Lsl(_))) {
        o.lsl_lib = Some(lsl_library(&Config::default().models).unwrap());
    }
    o
}

fn read_jsonl(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn events_match_ground_truth_and_are_identical_across_sinks() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let name = format!("aullm-stream-test-{}", std::process::id());
    let specs: Vec<SinkSpec> = [
        format!("jsonl:{}", file.display()),
        "tcp:0".into(),
        "ws:0".into(),
        format!("lsl:{name}"),
    ]
    .iter()
    .map(|s| SinkSpec::parse(s).unwrap())
    .collect();
    let bus = open_sinks(&specs, &sink_options(&specs)).unwrap();
    let addr = |kind: &str| {
        bus.local_addrs()
            .into_iter()
            .find(|(n, _)| n.starts_with(kind))
            .map(|(_, a)| a)
            .unwrap()
    };
    let (tcp_got, tcp_thread) = tcp_reader(addr("tcp"), None);
    let ws = Py::start(&["ws", &format!("ws://{}/", addr("ws")), "1000"]);
    assert_eq!(ws.line(), "READY");
    let lsl = Py::start(&["lsl", &name, "1000"]);
    let header = lsl.line(); // labels and clock offset
    assert!(header.contains("AU12"), "{header}");
    assert_eq!(lsl.line(), "READY");
    wait_for("both clients", || bus.clients_connected() >= 2);

    let summary = run(&bus);
    let stats = bus.close();
    eprint!("{}", summary.render());
    assert!(summary.error.is_none(), "{:?}", summary.error);
    assert_eq!(summary.ingest.dropped(), 0, "a file never drops frames");
    assert_eq!(summary.clips_dropped, 0);
    assert_eq!(summary.events, summary.intervals);
    for s in &stats {
        assert_eq!(s.dropped, 0, "{s:?}");
    }

    // The same bytes through every sink.
    let lines = read_jsonl(&file);
    assert_eq!(lines.len() as u64, summary.events);
    tcp_thread.join().unwrap();
    assert_eq!(*tcp_got.lock().unwrap(), lines, "TCP");
    // The clients were asked for more events than the run makes: read exactly what was published.
    let ws_lines: Vec<String> = (0..lines.len()).map(|_| ws.line()).collect();
    assert_eq!(ws_lines, lines, "WebSocket");
    let lsl_rows: Vec<serde_json::Value> = (0..lines.len())
        .map(|_| serde_json::from_str(&lsl.line()).unwrap())
        .collect();
    assert_eq!(lsl_rows.len(), lines.len(), "LSL markers");

    // Events against SynthME's annotations (MEGC matching, 1-based truth frames).
    let events: Vec<AuEvent> = lines
        .iter()
        .map(|l| AuEvent::from_json(l).unwrap())
        .collect();
    for (ev, row) in events.iter().zip(&lsl_rows) {
        assert_eq!(row["marker"].as_str().unwrap(), lines[ev.seq as usize]);
        // The numeric sample is stamped with the apex capture time on LSL's clock.
        let ts = row["values_ts"].as_f64().unwrap();
        assert!(
            (ts - ev.apex.lsl_s).abs() < 1e-3,
            "{ts} vs {}",
            ev.apex.lsl_s
        );
        assert!(ev.onset.frame <= ev.apex.frame && ev.apex.frame <= ev.offset.frame);
        assert_eq!(ev.aus.len(), 8);
        assert_eq!(ev.model.id, "test-model");
    }
    let truth = aullm::jobs::spot::load_set(&Config::default(), &f.root, None).unwrap();
    let pred: Vec<Interval> = events
        .iter()
        .map(|e| Interval {
            onset: e.onset.frame,
            apex: e.apex.frame,
            offset: e.offset.frame,
            score: e.spotting_score,
            kind: match e.kind {
                aullm::events::ExpressionKind::Micro => IntervalKind::Micro,
                aullm::events::ExpressionKind::Macro => IntervalKind::Macro,
            },
            decided_at: e.offset.frame,
            region: "",
        })
        .collect();
    let c = aullm::eval::spot_videos::score_video(&truth[0].truth, &pred).all;
    eprintln!("events vs truth: {c:?}");
    assert!(
        c.tp >= 3,
        "{c:?}: at least 3 of the 4 annotated expressions"
    );
    assert!(c.fp <= 1, "{c:?}");
}

#[test]
fn a_tcp_client_that_never_reads_does_not_change_the_run() {
    let collect = |blackhole: bool| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.jsonl");
        let specs: Vec<SinkSpec> = [format!("jsonl:{}", file.display()), "tcp:0".into()]
            .iter()
            .map(|s| SinkSpec::parse(s).unwrap())
            .collect();
        let bus = open_sinks(&specs, &sink_options(&specs)).unwrap();
        let hole = blackhole.then(|| {
            let a = bus.local_addrs()[0].1;
            let s = TcpStream::connect(a).unwrap();
            wait_for("client", || bus.clients_connected() >= 1);
            s
        });
        let summary = run(&bus);
        bus.close();
        drop(hole);
        // Timing fields differ between runs; what was computed must not.
        let strip = |l: &String| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["onset", "apex", "offset"] {
                v[k]["host_ns"] = 0.into();
                v[k]["mono_ns"] = 0.into();
                v[k]["lsl_s"] = 0.into();
            }
            v["latency_ms"] = 0.into();
            v
        };
        let events: Vec<serde_json::Value> = read_jsonl(&file).iter().map(strip).collect();
        (summary.frames, summary.events, events)
    };
    let (f0, e0, ev0) = collect(false);
    let (f1, e1, ev1) = collect(true);
    assert!(e0 > 0);
    assert_eq!((f0, e0), (f1, e1));
    assert_eq!(ev0, ev1);
}

#[test]
fn a_corrupt_frame_in_a_recording_is_counted_and_the_run_goes_on() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("damaged.avi");
    let mut bytes = std::fs::read(&f.video).unwrap();
    let soi = aullm::fixtures::jpeg_starts(&bytes);
    assert!(soi.len() > 600, "{} JPEG frames", soi.len());
    bytes[soi[500] + 1] = 0x00; // frame 500 no longer starts a JPEG
    std::fs::write(&video, bytes).unwrap();
    let cfg = Config::default();
    let mut det = aullm::runtime::detector::Detector::load(&f.model, &cfg, None).unwrap();
    let bus = EventBus::new(Vec::new(), 64, aullm::events::LslClock::monotonic());
    let opts = StreamOptions {
        record: true,
        offline_origin_ns: Some(0),
        ..options()
    };
    let mut seq = 0;
    let s = aullm::stream::run(
        &cfg,
        &Source::File(video),
        &mut aullm::runtime::detector::DetectorSlot::Ready(&mut det),
        &bus,
        &opts,
        &mut seq,
    )
    .unwrap();
    bus.close();
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.corrupt_frames, 1);
    assert_eq!(
        s.frames as usize,
        soi.len(),
        "every frame, the damaged one included"
    );
    let rows = s.recording.unwrap().frames;
    let row = rows
        .iter()
        .find(|r| r.frame == 500)
        .expect("a row for frame 500");
    assert!(!row.success, "the damaged frame has no face");
    assert!(rows.iter().filter(|r| r.success).count() > 1000);
}

/// `aullm faces` and `aullm spot` read video through the same camera-path driver as `run`: a
/// damaged MJPEG frame is a frame without a face (counted), not the end of the recording.
#[test]
fn faces_and_spot_go_on_past_a_corrupt_frame() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("damaged.avi");
    let mut bytes = std::fs::read(&f.video).unwrap();
    let soi = aullm::fixtures::jpeg_starts(&bytes);
    bytes[soi[500] + 1] = 0x00; // frame 500 no longer starts a JPEG
    std::fs::write(&video, bytes).unwrap();
    let cfg = Config::default();
    let source = Source::File(video);

    let csv = dir.path().join("faces.csv");
    let opts = aullm::jobs::faces::FacesOptions {
        csv: csv.clone(),
        crops: None,
        contact_sheet: None,
        max_frames: None,
    };
    let s = aullm::jobs::faces::run(&cfg, &source, &opts, |_| {}).unwrap();
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.corrupt_frames, 1);
    assert_eq!(s.frames as usize, soi.len(), "every frame is a row");
    let text = std::fs::read_to_string(&csv).unwrap();
    // Row 501 (1-based) is the damaged frame: written, without a face (face_id -1, success 0).
    let row = text
        .lines()
        .find(|l| l.starts_with("501,"))
        .expect("a row for the damaged frame");
    assert!(row.starts_with("501,-1,"), "{row}");
    assert!(text.lines().filter(|l| l.contains(",1,")).count() > 1000);

    let mut intervals = 0;
    let s = aullm::jobs::spot::spot_source(&cfg, &source, None, |_| {
        intervals += 1;
        Ok(())
    })
    .unwrap();
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.corrupt_frames, 1);
    assert_eq!(s.frames as usize, soi.len());
    assert!(intervals > 0, "the spotter still decides intervals");
}
