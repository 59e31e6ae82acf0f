//! 2D convolution of channels-first tensors for training: im2col, then one matrix product (CPU
//! kernels here, CUDA kernels in [`super::gpu`]).
//!
//! candle's own conv2d backpropagates to its input through conv_transpose2d, a direct loop that made the
//! backbone's backward pass 4x its forward pass and most of a training step. Here the gradient is two
//! matrix products and col2im (the adjoint of im2col).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// Geometry of a convolution over a channels-first [C, N, H, W] tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    c: usize,
    n: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    ph: usize,
    pw: usize,
}

impl Geometry {
    /// The geometry as the CUDA kernels read it.
    #[cfg(feature = "cuda")]
    fn gpu(&self) -> super::gpu::ConvGeometry {
        let (ho, wo) = self.out_hw();
        super::gpu::ConvGeometry {
            c: self.c as i32,
            n: self.n as i32,
            h: self.h as i32,
            w: self.w as i32,
            kh: self.kh as i32,
            kw: self.kw as i32,
            stride: self.stride as i32,
            ph: self.ph as i32,
            pw: self.pw as i32,
            ho: ho as i32,
            wo: wo as i32,
        }
    }

    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph - self.kh) / self.stride + 1,
            (self.w + 2 * self.pw - self.kw) / self.stride + 1,
        )
    }

    /// Rows of the column matrix: C·kh·kw, ordered (c, ki, kj) like a [Co, C, kh, kw] kernel.
    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the column matrix: N·Ho·Wo, ordered like the [Co, N, Ho, Wo] output.
    fn cols(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * ho * wo
    }

    /// Calls `f(row, out_offset, in_offset, ox0, ox1)` for every kernel tap (c, ki, kj) and output row
    /// that reads inside the image: output columns ox0..ox1 of the row starting at `out_offset` (in a
    /// row of the column matrix) read input elements in_offset, in_offset + stride, ... of channel c.
    fn for_each_tap_of(&self, c: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        let (ho, wo) = self.out_hw();
        let s = self.stride;
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                let row = (c * self.kh + ki) * self.kw + kj;
                // Output columns whose input column ox·s + kj − pw lies in 0..w.
                let ox0 = self.pw.saturating_sub(kj).div_ceil(s);
                let ox1 = (self.w + self.pw).saturating_sub(kj).div_ceil(s).min(wo);
                if ox0 >= ox1 {
                    continue;
                }
                let ix0 = ox0 * s + kj - self.pw;
                for img in 0..self.n {
                    for oy in 0..ho {
                        let iy = oy * s + ki;
                        if iy < self.ph || iy - self.ph >= self.h {
                            continue;
                        }
                        let iy = iy - self.ph;
                        f(
                            row,
                            (img * ho + oy) * wo,
                            (img * self.h + iy) * self.w + ix0,
                            ox0,
                            ox1,
                        );
                    }
                }
            }
        }
    }
}

/// [C, N, H, W] → [C·kh·kw, N·Ho·Wo], zero padding.
struct Im2Col(Geometry);

/// The adjoint of [`Im2Col`]: [C·kh·kw, N·Ho·Wo] → [C, N, H, W], overlapping taps summed.
struct Col2Im(Geometry);

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("{op} needs a contiguous input");
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s, l, "im2col")?;
        let (plane, cols, taps) = (g.n * g.h * g.w, g.cols(), g.kh * g.kw);
        let mut out = vec![0f32; g.rows() * cols];
        // One task per input channel: its taps are rows c·kh·kw .. (c+1)·kh·kw.
        out.par_chunks_mut(taps * cols)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &x[c * plane..][..plane];
                g.for_each_tap_of(c, |row, o, i, ox0, ox1| {
                    let d = &mut dst[(row - c * taps) * cols + o..];
                    for (j, ox) in (ox0..ox1).enumerate() {
                        d[ox] = src[i + j * g.stride];
                    }
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((g.rows(), cols))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = self.0;
        let out = super::gpu::launch("aullm_im2col", s, l, g.rows() * g.cols(), g.gpu())?;
        Ok((out, Shape::from((g.rows(), g.cols()))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = contiguous_f32(s, l, "col2im")?;
        let (plane, per, taps) = (g.n * g.h * g.w, g.cols(), g.kh * g.kw);
        let mut out = vec![0f32; g.c * plane];
        // One task per input channel, which only its own taps write to.
        out.par_chunks_mut(plane).enumerate().for_each(|(c, dst)| {
            let src = &cols[c * taps * per..][..taps * per];
            g.for_each_tap_of(c, |row, o, i, ox0, ox1| {
                let s = &src[(row - c * taps) * per + o..];
                for (j, ox) in (ox0..ox1).enumerate() {
                    dst[i + j * g.stride] += s[ox];
                }
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((g.c, g.n, g.h, g.w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = self.0;
        let out = super::gpu::launch("aullm_col2im", s, l, g.c * g.n * g.h * g.w, g.gpu())?;
        Ok((out, Shape::from((g.c, g.n, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Im2Col(self.0))?))
    }
}

/// Convolution of a channels-first `x` [C, N, H, W] with `w` [Co, C, kh, kw] (stride `stride` both
/// ways, zero padding `pad` = (rows, columns), no bias) → channels-first [Co, N, Ho, Wo].
///
/// Channels-first makes it one matrix product [Co, C·kh·kw] × [C·kh·kw, N·Ho·Wo] with no batch axis,
/// so the kernel's gradient is one product too. f32 tensors on the CPU, or on a GPU in a CUDA build,
/// take the im2col path; anything else goes to candle's conv2d.
pub fn conv2d_cf(x: &Tensor, w: &Tensor, stride: usize, pad: (usize, usize)) -> Result<Tensor> {
    let (c, n, h, wd) = x.dims4()?;
    let (co, ci, kh, kw) = w.dims4()?;
    if ci != c {
        bail!("conv2d: input has {c} channels, kernel is {co}x{ci}x{kh}x{kw}");
    }
    if h + 2 * pad.0 < kh || wd + 2 * pad.1 < kw || stride == 0 {
        bail!("conv2d: {kh}x{kw} kernel, stride {stride}, does not fit the padded {h}x{wd} input");
    }
    if !crate::graph::devices::own_kernels(x.device())
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
    {
        return x
            .permute((1, 0, 2, 3))?
            .pad_with_zeros(2, pad.0, pad.0)?
            .pad_with_zeros(3, pad.1, pad.1)?
            .conv2d(w, 0, stride, 1, 1)?
            .permute((1, 0, 2, 3))?
            .contiguous();
    }
    let g = Geometry {
        c,
        n,
        h,
        w: wd,
        kh,
        kw,
        stride,
        ph: pad.0,
        pw: pad.1,
    };
    let (ho, wo) = g.out_hw();
    let cols = if kh == 1 && kw == 1 && stride == 1 && pad == (0, 0) {
        x.reshape((c, n * h * wd))?
    } else {
        x.contiguous()?.apply_op1(Im2Col(g))?
    };
    w.reshape((co, g.rows()))?
        .matmul(&cols)?
        .reshape((co, n, ho, wo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::max_abs_diff as max_diff;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// candle's conv2d on the batch-first view, padding written out (it pads both axes alike).
    fn reference(x: &Tensor, w: &Tensor, stride: usize, pad: (usize, usize)) -> Tensor {
        x.permute((1, 0, 2, 3))
            .unwrap()
            .pad_with_zeros(2, pad.0, pad.0)
            .unwrap()
            .pad_with_zeros(3, pad.1, pad.1)
            .unwrap()
            .conv2d(w, 0, stride, 1, 1)
            .unwrap()
            .permute((1, 0, 2, 3))
            .unwrap()
    }

    /// Values and both gradients equal candle's conv2d for the front-end's shapes (spatial 3x3
    /// stride 2, temporal 3x1, gate 3x3, 1x1) and odd ones.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() {
        // (C, N, Co, H, W, kh, kw, stride, pad)
        for (i, &(c, n, co, h, w, kh, kw, s, p)) in [
            (1, 3, 4, 16, 16, 3, 3, 2, (1, 1)),
            (5, 2, 6, 8, 8, 3, 3, 2, (1, 1)),
            (4, 2, 4, 4, 4, 3, 3, 1, (1, 1)),
            (3, 2, 5, 7, 9, 3, 3, 2, (1, 1)),
            (2, 1, 3, 6, 5, 3, 3, 1, (0, 0)),
            (3, 2, 2, 5, 5, 1, 1, 1, (0, 0)),
            (4, 3, 5, 8, 20, 3, 1, 1, (1, 0)),
            (2, 2, 3, 6, 7, 5, 3, 1, (2, 1)),
        ]
        .iter()
        .enumerate()
        {
            let x = Var::from_tensor(&random(&[c, n, h, w], i as u64)).unwrap();
            let k = Var::from_tensor(&random(&[co, c, kh, kw], 100 + i as u64)).unwrap();
            let ours = conv2d_cf(x.as_tensor(), k.as_tensor(), s, p).unwrap();
            let theirs = reference(x.as_tensor(), k.as_tensor(), s, p);
            assert_eq!(ours.dims(), theirs.dims(), "case {i}");
            assert!(max_diff(&ours, &theirs) < 1e-5, "case {i}: values");
            // A loss that weights every output differently, so a misplaced gradient shows.
            let r = random(ours.dims(), 200 + i as u64);
            let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v) in [("input", &x), ("kernel", &k)] {
                let a = g1.get(v.as_tensor()).unwrap();
                let b = g2.get(v.as_tensor()).unwrap();
                assert!(max_diff(a, b) < 1e-4, "case {i}: {name} gradient");
            }
        }
    }

    #[test]
    fn rejects_mismatched_channels_and_oversized_kernels() {
        let x = random(&[3, 1, 8, 8], 1);
        assert!(conv2d_cf(&x, &random(&[4, 2, 3, 3], 2), 1, (1, 1)).is_err());
        assert!(conv2d_cf(&x, &random(&[4, 3, 11, 3], 2), 1, (1, 1)).is_err());
    }
}
