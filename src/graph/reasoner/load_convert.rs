//! Float conversions for loading the reasoner on the CPU, vectorised and spread over the thread
//! pool. candle dequantises a GGUF tensor into a whole f32 copy on one thread, and `to_dtype`
//! then rounds it value by value on one thread too: with the page faults of the f32 copies that
//! was a third of the load's CPU. Here each chunk of blocks goes through candle's own
//! `to_float` into a small buffer and is rounded from there, so the values are the same (IEEE
//! round to nearest even, as `half` and candle both do).

use candle_core::quantized::k_quants::{BlockQ4_1, BlockQ8_0};
use candle_core::quantized::{GgmlDType, GgmlType, QTensor};
use candle_core::{CpuStorage, DType, Device, Result, Shape, Storage, Tensor};
use half::slice::HalfFloatSliceExt;
use half::vec::HalfBitsVecExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// Values per parallel task.
const CHUNK: usize = 1 << 16;

/// GGUF tensor `q` dequantised to `dtype` on `device`: Q4_1 and Q8_0 blocks straight to
/// f16/bf16 on the CPU, anything else through candle's f32 copy and [`f32_to`].
pub fn dequantize_to(q: &QTensor, dtype: DType, device: &Device) -> Result<Tensor> {
    if device.is_cpu() {
        let data = q.data()?;
        let direct = match q.dtype() {
            GgmlDType::Q4_1 => q4_1_to_f16(&data, q.shape(), dtype, device)
                .or_else(|| from_blocks::<BlockQ4_1>(&data, q.shape(), dtype, device)),
            GgmlDType::Q8_0 => from_blocks::<BlockQ8_0>(&data, q.shape(), dtype, device),
            _ => None,
        };
        if let Some(t) = direct {
            return t;
        }
    }
    q.dequantize(&Device::Cpu)
        .and_then(|t| f32_to(&t, dtype))
        .and_then(|t| t.to_device(device))
}

/// The values stored as blocks of `T` in `bytes`, dequantised and rounded to `dtype`; `None`
/// when the bytes do not hold exactly `shape`'s blocks or `dtype` is not f16/bf16.
fn from_blocks<T: GgmlType>(
    bytes: &[u8],
    shape: &Shape,
    dtype: DType,
    device: &Device,
) -> Option<Result<Tensor>> {
    let n = shape.elem_count();
    let count = n / T::BLCK_SIZE;
    if !n.is_multiple_of(T::BLCK_SIZE)
        || !CHUNK.is_multiple_of(T::BLCK_SIZE)
        || bytes.len() != count * std::mem::size_of::<T>()
        || !bytes.as_ptr().cast::<T>().is_aligned()
    {
        return None;
    }
    // SAFETY: the bytes are a CPU QTensor's storage, a `Vec<T>` of `count` blocks (length and
    // alignment checked above), borrowed for as long as `bytes` is.
    let blocks: &[T] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) };
    rounded(shape, dtype, device, |start, f| {
        let first = start / T::BLCK_SIZE;
        T::to_float(&blocks[first..first + f.len() / T::BLCK_SIZE], f);
    })
}

/// Q4_1 blocks straight to f16 in one vector pass where the CPU has AVX2 and F16C: candle's
/// `to_float` values (`q·d + m` in f32, a multiply then an add) rounded to nearest even as
/// `half` rounds them, without the f32 buffer between. `None` elsewhere, for other dtypes, or
/// when the bytes are not exactly `shape`'s blocks.
fn q4_1_to_f16(
    bytes: &[u8],
    shape: &Shape,
    dtype: DType,
    device: &Device,
) -> Option<Result<Tensor>> {
    #[cfg(target_arch = "x86_64")]
    {
        let n = shape.elem_count();
        if dtype != DType::F16
            || !n.is_multiple_of(32)
            || bytes.len() != n / 32 * q4_1_wide::BYTES
            || !std::arch::is_x86_feature_detected!("avx2")
            || !std::arch::is_x86_feature_detected!("f16c")
        {
            return None;
        }
        let mut out = vec![0u16; n];
        out.par_chunks_mut(CHUNK)
            .zip(bytes.par_chunks(CHUNK / 32 * q4_1_wide::BYTES))
            // SAFETY: the CPU has AVX2 and F16C.
            .for_each(|(o, b)| unsafe { q4_1_wide::to_f16(b, o) });
        let out: Vec<f16> = out.reinterpret_into();
        Some(Tensor::from_vec(out, shape, device))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (bytes, shape, dtype, device);
        None
    }
}

/// GGML's Q4_1 block (little-endian f16 `d` and `m`, then 16 bytes: value j in the low nibble
/// of byte j, value 16 + j in its high nibble) decoded 8 values at a time.
#[cfg(target_arch = "x86_64")]
mod q4_1_wide {
    use half::f16;
    use std::arch::x86_64::*;

    /// Bytes per block of 32 values.
    pub const BYTES: usize = 20;

    /// Writes the f16 bits of the values of the blocks in `b` into `o`.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn to_f16(b: &[u8], o: &mut [u16]) {
        let mask = _mm_set1_epi8(0x0F);
        for (blk, o) in b.chunks_exact(BYTES).zip(o.chunks_exact_mut(32)) {
            let d = _mm256_set1_ps(f16::from_le_bytes([blk[0], blk[1]]).to_f32());
            let m = _mm256_set1_ps(f16::from_le_bytes([blk[2], blk[3]]).to_f32());
            // SAFETY: bytes 4..20 of the block are its 16 bytes of nibbles.
            let qs = unsafe { _mm_loadu_si128(blk.as_ptr().add(4).cast()) };
            let nibbles = [
                _mm_and_si128(qs, mask),
                _mm_and_si128(_mm_srli_epi16::<4>(qs), mask),
            ];
            for (half, v) in nibbles.into_iter().enumerate() {
                for (eighth, w) in [v, _mm_srli_si128::<8>(v)].into_iter().enumerate() {
                    let x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(w));
                    let y = _mm256_add_ps(_mm256_mul_ps(x, d), m);
                    let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(y);
                    let at = 16 * half + 8 * eighth;
                    // SAFETY: `o` holds the block's 32 values; 8 are written at `at`.
                    unsafe { _mm_storeu_si128(o.as_mut_ptr().add(at).cast(), h) };
                }
            }
        }
    }
}

/// `t` (an f32 tensor on the CPU) in `dtype`; other tensors and dtypes go through `to_dtype`.
pub fn f32_to(t: &Tensor, dtype: DType) -> Result<Tensor> {
    let converted = {
        let (storage, layout) = t.storage_and_layout();
        match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, _))) => {
                rounded(t.shape(), dtype, t.device(), |start, f| {
                    f.copy_from_slice(&v[a + start..a + start + f.len()]);
                })
            }
            _ => None,
        }
    };
    converted.unwrap_or_else(|| t.to_dtype(dtype))
}

/// A LoRA merge `w + scale·ba` in `w`'s dtype, value for value as candle's
/// `(w.to_dtype(F32) + ba * scale).to_dtype(w.dtype())` (its `* scale` is the affine `v·s + 0`,
/// which keeps the sign of a zero as written here), without the two whole f32 copies and
/// candle's spinning element-wise pool. `None` unless `w` is f16/bf16 and both are contiguous
/// CPU tensors of one shape, `ba` in f32.
pub fn merged_rounded(w: &Tensor, ba: &Tensor, scale: f64) -> Option<Result<Tensor>> {
    if w.shape() != ba.shape() || !w.device().is_cpu() {
        return None;
    }
    let (ws, wl) = w.storage_and_layout();
    let (bs, bl) = ba.storage_and_layout();
    let (Some((w0, _)), Some((b0, _))) = (wl.contiguous_offsets(), bl.contiguous_offsets()) else {
        return None;
    };
    let Storage::Cpu(CpuStorage::F32(d)) = &*bs else {
        return None;
    };
    let s = scale as f32;
    let add = |start: usize, f: &mut [f32]| {
        for (x, &b) in f.iter_mut().zip(&d[b0 + start..]) {
            *x += b * s + 0.0;
        }
    };
    match &*ws {
        Storage::Cpu(CpuStorage::F16(v)) => rounded(w.shape(), DType::F16, w.device(), |i, f| {
            v[w0 + i..w0 + i + f.len()].convert_to_f32_slice(f);
            add(i, f);
        }),
        Storage::Cpu(CpuStorage::BF16(v)) => rounded(w.shape(), DType::BF16, w.device(), |i, f| {
            v[w0 + i..w0 + i + f.len()].convert_to_f32_slice(f);
            add(i, f);
        }),
        _ => None,
    }
}

/// A `dtype` (f16 or bf16) tensor of `shape` on `device`: each [`CHUNK`] of values, in
/// parallel, is written in f32 by `fill(index of its first value, buffer)` and rounded from
/// there. `None` for any other dtype.
fn rounded(
    shape: &Shape,
    dtype: DType,
    device: &Device,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Option<Result<Tensor>> {
    fn run<H: Send>(out: &mut [H], fill: &(impl Fn(usize, &mut [f32]) + Sync))
    where
        [H]: HalfFloatSliceExt,
    {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
            let mut f = vec![0f32; o.len()];
            fill(i * CHUNK, &mut f);
            o.convert_from_f32_slice(&f);
        });
    }
    let n = shape.elem_count();
    // Zeroed bits come from the allocator already zero (no fill pass before the conversion).
    match dtype {
        DType::F16 => {
            let mut out: Vec<f16> = vec![0u16; n].reinterpret_into();
            run(&mut out, &fill);
            Some(Tensor::from_vec(out, shape, device))
        }
        DType::BF16 => {
            let mut out: Vec<bf16> = vec![0u16; n].reinterpret_into();
            run(&mut out, &fill);
            Some(Tensor::from_vec(out, shape, device))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values that round differently (ties, subnormals, overflow, NaN) convert as `to_dtype` does.
    fn awkward() -> Vec<f32> {
        let mut v: Vec<f32> = (0..200_000)
            .map(|i| ((i as f32) * 0.618_034).sin() * 10f32.powi(i % 13 - 8))
            .collect();
        v.extend([
            0.0,
            -0.0,
            1.0 + f32::EPSILON,
            65504.0,
            65520.0,
            1e9,
            -1e9,
            5.96e-8,
            2.98e-8,
            1.0 + 1.0 / 1024.0, // f16's step at 1
            1.0 + 1.0 / 2048.0, // a tie for f16
            1.0 + 3.0 / 2048.0, // a tie the other way
            1.0 + 1.0 / 256.0,  // a tie for bf16
            f32::INFINITY,
            f32::NAN,
        ]);
        v
    }

    /// Every value's f32 bits (f16 and bf16 widen exactly).
    fn bits(t: &Tensor) -> Vec<u32> {
        let f = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        f.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    #[test]
    fn dequantises_like_candle() {
        let v: Vec<f32> = awkward()
            .into_iter()
            .filter(|x| x.is_finite() && x.abs() < 1e4)
            .take(96 * 1024)
            .collect();
        let t = Tensor::from_vec(v, (96, 1024), &Device::Cpu).unwrap();
        for g in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let q = QTensor::quantize(&t, g).unwrap();
            for dtype in [DType::F16, DType::BF16] {
                let ours = dequantize_to(&q, dtype, &Device::Cpu).unwrap();
                let theirs = q.dequantize(&Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                assert!(bits(&ours) == bits(&theirs), "{g:?} -> {dtype:?}");
            }
        }
    }

    #[test]
    fn converts_like_to_dtype() {
        let v = awkward();
        let t = Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            let ours = f32_to(&t, dtype).unwrap();
            let theirs = t.to_dtype(dtype).unwrap();
            assert_eq!(ours.dtype(), dtype);
            let (a, b) = (
                ours.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
                theirs
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    x.to_bits() == y.to_bits(),
                    "{dtype:?} value {i}: {x} vs {y}"
                );
            }
        }
        // A view that is not the whole storage still converts its own values.
        let part = t.narrow(0, 7, 1000).unwrap();
        let ours = f32_to(&part, DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let theirs = part
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(
            ours.to_vec1::<f32>().unwrap(),
            theirs.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn merges_like_candle() {
        let n = 96 * 1024;
        let mut wv = awkward();
        wv.truncate(n - 2);
        wv.extend([-0.0, 0.0]);
        let mut bv: Vec<f32> = awkward().into_iter().rev().take(n).collect();
        bv[n - 1] = -0.0; // −0 + (−0·s + 0) is +0: the affine's sign of zero
        bv[n - 2] = -0.0;
        let ba = Tensor::from_vec(bv, (96, 1024), &Device::Cpu).unwrap();
        let w32 = Tensor::from_vec(wv, (96, 1024), &Device::Cpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            let w = w32.to_dtype(dtype).unwrap();
            let ours = merged_rounded(&w, &ba, 0.37).unwrap().unwrap();
            let theirs = (w.to_dtype(DType::F32).unwrap() + (&ba * 0.37).unwrap())
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            assert_eq!(ours.dtype(), dtype);
            assert!(bits(&ours) == bits(&theirs), "{dtype:?}");
        }
        // f32 weights are candle's to merge.
        assert!(merged_rounded(&w32, &ba, 0.37).is_none());
    }
}
