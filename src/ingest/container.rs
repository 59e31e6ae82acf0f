//! Truncation checks for container files. Demuxers often end quietly at the cut (avidemux scans what is
//! there and sends EOS), so the sizes the container declares are compared with the file's real size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Why a container looks cut short, or `None` when its declared sizes fit the file.
pub fn truncation(path: &Path) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut head = [0u8; 16];
    let n = f.read(&mut head).ok()?;
    if n < 12 {
        return None;
    }
    if &head[0..4] == b"RIFF" {
        let declared = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64 + 8;
        return (declared > len).then(|| {
            format!("RIFF header declares {declared} bytes but the file has {len}: the file is truncated")
        });
    }
    if head[0..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return matroska(&mut f, len);
    }
    if &head[4..8] == b"ftyp" {
        return iso_bmff(&mut f, len);
    }
    None
}

/// Walks top-level MP4/MOV boxes: a box reaching past the end of the file means a cut.
fn iso_bmff(f: &mut File, len: u64) -> Option<String> {
    let mut pos = 0u64;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(pos)).ok()?;
        let mut h = [0u8; 16];
        f.read_exact(&mut h[..8]).ok()?;
        let mut size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let kind = String::from_utf8_lossy(&h[4..8]).to_string();
        if size == 1 {
            f.read_exact(&mut h[8..16]).ok()?;
            size = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        } else if size == 0 {
            return None; // extends to the end of the file by definition
        }
        if size < 8 {
            return Some(format!(
                "MP4 box {kind:?} at byte {pos} has an invalid size {size}"
            ));
        }
        // `pos + 8 <= len` holds, so this cannot overflow where `pos + size` could (fuzzing found
        // a 64-bit box size of 2^64 - 256).
        if size > len - pos {
            return Some(format!(
                "MP4 box {kind:?} at byte {pos} declares {size} bytes but the file ends at {len}: the file is truncated"
            ));
        }
        pos += size;
    }
    None
}

/// Reads one EBML variable-length integer; returns (value, length, all-ones = unknown size).
fn ebml_vint(f: &mut File, keep_marker: bool) -> Option<(u64, usize, bool)> {
    let mut first = [0u8; 1];
    f.read_exact(&mut first).ok()?;
    let width = first[0].leading_zeros() as usize + 1;
    if width > 8 {
        return None;
    }
    let mut value = if keep_marker {
        first[0] as u64
    } else {
        (first[0] as u64) & (0xFF >> width)
    };
    let mut rest = vec![0u8; width - 1];
    f.read_exact(&mut rest).ok()?;
    for b in rest {
        value = (value << 8) | b as u64;
    }
    let ones = (1u64 << (7 * width)) - 1;
    Some((value, width, !keep_marker && value == ones))
}

/// Matroska/WebM: the Segment's declared size must fit in the file.
fn matroska(f: &mut File, len: u64) -> Option<String> {
    f.seek(SeekFrom::Start(0)).ok()?;
    let (_, id_w, _) = ebml_vint(f, true)?;
    let (hdr_size, sz_w, _) = ebml_vint(f, false)?;
    let seg_at = (id_w + sz_w) as u64 + hdr_size;
    f.seek(SeekFrom::Start(seg_at)).ok()?;
    let (id, id_w, _) = ebml_vint(f, true)?;
    if id != 0x18538067 {
        return None;
    }
    let (size, sz_w, unknown) = ebml_vint(f, false)?;
    if unknown {
        return None; // live-written files may leave the size open
    }
    let end = seg_at + (id_w + sz_w) as u64 + size;
    (end > len).then(|| {
        format!(
            "Matroska segment declares {end} bytes but the file has {len}: the file is truncated"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riff_cut_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.avi");
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&100u32.to_le_bytes());
        v.extend_from_slice(b"AVI ");
        v.resize(108, 0);
        std::fs::write(&p, &v).unwrap();
        assert_eq!(truncation(&p), None);
        std::fs::write(&p, &v[..60]).unwrap();
        assert!(truncation(&p).unwrap().contains("truncated"));
    }

    #[test]
    fn an_mp4_box_size_near_2_pow_64_is_a_cut_not_an_overflow() {
        // The input cargo fuzz found (fuzz/corpus/truncation/box-size-overflow.mp4).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mp4");
        let v = include_bytes!("../../fuzz/corpus/truncation/box-size-overflow.mp4");
        std::fs::write(&p, v).unwrap();
        assert!(truncation(&p).unwrap().contains("truncated"));
    }

    #[test]
    fn mp4_box_past_the_end_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mp4");
        let mut v = Vec::new();
        v.extend_from_slice(&16u32.to_be_bytes());
        v.extend_from_slice(b"ftypisom\0\0\0\0");
        v.extend_from_slice(&1000u32.to_be_bytes());
        v.extend_from_slice(b"mdat");
        v.resize(100, 0);
        std::fs::write(&p, &v).unwrap();
        assert!(truncation(&p).unwrap().contains("mdat"));
    }
}
