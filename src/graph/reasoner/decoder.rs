//! The decoder: RMSNorm, rotary embeddings, grouped-query attention with LoRA on its projections,
//! SwiGLU MLP. Covers the llama (SmolLM2) and qwen2 (DeepSeek-R1-Distill-Qwen) families; base
//! weights are plain tensors (frozen), only the LoRA pairs are `Var`s.

use anyhow::{Context, Result, ensure};
use candle_core::{DType, Device, Tensor, Var};

use super::arch::DecoderConfig;
use super::init;
use super::lora::{LoraConfig, LoraLinear, Target};
use super::prefix::PrefixCache;
use super::weights::{TensorSource, WeightName};

/// RMSNorm with a learned scale (frozen).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's fused kernels record no backward op: when gradients flow (training), use the
        // composed forms, which do.
        Ok(if x.track_op() {
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps)?
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps)?
        })
    }
}

/// Rotary embedding tables (positions x head_dim/2).
#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rope {
    fn new(cfg: &DecoderConfig, dtype: DType, device: &Device) -> Result<Rope> {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
            .collect();
        let n = cfg.max_positions;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in &inv_freq {
                let a = p as f64 * f;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let mk = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (n, half), device)?.to_dtype(dtype)?)
        };
        Ok(Rope {
            cos: mk(cos)?,
            sin: mk(sin)?,
            interleaved: cfg.rope_interleaved,
        })
    }

    /// Rotates `x` (B, H, S, hd) as positions `pos..pos+S`.
    fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let s = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, s)?;
        let sin = self.sin.narrow(0, pos, s)?;
        let x = x.contiguous()?;
        Ok(match (self.interleaved, x.track_op()) {
            (true, false) => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
            (false, false) => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            (true, true) => candle_nn::rotary_emb::rope_i_slow(&x, &cos, &sin)?,
            (false, true) => candle_nn::rotary_emb::rope_slow(&x, &cos, &sin)?,
        })
    }
}

/// Grouped-query self-attention.
#[derive(Debug, Clone)]
struct Attention {
    q: LoraLinear,
    k: LoraLinear,
    v: LoraLinear,
    o: LoraLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn proj_mut(&mut self, t: Target) -> &mut LoraLinear {
        match t {
            Target::Q => &mut self.q,
            Target::K => &mut self.k,
            Target::V => &mut self.v,
            Target::O => &mut self.o,
        }
    }

    fn proj(&self, t: Target) -> &LoraLinear {
        match t {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
        }
    }

    /// Attends `x` (B, S, D) at positions `pos..` over `past` and itself; returns the output and
    /// this call's rotated keys and values (B, kv_heads, S, hd).
    fn forward(
        &self,
        x: &Tensor,
        pos: usize,
        rope: &Rope,
        past: Option<(&Tensor, &Tensor)>,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, s, _) = x.dims3()?;
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let split = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, s, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = rope.apply(&split(self.q.forward(x)?, h)?, pos)?;
        let k = rope.apply(&split(self.k.forward(x)?, kvh)?, pos)?;
        let v = split(self.v.forward(x)?, kvh)?;
        // GQA without repeating K/V: the query heads sharing a kv head are consecutive, so
        // (B, H, S, hd) regroups for free as (B, kv_heads, groups * S, hd).
        let groups = h / kvh;
        let q = q.reshape((b, kvh, groups * s, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let y = match past {
            None => softmax(&scores)?.matmul(&v)?,
            Some((pk, pv)) => attend_with_prefix(&q, scores, &v, pk, pv, scale)?,
        };
        let y = y
            .reshape((b, h, s, hd))?
            .transpose(1, 2)?
            .reshape((b, s, h * hd))?;
        Ok((self.o.forward(&y)?, (k, v)))
    }
}

/// Softmax over the last axis: the fused kernel, or the differentiable composition when gradients flow.
fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(if x.track_op() {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(x)?
    })
}

/// Attention of `q` (B, kv_heads, M, hd) over a batch-1 prefix `pk`, `pv` (1, kv_heads, P, hd)
/// and the batch's own keys (their scaled, masked `scores_new` (B, kv_heads, M, S)) and values `v`.
/// The prefix is never copied per clip: its part runs as one matmul per kv head with the batch
/// folded into the rows.
fn attend_with_prefix(
    q: &Tensor,
    scores_new: Tensor,
    v: &Tensor,
    pk: &Tensor,
    pv: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, kvh, m, hd) = q.dims4()?;
    let p = pk.dim(2)?;
    let s = v.dim(2)?;
    let rows = |t: &Tensor, w: usize| -> Result<Tensor> {
        // (B, kvh, M, w) -> (kvh, B * M, w)
        Ok(t.transpose(0, 1)?.contiguous()?.reshape((kvh, b * m, w))?)
    };
    let unrows = |t: Tensor, w: usize| -> Result<Tensor> {
        // (kvh, B * M, w) -> (B, kvh, M, w)
        Ok(t.reshape((kvh, b, m, w))?.transpose(0, 1)?.contiguous()?)
    };
    let scores_prefix = (rows(q, hd)?.matmul(&pk.squeeze(0)?.t()?)? * scale)?;
    let scores = Tensor::cat(&[&unrows(scores_prefix, p)?, &scores_new], 3)?;
    let att = softmax(&scores)?;
    let y_prefix = rows(&att.narrow(3, 0, p)?, p)?.matmul(&pv.squeeze(0)?)?;
    let y_new = att.narrow(3, p, s)?.contiguous()?.matmul(v)?;
    Ok((unrows(y_prefix, hd)? + y_new)?)
}

/// SwiGLU MLP: down(silu(gate x) * up x).
#[derive(Debug, Clone)]
struct Mlp {
    gate: LoraLinear,
    up: LoraLinear,
    down: LoraLinear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        let u = self.up.forward(x)?;
        self.down.forward(&(g * u)?)
    }
}

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
struct Layer {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

/// The decoder stack with its embedding table and final norm.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecoderConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rope: Rope,
    dtype: DType,
    device: Device,
    /// Whether merged weights are packed into 8-bit blocks for CPU inference.
    int8: bool,
}

impl Decoder {
    /// Loads every tensor `cfg` needs from `src` for computing in `dtype` on `device`. On the
    /// CPU, f16 and bf16 keep only the projection matrices in half precision (the streaming
    /// kernel converts them in registers, halving the memory read per clip) and compute in f32.
    pub fn load(
        cfg: &DecoderConfig,
        src: &mut dyn TensorSource,
        dtype: DType,
        device: &Device,
    ) -> Result<Decoder> {
        cfg.validate()?;
        let d = cfg.hidden_size;
        let (qd, kvd) = (
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        );
        let ff = cfg.intermediate_size;
        let (dtype, wdtype) = match dtype {
            DType::F16 | DType::BF16 if device.is_cpu() => (DType::F32, dtype),
            other => (other, other),
        };
        // Matrices (the embedding table too: it is read once per prompt) in the weight dtype;
        // norms and biases in the compute dtype.
        let wanted: Vec<(WeightName, Vec<usize>, DType)> = super::weights::expected_tensors(cfg)
            .into_iter()
            .map(|(n, shape)| {
                let t = if shape.len() == 2 { wdtype } else { dtype };
                (n, shape, t)
            })
            .collect();
        let mut loaded: std::collections::HashMap<WeightName, Tensor> = wanted
            .iter()
            .map(|w| w.0)
            .zip(src.load_all(&wanted, device)?)
            .collect();
        let mut get = |n: WeightName, _shape: &[usize]| {
            loaded
                .remove(&n)
                .with_context(|| format!("tensor {} was not loaded", n.gguf()))
        };
        let embed = get(WeightName::Embed, &[cfg.vocab_size, d])?;
        let eps = cfg.rms_norm_eps as f32;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let mut bias = |n: WeightName, len: usize| -> Result<Option<Tensor>> {
                if cfg.qkv_bias {
                    Ok(Some(get(n, &[len])?))
                } else {
                    Ok(None)
                }
            };
            let qb = bias(WeightName::QBias(i), qd)?;
            let kb = bias(WeightName::KBias(i), kvd)?;
            let vb = bias(WeightName::VBias(i), kvd)?;
            let attn = Attention {
                q: LoraLinear::new(get(WeightName::Q(i), &[qd, d])?, qb),
                k: LoraLinear::new(get(WeightName::K(i), &[kvd, d])?, kb),
                v: LoraLinear::new(get(WeightName::V(i), &[kvd, d])?, vb),
                o: LoraLinear::new(get(WeightName::O(i), &[d, qd])?, None),
                heads: cfg.num_heads,
                kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
            };
            let mlp = Mlp {
                gate: LoraLinear::new(get(WeightName::Gate(i), &[ff, d])?, None),
                up: LoraLinear::new(get(WeightName::Up(i), &[ff, d])?, None),
                down: LoraLinear::new(get(WeightName::Down(i), &[d, ff])?, None),
            };
            layers.push(Layer {
                attn_norm: RmsNorm {
                    weight: get(WeightName::AttnNorm(i), &[d])?,
                    eps,
                },
                attn,
                mlp_norm: RmsNorm {
                    weight: get(WeightName::MlpNorm(i), &[d])?,
                    eps,
                },
                mlp,
            });
        }
        let norm = RmsNorm {
            weight: get(WeightName::FinalNorm, &[d])?,
            eps,
        };
        Ok(Decoder {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            rope: Rope::new(cfg, dtype, device)?,
            dtype,
            device: device.clone(),
            int8: false,
        })
    }

    /// The shapes this decoder was built with.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// Compute dtype of the activations (the projection weights may be stored in half
    /// precision on the CPU: `weight_dtype`).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Storage dtype of the projection matrices.
    pub fn weight_dtype(&self) -> DType {
        self.layers
            .first()
            .map_or(self.dtype, |l| l.attn.q.weight().dtype())
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embeddings (1, n, D) of token ids.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let v = self.cfg.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= v) {
            anyhow::bail!("token id {bad} is outside the vocabulary of {v}");
        }
        let ids = Tensor::new(ids, &self.device)?;
        Ok(self
            .embed
            .index_select(&ids, 0)?
            .to_dtype(self.dtype)?
            .unsqueeze(0)?)
    }

    /// Attaches fresh LoRA pairs (B = 0, so outputs are unchanged) to the configured projections of
    /// every layer, replacing existing ones. A's values derive from `seed`.
    pub fn attach_lora(&mut self, lora: &LoraConfig, seed: u64) -> Result<()> {
        lora.validate()?;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for &t in &lora.targets {
                let s = init::derive_seed(seed, &format!("lora.{i}.{}", t.name()));
                layer.attn.proj_mut(t).attach(lora.rank, lora.scale(), s)?;
            }
        }
        Ok(())
    }

    /// The LoRA pairs, as (layer, target, A, B), for optimisers and adapter files.
    pub fn lora_pairs(&self) -> Vec<(usize, Target, Var, Var)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for t in Target::ALL {
                if let Some(p) = layer.attn.proj(t).pair() {
                    out.push((i, t, p.a.clone(), p.b.clone()));
                }
            }
        }
        out
    }

    /// The frozen base weights of every attention projection (layer order, then q, k, v, o):
    /// training must leave them as loaded.
    pub fn base_attention_weights(&self) -> Vec<Tensor> {
        self.layers
            .iter()
            .flat_map(|l| Target::ALL.map(|t| l.attn.proj(t).weight().clone()))
            .collect()
    }

    /// Installs a pair on layer `layer`'s projection `t` (shapes checked).
    pub fn set_lora_pair(
        &mut self,
        layer: usize,
        t: Target,
        a: Var,
        b: Var,
        scale: f64,
    ) -> Result<()> {
        let n = self.layers.len();
        let l = self
            .layers
            .get_mut(layer)
            .with_context(|| format!("layer {layer} does not exist (the decoder has {n})"))?;
        l.attn.proj_mut(t).set_pair(a, b, scale)
    }

    /// Removes every LoRA pair and merged weight (the base decoder again).
    pub fn clear_lora(&mut self) {
        for l in &mut self.layers {
            for t in Target::ALL {
                l.attn.proj_mut(t).clear();
            }
        }
    }

    /// (out, in) of layer 0's projection `t`.
    pub fn proj_dims(&self, t: Target) -> Result<(usize, usize)> {
        self.layers
            .first()
            .context("decoder has no layers")?
            .attn
            .proj(t)
            .dims()
    }

    /// Folds every LoRA pair into its projection's weight (faster inference), packing the
    /// results into 8-bit blocks after `use_int8`.
    pub fn merge_lora(&mut self) -> Result<()> {
        for l in &mut self.layers {
            for t in Target::ALL {
                l.attn.proj_mut(t).merge()?;
            }
        }
        if self.int8 {
            self.pack_int8()?;
        }
        Ok(())
    }

    /// Returns to base weight + live pairs (training: gradients reach A and B).
    pub fn unmerge_lora(&mut self) {
        for l in &mut self.layers {
            for t in Target::ALL {
                l.attn.proj_mut(t).unmerge();
            }
            for p in [&mut l.mlp.gate, &mut l.mlp.up, &mut l.mlp.down] {
                p.unmerge();
            }
        }
    }

    /// From now on, inference on the CPU reads the projection matrices (merged ones as merged)
    /// in 8-bit blocks (`int8`); training's `unmerge_lora` drops the copies until the next merge.
    pub fn use_int8(&mut self) -> Result<()> {
        self.int8 = true;
        self.pack_int8()
    }

    /// Like [`use_int8`](Self::use_int8), but the copies are made by the next `merge_lora` (of
    /// the merged weights), not now.
    pub fn pack_int8_at_merge(&mut self) {
        self.int8 = true;
    }

    /// Packs every projection matrix that has no 8-bit copy yet (a merge drops its copy).
    fn pack_int8(&mut self) -> Result<()> {
        for l in &mut self.layers {
            let Layer { attn, mlp, .. } = l;
            let Attention { q, k, v, o, .. } = attn;
            for p in [q, k, v, o, &mut mlp.gate, &mut mlp.up, &mut mlp.down] {
                if !p.is_int8() {
                    p.pack_int8()?;
                }
            }
        }
        Ok(())
    }

    /// Whether inference reads 8-bit copies of the projection matrices (after `use_int8`, while
    /// nothing dropped them).
    pub fn is_int8(&self) -> bool {
        self.int8 && self.layers.first().is_some_and(|l| l.mlp.up.is_int8())
    }

    /// Whether projections currently use merged weights.
    pub fn is_merged(&self) -> bool {
        self.layers
            .iter()
            .any(|l| Target::ALL.iter().any(|&t| l.attn.proj(t).is_merged()))
    }

    /// Additive causal mask over `s` new positions (every cached prefix position is visible to
    /// all of them), laid out for the grouped scores: groups * s rows, s columns; None when s = 1.
    fn mask(&self, s: usize) -> Result<Option<Tensor>> {
        if s <= 1 {
            return Ok(None);
        }
        let groups = self.cfg.num_heads / self.cfg.num_kv_heads;
        let mut m = Vec::with_capacity(groups * s * s);
        for _ in 0..groups {
            for i in 0..s {
                m.extend((0..s).map(|j| if j <= i { 0f32 } else { f32::NEG_INFINITY }));
            }
        }
        let m = Tensor::from_vec(m, (groups * s, s), &self.device)?.to_dtype(self.dtype)?;
        Ok(Some(m))
    }

    /// Runs the layers over `x` (B, S, D) after `past`; returns the pre-norm residual stream and,
    /// when `keep` is set, every layer's new keys and values.
    fn run(
        &self,
        x: &Tensor,
        past: Option<&PrefixCache>,
        keep: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let (_, s, d) = x
            .dims3()
            .context("decoder input must be (batch, positions, width)")?;
        ensure!(
            d == self.cfg.hidden_size,
            "decoder input width {d} differs from the model width {}",
            self.cfg.hidden_size
        );
        ensure!(s > 0, "decoder input has no positions");
        let p = past.map_or(0, PrefixCache::len);
        if let Some(c) = past {
            ensure!(
                c.num_layers() == self.layers.len(),
                "prefix cache has {} layers, the decoder {}",
                c.num_layers(),
                self.layers.len()
            );
        }
        ensure!(
            p + s <= self.cfg.max_positions,
            "{} positions exceed the decoder's rotary table of {}",
            p + s,
            self.cfg.max_positions
        );
        let mask = self.mask(s)?;
        // Callers may pass any layout (broadcasts, transposes); the fused kernels want rows.
        let mut h = x.to_dtype(self.dtype)?.contiguous()?;
        let mut kv = Vec::with_capacity(if keep { self.layers.len() } else { 0 });
        for (i, layer) in self.layers.iter().enumerate() {
            let n = layer.attn_norm.forward(&h)?;
            let past_i = past.map(|c| c.layer(i));
            let (a, new_kv) = layer
                .attn
                .forward(&n, p, &self.rope, past_i, mask.as_ref())?;
            h = (h + a)?;
            let n = layer.mlp_norm.forward(&h)?;
            h = (&h + layer.mlp.forward(&n)?)?;
            if keep {
                kv.push(new_kv);
            }
        }
        Ok((h, kv))
    }

    /// Final hidden states (B, S, D) of input embeddings `x` (B, S, D) placed after `past`
    /// (the cached prompt prefix) or at position 0.
    pub fn forward(&self, x: &Tensor, past: Option<&PrefixCache>) -> Result<Tensor> {
        let (h, _) = self.run(x, past, false)?;
        self.norm.forward(&h)
    }

    /// Final hidden state (B, D) of the last position only (what the AU head reads).
    pub fn forward_last(&self, x: &Tensor, past: Option<&PrefixCache>) -> Result<Tensor> {
        let (h, _) = self.run(x, past, false)?;
        let s = h.dim(1)?;
        self.norm
            .forward(&h.narrow(1, s - 1, 1)?.squeeze(1)?.contiguous()?)
    }

    /// Runs a prompt prefix `x` (1, P, D) once and keeps its keys and values for later calls.
    pub fn prefill(&self, x: &Tensor) -> Result<PrefixCache> {
        ensure!(
            x.dim(0)? == 1,
            "a prompt prefix is computed at batch 1 and broadcast over batches"
        );
        let (_, kv) = self.run(x, None, true)?;
        PrefixCache::new(kv)
    }

    /// Next-token logits (..., vocab) from final hidden states through the tied embedding table
    /// (reference checks against language-model implementations; the AU head does not use it).
    pub fn token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        ensure!(
            self.cfg.tie_embeddings,
            "this decoder's output projection is not its embedding table, and aullm does not load it"
        );
        let d = self.cfg.hidden_size;
        let dims = hidden.dims().to_vec();
        let rows = hidden.elem_count() / d;
        let y = hidden
            .reshape((rows, d))?
            .to_dtype(self.dtype)?
            .matmul(&self.embed.to_dtype(self.dtype)?.t()?)?;
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.cfg.vocab_size;
        }
        Ok(y.reshape(out)?)
    }
}
