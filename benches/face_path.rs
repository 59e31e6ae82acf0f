//! Per-stage and end-to-end timings of ingest → face → alignment (criterion; medians in README).
//! One core: `taskset -c 0 cargo bench --bench face_path`.

use aullm::config::Config;
use aullm::face::align::{CropTemplate, warp_crop};
use aullm::face::stabilise::Registration;
use aullm::face::{FaceDetector, FaceTracker};
use aullm::fixtures::{FaceVideoSpec, Motion, Photo, render_frame, write_face_video_with};
use aullm::ingest::{Ingest, Source};
use aullm::output::video::VideoCodec;
use aullm::rng::Rng;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};

struct Media {
    _dir: tempfile::TempDir,
    megamind: PathBuf,
    raw640: PathBuf,
    raw_frames: u64,
    frames640: Vec<Vec<u8>>,
    jpegs640: Vec<Vec<u8>>,
}

fn media(cfg: &Config) -> Media {
    let dir = tempfile::tempdir().unwrap();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let spec = FaceVideoSpec {
        width: 640,
        height: 480,
        fps: 200.0,
        frames: 400,
        noise_sigma: 2.0,
        motion: Motion::Sway {
            amplitude_px: 6.0,
            rotation_deg: 2.0,
            period_frames: 200.0,
            drift_px: 10.0,
        },
        seed: 1,
    };
    let raw640 = dir.path().join("face640_200fps_raw.mkv");
    write_face_video_with(&spec, &photo, &raw640, VideoCodec::Raw).unwrap();
    // The same face as MJPEG frames (quality 95, as `aullm synth` writes them).
    let mjpeg = dir.path().join("face640_200fps.avi");
    let short = FaceVideoSpec { frames: 16, ..spec };
    write_face_video_with(&short, &photo, &mjpeg, VideoCodec::Mjpeg).unwrap();
    let bytes = std::fs::read(&mjpeg).unwrap();
    let mut soi = aullm::fixtures::jpeg_starts(&bytes);
    soi.push(bytes.len());
    let jpegs640 = soi.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect();
    let mut rng = Rng::new(2);
    let frames640 = (0..16)
        .map(|i| {
            let mut b = Vec::new();
            render_frame(&spec, &photo, i, &mut rng, &mut b).unwrap();
            b
        })
        .collect();
    Media {
        megamind: aullm::assets::artefact_path(&cfg.models, "megamind").unwrap(),
        raw640,
        raw_frames: spec.frames as u64,
        frames640,
        jpegs640,
        _dir: dir,
    }
}

fn decode_all(path: &Path, cfg: &Config) -> u64 {
    let mut ing = Ingest::open(&Source::File(path.to_path_buf()), &cfg.ingest).unwrap();
    let mut n = 0;
    while let Some(mut f) = ing.next_frame().unwrap() {
        n += f.data().unwrap()[0] as u64 & 1 | 1;
    }
    n
}

fn track_all(path: &Path, cfg: &Config) -> u64 {
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let mut ing = Ingest::open(&Source::File(path.to_path_buf()), &cfg.ingest).unwrap();
    let mut faces = 0;
    while let Some(mut f) = ing.next_frame().unwrap() {
        faces += tracker.process_frame(&mut f).unwrap().len() as u64;
    }
    faces
}

/// [`track_all`] with a spotter on the first face's crops (`spot` is the `[spot]` section).
fn track_and_spot_all(path: &Path, cfg: &Config, spot: &aullm::spot::SpotConfig) -> u64 {
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let mut spotter = aullm::spot::Spotter::new(spot, 200.0, cfg.align.size as usize).unwrap();
    let mut ing = Ingest::open(&Source::File(path.to_path_buf()), &cfg.ingest).unwrap();
    let (mut n, mut events) = (0u64, 0u64);
    while let Some(mut f) = ing.next_frame().unwrap() {
        if let Some(face) = tracker.process_frame(&mut f).unwrap().first() {
            events += spotter.push(n, &face.crop).unwrap().len() as u64;
        }
        n += 1;
    }
    n + events
}

fn stages(c: &mut Criterion) {
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let m = media(&cfg);

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(270));
    g.bench_function("megamind_720x528_xvid", |b| {
        b.iter(|| decode_all(&m.megamind, &cfg))
    });
    g.throughput(Throughput::Elements(m.raw_frames));
    g.bench_function("raw_gray8_640x480", |b| {
        b.iter(|| decode_all(&m.raw640, &cfg))
    });
    g.finish();

    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let mut det = FaceDetector::new(&model, 1, 0.5, 0.3)
        .unwrap()
        .with_gray_tint(cfg.face.gray_tint);
    let f0 = &m.frames640[0];
    let d = det.detect(f0, 640, 480).unwrap();
    assert_eq!(d.len(), 1);
    let b0 = d[0].bbox;
    let side = 2.5 * (b0[2] - b0[0]).max(b0[3] - b0[1]);
    let region = [
        (b0[0] + b0[2] - side) / 2.0,
        (b0[1] + b0[3] - side) / 2.0,
        side,
    ];
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(1));
    g.bench_function("blazeface_full_frame_640x480", |b| {
        b.iter(|| det.detect(f0, 640, 480).unwrap().len())
    });
    g.bench_function("blazeface_face_region", |b| {
        b.iter(|| det.detect_region(f0, 640, 480, region).unwrap().len())
    });
    g.finish();

    // Decoding the face's rows and columns at DCT-domain scales (issue 20, "decode less"): the
    // rectangle is the detection region, as the tracker asks for it.
    let mut g = c.benchmark_group("decode_jpeg");
    g.throughput(Throughput::Elements(1));
    let rect = [
        region[0].max(0.0) as u32,
        region[1].max(0.0) as u32,
        ((region[0] + region[2]) as u32).min(640),
        ((region[1] + region[2]) as u32).min(480),
    ];
    let mut out = vec![0u8; 640 * 480];
    g.bench_function("mjpeg_640x480_whole_frame", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % m.jpegs640.len();
            aullm::frame::jpeg::decode_gray(&m.jpegs640[i], 640, 480, [0, 0, 640, 480], &mut out)
                .unwrap()
        })
    });
    // The same region by libjpeg alone (what the baseline fast path replaces at scale 1/1).
    g.bench_function("mjpeg_640x480_face_region_libjpeg", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % m.jpegs640.len();
            aullm::frame::jpeg::libjpeg_region(&m.jpegs640[i], 640, 480, 1, rect, &mut out).unwrap()
        })
    });
    // Two consecutive frames per iteration, decoded together as the face thread does (per frame:
    // compare with `..._scale_1_1`).
    let mut out2 = vec![0u8; 640 * 480];
    g.bench_function("mjpeg_640x480_face_region_pair_per_frame", |b| {
        let mut i = 0;
        b.iter_custom(|iters| {
            let t = std::time::Instant::now();
            for _ in 0..iters.div_ceil(2) {
                i = (i + 2) % (m.jpegs640.len() - 1);
                let pair = [&m.jpegs640[i][..], &m.jpegs640[i + 1][..]];
                let [a, _] = aullm::frame::jpeg::decode_gray_pair(
                    pair,
                    640,
                    480,
                    rect,
                    [&mut out, &mut out2],
                );
                a.unwrap();
            }
            t.elapsed() * iters as u32 / (iters.div_ceil(2) * 2) as u32
        })
    });
    for denom in [1u32, 2, 4, 8] {
        let r = rect.map(|v| v / denom);
        g.bench_function(format!("mjpeg_640x480_face_region_scale_1_{denom}"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % m.jpegs640.len();
                aullm::frame::jpeg::decode_gray_scaled(&m.jpegs640[i], 640, 480, denom, r, &mut out)
                    .unwrap()
            })
        });
    }
    g.finish();

    let tpl = CropTemplate::from_config(&cfg.align);
    let a0 = tpl.crop_to_frame(&d[0].keypoints).unwrap();
    let mut crop = Vec::new();
    warp_crop(f0, 640, 480, &a0, cfg.align.size, &mut crop).unwrap();
    let mut g = c.benchmark_group("align");
    g.throughput(Throughput::Elements(1));
    g.bench_function("warp_affine_to_128", |b| {
        b.iter(|| warp_crop(f0, 640, 480, &a0, cfg.align.size, &mut crop).unwrap())
    });
    let mut reg = Registration::new(&crop, cfg.align.size, cfg.align.register_region, 1);
    let mut a = a0;
    let mut i = 0;
    g.bench_function("warp_plus_stabilising_registration", |b| {
        b.iter(|| {
            i = (i + 1) % m.frames640.len();
            reg.register(
                &mut aullm::frame::Gray {
                    data: &m.frames640[i],
                    width: 640,
                    height: 480,
                },
                &mut a,
                &mut crop,
                cfg.align.refine_iters,
            )
            .unwrap()
            .iterations
        })
    });
    g.finish();

    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10);
    g.throughput(Throughput::Elements(270));
    g.bench_function("megamind_ingest_detect_align", |b| {
        b.iter(|| track_all(&m.megamind, &cfg))
    });
    g.throughput(Throughput::Elements(m.raw_frames));
    g.bench_function("gray8_640x480_200fps_ingest_detect_align", |b| {
        b.iter(|| track_all(&m.raw640, &cfg))
    });
    g.bench_function("gray8_640x480_200fps_ingest_detect_align_spot", |b| {
        b.iter(|| track_and_spot_all(&m.raw640, &cfg, &cfg.spot))
    });
    // The spotter before Lucas–Kanade regions, in the same run.
    let mut dis = cfg.spot.clone();
    dis.motion = "dis".into();
    dis.threshold_mads = 7.0;
    dis.confirm_s = 0.0;
    g.bench_function("gray8_640x480_200fps_ingest_detect_align_spot_dis", |b| {
        b.iter(|| track_and_spot_all(&m.raw640, &cfg, &dis))
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
