//! Loads a reasoner as `reasoner.*` configures it and times clips; prints one JSON line.
//! For load time and resident memory: `/usr/bin/time -v target/release/examples/reasoner_probe
//! --set reasoner.weights=random-qwen2-1.5b --batch 1 --iters 10`. The GPU check runs it with
//! `--set reasoner.device=cuda`.

use anyhow::{Context, Result};
use aullm::config::Config;
use aullm::graph::reasoner::{Reasoner, init};
use candle_core::{DType, Device};
use std::time::Instant;

fn main() -> Result<()> {
    let mut overrides = Vec::new();
    let (mut batch, mut iters, mut n) = (1usize, 10usize, 8usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--set" => overrides.push(val("--set")?),
            "--batch" => batch = val("--batch")?.parse()?,
            "--iters" => iters = val("--iters")?.parse()?,
            "--instructions" => n = val("--instructions")?.parse()?,
            other => anyhow::bail!(
                "unknown argument {other:?} (--set KEY=VALUE, --batch B, --iters N, --instructions N)"
            ),
        }
    }
    let cfg = Config::load(None, &overrides)?;
    let t0 = Instant::now();
    let r = Reasoner::from_config(&cfg.reasoner, &cfg.models)?;
    let load_s = t0.elapsed().as_secs_f64();
    let dev = r.decoder().device().clone();
    let d = r.hidden_size();
    let tv = init::uniform(1, (batch, d), 0.05, DType::F32, &Device::Cpu)?.to_device(&dev)?;
    let tau = init::uniform(2, (batch, n, d), 0.05, DType::F32, &Device::Cpu)?.to_device(&dev)?;
    let run = || -> Result<f64> {
        let t = Instant::now();
        let y = r.au_logits(&tv, &tau)?;
        // Reading the result back waits for the device.
        let _ = y.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..2 {
        run()?;
    }
    let mut ms: Vec<f64> = (0..iters).map(|_| run()).collect::<Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    let med = ms[ms.len() / 2];
    let uncached = {
        let t = Instant::now();
        let y = r.au_logits_uncached(&tv, &tau)?;
        let _ = y.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        t.elapsed().as_secs_f64() * 1e3
    };
    println!(
        "{}",
        serde_json::json!({
            "model": r.decoder().config().fingerprint(),
            "origin": r.origin(),
            "device": format!("{:?}", dev.location()),
            "dtype": format!("{:?}", r.decoder().dtype()),
            "weights": if r.decoder().is_int8() { "int8".to_string() } else { format!("{:?}", r.decoder().weight_dtype()) },
            "prompt_tokens": r.prompt_ids().len(),
            "batch": batch,
            "instructions": n,
            "load_s": load_s,
            "median_ms_per_batch": med,
            "median_ms_per_clip": med / batch as f64,
            "min_ms_per_batch": ms[0],
            "uncached_once_ms_per_batch": uncached,
        })
    );
    Ok(())
}
