//! MGE-EFP, the multi-granularity evidence-enhanced fusion projector (AULLM++ eqs. 1-4): Laplacian
//! enhancement of F_mid, alignment to F_high, gated fusion, pooling and projection to the content token T_v.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder, init, linear};

use super::conv::conv2d_cf;
pub use super::laplacian::spatial_laplacian;
use crate::graph::config::Ablation;
use crate::graph::config::FrontendConfig;

/// Eq. 1: F_hf = F_mid + γ·∇²(F_mid), γ a learnable scalar (shape [1]).
pub fn high_frequency_enhance(f_mid: &Tensor, gamma: &Tensor) -> Result<Tensor> {
    f_mid.broadcast_add(&spatial_laplacian(f_mid)?.broadcast_mul(gamma)?)
}

/// Applies a channels-first 4D (C, N, H, W) operation to every frame of a channels-first
/// [C, B, T, H, W] tensor.
fn per_frame_cf(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (c, b, t, h, w) = x.dims5()?;
    let y = f(&x.reshape((c, b * t, h, w))?)?;
    let (c2, _, h2, w2) = y.dims4()?;
    y.reshape((c2, b, t, h2, w2))
}

/// Eq. 2: G = σ(W_g1 * F̃_hf + W_g2 * F_high + b_g), 3x3 convolutions per frame (channels-first
/// [C, B, T, H, W] in and out).
pub fn fusion_gate(
    f_hf_aligned: &Tensor,
    f_high: &Tensor,
    w_g1: &Tensor,
    w_g2: &Tensor,
    b_g: &Tensor,
) -> Result<Tensor> {
    let a = per_frame_cf(f_hf_aligned, |f| conv2d_cf(f, w_g1, 1, (1, 1)))?;
    let b = per_frame_cf(f_high, |f| conv2d_cf(f, w_g2, 1, (1, 1)))?;
    candle_nn::ops::sigmoid(&(a + b)?.broadcast_add(&b_g.reshape(((), 1, 1, 1, 1))?)?)
}

/// Eq. 3: F_fused = G ⊙ F̃_hf + (1 − G) ⊙ F_high.
pub fn gated_fusion(gate: &Tensor, f_hf_aligned: &Tensor, f_high: &Tensor) -> Result<Tensor> {
    // G·a + (1-G)·b written as b + G·(a-b): one product fewer, same value.
    f_high + gate * (f_hf_aligned - f_high)?
}

/// Spatio-temporal average pooling of a channels-first [C, B, T, H, W] tensor to [B, C].
pub fn spatio_temporal_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3, 4))?.t()?.contiguous()
}

/// Eq. 4: T_v = ReLU(Pool(F) W_proj) as [B, 1, D], from already pooled features [B, C].
pub fn content_token(pooled: &Tensor, proj: &Linear) -> Result<Tensor> {
    proj.forward(pooled)?.relu()?.unsqueeze(1)
}

/// Which features the projector turns into T_v (set by the ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfpMode {
    /// Eqs. 1-4 in full.
    Fused,
    /// w/o EFP: linear projection of [Pool(F_mid); Pool(F_high)], no enhancement, no gate.
    Linear,
    /// Enhanced and aligned F_mid only (eq. 1, alignment, eq. 4).
    MidOnly,
    /// F_high only (eq. 4).
    HighOnly,
}

impl EfpMode {
    /// The projector variant an ablation asks for.
    pub fn for_ablation(a: Ablation) -> Self {
        match a {
            Ablation::NoEfp => Self::Linear,
            Ablation::FMidOnly => Self::MidOnly,
            Ablation::FHighOnly => Self::HighOnly,
            _ => Self::Fused,
        }
    }
}

/// The projector's variables.
#[derive(Debug, Clone)]
pub struct Efp {
    mode: EfpMode,
    gamma: Option<Tensor>,
    align: Option<(Tensor, Tensor)>,
    gate: Option<(Tensor, Tensor, Tensor)>,
    proj: Linear,
    pool_factor: usize,
}

impl Efp {
    /// Creates the projector for `cfg` (F_mid has `channels[1]` channels, F_high `channels[3]`).
    pub fn new(cfg: &FrontendConfig, vb: VarBuilder) -> Result<Self> {
        let mode = EfpMode::for_ablation(cfg.ablation);
        let (c1, c2) = (cfg.channels[1], cfg.channels[3]);
        let uses_mid = matches!(mode, EfpMode::Fused | EfpMode::MidOnly);
        let gamma = if uses_mid {
            Some(vb.get_with_hints(1, "gamma", Init::Const(cfg.gamma_init as f64))?)
        } else {
            None
        };
        // Alignment: average pooling to F_high's grid, then a 1x1 conv to F_high's channels.
        let align = if uses_mid {
            let a = vb.pp("align");
            Some((
                a.get_with_hints((c2, c1, 1, 1), "weight", init::DEFAULT_KAIMING_NORMAL)?,
                a.get_with_hints(c2, "bias", Init::Const(0.0))?,
            ))
        } else {
            None
        };
        let gate = if mode == EfpMode::Fused {
            let g = vb.pp("gate");
            Some((
                g.get_with_hints((c2, c2, 3, 3), "w_g1", init::DEFAULT_KAIMING_NORMAL)?,
                g.get_with_hints((c2, c2, 3, 3), "w_g2", init::DEFAULT_KAIMING_NORMAL)?,
                g.get_with_hints(c2, "b_g", Init::Const(0.0))?,
            ))
        } else {
            None
        };
        let proj_in = if mode == EfpMode::Linear { c1 + c2 } else { c2 };
        Ok(Self {
            mode,
            gamma,
            align,
            gate,
            proj: linear(proj_in, cfg.width, vb.pp("proj"))?,
            pool_factor: 4,
        })
    }

    /// Spatial alignment of F_hf to F_high: average pooling by 4, then 1x1 conv to C_high channels.
    pub fn align(&self, f_hf: &Tensor) -> Result<Tensor> {
        let (w, b) = self.align.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("EFP alignment is not part of this variant".into())
        })?;
        let k = self.pool_factor;
        per_frame_cf(f_hf, |f| {
            conv2d_cf(&f.avg_pool2d(k)?, w, 1, (0, 0))?.broadcast_add(&b.reshape(((), 1, 1, 1))?)
        })
    }

    /// F_mid, F_high (channels-first, as the backbone gives them) → T_v [B, 1, D].
    pub fn forward(&self, f_mid: &Tensor, f_high: &Tensor) -> Result<Tensor> {
        let pooled = match self.mode {
            EfpMode::Linear => Tensor::cat(
                &[spatio_temporal_pool(f_mid)?, spatio_temporal_pool(f_high)?],
                1,
            )?,
            EfpMode::HighOnly => spatio_temporal_pool(f_high)?,
            EfpMode::MidOnly | EfpMode::Fused => {
                let gamma = self
                    .gamma
                    .as_ref()
                    .ok_or_else(|| candle_core::Error::Msg("EFP γ missing".into()))?;
                let aligned = self.align(&high_frequency_enhance(f_mid, gamma)?)?;
                match &self.gate {
                    Some((w1, w2, b)) if self.mode == EfpMode::Fused => {
                        let g = fusion_gate(&aligned, f_high, w1, w2, b)?;
                        spatio_temporal_pool(&gated_fusion(&g, &aligned, f_high)?)?
                    }
                    _ => spatio_temporal_pool(&aligned)?,
                }
            }
        };
        content_token(&pooled.to_dtype(DType::F32)?, &self.proj)
    }

    /// The variant in use.
    pub fn mode(&self) -> EfpMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn laplacian_of_a_point_and_of_a_ramp() {
        let dev = Device::Cpu;
        // One channel, one frame, 5x5 with a single 1 in the middle.
        let mut v = vec![0f32; 25];
        v[12] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 1, 5, 5), &dev).unwrap();
        let l: Vec<f32> = spatial_laplacian(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(l[12], -4.0);
        for i in [7, 11, 13, 17] {
            assert_eq!(l[i], 1.0);
        }
        assert_eq!(l.iter().filter(|&&x| x != 0.0).count(), 5);
        // A linear ramp has zero Laplacian away from the zero-padded border.
        let ramp: Vec<f32> = (0..25)
            .map(|i| (i % 5) as f32 + 2.0 * (i / 5) as f32)
            .collect();
        let x = Tensor::from_vec(ramp.clone(), (1, 1, 1, 5, 5), &dev).unwrap();
        let gamma = Tensor::new(&[0.5f32], &dev).unwrap();
        let hf: Vec<f32> = high_frequency_enhance(&x, &gamma)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for y in 1..4 {
            for xx in 1..4 {
                assert_eq!(hf[y * 5 + xx], ramp[y * 5 + xx]);
            }
        }
        // Corner (0,0) = 0: neighbours 1 (right) and 2 (below), two zero pads → ∇² = 3; F_hf = 0 + 0.5·3.
        assert_eq!(hf[0], 1.5);
    }

    #[test]
    fn gate_blends_between_the_two_inputs() {
        let dev = Device::Cpu;
        let a = Tensor::full(2f32, (1, 1, 1, 1, 1), &dev).unwrap();
        let b = Tensor::full(10f32, (1, 1, 1, 1, 1), &dev).unwrap();
        let g = Tensor::full(0.25f32, (1, 1, 1, 1, 1), &dev).unwrap();
        let f: Vec<f32> = gated_fusion(&g, &a, &b)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(f, vec![0.25 * 2.0 + 0.75 * 10.0]);
    }
}
