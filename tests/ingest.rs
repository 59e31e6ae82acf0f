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
    while let Some(mut f) = ing.next_frame().unwrap() {
        if seqs.len() % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!((f.width, f.height), (160, 120));
        assert_eq!(f.data().unwrap().len(), 160 * 120);
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
fn the_end_of_a_stream_stops_its_bus_watcher() {
    // The watcher used to outlive the stream and be joined at close, at its next 50 ms poll.
    let mut ing = open(
        "pipeline:test?live=false&frames=5&width=64&height=48&fps=200",
        &IngestConfig::default(),
    );
    assert!(ing.bus_watched());
    let mut n = 0;
    while ing.next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 5);
    assert!(
        !ing.bus_watched(),
        "the watcher is joined when the stream ends"
    );
    // Ending twice is harmless.
    assert!(ing.next_frame().unwrap().is_none());
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
    let mut f = q.next_frame().unwrap().unwrap();
    let v = f.data().unwrap()[0];
    assert!(v == 255, "got {v}");
    let mut q16 = open(spec, &cfg);
    let mut f16 = q16.next_frame().unwrap().unwrap();
    let v = f16.data().unwrap()[0];
    assert!((40..=110).contains(&v), "got {v}");
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

/// Writes `frames` frames of a moving test pattern as MJPEG in AVI (`format` = the encoder's input).
fn write_mjpeg(path: &std::path::Path, format: &str, frames: u32) {
    write_mjpeg_pattern(path, format, frames, "ball")
}

/// [`write_mjpeg`] with another videotestsrc pattern (`snow`: noise, large frames).
fn write_mjpeg_pattern(path: &std::path::Path, format: &str, frames: u32, pattern: &str) {
    aullm::ingest::init_gstreamer().unwrap();
    let desc = format!(
        "videotestsrc num-buffers={frames} pattern={pattern} ! video/x-raw,format={format},width=200,height=150,framerate=200/1 ! jpegenc quality=90 ! avimux ! filesink location=\"{}\"",
        path.display()
    );
    let p = gstreamer::parse::launch(&desc).unwrap();
    use gstreamer::prelude::*;
    p.set_state(gstreamer::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gstreamer::ClockTime::from_seconds(30),
            &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
        )
        .unwrap();
    assert_eq!(msg.type_(), gstreamer::MessageType::Eos, "{msg:?}");
    p.set_state(gstreamer::State::Null).unwrap();
}

#[test]
fn mjpeg_regions_decode_to_the_same_pixels_as_gstreamer() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["GRAY8", "I420"] {
        let path = dir.path().join(format!("{format}.avi"));
        write_mjpeg(&path, format, 12);
        let whole = IngestConfig {
            decode_regions: false,
            ..Default::default()
        };
        let mut a = open(&path.display().to_string(), &IngestConfig::default());
        let mut b = open(&path.display().to_string(), &whole);
        let mut n = 0;
        while let Some(mut fa) = a.next_frame().unwrap() {
            let mut fb = b.next_frame().unwrap().expect("same frame count");
            assert_eq!(
                (fa.seq, fa.pts_ns, fa.period_ns),
                (fb.seq, fb.pts_ns, fb.period_ns)
            );
            assert!(
                fa.jpeg.is_some(),
                "{format}: an MJPEG frame arrives compressed"
            );
            assert!(fb.jpeg.is_none());
            let want = fb.data().unwrap().to_vec();
            let (w, rect) = (200usize, [50u32, 40, 130, 100]);
            let got = aullm::frame::Pixels::region(&mut fa, rect)
                .unwrap()
                .to_vec();
            // Only the region (grown to whole blocks) was decoded, once, and it matches exactly.
            assert_eq!(fa.decodes, 1);
            let v = fa.valid;
            assert!(
                v[0] <= 50 && v[1] <= 40 && v[2] >= 130 && v[3] >= 100,
                "{v:?}"
            );
            assert!(
                (v[2] - v[0]) * (v[3] - v[1]) < 200 * 150 / 2,
                "{v:?} is most of the frame"
            );
            for y in rect[1] as usize..rect[3] as usize {
                let r = y * w + rect[0] as usize..y * w + rect[2] as usize;
                assert_eq!(got[r.clone()], want[r], "{format} frame {} row {y}", fa.seq);
            }
            // The whole frame afterwards: one more pass, every pixel equal.
            let seq = fa.seq;
            assert_eq!(fa.data().unwrap(), &want[..], "{format} frame {seq}");
            assert_eq!(fa.decodes, 2);
            n += 1;
        }
        assert!(b.next_frame().unwrap().is_none());
        assert_eq!(n, 12);

        // Told what the reader will read, GStreamer's thread decodes that much ahead (frames
        // already queued when the hint arrives come compressed), with the same pixels.
        let path24 = dir.path().join(format!("{format}-24.avi"));
        write_mjpeg(&path24, format, 24);
        let mut c = open(&path24.display().to_string(), &IngestConfig::default());
        let mut d = open(&path24.display().to_string(), &whole);
        let rect = [60u32, 50, 120, 90];
        c.set_decode_hint(Some(rect));
        let mut ahead = 0;
        while let Some(mut fc) = c.next_frame().unwrap() {
            let mut fd = d.next_frame().unwrap().expect("same frame count");
            let v = fc.valid;
            if fc.decodes == 1 && v[0] <= 60 && v[1] <= 50 && v[2] >= 120 && v[3] >= 90 {
                ahead += 1;
            }
            let seq = fc.seq;
            assert_eq!(
                fc.data().unwrap(),
                fd.data().unwrap(),
                "{format} frame {seq}"
            );
        }
        assert!(ahead >= 12, "{format}: {ahead} of 24 frames decoded ahead");
    }
}

#[test]
fn a_corrupt_mjpeg_frame_is_an_error_naming_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.avi");
    write_mjpeg(&path, "GRAY8", 6);
    // Break the fourth frame's JPEG header (its start-of-image marker).
    let mut bytes = std::fs::read(&path).unwrap();
    let soi = aullm::fixtures::jpeg_starts(&bytes);
    assert!(soi.len() >= 6, "{} JPEG starts", soi.len());
    bytes[soi[3] + 1] = 0x00;
    std::fs::write(&path, bytes).unwrap();
    let mut ing = open(&path.display().to_string(), &IngestConfig::default());
    let mut err = None;
    let mut seen = 0;
    loop {
        match ing.next_frame() {
            Ok(Some(mut f)) => match f.data() {
                Ok(_) => seen += 1,
                Err(e) => {
                    err = Some(format!("{e:#}"));
                    break;
                }
            },
            Ok(None) => break,
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }
    let err = err.expect("the damaged frame must be reported");
    assert_eq!(seen, 3, "the frames before it decode");
    assert!(err.contains("frame 3") && err.contains("JPEG"), "{err}");
}

#[test]
fn mjpeg_decoded_at_half_scale_is_the_full_frame_averaged() {
    use aullm::frame::jpeg;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ball.avi");
    write_mjpeg(&path, "I420", 3);
    let bytes = std::fs::read(&path).unwrap();
    let soi = aullm::fixtures::jpeg_starts(&bytes);
    let frame = &bytes[soi[1]..soi[2]];
    let (w, h) = jpeg::dims(frame).unwrap();
    let mut full = vec![0u8; (w * h) as usize];
    jpeg::decode_gray(frame, w, h, [0, 0, w, h], &mut full).unwrap();
    let (sw, sh) = jpeg::scaled_size(w, h, 2);
    assert_eq!((sw, sh), (100, 75));
    let mut half = vec![0u8; (sw * sh) as usize];
    let got = jpeg::decode_gray_scaled(frame, w, h, 2, [0, 0, sw, sh], &mut half).unwrap();
    assert_eq!(got, [0, 0, sw, sh]);
    // The DCT-domain scaling is a low-pass, not a box filter: compare with 2x2 means.
    let (mut sum, mut worst) = (0.0f64, 0.0f64);
    for y in 0..(h / 2) as usize {
        for x in 0..(w / 2) as usize {
            let at = |dx: usize, dy: usize| full[(2 * y + dy) * w as usize + 2 * x + dx] as f64;
            let mean = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0;
            let d = (half[y * sw as usize + x] as f64 - mean).abs();
            sum += d;
            worst = worst.max(d);
        }
    }
    let mean_abs = sum / ((w / 2) * (h / 2)) as f64;
    assert!(mean_abs < 2.0, "mean |half - 2x2 mean| = {mean_abs:.2}");
    assert!(worst < 64.0, "max |half - 2x2 mean| = {worst}");
    // A region at scale gives the same pixels as the whole frame at that scale.
    let mut part = vec![0u8; (sw * sh) as usize];
    let r = jpeg::decode_gray_scaled(frame, w, h, 2, [20, 10, 60, 50], &mut part).unwrap();
    assert!(
        r[0] <= 20 && r[2] >= 60 && r[1] == 10 && r[3] == 50,
        "{r:?}"
    );
    for y in 10..50 {
        let row = y * sw as usize;
        assert_eq!(
            part[row + 20..row + 60],
            half[row + 20..row + 60],
            "row {y}"
        );
    }
    let e = jpeg::decode_gray_scaled(frame, w, h, 3, [0, 0, 10, 10], &mut part)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1/3"), "{e}");
}

/// Every frame of `spec` as (seq, pts, compressed bytes), or the first error as text.
fn compressed_frames(spec: &str, cfg: &IngestConfig) -> Result<Vec<(u64, u64, Vec<u8>)>, String> {
    let mut ing = Ingest::open(&Source::parse(spec).unwrap(), cfg).map_err(|e| format!("{e:#}"))?;
    let mut out = Vec::new();
    while let Some(f) = ing.next_frame().map_err(|e| e.to_string())? {
        let bytes = f.jpeg.as_ref().expect("MJPEG stays compressed").to_vec();
        out.push((f.seq, f.pts_ns, bytes));
    }
    Ok(out)
}

#[test]
fn a_mapped_file_gives_the_frames_gstreamers_filesrc_gives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ball.avi");
    write_mjpeg(&path, "GRAY8", 30);
    let spec = path.display().to_string();
    let mapped = compressed_frames(&spec, &IngestConfig::default()).unwrap();
    // The same file through GStreamer's own filesrc, by a user template replacing the built-in one.
    let templates = dir.path().join("pipelines");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("file.pipeline"),
        "# param location=\nfilesrc location=\"{location}\" ! decodebin\n",
    )
    .unwrap();
    let plain = IngestConfig {
        pipelines_dir: templates.display().to_string(),
        ..Default::default()
    };
    let copied = compressed_frames(&spec, &plain).unwrap();
    assert_eq!(mapped.len(), 30);
    assert!(mapped == copied, "the mapped source changed the frames");
    let t = aullm::ingest::template::find("file", None).unwrap();
    assert!(
        t.render(&[("location".to_string(), "x".to_string())].into())
            .unwrap()
            .starts_with(aullm::ingest::mapped_src::ELEMENT_NAME),
        "the built-in file template reads through the map"
    );
}

#[test]
fn a_file_cut_short_while_it_is_read_is_an_error_naming_it() {
    // A mapped page past a file's new end faults (SIGBUS); the source checks the size first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.avi");
    write_mjpeg_pattern(&path, "GRAY8", 400, "snow");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 4 << 20, "{len} bytes: more than the queues hold");
    let cfg = IngestConfig {
        queue_frames: 2,
        ..Default::default()
    };
    let mut ing = Ingest::open(&Source::parse(&path.display().to_string()).unwrap(), &cfg).unwrap();
    assert!(ing.next_frame().unwrap().is_some());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 4)
        .unwrap();
    let mut read = 1;
    let err = loop {
        match ing.next_frame() {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the cut file ended quietly after {read} frames"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(read < 400, "{read} frames");
    assert!(err.contains("cut.avi") && err.contains("shrank"), "{err}");
}

#[test]
fn a_stride_reads_every_nth_frame_without_decoding_the_others() {
    use aullm::stream::camera::{DriveOptions, Flow, Stride, drive};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ball.avi");
    write_mjpeg(&path, "GRAY8", 40);
    let spec = path.display().to_string();
    let every = compressed_frames(&spec, &IngestConfig::default()).unwrap();
    assert_eq!(every.len(), 40);

    // Through the camera driver, which tells the source its stride before the first frame.
    let cfg = aullm::config::Config::default();
    let mut tracker =
        aullm::face::FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let mut ingest = open(&spec, &IngestConfig::default());
    let opts = DriveOptions {
        stride: Stride::Every(3),
        ..DriveOptions::new()
    };
    let mut seen = Vec::new();
    let rep = drive(&mut ingest, &mut tracker, &opts, |f| {
        seen.push((f.seq, f.rel_ns));
        Ok(Flow::Continue)
    })
    .unwrap();
    let want: Vec<(u64, u64)> = every
        .iter()
        .filter(|(seq, ..)| seq % 3 == 0)
        .map(|(seq, pts, _)| (*seq, pts - every[0].1))
        .collect();
    assert_eq!(
        seen, want,
        "kept frames keep their sequence numbers and times"
    );
    assert_eq!(rep.frames, 14);
    assert_eq!(
        rep.fps,
        Some(200.0),
        "the source's rate, not the kept frames'"
    );
    // Frames queued before the driver set the stride are passed over as they leave the queue,
    // the rest in GStreamer's thread: every one is counted.
    assert_eq!(ingest.counts().skipped, 26);

    // Kept frames are the same frames, byte for byte.
    let mut ing = open(&spec, &IngestConfig::default());
    ing.set_stride(2);
    let mut n = 0;
    while let Some(f) = ing.next_frame().unwrap() {
        let (seq, pts, bytes) = &every[f.seq as usize];
        assert_eq!((f.seq, f.pts_ns), (*seq, *pts));
        let got = f.jpeg.as_ref().map(|b| b.as_slice());
        assert_eq!(got, Some(bytes.as_slice()), "frame {seq}");
        n += 1;
    }
    assert_eq!(n, 20, "frames delivered with stride 2");
    assert_eq!(ing.counts().skipped, 20);
}
