//! Alignment quality: sub-pixel shift between two crops by phase correlation.

use anyhow::{Context, Result};

/// Translation (dx, dy) in pixels that best maps crop `a` onto crop `b` (Hann-windowed phase correlation).
pub fn crop_shift(a: &[u8], b: &[u8], size: u32) -> Result<(f64, f64)> {
    use opencv::core::{CV_32F, Mat, Size};
    use opencv::prelude::*;
    let s = size as i32;
    let to_f32 = |px: &[u8]| -> Result<Mat> {
        let m = Mat::new_rows_cols_with_data(s, s, px).context("wrapping crop")?;
        let mut f = Mat::default();
        m.convert_to(&mut f, CV_32F, 1.0, 0.0)
            .context("crop to f32")?;
        Ok(f)
    };
    let (fa, fb) = (to_f32(a)?, to_f32(b)?);
    let mut win = Mat::default();
    opencv::imgproc::create_hanning_window(&mut win, Size::new(s, s), CV_32F)
        .context("Hann window")?;
    let mut response = 0.0;
    let p = opencv::imgproc::phase_correlate(&fa, &fb, &win, Some(&mut response))
        .context("phaseCorrelate")?;
    Ok((p.x, p.y))
}

/// RMS of the frame-to-frame shift magnitudes over a sequence of crops (the registration jitter).
pub fn jitter_rms(crops: &[Vec<u8>], size: u32) -> Result<f64> {
    if crops.len() < 2 {
        return Ok(0.0);
    }
    let mut sq = 0.0;
    for w in crops.windows(2) {
        let (dx, dy) = crop_shift(&w[0], &w[1], size)?;
        sq += dx * dx + dy * dy;
    }
    Ok((sq / (crops.len() - 1) as f64).sqrt())
}
