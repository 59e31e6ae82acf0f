//! Counterfactual Consistency Regularisation (CCR, eqs. 8–9, Algorithm 1 phase 2): a learnable
//! directed perturbation δ_k on instruction token k, a second pass through the decider, a flip
//! loss toward 1 − y_k and a Bernoulli-KL invariance term on the other AUs. Training only.

use candle_core::{D, DType, Device, Result, Tensor, Var};

/// Probabilities are kept this far from 0 and 1 inside logarithms.
const EPS: f64 = 1e-6;

/// The learnable perturbations δ, one D-vector per AU ([N, D]).
#[derive(Debug, Clone)]
pub struct Perturbations {
    /// δ as a variable (trained with the visual/graph learning rate).
    pub delta: Var,
}

impl Perturbations {
    /// Small random δ from `seed` (‖δ_k‖₂ has no gradient at exactly zero).
    pub fn new(num_aus: usize, width: usize, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(seed);
        let v: Vec<f32> = (0..num_aus * width)
            .map(|_| (rng.gaussian() * 1e-2) as f32)
            .collect();
        let t = Tensor::from_vec(v, (num_aus, width), device)?;
        Ok(Self {
            delta: Var::from_tensor(&t)?,
        })
    }
}

/// One-hot target masks [B, N] for per-sample target AUs.
pub fn target_mask(targets: &[usize], num_aus: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; targets.len() * num_aus];
    for (b, &k) in targets.iter().enumerate() {
        m[b * num_aus + k] = 1.0;
    }
    Tensor::from_vec(m, (targets.len(), num_aus), device)
}

/// Algorithm 1 line 15: τ̃_au^(k) = τ_au^(k) + δ_k on each sample's target token only.
/// `tau` [B, N, D], `delta` [N, D], `mask` [B, N] one-hot.
pub fn counterfactual_instructions(tau: &Tensor, delta: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let shift = mask.unsqueeze(2)?.broadcast_mul(&delta.unsqueeze(0)?)?;
    tau + shift.to_dtype(tau.dtype())?
}

/// Eq. 8, first term: BCE(ŷ_k^cf, 1 − y_k), mean over the batch. `cf_logits`, `y` and `mask` [B, N].
pub fn flip_loss(cf_logits: &Tensor, y: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let flipped = (1.0 - y)?;
    let per = bce_with_logits_elementwise(cf_logits, &flipped)?;
    let b = cf_logits.dim(0)? as f64;
    (per * mask)?.sum_all()? / b
}

/// Eq. 8, second term: Σ_{j≠k} KL(Bern(ŷ_j) ‖ Bern(ŷ_j^cf)), mean over the batch. The factual
/// prediction is the reference and gets no gradient from this term (it is pulled by the labels).
pub fn invariance_kl(logits: &Tensor, cf_logits: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::sigmoid(&logits.detach())?.clamp(EPS, 1.0 - EPS)?;
    let q = candle_nn::ops::sigmoid(cf_logits)?.clamp(EPS, 1.0 - EPS)?;
    let one_p = (1.0 - &p)?;
    let kl = ((&p * (p.log()? - q.log()?)?)? + (&one_p * (one_p.log()? - (1.0 - &q)?.log()?)?)?)?;
    let others = (1.0 - mask)?;
    let b = logits.dim(0)? as f64;
    (kl * others)?.sum_all()? / b
}

/// Eq. 8, third term: ‖δ_k‖₂ of each sample's target AU, mean over the batch.
pub fn perturbation_norm(delta: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let norms = delta.sqr()?.sum(D::Minus1)?.sqrt()?; // [N]
    let b = mask.dim(0)? as f64;
    mask.broadcast_mul(&norms.unsqueeze(0)?)?.sum_all()? / b
}

/// Eq. 8: L_ccr = L_flip + λ_inv L_inv + λ_Δ ‖δ_k‖₂.
pub fn ccr_loss(
    logits: &Tensor,
    cf_logits: &Tensor,
    y: &Tensor,
    delta: &Tensor,
    mask: &Tensor,
    lambda_inv: f64,
    lambda_delta: f64,
) -> Result<Tensor> {
    let flip = flip_loss(cf_logits, y, mask)?;
    let inv = invariance_kl(logits, cf_logits, mask)?;
    let norm = perturbation_norm(delta, mask)?;
    (flip + (inv * lambda_inv)?)? + (norm * lambda_delta)?
}

/// Eq. 9: L_total = L_cls + λ_ccr L_ccr.
pub fn total_loss(cls: &Tensor, ccr: &Tensor, lambda_ccr: f64) -> Result<Tensor> {
    cls + (ccr * lambda_ccr)?
}

/// Numerically stable BCE with logits, per element: max(x,0) − x·y + log(1 + e^{−|x|}).
pub fn bce_with_logits_elementwise(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let x = logits.to_dtype(DType::F32)?;
    let relu = x.relu()?;
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (relu - (&x * y)?)? + soft
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn scalar(x: &Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn perturbation_lands_on_the_target_token_only() {
        let dev = Device::Cpu;
        let tau = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
        let delta = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let mask = target_mask(&[1, 2], 3, &dev).unwrap();
        let cf = counterfactual_instructions(&tau, &delta, &mask).unwrap();
        let v: Vec<Vec<Vec<f32>>> = cf.to_vec3().unwrap();
        assert_eq!(v[0][0], vec![0.0; 4]);
        assert_eq!(v[0][1], vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(v[0][2], vec![0.0; 4]);
        assert_eq!(v[1][2], vec![8.0, 9.0, 10.0, 11.0]);
        assert_eq!(v[1][1], vec![0.0; 4]);
    }

    #[test]
    fn bce_matches_the_definition() {
        let x = t(&[2.0, -1.0, 0.0], (1, 3));
        let y = t(&[1.0, 0.0, 1.0], (1, 3));
        let got: Vec<f32> = bce_with_logits_elementwise(&x, &y)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let sig = |z: f32| 1.0 / (1.0 + (-z).exp());
        let want = [
            -(sig(2.0).ln()),
            -((1.0 - sig(-1.0)).ln()),
            -(sig(0.0).ln()),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn flip_and_invariance_terms_behave() {
        let y = t(&[1.0, 0.0], (1, 2));
        let mask = t(&[1.0, 0.0], (1, 2));
        let logits = t(&[3.0, -3.0], (1, 2));
        // A counterfactual that flips AU 0 and leaves AU 1: small flip loss, zero invariance.
        let good = t(&[-3.0, -3.0], (1, 2));
        // One that keeps AU 0 and disturbs AU 1: large flip loss and positive invariance.
        let bad = t(&[3.0, 3.0], (1, 2));
        let fg = scalar(&flip_loss(&good, &y, &mask).unwrap());
        let fb = scalar(&flip_loss(&bad, &y, &mask).unwrap());
        assert!(fg < 0.1 && fb > 2.0, "{fg} {fb}");
        let ig = scalar(&invariance_kl(&logits, &good, &mask).unwrap());
        let ib = scalar(&invariance_kl(&logits, &bad, &mask).unwrap());
        assert!(ig.abs() < 1e-6 && ib > 1.0, "{ig} {ib}");
    }

    #[test]
    fn norm_term_reads_the_target_rows() {
        let delta = t(&[3.0, 4.0, 0.0, 1.0], (2, 2));
        let mask = t(&[1.0, 0.0, 0.0, 1.0], (2, 2));
        let n = scalar(&perturbation_norm(&delta, &mask).unwrap());
        assert!((n - 3.0).abs() < 1e-6, "{n}"); // (5 + 1) / 2
    }
}
