//! Projection matrices in 8 bits for CPU inference. Each weight row is cut into blocks of 32
//! values `min + scale * q` with q in 0..=255 (an f32 scale and minimum per block), and a clip's
//! 1 + N rows of f32 activations are multiplied by them in one pass over the weights: one byte per
//! weight instead of two (f16) halves the memory read, after which the kernel is mostly bound by
//! its arithmetic (widening plus 9 multiply-adds per 16 weights; in cache it runs only 1.3x faster
//! than streaming). Activations stay f32, so the only error is the weights' rounding, at most
//! 1/510 of a block's range. The grid is asymmetric because SmolLM2 ships as Q4_1 (`min + d * q`, q in
//! 0..16, blocks of 32): its blocks fall on this grid (q8 = 17 q4), so unmerged weights come
//! back as the file stores them. A LoRA pair stays beside them in f32 (`with_low_rank`) instead of
//! being merged and rounded: a fine-tuned model's decisions live in those small changes.

use super::rows_matmul::by_column_tasks;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Values per block (one scale each).
pub const BLOCK: usize = 32;

/// Most rows of `x` the kernel is used for: one clip (1 + 8 positions). Each weight is widened
/// once per 9 rows, so larger batches read the half-precision weights instead, whose kernel
/// reuses every weight and activation load three times (batch 8: 33 ms per clip against 54).
pub const MAX_ROWS: usize = 9;

/// A row-major (rows, cols) matrix in 8-bit blocks.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// rows * cols quantised values, row-major.
    q: Vec<u8>,
    /// (scale, minimum) of each block, row-major.
    scales: Vec<(f32, f32)>,
    /// A low-rank term added in f32: y += (x A^T) B^T.
    low_rank: Option<LowRank>,
}

/// `A` (rank, cols) and `B` (rows, rank) of a low-rank term, both f32 row-major, B pre-scaled.
#[derive(Debug, Clone)]
struct LowRank {
    rank: usize,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Int8Matrix {
    /// Quantises a 2-D tensor (any float dtype); `None` when it is not 2-D or its rows are not a
    /// whole number of blocks (such a matrix stays in its own dtype).
    pub fn quantize(w: &Tensor) -> Result<Option<Int8Matrix>> {
        let Ok((rows, cols)) = w.dims2() else {
            return Ok(None);
        };
        if cols == 0 || cols % BLOCK != 0 {
            return Ok(None);
        }
        let v = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let blocks = v.len() / BLOCK;
        let mut q = vec![0u8; v.len()];
        let mut scales = vec![(0f32, 0f32); blocks];
        q.par_chunks_mut(BLOCK)
            .zip(scales.par_iter_mut())
            .zip(v.par_chunks(BLOCK))
            .for_each(|((qb, s), vb)| *s = quantize_block(vb, qb));
        Ok(Some(Int8Matrix {
            rows,
            cols,
            q,
            scales,
            low_rank: None,
        }))
    }

    /// Adds `scale * B A` (A (rank, cols), B (rows, rank)) to the matrix, kept in f32.
    pub fn with_low_rank(mut self, a: &Tensor, b: &Tensor, scale: f64) -> Result<Int8Matrix> {
        let (rank, cols) = a.dims2()?;
        let (rows, rb) = b.dims2()?;
        if (rows, cols, rb) != (self.rows, self.cols, rank) {
            candle_core::bail!(
                "low-rank term A {:?} B {:?} does not fit a {}x{} matrix",
                a.dims(),
                b.dims(),
                self.rows,
                self.cols
            );
        }
        let flat = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        self.low_rank = Some(LowRank {
            rank,
            a: flat(a)?,
            b: flat(&(b.to_dtype(DType::F32)? * scale)?)?,
        });
        Ok(self)
    }

    /// (rows, cols).
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Bytes held (values and scales).
    pub fn bytes(&self) -> usize {
        self.q.len() + 8 * self.scales.len()
    }

    /// The matrix it stands for (blocks plus any low-rank term), in f32 (tests and comparisons).
    pub fn dequantize(&self) -> Result<Tensor> {
        let v: Vec<f32> = self
            .q
            .chunks_exact(BLOCK)
            .zip(&self.scales)
            .flat_map(|(qb, &(s, lo))| qb.iter().map(move |&q| s.mul_add(q as f32, lo)))
            .collect();
        let dev = candle_core::Device::Cpu;
        let w = Tensor::from_vec(v, (self.rows, self.cols), &dev)?;
        match &self.low_rank {
            None => Ok(w),
            Some(l) => {
                let a = Tensor::from_slice(&l.a, (l.rank, self.cols), &dev)?;
                let b = Tensor::from_slice(&l.b, (self.rows, l.rank), &dev)?;
                w + b.matmul(&a)?
            }
        }
    }

    /// Whether the kernel is the fast path for `x` (m, cols): f32 rows on the CPU outside autograd,
    /// at most [`MAX_ROWS`] of them.
    pub fn serves(&self, x: &Tensor) -> bool {
        x.dtype() == DType::F32
            && x.device().is_cpu()
            && !x.track_op()
            && x.dims().first().is_some_and(|&m| m <= MAX_ROWS)
    }

    /// `x W^T` for `x` (m, cols) f32 on the CPU -> (m, rows); no gradient flows through it.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// y (m, rows) for x (m, cols) row-major.
    fn rows_matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, nb) = (self.cols, self.cols / BLOCK);
        let mut y = by_column_tasks(x, m, k, self.rows, |xg, mg, first, out| {
            let last = first + out.len() / mg;
            let q = &self.q[first * k..last * k];
            let s = &self.scales[first * nb..last * nb];
            block(xg, q, s, mg, k, out)
        });
        if let Some(l) = &self.low_rank {
            let u = super::rows_matmul::rows_matmul(x, &l.a, m, k, l.rank);
            let up = super::rows_matmul::rows_matmul(&u, &l.b, m, l.rank, self.rows);
            y.iter_mut().zip(up).for_each(|(v, d)| *v += d);
        }
        y
    }
}

impl CustomOp1 for Int8Matrix {
    fn name(&self) -> &'static str {
        "int8-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l.shape().dims2()?;
        if k != self.cols {
            candle_core::bail!("int8-matmul: x has {k} columns, the matrix {}", self.cols);
        }
        let Some((a0, a1)) = l.contiguous_offsets() else {
            candle_core::bail!("int8-matmul needs a contiguous x");
        };
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("int8-matmul: x must be f32");
        };
        let y = self.rows_matmul(&x[a0..a1], m);
        Ok((CpuStorage::F32(y), Shape::from((m, self.rows))))
    }
}

/// Rounds one block onto 256 levels from its minimum to its maximum; returns (scale, minimum).
fn quantize_block(v: &[f32], q: &mut [u8]) -> (f32, f32) {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !(lo.is_finite() && hi.is_finite()) || v.iter().any(|x| x.is_nan()) {
        q.fill(0);
        return (f32::NAN, f32::NAN);
    }
    if hi == lo {
        q.fill(0);
        return (0.0, lo);
    }
    let (scale, inv) = ((hi - lo) / 255.0, 255.0 / (hi - lo));
    for (o, x) in q.iter_mut().zip(v) {
        // x - lo >= 0, so adding a half and truncating rounds to nearest (`as` saturates at 255;
        // an inline add is far cheaper at load than a libm call per weight).
        *o = ((x - lo) * inv + 0.5) as u8;
    }
    (scale, lo)
}

/// Dots every weight row in (`q`, `s`) with every row of `x`, writing `out[row * m + i]`.
fn block(x: &[f32], q: &[u8], s: &[(f32, f32)], m: usize, k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); the kernel reads only whole rows of
        // length k inside `x` and `q` and their blocks' scales in `s`.
        unsafe { avx512::block(x, q, s, m, k, out) };
        return;
    }
    let nb = k / BLOCK;
    for (r, o) in out.chunks_exact_mut(m).enumerate() {
        let (qr, sr) = (&q[r * k..(r + 1) * k], &s[r * nb..(r + 1) * nb]);
        for (i, xr) in x.chunks_exact(k).enumerate() {
            o[i] = xr
                .chunks_exact(BLOCK)
                .zip(qr.chunks_exact(BLOCK).zip(sr))
                .map(|(xb, (qb, &(sc, lo)))| {
                    xb.iter()
                        .zip(qb)
                        .map(|(a, &b)| a * sc.mul_add(b as f32, lo))
                        .sum::<f32>()
                })
                .sum();
        }
    }
}

/// Whether this CPU runs the int8 kernel in vector registers (otherwise it is a plain loop,
/// slower than half-precision weights).
pub fn fast_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::BLOCK;
    use std::arch::x86_64::*;

    /// `x` rows per register tile: a clip's 9 rows, so each weight vector is widened and scaled
    /// once for all of them (9 accumulators; more weight rows per tile made LLVM spill them).
    const TX: usize = super::MAX_ROWS;

    /// How far ahead (bytes of weights) the stream is requested (1024 to 4096 measured the
    /// same here; 512 was too close).
    const PREFETCH: usize = 2048;

    /// Streams the weights one row at a time against `x` in tiles of TX rows. A short last tile
    /// repeats its last row (computed, not written), so every tile runs the same unrolled code.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn block(
        x: &[f32],
        q: &[u8],
        s: &[(f32, f32)],
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        let nb = k / BLOCK;
        for (r, (qr, sr)) in q.chunks_exact(k).zip(s.chunks_exact(nb)).enumerate() {
            for i in (0..m).step_by(TX) {
                let xrows: [usize; TX] = std::array::from_fn(|p| (i + p).min(m - 1));
                // SAFETY: every row exists, so each pointer starts a whole row of k values.
                let xr = xrows.map(|p| unsafe { x.as_ptr().add(p * k) });
                // SAFETY: every x pointer starts a row of k values and `qr` is one of k.
                let acc = unsafe { tile(qr, sr, xr) };
                for (p, a) in acc.iter().enumerate().take(m - i) {
                    out[r * m + i + p] = _mm512_reduce_add_ps(*a);
                }
            }
        }
    }

    /// TX dot products of one weight row over its blocks: each 16 weights are widened to f32
    /// and mapped through their block's scale and minimum once, then fed to TX fused
    /// multiply-adds (written out row by row, so the accumulators stay in registers without
    /// relying on loop unrolling).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(qr: &[u8], sr: &[(f32, f32)], xr: [*const f32; TX]) -> [__m512; TX] {
        let mut acc = [_mm512_setzero_ps(); TX];
        for (b, &(scale, lo)) in sr.iter().enumerate() {
            // The weights are one sequential stream (rows are contiguous); asking for them
            // PREFETCH bytes ahead keeps several cache lines in flight, which the hardware
            // prefetcher alone did not (41 -> 34 ms per clip here). Addresses past the end are
            // never loaded.
            if b % 2 == 0 {
                let ahead = qr.as_ptr().wrapping_add(b * BLOCK + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            if b % 8 == 0 {
                let ahead = sr.as_ptr().wrapping_add(b + PREFETCH / BLOCK);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            let (scale, lo) = (_mm512_set1_ps(scale), _mm512_set1_ps(lo));
            for c in [b * BLOCK, b * BLOCK + 16] {
                // SAFETY: c + 16 <= k = qr.len() for both halves of block b.
                let raw = unsafe { _mm_loadu_si128(qr.as_ptr().add(c).cast()) };
                let w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(raw)), scale, lo);
                macro_rules! rows {
                    ($($p:literal)*) => {$(
                        // SAFETY: c + 16 <= k floats of row $p of the x tile.
                        acc[$p] = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(xr[$p].add(c)) }, w, acc[$p]);
                    )*};
                }
                rows!(0 1 2 3 4 5 6 7 8);
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::max_abs_diff;
    use crate::graph::reasoner::init;
    use candle_core::Device;

    #[test]
    fn matches_the_dequantised_matrix_for_any_rows() {
        let dev = Device::Cpu;
        for &(m, k, n) in &[
            (1, 32, 5),
            (9, 576, 200),
            (3, 64, 3),
            (40, 96, 129),
            (10, 32, 1),
        ] {
            let x = init::uniform(1, (m, k), 1.0, DType::F32, &dev).unwrap();
            let w = init::uniform(2, (n, k), 1.0, DType::F32, &dev).unwrap();
            let q = Int8Matrix::quantize(&w).unwrap().unwrap();
            let ours = q.matmul(&x).unwrap();
            let theirs = x.matmul(&q.dequantize().unwrap().t().unwrap()).unwrap();
            let d = max_abs_diff(&ours, &theirs);
            assert!(d < 1e-4, "({m},{k},{n}): {d}");
        }
    }

    #[test]
    fn rounding_error_is_within_half_a_step_of_each_block() {
        let w = init::uniform(3, (7, 64), 2.0, DType::F32, &Device::Cpu).unwrap();
        let q = Int8Matrix::quantize(&w).unwrap().unwrap();
        let back = q.dequantize().unwrap().to_vec2::<f32>().unwrap();
        for (r, row) in w.to_vec2::<f32>().unwrap().iter().enumerate() {
            for (b, blk) in row.chunks(BLOCK).enumerate() {
                let lo = blk.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let step = (hi - lo) / 255.0;
                for (c, v) in blk.iter().enumerate() {
                    let e = (v - back[r][b * BLOCK + c]).abs();
                    assert!(
                        e <= step * 0.5 + 1e-6,
                        "row {r} block {b}: error {e}, step {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn q4_1_blocks_come_back_exactly() {
        // min + d * q with q in 0..16 (GGML's Q4_1), every level present in each block.
        let (d, min) = (0.0123f32, -0.077f32);
        let v: Vec<f32> = (0..64).map(|i| min + d * ((i * 7) % 16) as f32).collect();
        let w = Tensor::from_vec(v.clone(), (2, 32), &Device::Cpu).unwrap();
        let back = Int8Matrix::quantize(&w)
            .unwrap()
            .unwrap()
            .dequantize()
            .unwrap();
        for (a, b) in v
            .iter()
            .zip(back.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        {
            assert!((a - b).abs() <= 1e-6 * d, "{a} came back as {b}");
        }
    }

    #[test]
    fn a_low_rank_term_is_added_in_full_precision() {
        let dev = Device::Cpu;
        let (m, k, n, r) = (9, 64, 40, 4);
        let x = init::uniform(6, (m, k), 1.0, DType::F32, &dev).unwrap();
        let w = init::uniform(7, (n, k), 1.0, DType::F32, &dev).unwrap();
        let a = init::uniform(8, (r, k), 1.0, DType::F32, &dev).unwrap();
        let b = init::uniform(9, (n, r), 1.0, DType::F32, &dev).unwrap();
        let plain = Int8Matrix::quantize(&w).unwrap().unwrap();
        let base = plain.dequantize().unwrap();
        let q = plain.with_low_rank(&a, &b, 0.5).unwrap();
        let full = (base + (b.matmul(&a).unwrap() * 0.5).unwrap()).unwrap();
        let theirs = x.matmul(&full.t().unwrap()).unwrap();
        let d = max_abs_diff(&q.matmul(&x).unwrap(), &theirs);
        assert!(d < 1e-4, "{d}");
        assert!(max_abs_diff(&q.dequantize().unwrap(), &full) < 1e-5);
    }

    #[test]
    fn the_kernel_serves_one_clip_of_plain_f32_rows() {
        let w = init::uniform(5, (4, 32), 1.0, DType::F32, &Device::Cpu).unwrap();
        let q = Int8Matrix::quantize(&w).unwrap().unwrap();
        let rows = |m: usize| Tensor::zeros((m, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(q.serves(&rows(1)) && q.serves(&rows(MAX_ROWS)));
        assert!(
            !q.serves(&rows(MAX_ROWS + 1)),
            "a batch goes to the f16 kernel"
        );
        assert!(!q.serves(&rows(2).to_dtype(DType::F16).unwrap()));
        let tracked = candle_core::Var::from_tensor(&rows(2)).unwrap();
        assert!(!q.serves(tracked.as_tensor()), "training needs gradients");
    }

    #[test]
    fn rows_that_are_not_whole_blocks_stay_unquantised() {
        let w = init::uniform(4, (3, 40), 1.0, DType::F32, &Device::Cpu).unwrap();
        assert!(Int8Matrix::quantize(&w).unwrap().is_none());
        let zero = Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap();
        let q = Int8Matrix::quantize(&zero).unwrap().unwrap();
        let x = init::uniform(5, (1, 32), 1.0, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            q.matmul(&x).unwrap().to_vec2::<f32>().unwrap(),
            [[0.0, 0.0]]
        );
    }
}
