//! Reasoner latency per clip (cached prompt prefix + 1 + N positions, N = 8) on the CPU: SmolLM2-135M
//! (the embedded default) and the paper's DeepSeek-R1-Distill-Qwen-1.5B shapes with random weights.
//! `cargo bench --bench reasoner [-- FILTER]`; medians in README. Set AULLM_BENCH_SKIP_1_5B=1 to
//! skip the 1.5B group (a few minutes, 3 GiB).

use aullm::config::Config;
use aullm::graph::reasoner::{Reasoner, init};
use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

const N_AUS: usize = 8;

/// Clip inputs of the model's width with an embedding-like scale (values do not change timings).
fn clips(r: &Reasoner, batch: usize) -> (Tensor, Tensor) {
    let d = r.hidden_size();
    let tv = init::uniform(1, (batch, d), 0.05, DType::F32, &Device::Cpu).unwrap();
    let tau = init::uniform(2, (batch, N_AUS, d), 0.05, DType::F32, &Device::Cpu).unwrap();
    (tv, tau)
}

fn reasoner(overrides: &[&str]) -> Reasoner {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = Config::load(None, &ov).unwrap();
    Reasoner::from_config(&cfg.reasoner, &cfg.models).unwrap()
}

/// Cached clips at each batch size; with `extras`, also the uncached path, unmerged LoRA and the
/// prefix computation at batch 1.
fn bench_model(
    c: &mut Criterion,
    group: &str,
    overrides: &[&str],
    batches: &[usize],
    extras: bool,
) {
    let mut r = reasoner(overrides);
    eprintln!(
        "{group}: {} ({} weights) from {}, prompt {} tokens, loaded in {:.3} s",
        r.decoder().config().fingerprint(),
        if r.decoder().is_int8() {
            "int8".to_string()
        } else {
            format!("{:?}", r.decoder().weight_dtype())
        },
        r.origin(),
        r.prompt_ids().len(),
        r.load_seconds()
    );
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for &b in batches {
        let (tv, tau) = clips(&r, b);
        g.throughput(Throughput::Elements(b as u64));
        g.bench_with_input(BenchmarkId::new("clip_cached", b), &b, |bench, _| {
            bench.iter(|| r.au_logits(&tv, &tau).unwrap())
        });
    }
    if extras {
        let (tv, tau) = clips(&r, 1);
        g.throughput(Throughput::Elements(1));
        g.bench_function("clip_uncached/1", |bench| {
            bench.iter(|| r.au_logits_uncached(&tv, &tau).unwrap())
        });
        r.unmerge_lora().unwrap();
        g.bench_function("clip_cached_lora_unmerged/1", |bench| {
            bench.iter(|| r.au_logits(&tv, &tau).unwrap())
        });
        r.merge_lora().unwrap();
        g.bench_function("prefix_prefill", |bench| {
            bench.iter(|| r.refresh_prefix().unwrap())
        });
    }
    g.finish();
}

fn smollm2(c: &mut Criterion) {
    // The default: int8 projection weights on CPUs with AVX-512 (f32 compute), every core.
    bench_model(c, "reasoner_smollm2_135m", &[], &[1, 16], true);
    bench_model(
        c,
        "reasoner_smollm2_135m_1thread",
        &["reasoner.threads=1"],
        &[1, 16],
        false,
    );
    // The same int8 weights with f32 activations (the kernel before 8-bit rows), for the A/B.
    aullm::graph::reasoner::int8::set_eight_bit_rows(false);
    bench_model(
        c,
        "reasoner_smollm2_135m_int8_f32_rows_1thread",
        &["reasoner.threads=1"],
        &[1],
        false,
    );
    aullm::graph::reasoner::int8::set_eight_bit_rows(true);
    bench_model(
        c,
        "reasoner_smollm2_135m_f16_1thread",
        &["reasoner.threads=1", "reasoner.dtype=f16"],
        &[1, 16],
        false,
    );
    bench_model(
        c,
        "reasoner_smollm2_135m_f32",
        &["reasoner.dtype=f32"],
        &[1, 16],
        false,
    );
    let mut g = c.benchmark_group("reasoner_load");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("smollm2_135m_gguf", |bench| bench.iter(|| reasoner(&[])));
    g.finish();
}

fn qwen2_1_5b(c: &mut Criterion) {
    if std::env::var_os("AULLM_BENCH_SKIP_1_5B").is_some() {
        return;
    }
    bench_model(
        c,
        "reasoner_qwen2_1_5b_random",
        &["reasoner.weights=random-qwen2-1.5b"],
        &[1, 16],
        false,
    );
}

criterion_group!(benches, smollm2, qwen2_1_5b);
criterion_main!(benches);
