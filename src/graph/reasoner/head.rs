//! The linear AU classification head: y = W_cls h_out + b_cls on the last position's final hidden
//! state (paper, "LLM-Driven Deduction"); the sigmoid is left to the loss and to decisions.

use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor, Var};

use super::init;

/// Trainable (num_aus x D) weight and (num_aus) bias, in f32.
#[derive(Debug, Clone)]
pub struct AuHead {
    /// W_cls, (num_aus, D).
    pub weight: Var,
    /// b_cls, (num_aus).
    pub bias: Var,
}

impl AuHead {
    /// A head initialised like PyTorch's `nn.Linear` (uniform in +-1/sqrt(D)).
    pub fn new(hidden: usize, num_aus: usize, seed: u64, device: &Device) -> Result<AuHead> {
        ensure!(num_aus >= 1, "the AU head needs at least one AU");
        let bound = 1.0 / (hidden as f32).sqrt();
        let w = init::uniform(
            init::derive_seed(seed, "head.weight"),
            (num_aus, hidden),
            bound,
            DType::F32,
            device,
        )?;
        let b = init::uniform(
            init::derive_seed(seed, "head.bias"),
            num_aus,
            bound,
            DType::F32,
            device,
        )?;
        Ok(AuHead {
            weight: Var::from_tensor(&w)?,
            bias: Var::from_tensor(&b)?,
        })
    }

    /// Sets the weight and bias to zero (the head then adds nothing until trained).
    pub fn zero(&self) -> Result<()> {
        self.weight.set(&self.weight.as_tensor().zeros_like()?)?;
        self.bias.set(&self.bias.as_tensor().zeros_like()?)?;
        Ok(())
    }

    /// Number of AUs predicted.
    pub fn num_aus(&self) -> usize {
        self.weight.as_tensor().dims()[0]
    }

    /// AU logits (B, num_aus) of final hidden states `h` (B, D).
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let h = h.to_dtype(DType::F32)?;
        Ok(h.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}
