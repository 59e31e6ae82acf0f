//! Decoder shapes and family (llama or qwen2), read from a GGUF file's metadata or an HF config.json.

use anyhow::{Context, Result, bail, ensure};
use candle_core::quantized::gguf_file;
use serde::Deserialize;
use std::path::Path;

/// The decoder families aullm's decoder implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama (SmolLM2): no attention biases.
    Llama,
    /// Qwen2 (DeepSeek-R1-Distill-Qwen): biases on q, k and v.
    Qwen2,
}

impl Family {
    /// Parses an architecture name as GGUF (`general.architecture`) or HF (`model_type`) spell it.
    pub fn parse(name: &str, file: &Path) -> Result<Family> {
        match name {
            "llama" => Ok(Family::Llama),
            "qwen2" => Ok(Family::Qwen2),
            other => bail!(
                "unsupported architecture {other:?} in {}: aullm's decoder covers llama (e.g. SmolLM2) \
                 and qwen2 (e.g. DeepSeek-R1-Distill-Qwen)",
                file.display()
            ),
        }
    }

    /// The name as GGUF and HF spell it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
        }
    }
}

/// Everything that fixes the decoder's shapes and arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// llama or qwen2.
    pub family: Family,
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Model width D (the width of T_v and tau_au).
    pub hidden_size: usize,
    /// Inner width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention: `num_heads` is a multiple of it).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Rotary embedding base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Biases on the q, k and v projections (qwen2).
    pub qkv_bias: bool,
    /// Rotary pairs (2i, 2i+1) instead of (i, i+d/2): llama GGUF files store q/k rows permuted
    /// for it (llama.cpp's converter), HF checkpoints do not.
    pub rope_interleaved: bool,
    /// The output projection is the embedding table (only used by `Decoder::token_logits`).
    pub tie_embeddings: bool,
    /// Longest sequence the rotary tables cover.
    pub max_positions: usize,
}

impl DecoderConfig {
    /// The shapes of DeepSeek-R1-Distill-Qwen-1.5B (the paper's reasoner), from its config.json.
    pub fn qwen2_1_5b() -> DecoderConfig {
        DecoderConfig {
            family: Family::Qwen2,
            vocab_size: 151_936,
            hidden_size: 1536,
            intermediate_size: 8960,
            num_layers: 28,
            num_heads: 12,
            num_kv_heads: 2,
            head_dim: 128,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            qkv_bias: true,
            rope_interleaved: false,
            tie_embeddings: false,
            // Prompts are tens of positions; the tables need not cover the model's 131072.
            max_positions: 4096,
        }
    }

    /// Checks the shapes are consistent (heads divide the width, GQA groups are whole).
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.hidden_size > 0 && self.num_layers > 0 && self.vocab_size > 0,
            "decoder has zero width, layers or vocabulary: {self:?}"
        );
        ensure!(
            self.num_heads > 0 && self.num_kv_heads > 0,
            "decoder has zero heads: {self:?}"
        );
        ensure!(
            self.num_heads.is_multiple_of(self.num_kv_heads),
            "{} query heads are not a multiple of {} key/value heads",
            self.num_heads,
            self.num_kv_heads
        );
        ensure!(
            self.head_dim > 0 && self.head_dim.is_multiple_of(2),
            "head width {} must be even (rotary pairs)",
            self.head_dim
        );
        ensure!(self.max_positions > 0, "max_positions must be positive");
        Ok(())
    }

    /// A short identity of the shapes, stored in adapters so one is never loaded onto another base.
    pub fn fingerprint(&self) -> String {
        format!(
            "{} d{} l{} h{} kv{} hd{} ff{} v{} rope{}{}",
            self.family.name(),
            self.hidden_size,
            self.num_layers,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.intermediate_size,
            self.vocab_size,
            self.rope_theta,
            if self.rope_interleaved {
                "-interleaved"
            } else {
                ""
            }
        )
    }

    /// Reads the shapes from a GGUF file's metadata (`{arch}.block_count`, ...); the vocabulary
    /// size comes from the embedding tensor.
    pub fn from_gguf(ct: &gguf_file::Content, file: &Path) -> Result<DecoderConfig> {
        let arch = meta_str(ct, "general.architecture", file)?;
        let family = Family::parse(arch, file)?;
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<usize> {
            let k = key(k);
            let v = ct
                .metadata
                .get(&k)
                .with_context(|| format!("{}: metadata key {k} is missing", file.display()))?;
            Ok(v.to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
                .with_context(|| {
                    format!("{}: metadata key {k} is not an integer", file.display())
                })? as usize)
        };
        let f = |k: &str| -> Option<f64> {
            let v = ct.metadata.get(&key(k))?;
            v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok()
        };
        if let Some(v) = ct.metadata.get(&key("rope.scaling.type")) {
            let t = v.to_string().map(String::as_str).unwrap_or("?");
            ensure!(
                t == "none",
                "{}: rope scaling {t:?} is not supported (only plain rotary embeddings)",
                file.display()
            );
        }
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads = u("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = hidden_size / num_heads.max(1);
        if let Ok(rope_dim) = u("rope.dimension_count") {
            ensure!(
                rope_dim == head_dim,
                "{}: partial rotary embeddings ({rope_dim} of {head_dim} dims) are not supported",
                file.display()
            );
        }
        let embd = ct
            .tensor_infos
            .get("token_embd.weight")
            .with_context(|| format!("missing tensor token_embd.weight in {}", file.display()))?;
        let dims = embd.shape.dims();
        ensure!(
            dims.len() == 2 && dims[1] == hidden_size,
            "tensor token_embd.weight in {} has shape {dims:?}, expected [vocab, {hidden_size}]",
            file.display()
        );
        let cfg = DecoderConfig {
            family,
            vocab_size: dims[0],
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: f("rope.freq_base").unwrap_or(10_000.0),
            rms_norm_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            qkv_bias: family == Family::Qwen2,
            // llama.cpp permutes llama q/k rows for the interleaved rotation; qwen2 uses NeoX order.
            rope_interleaved: family == Family::Llama,
            tie_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            max_positions: u("context_length").unwrap_or(4096).min(8192),
        };
        cfg.validate()
            .with_context(|| format!("decoder shapes in {}", file.display()))?;
        Ok(cfg)
    }

    /// Reads the shapes from a Hugging Face config.json (`file` names it in errors).
    pub fn from_hf_json(text: &str, file: &Path) -> Result<DecoderConfig> {
        let c: HfConfig = serde_json::from_str(text)
            .with_context(|| format!("{} is not a decoder config.json", file.display()))?;
        let family = Family::parse(&c.model_type, file)?;
        if let Some(act) = &c.hidden_act {
            ensure!(
                act == "silu",
                "{}: hidden_act {act:?} is not supported (SwiGLU with silu only)",
                file.display()
            );
        }
        if let Some(s) = &c.rope_scaling {
            ensure!(
                s.is_null(),
                "{}: rope_scaling {s} is not supported (only plain rotary embeddings)",
                file.display()
            );
        }
        let num_heads = c.num_attention_heads;
        let cfg = DecoderConfig {
            family,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads,
            num_kv_heads: c.num_key_value_heads.unwrap_or(num_heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / num_heads.max(1)),
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
            qkv_bias: match family {
                Family::Qwen2 => true,
                Family::Llama => c.attention_bias.unwrap_or(false),
            },
            rope_interleaved: false,
            tie_embeddings: c.tie_word_embeddings.unwrap_or(false),
            max_positions: c.max_position_embeddings.unwrap_or(4096).min(8192),
        };
        cfg.validate()
            .with_context(|| format!("decoder shapes in {}", file.display()))?;
        Ok(cfg)
    }
}

/// The config.json keys aullm reads (others, e.g. sliding windows longer than any prompt, are ignored).
#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rms_norm_eps: Option<f64>,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<usize>,
    attention_bias: Option<bool>,
    hidden_act: Option<String>,
    rope_scaling: Option<serde_json::Value>,
}

/// A string metadata value of a GGUF file, with the file and key in the error.
pub fn meta_str<'a>(ct: &'a gguf_file::Content, key: &str, file: &Path) -> Result<&'a str> {
    ct.metadata
        .get(key)
        .with_context(|| format!("{}: metadata key {key} is missing", file.display()))?
        .to_string()
        .map(String::as_str)
        .with_context(|| format!("{}: metadata key {key} is not a string", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_shapes_and_fingerprint() {
        let c = DecoderConfig::qwen2_1_5b();
        c.validate().unwrap();
        assert_eq!(c.num_heads * c.head_dim, c.hidden_size);
        assert_eq!(
            c.fingerprint(),
            "qwen2 d1536 l28 h12 kv2 hd128 ff8960 v151936 rope10000"
        );
    }

    #[test]
    fn hf_config_of_deepseek_r1_distill_qwen_1_5b() {
        // The model's published config.json (abridged to the keys that matter plus a few others).
        let text = r#"{"architectures":["Qwen2ForCausalLM"],"attention_dropout":0.0,
            "bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","hidden_size":1536,
            "initializer_range":0.02,"intermediate_size":8960,"max_position_embeddings":131072,
            "max_window_layers":21,"model_type":"qwen2","num_attention_heads":12,"num_hidden_layers":28,
            "num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":10000,"sliding_window":4096,
            "tie_word_embeddings":false,"torch_dtype":"bfloat16","use_cache":true,"use_mrope":false,
            "use_sliding_window":false,"vocab_size":151936}"#;
        let c = DecoderConfig::from_hf_json(text, Path::new("config.json")).unwrap();
        assert_eq!(
            c,
            DecoderConfig {
                max_positions: 8192,
                ..DecoderConfig::qwen2_1_5b()
            }
        );
    }

    #[test]
    fn unsupported_architecture_names_the_file() {
        let text = r#"{"model_type":"mistral","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2}"#;
        let err = DecoderConfig::from_hf_json(text, Path::new("/m/config.json")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("mistral") && msg.contains("/m/config.json"),
            "{msg}"
        );
    }
}
