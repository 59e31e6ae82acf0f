//! Bilinear warp of a gray image, bit for bit the result of OpenCV's `warpAffine` with
//! `INTER_LINEAR | WARP_INVERSE_MAP` and `BORDER_REPLICATE`, in 8-pixel AVX2 steps.
//!
//! Registration warps a patch several times per frame, and OpenCV's general warp (coordinate
//! blocks, then a remap pass over them) was a tenth of a batch's CPU on close-up faces. This
//! one keeps OpenCV's fixed-point arithmetic exactly (coordinates in 1/32 pixel, weights in
//! 1/32768), so crops, and everything computed from them, do not change.

/// A borrowed gray image: `height` rows of `width` bytes, `stride` bytes apart (a region of a
/// larger image; [`crate::frame::Gray`] is a whole packed frame).
#[derive(Debug, Clone, Copy)]
pub struct GrayView<'a> {
    /// The pixels (at least `(height - 1) * stride + width` bytes).
    pub data: &'a [u8],
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
}

impl<'a> GrayView<'a> {
    /// A tightly packed `width`×`height` image.
    pub fn packed(data: &'a [u8], width: usize, height: usize) -> GrayView<'a> {
        GrayView {
            data,
            width,
            height,
            stride: width,
        }
    }

    /// A copy of the pixels as an OpenCV matrix (for tests against OpenCV's functions).
    #[cfg(test)]
    pub(crate) fn to_mat(self) -> opencv::core::Mat {
        use opencv::prelude::*;
        let rows = opencv::core::Mat::new_rows_cols_with_data(
            self.height as i32,
            self.stride as i32,
            &self.data[..self.height * self.stride],
        )
        .expect("rows of the image");
        rows.col_range(&opencv::core::Range::new(0, self.width as i32).expect("column range"))
            .expect("columns of the image")
            .clone_pointee()
    }
}

/// Bits of sub-pixel position (OpenCV's `INTER_BITS`).
const BITS: i32 = 5;
/// Sub-pixel steps per pixel (OpenCV's `INTER_TAB_SIZE`).
const TAB: i32 = 1 << BITS;
/// Bits of the coordinate accumulators (OpenCV's `AB_BITS`).
const AB_BITS: i32 = 10;
/// Weights sum to 2^15 (OpenCV's `INTER_REMAP_COEF_BITS`).
const COEF_BITS: i32 = 15;

/// Samples `dst` (`dw`×`dh`, tightly packed) from `src` at `m·(x, y, 1)` for every destination
/// pixel, `m` a row-major 2x3 affine map from destination to source.
pub fn warp_affine(src: GrayView, m: &[f64; 6], dst: &mut [u8], dw: usize, dh: usize) {
    warp_affine_padded(src, 0, m, dst, dw, dh)
}

/// As [`warp_affine`] from an image that `src` holds with `pad` replicated pixels on every side
/// (`m` still maps to the unpadded image). Samples that fall within the padding take the fast
/// path; the result is the same as without it.
pub fn warp_affine_padded(
    src: GrayView,
    pad: usize,
    m: &[f64; 6],
    dst: &mut [u8],
    dw: usize,
    dh: usize,
) {
    assert!(dst.len() >= dw * dh, "destination smaller than {dw}x{dh}");
    assert!(
        src.width > 0 && src.height > 0 && src.stride >= src.width,
        "empty source or stride below width"
    );
    assert!(
        src.data.len() >= (src.height - 1) * src.stride + src.width,
        "source shorter than its rows"
    );
    assert!(pad < 1 << 16, "padding of {pad} pixels");
    let scale = (1 << AB_BITS) as f64;
    // OpenCV's per-column increments and per-row origins (round half to even, as cvRound); the
    // padding shifts whole pixels, an exact integer offset.
    let adelta: Vec<i32> = (0..dw).map(|x| cv_round(m[0] * x as f64 * scale)).collect();
    let bdelta: Vec<i32> = (0..dw).map(|x| cv_round(m[3] * x as f64 * scale)).collect();
    let round_delta = (1 << AB_BITS) / TAB / 2 + ((pad as i32) << AB_BITS);
    for (y, row) in dst.chunks_exact_mut(dw.max(1)).take(dh).enumerate() {
        let x0 = cv_round((m[1] * y as f64 + m[2]) * scale).wrapping_add(round_delta);
        let y0 = cv_round((m[4] * y as f64 + m[5]) * scale).wrapping_add(round_delta);
        warp_row(src, x0, y0, &adelta, &bdelta, row);
    }
}

/// One destination row, 8 pixels at a time where the CPU has AVX2.
fn warp_row(src: GrayView, x0: i32, y0: i32, adelta: &[i32], bdelta: &[i32], row: &mut [u8]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        done = unsafe { wide::row(src, x0, y0, adelta, bdelta, row) };
    }
    for x in done..row.len() {
        row[x] = pixel(src, x0 + adelta[x], y0 + bdelta[x]);
    }
}

/// One pixel from its accumulated coordinates (before the `AB_BITS - BITS` shift), as OpenCV's
/// scalar remap computes it, the border replicated.
#[inline]
fn pixel(src: GrayView, xa: i32, ya: i32) -> u8 {
    let (xf, yf) = (xa >> (AB_BITS - BITS), ya >> (AB_BITS - BITS));
    let sx = saturate_i16(xf >> BITS);
    let sy = saturate_i16(yf >> BITS);
    let w = weights(xf & (TAB - 1), yf & (TAB - 1));
    let (width, height) = (src.width as i32, src.height as i32);
    let at = |x: i32, y: i32| src.data[y as usize * src.stride + x as usize] as i32;
    let (x1, y1, xn, yn) = if (sx as u32) < (width - 1) as u32 && (sy as u32) < (height - 1) as u32
    {
        (sx, sy, sx + 1, sy + 1)
    } else {
        let clip = |v: i32, n: i32| v.clamp(0, n - 1);
        (
            clip(sx, width),
            clip(sy, height),
            clip(sx + 1, width),
            clip(sy + 1, height),
        )
    };
    let sum = at(x1, y1) * w[0] + at(xn, y1) * w[1] + at(x1, yn) * w[2] + at(xn, yn) * w[3];
    ((sum + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8
}

/// OpenCV's fixed-point bilinear weights for sub-pixel offsets `fx`, `fy` (in 1/32 pixel):
/// `(32 − fx)(32 − fy)·32` and so on, except at (0, 0), where OpenCV's table holds 32767 and a 1
/// on the far corner (its 32768 does not fit a 16-bit entry and the rounding fix lands there).
#[inline]
fn weights(fx: i32, fy: i32) -> [i32; 4] {
    if fx == 0 && fy == 0 {
        return [32767, 0, 0, 1];
    }
    let (ax, bx, ay, by) = (TAB - fx, fx, TAB - fy, fy);
    let k = 1 << (COEF_BITS - 2 * BITS);
    [ax * ay * k, bx * ay * k, ax * by * k, bx * by * k]
}

/// `saturate_cast<int>(double)`: round half to even, out of range as x86's conversion gives it.
fn cv_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    if r >= i32::MIN as f64 && r <= i32::MAX as f64 {
        r as i32
    } else {
        i32::MIN
    }
}

fn saturate_i16(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

#[cfg(test)]
/// A gray test image (`height` rows of `stride` bytes) on which rounding differences show:
/// noise from `next` (`kind` 0), a ramp crossed by stripes (1), or black and white bars `bar`
/// pixels long (2). For the bit-for-bit tests here and in [`super::pyramid`].
pub(crate) fn gray_pattern(
    kind: usize,
    width: usize,
    height: usize,
    stride: usize,
    bar: usize,
    next: &mut dyn FnMut() -> u64,
) -> Vec<u8> {
    (0..height * stride)
        .map(|i| match kind % 3 {
            0 => (next() & 255) as u8,
            1 => ((i % stride) * 255 / width.max(1)) as u8 ^ ((i / stride) as u8 & 0x30),
            _ => {
                if (i / bar.max(1)).is_multiple_of(2) {
                    255
                } else {
                    0
                }
            }
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{AB_BITS, BITS, COEF_BITS, GrayView, TAB, pixel};
    use std::arch::x86_64::*;

    /// Warps a row of at least 8 pixels in groups of 8, the last one overlapping the one before
    /// (a group with a neighbour outside the source goes through the scalar [`pixel`]); returns
    /// how many pixels were written (0 for a shorter row).
    #[target_feature(enable = "avx2")]
    pub(super) fn row(
        src: GrayView,
        x0: i32,
        y0: i32,
        adelta: &[i32],
        bdelta: &[i32],
        row: &mut [u8],
    ) -> usize {
        let n = row.len();
        let base = src.data.as_ptr();
        // A 4-byte gather at a bottom-left neighbour must stay inside the data.
        let last_safe = src.data.len() as i64 - 4;
        if last_safe < 0 || src.stride > i32::MAX as usize / 2 || src.data.len() > i32::MAX as usize
        {
            return 0;
        }
        let mut x = 0;
        // SAFETY (whole block): loads read `adelta`/`bdelta` at x..x+8 < n; gathers read 4 bytes
        // at offsets checked to lie in 0..=last_safe; the store writes row[x..x+8].
        unsafe {
            let vx0 = _mm256_set1_epi32(x0);
            let vy0 = _mm256_set1_epi32(y0);
            let mask = _mm256_set1_epi32(TAB - 1);
            let tab = _mm256_set1_epi32(TAB);
            let wmax = _mm256_set1_epi32(src.width as i32 - 1);
            let hmax = _mm256_set1_epi32(src.height as i32 - 1);
            let minus1 = _mm256_set1_epi32(-1);
            let stride = _mm256_set1_epi32(src.stride as i32);
            let limit = _mm256_set1_epi32(last_safe as i32 + 1);
            let half = _mm256_set1_epi32(1 << (COEF_BITS - 1));
            let zero = _mm256_setzero_si256();
            // Bytes 0 and 1 of each 32-bit gather into two 16-bit lanes.
            let spread = _mm256_setr_epi8(
                0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1, 0, -1, 1, -1, 4, -1, 5,
                -1, 8, -1, 9, -1, 12, -1, 13, -1,
            );
            while x < n {
                // The last group overlaps the one before rather than leaving a scalar tail.
                if x + 8 > n {
                    if n < 8 {
                        break;
                    }
                    x = n - 8;
                }
                let xa = _mm256_add_epi32(
                    vx0,
                    _mm256_loadu_si256(adelta.as_ptr().add(x) as *const __m256i),
                );
                let ya = _mm256_add_epi32(
                    vy0,
                    _mm256_loadu_si256(bdelta.as_ptr().add(x) as *const __m256i),
                );
                let xf = _mm256_srai_epi32::<{ AB_BITS - BITS }>(xa);
                let yf = _mm256_srai_epi32::<{ AB_BITS - BITS }>(ya);
                let sx = _mm256_srai_epi32::<BITS>(xf);
                let sy = _mm256_srai_epi32::<BITS>(yf);
                // 0 <= sx < width - 1 and 0 <= sy < height - 1 in every lane.
                let inside = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpgt_epi32(sx, minus1), _mm256_cmpgt_epi32(wmax, sx)),
                    _mm256_and_si256(_mm256_cmpgt_epi32(sy, minus1), _mm256_cmpgt_epi32(hmax, sy)),
                );
                let top = _mm256_add_epi32(_mm256_mullo_epi32(sy, stride), sx);
                let bottom = _mm256_add_epi32(top, stride);
                let safe = _mm256_and_si256(inside, _mm256_cmpgt_epi32(limit, bottom));
                if _mm256_movemask_epi8(safe) != -1 {
                    for i in x..x + 8 {
                        row[i] = pixel(src, x0 + adelta[i], y0 + bdelta[i]);
                    }
                    x += 8;
                    continue;
                }
                let fx = _mm256_and_si256(xf, mask);
                let fy = _mm256_and_si256(yf, mask);
                let (ax, ay) = (_mm256_sub_epi32(tab, fx), _mm256_sub_epi32(tab, fy));
                // (32 − fx)(32 − fy)·32 …: the weights sum to 2^15.
                let w00 = _mm256_slli_epi32::<{ COEF_BITS - 2 * BITS }>(_mm256_mullo_epi32(ax, ay));
                let w01 = _mm256_slli_epi32::<{ COEF_BITS - 2 * BITS }>(_mm256_mullo_epi32(fx, ay));
                let w10 = _mm256_slli_epi32::<{ COEF_BITS - 2 * BITS }>(_mm256_mullo_epi32(ax, fy));
                let w11 = _mm256_slli_epi32::<{ COEF_BITS - 2 * BITS }>(_mm256_mullo_epi32(fx, fy));
                // OpenCV's table at (0, 0): 32767 and a 1 on the far corner.
                let origin = _mm256_cmpeq_epi32(_mm256_or_si256(fx, fy), zero);
                let w00 = _mm256_add_epi32(w00, origin);
                let w11 = _mm256_sub_epi32(w11, origin);
                let wt = _mm256_or_si256(w00, _mm256_slli_epi32::<16>(w01));
                let wb = _mm256_or_si256(w10, _mm256_slli_epi32::<16>(w11));
                let gt = _mm256_i32gather_epi32::<1>(base as *const i32, top);
                let gb = _mm256_i32gather_epi32::<1>(base as *const i32, bottom);
                let pt = _mm256_shuffle_epi8(gt, spread);
                let pb = _mm256_shuffle_epi8(gb, spread);
                let sum = _mm256_add_epi32(
                    _mm256_add_epi32(_mm256_madd_epi16(pt, wt), _mm256_madd_epi16(pb, wb)),
                    half,
                );
                let v = _mm256_srai_epi32::<COEF_BITS>(sum);
                let v16 =
                    _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let v8 = _mm_packus_epi16(v16, v16);
                _mm_storel_epi64(row.as_mut_ptr().add(x) as *mut __m128i, v8);
                x += 8;
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenCV's own warp of the same source (the reference this module must match bit for bit).
    fn opencv(src: GrayView, m: &[f64; 6], dw: usize, dh: usize) -> Vec<u8> {
        use opencv::core::{BORDER_REPLICATE, Mat, Scalar, Size};
        use opencv::prelude::*;
        let s = src.to_mat();
        let mm = Mat::from_slice_2d(&[[m[0], m[1], m[2]], [m[3], m[4], m[5]]]).unwrap();
        let mut d = Mat::default();
        opencv::imgproc::warp_affine(
            &s,
            &mut d,
            &mm,
            Size::new(dw as i32, dh as i32),
            opencv::imgproc::INTER_LINEAR | opencv::imgproc::WARP_INVERSE_MAP,
            BORDER_REPLICATE,
            Scalar::all(0.0),
        )
        .unwrap();
        d.data_bytes().unwrap().to_vec()
    }

    /// A small deterministic generator (no dependency on a crate's stream).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn unit(&mut self) -> f64 {
            self.next() as f64 / (1u64 << 31) as f64
        }
    }

    #[test]
    fn matches_opencv_bit_for_bit() {
        let mut rng = Lcg(7);
        let mut checked = 0usize;
        for case in 0..300 {
            let width = 9 + (rng.next() % 120) as usize;
            let height = 9 + (rng.next() % 120) as usize;
            let stride = width + (rng.next() % 3) as usize * 7;
            // Textured images with hard edges and flat runs, where rounding shows.
            let data = gray_pattern(case, width, height, stride, 7, &mut || rng.next());
            let src = GrayView {
                data: &data,
                width,
                height,
                stride,
            };
            // Similarities near the registration's (scale 0.5–1.5, small angles) and some
            // general affine maps; origins that put parts of the output outside the source.
            let s = 0.5 + rng.unit();
            let th = (rng.unit() - 0.5) * 0.6;
            let (a, b) = (s * th.cos(), s * th.sin());
            let general = case % 5 == 4;
            let m = [
                a,
                if general { rng.unit() - 0.5 } else { -b },
                (rng.unit() - 0.3) * width as f64,
                b,
                if general { rng.unit() + 0.3 } else { a },
                (rng.unit() - 0.3) * height as f64,
            ];
            // Some maps exactly on the 1/32 grid, where the (0, 0) weights apply.
            let m = if case % 7 == 3 {
                m.map(|v| (v * 32.0).round() / 32.0)
            } else {
                m
            };
            let (dw, dh) = (
                1 + (rng.next() % 140) as usize,
                1 + (rng.next() % 90) as usize,
            );
            let mut ours = vec![0u8; dw * dh];
            warp_affine(src, &m, &mut ours, dw, dh);
            let theirs = opencv(src, &m, dw, dh);
            assert_eq!(theirs.len(), ours.len());
            if let Some(i) = ours.iter().zip(&theirs).position(|(p, q)| p != q) {
                panic!(
                    "case {case}: pixel ({}, {}) is {} here, {} in OpenCV ({width}x{height}, stride {stride}, m {m:?})",
                    i % dw,
                    i / dw,
                    ours[i],
                    theirs[i]
                );
            }
            checked += ours.len();
        }
        assert!(checked > 100_000, "only {checked} pixels compared");
    }

    /// A `width`×`height` image of `(i·k) xor (i >> shift)` over pixel indices i.
    fn textured(width: usize, height: usize, k: usize, shift: u32) -> Vec<u8> {
        (0..width * height)
            .map(|i| ((i * k) ^ (i >> shift)) as u8)
            .collect()
    }

    #[test]
    fn a_replicated_border_changes_nothing() {
        // A 50x40 image warped partly outside itself, from copies padded by 0–9 pixels.
        let (width, height) = (50usize, 40usize);
        let data = textured(width, height, 53, 2);
        let src = GrayView::packed(&data, width, height);
        let m = [1.1, -0.15, -6.3, 0.15, 1.1, -4.8];
        let (dw, dh) = (61usize, 47usize);
        let want = opencv(src, &m, dw, dh);
        for pad in [0usize, 1, 3, 9] {
            let (pw, ph) = (width + 2 * pad, height + 2 * pad);
            let padded: Vec<u8> = (0..pw * ph)
                .map(|i| {
                    let x = (i % pw).saturating_sub(pad).min(width - 1);
                    let y = (i / pw).saturating_sub(pad).min(height - 1);
                    data[y * width + x]
                })
                .collect();
            let view = GrayView::packed(&padded, pw, ph);
            let mut ours = vec![0u8; dw * dh];
            warp_affine_padded(view, pad, &m, &mut ours, dw, dh);
            assert_eq!(ours, want, "pad {pad}");
        }
    }

    #[test]
    fn the_scalar_path_alone_matches_too() {
        // Every pixel through `pixel`, as on a CPU without AVX2.
        let (width, height) = (40usize, 31usize);
        let data = textured(width, height, 37, 3);
        let src = GrayView::packed(&data, width, height);
        let m = [0.93, -0.21, 3.7, 0.21, 0.93, -2.2];
        let (dw, dh) = (48usize, 36usize);
        let scale = 1024.0;
        let mut ours = vec![0u8; dw * dh];
        for y in 0..dh {
            let x0 = cv_round((m[1] * y as f64 + m[2]) * scale) + 16;
            let y0 = cv_round((m[4] * y as f64 + m[5]) * scale) + 16;
            for x in 0..dw {
                let xa = x0 + cv_round(m[0] * x as f64 * scale);
                let ya = y0 + cv_round(m[3] * x as f64 * scale);
                ours[y * dw + x] = pixel(src, xa, ya);
            }
        }
        assert_eq!(ours, opencv(src, &m, dw, dh));
    }
}
