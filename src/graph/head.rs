//! The MLP head on [T_v; τ_au] that produces N AU logits (the paper's "w/o LLM" ablation).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// Two-layer MLP over the flattened tokens.
#[derive(Debug, Clone)]
pub struct MlpHead {
    fc1: Linear,
    fc2: Linear,
}

impl MlpHead {
    /// `tokens` tokens of width `width` in, `outputs` logits out.
    pub fn new(
        tokens: usize,
        width: usize,
        hidden: usize,
        outputs: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            fc1: linear(tokens * width, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, outputs, vb.pp("fc2"))?,
        })
    }

    /// T_v [B, 1, D] and optional τ_au [B, N, D] → logits [B, N_out].
    pub fn forward(&self, content: &Tensor, instructions: Option<&Tensor>) -> Result<Tensor> {
        let tokens = match instructions {
            Some(t) => Tensor::cat(&[content, t], 1)?,
            None => content.clone(),
        };
        self.fc2
            .forward(&self.fc1.forward(&tokens.flatten_from(1)?)?.relu()?)
    }
}
