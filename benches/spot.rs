//! Per-frame cost of spotting (region motion + decision), alone and after face tracking, with the
//! default Lucas–Kanade regions and with DIS flow (`spot.motion = "dis"`) in the same run.
//! One core: `taskset -c 0 cargo bench --bench spot`.

use aullm::config::Config;
use aullm::face::FaceTracker;
use aullm::fixtures::{FaceVideoSpec, Motion, Photo, render_frame};
use aullm::rng::Rng;
use aullm::spot::Spotter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn spot(c: &mut Criterion) {
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let spec = FaceVideoSpec {
        width: 640,
        height: 480,
        fps: 200.0,
        frames: 64,
        noise_sigma: 2.0,
        motion: Motion::Sway {
            amplitude_px: 2.0,
            rotation_deg: 0.5,
            period_frames: 200.0,
            drift_px: 0.0,
        },
        seed: 1,
    };
    let mut rng = Rng::new(2);
    let frames: Vec<Vec<u8>> = (0..spec.frames)
        .map(|i| {
            let mut b = Vec::new();
            render_frame(&spec, &photo, i, &mut rng, &mut b).unwrap();
            b
        })
        .collect();
    let mut tracker = FaceTracker::from_config(&cfg.face, &cfg.align, &cfg.models).unwrap();
    let crops: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| tracker.process(f, 640, 480).unwrap()[0].crop.clone())
        .collect();
    let size = cfg.align.size as usize;

    let mut g = c.benchmark_group("spot");
    g.throughput(Throughput::Elements(1));
    let mut sp = Spotter::new(&cfg.spot, 200.0, size).unwrap();
    let mut i = 0u64;
    g.bench_function("spotter_push_128", |b| {
        b.iter(|| {
            i += 1;
            sp.push(i, &crops[i as usize % crops.len()]).unwrap().len()
        })
    });
    let mut dis = cfg.spot.clone();
    dis.motion = "dis".into();
    dis.threshold_mads = 7.0;
    dis.confirm_s = 0.0;
    let mut sp = Spotter::new(&dis, 200.0, size).unwrap();
    let mut i = 0u64;
    g.bench_function("spotter_push_128_dis", |b| {
        b.iter(|| {
            i += 1;
            sp.push(i, &crops[i as usize % crops.len()]).unwrap().len()
        })
    });
    let mut sp = Spotter::new(&cfg.spot, 200.0, size).unwrap();
    let mut j = 0u64;
    g.bench_function("track_align_and_spot_640x480", |b| {
        b.iter(|| {
            j += 1;
            let f = &frames[j as usize % frames.len()];
            let faces = tracker.process(f, 640, 480).unwrap();
            sp.push(j, &faces[0].crop).unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, spot);
criterion_main!(benches);
