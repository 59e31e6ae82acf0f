//! The `[reasoner]` section: decoder weights, prompt, precision, device, LoRA.

use crate::graph::devices::DeviceName;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// `reasoner.dtype`: the precision of the decoder's base weights.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DTypeChoice {
    /// int8 on CPUs with AVX-512 (f16 on others), bf16 on CUDA.
    #[default]
    Auto,
    /// Every weight in f32.
    F32,
    /// bfloat16 weights.
    Bf16,
    /// float16 weights.
    F16,
    /// CPU inference reads the projection matrices in 8-bit blocks (one f32 scale per 32
    /// values), quantised after LoRA is merged; base weights are kept in f16 for training.
    Int8,
}

/// The LLM reasoner: which decoder weights, the task prompt, LoRA and the AU head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReasonerConfig {
    /// "smollm2-135m" (a manifest artefact), a GGUF file, a Hugging Face folder (config.json,
    /// *.safetensors, tokenizer.json), or "random-qwen2-1.5b" (the paper's decoder shapes with
    /// random weights, for timing).
    pub weights: String,
    /// Task prompt E_text, placed before the content token and the instruction tokens.
    pub prompt: String,
    /// AUs the head predicts (8: CASME II's AU1, 2, 4, 7, 12, 14, 15, 17).
    pub num_aus: usize,
    /// "auto" (int8 on CPUs with AVX-512, f16 on other CPUs, bf16 on CUDA), "f32", "bf16",
    /// "f16" or "int8". On the CPU, f16 and bf16 store the projection weights in half precision
    /// and compute in f32 (half the memory read per clip); int8 reads them in 8-bit blocks (a
    /// quarter); "f32" keeps every weight in f32.
    pub dtype: DTypeChoice,
    /// "cpu", "cuda" or "cuda:N" (CUDA needs the `cuda` cargo feature).
    pub device: DeviceName,
    /// Trained adapter file (LoRA pairs, head, prompt); empty = fresh LoRA (no effect) and head.
    pub adapter: String,
    /// Seed of fresh LoRA and head values and of random weights.
    pub seed: u64,
    /// CPU threads for the reasoner's forward pass; 0 = every core (candle's global pool). On a
    /// machine whose cores are shared, 1 can be faster: thread hand-offs wait for a core.
    pub threads: usize,
    /// Low-rank adaptation of the attention projections.
    pub lora: LoraSection,
    /// Adds the front-end's MLP head logits to the LLM head's (a skip path around the LLM) and
    /// starts the LLM head at zero, so a second stage begins where stage 1's decider ends and the
    /// LLM learns a correction. Not in the paper (README "The shipped model").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mlp_skip: bool,
}

impl Default for ReasonerConfig {
    fn default() -> Self {
        Self {
            weights: "smollm2-135m".into(),
            prompt:
                "You are an expert in the Facial Action Coding System. The visual evidence of a \
                     facial micro-expression clip and one instruction per action unit follow. \
                     Decide which action units are active."
                    .into(),
            num_aus: 8,
            dtype: DTypeChoice::Auto,
            device: DeviceName::Cpu,
            adapter: String::new(),
            seed: 0,
            threads: 0,
            lora: LoraSection::default(),
            mlp_skip: false,
        }
    }
}

/// LoRA rank, scale and targets (the paper: r = 16, alpha = 32 on the attention modules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    /// Rank r.
    pub rank: usize,
    /// Scale numerator: updates are multiplied by alpha / r.
    pub alpha: f64,
    /// Adapted projections: any of "q", "k", "v", "o".
    pub targets: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            targets: vec!["q".into(), "v".into()],
        }
    }
}

impl ReasonerConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.weights.trim().is_empty() {
            bail!(
                "reasoner.weights is empty: name an artefact, a GGUF file, a folder or \"random-qwen2-1.5b\""
            );
        }
        if self.prompt.trim().is_empty() {
            bail!("reasoner.prompt is empty: the task prompt needs at least one token");
        }
        if self.num_aus == 0 {
            bail!("reasoner.num_aus must be at least 1");
        }
        super::LoraConfig::new(self.lora.rank, self.lora.alpha, &self.lora.targets)
            .context("reasoner.lora")?;
        Ok(())
    }
}
