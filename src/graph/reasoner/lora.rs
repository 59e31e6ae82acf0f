//! Low-rank adaptation (LoRA, Hu et al. 2022) of the frozen attention projections:
//! `y = x W^T + b + (alpha / r) * (x A^T) B^T`, with A and B trainable candle `Var`s.

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Tensor, Var};

use super::int8::Int8Matrix;
use super::{init, rows_matmul};
use std::sync::Arc;

/// An attention projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Output projection.
    O,
}

impl Target {
    /// All targets, in layer order.
    pub const ALL: [Target; 4] = [Target::Q, Target::K, Target::V, Target::O];

    /// Parses "q", "k", "v" or "o" (also "q_proj"-style names).
    pub fn parse(s: &str) -> Result<Target> {
        match s.trim().trim_end_matches("_proj") {
            "q" => Ok(Target::Q),
            "k" => Ok(Target::K),
            "v" => Ok(Target::V),
            "o" => Ok(Target::O),
            other => bail!("LoRA target {other:?}: expected one of \"q\", \"k\", \"v\", \"o\""),
        }
    }

    /// The short name used in configs and adapter files.
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
        }
    }
}

/// Rank, scale and targets of the adapters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r of A (r x in) and B (out x r).
    pub rank: usize,
    /// Scale numerator: updates are multiplied by alpha / r.
    pub alpha: f64,
    /// Projections adapted in every layer (empty: no LoRA).
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    /// The paper's setting: r = 16, alpha = 32 on the query and value projections.
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            targets: vec![Target::Q, Target::V],
        }
    }
}

impl LoraConfig {
    /// Builds and checks a configuration from names ("q", "v", ...).
    pub fn new(rank: usize, alpha: f64, targets: &[String]) -> Result<LoraConfig> {
        let mut t = targets
            .iter()
            .map(|s| Target::parse(s))
            .collect::<Result<Vec<_>>>()?;
        t.sort();
        let n = t.len();
        t.dedup();
        ensure!(
            t.len() == n,
            "LoRA targets {targets:?} name a projection twice"
        );
        let cfg = LoraConfig {
            rank,
            alpha,
            targets: t,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks rank and alpha.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.rank >= 1, "LoRA rank must be at least 1");
        ensure!(
            self.alpha.is_finite() && self.alpha > 0.0,
            "LoRA alpha = {}: expected a positive number",
            self.alpha
        );
        Ok(())
    }

    /// The factor alpha / r applied to B A.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether `t` is adapted.
    pub fn targets(&self, t: Target) -> bool {
        self.targets.contains(&t)
    }
}

/// The trainable pair of one projection, kept in f32 whatever the base dtype (optimiser state
/// and small updates need the precision).
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Down projection, (rank, in).
    pub a: Var,
    /// Up projection, (out, rank); zero at initialisation so a new adapter changes nothing.
    pub b: Var,
    /// alpha / rank.
    pub scale: f64,
}

/// A frozen linear map with an optional LoRA pair and, at inference, its merged weight.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraPair>,
    /// `W + scale * B A`, kept beside W so unmerging is exact (no subtraction round-off).
    merged: Option<Tensor>,
    /// W in 8-bit blocks with the pair beside it in f32, read by CPU inference when packed.
    int8: Option<Arc<Int8Matrix>>,
}

impl LoraLinear {
    /// A frozen projection `weight` (out, in) with an optional bias (out).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> LoraLinear {
        LoraLinear {
            weight,
            bias,
            lora: None,
            merged: None,
            int8: None,
        }
    }

    /// (out, in) of the base weight.
    pub fn dims(&self) -> Result<(usize, usize)> {
        Ok(self.weight.dims2()?)
    }

    /// The frozen base weight (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Attaches a fresh pair: A uniform in +-1/sqrt(in) (PyTorch's LoRA init), B zero.
    pub fn attach(&mut self, rank: usize, scale: f64, seed: u64) -> Result<()> {
        let (out, inp) = self.dims()?;
        let dev = self.weight.device();
        let bound = 1.0 / (inp as f32).sqrt();
        let a = init::uniform(seed, (rank, inp), bound, DType::F32, dev)?;
        let b = Tensor::zeros((out, rank), DType::F32, dev)?;
        self.set_pair(Var::from_tensor(&a)?, Var::from_tensor(&b)?, scale)
    }

    /// Attaches given A (rank, in) and B (out, rank), checking their shapes.
    pub fn set_pair(&mut self, a: Var, b: Var, scale: f64) -> Result<()> {
        let (out, inp) = self.dims()?;
        let (ra, ia) = a.as_tensor().dims2()?;
        let (ob, rb) = b.as_tensor().dims2()?;
        ensure!(
            ia == inp && ob == out && ra == rb,
            "LoRA pair shapes A {:?} B {:?} do not fit a {out}x{inp} projection",
            a.as_tensor().dims(),
            b.as_tensor().dims()
        );
        self.lora = Some(LoraPair { a, b, scale });
        self.merged = None;
        self.int8 = None;
        Ok(())
    }

    /// The attached pair, if any.
    pub fn pair(&self) -> Option<&LoraPair> {
        self.lora.as_ref()
    }

    /// Whether the forward pass uses a merged weight.
    pub fn is_merged(&self) -> bool {
        self.merged.is_some()
    }

    /// Folds the current pair into a merged weight (one matmul per forward instead of three).
    pub fn merge(&mut self) -> Result<()> {
        let Some(p) = &self.lora else {
            return Ok(());
        };
        let ba = p.b.as_tensor().matmul(p.a.as_tensor())?;
        let w = match super::load_convert::merged_rounded(&self.weight, &ba, p.scale) {
            Some(w) => w?,
            None => (self.weight.to_dtype(DType::F32)? + (ba * p.scale)?)?
                .to_dtype(self.weight.dtype())?,
        };
        // Keep the kernel's contiguous layout; detached, since A and B are variables and
        // inference through a tracked weight would record a graph (and pass it on to every
        // activation after it).
        let w = w.contiguous()?.detach();
        self.merged = Some(w);
        self.int8 = None;
        Ok(())
    }

    /// Packs W into 8-bit blocks for the CPU kernel, with the pair (if any) beside it in f32,
    /// so merged or not the result is the same map; a matrix whose rows are not whole blocks
    /// stays as it is.
    pub fn pack_int8(&mut self) -> Result<()> {
        if !self.weight.device().is_cpu() {
            return Ok(());
        }
        self.int8 = match (Int8Matrix::quantize(&self.weight)?, &self.lora) {
            (Some(q), Some(p)) => {
                Some(q.with_low_rank(p.a.as_tensor(), p.b.as_tensor(), p.scale)?)
            }
            (q, _) => q,
        }
        .map(Arc::new);
        Ok(())
    }

    /// Whether inference reads an 8-bit copy of the weight.
    pub fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// Removes the pair, any merged weight and any 8-bit copy.
    pub fn clear(&mut self) {
        self.lora = None;
        self.merged = None;
        self.int8 = None;
    }

    /// Drops the merged weight (and the 8-bit copy): the forward pass reads W and the live pair
    /// again (for training).
    pub fn unmerge(&mut self) {
        self.merged = None;
        self.int8 = None;
    }

    /// Applies the map to `x` (..., in) -> (..., out); leading dims are flattened into one matmul.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (&inp, lead) = dims.split_last().context("LoRA linear input has no dims")?;
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, inp))?;
        let w = self.merged.as_ref().unwrap_or(&self.weight);
        let int8 = self.int8.as_ref().filter(|q| q.serves(&x2));
        let mut y = match int8 {
            Some(q) => q.matmul(&x2)?,
            None => match rows_matmul::try_rows_matmul(&x2, w)? {
                Some(y) => y,
                None if x2.dtype() == w.dtype() => x2.matmul(&w.t()?)?,
                // Half-precision weights under f32 activations off the kernel's path: correct, slow.
                None => x2.matmul(&w.to_dtype(x2.dtype())?.t()?)?,
            },
        };
        if self.merged.is_none()
            && int8.is_none()
            && let Some(p) = &self.lora
        {
            let xf = x2.to_dtype(DType::F32)?;
            let up = xf
                .matmul(&p.a.as_tensor().t()?)?
                .matmul(&p.b.as_tensor().t()?)?;
            let dt = y.dtype();
            y = (y + (up * p.scale)?.to_dtype(dt)?)?;
        }
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_dims = lead.to_vec();
        out_dims.push(y.dim(1)?);
        Ok(y.reshape(out_dims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::max_abs_diff;
    use candle_core::Device;

    fn linear() -> LoraLinear {
        let dev = Device::Cpu;
        let w = init::uniform(1, (6, 4), 0.5, DType::F32, &dev).unwrap();
        let b = init::uniform(2, 6, 0.5, DType::F32, &dev).unwrap();
        LoraLinear::new(w, Some(b))
    }

    #[test]
    fn fresh_pair_is_a_no_op_and_merge_matches_unmerged() {
        let mut l = linear();
        let x = init::uniform(3, (2, 3, 4), 1.0, DType::F32, &Device::Cpu).unwrap();
        let base = l.forward(&x).unwrap();
        assert_eq!(base.dims(), &[2, 3, 6]);
        l.attach(2, 2.0, 9).unwrap();
        assert_eq!(max_abs_diff(&base, &l.forward(&x).unwrap()), 0.0);
        // Non-zero B changes the output; merged and unmerged agree.
        let p = l.pair().unwrap().clone();
        p.b.set(&init::uniform(4, (6, 2), 0.5, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let un = l.forward(&x).unwrap();
        assert!(max_abs_diff(&base, &un) > 1e-3);
        l.merge().unwrap();
        assert!(l.is_merged());
        let merged = l.forward(&x).unwrap();
        assert!(max_abs_diff(&un, &merged) < 1e-5);
        // Inference through merged weights records no graph (A and B are variables).
        assert!(un.track_op() && !merged.track_op());
        l.unmerge();
        assert_eq!(max_abs_diff(&un, &l.forward(&x).unwrap()), 0.0);
    }

    #[test]
    fn eight_bit_packing_keeps_the_pair_in_full_precision() {
        let dev = Device::Cpu;
        let w = init::uniform(1, (40, 64), 0.5, DType::F32, &dev).unwrap();
        // Where the CPU rounds the rows to 8 bits too, each value moves at most half a step
        // (max |x| / 254 = 1/254 here) times the weight row's absolute sum (the pair reads f32).
        let rows = if crate::graph::reasoner::int8::eight_bit_rows_here() {
            let row_sums = w.abs().unwrap().sum(1).unwrap().max(0).unwrap();
            row_sums.to_scalar::<f32>().unwrap() / 254.0
        } else {
            0.0
        };
        let mut l = LoraLinear::new(w, None);
        l.attach(4, 2.0, 9).unwrap();
        let p = l.pair().unwrap().clone();
        p.b.set(&init::uniform(4, (40, 4), 0.5, DType::F32, &dev).unwrap())
            .unwrap();
        let x = init::uniform(3, (1, 9, 64), 1.0, DType::F32, &dev).unwrap();
        let exact = l.forward(&x).unwrap();
        l.merge().unwrap();
        l.pack_int8().unwrap();
        assert!(l.is_int8());
        let packed = l.forward(&x).unwrap();
        // W is rounded (at most 1/510 of a block's range, here 1/510 of ~1.0), and the rows.
        let d = max_abs_diff(&exact, &packed);
        assert!(d > 0.0 && d < 0.02 + rows, "{d} (rows' share {rows})");
        // Training drops the copy: gradients flow through W and the live pair again.
        l.unmerge();
        assert!(!l.is_int8());
        assert_eq!(max_abs_diff(&exact, &l.forward(&x).unwrap()), 0.0);
    }

    #[test]
    fn config_parsing() {
        let c = LoraConfig::new(8, 16.0, &["v".into(), "q_proj".into()]).unwrap();
        assert_eq!(c.targets, vec![Target::Q, Target::V]);
        assert_eq!(c.scale(), 2.0);
        assert!(LoraConfig::new(8, 16.0, &["q".into(), "q".into()]).is_err());
        assert!(LoraConfig::new(8, 16.0, &["up".into()]).is_err());
        assert!(LoraConfig::new(0, 16.0, &[]).is_err());
    }
}
