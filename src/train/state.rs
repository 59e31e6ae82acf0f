//! Training checkpoints: the network's variables, CCR's δ, the optimiser's moments and the loop's
//! position, written as a folder swapped in atomically so a kill never leaves a half checkpoint.

use super::clips::AlignedClip;
use super::optim::AdamW;
use super::trainer::{EpochRecord, StepLoss};
use crate::config::Config;
use crate::graph::model::Net;
use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Folder name of the live checkpoint inside a run's output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Where the loop is and what it has seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches completed in the current epoch.
    pub batch: usize,
    /// Completed epochs' records.
    pub history: Vec<EpochRecord>,
    /// Sums over the current epoch: total, cls, ccr, steps.
    pub sums: [f64; 4],
    /// Hash of the configuration (epochs excluded) and the training/validation clip keys.
    pub fingerprint: u64,
    /// Steps taken by this process (speed estimates).
    #[serde(skip)]
    pub steps_this_run: u64,
}

impl TrainState {
    /// A fresh state for this configuration and data.
    pub fn new(cfg: &Config, train: &[&AlignedClip], val: &[&AlignedClip]) -> TrainState {
        TrainState {
            epoch: 0,
            batch: 0,
            history: Vec::new(),
            sums: [0.0; 4],
            fingerprint: fingerprint(cfg, train, val),
            steps_this_run: 0,
        }
    }

    /// Adds one step's losses.
    pub fn record_step(&mut self, l: StepLoss) {
        self.sums[0] += l.total;
        self.sums[1] += l.cls;
        self.sums[2] += l.ccr;
        self.sums[3] += 1.0;
        self.steps_this_run += 1;
    }

    /// Mean total loss over the current epoch so far.
    pub fn running_loss(&self) -> f64 {
        self.sums[0] / self.sums[3].max(1.0)
    }

    /// Closes the epoch.
    pub fn finish_epoch(&mut self, val_f1: Option<f64>, seconds: f64) {
        let n = self.sums[3].max(1.0);
        self.epoch += 1;
        self.history.push(EpochRecord {
            epoch: self.epoch,
            loss: self.sums[0] / n,
            cls: self.sums[1] / n,
            ccr: self.sums[2] / n,
            val_f1,
            seconds,
        });
        self.batch = 0;
        self.sums = [0.0; 4];
    }
}

/// Hash of what must not change between a run and its resumption.
fn fingerprint(cfg: &Config, train: &[&AlignedClip], val: &[&AlignedClip]) -> u64 {
    let mut c = cfg.clone();
    c.train.epochs = 0; // a resumed run may be given more epochs
    c.train.threads = 0;
    c.train.device = crate::graph::devices::DeviceName::Cpu; // where it runs, not what it learns
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.to_toml().hash(&mut h);
    for clip in train.iter().chain(val) {
        clip.key.hash(&mut h);
    }
    train.len().hash(&mut h);
    h.finish()
}

/// The checkpoint folder of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join(CHECKPOINT_DIR)
}

/// Writes the checkpoint (front-end, adapter, δ + optimiser moments, state) and swaps it in.
pub fn save(out: &Path, net: &Net, opt: &AdamW, st: &TrainState, cfg: &Config) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = out.join(format!("{CHECKPOINT_DIR}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    crate::graph::checkpoint::save(&net.frontend, &tmp.join("frontend.safetensors"))?;
    if let Some(r) = &net.reasoner {
        r.save_adapter(&tmp.join("adapter.safetensors"))?;
    }
    let mut tensors: Vec<(String, Tensor)> = opt.state_tensors();
    tensors.push(("ccr.delta".into(), net.ccr.delta.as_tensor().clone()));
    let meta: HashMap<String, String> = [
        ("state".to_string(), serde_json::to_string(st)?),
        ("step".to_string(), opt.step.to_string()),
    ]
    .into_iter()
    .collect();
    let bytes =
        crate::graph::checkpoint::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), meta)
            .context("cannot serialise the optimiser state")?;
    std::fs::write(tmp.join("optimiser.safetensors"), bytes)?;
    std::fs::write(tmp.join("config.toml"), cfg.to_toml())?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(st)?)?;
    // Swap: the old checkpoint stays whole until the new one is in place.
    let old = out.join(format!("{CHECKPOINT_DIR}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if dir.exists() {
        std::fs::rename(&dir, &old)?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("cannot move the checkpoint into {}", dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Restores `net` and `opt` in place from `out`'s checkpoint and returns the loop state; the
/// configuration and data must be those the checkpoint was written with (epochs may grow).
pub fn load(
    out: &Path,
    net: &mut Net,
    opt: &mut AdamW,
    cfg: &Config,
    train: &[&AlignedClip],
    val: &[&AlignedClip],
) -> Result<TrainState> {
    let mut dir = checkpoint_dir(out);
    if !dir.exists() {
        // Killed between the two renames of `save`: the previous checkpoint is still whole.
        let old = out.join(format!("{CHECKPOINT_DIR}.old"));
        if old.exists() {
            dir = old;
        } else {
            bail!("no checkpoint in {} (nothing to resume)", out.display());
        }
    }
    let opt_file = dir.join("optimiser.safetensors");
    let bytes =
        std::fs::read(&opt_file).with_context(|| format!("cannot read {}", opt_file.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut st: TrainState =
        serde_json::from_str(meta.get("state").context("no state in checkpoint")?)?;
    let step: u64 = meta.get("step").context("no step in checkpoint")?.parse()?;
    let expected = TrainState::new(cfg, train, val).fingerprint;
    ensure!(
        st.fingerprint == expected,
        "the checkpoint in {} was written for another configuration or other data (compare {}/config.toml with this run's `aullm config show`)",
        dir.display(),
        dir.display()
    );
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&opt_file, &Device::Cpu)?;
    opt.load_state(&tensors, step)?;
    net.ccr.delta.set(
        tensors
            .get("ccr.delta")
            .context("no ccr.delta in checkpoint")?,
    )?;
    load_weights(&dir, net)?;
    st.steps_this_run = 0;
    Ok(st)
}

/// Sets the front-end and (with a reasoner) the adapter of `net` from checkpoint folder `dir`.
pub fn load_weights(dir: &Path, net: &mut Net) -> Result<()> {
    load_frontend(dir, net)?;
    if net.reasoner.is_some() {
        let adapter = dir.join("adapter.safetensors");
        let saved = candle_core::safetensors::load(&adapter, &Device::Cpu)
            .with_context(|| format!("cannot read {}", adapter.display()))?;
        set_named(&net.lora_vars(), &saved, "", &adapter)?;
        net.after_step()?;
    }
    Ok(())
}

/// Sets only the front-end of `net` (backbone, MGE-EFP, R-AUGNN, MLP head) from checkpoint folder `dir`.
pub fn load_frontend(dir: &Path, net: &mut Net) -> Result<()> {
    let front = dir.join("frontend.safetensors");
    let saved = candle_core::safetensors::load(&front, &Device::Cpu)
        .with_context(|| format!("cannot read {}", front.display()))?;
    set_named(&net.visual_vars(), &saved, "frontend.", &front)
}

/// Sets CCR's δ of `net` from the checkpoint folder `dir` (`train.init_delta`): δ lives with the
/// optimiser state, which a model bundle does not have.
pub fn load_delta(dir: &Path, net: &mut Net) -> Result<()> {
    let file = dir.join("optimiser.safetensors");
    ensure!(
        file.exists(),
        "train.init_delta: {} has no {} (a model bundle keeps no δ; give a run folder, or set train.init_delta = false)",
        dir.display(),
        file.display()
    );
    let saved = candle_core::safetensors::load(&file, &Device::Cpu)
        .with_context(|| format!("cannot read {}", file.display()))?;
    set_named(
        &[("ccr.delta".to_string(), net.ccr.delta.clone())],
        &saved,
        "",
        &file,
    )
}

/// The configuration and loop state a checkpoint folder was written with.
pub fn read_checkpoint_info(dir: &Path) -> Result<(Config, TrainState)> {
    let cfg_file = dir.join("config.toml");
    let cfg = Config::load(Some(&cfg_file), &[])
        .with_context(|| format!("cannot read {}", cfg_file.display()))?;
    let st_file = dir.join("state.json");
    let text = std::fs::read_to_string(&st_file)
        .with_context(|| format!("cannot read {}", st_file.display()))?;
    let st: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a training state", st_file.display()))?;
    Ok((cfg, st))
}

/// File in the checkpoint holding the per-AU thresholds once training has finished.
pub const THRESHOLDS_FILE: &str = "thresholds.json";

/// Records the thresholds chosen at the end of training beside the checkpoint (the next `save`,
/// e.g. a resume with more epochs, drops them until that run finishes).
pub fn save_thresholds(out: &Path, thresholds: &[f32]) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = dir.join(format!("{THRESHOLDS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string(thresholds)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(THRESHOLDS_FILE))
        .with_context(|| format!("cannot write {}", dir.join(THRESHOLDS_FILE).display()))?;
    Ok(())
}

/// The thresholds of a finished run's checkpoint folder `dir`, if training finished.
pub fn load_thresholds(dir: &Path) -> Result<Option<Vec<f32>>> {
    let f = dir.join(THRESHOLDS_FILE);
    if !f.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
    let t: Vec<f32> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of numbers", f.display()))?;
    Ok(Some(t))
}

/// Sets each variable named `prefix + key` from `saved[key]`.
fn set_named(
    vars: &[(String, candle_core::Var)],
    saved: &HashMap<String, Tensor>,
    prefix: &str,
    file: &Path,
) -> Result<()> {
    for (name, var) in vars {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        let t = saved
            .get(key)
            .with_context(|| format!("{} has no tensor {key}", file.display()))?;
        ensure!(
            t.dims() == var.dims(),
            "{}: {key} has shape {:?}, the model {:?}",
            file.display(),
            t.dims(),
            var.dims()
        );
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}
