//! Projection matrices in 8 bits for CPU inference. Each weight row is cut into blocks of 32
//! values `min + scale * q` with q in 0..=255 (an f32 scale and minimum per block), and a clip's
//! 1 + N rows of activations are multiplied by them in one pass over the weights: one byte per
//! weight instead of two (f16) halves the memory read. The grid is asymmetric because SmolLM2
//! ships as Q4_1 (`min + d * q`, q in 0..16, blocks of 32): its blocks fall on this grid
//! (q8 = 17 q4), so unmerged weights come back as the file stores them. A LoRA pair stays beside
//! them in f32 (`with_low_rank`) instead of being merged and rounded: a fine-tuned model's
//! decisions live in those small changes.
//!
//! Where the CPU has AVX-512 VNNI the activations are rounded to 8 bits too (symmetric, one
//! scale per row: at most half a step, max |x| / 254, per value) and each 64 weights cost one
//! integer multiply-add instruction per row; the f32 kernel widened every 16 weights and spent
//! 9 f32 multiply-adds on them, and was bound by that arithmetic. A matrix whose blocks all lie
//! on the 16-level grid (Q4_1 weights) keeps a 4-bit copy that this kernel streams instead: half
//! the bytes, the same result. Elsewhere (AVX-512F alone) the
//! activations stay f32 and the only error is the weights' rounding, at most 1/510 of a block's
//! range.

use super::rows_matmul::by_column_tasks;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Values per block (one scale each).
pub const BLOCK: usize = 32;

/// Most rows of `x` the kernel is used for: one clip (1 + 8 positions). Each weight is widened
/// once per 9 rows, so larger batches read the half-precision weights instead, whose kernel
/// reuses every weight and activation load three times (batch 8: 33 ms per clip against 54).
/// The prompt (36 rows) stays off the 8-bit rows too, on purpose: one scale per row cannot hold
/// the prompt's outlier positions (sent through them, the prefix moved the eval test's AU
/// probabilities from 0.12 to 0.30), while a clip's own rows move its AU logits by 0.003.
pub const MAX_ROWS: usize = 9;

/// A row-major (rows, cols) matrix in 8-bit blocks.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// rows * cols quantised values, row-major.
    q: Vec<u8>,
    /// Scale of each block, row-major.
    scale: Vec<f32>,
    /// Minimum of each block, row-major.
    min: Vec<f32>,
    /// A low-rank term added in f32: y += (x A^T) B^T.
    low_rank: Option<LowRank>,
    /// The same values in 4 bits (q = 17 · q4) when every block lies on the 16-level grid, as
    /// SmolLM2's Q4_1 blocks do, and rows are whole pairs of blocks: per pair of blocks 32 bytes,
    /// byte j holding value j of the pair's first block (low nibble) and of its second (high).
    /// The VNNI kernel reads these: half the bytes per clip.
    q4: Option<Vec<u8>>,
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
        let n = rows * cols;
        let mut q = vec![0u8; n];
        let mut scales = vec![(0f32, 0f32); n / BLOCK];
        // The weights' own storage, read in place: converting a whole f16 matrix to f32 first
        // doubled the load's passes over it and its memory. Other dtypes go through f32.
        let quantized = {
            let (storage, layout) = w.storage_and_layout();
            match (&*storage, layout.contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => {
                    quantize_blocks(&v[a..b], &mut q, &mut scales);
                    true
                }
                (Storage::Cpu(CpuStorage::F16(v)), Some((a, b))) => {
                    const GROUP: usize = 2048; // blocks converted to f32 at a time
                    q.par_chunks_mut(GROUP * BLOCK)
                        .zip(scales.par_chunks_mut(GROUP))
                        .zip(v[a..b].par_chunks(GROUP * BLOCK))
                        .for_each(|((qg, sg), vg)| quantize_f16_group(vg, qg, sg));
                    true
                }
                _ => false,
            }
        };
        if !quantized {
            let v = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            quantize_blocks(&v, &mut q, &mut scales);
        }
        let (scale, min) = scales.into_iter().unzip();
        let q4 = pack_q4(&q, cols);
        Ok(Some(Int8Matrix {
            rows,
            cols,
            q,
            scale,
            min,
            low_rank: None,
            q4,
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

    /// Bytes held (values, their 4-bit copy and scales).
    pub fn bytes(&self) -> usize {
        self.q.len()
            + self.q4.as_ref().map_or(0, Vec::len)
            + 4 * (self.scale.len() + self.min.len())
    }

    /// The matrix it stands for (blocks plus any low-rank term), in f32 (tests and comparisons).
    pub fn dequantize(&self) -> Result<Tensor> {
        let v: Vec<f32> = self
            .q
            .chunks_exact(BLOCK)
            .zip(self.scale.iter().zip(&self.min))
            .flat_map(|(qb, (&s, &lo))| qb.iter().map(move |&q| s.mul_add(q as f32, lo)))
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
            let q4 = self.q4.as_ref().map(|v| &v[first * k / 2..last * k / 2]);
            let (s, lo) = (
                &self.scale[first * nb..last * nb],
                &self.min[first * nb..last * nb],
            );
            block(xg, q, q4, s, lo, mg, k, out)
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

/// The 4-bit copy of `q` (rows of `cols`) when every value is a multiple of 17 and rows are whole
/// pairs of blocks; see [`Int8Matrix`]'s `q4`.
fn pack_q4(q: &[u8], cols: usize) -> Option<Vec<u8>> {
    if !cols.is_multiple_of(2 * BLOCK) {
        return None;
    }
    // Written in place, in parallel, checked in the same pass (collecting a flat_map grew the
    // vector byte by byte: a tenth of the reasoner's load).
    const PAIRS: usize = 1024; // pairs of blocks per task
    let mut out = vec![0u8; q.len() / 2];
    let on_grid = out
        .par_chunks_mut(BLOCK * PAIRS)
        .zip(q.par_chunks(2 * BLOCK * PAIRS))
        .all(|(o, q)| pack_q4_run(q, o));
    on_grid.then_some(out)
}

/// Packs pairs of blocks of `q` into `out` (see [`Int8Matrix`]'s `q4`); false when a value is
/// not a multiple of 17. In 32-byte vectors where the CPU has AVX2.
fn pack_q4_run(q: &[u8], out: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn wide(q: &[u8], out: &mut [u8]) -> bool {
            pack_q4_plain(q, out)
        }
        // SAFETY: the CPU has AVX2.
        return unsafe { wide(q, out) };
    }
    pack_q4_plain(q, out)
}

/// [`pack_q4_run`] written so that it vectorises: no early exit.
#[inline(always)]
fn pack_q4_plain(q: &[u8], out: &mut [u8]) -> bool {
    let mut on_grid = true;
    for (o, pair) in out.chunks_mut(BLOCK).zip(q.chunks_exact(2 * BLOCK)) {
        let (a, b) = pair.split_at(BLOCK);
        for ((o, &lo), &hi) in o.iter_mut().zip(a).zip(b) {
            let (l4, h4) = (lo / 17, hi / 17);
            on_grid &= l4 * 17 == lo && h4 * 17 == hi;
            *o = l4 | (h4 << 4);
        }
    }
    on_grid
}

/// [`quantize_block`] over the blocks of f16 values `v` (one task's group), with 8-lane AVX2
/// where the CPU has it: the packing of a model's weights at load was scalar code.
fn quantize_f16_group(v: &[half::f16], q: &mut [u8], scales: &mut [(f32, f32)]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { wide::quantize_f16_blocks(v, q, scales) };
        return;
    }
    let mut f = vec![0f32; v.len()];
    v.convert_to_f32_slice(&mut f);
    for ((qb, s), vb) in q.chunks_mut(BLOCK).zip(scales).zip(f.chunks(BLOCK)) {
        *s = quantize_block(vb, qb);
    }
}

/// [`quantize_block`] over every block of `v`, in parallel.
fn quantize_blocks(v: &[f32], q: &mut [u8], scales: &mut [(f32, f32)]) {
    q.par_chunks_mut(BLOCK)
        .zip(scales.par_iter_mut())
        .zip(v.par_chunks(BLOCK))
        .for_each(|((qb, s), vb)| *s = quantize_block(vb, qb));
}

/// Rounds one block onto 256 levels from its minimum to its maximum; returns (scale, minimum).
fn quantize_block(v: &[f32], q: &mut [u8]) -> (f32, f32) {
    // Compare-and-select (not `f32::min`, whose NaN rule keeps it scalar) so that the pass
    // vectorises; NaN is looked for in the same pass.
    let (mut lo, mut hi, mut nan) = (f32::INFINITY, f32::NEG_INFINITY, false);
    for &x in v {
        lo = if x < lo { x } else { lo };
        hi = if x > hi { x } else { hi };
        nan |= x.is_nan();
    }
    if !(lo.is_finite() && hi.is_finite()) || nan {
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

/// Dots every weight row in (`q` or its 4-bit copy `q4`, `s`, `lo`) with every row of `x`,
/// writing `out[row * m + i]`.
#[allow(clippy::too_many_arguments)]
fn block(
    x: &[f32],
    q: &[u8],
    q4: Option<&[u8]>,
    s: &[f32],
    lo: &[f32],
    m: usize,
    k: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if eight_bit_rows_here() {
        let rows = QuantisedRows::new(x, m, k);
        // SAFETY: the CPU has AVX-512F, BW and VNNI (checked just above); the kernel reads whole
        // rows of `q` (k bytes) or `q4` (k / 2 bytes) and of the quantised rows, and their blocks'
        // scales and minimums.
        unsafe {
            match q4 {
                Some(q4) => vnni::block(&rows, q4, true, s, lo, out),
                None => vnni::block(&rows, q, false, s, lo, out),
            }
        };
        return;
    }
    let _ = q4;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); the kernel reads only whole rows of
        // length k inside `x` and `q` and their blocks' scales in `s` and `lo`.
        unsafe { avx512::block(x, q, s, lo, m, k, out) };
        return;
    }
    let nb = k / BLOCK;
    for (r, o) in out.chunks_exact_mut(m).enumerate() {
        let (qr, sr, lr) = (
            &q[r * k..(r + 1) * k],
            &s[r * nb..(r + 1) * nb],
            &lo[r * nb..(r + 1) * nb],
        );
        for (i, xr) in x.chunks_exact(k).enumerate() {
            o[i] = xr
                .chunks_exact(BLOCK)
                .zip(qr.chunks_exact(BLOCK).zip(sr.iter().zip(lr)))
                .map(|(xb, (qb, (&sc, &lo)))| {
                    xb.iter()
                        .zip(qb)
                        .map(|(a, &b)| a * sc.mul_add(b as f32, lo))
                        .sum::<f32>()
                })
                .sum();
        }
    }
}

/// Whether 8-bit activations are used where the CPU can (default on; off for A/B timing).
static EIGHT_BIT_ROWS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the 8-bit activations of VNNI CPUs on or off (default on): off, the f32 kernel runs.
pub fn set_eight_bit_rows(on: bool) {
    EIGHT_BIT_ROWS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether clips' rows are rounded to 8 bits here: a CPU with AVX-512 VNNI and BW, and
/// [`set_eight_bit_rows`] not off.
pub fn eight_bit_rows_here() -> bool {
    if !EIGHT_BIT_ROWS.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Rows of activations in 8 bits for the VNNI kernel: each row `x_i ≈ scale_i · q_i` with q_i
/// in −127..=127 (symmetric, per row), plus each block's exact sum of the row (the weights'
/// minimum multiplies it: Σ x·(lo + s·w) = lo·Σx + s·Σ x·w).
struct QuantisedRows {
    m: usize,
    k: usize,
    /// m · k values, row-major.
    q: Vec<i8>,
    /// Scale of each row.
    scale: Vec<f32>,
    /// The block sums divided by the row's scale (0 for an all-zero row), m · k/BLOCK: the
    /// kernel's accumulators are multiplied by the scale at the end.
    scaled_sums: Vec<f32>,
}

impl QuantisedRows {
    fn new(x: &[f32], m: usize, k: usize) -> QuantisedRows {
        let nb = k / BLOCK;
        let mut q = vec![0i8; m * k];
        let mut scale = vec![0f32; m];
        for ((xr, qr), sc) in x.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(&mut scale) {
            #[cfg(target_arch = "x86_64")]
            if eight_bit_rows_here() {
                // SAFETY: the CPU has AVX-512F and BW (checked just above); both rows hold k
                // values, a multiple of 16.
                *sc = unsafe { vnni::quantise(xr, qr) };
                continue;
            }
            let amax = xr.iter().fold(0f32, |a, v| a.max(v.abs()));
            if amax > 0.0 && amax.is_finite() {
                let inv = 127.0 / amax;
                for (o, v) in qr.iter_mut().zip(xr) {
                    // Round half away from zero without a libm call; |t| <= 127.
                    let t = v * inv;
                    *o = (t + 0.5f32.copysign(t)) as i8;
                }
                *sc = amax / 127.0;
            } else if !amax.is_finite() {
                *sc = f32::NAN; // poisons the row's outputs, as f32 arithmetic would
            }
        }
        let block_sum: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
        let scaled_sums = block_sum
            .chunks_exact(nb)
            .zip(&scale)
            .flat_map(|(row, &sc)| {
                let inv = if sc != 0.0 { 1.0 / sc } else { 0.0 };
                row.iter().map(move |v| v * inv)
            })
            .collect();
        QuantisedRows {
            m,
            k,
            q,
            scale,
            scaled_sums,
        }
    }

    /// What the VNNI kernel computes, in plain arithmetic (other CPUs' tests compare with it).
    #[cfg(test)]
    fn dot(&self, i: usize, q: &[u8], s: &[f32], lo: &[f32]) -> f32 {
        let nb = self.k / BLOCK;
        let xq = &self.q[i * self.k..(i + 1) * self.k];
        let bs = &self.scaled_sums[i * nb..(i + 1) * nb];
        let mut main = 0f32;
        let mut offset = 0f32;
        for b in 0..nb {
            let d: i32 = (0..BLOCK)
                .map(|j| q[b * BLOCK + j] as i32 * xq[b * BLOCK + j] as i32)
                .sum();
            main += s[b] * d as f32;
            offset += lo[b] * bs[b];
        }
        self.scale[i] * (main + offset)
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

/// The load's block rounding in 8 lanes.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{BLOCK, quantize_block};
    use std::arch::x86_64::*;

    /// [`quantize_block`] over the f16 blocks of `v`, value for value: the minimum and maximum
    /// are exact in any order, and each value is rounded by the same sub, multiply and add (no
    /// fused multiply-add). Blocks whose result could depend on the scalar order (a minimum of
    /// zero, whose sign the scalar loop takes from the first zero it meets), a NaN, an infinity
    /// or all values equal go through [`quantize_block`] itself.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn quantize_f16_blocks(v: &[half::f16], q: &mut [u8], scales: &mut [(f32, f32)]) {
        for ((vb, qb), s) in v
            .chunks_exact(BLOCK)
            .zip(q.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            let p = vb.as_ptr().cast::<__m128i>();
            // SAFETY: `vb` holds 32 f16 values (64 bytes), read as four unaligned 16-byte loads.
            let x = unsafe { [0, 1, 2, 3].map(|i| _mm256_cvtph_ps(_mm_loadu_si128(p.add(i)))) };
            let lo8 = _mm256_min_ps(_mm256_min_ps(x[0], x[1]), _mm256_min_ps(x[2], x[3]));
            let hi8 = _mm256_max_ps(_mm256_max_ps(x[0], x[1]), _mm256_max_ps(x[2], x[3]));
            let nan = x.iter().fold(_mm256_setzero_ps(), |a, &xi| {
                _mm256_or_ps(a, _mm256_cmp_ps::<_CMP_UNORD_Q>(xi, xi))
            });
            let (lo, hi) = (horizontal(lo8, true), horizontal(hi8, false));
            if _mm256_movemask_ps(nan) != 0
                || !(lo.is_finite() && hi.is_finite())
                || lo == 0.0
                || hi == lo
            {
                let mut f = [0f32; BLOCK];
                for (o, h) in f.iter_mut().zip(vb) {
                    *o = h.to_f32();
                }
                *s = quantize_block(&f, qb);
                continue;
            }
            let (scale, inv) = ((hi - lo) / 255.0, 255.0 / (hi - lo));
            let (lo_v, inv_v, half) =
                (_mm256_set1_ps(lo), _mm256_set1_ps(inv), _mm256_set1_ps(0.5));
            // (x - lo) * inv + 0.5 lies in [0, 256): truncation is the scalar `as u8`.
            let r = x.map(|xi| {
                _mm256_cvttps_epi32(_mm256_add_ps(
                    _mm256_mul_ps(_mm256_sub_ps(xi, lo_v), inv_v),
                    half,
                ))
            });
            let bytes = _mm256_packus_epi16(
                _mm256_packs_epi32(r[0], r[1]),
                _mm256_packs_epi32(r[2], r[3]),
            );
            // The packs work within 128-bit lanes: put the four-value groups back in order.
            let ordered =
                _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: `qb` holds 32 bytes.
            unsafe { _mm256_storeu_si256(qb.as_mut_ptr().cast(), ordered) };
            *s = (scale, lo);
        }
    }

    /// The smallest (`min`) or largest lane of `v`.
    #[target_feature(enable = "avx2")]
    fn horizontal(v: __m256, min: bool) -> f32 {
        let pick = |a: __m128, b: __m128| {
            if min {
                _mm_min_ps(a, b)
            } else {
                _mm_max_ps(a, b)
            }
        };
        let h = pick(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = pick(h, _mm_movehl_ps(h, h));
        let h = pick(h, _mm_shuffle_ps::<0b01>(h, h));
        _mm_cvtss_f32(h)
    }
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
        s: &[f32],
        lo: &[f32],
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        let nb = k / BLOCK;
        let blocks = s.chunks_exact(nb).zip(lo.chunks_exact(nb));
        for (r, (qr, (sr, lr))) in q.chunks_exact(k).zip(blocks).enumerate() {
            for i in (0..m).step_by(TX) {
                let xrows: [usize; TX] = std::array::from_fn(|p| (i + p).min(m - 1));
                // SAFETY: every row exists, so each pointer starts a whole row of k values.
                let xr = xrows.map(|p| unsafe { x.as_ptr().add(p * k) });
                // SAFETY: every x pointer starts a row of k values and `qr` is one of k.
                let acc = unsafe { tile(qr, sr, lr, xr) };
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
    unsafe fn tile(qr: &[u8], sr: &[f32], lr: &[f32], xr: [*const f32; TX]) -> [__m512; TX] {
        let mut acc = [_mm512_setzero_ps(); TX];
        for (b, (&scale, &lo)) in sr.iter().zip(lr).enumerate() {
            // The weights are one sequential stream (rows are contiguous); asking for them
            // PREFETCH bytes ahead keeps several cache lines in flight, which the hardware
            // prefetcher alone did not (41 -> 34 ms per clip here). Addresses past the end are
            // never loaded.
            if b % 2 == 0 {
                let ahead = qr.as_ptr().wrapping_add(b * BLOCK + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            if b % 16 == 0 {
                let ahead = sr.as_ptr().wrapping_add(b + PREFETCH / BLOCK);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                let ahead = lr.as_ptr().wrapping_add(b + PREFETCH / BLOCK);
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

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{BLOCK, QuantisedRows};
    use std::arch::x86_64::*;

    /// x rows per register tile, as in the f32 kernel.
    const TX: usize = super::MAX_ROWS;

    /// Bytes of weights requested ahead of use.
    const PREFETCH: usize = 2048;

    /// Every weight row against every quantised row: per pair of blocks (64 weights, one
    /// register) one `vpdpbusd` per row gives eight 4-term integer sums per block, turned to f32
    /// and scaled by the block's scale; then the blocks' minimums times the row's block sums.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn block(
        x: &QuantisedRows,
        q: &[u8],
        four: bool,
        s: &[f32],
        lo: &[f32],
        out: &mut [f32],
    ) {
        let (m, k) = (x.m, x.k);
        let nb = k / BLOCK;
        let row_bytes = if four { k / 2 } else { k };
        let blocks = s.chunks_exact(nb).zip(lo.chunks_exact(nb));
        for (r, (qr, (sr, lr))) in q.chunks_exact(row_bytes).zip(blocks).enumerate() {
            for i in (0..m).step_by(TX) {
                let rows: [usize; TX] = std::array::from_fn(|p| (i + p).min(m - 1));
                // SAFETY: every row exists, so each pointer starts a whole row of k values and
                // of k / BLOCK block sums.
                let xr = rows.map(|p| unsafe { x.q.as_ptr().add(p * k) });
                let xe = rows.map(|p| unsafe { x.scaled_sums.as_ptr().add(p * nb) });
                // SAFETY: as above; `qr` is one weight row (k bytes, or k / 2 in 4 bits, whole
                // pairs of blocks) and `sr`, `lr` its k / BLOCK scales and minimums.
                let acc = unsafe {
                    if four {
                        tile4(qr, sr, lr, xr, xe)
                    } else {
                        tile(qr, sr, lr, xr, xe)
                    }
                };
                for (p, a) in acc.iter().enumerate().take(m - i) {
                    out[r * m + i + p] = x.scale[i + p] * _mm512_reduce_add_ps(*a);
                }
            }
        }
    }

    /// Rounds `x` to `q` (−127..=127, nearest) with one scale, max |x| / 127, which it returns
    /// (0 for an all-zero row, NaN for a row with a NaN or an infinity).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantise(x: &[f32], q: &mut [i8]) -> f32 {
        let mut amax = _mm512_setzero_ps();
        let mut nan: __mmask16 = 0;
        for c in x.chunks_exact(16) {
            // SAFETY: c holds 16 values.
            let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
            // max_ps can drop a NaN, so NaNs are noted on the side; infinities survive it.
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        }
        let amax = _mm512_reduce_max_ps(amax);
        if nan != 0 || !amax.is_finite() {
            q.fill(0);
            return f32::NAN;
        }
        if amax == 0.0 {
            q.fill(0);
            return 0.0;
        }
        let inv = _mm512_set1_ps(127.0 / amax);
        for (c, o) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
            // SAFETY: c and o hold 16 values each; |x · inv| <= 127, so the narrowing does
            // not saturate.
            unsafe {
                let v = _mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv);
                _mm_storeu_si128(
                    o.as_mut_ptr().cast(),
                    _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)),
                );
            }
        }
        amax / 127.0
    }

    /// The values of blocks b and b + 1 spread over the lanes of each block.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn spread(v: &[f32], b: usize, whole: bool) -> __m512 {
        // Lanes 0..8 hold the first block's partial sums, 8..16 the second's.
        let pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        if whole {
            // SAFETY: blocks b and b + 1 exist.
            let two = unsafe { _mm_load_sd(v.as_ptr().add(b).cast()) };
            _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_castpd_ps(two)))
        } else {
            _mm512_set1_ps(v[b])
        }
    }

    /// As [`tile`] for a row in 4 bits (whole pairs of blocks): each 32 bytes open into the 64
    /// weights of two blocks, and the scales carry the factor 17 (q = 17 · q4).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile4(
        qr: &[u8],
        sr: &[f32],
        lr: &[f32],
        xr: [*const i8; TX],
        xe: [*const f32; TX],
    ) -> [__m512; TX] {
        let mut acc = [_mm512_setzero_ps(); TX];
        let nibble = _mm256_set1_epi8(0x0f);
        let seventeen = _mm512_set1_ps(17.0);
        for b in (0..sr.len()).step_by(2) {
            let c = b * BLOCK;
            if b % 8 == 0 {
                let ahead = qr.as_ptr().wrapping_add(c / 2 + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            // SAFETY: blocks b and b + 1 are 32 bytes at c / 2 inside the row.
            let packed = unsafe { _mm256_loadu_si256(qr.as_ptr().add(c / 2).cast()) };
            let first = _mm256_and_si256(packed, nibble);
            let second = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble);
            let w = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(first), second);
            // SAFETY: blocks b and b + 1 exist.
            let scale = _mm512_mul_ps(unsafe { spread(sr, b, true) }, seventeen);
            macro_rules! rows {
                ($($p:literal)*) => {$(
                    // SAFETY: 64 values at c lie inside row $p's k.
                    let xq = unsafe { _mm512_loadu_si512(xr[$p].add(c).cast()) };
                    let d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq);
                    acc[$p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, acc[$p]);
                )*};
            }
            rows!(0 1 2 3 4 5 6 7 8);
        }
        // SAFETY: `lr` and each row's block sums hold nb values.
        unsafe { minimums(lr, xe, &mut acc) };
        acc
    }

    /// Adds the minimums' term, Σ lo · (block sum / scale), 16 blocks per instruction.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn minimums(lr: &[f32], xe: [*const f32; TX], acc: &mut [__m512; TX]) {
        let nb = lr.len();
        for b in (0..nb).step_by(16) {
            let mask: __mmask16 = if nb - b >= 16 {
                !0
            } else {
                (1u16 << (nb - b)) - 1
            };
            // SAFETY: the mask keeps the loads inside the row's nb minimums and block sums.
            let min = unsafe { _mm512_maskz_loadu_ps(mask, lr.as_ptr().add(b)) };
            macro_rules! rows {
                ($($p:literal)*) => {$(
                    // SAFETY: as above, for row $p's block sums.
                    let sums = unsafe { _mm512_maskz_loadu_ps(mask, xe[$p].add(b)) };
                    acc[$p] = _mm512_fmadd_ps(sums, min, acc[$p]);
                )*};
            }
            rows!(0 1 2 3 4 5 6 7 8);
        }
    }

    /// TX scaled integer dot products of one weight row; an odd last block is read with the
    /// upper 32 bytes masked off.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile(
        qr: &[u8],
        sr: &[f32],
        lr: &[f32],
        xr: [*const i8; TX],
        xe: [*const f32; TX],
    ) -> [__m512; TX] {
        let mut acc = [_mm512_setzero_ps(); TX];
        let nb = sr.len();
        let mut b = 0;
        while b < nb {
            let c = b * BLOCK;
            let whole = b + 1 < nb;
            let mask: __mmask64 = if whole { !0 } else { (1u64 << BLOCK) - 1 };
            if b % 4 == 0 {
                let ahead = qr.as_ptr().wrapping_add(c + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            // SAFETY: the mask keeps the load inside the row's k bytes.
            let w = unsafe { _mm512_maskz_loadu_epi8(mask, qr.as_ptr().add(c).cast()) };
            // SAFETY: blocks b (and b + 1 when `whole`) exist.
            let scale = unsafe { spread(sr, b, whole) };
            macro_rules! rows {
                ($($p:literal)*) => {$(
                    // SAFETY: the mask keeps the load inside row $p's k values.
                    let xq = unsafe { _mm512_maskz_loadu_epi8(mask, xr[$p].add(c).cast()) };
                    let d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq);
                    acc[$p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, acc[$p]);
                )*};
            }
            rows!(0 1 2 3 4 5 6 7 8);
            b += 2;
        }
        // SAFETY: `lr` and each row's block sums hold nb values.
        unsafe { minimums(lr, xe, &mut acc) };
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
            let d = max_abs_diff(&ours, &what_the_kernel_computes(&q, &x));
            assert!(d < 1e-4, "({m},{k},{n}): {d}");
        }
    }

    /// The kernel's arithmetic written plainly: 8-bit rows where the CPU has VNNI (then the
    /// rows' rounding is the only difference from f32), else the dequantised matrix in f32.
    fn what_the_kernel_computes(q: &Int8Matrix, x: &Tensor) -> Tensor {
        if !eight_bit_rows_here() {
            return x.matmul(&q.dequantize().unwrap().t().unwrap()).unwrap();
        }
        let (m, k) = x.dims2().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let rows = QuantisedRows::new(&xv, m, k);
        let nb = k / BLOCK;
        let mut y = vec![0f32; m * q.rows];
        for i in 0..m {
            for r in 0..q.rows {
                let (qr, sr, lr) = (
                    &q.q[r * k..(r + 1) * k],
                    &q.scale[r * nb..(r + 1) * nb],
                    &q.min[r * nb..(r + 1) * nb],
                );
                y[i * q.rows + r] = rows.dot(i, qr, sr, lr);
            }
        }
        Tensor::from_vec(y, (m, q.rows), &Device::Cpu).unwrap()
    }

    #[test]
    fn blocks_on_the_4_bit_grid_are_read_in_4_bits_with_the_same_result() {
        // Q4_1-like rows (min + d · q4, q4 in 0..16, whole pairs of blocks) get a 4-bit copy, and
        // the kernel gives what the 8-bit values give; off the grid, or odd blocks, no copy.
        let dev = Device::Cpu;
        let (m, k, n) = (9, 192, 20);
        let v: Vec<f32> = (0..n * k)
            .map(|i| -0.3 + 0.04 * ((i * 7 + i / 5) % 16) as f32)
            .collect();
        let w = Tensor::from_vec(v, (n, k), &dev).unwrap();
        let q = Int8Matrix::quantize(&w).unwrap().unwrap();
        assert!(q.q4.is_some(), "every block is on the 16-level grid");
        let x = init::uniform(13, (m, k), 1.0, DType::F32, &dev).unwrap();
        let d = max_abs_diff(&q.matmul(&x).unwrap(), &what_the_kernel_computes(&q, &x));
        assert!(d < 1e-4, "{d}");
        let off = init::uniform(14, (n, k), 1.0, DType::F32, &dev).unwrap();
        assert!(Int8Matrix::quantize(&off).unwrap().unwrap().q4.is_none());
        let odd = w.narrow(1, 0, 96).unwrap();
        assert!(Int8Matrix::quantize(&odd).unwrap().unwrap().q4.is_none());
    }

    #[test]
    fn a_nan_or_infinite_activation_poisons_its_row_only() {
        // As f32 arithmetic would: rounding the rows to 8 bits must not hide a NaN.
        let dev = Device::Cpu;
        let w = init::uniform(15, (8, 64), 1.0, DType::F32, &dev).unwrap();
        let q = Int8Matrix::quantize(&w).unwrap().unwrap();
        let mut v = init::uniform(16, (3, 64), 1.0, DType::F32, &dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        v[5] = f32::NAN;
        v[64 + 40] = f32::INFINITY;
        let x = Tensor::from_vec(v, (3, 64), &dev).unwrap();
        let y = q.matmul(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!(y[0].iter().all(|v| v.is_nan()), "{:?}", y[0]);
        assert!(y[1].iter().all(|v| !v.is_finite()), "{:?}", y[1]);
        assert!(y[2].iter().all(|v| v.is_finite()), "{:?}", y[2]);
    }

    #[test]
    fn eight_bit_rows_stay_within_their_rounding() {
        // Each activation moves at most half its row's step (max |x| / 127 / 2), so each output
        // moves at most that times the weight row's absolute sum, whichever kernel runs here.
        let dev = Device::Cpu;
        let (m, k, n) = (9, 576, 64);
        let x = init::uniform(11, (m, k), 3.0, DType::F32, &dev).unwrap();
        let w = init::uniform(12, (n, k), 0.05, DType::F32, &dev).unwrap();
        let q = Int8Matrix::quantize(&w).unwrap().unwrap();
        let exact = x.matmul(&q.dequantize().unwrap().t().unwrap()).unwrap();
        let ours = q.matmul(&x).unwrap().to_vec2::<f32>().unwrap();
        let wabs: Vec<f32> = q
            .dequantize()
            .unwrap()
            .abs()
            .unwrap()
            .sum(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (row, xr)) in exact
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .zip(x.to_vec2::<f32>().unwrap())
            .enumerate()
        {
            let half_step = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0 / 2.0;
            for (r, v) in row.iter().enumerate() {
                let bound = half_step * wabs[r] + 1e-4;
                let e = (ours[i][r] - v).abs();
                assert!(e <= bound, "row {i} col {r}: {e} > {bound}");
            }
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
    fn awkward_f16_blocks_quantise_bit_for_bit_as_f32_ones() {
        // The vector path must match the scalar one to the bit, also where order could show:
        // a minimum of +0 or -0 met in either order, all values equal, NaN, infinities, blocks
        // on the 4-bit grid (which get the 4-bit copy) and plain random blocks.
        let mut blocks: Vec<[f32; BLOCK]> = Vec::new();
        let ramp = |f: &dyn Fn(usize) -> f32| std::array::from_fn::<f32, BLOCK, _>(f);
        blocks.push(ramp(&|i| i as f32 * 0.25));
        blocks.push(ramp(&|i| if i == 3 { -0.0 } else { i as f32 * 0.25 }));
        blocks.push(ramp(&|i| if i == 0 { -0.0 } else { (i % 5) as f32 }));
        blocks.push(ramp(&|i| if i < 2 { [0.0, -0.0][i] } else { 1.5 }));
        blocks.push(ramp(&|_| -0.75));
        blocks.push(ramp(&|i| if i == 7 { f32::NAN } else { i as f32 }));
        blocks.push(ramp(&|i| if i == 9 { f32::INFINITY } else { -(i as f32) }));
        blocks.push(ramp(&|i| if i == 30 { f32::NEG_INFINITY } else { 1.0 }));
        blocks.push(ramp(&|i| -0.3 + 0.04 * ((i * 7) % 16) as f32));
        blocks.push(ramp(&|i| -0.3 + 0.04 * ((i * 5 + 3) % 16) as f32));
        for seed in 0..6u64 {
            let r = init::uniform(100 + seed, (1, BLOCK), 2.0, DType::F32, &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            blocks.push(r.try_into().unwrap());
        }
        // Whole rows of two blocks, so the 4-bit copy is tried on the grid rows.
        let v: Vec<f32> = blocks.iter().flatten().copied().collect();
        let w = Tensor::from_vec(v, (blocks.len() / 2, 2 * BLOCK), &Device::Cpu).unwrap();
        let half = w.to_dtype(DType::F16).unwrap();
        let direct = Int8Matrix::quantize(&half).unwrap().unwrap();
        let scalar = Int8Matrix::quantize(&half.to_dtype(DType::F32).unwrap())
            .unwrap()
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(direct.q, scalar.q);
        assert_eq!(bits(&direct.scale), bits(&scalar.scale));
        assert_eq!(bits(&direct.min), bits(&scalar.min));
        assert_eq!(direct.q4, scalar.q4);
        // Only the last rows are random: the 4-bit copy is refused for the whole matrix, and
        // granted to the grid rows alone.
        assert!(direct.q4.is_none());
        let grid = half.narrow(0, 4, 1).unwrap();
        let q = Int8Matrix::quantize(&grid).unwrap().unwrap();
        let unpacked: Vec<u8> = (0..2 * BLOCK)
            .map(|j| {
                let b = q.q4.as_ref().expect("a grid row is packed")[j % BLOCK];
                17 * if j < BLOCK { b & 15 } else { b >> 4 }
            })
            .collect();
        assert_eq!(unpacked, q.q);
    }

    #[test]
    fn f16_weights_are_read_in_place_as_their_f32_values() {
        // 70 × 4096 f16 values (several conversion groups, the last one partial), a view that is
        // not its storage's start, and bf16 (through f32): all as the f32 copy quantises.
        let w = init::uniform(11, (70, 4096), 3.0, DType::F32, &Device::Cpu).unwrap();
        let parts = |q: &Int8Matrix| (q.q.clone(), q.scale.clone(), q.min.clone(), q.q4.clone());
        let half = w.to_dtype(DType::F16).unwrap();
        let view = half.narrow(0, 3, 60).unwrap();
        let b16 = w.to_dtype(DType::BF16).unwrap();
        for t in [&half, &view, &b16] {
            let direct = Int8Matrix::quantize(t).unwrap().unwrap();
            let via_f32 = Int8Matrix::quantize(&t.to_dtype(DType::F32).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(direct.dims(), via_f32.dims());
            assert!(parts(&direct) == parts(&via_f32), "{:?}", t.dtype());
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
        let low = (b.matmul(&a).unwrap() * 0.5).unwrap();
        let full = (base + &low).unwrap();
        // The low-rank term reads the f32 rows in every kernel.
        let theirs =
            (what_the_kernel_computes(&plain, &x) + x.matmul(&low.t().unwrap()).unwrap()).unwrap();
        let q = plain.with_low_rank(&a, &b, 0.5).unwrap();
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
