//! One Gaussian pyramid step of a gray image, bit for bit OpenCV's `pyrDown` (the 5×5 kernel
//! [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256 at even positions, mirrored border without repeating the edge),
//! written straight into a buffer with a replicated border for [`super::bilinear`].
//!
//! The registration reduces the face's frame region twice a frame when the face is larger than
//! the crop; OpenCV's version (plus the copy that adds a border) was about 6 % of a batch's CPU on
//! close-up faces. Sums stay in 16 bits (at most 16·16·255 + 128), so the arithmetic is exact
//! and the result equals OpenCV's whatever the evaluation order.

use super::bilinear::GrayView;

/// Size of the level below a `width`×`height` image (OpenCV's default `pyrDown` size).
pub fn level_size(width: usize, height: usize) -> (usize, usize) {
    (width.div_ceil(2), height.div_ceil(2))
}

/// Reduces `src` by one level into `out`, which becomes `(w + 2·pad)`×`(h + 2·pad)` bytes (rows
/// tightly packed) for the level size `(w, h)`, with `pad` replicated pixels on every side.
/// `rows` is scratch. Returns the level size.
pub fn pyr_down(
    src: GrayView,
    pad: usize,
    out: &mut Vec<u8>,
    rows: &mut Vec<u16>,
) -> (usize, usize) {
    let (w, h) = (src.width, src.height);
    assert!(
        w > 0 && h > 0 && src.stride >= w,
        "empty image or stride below width"
    );
    assert!(
        src.data.len() >= (h - 1) * src.stride + w,
        "image shorter than its rows"
    );
    let (dw, dh) = level_size(w, h);
    // Horizontal pass over every source row: the kernel at even columns.
    rows.clear();
    rows.resize(h * dw, 0);
    for (y, r) in rows.chunks_exact_mut(dw).enumerate() {
        row_pass(&src.data[y * src.stride..y * src.stride + w], r);
    }
    // Vertical pass at even rows, rounded as OpenCV's fixed-point cast: (sum + 128) >> 8.
    let pw = dw + 2 * pad;
    out.clear();
    out.resize(pw * (dh + 2 * pad), 0);
    let row = |y: isize| {
        let y = reflect101(y, h);
        &rows[y * dw..(y + 1) * dw]
    };
    for y in 0..dh {
        let c = 2 * y as isize;
        let (r0, r1, r2, r3, r4) = (row(c - 2), row(c - 1), row(c), row(c + 1), row(c + 2));
        let start = (y + pad) * pw + pad;
        let dst = &mut out[start..start + dw];
        for x in 0..dw {
            let s = r0[x] + 4 * r1[x] + 6 * r2[x] + 4 * r3[x] + r4[x];
            dst[x] = ((s as u32 + 128) >> 8) as u8;
        }
        // Replicated left and right border.
        let (first, last) = (dst[0], dst[dw - 1]);
        out[start - pad..start].fill(first);
        out[start + dw..start + dw + pad].fill(last);
    }
    // Replicated top and bottom border.
    for y in 0..pad {
        out.copy_within(pad * pw..(pad + 1) * pw, y * pw);
        let last = (pad + dh - 1) * pw;
        out.copy_within(last..last + pw, (pad + dh + y) * pw);
    }
    (dw, dh)
}

/// The kernel along one row at even columns: `out[x]` from `s[2x − 2 ..= 2x + 2]`, mirrored at
/// both ends.
fn row_pass(s: &[u8], out: &mut [u16]) {
    let w = s.len();
    let dw = out.len();
    let at = |x: isize| s[reflect101(x, w)] as u16;
    let tap = |x: usize| {
        let c = 2 * x as isize;
        at(c - 2) + 4 * at(c - 1) + 6 * at(c) + 4 * at(c + 1) + at(c + 2)
    };
    // Columns whose five taps all lie inside the row: x in lo..hi.
    let lo = 1.min(dw);
    let hi = if w >= 3 {
        ((w - 3) / 2 + 1).min(dw)
    } else {
        lo
    };
    #[cfg(target_arch = "x86_64")]
    let first = sse2::interior(s, out, lo, hi);
    #[cfg(not(target_arch = "x86_64"))]
    let first = lo;
    for x in first..hi.max(lo) {
        let q = &s[2 * x - 2..2 * x + 3];
        out[x] = q[0] as u16 + 4 * q[1] as u16 + 6 * q[2] as u16 + 4 * q[3] as u16 + q[4] as u16;
    }
    for (x, o) in out.iter_mut().enumerate().take(lo) {
        *o = tap(x);
    }
    for (x, o) in out.iter_mut().enumerate().skip(hi.max(lo)) {
        *o = tap(x);
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// The row kernel for outputs `lo..` (all five taps inside `s`), 8 at a time; returns the
    /// first output not written (at most `hi`). A 16-byte load from pixel 2x − 2 holds the
    /// even/odd pairs e₋₁o₋₁ … of outputs x … x + 7, so that out = e₋₁ + 4o₋₁ + 6e + 4o + e₊₁
    /// from three loads two bytes apart.
    pub(super) fn interior(s: &[u8], out: &mut [u16], lo: usize, hi: usize) -> usize {
        let mut x = lo;
        // SAFETY: SSE2 is part of x86_64; the loads read s[2x − 2 .. 2x + 18) ⊆ s and the store
        // writes out[x .. x + 8) ⊆ out[lo .. hi), both checked by the loop condition.
        unsafe {
            let low = _mm_set1_epi16(0xff);
            while x >= 1 && x + 8 <= hi && 2 * x + 18 <= s.len() {
                let p = s.as_ptr().add(2 * x - 2);
                let a = _mm_loadu_si128(p as *const __m128i);
                let b = _mm_loadu_si128(p.add(2) as *const __m128i);
                let c = _mm_loadu_si128(p.add(4) as *const __m128i);
                let (e0, o0) = (_mm_and_si128(a, low), _mm_srli_epi16::<8>(a));
                let (e1, o1) = (_mm_and_si128(b, low), _mm_srli_epi16::<8>(b));
                let e2 = _mm_and_si128(c, low);
                let six = _mm_add_epi16(_mm_slli_epi16::<2>(e1), _mm_slli_epi16::<1>(e1));
                let four = _mm_slli_epi16::<2>(_mm_add_epi16(o0, o1));
                let v = _mm_add_epi16(_mm_add_epi16(e0, e2), _mm_add_epi16(six, four));
                _mm_storeu_si128(out.as_mut_ptr().add(x) as *mut __m128i, v);
                x += 8;
            }
        }
        x
    }
}

/// OpenCV's `BORDER_REFLECT_101` index for `x` in a row of `n` (n ≥ 1).
fn reflect101(x: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let n = n as isize;
    let mut x = x;
    // Repeat: a far index can mirror past the other end.
    while x < 0 || x >= n {
        x = if x < 0 { -x } else { 2 * n - 2 - x };
    }
    x as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenCV's `pyrDown` of the `width`×`height` region at (`x`, `y`) inside `parent`
    /// (`parent_width` wide), as the old registration called it: on an ROI of the whole frame.
    fn opencv(
        parent: &[u8],
        parent_width: usize,
        [x, y, width, height]: [usize; 4],
    ) -> (Vec<u8>, usize, usize) {
        use opencv::core::{Mat, Rect};
        use opencv::prelude::*;
        let rows = parent.len() / parent_width;
        let whole = Mat::new_rows_cols_with_data(rows as i32, parent_width as i32, parent).unwrap();
        let roi = whole
            .roi(Rect::new(x as i32, y as i32, width as i32, height as i32))
            .unwrap();
        let mut d = Mat::default();
        opencv::imgproc::pyr_down_def(&roi, &mut d).unwrap();
        let (w, h) = (d.cols() as usize, d.rows() as usize);
        (d.data_bytes().unwrap().to_vec(), w, h)
    }

    #[test]
    fn matches_opencv_bit_for_bit() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let (mut out, mut rows) = (Vec::new(), Vec::new());
        for case in 0..120 {
            // Odd and even sizes from 1 pixel up, as a region with other pixels on every side
            // (OpenCV mirrors at the region's edge, not beyond it).
            let width = 1 + (next() % 90) as usize;
            let height = 1 + (next() % 70) as usize;
            let (x, y) = ((next() % 5) as usize, (next() % 5) as usize);
            let stride = x + width + (next() % 5) as usize;
            let parent_rows = y + height + (next() % 5) as usize;
            let data = crate::face::bilinear::gray_pattern(
                case,
                stride,
                parent_rows,
                stride,
                3,
                &mut next,
            );
            let src = GrayView {
                data: &data[y * stride + x..],
                width,
                height,
                stride,
            };
            let (want, ww, wh) = opencv(&data, stride, [x, y, width, height]);
            for pad in [0usize, 2] {
                let (dw, dh) = pyr_down(src, pad, &mut out, &mut rows);
                assert_eq!((dw, dh), (ww, wh), "case {case}: size of {width}x{height}");
                let pw = dw + 2 * pad;
                for y in 0..dh + 2 * pad {
                    for x in 0..pw {
                        let (sx, sy) = (
                            x.saturating_sub(pad).min(dw - 1),
                            y.saturating_sub(pad).min(dh - 1),
                        );
                        assert_eq!(
                            out[y * pw + x],
                            want[sy * dw + sx],
                            "case {case} ({width}x{height}, stride {stride}, pad {pad}): ({x}, {y})"
                        );
                    }
                }
            }
        }
    }
}
