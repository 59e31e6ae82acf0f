//! Per-frame face CSV in OpenFace's style: one row per face per frame (or one empty row when no face).

use crate::atomic::AtomicFile;
use crate::face::FaceObservation;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Column names, in order. `frame` is 1-based like OpenFace; `timestamp` is stream seconds.
pub fn header() -> String {
    let mut cols: Vec<String> = [
        "frame",
        "face_id",
        "timestamp",
        "confidence",
        "success",
        "box_x",
        "box_y",
        "box_w",
        "box_h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cols.extend((0..6).map(|i| format!("x_{i}")));
    cols.extend((0..6).map(|i| format!("y_{i}")));
    cols.extend(
        ["detected", "residual", "seq"]
            .iter()
            .map(|s| s.to_string()),
    );
    cols.join(",")
}

/// Streams rows to `PATH.partial`; [`FaceCsv::finish`] renames it into place.
pub struct FaceCsv {
    file: AtomicFile,
    rows: u64,
}

impl FaceCsv {
    /// Creates the file and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        writeln!(file, "{}", header())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { file, rows: 0 })
    }

    /// Writes the rows of one frame. `frame_index` is 0-based here and written 1-based.
    pub fn write_frame(
        &mut self,
        frame_index: u64,
        seq: u64,
        timestamp_s: f64,
        faces: &[FaceObservation],
    ) -> Result<()> {
        let frame = frame_index + 1;
        if faces.is_empty() {
            // No face: keep the frame visible with empty measurements (NaN in pandas), success 0.
            writeln!(
                self.file,
                "{frame},-1,{timestamp_s:.6},0,0{},0,,{seq}",
                ",".repeat(16)
            )?;
            self.rows += 1;
            return Ok(());
        }
        for f in faces {
            let [l, t, r, b] = f.bbox;
            let mut line = format!(
                "{frame},{},{timestamp_s:.6},{:.4},1,{l:.2},{t:.2},{:.2},{:.2}",
                f.track_id,
                f.confidence,
                r - l,
                b - t
            );
            for k in &f.keypoints {
                line.push_str(&format!(",{:.3}", k[0]));
            }
            for k in &f.keypoints {
                line.push_str(&format!(",{:.3}", k[1]));
            }
            line.push_str(&format!(",{},{:.4},{seq}", f.detected as u8, f.residual));
            writeln!(self.file, "{line}")?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the file (rename into place).
    pub fn finish(self) -> Result<PathBuf> {
        self.file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_as_many_fields_as_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        let mut csv = FaceCsv::create(&p).unwrap();
        csv.write_frame(0, 0, 0.0, &[]).unwrap();
        let obs = FaceObservation {
            track_id: 1,
            bbox: [1.0, 2.0, 11.0, 12.0],
            keypoints: [[3.0, 4.0]; 6],
            confidence: 0.9,
            detected: true,
            crop: vec![],
            crop_to_frame: crate::face::Similarity::IDENTITY,
            residual: 0.1,
        };
        csv.write_frame(1, 1, 0.005, &[obs]).unwrap();
        assert!(!p.exists(), "not visible before finish");
        csv.finish().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let n = header().split(',').count();
        for line in text.lines() {
            assert_eq!(line.split(',').count(), n, "{line}");
        }
        assert_eq!(text.lines().count(), 3);
    }
}
