//! The 4-neighbour discrete Laplacian of every frame, as one pass forward and one pass backward.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// ∇² over the last two axes with zero padding; a symmetric operator, so it is its own adjoint.
struct Laplacian {
    h: usize,
    w: usize,
}

impl Laplacian {
    /// One H x W plane.
    fn plane(&self, x: &[f32], y: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        for r in 0..h {
            let row = &x[r * w..][..w];
            let out = &mut y[r * w..][..w];
            for (c, o) in out.iter_mut().enumerate() {
                let mut s = -4.0 * row[c];
                if c > 0 {
                    s += row[c - 1];
                }
                if c + 1 < w {
                    s += row[c + 1];
                }
                if r > 0 {
                    s += x[(r - 1) * w + c];
                }
                if r + 1 < h {
                    s += x[(r + 1) * w + c];
                }
                *o = s;
            }
        }
    }
}

impl CustomOp1 for Laplacian {
    fn name(&self) -> &'static str {
        "laplacian"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("laplacian needs a contiguous input");
        };
        let x = &s.as_slice::<f32>()?[a..b];
        let p = self.h * self.w;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(p)
            .zip(x.par_chunks(p))
            .for_each(|(yo, xi)| self.plane(xi, yo));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let plane = crate::graph::gpu::Plane {
            h: self.h as i32,
            w: self.w as i32,
        };
        let out =
            crate::graph::gpu::launch("aullm_laplacian", s, l, l.shape().elem_count(), plane)?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = Laplacian {
            h: self.h,
            w: self.w,
        };
        Ok(Some(grad.contiguous()?.apply_op1(op)?))
    }
}

/// The 4-neighbour discrete Laplacian [[0,1,0],[1,-4,1],[0,1,0]] of every H x W plane of a tensor
/// whose last two axes are H, W, with zero padding (the fixed depthwise 3x3 kernel the ONNX export
/// writes).
///
/// f32 tensors on the CPU (or a GPU in a CUDA build) take one pass each way; others are computed
/// from shifted copies.
pub fn spatial_laplacian(x: &Tensor) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 2 {
        bail!("laplacian of a rank-{rank} tensor");
    }
    let (h, w) = (x.dim(rank - 2)?, x.dim(rank - 1)?);
    if crate::graph::devices::own_kernels(x.device()) && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(Laplacian { h, w });
    }
    let p = x
        .pad_with_zeros(rank - 2, 1, 1)?
        .pad_with_zeros(rank - 1, 1, 1)?;
    let at = |dy: usize, dx: usize| p.narrow(rank - 2, dy, h)?.narrow(rank - 1, dx, w);
    ((at(0, 1)? + at(2, 1)?)? + (at(1, 0)? + at(1, 2)?)?)? - x.affine(4.0, 0.0)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::max_abs_diff as diff;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// Values and gradient equal the shifted-copies form (which candle differentiates itself).
    #[test]
    fn one_pass_matches_shifted_copies_forward_and_backward() {
        let mut rng = Rng::new(3);
        let v: Vec<f32> = (0..2 * 3 * 5 * 7).map(|_| rng.uniform() as f32).collect();
        let x =
            Var::from_tensor(&Tensor::from_vec(v, (2, 3, 5, 7), &Device::Cpu).unwrap()).unwrap();
        let r: Vec<f32> = (0..2 * 3 * 5 * 7).map(|_| rng.uniform() as f32).collect();
        let r = Tensor::from_vec(r, (2, 3, 5, 7), &Device::Cpu).unwrap();
        let (h, w) = (5, 7);
        let p = x
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap();
        let at = |dy: usize, dx: usize| p.narrow(2, dy, h).unwrap().narrow(3, dx, w).unwrap();
        let slow = ((at(0, 1) + at(2, 1)).unwrap() + (at(1, 0) + at(1, 2)).unwrap()).unwrap()
            - x.affine(4.0, 0.0).unwrap();
        let slow = slow.unwrap();
        let fast = spatial_laplacian(x.as_tensor()).unwrap();
        assert!(diff(&fast, &slow) < 1e-6);
        let g1 = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(diff(a, b) < 1e-5);
    }
}
