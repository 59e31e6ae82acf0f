//! The LLM reasoner of AULLM++ (paper section III, "LLM-Driven Deduction"): a frozen decoder
//! (llama or qwen2 family) with LoRA on its attention projections reads
//! E_in = [E_text ‖ T_v ‖ τ_au] — a task prompt, the content token (1 x D) and N instruction
//! tokens (N x D) — and a linear head maps the last position's final hidden state to AU logits.
//! No text is generated. The prompt's keys and values are computed once (`PrefixCache`), so a
//! clip costs 1 + N positions, and a batch of clips shares them.

pub mod adapter;
pub mod arch;
pub mod config;
pub mod decoder;
pub mod head;
pub mod init;
pub mod int8;
pub mod load_convert;
pub mod lora;
pub mod prefix;
pub mod rows_matmul;
pub mod tokenizer;
pub mod weights;

pub use arch::{DecoderConfig, Family};
pub use decoder::Decoder;
pub use head::AuHead;
pub use lora::{LoraConfig, Target};
pub use prefix::PrefixCache;
pub use tokenizer::PromptTokenizer;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor, Var};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::models::ModelsConfig;
use adapter::Adapter;
use config::{DTypeChoice, ReasonerConfig};
use weights::{GgufSource, RandomSource, SafetensorsSource, TensorSource};

/// `reasoner.weights` value selecting random weights with DeepSeek-R1-Distill-Qwen-1.5B's shapes.
pub const RANDOM_QWEN2_1_5B: &str = "random-qwen2-1.5b";

/// Where the decoder's weights come from.
#[derive(Debug, Clone)]
pub enum WeightsSpec {
    /// A GGUF file (tokenizer in its metadata), dequantised at load.
    Gguf(PathBuf),
    /// A Hugging Face folder: config.json, *.safetensors, tokenizer.json.
    HfFolder(PathBuf),
    /// Seeded random weights with these shapes (no tokenizer: pseudo-tokens).
    Random(DecoderConfig),
}

impl WeightsSpec {
    /// Resolves `reasoner.weights`: "random-qwen2-1.5b", a path to a GGUF file or an HF folder,
    /// else the name of a manifest artefact (verified in the model cache).
    pub fn resolve(r: &ReasonerConfig, models: &ModelsConfig) -> Result<WeightsSpec> {
        let w = r.weights.trim();
        if w == RANDOM_QWEN2_1_5B {
            return Ok(WeightsSpec::Random(DecoderConfig::qwen2_1_5b()));
        }
        let p = Path::new(w);
        if p.is_dir() {
            return Ok(WeightsSpec::HfFolder(p.to_path_buf()));
        }
        if p.is_file() {
            return Ok(WeightsSpec::Gguf(p.to_path_buf()));
        }
        if w.contains('/') || w.ends_with(".gguf") {
            bail!("reasoner.weights = {w:?}: no such file or folder");
        }
        let path = crate::assets::artefact_path(models, w).with_context(|| {
            format!(
                "reasoner.weights = {w:?} is neither a file, a folder, {RANDOM_QWEN2_1_5B:?} nor a \
                 fetched artefact"
            )
        })?;
        Ok(if path.is_dir() {
            WeightsSpec::HfFolder(path)
        } else {
            WeightsSpec::Gguf(path)
        })
    }
}

/// Everything besides the weights that a reasoner is built with.
#[derive(Debug, Clone)]
pub struct ReasonerOptions {
    /// Task prompt text (E_text).
    pub prompt: String,
    /// AUs the head predicts.
    pub num_aus: usize,
    /// LoRA rank, alpha and targets.
    pub lora: LoraConfig,
    /// Compute dtype of the base weights.
    pub dtype: DType,
    /// Whether CPU inference reads the projection matrices in 8-bit blocks.
    pub int8: bool,
    /// Where the weights live.
    pub device: Device,
    /// Seed of fresh LoRA A matrices, the head and random weights.
    pub seed: u64,
    /// CPU threads for the forward pass; 0 = candle's global pool (every core).
    pub threads: usize,
}

impl ReasonerOptions {
    /// The options `[reasoner]` describes.
    pub fn from_config(r: &ReasonerConfig) -> Result<ReasonerOptions> {
        let device = crate::graph::devices::select(r.device)?;
        Ok(ReasonerOptions {
            prompt: r.prompt.clone(),
            num_aus: r.num_aus,
            lora: LoraConfig::new(r.lora.rank, r.lora.alpha, &r.lora.targets)?,
            dtype: parse_dtype(r.dtype, &device),
            int8: uses_int8(r.dtype, &device),
            device,
            seed: r.seed,
            threads: r.threads,
        })
    }
}

/// Parses `reasoner.dtype`. On the CPU, "f16" and "bf16" store the projection weights in half
/// precision and compute in f32 (`Decoder::load`); "auto" is that with f16 (a clip reads half the
/// bytes: 1.4-1.9x faster here, logits within ~1e-2 of f32) and bf16 on GPUs.
pub fn parse_dtype(choice: DTypeChoice, device: &Device) -> DType {
    match choice {
        DTypeChoice::Auto if device.is_cpu() => DType::F16,
        DTypeChoice::Auto => DType::BF16,
        DTypeChoice::F32 => DType::F32,
        DTypeChoice::Bf16 => DType::BF16,
        DTypeChoice::F16 | DTypeChoice::Int8 => DType::F16,
    }
}

/// Whether `reasoner.dtype` means 8-bit projection matrices on this device: "int8" on the CPU,
/// and "auto" on CPUs where the kernel has vector registers (AVX-512: a clip 1.1x faster than
/// f16 here, AU logits within 0.005 of f32 as with f16; README "Reasoner").
pub fn uses_int8(choice: DTypeChoice, device: &Device) -> bool {
    device.is_cpu()
        && match choice {
            DTypeChoice::Int8 => true,
            DTypeChoice::Auto => int8::fast_here(),
            _ => false,
        }
}

/// The reasoner: decoder + LoRA + AU head + tokenized prompt with its cached prefix.
#[derive(Debug, Clone)]
pub struct Reasoner {
    decoder: Decoder,
    head: AuHead,
    tokenizer: PromptTokenizer,
    lora: LoraConfig,
    prompt: String,
    prompt_ids: Vec<u32>,
    /// Computed when first read, and dropped whenever the weights or the prompt change: loading
    /// an adapter and merging LoRA would otherwise compute it three times.
    prefix: std::sync::OnceLock<PrefixCache>,
    origin: String,
    load_seconds: f64,
    /// A pool of `threads` threads the forward pass runs in (None: the global pool).
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Reasoner {
    /// Builds the reasoner `cfg.reasoner` describes, loads its adapter if one is named, and
    /// merges LoRA for inference.
    pub fn from_config(r: &ReasonerConfig, models: &ModelsConfig) -> Result<Reasoner> {
        let spec = WeightsSpec::resolve(r, models)?;
        let mut opts = ReasonerOptions::from_config(r)?;
        // 8-bit copies are made once, of the merged weights: packing at load would be undone by
        // the fresh LoRA pairs and again by the adapter's.
        let int8 = std::mem::replace(&mut opts.int8, false);
        let adapter = &r.adapter;
        let mut r = Reasoner::load(&spec, &opts)?;
        if !adapter.is_empty() {
            r.load_adapter(Path::new(adapter))?;
        }
        if int8 {
            r.decoder.pack_int8_at_merge();
        }
        r.merge_lora()?;
        // Computed here, once, so that the first clip does not wait for it.
        r.prefix()?;
        Ok(r)
    }

    /// Loads the weights `spec` names with fresh LoRA pairs (no effect until trained) and a fresh
    /// head; the prompt prefix is computed when first read.
    pub fn load(spec: &WeightsSpec, opts: &ReasonerOptions) -> Result<Reasoner> {
        let t0 = Instant::now();
        let (cfg, mut src, tokenizer): (DecoderConfig, Box<dyn TensorSource>, PromptTokenizer) =
            match spec {
                WeightsSpec::Gguf(path) => {
                    let src = GgufSource::open(path)?;
                    let cfg = DecoderConfig::from_gguf(src.content(), path)?;
                    let tok = PromptTokenizer::from_gguf(src.content(), path)?;
                    (cfg, Box::new(src), tok)
                }
                WeightsSpec::HfFolder(dir) => {
                    let cfile = dir.join("config.json");
                    let text = std::fs::read_to_string(&cfile)
                        .with_context(|| format!("cannot read {}", cfile.display()))?;
                    let cfg = DecoderConfig::from_hf_json(&text, &cfile)?;
                    let tok = PromptTokenizer::from_file(&dir.join("tokenizer.json"))?;
                    (cfg, Box::new(SafetensorsSource::open(dir)?), tok)
                }
                WeightsSpec::Random(cfg) => {
                    let label = format!("random weights ({})", cfg.fingerprint());
                    let src = RandomSource::new(cfg, opts.seed, &label);
                    (
                        cfg.clone(),
                        Box::new(src),
                        PromptTokenizer::pseudo(cfg.vocab_size),
                    )
                }
            };
        let origin = src.origin();
        let mut decoder = Decoder::load(&cfg, src.as_mut(), opts.dtype, &opts.device)
            .with_context(|| format!("cannot load the reasoner's decoder from {origin}"))?;
        if opts.int8 {
            decoder.use_int8()?;
        }
        Reasoner::from_decoder(decoder, tokenizer, opts, origin, t0)
    }

    /// Wraps a loaded decoder (tests and tools that build one themselves).
    pub fn from_decoder(
        mut decoder: Decoder,
        tokenizer: PromptTokenizer,
        opts: &ReasonerOptions,
        origin: String,
        started: Instant,
    ) -> Result<Reasoner> {
        decoder.attach_lora(&opts.lora, opts.seed)?;
        let pool = match opts.threads {
            0 => None,
            n => Some(Arc::new(thread_pool(n)?)),
        };
        let head = AuHead::new(
            decoder.config().hidden_size,
            opts.num_aus,
            opts.seed,
            decoder.device(),
        )?;
        let prompt_ids = encode_prompt(&tokenizer, &opts.prompt)?;
        let load_seconds = started.elapsed().as_secs_f64();
        tracing::debug!(
            "reasoner: {} from {origin}, prompt {} tokens, ready in {load_seconds:.3} s",
            decoder.config().fingerprint(),
            prompt_ids.len()
        );
        Ok(Reasoner {
            decoder,
            head,
            tokenizer,
            lora: opts.lora.clone(),
            prompt: opts.prompt.clone(),
            prompt_ids,
            prefix: std::sync::OnceLock::new(),
            origin,
            load_seconds,
            pool,
        })
    }

    /// The decoder (shapes, dtype, device).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The AU head.
    pub fn head(&self) -> &AuHead {
        &self.head
    }

    /// The prompt tokenizer.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.tokenizer
    }

    /// Model width D: the width of T_v and of each instruction token.
    pub fn hidden_size(&self) -> usize {
        self.decoder.config().hidden_size
    }

    /// AUs the head predicts.
    pub fn num_aus(&self) -> usize {
        self.head.num_aus()
    }

    /// The task prompt text.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The prompt's token ids.
    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt_ids
    }

    /// The cached prompt prefix, computed now if it is not yet.
    pub fn prefix(&self) -> Result<&PrefixCache> {
        if let Some(p) = self.prefix.get() {
            return Ok(p);
        }
        let p = self.run(|| self.decoder.prefill(&self.decoder.embed(&self.prompt_ids)?))?;
        // Two threads may both compute it; the values are the same, the first one is kept.
        Ok(self.prefix.get_or_init(|| p))
    }

    /// The LoRA configuration.
    pub fn lora_config(&self) -> &LoraConfig {
        &self.lora
    }

    /// What the weights were read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Seconds from the start of loading the decoder to a ready reasoner (the prefix is not
    /// included: it is computed when first read).
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// Replaces the task prompt (its prefix is computed when next read).
    pub fn set_prompt(&mut self, prompt: &str) -> Result<()> {
        let ids = encode_prompt(&self.tokenizer, prompt)?;
        self.prefix = std::sync::OnceLock::new();
        self.prompt = prompt.to_string();
        self.prompt_ids = ids;
        Ok(())
    }

    /// Drops the prefix, to be recomputed from the current LoRA values when next read: call after
    /// an optimiser step, since the prompt's keys and values depend on the adapted projections.
    pub fn refresh_prefix(&mut self) -> Result<()> {
        self.prefix = std::sync::OnceLock::new();
        Ok(())
    }

    /// Folds LoRA into the base projections for inference (and refreshes the prefix with them).
    pub fn merge_lora(&mut self) -> Result<()> {
        self.decoder.merge_lora()?;
        self.refresh_prefix()
    }

    /// Uses base weights + live LoRA pairs again (training).
    pub fn unmerge_lora(&mut self) -> Result<()> {
        self.decoder.unmerge_lora();
        self.refresh_prefix()
    }

    /// The trainable tensors: every LoRA A and B, then the head's weight and bias.
    pub fn trainable_vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self
            .decoder
            .lora_pairs()
            .into_iter()
            .flat_map(|(_, _, a, b)| [a, b])
            .collect();
        v.push(self.head.weight.clone());
        v.push(self.head.bias.clone());
        v
    }

    /// Final hidden state (B, D) of the last position of [E_text ‖ T_v ‖ τ_au], with the prompt
    /// read from the prefix cache (`cached`) or recomputed for this batch.
    pub fn final_hidden(&self, tv: &Tensor, tau: &Tensor, cached: bool) -> Result<Tensor> {
        self.run(|| self.final_hidden_here(tv, Some(tau), cached))
    }

    /// AU logits from a content token and optional instruction tokens (none for the "w/o R-AUGNN"
    /// ablation), prompt from the prefix cache.
    pub fn au_logits_tokens(&self, tv: &Tensor, tau: Option<&Tensor>) -> Result<Tensor> {
        self.head
            .forward(&self.run(|| self.final_hidden_here(tv, tau, true))?)
    }

    /// `final_hidden` on the calling thread's pool.
    fn final_hidden_here(&self, tv: &Tensor, tau: Option<&Tensor>, cached: bool) -> Result<Tensor> {
        let x = self.clip_tokens(tv, tau)?;
        if cached {
            self.decoder.forward_last(&x, Some(self.prefix()?))
        } else {
            let b = x.dim(0)?;
            let text = self.decoder.embed(&self.prompt_ids)?;
            let (_, p, d) = text.dims3()?;
            let text = text.broadcast_as((b, p, d))?;
            let x = Tensor::cat(&[&text, &x], 1)?;
            self.decoder.forward_last(&x, None)
        }
    }

    /// AU logits (B, num_aus) of a batch of clips: content tokens `tv` (B, D) or (B, 1, D) and
    /// instruction tokens `tau` (B, N, D); the prompt comes from the prefix cache.
    pub fn au_logits(&self, tv: &Tensor, tau: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.final_hidden(tv, tau, true)?)
    }

    /// As `au_logits`, recomputing the prompt (training with LoRA updates, or checks).
    pub fn au_logits_uncached(&self, tv: &Tensor, tau: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.final_hidden(tv, tau, false)?)
    }

    /// A reasoner on the same weights (shared, not copied) with threads of its own, as many as
    /// this one's pool has (none: both use the global pool). Clones share their pool: two
    /// workers' clips would queue for the same threads.
    pub fn with_own_threads(&self) -> Result<Reasoner> {
        let mut r = self.clone();
        if let Some(p) = &self.pool {
            r.pool = Some(Arc::new(thread_pool(p.current_num_threads())?));
        }
        Ok(r)
    }

    /// Whether both run their forward passes on the same threads (the same pool, or both on the
    /// global one).
    pub fn shares_threads_with(&self, other: &Reasoner) -> bool {
        match (&self.pool, &other.pool) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Runs `f` in the reasoner's thread pool.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_pool(self.pool.as_deref(), f)
    }

    /// [T_v ‖ τ_au] as (B, 1 + N, D) in the decoder's dtype, with shapes checked.
    fn clip_tokens(&self, tv: &Tensor, tau: Option<&Tensor>) -> Result<Tensor> {
        let d = self.hidden_size();
        let tv = match tv.rank() {
            2 => tv.unsqueeze(1)?,
            3 => tv.clone(),
            _ => bail!(
                "content token T_v must be (B, D) or (B, 1, D), got {:?}",
                tv.dims()
            ),
        };
        let (b, one, dv) = tv.dims3()?;
        ensure!(
            one == 1 && dv == d,
            "content token T_v has shape {:?}, expected ({b}, 1, {d})",
            tv.dims()
        );
        let dtype = self.decoder.dtype();
        let Some(tau) = tau else {
            return Ok(tv.to_dtype(dtype)?);
        };
        let (bt, n, dt) = tau.dims3().with_context(|| {
            format!("instruction tokens must be (B, N, D), got {:?}", tau.dims())
        })?;
        ensure!(
            bt == b && dt == d && n >= 1,
            "instruction tokens have shape {:?}, expected ({b}, N >= 1, {d})",
            tau.dims()
        );
        Ok(Tensor::cat(
            &[&tv.to_dtype(dtype)?, &tau.to_dtype(dtype)?],
            1,
        )?)
    }

    /// The adapter (LoRA pairs, head, prompt) as it stands.
    pub fn adapter(&self) -> Adapter {
        Adapter {
            base: self.decoder.config().fingerprint(),
            lora: self.lora.clone(),
            prompt: self.prompt.clone(),
            pairs: self
                .decoder
                .lora_pairs()
                .into_iter()
                .map(|(l, t, a, b)| (l, t, a.as_tensor().clone(), b.as_tensor().clone()))
                .collect(),
            head_weight: self.head.weight.as_tensor().clone(),
            head_bias: self.head.bias.as_tensor().clone(),
        }
    }

    /// Saves the adapter (safetensors with its configuration in the metadata).
    pub fn save_adapter(&self, path: &Path) -> Result<()> {
        self.adapter().save(path)
    }

    /// Loads an adapter saved by `save_adapter`: its LoRA configuration, pairs, head and prompt
    /// replace the current ones (checked against this decoder); the prefix is recomputed when next
    /// read.
    pub fn load_adapter(&mut self, path: &Path) -> Result<()> {
        let cfg = self.decoder.config().clone();
        let dec = &self.decoder;
        let a = Adapter::load(
            path,
            cfg.num_layers,
            cfg.hidden_size,
            |t| dec.proj_dims(t),
            dec.device(),
        )?;
        ensure!(
            a.base == cfg.fingerprint(),
            "adapter {} was trained on {:?}, this decoder is {:?}",
            path.display(),
            a.base,
            cfg.fingerprint()
        );
        let merged = self.decoder.is_merged();
        // Build the new state aside so a failure leaves the reasoner as it was.
        let mut fresh = self.decoder.clone();
        fresh.clear_lora();
        for (layer, t, pa, pb) in &a.pairs {
            fresh.set_lora_pair(
                *layer,
                *t,
                Var::from_tensor(pa)?,
                Var::from_tensor(pb)?,
                a.lora.scale(),
            )?;
        }
        let head = AuHead {
            weight: Var::from_tensor(&a.head_weight)?,
            bias: Var::from_tensor(&a.head_bias)?,
        };
        if a.prompt != self.prompt {
            tracing::info!(
                "reasoner: using the prompt stored in adapter {} (the configured one differs)",
                path.display()
            );
        }
        let ids = encode_prompt(&self.tokenizer, &a.prompt)?;
        if merged {
            fresh.merge_lora()?;
        }
        self.prefix = std::sync::OnceLock::new();
        self.decoder = fresh;
        self.head = head;
        self.lora = a.lora;
        self.prompt = a.prompt;
        self.prompt_ids = ids;
        Ok(())
    }
}

/// A pool of `n` threads for the forward pass.
fn thread_pool(n: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("aullm-reasoner-{i}"))
        .build()
        .context("cannot start the reasoner's threads")
}

/// Runs `f` in `pool`, or on the caller's pool when None.
fn in_pool<R: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Token ids of a prompt, which must not be empty.
fn encode_prompt(tok: &PromptTokenizer, prompt: &str) -> Result<Vec<u32>> {
    let ids = tok.encode(prompt)?;
    ensure!(
        !ids.is_empty(),
        "the reasoner's task prompt {prompt:?} has no tokens"
    );
    Ok(ids)
}
