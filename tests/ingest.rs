//! Ingest contracts on real GStreamer pipelines: files never drop, live sources never block and count
//! every loss, GRAY16 is normalised, timestamps and sequence numbers are delivered.

use aullm::config::IngestConfig;
use aullm::ingest::{Ingest, Source};
use std::time::Duration;

fn open(spec: &str, cfg: &IngestConfig) -> Ingest {
    Ingest::open(&Source::parse(spec).unwrap(), cfg).unwrap()
}

#[test]
fn slow_consumer_of_a_file_loses_nothing() {
    let cfg = IngestConfig {
        queue_frames: 4,
        ..Default::default()
    };
    let mut ing = open(
        "pipeline:test?live=false&frames=80&width=160&height=120&fps=200",
        &cfg,
    );
    assert!(!ing.is_live());
    let mut seqs = Vec::new();
    let mut last_pts = None;
    while let Some(f) = ing.next_frame().unwrap() {
        if seqs.len() % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!((f.width, f.height), (160, 120));
        assert_eq!(f.data().len(), 160 * 120);
        if let Some(p) = last_pts {
            assert!(f.pts_ns > p, "timestamps increase");
        }
        last_pts = Some(f.pts_ns);
        seqs.push(f.seq);
    }
    assert_eq!(seqs, (0..80).collect::<Vec<u64>>());
    assert_eq!(ing.counts().dropped(), 0);
}

#[test]
fn slow_consumer_of_a_live_source_drops_oldest_and_counts_it() {
    let cfg = IngestConfig {
        queue_frames: 4,
        ..Default::default()
    };
    let mut ing = open(
        "pipeline:test?live=true&frames=100&width=160&height=120&fps=200",
        &cfg,
    );
    assert!(ing.is_live());
    let mut delivered = 0u64;
    let mut last_seq = None;
    while let Some(f) = ing.next_frame().unwrap() {
        // 10 ms per frame against a 5 ms camera period: the queue must overflow.
        std::thread::sleep(Duration::from_millis(10));
        if let Some(s) = last_seq {
            assert!(f.seq > s, "sequence numbers increase (gaps show the drops)");
        }
        last_seq = Some(f.seq);
        delivered += 1;
    }
    let c = ing.counts();
    assert!(c.dropped_queue > 0, "{c:?}");
    assert_eq!(c.received, 100, "{c:?}");
    assert_eq!(delivered + c.dropped_queue, c.received, "{c:?}");
    assert_eq!(c.delivered, delivered);
}

#[test]
fn frames_lost_upstream_of_a_live_source_are_counted() {
    // identity drops buffers at random before the appsink: holes in the source's frame counter.
    let spec = "gst:videotestsrc is-live=true num-buffers=200 ! \
                video/x-raw,format=GRAY8,width=64,height=48,framerate=400/1 ! identity drop-probability=0.2";
    let mut ing = open(spec, &IngestConfig::default());
    let mut n = 0u64;
    let mut max_seq = 0;
    while let Some(f) = ing.next_frame().unwrap() {
        n += 1;
        max_seq = f.seq;
    }
    let c = ing.counts();
    assert!(c.dropped_gap > 10, "{c:?}");
    assert_eq!(
        n + c.dropped_gap,
        max_seq + 1,
        "seq counts every source frame: {c:?}"
    );
    assert!(max_seq < 200);
}

#[test]
fn gray16_cameras_are_normalised_to_8_bits() {
    let cfg = IngestConfig::default();
    let cfg12 = IngestConfig {
        gray16_bits: 12,
        ..Default::default()
    };
    // A 12-bit camera's full scale is 4095: a quarter of 16-bit full scale must map to white.
    let spec = "gst:videotestsrc num-buffers=2 pattern=solid-color foreground-color=0xff404040 ! \
                video/x-raw,format=GRAY16_LE,width=32,height=16";
    let mut q = open(spec, &cfg12);
    let f = q.next_frame().unwrap().unwrap();
    assert!(f.data()[0] == 255, "got {}", f.data()[0]);
    let mut q16 = open(spec, &cfg);
    let f16 = q16.next_frame().unwrap().unwrap();
    assert!((40..=110).contains(&f16.data()[0]), "got {}", f16.data()[0]);
}

#[test]
fn stop_handle_ends_a_live_stream_cleanly() {
    let mut ing = open(
        "pipeline:test?live=true&width=64&height=48&fps=200",
        &IngestConfig::default(),
    );
    let stop = ing.stop_handle();
    let mut n = 0;
    while let Some(_f) = ing.next_frame().unwrap() {
        n += 1;
        if n == 20 {
            stop.stop();
        }
        assert!(n < 2000, "stream did not end after stop");
    }
    assert!(n >= 20);
}

#[test]
fn bad_descriptions_and_templates_are_clear_errors() {
    let cfg = IngestConfig::default();
    let e = Ingest::open(
        &Source::parse("gst:nosuchelement ! fakesink").unwrap(),
        &cfg,
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("nosuchelement"), "{e:#}");
    let e = Ingest::open(&Source::parse("pipeline:nosuch").unwrap(), &cfg)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("nosuch"), "{e:#}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let e = match Ingest::open(&Source::parse(junk.to_str().unwrap()).unwrap(), &cfg) {
        Err(e) => format!("{e:#}"),
        Ok(mut i) => match i.next_frame() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("junk decoded as video"),
        },
    };
    assert!(
        e.contains("junk.mp4") || e.contains("typefind") || e.contains("decodebin"),
        "{e}"
    );
}
