//! Front-end latency per clip (criterion), batch 1 and 16, default configuration (T = 8, 112x112,
//! D = 576): candle on the CPU against the exported ONNX model in ONNX Runtime's CPU EP (one intra-op
//! thread). One core: `taskset -c 0 cargo bench --bench frontend`.

use aullm::config::{Config, FrontendConfig};
use aullm::export::frontend_onnx::{INPUT, export_frontend};
use aullm::graph::frontend::{FrontendModel, FrontendSpec, multiply_adds_per_clip};
use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ort::value::TensorRef;
use std::path::Path;

fn frontend(c: &mut Criterion) {
    let cfg = FrontendConfig::default();
    let spec = FrontendSpec::from_config(&cfg, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let dev = Device::Cpu;
    let model = FrontendModel::new(&spec, &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("frontend.onnx");
    export_frontend(&model, &onnx).unwrap();
    aullm::assets::init_onnx(&Config::default().models).unwrap();
    let mut session = aullm::onnx::session(&onnx, 1).unwrap();
    println!(
        "frontend: {} parameters ({} without the MLP head), {:.1} M multiply-adds per clip",
        model.parameter_count(),
        model.parameter_count()
            - model
                .varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with("head."))
                .map(|(_, v)| v.elem_count())
                .sum::<usize>(),
        multiply_adds_per_clip(&cfg) as f64 / 1e6
    );
    let mut g = c.benchmark_group("frontend");
    g.sample_size(20);
    for batch in [1usize, 16] {
        let shape = (batch, cfg.input.channels(), cfg.frames, cfg.size, cfg.size);
        let clip = Tensor::rand(0f32, 1., shape, &dev).unwrap();
        let data: Vec<f32> = clip.flatten_all().unwrap().to_vec1().unwrap();
        let dims = [
            batch as i64,
            cfg.input.channels() as i64,
            cfg.frames as i64,
            cfg.size as i64,
            cfg.size as i64,
        ];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("candle_cpu/batch{batch}"), |b| {
            b.iter(|| model.net.forward(&clip).unwrap())
        });
        g.bench_function(format!("ort_cpu_1thread/batch{batch}"), |b| {
            b.iter(|| {
                let input = TensorRef::from_array_view((dims, data.as_slice())).unwrap();
                let out = session.run(ort::inputs![INPUT => input]).unwrap();
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
