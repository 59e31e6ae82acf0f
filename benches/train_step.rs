//! One training step (front-end + R-AUGNN + LLM with LoRA + AU head, CCR on; forward, backward,
//! AdamW) at a fixed batch on the CPU: SmolLM2-135M with the shipped model's training configuration,
//! its MLP-head ablation, and the paper's DeepSeek-R1-Distill-Qwen-1.5B shapes with random weights.
//! `cargo bench --bench train_step [-- FILTER]`; medians in README. Set AULLM_BENCH_SKIP_1_5B=1 to
//! skip the 1.5B group (several minutes, ~8 GiB).

use aullm::config::Config;
use aullm::graph::model::Net;
use aullm::rng::Rng;
use aullm::train::trainer::{optimiser, random_batch, train_step};
use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::path::Path;
use std::time::Duration;

/// The shipped model's training configuration plus `overrides`.
fn config(overrides: &[&str]) -> Config {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Config::load(Some(&root.join("models/default/train.toml")), &ov).unwrap()
}

fn bench_step(c: &mut Criterion, group: &str, overrides: &[&str], batches: &[usize]) {
    // As `aullm train` does.
    aullm::train::alloc::keep_freed_memory();
    let cfg = config(overrides);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t0 = std::time::Instant::now();
    let mut net = Net::new(&cfg.net_spec(), root).unwrap();
    eprintln!(
        "{group}: network built in {:.1} s ({} decider, front-end {} px x {} frames)",
        t0.elapsed().as_secs_f64(),
        if net.reasoner.is_some() { "LLM" } else { "MLP" },
        cfg.frontend.size,
        cfg.frontend.frames
    );
    let mut opt = optimiser(&net, &cfg).unwrap();
    let pos_weight = Tensor::ones(
        cfg.frontend.aus.len(),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for &b in batches {
        let (x, y) = random_batch(&cfg, b, &Device::Cpu).unwrap();
        let mut rng = Rng::new(1);
        g.bench_with_input(BenchmarkId::new("step", b), &b, |bench, _| {
            bench.iter(|| {
                train_step(
                    &mut net,
                    &mut opt,
                    &x,
                    &y,
                    &pos_weight,
                    &cfg,
                    &mut rng,
                    1e-3,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn steps(c: &mut Criterion) {
    bench_step(c, "train_smollm2_135m_ccr", &[], &[16]);
    bench_step(
        c,
        "train_smollm2_135m_no_ccr",
        &["train.lambda_ccr=0"],
        &[16],
    );
    bench_step(
        c,
        "train_mlp_head",
        &["frontend.ablation=\"mlp_head\""],
        &[16],
    );
    if std::env::var_os("AULLM_BENCH_SKIP_1_5B").is_none() {
        bench_step(
            c,
            "train_qwen2_1_5b_random_ccr",
            &[
                "reasoner.weights=\"random-qwen2-1.5b\"",
                "frontend.width=1536",
            ],
            &[1, 4],
        );
    }
}

criterion_group!(benches, steps);
criterion_main!(benches);
