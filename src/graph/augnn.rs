//! R-AUGNN, the relation-aware AU graph network (AULLM++ eqs. 5-7): AU nodes from F_high, dynamic
//! attention adjacency, fusion with the FACS prior, symmetric-normalised GCN, MLP to instruction tokens.

use candle_core::{D, Device, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder, linear, linear_no_bias};

use crate::graph::config::Ablation;
use crate::graph::config::FrontendConfig;

/// LeakyReLU slope of eq. 5 (GAT's customary 0.2).
const LEAKY_SLOPE: f64 = 0.2;

/// Eq. 5: e_ij = LeakyReLU(aᵀ[W_q h_i ‖ W_k h_j]), softmax over j → A_dynamic [B, N, N].
///
/// `a` [2d] splits into the halves that multiply W_q h_i and W_k h_j, so the N x N scores are a broadcast sum.
pub fn dynamic_adjacency(h: &Tensor, w_q: &Linear, w_k: &Linear, a: &Tensor) -> Result<Tensor> {
    let d = h.dim(D::Minus1)?;
    let a_q = a.narrow(0, 0, d)?.reshape((d, 1))?;
    let a_k = a.narrow(0, d, d)?.reshape((d, 1))?;
    let s_q = w_q.forward(h)?.broadcast_matmul(&a_q)?; // [B, N, 1]
    let s_k = w_k.forward(h)?.broadcast_matmul(&a_k)?.transpose(1, 2)?; // [B, 1, N]
    let e = candle_nn::ops::leaky_relu(&s_q.broadcast_add(&s_k)?, LEAKY_SLOPE)?;
    // The fused kernel records no backward op; training needs the composed softmax.
    if e.track_op() {
        candle_nn::ops::softmax(&e, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(&e)
    }
}

/// Eq. 6: Â = α·A_prior + (1 − α)·A_dynamic, with α = sigmoid(`alpha_logit`) so it stays in (0, 1).
pub fn fuse_adjacency(prior: &Tensor, dynamic: &Tensor, alpha_logit: &Tensor) -> Result<Tensor> {
    let alpha = candle_nn::ops::sigmoid(alpha_logit)?;
    let one_minus = alpha.affine(-1.0, 1.0)?;
    prior
        .broadcast_mul(&alpha)?
        .broadcast_add(&dynamic.broadcast_mul(&one_minus)?)
}

/// Eq. 7's propagation matrix D̃^{-1/2}(Â + I)D̃^{-1/2} for Â [B, N, N].
///
/// Inhibitory (negative) entries stay negative, so neighbours can subtract; the degree is
/// D̃_ii = Σ_j |Â_ij + I_ij|, which keeps D̃^{-1/2} real and the spectral radius at most 1 whatever the signs.
/// The self-loop keeps every degree ≥ 1 − |off-diagonal pull| away from 0 in practice; a floor of 1e-6 guards
/// the square root for a row whose entries cancel exactly.
pub fn normalised_adjacency(a_hat: &Tensor) -> Result<Tensor> {
    let n = a_hat.dim(D::Minus1)?;
    let eye = Tensor::eye(n, a_hat.dtype(), a_hat.device())?;
    let a = a_hat.broadcast_add(&eye)?;
    let deg = a
        .abs()?
        .sum_keepdim(D::Minus1)?
        .clamp(1e-6, f64::INFINITY)?; // [B, N, 1]
    let inv_sqrt = deg.sqrt()?.recip()?;
    a.broadcast_mul(&inv_sqrt)?
        .broadcast_mul(&inv_sqrt.transpose(1, 2)?)
}

/// Eq. 7, one layer: H' = ReLU(Ã_norm H W).
pub fn gcn_layer(a_norm: &Tensor, h: &Tensor, w: &Linear) -> Result<Tensor> {
    w.forward(&a_norm.matmul(h)?)?.relu()
}

/// The prior an ablation puts in eq. 6: the FACS graph, a fully connected graph (1 off the diagonal) or
/// self-loops only (the identity).
pub fn prior_for_ablation(
    facs: &[f32],
    n: usize,
    ablation: Ablation,
    dev: &Device,
) -> Result<Tensor> {
    let m: Vec<f32> = match ablation {
        Ablation::FullyConnected => (0..n * n)
            .map(|k| if k / n == k % n { 0.0 } else { 1.0 })
            .collect(),
        Ablation::SelfLoopsOnly => (0..n * n)
            .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
            .collect(),
        _ => facs.to_vec(),
    };
    if m.len() != n * n {
        candle_core::bail!("A_prior has {} entries, expected {n} x {n}", m.len());
    }
    Tensor::from_vec(m, (n, n), dev)
}

/// The graph network's variables and its prior.
#[derive(Debug, Clone)]
pub struct AuGnn {
    node_init: Linear,
    w_q: Linear,
    w_k: Linear,
    attn: Tensor,
    alpha_logit: Tensor,
    gcn: Vec<Linear>,
    mlp: (Linear, Linear),
    prior: Tensor,
    n: usize,
    d: usize,
}

impl AuGnn {
    /// Creates the network; `prior` is the N x N FACS matrix (row-major) that the ablation may replace.
    pub fn new(cfg: &FrontendConfig, prior: &[f32], vb: VarBuilder) -> Result<Self> {
        let (n, d, c_high) = (cfg.aus.len(), cfg.node_dim, cfg.channels[3]);
        let alpha = cfg.alpha_init as f64;
        let gcn = (0..cfg.gcn_layers)
            .map(|l| linear_no_bias(d, d, vb.pp(format!("gcn{l}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            // One d-wide projection per AU, held as one [N·d, C] matrix (class-specific rows).
            node_init: linear(c_high, n * d, vb.pp("node_init"))?,
            w_q: linear_no_bias(d, d, vb.pp("w_q"))?,
            w_k: linear_no_bias(d, d, vb.pp("w_k"))?,
            attn: vb.get_with_hints(2 * d, "attn", Init::Uniform { lo: -0.1, up: 0.1 })?,
            alpha_logit: vb.get_with_hints(
                1,
                "alpha_logit",
                Init::Const((alpha / (1.0 - alpha)).ln()),
            )?,
            gcn,
            mlp: (
                linear(d, cfg.width, vb.pp("mlp1"))?,
                linear(cfg.width, cfg.width, vb.pp("mlp2"))?,
            ),
            prior: prior_for_ablation(prior, n, cfg.ablation, vb.device())?,
            n,
            d,
        })
    }

    /// Initial nodes H⁽⁰⁾ [B, N, d] from pooled F_high [B, C] by class-specific projections.
    pub fn initial_nodes(&self, pooled_high: &Tensor) -> Result<Tensor> {
        let b = pooled_high.dim(0)?;
        self.node_init
            .forward(pooled_high)?
            .relu()?
            .reshape((b, self.n, self.d))
    }

    /// The fused adjacency Â [B, N, N] (eqs. 5-6) for nodes H⁽⁰⁾.
    pub fn adjacency(&self, h0: &Tensor) -> Result<Tensor> {
        let dynamic = dynamic_adjacency(h0, &self.w_q, &self.w_k, &self.attn)?;
        fuse_adjacency(&self.prior, &dynamic, &self.alpha_logit)
    }

    /// Pooled F_high [B, C] → instruction tokens τ_au [B, N, D].
    pub fn forward(&self, pooled_high: &Tensor) -> Result<Tensor> {
        let h0 = self.initial_nodes(pooled_high)?;
        let a_norm = normalised_adjacency(&self.adjacency(&h0)?)?;
        let mut h = h0;
        for w in &self.gcn {
            h = gcn_layer(&a_norm, &h, w)?;
        }
        self.mlp.1.forward(&self.mlp.0.forward(&h)?.relu()?)
    }

    /// The prior matrix in use (after the ablation).
    pub fn prior(&self) -> &Tensor {
        &self.prior
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_and_normalisation_by_hand_with_an_inhibitory_edge() {
        let dev = Device::Cpu;
        // Three nodes: 0-1 synergy 1.0, 1-2 inhibition 0.5. A_dynamic uniform 1/3. α = 0.8.
        let prior = Tensor::new(&[[0f32, 1., 0.], [1., 0., -0.5], [0., -0.5, 0.]], &dev).unwrap();
        let dynamic = Tensor::full(1f32 / 3.0, (1, 3, 3), &dev).unwrap();
        let logit = Tensor::new(&[(0.8f32 / 0.2).ln()], &dev).unwrap();
        let a_hat = fuse_adjacency(&prior, &dynamic, &logit).unwrap();
        let got: Vec<f32> = a_hat.flatten_all().unwrap().to_vec1().unwrap();
        let u = 0.2f32 / 3.0;
        let want = [u, 0.8 + u, u, 0.8 + u, u, -0.4 + u, u, -0.4 + u, u];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Eq. 7: Ã = Â + I; degrees from |Ã|; Ã_ij / sqrt(d_i d_j).
        let norm: Vec<f32> = normalised_adjacency(&a_hat)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut t = want;
        for i in 0..3 {
            t[i * 3 + i] += 1.0;
        }
        let deg: Vec<f32> = (0..3)
            .map(|i| (0..3).map(|j| t[i * 3 + j].abs()).sum())
            .collect();
        for i in 0..3 {
            for j in 0..3 {
                let w = t[i * 3 + j] / (deg[i] * deg[j]).sqrt();
                assert!(
                    (norm[i * 3 + j] - w).abs() < 1e-6,
                    "({i},{j}) {} vs {w}",
                    norm[i * 3 + j]
                );
            }
        }
        // The inhibitory edge stays negative after normalisation; degrees stayed positive (finite entries).
        assert!(norm[5] < 0.0 && norm[7] < 0.0);
        assert!(norm.iter().all(|x| x.is_finite()));
        // Hand values for two entries: d = [2.0, 2.0+1/3... ] computed above; spot-check entry (0,0).
        let d0 = (1.0 + u) + (0.8 + u) + u;
        assert!((norm[0] - (1.0 + u) / d0).abs() < 1e-6);
    }

    #[test]
    fn dynamic_rows_sum_to_one() {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev);
        let w_q = linear_no_bias(4, 4, vb.pp("q")).unwrap();
        let w_k = linear_no_bias(4, 4, vb.pp("k")).unwrap();
        let a = Tensor::randn(0f32, 1., 8, &dev).unwrap();
        let h = Tensor::randn(0f32, 1., (2, 5, 4), &dev).unwrap();
        let s: Vec<f32> = dynamic_adjacency(&h, &w_q, &w_k, &a)
            .unwrap()
            .sum(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(s.iter().all(|x| (x - 1.0).abs() < 1e-5), "{s:?}");
    }

    #[test]
    fn ablation_priors() {
        let dev = Device::Cpu;
        let facs = vec![0f32; 9];
        let fc: Vec<f32> = prior_for_ablation(&facs, 3, Ablation::FullyConnected, &dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(fc, vec![0., 1., 1., 1., 0., 1., 1., 1., 0.]);
        let sl: Vec<f32> = prior_for_ablation(&facs, 3, Ablation::SelfLoopsOnly, &dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(sl, vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
    }
}
