//! Region decoding of MJPEG frames (libjpeg-turbo through a small C shim): the face path asks for
//! the rows and columns it reads, and only those are decoded.

use anyhow::{Result, bail};
use std::os::raw::{c_char, c_int, c_uchar, c_ulong};

unsafe extern "C" {
    fn aullm_jpeg_dims(
        data: *const c_uchar,
        len: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
    fn aullm_jpeg_decode_gray(
        data: *const c_uchar,
        len: c_ulong,
        out: *mut c_uchar,
        width: c_int,
        height: c_int,
        denom: c_int,
        x0: *mut c_int,
        x1: *mut c_int,
        y0: c_int,
        y1: c_int,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
}

/// A pixel rectangle `[x0, y0, x1, y1)` (end exclusive).
pub type Rect = [u32; 4];

/// `rect` cut to a `width`×`height` frame.
pub fn clamp(rect: Rect, width: u32, height: u32) -> Rect {
    [
        rect[0].min(width),
        rect[1].min(height),
        rect[2].min(width),
        rect[3].min(height),
    ]
}

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Width and height from a JPEG header.
pub fn dims(data: &[u8]) -> Result<(u32, u32)> {
    let (mut w, mut h) = (0, 0);
    let mut msg = [0u8; 200];
    // SAFETY: the shim reads `data` within its length and writes at most `msg.len()` bytes to `msg`.
    let rc = unsafe {
        aullm_jpeg_dims(
            data.as_ptr(),
            data.len() as c_ulong,
            &mut w,
            &mut h,
            msg.as_mut_ptr().cast(),
            msg.len(),
        )
    };
    if rc != 0 {
        bail!("invalid JPEG frame: {}", message(&msg));
    }
    if w <= 0 || h <= 0 {
        bail!("invalid JPEG frame: size {w}x{h}");
    }
    Ok((w as u32, h as u32))
}

/// Decodes at least `rect` of a `width`×`height` JPEG as gray into `out` (`width*height` bytes, rows
/// packed; pixels outside the returned rectangle are left as they were). The column range grows to
/// whole 8- or 16-pixel blocks; the rectangle actually decoded is returned.
pub fn decode_gray(
    data: &[u8],
    width: u32,
    height: u32,
    rect: Rect,
    out: &mut [u8],
) -> Result<Rect> {
    decode_gray_scaled(data, width, height, 1, rect, out)
}

/// Size of a `width`×`height` frame decoded at 1/`denom` (libjpeg rounds up).
pub fn scaled_size(width: u32, height: u32, denom: u32) -> (u32, u32) {
    (width.div_ceil(denom), height.div_ceil(denom))
}

/// [`decode_gray`] at 1/`denom` of the frame's size (1, 2, 4 or 8), scaled by libjpeg in the DCT
/// domain: `rect` and the result are in the scaled frame's pixels, and `out` holds the scaled frame
/// ([`scaled_size`]). Entropy decoding is not scaled: it is the same work at every scale.
pub fn decode_gray_scaled(
    data: &[u8],
    width: u32,
    height: u32,
    denom: u32,
    rect: Rect,
    out: &mut [u8],
) -> Result<Rect> {
    if ![1, 2, 4, 8].contains(&denom) {
        bail!("JPEG decoding scale 1/{denom}: expected 1/1, 1/2, 1/4 or 1/8");
    }
    let (sw, sh) = scaled_size(width, height, denom);
    let [x0, y0, x1, y1] = clamp(rect, sw, sh);
    if x0 >= x1 || y0 >= y1 {
        return Ok([x0, y0, x0, y0]);
    }
    if out.len() < sw as usize * sh as usize {
        bail!(
            "frame buffer of {} bytes for a {sw}x{sh} frame (1/{denom} of {width}x{height})",
            out.len()
        );
    }
    if denom == 1
        && let Ok((cx0, cx1)) =
            super::baseline::decode_gray_region(data, width, height, [x0, y0, x1, y1], out)
    {
        return Ok([cx0, y0, cx1, y1]);
    }
    libjpeg_region(data, width, height, denom, [x0, y0, x1, y1], out)
}

/// [`decode_gray`] for two frames of one stream at once (see
/// [`super::baseline::decode_gray_region_pair`]): both get at least `rect`, whole blocks when
/// decoded together. Frames that cannot go together (different tables, damage,
/// anything libjpeg must read) are decoded one by one, so each result is that frame's own.
pub fn decode_gray_pair(
    frames: [&[u8]; 2],
    width: u32,
    height: u32,
    rect: Rect,
    outs: [&mut [u8]; 2],
) -> [Result<Rect>; 2] {
    let r = clamp(rect, width, height);
    let [oa, ob] = outs;
    if r[0] < r[2]
        && r[1] < r[3]
        && let Ok(got) =
            super::baseline::decode_gray_region_pair(frames, width, height, r, [&mut *oa, &mut *ob])
    {
        return [Ok(got), Ok(got)];
    }
    [
        decode_gray(frames[0], width, height, rect, oa),
        decode_gray(frames[1], width, height, rect, ob),
    ]
}

/// [`decode_gray_scaled`] by libjpeg alone, for every JPEG libjpeg reads (the fast path in
/// [`super::baseline`] declines what it does not handle and comes here); `rect` is already clamped
/// to the scaled frame and non-empty, and `out` holds the scaled frame.
pub fn libjpeg_region(
    data: &[u8],
    width: u32,
    height: u32,
    denom: u32,
    [x0, y0, x1, y1]: Rect,
    out: &mut [u8],
) -> Result<Rect> {
    let (sw, sh) = scaled_size(width, height, denom);
    if out.len() < sw as usize * sh as usize || x0 >= x1 || y0 >= y1 || x1 > sw || y1 > sh {
        bail!(
            "region [{x0}, {x1}) x [{y0}, {y1}) of a {sw}x{sh} frame in {} bytes",
            out.len()
        );
    }
    let (mut cx0, mut cx1) = (x0 as c_int, x1 as c_int);
    let mut msg = [0u8; 200];
    // SAFETY: `out` holds the scaled frame's bytes (checked above) and the shim writes only rows
    // < y1 and columns inside the (block-aligned, frame-bounded) crop it reports, after checking
    // both against its output size; `data` is read within its length; at most `msg.len()` bytes
    // go to `msg`.
    let rc = unsafe {
        aullm_jpeg_decode_gray(
            data.as_ptr(),
            data.len() as c_ulong,
            out.as_mut_ptr(),
            width as c_int,
            height as c_int,
            denom as c_int,
            &mut cx0,
            &mut cx1,
            y0 as c_int,
            y1 as c_int,
            msg.as_mut_ptr().cast(),
            msg.len(),
        )
    };
    if rc != 0 {
        bail!("cannot decode JPEG frame: {}", message(&msg));
    }
    Ok([cx0 as u32, y0, cx1 as u32, y1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_clear_error_not_a_crash() {
        let e = dims(b"not a jpeg at all").unwrap_err().to_string();
        assert!(e.contains("invalid JPEG"), "{e}");
        let mut out = vec![0u8; 16];
        let e = decode_gray(b"\xff\xd8\xff\xe0garbage", 4, 4, [0, 0, 4, 4], &mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot decode JPEG"), "{e}");
    }
}
