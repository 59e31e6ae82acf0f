//! The prompt prefix cache: E_text is the same for every clip, so its keys and values are
//! computed once per process and every clip pays only for its own 1 + N positions.

use anyhow::{Result, ensure};
use candle_core::Tensor;

/// Rotated keys and values of every layer for the prompt prefix, at batch 1
/// (each (1, kv_heads, P, head_dim)); broadcast over a batch when used.
#[derive(Debug, Clone)]
pub struct PrefixCache {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl PrefixCache {
    /// Wraps per-layer (K, V) pairs of equal length.
    pub fn new(kv: Vec<(Tensor, Tensor)>) -> Result<PrefixCache> {
        let len = match kv.first() {
            Some((k, _)) => k.dim(2)?,
            None => 0,
        };
        for (k, v) in &kv {
            ensure!(
                k.dim(0)? == 1 && k.dim(2)? == len && v.dims() == k.dims(),
                "prefix cache layers disagree: K {:?}, V {:?}",
                k.dims(),
                v.dims()
            );
        }
        Ok(PrefixCache { kv, len })
    }

    /// Positions cached (the prompt's token count).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layers cached.
    pub fn num_layers(&self) -> usize {
        self.kv.len()
    }

    /// Layer `i`'s (K, V).
    pub fn layer(&self, i: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.kv[i];
        (k, v)
    }
}
