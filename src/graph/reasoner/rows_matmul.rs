//! `x W^T` for a few rows of `x` on the CPU (a clip is 1 + N = 9 rows): each weight row is
//! streamed from memory once and dotted with every row of `x`, which stays in L1. candle's GEMM
//! packs the whole weight matrix on every call; at 9 rows the pass is bound by reading the
//! weights, so streaming them (and storing them in half precision, converted in registers) is
//! what counts. Activations stay f32. Differentiable in `x` (the weights are frozen), so training
//! can backpropagate through it.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Rows up to which the kernel beats candle's GEMM on f32 weights here (9 rows: 1.6-1.8x faster;
/// at 144 rows GEMM wins). Half-precision weights always use the kernel, in groups of this many
/// rows, since GEMM would need them converted first.
pub const MAX_ROWS: usize = 32;

/// Fewest output columns worth a parallel task.
const MIN_COLS_PER_TASK: usize = 128;

/// The op: `x` (m, k) f32 times `w` (n, k) transposed -> (m, n) f32; both contiguous.
struct RowsMatmul;

/// `x W^T` with the streaming kernel when it applies (CPU, `x` f32, `w` f32 with at most
/// `MAX_ROWS` rows of `x`, or `w` f16/bf16 with any number), or with cuBLAS and an input-only
/// backward on a GPU while gradients flow; `None` means use candle's matmul.
pub fn try_rows_matmul(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    if x.rank() != 2 || w.rank() != 2 || x.dim(1)? != w.dim(1)? {
        return Ok(None);
    }
    // On a GPU, candle's matmul is the kernel; the op is only worth it when gradients flow, for
    // its input-only backward (candle would compute and store a gradient for every frozen weight).
    if x.device().is_cuda() {
        return Ok(
            if cfg!(feature = "cuda") && x.track_op() && x.dtype() == w.dtype() {
                Some(x.contiguous()?.apply_op2(&w.contiguous()?, RowsMatmul)?)
            } else {
                None
            },
        );
    }
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return Ok(None);
    }
    let fits = match w.dtype() {
        // When gradients flow, candle's matmul would also compute a gradient for the frozen
        // weights (a full extra product per projection); the op's backward skips it.
        DType::F32 => x.dim(0)? <= MAX_ROWS || x.track_op(),
        DType::F16 | DType::BF16 => true,
        _ => false,
    };
    if !fits || x.dim(1)? != w.dim(1)? {
        return Ok(None);
    }
    Ok(Some(
        x.contiguous()?.apply_op2(&w.contiguous()?, RowsMatmul)?,
    ))
}

impl CustomOp2 for RowsMatmul {
    fn name(&self) -> &'static str {
        "rows-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("rows-matmul: x has {k} columns, w {k2}");
        }
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("rows-matmul needs contiguous inputs");
        };
        let x = &s1.as_slice::<f32>()?[a0..a1];
        let y = match s2 {
            CpuStorage::F32(w) if m > MAX_ROWS => gemm_xwt(x, &w[b0..b1], m, k, n),
            CpuStorage::F32(w) => rows_matmul(x, &w[b0..b1], m, k, n),
            CpuStorage::F16(w) => rows_matmul(x, &w[b0..b1], m, k, n),
            CpuStorage::BF16(w) => rows_matmul(x, &w[b0..b1], m, k, n),
            _ => candle_core::bail!("rows-matmul: weights must be f32, f16 or bf16"),
        };
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    /// `x W^T` with cuBLAS through candle's own matmul, W read transposed in place.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("rows-matmul: x has {k} columns, w {k2}");
        }
        let y = s1.matmul(s2, (1, m, n, k), l1, &l2.transpose(0, 1)?)?;
        Ok((y, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // d(x W^T)/dx = grad W; the weights are frozen, so no gradient for them.
        Ok((Some(grad.matmul(&w.to_dtype(grad.dtype())?)?), None))
    }
}

/// `x W^T` for many rows with the gemm crate (the kernel candle's matmul uses).
fn gemm_xwt(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    // SAFETY: x is m x k, w is n x k and y is m x n, all row-major and exactly that long; W^T is
    // read through strides (row stride 1, column stride k).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
    y
}

/// A weight element the kernel reads: f32, f16 or bf16.
pub trait WeightElem: Copy + Send + Sync + 'static {
    /// The value as f32.
    fn f32(self) -> f32;
    /// Loads 8 consecutive elements as f32 lanes.
    ///
    /// # Safety
    /// `p..p+8` must be readable, and the CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl WeightElem for f32 {
    fn f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees 8 readable floats.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl WeightElem for f16 {
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 8 readable halves (16 bytes) and F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) }
    }
}

impl WeightElem for bf16 {
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 8 readable bf16 (16 bytes) and AVX2.
        unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast::<__m128i>()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

/// y (m, n) = x (m, k) W^T for W (n, k), all row-major.
pub fn rows_matmul<W: WeightElem>(x: &[f32], w: &[W], m: usize, k: usize, n: usize) -> Vec<f32> {
    by_column_tasks(x, m, k, n, |xg, mg, first, out| {
        let rows = &w[first * k..(first + out.len() / mg) * k];
        block(xg, rows, mg, k, out)
    })
}

/// y (m, n) for n output columns whose dot products `dots` computes: it is called with a group
/// of at most MAX_ROWS rows of `x` (mg of them), the first column of a task and that task's
/// column-major output (`out[(col - first) * mg + i]`). Each group streams the weights once;
/// columns are split over the pool's threads.
pub fn by_column_tasks<F>(x: &[f32], m: usize, k: usize, n: usize, dots: F) -> Vec<f32>
where
    F: Fn(&[f32], usize, usize, &mut [f32]) + Sync,
{
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    for (g, xg) in x.chunks(MAX_ROWS * k).enumerate() {
        let mg = xg.len() / k;
        let yt = rows_group(xg, mg, n, &dots);
        for (o, col) in yt.chunks_exact(mg).enumerate() {
            for (i, v) in col.iter().enumerate() {
                y[(g * MAX_ROWS + i) * n + o] = *v;
            }
        }
    }
    y
}

/// One group of rows: the result column-major (n, m), so each task writes one contiguous block.
fn rows_group<F>(x: &[f32], m: usize, n: usize, dots: &F) -> Vec<f32>
where
    F: Fn(&[f32], usize, usize, &mut [f32]) + Sync,
{
    let mut yt = vec![0f32; n * m];
    // One task per pool thread (at least MIN_COLS_PER_TASK columns each): a hand-off costs a
    // thread wake-up, which on a busy machine is worth more than a second core.
    let tasks = rayon::current_num_threads()
        .min(n.div_ceil(MIN_COLS_PER_TASK))
        .max(1);
    if tasks == 1 {
        dots(x, m, 0, &mut yt);
    } else {
        let cols = n.div_ceil(tasks);
        yt.par_chunks_mut(cols * m)
            .enumerate()
            .for_each(|(task, out)| dots(x, m, task * cols, out));
    }
    yt
}

/// Dots every weight row of `w` with every row of `x`, writing `out[row * m + i]`.
fn block<W: WeightElem>(x: &[f32], w: &[W], m: usize, k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above); `avx2::block` reads
        // only whole rows of length k inside `x` and `w`.
        unsafe { avx2::block(x, w, m, k, out) };
        return;
    }
    for (wr, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(m)) {
        for (i, xr) in x.chunks_exact(k).enumerate() {
            o[i] = xr.iter().zip(wr).map(|(a, b)| a * b.f32()).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::WeightElem;
    use std::arch::x86_64::*;

    /// Weight rows per register tile.
    const TW: usize = 3;
    /// `x` rows per register tile: TW * TX accumulators, TW weight vectors and one `x` vector
    /// fit in the 16 vector registers (a clip's 9 rows are three full tiles).
    const TX: usize = 3;

    /// Streams `w` in tiles of TW rows; each tile is dotted with `x` in tiles of TX rows, so every
    /// weight vector loaded from memory feeds TX fused multiply-adds per pass.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block<W: WeightElem>(x: &[f32], w: &[W], m: usize, k: usize, out: &mut [f32]) {
        let nw = w.len() / k;
        let mut r = 0;
        while r < nw {
            let rw = (nw - r).min(TW);
            let mut i = 0;
            while i < m {
                let rx = (m - i).min(TX);
                let prefetch = i == 0;
                // SAFETY: rows r..r+rw of w and i..i+rx of x exist; out has nw * m entries.
                unsafe {
                    match (rx, rw) {
                        (3, 3) => tile::<W, 3, 3>(x, w, m, k, i, r, prefetch, out),
                        (2, 3) => tile::<W, 2, 3>(x, w, m, k, i, r, prefetch, out),
                        (1, 3) => tile::<W, 1, 3>(x, w, m, k, i, r, prefetch, out),
                        (3, 2) => tile::<W, 3, 2>(x, w, m, k, i, r, prefetch, out),
                        (2, 2) => tile::<W, 2, 2>(x, w, m, k, i, r, prefetch, out),
                        (1, 2) => tile::<W, 1, 2>(x, w, m, k, i, r, prefetch, out),
                        (3, _) => tile::<W, 3, 1>(x, w, m, k, i, r, prefetch, out),
                        (2, _) => tile::<W, 2, 1>(x, w, m, k, i, r, prefetch, out),
                        _ => tile::<W, 1, 1>(x, w, m, k, i, r, prefetch, out),
                    }
                }
                i += rx;
            }
            r += rw;
        }
    }

    /// One RX x RW tile: rows i.. of x against rows r.. of w, over all k. With `prefetch`, the
    /// next weight tile is requested from memory meanwhile (the first x tile of each weight tile
    /// does it, so the later x tiles' compute hides the memory latency).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<W: WeightElem, const RX: usize, const RW: usize>(
        x: &[f32],
        w: &[W],
        m: usize,
        k: usize,
        i: usize,
        r: usize,
        prefetch: bool,
        out: &mut [f32],
    ) {
        let kv = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); RW]; RX];
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        // The next tile's elements, clamped to the slice (prefetches never fault, but stay in
        // bounds); one 64-byte line is requested per 16 elements of each row (for half-precision
        // weights every line twice, which costs nothing).
        let next = ((r + RW) * k).min(w.len());
        let next_len = (RW * k).min(w.len() - next);
        let mut c = 0;
        while c < kv {
            if prefetch && c % 16 == 0 {
                let off = c * RW;
                for q in 0..RW {
                    let o = off + q * 16;
                    if o < next_len {
                        // SAFETY: next + o < w.len().
                        unsafe { _mm_prefetch::<_MM_HINT_T0>(wp.add(next + o).cast::<i8>()) };
                    }
                }
            }
            let mut wv = [_mm256_setzero_ps(); RW];
            for (q, v) in wv.iter_mut().enumerate() {
                // SAFETY: (r + q) * k + c + 8 <= w.len() since r + q < rows of w and c + 8 <= k.
                *v = unsafe { W::load8(wp.add((r + q) * k + c)) };
            }
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: as above for x.
                let xv = unsafe { _mm256_loadu_ps(xp.add((i + p) * k + c)) };
                for q in 0..RW {
                    a[q] = _mm256_fmadd_ps(xv, wv[q], a[q]);
                }
            }
            c += 8;
        }
        for (p, a) in acc.iter().enumerate() {
            for (q, v) in a.iter().enumerate() {
                let mut s = hsum(*v);
                for cc in kv..k {
                    s += x[(i + p) * k + cc] * w[(r + q) * k + cc].f32();
                }
                out[(r + q) * m + i + p] = s;
            }
        }
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::max_abs_diff as max_diff;
    use crate::graph::reasoner::init;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_matmul_for_every_weight_dtype() {
        let dev = Device::Cpu;
        for &(m, k, n) in &[
            (1, 37, 5),
            (9, 576, 200),
            (3, 16, 64),
            (32, 100, 129),
            (70, 24, 300),
        ] {
            let x = init::uniform(1, (m, k), 1.0, DType::F32, &dev).unwrap();
            let w = init::uniform(2, (n, k), 1.0, DType::F32, &dev).unwrap();
            for dt in [DType::F32, DType::F16, DType::BF16] {
                let wd = w.to_dtype(dt).unwrap();
                let Some(ours) = try_rows_matmul(&x, &wd).unwrap() else {
                    assert!(dt == DType::F32 && m > MAX_ROWS);
                    continue;
                };
                // Reference: the same rounded weights, multiplied in f32 by candle.
                let wf = wd.to_dtype(DType::F32).unwrap();
                let theirs = x.matmul(&wf.t().unwrap()).unwrap();
                let d = max_diff(&ours, &theirs);
                assert!(d < 1e-4, "({m},{k},{n}) {dt:?}: {d}");
            }
        }
    }

    #[test]
    fn backpropagates_to_x() {
        let dev = Device::Cpu;
        let xv =
            Var::from_tensor(&init::uniform(3, (4, 8), 1.0, DType::F32, &dev).unwrap()).unwrap();
        let w = init::uniform(4, (6, 8), 1.0, DType::F32, &dev).unwrap();
        let y = try_rows_matmul(xv.as_tensor(), &w).unwrap().unwrap();
        let g1 = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let y2 = xv.as_tensor().matmul(&w.t().unwrap()).unwrap();
        let g2 = y2.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let d = max_diff(
            g1.get(xv.as_tensor()).unwrap(),
            g2.get(xv.as_tensor()).unwrap(),
        );
        assert!(d < 1e-4, "{d}");
    }
}
