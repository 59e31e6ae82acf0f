//! Parity and timings of a configuration on a candle device against the CPU (issue 22): the
//! front-end's outputs, the AU logits and decisions, and one training step's loss on the same
//! batch; then inference per clip at each batch size and training steps without CCR, with CCR on one
//! AU and on all eight. Prints a JSON line per section as it ends.
//!
//! Built with the CUDA feature and carried to the GPU machine (`scripts/gpu_check.sh` runs it beside
//! the PyTorch reference):
//!   cargo build --release --features cuda --example gpu_check
//!   gpu_check [--config configs/paper.toml] [--device cuda:0] [--set KEY=VALUE ...] [--only parity,inference,training,profile]
//!             [--parity-batch 2] [--batches 1,64] [--train-batch 64] [--steps 5] [--train-configs no_ccr,ccr_one,ccr_all]
//!             [--tf32] [--candle-convs]
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
    only: Vec<String>,
    train_configs: Vec<String>,
    tf32: bool,
    candle_convs: bool,
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
        only: vec!["parity".into(), "inference".into(), "training".into()],
        train_configs: vec!["no_ccr".into(), "ccr_one".into(), "ccr_all".into()],
        tf32: false,
        candle_convs: false,
    };
    let list = |s: String| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .collect::<Vec<_>>()
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
            "--only" => a.only = list(v()?),
            "--train-configs" => a.train_configs = list(v()?),
            "--tf32" => a.tf32 = true,
            "--candle-convs" => a.candle_convs = true,
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
        let (tc, sc) = batch_loss(&cpu, &x, &y, &pw, &on_cpu, &mut Rng::new(3))?;
        let pwd = pw.to_device(&dev.device)?;
        let (td, sd) = batch_loss(&dev, &xd, &yd, &pwd, &on_dev, &mut Rng::new(3))?;
        // The step's gradients of the front-end's variables (the convolutions' backward, col2im
        // on the GPU): largest difference against the largest gradient.
        let (gc, gd) = (tc.backward()?, td.backward()?);
        let (mut grad_diff, mut grad_max) = (0f64, 0f64);
        for ((_, vc), (_, vd)) in cpu.visual_vars().iter().zip(dev.visual_vars().iter()) {
            if let (Some(a), Some(b)) = (gc.get(vc.as_tensor()), gd.get(vd.as_tensor())) {
                grad_diff = grad_diff.max(max_diff(a, b)?);
                grad_max = grad_max.max(a.abs()?.max_all()?.to_scalar::<f32>()? as f64);
            }
        }
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
                "frontend_grad_max_diff": grad_diff,
                "frontend_grad_max_abs": grad_max,
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

/// Median training step at `a.train_batch` clips for each of `a.train_configs`: without CCR, CCR
/// on one AU, CCR on all. A configuration that fails (out of memory, say) is reported, not fatal.
fn training(a: &Args, root: &Path) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (label, extra) in [
        ("no_ccr", &["train.lambda_ccr=0"][..]),
        ("ccr_one", &["train.ccr_targets=\"one\""][..]),
        ("ccr_all", &["train.ccr_targets=\"all\""][..]),
    ] {
        if !a.train_configs.iter().any(|c| c == label) {
            continue;
        }
        let step = || -> Result<f64> {
            let cfg = config(a, a.device, extra)?;
            let mut net = Net::new(&cfg.net_spec(), root)?;
            let mut opt = optimiser(&net, &cfg)?;
            let (x, y) = random_batch(&cfg, a.train_batch, &net.device)?;
            let pw = Tensor::ones(cfg.frontend.aus.len(), DType::F32, &net.device)?;
            let mut rng = Rng::new(1);
            let device = net.device.clone();
            median_ms(2, a.steps, || {
                train_step(&mut net, &mut opt, &x, &y, &pw, &cfg, &mut rng, 1e-4)?;
                // The optimiser's updates are queued after the loss is read: wait for them too.
                device.synchronize()?;
                Ok(())
            })
        };
        let entry = match step() {
            Ok(ms) => {
                eprintln!(
                    "training step ({label}), batch {}: {ms:.1} ms",
                    a.train_batch
                );
                json!({"ms_per_step": ms, "batch": a.train_batch})
            }
            Err(e) => {
                eprintln!("training step ({label}) failed: {e:#}");
                json!({"error": format!("{e:#}"), "batch": a.train_batch})
            }
        };
        out.insert(label.into(), entry);
    }
    Ok(serde_json::Value::Object(out))
}

/// Where a training step's time goes, on `a.train_batch` clips without CCR, with candle's
/// convolutions, aullm's kernels, and aullm's kernels with TF32 matrix products: the front-end
/// forward and forward + backward, the decider on fixed tokens, the whole step, and each backbone
/// convolution forward + backward.
fn profile(a: &Args, root: &Path) -> Result<serde_json::Value> {
    use aullm::graph::devices::set_own_gpu_kernels;
    use candle_core::cuda::set_gemm_reduced_precision_f32 as set_tf32;
    let cfg = config(a, a.device, &["train.lambda_ccr=0"])?;
    let mut net = Net::new(&cfg.net_spec(), root)?;
    let mut opt = optimiser(&net, &cfg)?;
    let (x, y) = random_batch(&cfg, a.train_batch, &net.device)?;
    let pw = Tensor::ones(cfg.frontend.aus.len(), DType::F32, &net.device)?;
    let dev = net.device.clone();
    let sync = |t: &Tensor| -> Result<()> {
        t.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(())
    };
    let sum = |o: &aullm::graph::frontend::FrontendOutput| -> Result<Tensor> {
        let s = o.content.sum_all()?;
        Ok(match &o.instructions {
            Some(t) => (s + t.sum_all()?)?,
            None => s,
        })
    };
    let mut out = serde_json::Map::new();
    for (label, own, tf32) in [
        ("candle_convs", false, false),
        ("own_kernels", true, false),
        ("own_kernels_tf32", true, true),
    ] {
        set_own_gpu_kernels(own);
        set_tf32(tf32);
        let mut m = serde_json::Map::new();
        let front = &net.frontend.net;
        let ms = median_ms(2, a.steps, || sync(&front.forward(&x)?.content))?;
        m.insert("frontend_forward_ms".into(), json!(ms));
        let ms = median_ms(2, a.steps, || {
            sum(&front.forward(&x)?)?.backward()?;
            dev.synchronize()?;
            Ok(())
        })?;
        m.insert("frontend_forward_backward_ms".into(), json!(ms));
        let o = front.forward(&x)?;
        let (c, t) = (
            o.content.detach(),
            o.instructions.as_ref().map(|t| t.detach()),
        );
        let ms = median_ms(2, a.steps, || sync(&net.decide(&c, t.as_ref())?))?;
        m.insert("decider_forward_ms".into(), json!(ms));
        let ms = median_ms(2, a.steps, || {
            net.decide(&c, t.as_ref())?.sum_all()?.backward()?;
            dev.synchronize()?;
            Ok(())
        })?;
        m.insert("decider_forward_backward_ms".into(), json!(ms));
        let mut rng = Rng::new(1);
        let ms = median_ms(2, a.steps, || {
            train_step(&mut net, &mut opt, &x, &y, &pw, &cfg, &mut rng, 1e-4)?;
            dev.synchronize()?;
            Ok(())
        })?;
        m.insert("step_ms".into(), json!(ms));
        // Each backbone convolution, forward + backward, on the activations it sees.
        let front = &net.frontend.net;
        let mut h = x.permute((1, 0, 2, 3, 4))?.contiguous()?;
        let mut convs = Vec::new();
        for (i, stage) in front.backbone().stages().iter().enumerate() {
            let input = h.clone();
            let sp = median_ms(1, a.steps, || {
                stage.spatial(&input)?.sum_all()?.backward()?;
                dev.synchronize()?;
                Ok(())
            })?;
            let mid = stage.spatial(&input)?.relu()?.detach();
            let tp = median_ms(1, a.steps, || {
                stage.temporal(&mid)?.sum_all()?.backward()?;
                dev.synchronize()?;
                Ok(())
            })?;
            convs.push(
                json!({"stage": i + 1, "input": input.dims(), "spatial_ms": sp, "temporal_ms": tp}),
            );
            h = stage.temporal(&mid)?.relu()?.detach();
        }
        m.insert("convolutions_forward_backward".into(), json!(convs));
        eprintln!(
            "profile ({label}): {}",
            serde_json::Value::Object(m.clone())
        );
        out.insert(label.into(), serde_json::Value::Object(m));
    }
    set_own_gpu_kernels(!a.candle_convs);
    set_tf32(a.tf32);
    Ok(serde_json::Value::Object(out))
}

/// Prints one section's result (or its error) as a JSON line at once, so that a run stopped by its
/// time limit still reports what it finished.
fn section(
    a: &Args,
    name: &str,
    f: impl FnOnce() -> Result<serde_json::Value>,
) -> serde_json::Value {
    if !a.only.iter().any(|s| s == name) {
        return serde_json::Value::Null;
    }
    let t0 = Instant::now();
    let v = match f() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{name} failed: {e:?}");
            json!({"error": format!("{e:#}")})
        }
    };
    let line = json!({"section": name, "device": a.device.to_string(), "overrides": a.set,
        "tf32": a.tf32, "candle_convs": a.candle_convs,
        "seconds": t0.elapsed().as_secs_f64(), "result": v});
    println!("{line}");
    v
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
    aullm::graph::devices::set_own_gpu_kernels(!a.candle_convs);
    candle_core::cuda::set_gemm_reduced_precision_f32(a.tf32);
    let results = [
        section(&a, "parity", || parity(&a, root)),
        section(&a, "inference", || inference(&a, root)),
        section(&a, "training", || training(&a, root)),
        section(&a, "profile", || profile(&a, root)),
    ];
    // Exit status 1 when any section failed, after every section has reported.
    let failed = results.iter().any(|v| v.to_string().contains("\"error\""));
    std::process::exit(i32::from(failed));
}
