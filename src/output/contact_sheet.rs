//! A contact sheet: aligned crops sampled across the video in one PNG, to eyeball alignment.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Collects up to `cols*rows` crops evenly spaced over a stream of unknown length.
pub struct ContactSheet {
    size: usize,
    cols: usize,
    rows: usize,
    /// (frame index, crop) for every `stride`-th offered frame; thinned when full.
    tiles: Vec<(u64, Vec<u8>)>,
    stride: u64,
    offered: u64,
}

impl ContactSheet {
    /// An empty sheet of `cols`×`rows` tiles of `size` px crops.
    pub fn new(size: u32, cols: usize, rows: usize) -> Self {
        Self {
            size: size as usize,
            cols: cols.max(1),
            rows: rows.max(1),
            tiles: Vec::new(),
            stride: 1,
            offered: 0,
        }
    }

    /// Offers one crop; keeps an even sample without knowing the stream length in advance.
    pub fn offer(&mut self, frame_index: u64, crop: &[u8]) {
        if self.offered.is_multiple_of(self.stride) && crop.len() == self.size * self.size {
            self.tiles.push((frame_index, crop.to_vec()));
            if self.tiles.len() >= 2 * self.cols * self.rows {
                // Keep every other tile and sample half as often from now on.
                let mut i = 0;
                self.tiles.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.offered += 1;
    }

    /// Tiles collected.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// True when no crop was collected.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Writes the PNG with each tile labelled by its 1-based frame number.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        use opencv::core::{Mat, Point, Rect, Scalar};
        use opencv::prelude::*;
        if self.tiles.is_empty() {
            bail!("contact sheet {}: no aligned crops to show", path.display());
        }
        let n = self.cols * self.rows;
        let step = (self.tiles.len() as f64 / n as f64).max(1.0);
        let picks: Vec<&(u64, Vec<u8>)> = (0..n)
            .map(|i| (i as f64 * step) as usize)
            .take_while(|&i| i < self.tiles.len())
            .map(|i| &self.tiles[i])
            .collect();
        let rows = picks.len().div_ceil(self.cols);
        let s = self.size as i32;
        let mut sheet = Mat::new_rows_cols_with_default(
            rows as i32 * s,
            self.cols as i32 * s,
            opencv::core::CV_8UC1,
            Scalar::all(0.0),
        )?;
        for (i, (frame, crop)) in picks.iter().enumerate() {
            let (r, c) = ((i / self.cols) as i32, (i % self.cols) as i32);
            let tile = Mat::new_rows_cols_with_data(s, s, crop.as_slice())?;
            let mut roi = sheet.roi_mut(Rect::new(c * s, r * s, s, s))?;
            tile.copy_to(&mut roi)?;
            opencv::imgproc::put_text(
                &mut sheet,
                &format!("{}", frame + 1),
                Point::new(c * s + 3, r * s + 12),
                opencv::imgproc::FONT_HERSHEY_PLAIN,
                0.8,
                Scalar::all(255.0),
                1,
                opencv::imgproc::LINE_AA,
                false,
            )?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let ok = crate::imgio::imwrite(path, &sheet, &[])
            .with_context(|| format!("cannot write contact sheet {}", path.display()))?;
        if !ok {
            bail!("OpenCV could not write contact sheet {}", path.display());
        }
        Ok(())
    }
}
