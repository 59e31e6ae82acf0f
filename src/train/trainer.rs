//! The training loop (Algorithm 1): batches with augmentation, L_cls (+ imbalance answer), CCR
//! (eqs. 8–9), AdamW with two learning rates, warm-up + cosine, clipping, per-epoch checkpoints,
//! exact `--resume`, Ctrl-C to a usable checkpoint, thresholds from the inner validation split.

use super::clips::AlignedClip;
use super::optim::{AdamW, Group, schedule};
use super::state::{self, TrainState};
use super::thresholds::choose_thresholds;
use crate::clip::{CropBox, jitter_positions, sample_positions};
use crate::config::{Ablation, CcrTargets, Config, Imbalance, ThresholdRule};
use crate::eval::metrics::{Counts, mean_defined};
use crate::graph::ccr;
use crate::graph::model::Net;
use crate::rng::Rng;
use anyhow::{Context, Result, ensure};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a run is driven (not part of the model).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Checkpoint folder.
    pub out: PathBuf,
    /// Continue from the checkpoint in `out`.
    pub resume: bool,
    /// Stop after this many optimiser steps in total (tests, benchmarks).
    pub max_steps: Option<u64>,
    /// No progress lines.
    pub quiet: bool,
    /// Set by Ctrl-C: finish the step, write a checkpoint, return.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// One epoch's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean total loss over the epoch's steps.
    pub loss: f64,
    /// Mean classification loss.
    pub cls: f64,
    /// Mean CCR loss (0 when off).
    pub ccr: f64,
    /// Inner-validation macro-F1 at 0.5 (None without a validation split).
    pub val_f1: Option<f64>,
    /// Wall seconds.
    pub seconds: f64,
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Epochs completed.
    pub epochs: usize,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Per-epoch records.
    pub history: Vec<EpochRecord>,
    /// Per-AU thresholds (chosen on the validation clips; 0.5 where none).
    pub thresholds: Vec<f32>,
    /// Whether Ctrl-C (or `max_steps`) stopped it early.
    pub stopped_early: bool,
    /// Wall seconds of this invocation.
    pub seconds: f64,
}

/// Builds a batch on `device`: clip tensor [B, C, T, S, S] and targets [B, N]. With `rng`,
/// training augmentation (temporal jitter, random crop, horizontal flip) is applied (on the CPU,
/// then uploaded once).
pub fn make_batch(
    clips: &[&AlignedClip],
    cfg: &Config,
    mut rng: Option<&mut Rng>,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let f = &cfg.frontend;
    let mut data =
        Vec::with_capacity(clips.len() * f.input.channels() * f.frames * f.size * f.size);
    let mut y = Vec::with_capacity(clips.len() * f.aus.len());
    for s in clips {
        let c = &s.clip;
        let last = (c.frames() - 1) as u64;
        let mut pos = sample_positions(0, c.apex as u64, last, f.frames);
        let (bx, flip) = match rng.as_deref_mut() {
            Some(r) => {
                jitter_positions(&mut pos, 0, last, cfg.train.temporal_jitter as u64, r);
                let bx = CropBox::random(c.size, cfg.train.crop_margin, r);
                (bx, cfg.train.flip && r.uniform() < 0.5)
            }
            None => (CropBox::centre(c.size, cfg.train.crop_margin), false),
        };
        let pos: Vec<usize> = pos.iter().map(|&p| p as usize).collect();
        c.tensor_data(&pos, f, bx, flip, &mut data)
            .with_context(|| format!("clip {}", s.key))?;
        // Targets are per AU code without side, so a mirrored face keeps its labels; sided
        // labels (L12/R12) would swap here.
        y.extend(s.targets(&f.aus));
    }
    let b = clips.len();
    let clip = Tensor::from_vec(
        data,
        (b, f.input.channels(), f.frames, f.size, f.size),
        device,
    )?;
    let y = Tensor::from_vec(y, (b, f.aus.len()), device)?;
    Ok((clip, y))
}

/// A seeded batch of `b` random clips (values in [-0.5, 0.5)) and 0/1 targets (30 % positive) on
/// `device`: what timings and device checks feed the network (values do not change the cost).
pub fn random_batch(cfg: &Config, b: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let f = &cfg.frontend;
    let dims = (b, f.input.channels(), f.frames, f.size, f.size);
    let mut rng = Rng::new(7);
    let n = b * f.input.channels() * f.frames * f.size * f.size;
    let x: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
    let na = f.aus.len();
    let y: Vec<f32> = (0..b * na)
        .map(|_| (rng.uniform() < 0.3) as u8 as f32)
        .collect();
    Ok((
        Tensor::from_vec(x, dims, device)?,
        Tensor::from_vec(y, (b, na), device)?,
    ))
}

/// Per-AU positive weights n_neg / n_pos over `clips` (capped at 10; 1 where an AU has no positive).
pub fn positive_weights(clips: &[&AlignedClip], aus: &[crate::au::Au]) -> Vec<f32> {
    aus.iter()
        .map(|&a| {
            let pos = clips.iter().filter(|c| c.aus.contains(&a)).count();
            let neg = clips.len() - pos;
            if pos == 0 {
                1.0
            } else {
                (neg as f32 / pos as f32).clamp(1.0, 10.0)
            }
        })
        .collect()
}

/// Eq. 9's L_cls: BCE with logits (positive-weighted), or the asymmetric loss, mean over the batch
/// and AUs.
pub fn classification_loss(
    logits: &Tensor,
    y: &Tensor,
    pos_weight: &Tensor,
    cfg: &Config,
) -> Result<Tensor> {
    let t = &cfg.train;
    let per = match t.imbalance {
        Imbalance::Asymmetric => {
            // ASL: L+ = -log p, L- = -p_m^γ log(1 - p_m) with p_m = max(p - clip, 0).
            let p = candle_nn::ops::sigmoid(logits)?;
            let lp = p.clamp(1e-6, 1.0)?.log()?.neg()?;
            let pm = (p - t.asl_clip)?.relu()?;
            let ln = ((1.0 - &pm)?.clamp(1e-6, 1.0)?.log()?.neg()? * pm.powf(t.asl_gamma_neg)?)?;
            ((y * lp)? + ((1.0 - y)? * ln)?)?
        }
        Imbalance::PosWeight | Imbalance::None => {
            let base = ccr::bce_with_logits_elementwise(logits, y)?;
            if t.imbalance == Imbalance::PosWeight {
                // Weight the positive part: w·y·BCE + (1-y)·BCE.
                let w = (y.broadcast_mul(&(pos_weight - 1.0)?.unsqueeze(0)?)? + 1.0)?;
                (base * w)?
            } else {
                base
            }
        }
    };
    Ok(per.mean_all()?)
}

/// Each AU's best-F1 threshold on the inner validation clips (the training clips if there are none).
fn validation_thresholds(
    net: &Net,
    train: &[&AlignedClip],
    val: &[&AlignedClip],
    cfg: &Config,
) -> Result<Vec<f32>> {
    let pool = if val.is_empty() { train } else { val };
    let probs = predict(net, pool, cfg)?;
    let truth: Vec<Vec<bool>> = pool
        .iter()
        .map(|c| {
            c.targets(&cfg.frontend.aus)
                .iter()
                .map(|&v| v > 0.5)
                .collect()
        })
        .collect();
    Ok(choose_thresholds(&truth, &probs, cfg.frontend.aus.len()))
}

/// Probabilities [clip][AU] for `clips` without augmentation, in batches.
pub fn predict(net: &Net, clips: &[&AlignedClip], cfg: &Config) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(clips.len());
    for chunk in clips.chunks(cfg.train.batch_size.max(1)) {
        let (x, _) = make_batch(chunk, cfg, None, &net.device)?;
        let (logits, _) = net.forward(&x)?;
        let p = candle_nn::ops::sigmoid(&logits.to_dtype(DType::F32)?)?;
        out.extend(p.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// Macro-F1 (mean over AUs with a defined F1) of `probs` at `thresholds` against `clips`' labels.
pub fn macro_f1(
    clips: &[&AlignedClip],
    probs: &[Vec<f32>],
    thresholds: &[f32],
    aus: &[crate::au::Au],
) -> Option<f64> {
    mean_defined((0..aus.len()).map(|j| {
        let truth: Vec<bool> = clips.iter().map(|c| c.aus.contains(&aus[j])).collect();
        let dec: Vec<bool> = probs.iter().map(|p| p[j] >= thresholds[j]).collect();
        Counts::of(&truth, &dec).f1()
    }))
}

/// Whether CCR runs: λ_ccr > 0, not ablated, and instruction tokens exist to intervene on.
pub fn ccr_active(cfg: &Config) -> bool {
    cfg.train.lambda_ccr > 0.0
        && cfg.frontend.ablation != Ablation::NoCcr
        && cfg.frontend.ablation != Ablation::NoAugnn
}

/// One optimiser step's losses.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepLoss {
    /// Eq. 9 total.
    pub total: f64,
    /// L_cls.
    pub cls: f64,
    /// L_ccr (0 when off).
    pub ccr: f64,
}

/// Forward + loss for one batch (Algorithm 1): returns the total loss tensor and its parts.
pub fn batch_loss(
    net: &Net,
    x: &Tensor,
    y: &Tensor,
    pos_weight: &Tensor,
    cfg: &Config,
    rng: &mut Rng,
) -> Result<(Tensor, StepLoss)> {
    let (logits, out) = net.forward(x)?;
    let cls = classification_loss(&logits, y, pos_weight, cfg)?;
    let mut parts = StepLoss {
        cls: cls.to_scalar::<f32>()? as f64,
        ..StepLoss::default()
    };
    let total = match (&out.instructions, ccr_active(cfg)) {
        (Some(tau), true) => {
            let (b, n) = (x.dim(0)?, cfg.frontend.aus.len());
            let rounds: Vec<Vec<usize>> = if cfg.train.ccr_targets == CcrTargets::All {
                (0..n).map(|k| vec![k; b]).collect()
            } else {
                vec![
                    (0..b)
                        .map(|_| (rng.uniform() * n as f64) as usize % n)
                        .collect(),
                ]
            };
            let mut sum: Option<Tensor> = None;
            for targets in &rounds {
                let mask = ccr::target_mask(targets, n, x.device())?;
                let delta = net.ccr.delta.as_tensor();
                let tau_cf = ccr::counterfactual_instructions(tau, delta, &mask)?;
                let cf_logits = net.decide(&out.content, Some(&tau_cf))?;
                let l = ccr::ccr_loss(
                    &logits,
                    &cf_logits,
                    y,
                    delta,
                    &mask,
                    cfg.train.lambda_inv,
                    cfg.train.lambda_delta,
                )?;
                sum = Some(match sum {
                    Some(s) => (s + l)?,
                    None => l,
                });
            }
            let l_ccr = (sum.context("no CCR round")? / rounds.len() as f64)?;
            parts.ccr = l_ccr.to_scalar::<f32>()? as f64;
            ccr::total_loss(&cls, &l_ccr, cfg.train.lambda_ccr)?
        }
        _ => cls,
    };
    parts.total = total.to_scalar::<f32>()? as f64;
    Ok((total, parts))
}

/// The optimiser over `net`'s two variable groups.
pub fn optimiser(net: &Net, cfg: &Config) -> Result<AdamW> {
    let mut groups = vec![Group::new(
        "visual",
        cfg.train.lr_visual,
        net.visual_vars(),
    )?];
    let lora = net.lora_vars();
    if !lora.is_empty() {
        groups.push(Group::new("lora", cfg.train.lr_lora, lora)?);
    }
    Ok(AdamW::new(groups, cfg.train.weight_decay))
}

/// Deterministic per-epoch order of `n` training clips.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

/// One optimiser step on batch (`x`, `y`): forward (with CCR when configured), backward, AdamW at
/// learning-rate scale `lr`, then the reasoner's cached prompt is refreshed. Returns the losses and
/// the forward pass's seconds.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    net: &mut Net,
    opt: &mut AdamW,
    x: &Tensor,
    y: &Tensor,
    pos_weight: &Tensor,
    cfg: &Config,
    rng: &mut Rng,
    lr: f64,
) -> Result<(StepLoss, f64)> {
    let t0 = Instant::now();
    let (loss, parts) = batch_loss(net, x, y, pos_weight, cfg, rng)?;
    let t_fwd = t0.elapsed().as_secs_f64();
    ensure!(
        parts.total.is_finite(),
        "training diverged at step {} (loss {})",
        opt.step + 1,
        parts.total
    );
    let grads = loss.backward()?;
    if tracing::enabled!(tracing::Level::TRACE) {
        for g in &opt.groups {
            let with = g
                .vars
                .iter()
                .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
                .count();
            tracing::trace!(
                "group {}: {with}/{} variables have a gradient",
                g.name,
                g.vars.len()
            );
        }
    }
    opt.step(&grads, lr, cfg.train.grad_clip)?;
    net.after_step()?;
    Ok((parts, t_fwd))
}

/// Trains `net` on `train`, choosing thresholds on `val` (or on `train` without augmentation when
/// `val` is empty). Checkpoints go to `opts.out` after every epoch and on interruption.
pub fn train(
    net: &mut Net,
    cfg: &Config,
    train: &[&AlignedClip],
    val: &[&AlignedClip],
    opts: &RunOptions,
) -> Result<TrainSummary> {
    ensure!(!train.is_empty(), "no training clips");
    let t0 = Instant::now();
    let bs = cfg.train.batch_size;
    let steps_per_epoch = train.len().div_ceil(bs);
    let total_steps = steps_per_epoch * cfg.train.epochs;
    let mut opt = optimiser(net, cfg)?;
    let mut st = TrainState::new(cfg, train, val);
    if opts.resume {
        st = state::load(&opts.out, net, &mut opt, cfg, train, val)
            .with_context(|| format!("cannot resume from {}", opts.out.display()))?;
        if !opts.quiet {
            eprintln!(
                "resuming at epoch {}, batch {} (step {})",
                st.epoch + 1,
                st.batch,
                opt.step
            );
        }
    }
    // A finished run resumed (a protocol scoring its finished folds again) keeps its thresholds.
    let saved_thresholds = if opts.resume && st.epoch >= cfg.train.epochs {
        state::load_thresholds(&state::checkpoint_dir(&opts.out))?
            .filter(|t| t.len() == cfg.frontend.aus.len())
    } else {
        None
    };
    let pos_weight = Tensor::new(positive_weights(train, &cfg.frontend.aus), &net.device)?;
    let tty = std::io::stderr().is_terminal();
    let mut stopped_early = false;
    'epochs: while st.epoch < cfg.train.epochs {
        let order = epoch_order(train.len(), cfg.train.seed, st.epoch);
        let epoch_t0 = Instant::now();
        while st.batch < steps_per_epoch {
            let interrupted = opts
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst));
            if interrupted || opts.max_steps.is_some_and(|m| opt.step >= m) {
                stopped_early = true;
                break 'epochs;
            }
            let idx = &order[st.batch * bs..((st.batch + 1) * bs).min(train.len())];
            let batch: Vec<&AlignedClip> = idx.iter().map(|&i| train[i]).collect();
            let mut rng =
                Rng::new(cfg.train.seed ^ (opt.step + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
            let ts = Instant::now();
            let (x, y) = make_batch(&batch, cfg, Some(&mut rng), &net.device)?;
            let t_batch = ts.elapsed().as_secs_f64();
            let lr = schedule(
                opt.step as usize,
                total_steps,
                cfg.train.warmup_steps,
                cfg.train.schedule,
            );
            let (parts, t_fwd) = train_step(net, &mut opt, &x, &y, &pos_weight, cfg, &mut rng, lr)?;
            tracing::debug!(
                "step {}: batch {:.3} s, forward {:.3} s, backward+update {:.3} s",
                opt.step,
                t_batch,
                t_fwd,
                ts.elapsed().as_secs_f64() - t_batch - t_fwd
            );
            st.record_step(parts);
            st.batch += 1;
            if !opts.quiet {
                progress(
                    tty,
                    &st,
                    cfg,
                    steps_per_epoch,
                    epoch_t0,
                    t0,
                    opt.step,
                    total_steps,
                );
            }
        }
        let val_f1 = if val.is_empty() {
            None
        } else {
            let probs = predict(net, val, cfg)?;
            macro_f1(
                val,
                &probs,
                &vec![0.5; cfg.frontend.aus.len()],
                &cfg.frontend.aus,
            )
        };
        st.finish_epoch(val_f1, epoch_t0.elapsed().as_secs_f64());
        if !opts.quiet {
            let r = st.history.last().expect("epoch recorded");
            eprintln!(
                "{}epoch {}/{}: loss {:.4} (cls {:.4}, ccr {:.4}), validation macro-F1 {} ({:.1} s)",
                if tty { "\r\x1b[K" } else { "" },
                r.epoch,
                cfg.train.epochs,
                r.loss,
                r.cls,
                r.ccr,
                r.val_f1.map_or("-".into(), |f| format!("{f:.3}")),
                r.seconds
            );
        }
        state::save(&opts.out, net, &opt, &st, cfg)?;
    }
    // Zero epochs (thresholds only, e.g. for an `--init` front-end): the checkpoint is the
    // starting network, finished once its thresholds are chosen below.
    if stopped_early || cfg.train.epochs == 0 {
        state::save(&opts.out, net, &opt, &st, cfg)?;
    }
    let thresholds = if let Some(t) = saved_thresholds {
        t
    } else if st.epoch >= cfg.train.epochs {
        let t = match cfg.train.thresholds {
            ThresholdRule::Fixed => vec![0.5; cfg.frontend.aus.len()],
            ThresholdRule::Validation => validation_thresholds(net, train, val, cfg)?,
        };
        state::save_thresholds(&opts.out, &t)?;
        t
    } else {
        vec![0.5; cfg.frontend.aus.len()]
    };
    Ok(TrainSummary {
        epochs: st.epoch,
        steps: opt.step,
        history: st.history.clone(),
        thresholds,
        stopped_early,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// One progress line: epoch, step, running loss, last validation F1, speed and ETA.
#[allow(clippy::too_many_arguments)]
fn progress(
    tty: bool,
    st: &TrainState,
    cfg: &Config,
    steps_per_epoch: usize,
    epoch_t0: Instant,
    t0: Instant,
    step: u64,
    total: usize,
) {
    let every = if tty { 1 } else { 10 };
    if !st.batch.is_multiple_of(every) && st.batch != steps_per_epoch {
        return;
    }
    let per_step = t0.elapsed().as_secs_f64() / st.steps_this_run.max(1) as f64;
    let eta = per_step * total.saturating_sub(step as usize) as f64;
    let last_f1 = st
        .history
        .last()
        .and_then(|r| r.val_f1)
        .map_or("-".into(), |f| format!("{f:.3}"));
    let line = format!(
        "epoch {}/{} [{:>4}/{}] loss {:.4} val F1 {} | {:.2} s/step, epoch {:.0} s, ETA {:.0} s",
        st.epoch + 1,
        cfg.train.epochs,
        st.batch,
        steps_per_epoch,
        st.running_loss(),
        last_f1,
        per_step,
        epoch_t0.elapsed().as_secs_f64(),
        eta
    );
    let mut e = std::io::stderr();
    if tty {
        let _ = write!(e, "\r\x1b[K{line}");
    } else {
        let _ = writeln!(e, "{line}");
    }
    let _ = e.flush();
}
