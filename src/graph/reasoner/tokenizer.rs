//! Prompt tokenisation: the tokenizer carried in a GGUF file's metadata, a Hugging Face
//! tokenizer.json, or (random-weight mode, no vocabulary) one pseudo-token per word.

use anyhow::{Context, Result, bail, ensure};
use candle_core::quantized::gguf_file;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::arch::meta_str;
use super::init;

/// GGUF token type of control tokens (`<|im_start|>` ...): matched whole in prompts.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens: matched whole, but not special.
const TOKEN_TYPE_USER: i32 = 4;

/// Turns the task prompt into token ids.
#[derive(Clone)]
pub enum PromptTokenizer {
    /// A real tokenizer, with a BOS id to prepend when the model asks for one.
    Real {
        /// The tokenizer.
        tokenizer: Box<Tokenizer>,
        /// Prepended to every prompt (GGUF `tokenizer.ggml.add_bos_token`).
        bos: Option<u32>,
    },
    /// Random-weight mode: each whitespace-separated word becomes one id hashed into the
    /// vocabulary, so the prefix has about a real prompt's length.
    Pseudo {
        /// Vocabulary size to hash into.
        vocab: u32,
    },
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptTokenizer::Real { bos, .. } => write!(f, "PromptTokenizer::Real(bos {bos:?})"),
            PromptTokenizer::Pseudo { vocab } => write!(f, "PromptTokenizer::Pseudo({vocab})"),
        }
    }
}

impl PromptTokenizer {
    /// The tokenizer a GGUF file carries (gpt2-style byte-level BPE).
    pub fn from_gguf(ct: &gguf_file::Content, file: &Path) -> Result<PromptTokenizer> {
        let model = meta_str(ct, "tokenizer.ggml.model", file)?;
        ensure!(
            model == "gpt2",
            "{}: tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\" only); \
             point reasoner.weights at the model's Hugging Face folder with tokenizer.json",
            file.display()
        );
        let pre = meta_str(ct, "tokenizer.ggml.pre", file).unwrap_or("default");
        let pre_tok = pre_tokenizer(pre).with_context(|| {
            format!(
                "{}: pre-tokenizer {pre:?} is not supported (smollm, starcoder, gpt-2, default); \
                 point reasoner.weights at the model's Hugging Face folder with tokenizer.json",
                file.display()
            )
        })?;
        let arr = |key: &str| -> Result<&Vec<gguf_file::Value>> {
            ct.metadata
                .get(key)
                .with_context(|| format!("{}: metadata key {key} is missing", file.display()))?
                .to_vec()
                .with_context(|| format!("{}: metadata key {key} is not an array", file.display()))
        };
        let tokens = arr("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<Vec<String>>>()
            .with_context(|| {
                format!(
                    "{}: tokenizer.ggml.tokens holds non-strings",
                    file.display()
                )
            })?;
        let merges: Merges = arr("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let s = v.to_string().ok()?;
                let (a, b) = s.split_once(' ')?;
                Some((a.to_string(), b.to_string()))
            })
            .collect::<Option<Merges>>()
            .with_context(|| {
                format!(
                    "{}: tokenizer.ggml.merges holds a malformed merge",
                    file.display()
                )
            })?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()?
                .iter()
                .map(|t| t.to_i32())
                .collect::<candle_core::Result<_>>()
                .with_context(|| {
                    format!(
                        "{}: tokenizer.ggml.token_type holds non-integers",
                        file.display()
                    )
                })?,
            None => Vec::new(),
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow::anyhow!("{}: cannot build the BPE model: {e}", file.display()))?;
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(pre_tok));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let mut special = Vec::new();
        let mut user = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            match types.get(i) {
                Some(&TOKEN_TYPE_CONTROL) => special.push(AddedToken::from(t.clone(), true)),
                Some(&TOKEN_TYPE_USER) => user.push(AddedToken::from(t.clone(), false)),
                _ => {}
            }
        }
        tok.add_special_tokens(special)
            .map_err(|e| anyhow::anyhow!("{}: special tokens: {e}", file.display()))?;
        tok.add_tokens(user)
            .map_err(|e| anyhow::anyhow!("{}: user tokens: {e}", file.display()))?;
        let add_bos = ct
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = if add_bos {
            let id = ct
                .metadata
                .get("tokenizer.ggml.bos_token_id")
                .and_then(|v| v.to_u32().ok())
                .with_context(|| {
                    format!(
                        "{}: add_bos_token is set but bos_token_id is missing",
                        file.display()
                    )
                })?;
            Some(id)
        } else {
            None
        };
        Ok(PromptTokenizer::Real {
            tokenizer: Box::new(tok),
            bos,
        })
    }

    /// A Hugging Face tokenizer.json (its own post-processor decides on BOS tokens).
    pub fn from_file(path: &Path) -> Result<PromptTokenizer> {
        let tok = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Ok(PromptTokenizer::Real {
            tokenizer: Box::new(tok),
            bos: None,
        })
    }

    /// Pseudo-tokens for a vocabulary of `vocab` ids (random-weight mode).
    pub fn pseudo(vocab: usize) -> PromptTokenizer {
        PromptTokenizer::Pseudo {
            vocab: vocab.clamp(1, u32::MAX as usize) as u32,
        }
    }

    /// Token ids of `text` (special-token markup such as `<|im_start|>` is honoured).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            PromptTokenizer::Real { tokenizer, bos } => {
                let enc = tokenizer
                    .encode(text, true)
                    .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
                let mut ids = Vec::with_capacity(enc.len() + 1);
                ids.extend(*bos);
                ids.extend_from_slice(enc.get_ids());
                Ok(ids)
            }
            PromptTokenizer::Pseudo { vocab } => Ok(text
                .split_whitespace()
                .map(|w| (init::derive_seed(0, w) % u64::from(*vocab)) as u32)
                .collect()),
        }
    }

    /// The text of `ids` (a real tokenizer only).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            PromptTokenizer::Real { tokenizer, .. } => tokenizer
                .decode(ids, false)
                .map_err(|e| anyhow::anyhow!("cannot decode ids: {e}")),
            PromptTokenizer::Pseudo { .. } => {
                bail!("random-weight mode has no vocabulary to decode")
            }
        }
    }
}

/// The pre-tokenizer llama.cpp names `pre`. SmolLM2 ("smollm") splits digits one by one, then
/// applies GPT-2's byte-level regex with no prefix space (candle's GGUF tokenizer added one,
/// shifting every id of a prompt's first word: STACK.md).
fn pre_tokenizer(pre: &str) -> Option<PreTokenizerWrapper> {
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])))
        }
        "gpt-2" | "gpt2" | "default" => Some(PreTokenizerWrapper::ByteLevel(byte_level)),
        _ => None,
    }
}
