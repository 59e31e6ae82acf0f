//! Front-end latency per clip in candle on the CPU (criterion), batch 1 and 16, default configuration
//! (T = 8, 112x112, D = 576). One core: `taskset -c 0 cargo bench --bench frontend`.

use aullm::config::FrontendConfig;
use aullm::graph::frontend::{FrontendModel, FrontendSpec, multiply_adds_per_clip};
use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;

fn frontend(c: &mut Criterion) {
    let cfg = FrontendConfig::default();
    let spec = FrontendSpec::from_config(&cfg, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let dev = Device::Cpu;
    let model = FrontendModel::new(&spec, &dev).unwrap();
    println!(
        "frontend: {} parameters, {:.1} M multiply-adds per clip",
        model.parameter_count(),
        multiply_adds_per_clip(&cfg) as f64 / 1e6
    );
    let mut g = c.benchmark_group("frontend_candle_cpu");
    g.sample_size(20);
    for batch in [1usize, 16] {
        let clip =
            Tensor::rand(0f32, 1., (batch, 1, cfg.frames, cfg.size, cfg.size), &dev).unwrap();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch{batch}"), |b| {
            b.iter(|| model.net.forward(&clip).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
