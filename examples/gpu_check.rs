//! Parity and timings of a configuration on a candle device against the CPU (issue 22): the
//! front-end's outputs, the AU logits and decisions, and one training step's loss on the same
//! batch; then inference per clip at each batch size and training steps without CCR, with CCR on one
//! AU and on all eight. Prints one JSON object.
//!
//! Built with the CUDA feature and carried to the GPU machine (`scripts/gpu_check.sh` runs it beside
//! the PyTorch reference):
//!   cargo build --release --features cuda --example gpu_check
//!   gpu_check [--config configs/paper.toml] [--device cuda:0] [--set KEY=VALUE ...]
//!             [--parity-batch 2] [--batches 1,64] [--train-batch 64] [--steps 5]
//! `--device cpu` compares the CPU with itself: a dry run of the whole check on any machine.

use anyhow::{Context, Result, bail};
use aullm::config::Config;
use aullm::graph::devices::{DeviceName, parse};
use aullm::graph::model::Net;
use aullm::rng::Rng;
use aullm::train::trainer::{batch_loss, optimiser, random_batch, train_step};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Command-line settings.
struct Args {
    config: PathBuf,
    device: DeviceName,
    set: Vec<String>,
    parity_batch: usize,
    batches: Vec<usize>,
    train_batch: usize,
    steps: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        config: PathBuf::from("configs/paper.toml"),
        device: DeviceName::Cuda(0),
        set: Vec::new(),
        parity_batch: 2,
        batches: vec![1, 64],
        train_batch: 64,
        steps: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--config" => a.config = v()?.into(),
            "--device" => a.device = parse(&v()?)?,
            "--set" => a.set.push(v()?),
            "--parity-batch" => a.parity_batch = v()?.parse().context("--parity-batch")?,
            "--batches" => {
                a.batches = v()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<std::result::Result<_, _>>()
                    .context("--batches: comma-separated counts")?
            }
            "--train-batch" => a.train_batch = v()?.parse().context("--train-batch")?,
            "--steps" => a.steps = v()?.parse().context("--steps")?,
            other => bail!("unknown argument {other:?} (see the file's header)"),
        }
    }
    Ok(a)
}

/// The configuration with training on `device`.
fn config(a: &Args, device: DeviceName, extra: &[&str]) -> Result<Config> {
    let mut set = a.set.clone();
    set.extend(extra.iter().map(|s| s.to_string()));
    let mut cfg = Config::load(Some(&a.config), &set)?;
    cfg.train.device = device;
    cfg.reasoner.device = device;
    Ok(cfg)
}

/// Largest absolute difference, whatever the devices and dtypes.
fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let f32_cpu = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F32);
    Ok(aullm::fixtures::max_abs_diff(&f32_cpu(a)?, &f32_cpu(b)?) as f64)
}

/// Median of `f`'s wall time over `n` calls after `warm` calls, in milliseconds.
fn median_ms(warm: usize, n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warm {
        f()?;
    }
    let mut t = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Front-end outputs, logits, decisions and one step's loss: CPU against `a.device`.
fn parity(a: &Args, root: &Path) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    // The GPU's default precision (bf16 decoder weights), then f32 throughout (exact arithmetic).
    for (label, extra) in [("auto", &[][..]), ("f32", &["reasoner.dtype=\"f32\""][..])] {
        let on_cpu = config(a, DeviceName::Cpu, extra)?;
        let on_dev = config(a, a.device, extra)?;
        let cpu = Net::new(&on_cpu.net_spec(), root)?;
        let dev = Net::new(&on_dev.net_spec(), root)?;
        let (x, y) = random_batch(&on_cpu, a.parity_batch, &Device::Cpu)?;
        let (xd, yd) = (x.to_device(&dev.device)?, y.to_device(&dev.device)?);
        let (lc, oc) = cpu.forward(&x)?;
        let (ld, od) = dev.forward(&xd)?;
        let tau = match (&oc.instructions, &od.instructions) {
            (Some(c), Some(d)) => max_diff(c, d)?,
            _ => 0.0,
        };
        let same_decisions =
            lc.ge(0f32)?.to_vec2::<u8>()? == ld.to_dtype(DType::F32)?.ge(0f32)?.to_vec2::<u8>()?;
        let pw = Tensor::ones(on_cpu.frontend.aus.len(), DType::F32, &Device::Cpu)?;
        let (_, sc) = batch_loss(&cpu, &x, &y, &pw, &on_cpu, &mut Rng::new(3))?;
        let pwd = pw.to_device(&dev.device)?;
        let (_, sd) = batch_loss(&dev, &xd, &yd, &pwd, &on_dev, &mut Rng::new(3))?;
        out.insert(
            label.into(),
            json!({
                "frontend_content_max_diff": max_diff(&oc.content, &od.content)?,
                "frontend_instructions_max_diff": tau,
                "logits_max_diff": max_diff(&lc, &ld)?,
                "same_decisions": same_decisions,
                "loss_cpu": sc.total,
                "loss_device": sd.total,
                "loss_diff": (sc.total - sd.total).abs(),
            }),
        );
        eprintln!("parity ({label}): {}", out[label]);
    }
    Ok(serde_json::Value::Object(out))
}

/// Inference per clip at each batch size: the frozen front-end (as a model folder loads it) and
/// the reasoner with its LoRA pairs merged.
fn inference(a: &Args, root: &Path) -> Result<serde_json::Value> {
    let cfg = config(a, a.device, &[])?;
    let net = Net::new(&cfg.net_spec(), root)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("frontend.safetensors");
    aullm::graph::checkpoint::save(&net.frontend, &file)?;
    let front = aullm::graph::checkpoint::load_frozen(&file, &net.device)?;
    let reasoner = match &net.reasoner {
        Some(r) => {
            let mut r = r.clone();
            r.merge_lora()?;
            Some(r)
        }
        None => None,
    };
    let mut out = serde_json::Map::new();
    for &b in &a.batches {
        let (x, _) = random_batch(&cfg, b, &net.device)?;
        let ms = median_ms(3, 20, || {
            let o = front.forward(&x)?;
            let logits = match &reasoner {
                Some(r) => r.au_logits_tokens(&o.content, o.instructions.as_ref())?,
                None => front.head_logits(&o)?,
            };
            // Reading the probabilities back waits for the device.
            candle_nn::ops::sigmoid(&logits.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
            Ok(())
        })?;
        eprintln!(
            "inference batch {b}: {ms:.2} ms per call, {:.3} ms per clip",
            ms / b as f64
        );
        out.insert(
            format!("batch_{b}"),
            json!({"ms_per_call": ms, "ms_per_clip": ms / b as f64}),
        );
    }
    Ok(serde_json::Value::Object(out))
}

/// Median training step at `a.train_batch` clips: without CCR, CCR on one AU, CCR on all.
fn training(a: &Args, root: &Path) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (label, extra) in [
        ("no_ccr", &["train.lambda_ccr=0"][..]),
        ("ccr_one", &["train.ccr_targets=\"one\""][..]),
        ("ccr_all", &["train.ccr_targets=\"all\""][..]),
    ] {
        let cfg = config(a, a.device, extra)?;
        let mut net = Net::new(&cfg.net_spec(), root)?;
        let mut opt = optimiser(&net, &cfg)?;
        let (x, y) = random_batch(&cfg, a.train_batch, &net.device)?;
        let pw = Tensor::ones(cfg.frontend.aus.len(), DType::F32, &net.device)?;
        let mut rng = Rng::new(1);
        let ms = median_ms(2, a.steps, || {
            train_step(&mut net, &mut opt, &x, &y, &pw, &cfg, &mut rng, 1e-4)?;
            Ok(())
        })?;
        eprintln!(
            "training step ({label}), batch {}: {ms:.1} ms",
            a.train_batch
        );
        out.insert(
            label.into(),
            json!({"ms_per_step": ms, "batch": a.train_batch}),
        );
    }
    Ok(serde_json::Value::Object(out))
}

fn main() -> Result<()> {
    let a = args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Relative prior-graph paths are read from the repository root (the working directory here).
    let root = if root.join("calibration").is_dir() {
        root
    } else {
        Path::new(".")
    };
    aullm::train::alloc::keep_freed_memory();
    let t0 = Instant::now();
    let report = json!({
        "config": a.config.display().to_string(),
        "device": a.device.to_string(),
        "overrides": a.set,
        "parity": parity(&a, root)?,
        "inference": inference(&a, root)?,
        "training": training(&a, root)?,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
