//! The reasoner adapter file: every trainable reasoner tensor (LoRA pairs, AU head) in one small
//! safetensors file, with the LoRA configuration, the base model's shapes and the task prompt in
//! its metadata.
//!
//! Tensors: `lora.{layer}.{q|k|v|o}.a` (r, in), `lora.{layer}.{q|k|v|o}.b` (out, r),
//! `head.weight` (num_aus, D), `head.bias` (num_aus), all f32.
//! Metadata: `format` = "aullm.reasoner-adapter/1", `base` (decoder fingerprint), `lora_rank`,
//! `lora_alpha`, `lora_targets` ("q,v"), `num_aus`, `prompt`.

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use super::lora::{LoraConfig, Target};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "aullm.reasoner-adapter/1";

/// The contents of an adapter file.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Decoder fingerprint the adapter was trained on.
    pub base: String,
    /// Rank, alpha and targets.
    pub lora: LoraConfig,
    /// The task prompt the adapter was trained with.
    pub prompt: String,
    /// (layer, target) -> (A, B).
    pub pairs: Vec<(usize, Target, Tensor, Tensor)>,
    /// AU head weight (num_aus, D).
    pub head_weight: Tensor,
    /// AU head bias (num_aus).
    pub head_bias: Tensor,
}

/// Tensor name of a LoRA factor.
fn pair_name(layer: usize, t: Target, which: &str) -> String {
    format!("lora.{layer}.{}.{which}", t.name())
}

impl Adapter {
    /// Writes the adapter to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let cpu = |t: &Tensor| {
            t.to_dtype(DType::F32)
                .and_then(|t| t.to_device(&Device::Cpu))
        };
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (layer, t, a, b) in &self.pairs {
            tensors.push((pair_name(*layer, *t, "a"), cpu(a)?));
            tensors.push((pair_name(*layer, *t, "b"), cpu(b)?));
        }
        tensors.push(("head.weight".into(), cpu(&self.head_weight)?));
        tensors.push(("head.bias".into(), cpu(&self.head_bias)?));
        let targets: Vec<&str> = self.lora.targets.iter().map(|t| t.name()).collect();
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("base", self.base.clone()),
            ("lora_rank", self.lora.rank.to_string()),
            ("lora_alpha", self.lora.alpha.to_string()),
            ("lora_targets", targets.join(",")),
            ("num_aus", self.head_weight.dims()[0].to_string()),
            ("prompt", self.prompt.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let bytes =
            crate::graph::checkpoint::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), meta)
                .with_context(|| format!("cannot serialise adapter {}", path.display()))?;
        let mut f = crate::atomic::AtomicFile::create(path)?;
        f.write_all(&bytes)
            .with_context(|| format!("cannot write adapter {}", path.display()))?;
        f.commit()?;
        Ok(())
    }

    /// Reads an adapter and checks it is complete and self-consistent for a decoder of
    /// `num_layers` layers whose projection `t` has dims `proj_dims(t)` = (out, in) and width `hidden`.
    pub fn load(
        path: &Path,
        num_layers: usize,
        hidden: usize,
        proj_dims: impl Fn(Target) -> Result<(usize, usize)>,
        device: &Device,
    ) -> Result<Adapter> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read adapter {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| -> Result<&String> {
            meta.get(k)
                .with_context(|| format!("adapter {}: metadata key {k} is missing", path.display()))
        };
        let format = get("format")?;
        ensure!(
            format == FORMAT,
            "adapter {}: format {format:?}, expected {FORMAT:?}",
            path.display()
        );
        let parse_err =
            |k: &str| format!("adapter {}: metadata {k} is not a number", path.display());
        let rank: usize = get("lora_rank")?
            .parse()
            .with_context(|| parse_err("lora_rank"))?;
        let alpha: f64 = get("lora_alpha")?
            .parse()
            .with_context(|| parse_err("lora_alpha"))?;
        let num_aus: usize = get("num_aus")?
            .parse()
            .with_context(|| parse_err("num_aus"))?;
        let targets: Vec<String> = get("lora_targets")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let lora = LoraConfig::new(rank, alpha, &targets)
            .with_context(|| format!("adapter {}: LoRA metadata", path.display()))?;
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .with_context(|| format!("cannot read the tensors of adapter {}", path.display()))?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors
                .remove(name)
                .with_context(|| format!("missing tensor {name} in adapter {}", path.display()))?;
            ensure!(
                t.dims() == shape,
                "tensor {name} in adapter {} has shape {:?}, expected {shape:?}",
                path.display(),
                t.dims()
            );
            Ok(t.to_dtype(DType::F32)?)
        };
        let mut pairs = Vec::new();
        for layer in 0..num_layers {
            for &t in &lora.targets {
                let (out, inp) = proj_dims(t)?;
                let a = take(&pair_name(layer, t, "a"), &[rank, inp])?;
                let b = take(&pair_name(layer, t, "b"), &[out, rank])?;
                pairs.push((layer, t, a, b));
            }
        }
        let head_weight = take("head.weight", &[num_aus, hidden])?;
        let head_bias = take("head.bias", &[num_aus])?;
        if !tensors.is_empty() {
            let extra: BTreeSet<_> = tensors.keys().collect();
            bail!(
                "adapter {} holds tensors this decoder has no place for: {extra:?} (more layers or \
                 other LoRA targets than its metadata says?)",
                path.display()
            );
        }
        Ok(Adapter {
            base: get("base")?.clone(),
            lora,
            prompt: get("prompt")?.clone(),
            pairs,
            head_weight,
            head_bias,
        })
    }
}
