//! Region motion measured directly: one Lucas–Kanade translation per region (plus a gain and an
//! offset for the light), fitted by Gauss–Newton over every pixel of the region's window.
//!
//! DIS estimates an 8-pixel patch at a time and the spotter then averages the patches of a region;
//! here the region's translation is the one unknown fitted to all its pixels at once, weighted by
//! their gradients, so the textured edges (brow hairs, lids, lip corners) decide it and flat skin
//! does not add noise. The reference's gradients and normal matrix are computed once per
//! measurement, so each iteration costs one bilinear sample per window pixel.

/// Gauss–Newton iterations at most per region; sub-pixel motion converges in 2–3.
const MAX_ITERS: usize = 6;
/// Stop when the translation update is below this (px).
const STEP_EPS: f32 = 0.002;
/// Largest translation followed (px): beyond it the estimate is not trusted and clamped.
const MAX_SHIFT: f32 = 6.0;

/// Per-region Lucas–Kanade state for one crop size and region set.
pub struct RegionLk {
    size: usize,
    /// Windows `[x0, y0, x1, y1)`: each region grown by the margin, clipped to the crop.
    windows: Vec<[usize; 4]>,
    /// The bounding box of all windows grown by one pixel (the gradient stencil), where both
    /// images are smoothed.
    bounds: [usize; 4],
    /// Smoothed crops by frame index (only `bounds` is written): a crop is smoothed once, as the
    /// newest frame, and read again k frames later as the reference.
    smoothed: Vec<(u64, Vec<f32>)>,
    /// Buffers of evicted crops, reused.
    spare: Vec<Vec<f32>>,
    /// Frames back a reference can be (the flow lag), besides a pinned one.
    keep: u64,
    /// Scratch for the separable smoothing.
    tmp: Vec<f32>,
    /// Last translation per window: the next measurement starts there (motion is continuous).
    last: Vec<[f32; 2]>,
    /// Per-window reference buffers (reused).
    templates: Vec<Template>,
    /// The reference frame each window's template was built from, and whether that window was
    /// flat there: a pinned reference is measured against for many frames, its templates once.
    built_for: Vec<Option<(u64, bool)>>,
}

impl RegionLk {
    /// Windows of `regions` (crop rectangles, each with the margins in pixels it is grown by on
    /// its left, top, right and bottom) on a `size`² crop; references are at most `lag` frames
    /// back unless pinned.
    pub fn new(size: usize, regions: &[([usize; 4], [usize; 4])], lag: usize) -> RegionLk {
        // Two pixels stay free at the border for the gradient and the bilinear sample.
        let windows: Vec<[usize; 4]> = regions
            .iter()
            .map(|&(r, m)| {
                [
                    r[0].saturating_sub(m[0]).max(2),
                    r[1].saturating_sub(m[1]).max(2),
                    (r[2] + m[2]).min(size - 2),
                    (r[3] + m[3]).min(size - 2),
                ]
            })
            .collect();
        let mut b = [size, size, 0, 0];
        for w in &windows {
            b = [
                b[0].min(w[0]),
                b[1].min(w[1]),
                b[2].max(w[2]),
                b[3].max(w[3]),
            ];
        }
        let bounds = [
            b[0].saturating_sub(MAX_SHIFT as usize + 2),
            b[1].saturating_sub(MAX_SHIFT as usize + 2),
            (b[2] + MAX_SHIFT as usize + 2).min(size),
            (b[3] + MAX_SHIFT as usize + 2).min(size),
        ];
        RegionLk {
            size,
            last: vec![[0.0; 2]; windows.len()],
            templates: windows.iter().map(|_| Template::empty()).collect(),
            built_for: vec![None; windows.len()],
            windows,
            bounds,
            smoothed: Vec::new(),
            spare: Vec::new(),
            keep: lag as u64,
            tmp: vec![0.0; size * size],
        }
    }

    /// Forgets the running estimates (the history restarted).
    pub fn reset(&mut self) {
        self.last.iter_mut().for_each(|d| *d = [0.0; 2]);
        self.built_for.iter_mut().for_each(|b| *b = None);
    }

    /// Translation of each window from `from` to `to` (`size`² gray crops of frames `from_index`
    /// and `to_index`: a frame index always names the same crop), crop pixels.
    pub fn measure(
        &mut self,
        (from_index, from): (u64, &[u8]),
        (to_index, to): (u64, &[u8]),
        out: &mut [[f32; 2]],
    ) {
        // Keep the reference and every frame that can still become one.
        let oldest = to_index.saturating_sub(self.keep);
        let mut i = 0;
        while i < self.smoothed.len() {
            let k = self.smoothed[i].0;
            if k != from_index && k < oldest {
                let (_, buf) = self.smoothed.swap_remove(i);
                self.spare.push(buf);
            } else {
                i += 1;
            }
        }
        let r = self.smoothed_index(from_index, from);
        let c = self.smoothed_index(to_index, to);
        let (reference, current) = (&self.smoothed[r].1, &self.smoothed[c].1);
        for (i, w) in self.windows.iter().enumerate() {
            let flat = match self.built_for[i] {
                Some((k, flat)) if k == from_index => flat,
                _ => {
                    let buf = std::mem::replace(&mut self.templates[i], Template::empty());
                    let t = Template::new(reference, self.size, *w, buf);
                    let flat = t.is_none();
                    self.templates[i] = t.unwrap_or_else(Template::empty);
                    self.built_for[i] = Some((from_index, flat));
                    flat
                }
            };
            let d = if flat {
                [0.0; 2]
            } else {
                track(&self.templates[i], current, self.size, *w, self.last[i])
            };
            self.last[i] = d;
            out[i] = d;
        }
    }
}

impl RegionLk {
    /// Where frame `index`'s smoothed crop is, smoothing `crop` if it is not there yet.
    fn smoothed_index(&mut self, index: u64, crop: &[u8]) -> usize {
        if let Some(i) = self.smoothed.iter().position(|(k, _)| *k == index) {
            return i;
        }
        let n = self.size;
        let mut buf = self.spare.pop().unwrap_or_else(|| vec![0.0; n * n]);
        smooth(crop, &mut buf, &mut self.tmp, n, self.bounds);
        self.smoothed.push((index, buf));
        self.smoothed.len() - 1
    }
}

/// [1 2 1]/4 in each direction over `b` (borders clamp): takes the JPEG and sensor noise's
/// highest frequencies out and widens the range over which the linearisation holds.
fn smooth(src: &[u8], dst: &mut [f32], tmp: &mut [f32], n: usize, b: [usize; 4]) {
    let (x0, x1) = (b[0], b[2]);
    if x1 <= x0 || b[3] <= b[1] {
        return;
    }
    for y in b[1]..b[3] {
        let row = &src[y * n..(y + 1) * n];
        let out = &mut tmp[y * n..(y + 1) * n];
        let h = |l: u8, c: u8, r: u8| 0.25 * l as f32 + 0.5 * c as f32 + 0.25 * r as f32;
        out[x0] = h(row[x0.saturating_sub(1)], row[x0], row[(x0 + 1).min(n - 1)]);
        // The interior needs no clamping: a plain loop the compiler vectorises.
        let (lo, hi) = (x0 + 1, (x1 - 1).max(x0 + 1));
        for (x, o) in out[lo..hi].iter_mut().enumerate() {
            *o = h(row[lo + x - 1], row[lo + x], row[lo + x + 1]);
        }
        if x1 - 1 > x0 {
            let x = x1 - 1;
            out[x] = h(row[x - 1], row[x], row[(x + 1).min(n - 1)]);
        }
    }
    for y in b[1]..b[3] {
        let (u, d) = (y.saturating_sub(1).max(b[1]), (y + 1).min(b[3] - 1));
        let (up, mid, down) = (u * n, y * n, d * n);
        for x in x0..x1 {
            dst[mid + x] = 0.25 * tmp[up + x] + 0.5 * tmp[mid + x] + 0.25 * tmp[down + x];
        }
    }
}

/// The reference's side of one window: per pixel the gradient and the mean-free intensity, and
/// the inverse normal matrix of the columns (gx, gy, I − mean, 1).
struct Template {
    gx: Vec<f32>,
    gy: Vec<f32>,
    centred: Vec<f32>,
    /// `gx`, `gy`, `centred` of each whole group of [`LANES`] rows, column by column (the
    /// group's rows side by side), for the row-parallel sampling pass.
    lanes: [Vec<f32>; 3],
    mean: f32,
    inverse: [[f64; 4]; 4],
}

/// Window rows fitted side by side, one per 32-bit lane of a 256-bit vector.
const LANES: usize = 8;

impl Template {
    /// Gradients by central differences; None for a flat window (no texture, nothing measurable).
    fn new(reference: &[f32], n: usize, w: [usize; 4], buf: Template) -> Option<Template> {
        let Template {
            mut gx,
            mut gy,
            mut centred,
            mut lanes,
            ..
        } = buf;
        let (width, rows) = (w[2] - w[0], w[3] - w[1]);
        for v in [&mut gx, &mut gy, &mut centred] {
            v.clear();
            v.resize(width * rows, 0.0);
        }
        // Smoothed crops hold multiples of 1/16 below 256: this sum is exact in any order.
        let mut sum = 0f64;
        for (r, y) in (w[1]..w[3]).enumerate() {
            let i0 = y * n + w[0];
            let k = r * width;
            let (gx, gy, c) = (
                &mut gx[k..k + width],
                &mut gy[k..k + width],
                &mut centred[k..k + width],
            );
            for x in 0..width {
                let i = i0 + x;
                gx[x] = 0.5 * (reference[i + 1] - reference[i - 1]);
                gy[x] = 0.5 * (reference[i + n] - reference[i - n]);
                c[x] = reference[i];
                sum += reference[i] as f64;
            }
        }
        let mean = (sum / centred.len().max(1) as f64) as f32;
        centred.iter_mut().for_each(|v| *v -= mean);
        // Normal matrix; the gain column is mean-free, so its products with the offset vanish.
        let (mut xx, mut xy, mut yy, mut xc, mut yc, mut cc, mut x1, mut y1) =
            (0f32, 0f32, 0f32, 0f32, 0f32, 0f32, 0f32, 0f32);
        for ((&a, &b), &c) in gx.iter().zip(&gy).zip(&centred) {
            xx += a * a;
            xy += a * b;
            yy += b * b;
            xc += a * c;
            yc += b * c;
            cc += c * c;
            x1 += a;
            y1 += b;
        }
        // The row-parallel layout: group g, column x, lane l at ((g·width + x)·LANES + l).
        let groups = rows / LANES;
        for (dst, src) in lanes.iter_mut().zip([&gx, &gy, &centred]) {
            dst.clear();
            dst.resize(groups * width * LANES, 0.0);
            for g in 0..groups {
                for l in 0..LANES {
                    let row = &src[(g * LANES + l) * width..][..width];
                    for (x, &v) in row.iter().enumerate() {
                        dst[(g * width + x) * LANES + l] = v;
                    }
                }
            }
        }
        let count = centred.len() as f64;
        let h = [
            [xx as f64, xy as f64, xc as f64, x1 as f64],
            [xy as f64, yy as f64, yc as f64, y1 as f64],
            [xc as f64, yc as f64, cc as f64, 0.0],
            [x1 as f64, y1 as f64, 0.0, count],
        ];
        Some(Template {
            inverse: invert4(h)?,
            gx,
            gy,
            centred,
            lanes,
            mean,
        })
    }

    fn empty() -> Template {
        Template {
            gx: Vec::new(),
            gy: Vec::new(),
            centred: Vec::new(),
            lanes: Default::default(),
            mean: 0.0,
            inverse: [[0.0; 4]; 4],
        }
    }
}

/// The translation d of window `w` that best maps `reference` onto `current`, with the light
/// modelled as `current(x + d) ≈ reference(x) + a·(reference(x) − mean) + b`: Gauss–Newton from
/// `start`, the Jacobian taken on the reference (constant, so its normal matrix is inverted once).
/// `t` is the window's [`Template`] on `reference`.
fn track(t: &Template, current: &[f32], n: usize, w: [usize; 4], start: [f32; 2]) -> [f32; 2] {
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    track_rows(t, current, n, w, start, wide)
}

/// [`track`], with groups of rows side by side in vector lanes when `wide` (the CPU has AVX2).
fn track_rows(
    t: &Template,
    current: &[f32],
    n: usize,
    w: [usize; 4],
    start: [f32; 2],
    wide: bool,
) -> [f32; 2] {
    // Shifts that keep the window and its bilinear neighbours inside the crop.
    let lo = [-(w[0] as f32) + 0.01, -(w[1] as f32) + 0.01];
    let hi = [(n - 1 - w[2]) as f32 - 0.01, (n - 1 - w[3]) as f32 - 0.01];
    let limit = |d: f64, k: usize| (d as f32).clamp(lo[k].max(-MAX_SHIFT), hi[k].min(MAX_SHIFT));
    let mut d = [limit(start[0] as f64, 0), limit(start[1] as f64, 1)];
    let (mut a, mut b) = (0f32, 0f32);
    let width = w[2] - w[0];
    for _ in 0..MAX_ITERS {
        // One sub-pixel offset for the whole window: the bilinear weights are the same for every
        // pixel, so sampling is a 2×2 filter at a fixed integer offset.
        let (fx, fy) = (d[0].floor(), d[1].floor());
        let (wx, wy) = (d[0] - fx, d[1] - fy);
        let (w00, w01, w10, w11) = (
            (1.0 - wx) * (1.0 - wy),
            wx * (1.0 - wy),
            (1.0 - wx) * wy,
            wx * wy,
        );
        let (ox, oy) = (fx as isize, fy as isize);
        let mut g = [0f64; 4];
        let sample = Sample {
            weights: [w00, w01, w10, w11],
            mean: t.mean,
            gain: 1.0 + a,
            offset: b,
        };
        // Whole groups of rows side by side; each row's sums are its own, added to `g` in row
        // order as below, so the result is the same as row by row.
        let mut first = 0;
        #[cfg(target_arch = "x86_64")]
        if wide {
            let rows = w[3] - w[1];
            for group in 0..rows / LANES {
                let y = w[1] + group * LANES;
                let src = ((y as isize + oy) as usize) * n + (w[0] as isize + ox) as usize;
                // The group's last bottom-row sample must lie inside the crop.
                if src + LANES * n + width >= current.len() {
                    break;
                }
                // SAFETY: the CPU has AVX2; the bound above covers every index read.
                let sums = unsafe { lanes::group(t, group, current, n, src, width, &sample) };
                for acc in sums {
                    for (s, v) in g.iter_mut().zip(acc) {
                        *s += v as f64;
                    }
                }
                first = (group + 1) * LANES;
            }
        }
        for (row, y) in (w[1]..w[3]).enumerate().skip(first) {
            let src = ((y as isize + oy) as usize) * n + (w[0] as isize + ox) as usize;
            let top = &current[src..src + width + 1];
            let bottom = &current[src + n..src + n + width + 1];
            let k = row * width;
            let (gx, gy, c) = (
                &t.gx[k..k + width],
                &t.gy[k..k + width],
                &t.centred[k..k + width],
            );
            let mut acc = [0f32; 4];
            for x in 0..width {
                let i1 = w00 * top[x] + w01 * top[x + 1] + w10 * bottom[x] + w11 * bottom[x + 1];
                // Residual of the model (the reference is mean + centred).
                let r = i1 - sample.mean - sample.gain * c[x] - sample.offset;
                acc[0] += gx[x] * r;
                acc[1] += gy[x] * r;
                acc[2] += c[x] * r;
                acc[3] += r;
            }
            for (s, v) in g.iter_mut().zip(acc) {
                *s += v as f64;
            }
        }
        let step: [f64; 4] = t
            .inverse
            .map(|row| row.iter().zip(&g).map(|(m, v)| m * v).sum());
        // The residual's derivative is +∇I in d and −(I − mean), −1 in a and b.
        d = [
            limit(d[0] as f64 - step[0], 0),
            limit(d[1] as f64 - step[1], 1),
        ];
        a += step[2] as f32;
        b += step[3] as f32;
        if step[0].hypot(step[1]) < STEP_EPS as f64 {
            break;
        }
    }
    d
}

/// What one Gauss–Newton iteration samples with: the bilinear weights of its sub-pixel shift and
/// the light model's mean, gain (1 + a) and offset b.
struct Sample {
    weights: [f32; 4],
    mean: f32,
    gain: f32,
    offset: f32,
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use super::{LANES, Sample, Template};
    use std::arch::x86_64::*;

    /// The sums of [`super::track`]'s inner loop for the rows of one group, one row per lane:
    /// the same operations in the same order per row as the scalar loop (no fused multiply-add),
    /// so each row's four sums are bit for bit the scalar ones. `src` is the group's first row's
    /// top-left sample in `current`.
    #[target_feature(enable = "avx2")]
    pub(super) fn group(
        t: &Template,
        group: usize,
        current: &[f32],
        n: usize,
        src: usize,
        width: usize,
        s: &Sample,
    ) -> [[f32; 4]; LANES] {
        debug_assert!(src + LANES * n + width < current.len());
        let base = current.as_ptr();
        let [w00, w01, w10, w11] = s.weights.map(|v| _mm256_set1_ps(v));
        let (mean, gain, offset) = (
            _mm256_set1_ps(s.mean),
            _mm256_set1_ps(s.gain),
            _mm256_set1_ps(s.offset),
        );
        let rows = _mm256_mullo_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(n as i32),
        );
        let top = _mm256_add_epi32(rows, _mm256_set1_epi32(src as i32));
        let bottom = _mm256_add_epi32(top, _mm256_set1_epi32(n as i32));
        let at = |idx: __m256i, x: usize| {
            // SAFETY: the caller checked that every row's samples up to column `width` lie
            // inside `current`.
            unsafe {
                _mm256_i32gather_ps::<4>(base, _mm256_add_epi32(idx, _mm256_set1_epi32(x as i32)))
            }
        };
        let lane = |v: &Vec<f32>, x: usize| {
            let i = (group * width + x) * LANES;
            // SAFETY: the template holds `LANES` values per column of every whole group.
            unsafe { _mm256_loadu_ps(v[i..i + LANES].as_ptr()) }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut t0, mut b0) = (at(top, 0), at(bottom, 0));
        for x in 0..width {
            let (t1, b1) = (at(top, x + 1), at(bottom, x + 1));
            let i1 = _mm256_add_ps(
                _mm256_add_ps(
                    _mm256_add_ps(_mm256_mul_ps(w00, t0), _mm256_mul_ps(w01, t1)),
                    _mm256_mul_ps(w10, b0),
                ),
                _mm256_mul_ps(w11, b1),
            );
            let (gx, gy, c) = (
                lane(&t.lanes[0], x),
                lane(&t.lanes[1], x),
                lane(&t.lanes[2], x),
            );
            let r = _mm256_sub_ps(
                _mm256_sub_ps(_mm256_sub_ps(i1, mean), _mm256_mul_ps(gain, c)),
                offset,
            );
            acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(gx, r));
            acc[1] = _mm256_add_ps(acc[1], _mm256_mul_ps(gy, r));
            acc[2] = _mm256_add_ps(acc[2], _mm256_mul_ps(c, r));
            acc[3] = _mm256_add_ps(acc[3], r);
            (t0, b0) = (t1, b1);
        }
        let mut lanes = [[0f32; LANES]; 4];
        for (out, v) in lanes.iter_mut().zip(acc) {
            // SAFETY: `out` holds LANES floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        }
        std::array::from_fn(|l| std::array::from_fn(|k| lanes[k][l]))
    }
}

/// Inverse of a symmetric 4×4 matrix by Gauss–Jordan with partial pivoting; None if singular
/// (a flat window: no texture, no motion measurable).
fn invert4(m: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut a = m;
    let mut inv = [[0f64; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let scale = (0..4).map(|i| m[i][i].abs()).fold(0.0, f64::max);
    for c in 0..4 {
        let p = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() <= 1e-9 * scale.max(1e-12) {
            return None;
        }
        a.swap(c, p);
        inv.swap(c, p);
        let d = a[c][c];
        for k in 0..4 {
            a[c][k] /= d;
            inv[c][k] /= d;
        }
        for r in 0..4 {
            if r != c {
                let f = a[r][c];
                for k in 0..4 {
                    a[r][k] -= f * a[c][k];
                    inv[r][k] -= f * inv[c][k];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured crop (sum of sines, like skin with a few edges) shifted by (dx, dy), with a gain
    /// and an offset.
    fn crop(n: usize, dx: f32, dy: f32, gain: f32, offset: f32) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * n);
        for y in 0..n {
            for x in 0..n {
                let (u, w) = (x as f32 - dx, y as f32 - dy);
                let t = 0.5 * (u * 0.31).sin()
                    + 0.3 * (w * 0.23 + u * 0.07).sin()
                    + 0.2 * ((u + w) * 0.41).cos();
                v.push(
                    ((110.0 + 40.0 * t) * gain + offset)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        v
    }

    #[test]
    fn sub_pixel_shifts_are_recovered_under_a_change_of_light() {
        let n = 64;
        let rects = [[10, 10, 26, 22], [30, 34, 50, 48]];
        let a = crop(n, 0.0, 0.0, 1.0, 0.0);
        for (dx, dy) in [(0.3f32, -0.2f32), (-0.7, 0.5), (2.5, 1.5)] {
            // Flicker: 5 % brighter and 3 grey levels up.
            let b = crop(n, dx, dy, 1.05, 3.0);
            let mut lk = RegionLk::new(n, &rects.map(|r| (r, [3; 4])), 20);
            let mut out = [[0.0; 2]; 2];
            lk.measure((0, &a), (1, &b), &mut out);
            for d in out {
                assert!(
                    (d[0] - dx).abs() < 0.06 && (d[1] - dy).abs() < 0.06,
                    "shift ({dx}, {dy}) measured as {d:?}"
                );
            }
        }
    }

    #[test]
    fn rows_side_by_side_fit_bit_for_bit_as_one_by_one() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let n = 64;
        let reference = crop(n, 0.0, 0.0, 1.0, 0.0);
        let (mut a, mut tmp) = (vec![0f32; n * n], vec![0f32; n * n]);
        smooth(&reference, &mut a, &mut tmp, n, [0, 0, n, n]);
        let mut checked = 0;
        // Windows of 7 to 26 rows (no whole group, groups and a remainder), shifts that move the
        // sample across pixel boundaries, and a change of light.
        for (k, w) in [
            [8, 8, 30, 15],
            [6, 9, 40, 17],
            [10, 5, 25, 31],
            [12, 12, 50, 38],
        ]
        .into_iter()
        .enumerate()
        {
            let t = Template::new(&a, n, w, Template::empty()).expect("textured window");
            for (dx, dy) in [(0.3f32, -0.2f32), (-1.7, 0.45), (2.5, 1.5)] {
                let f = crop(n, dx, dy, 1.04 + 0.01 * k as f32, 2.0);
                let mut b = vec![0f32; n * n];
                smooth(&f, &mut b, &mut tmp, n, [0, 0, n, n]);
                let wide = track_rows(&t, &b, n, w, [0.1, -0.1], true);
                let narrow = track_rows(&t, &b, n, w, [0.1, -0.1], false);
                assert_eq!(
                    wide.map(f32::to_bits),
                    narrow.map(f32::to_bits),
                    "window {w:?}, shift ({dx}, {dy})"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 12);
    }

    #[test]
    fn a_flat_window_measures_no_motion() {
        let n = 48;
        let flat = vec![128u8; n * n];
        let mut lk = RegionLk::new(n, &[([10, 10, 30, 30], [2; 4])], 20);
        let mut out = [[9.0; 2]; 1];
        lk.measure((0, &flat), (1, &flat), &mut out);
        assert_eq!(out[0], [0.0, 0.0]);
    }

    #[test]
    fn a_pinned_reference_measures_the_same_from_its_kept_templates() {
        let n = 64;
        let rects = [[10, 10, 26, 22], [30, 34, 50, 48]].map(|r| (r, [3; 4]));
        let a = crop(n, 0.0, 0.0, 1.0, 0.0);
        let mut kept = RegionLk::new(n, &rects, 2);
        let mut rebuilt = RegionLk::new(n, &rects, 2);
        for (i, (dx, dy)) in [(0.2f32, 0.1f32), (0.6, -0.3), (1.1, -0.4)]
            .into_iter()
            .enumerate()
        {
            let f = crop(n, dx, dy, 1.0, 0.0);
            let (mut x, mut y) = ([[0.0; 2]; 2], [[0.0; 2]; 2]);
            // Frame 0 stays the reference (pinned) past the lag; `rebuilt` builds its templates again.
            kept.measure((0, &a), (i as u64 + 1, &f), &mut x);
            rebuilt.built_for.iter_mut().for_each(|b| *b = None);
            rebuilt.measure((0, &a), (i as u64 + 1, &f), &mut y);
            assert_eq!(x, y, "frame {}", i + 1);
            assert!(
                (x[0][0] - dx).abs() < 0.06 && (x[0][1] - dy).abs() < 0.06,
                "{x:?}"
            );
        }
        assert!(kept.built_for.iter().all(|b| *b == Some((0, false))));
    }
}
