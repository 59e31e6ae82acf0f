//! 8-bit gray PNG written here: the report's and the monitor's crops are encoded without loading
//! OpenCV's codecs (and their ~115 libraries) into a batch or a live run.

use flate2::Crc;
use flate2::write::ZlibEncoder;
use std::io::Write;

/// `pixels` (`width` × `height`, row-major) as an 8-bit gray PNG; `None` when the sizes do not
/// match or a side is 0 or over PNG's 2^31 - 1.
pub fn gray(pixels: &[u8], width: usize, height: usize) -> Option<Vec<u8>> {
    let limit = i32::MAX as usize;
    if width == 0 || height == 0 || width > limit || height > limit {
        return None;
    }
    if pixels.len() != width.checked_mul(height)? {
        return None;
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend((width as u32).to_be_bytes());
    ihdr.extend((height as u32).to_be_bytes());
    // Bit depth 8, colour type 0 (gray), deflate, adaptive filtering, no interlace.
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // Each row behind filter type 1 (Sub: the difference to the left neighbour), which smooth
    // skin compresses well.
    let mut raw = Vec::with_capacity(height * (width + 1));
    for row in pixels.chunks_exact(width) {
        raw.push(1);
        raw.push(row[0]);
        raw.extend(row.windows(2).map(|p| p[1].wrapping_sub(p[0])));
    }
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).ok()?;
    chunk(&mut out, b"IDAT", &z.finish().ok()?);
    chunk(&mut out, b"IEND", &[]);
    Some(out)
}

/// Appends one chunk: length, type, data, CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend(crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::prelude::*;

    #[test]
    fn opencv_reads_back_the_same_pixels() {
        let (w, h) = (37, 21);
        let px: Vec<u8> = (0..w * h).map(|i| ((i * 7) ^ (i / w * 13)) as u8).collect();
        let bytes = gray(&px, w, h).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.png");
        std::fs::write(&p, &bytes).unwrap();
        let m = super::super::imread(&p, super::super::IMREAD_GRAYSCALE).unwrap();
        assert_eq!((m.cols() as usize, m.rows() as usize), (w, h));
        assert_eq!(m.data_bytes().unwrap(), &px[..]);
        assert!(gray(&px, w, h + 1).is_none());
        assert!(gray(&[], 0, 0).is_none());
    }
}
