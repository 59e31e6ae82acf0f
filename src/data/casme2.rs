//! CASME II (Yan et al. 2014): 247+ micro-expression clips of 26 subjects at 200 fps. This is
//! also the layout `aullm synth` writes, so synthetic data goes through this same loader.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   CASME2-coding-20140508.xlsx        any CASME2-coding*.xlsx|.xls|.csv (or --annotations FILE)
//!   CASME2_RAW_selected/               raw frames (also CASME2-RAW/, CASME2_RAW/, or doubly nested)
//!     sub01/EP02_01f/img46.jpg ...     img<N>.jpg, N in the original recording's numbering: a clip's
//!                                      first file is its onset (or earlier), not img1
//!   Cropped/                           cropped, aligned frames (also CASME2_Cropped/, Cropped_original/)
//!     sub01/EP02_01f/reg_img46.jpg ...
//! ```
//!
//! The coding sheet is the first sheet, header on row 1: `Subject | Filename | (blank) |
//! OnsetFrame | ApexFrame | OffsetFrame | (blank) | Action Units | Estimated Emotion`. Columns are
//! found by name, so the blank columns may be absent. Quirks handled: `Subject` is a number (1 →
//! `sub01`); `ApexFrame` is "/" for about twenty clips (apex unknown); a lone AU such as `12` is a
//! number cell, not text; AUs are written `4+L10`, `1+2+R15`, `R12`.

use super::clip_table::{self, ClipLayout, ColumnNames};
use super::sample::{Dataset, FrameSet};
use super::{FrameVariant, LoadOptions, Loaded, frames_root};
use crate::atomic::AtomicFile;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Raw-frame folders, most specific first.
const RAW_DIRS: &[&str] = &[
    "CASME2_RAW_selected/CASME2_RAW_selected",
    "CASME2_RAW_selected",
    "CASME2-RAW",
    "CASME2_RAW",
];

/// Cropped-frame folders, most specific first.
const CROPPED_DIRS: &[&str] = &[
    "Cropped/Cropped",
    "Cropped",
    "CASME2_Cropped",
    "Cropped_original",
];

/// Header of the coding sheet as released; "" marks the two blank columns.
pub const CODING_HEADER: [&str; 9] = [
    "Subject",
    "Filename",
    "",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "",
    "Action Units",
    "Estimated Emotion",
];

/// Whether `name` is a CASME II coding sheet.
fn is_coding_file(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.starts_with("casme2-coding")
        && (l.ends_with(".xlsx") || l.ends_with(".xls") || l.ends_with(".csv"))
}

/// CASME II's release (also what `aullm synth` writes).
static LAYOUT: ClipLayout = ClipLayout {
    dataset: Dataset::Casme2,
    is_annotation: is_coding_file,
    annotation_hint: "CASME2-coding*.xlsx|.csv",
    header: (&["Subject", "Filename", "OnsetFrame"], 5),
    columns: ColumnNames {
        subject: &["Subject"],
        clip: &["Filename"],
        onset: &["OnsetFrame", "Onset"],
        apex: &["ApexFrame", "Apex"],
        offset: &["OffsetFrame", "Offset"],
        aus: &["Action Units", "AU", "AUs"],
        emotion: &["Estimated Emotion", "Emotion"],
        kind: &[],
    },
    raw_dirs: RAW_DIRS,
    cropped_dirs: CROPPED_DIRS,
    // The file names are the release's: img<N>.jpg, reg_img<N>.jpg when cropped.
    frames: |root, subject, clip, cropped| {
        let prefix = if cropped { "reg_img" } else { "img" };
        FrameSet::new(root.join(subject).join(clip), prefix, 0, "jpg")
    },
    choose_frames,
    number_repeats: false,
};

/// Reads a CASME II folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    clip_table::load(&LAYOUT, root, opts)
}

/// The frames folder and whether it holds cropped (`reg_img`) frames.
fn choose_frames(_: &ClipLayout, root: &Path, opts: &LoadOptions, probe: &Path) -> (PathBuf, bool) {
    if let Some(dir) = &opts.frames_dir {
        let dir = frames_root(root, Some(dir), &[], probe);
        let cropped = match opts.frames {
            FrameVariant::Cropped => true,
            FrameVariant::Raw => false,
            FrameVariant::Auto => first_file_starts_with(&dir.join(probe), "reg_img"),
        };
        return (dir, cropped);
    }
    let has = |dirs: &[&str]| dirs.iter().any(|d| root.join(d).join(probe).is_dir());
    let cropped = match opts.frames {
        FrameVariant::Cropped => true,
        FrameVariant::Raw => false,
        FrameVariant::Auto => !has(RAW_DIRS) && has(CROPPED_DIRS),
    };
    let dirs = if cropped { CROPPED_DIRS } else { RAW_DIRS };
    let mut candidates = dirs.to_vec();
    candidates.push(".");
    (frames_root(root, None, &candidates, probe), cropped)
}

fn first_file_starts_with(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .unwrap_or(false)
}

/// Where a CASME II frame lives in the released layout, e.g. `ROOT/CASME2_RAW_selected/sub01/
/// EP02_01f/img46.jpg` (raw) or `ROOT/Cropped/sub01/EP02_01f/reg_img46.jpg` (cropped). Writers of
/// CASME II-layout data (the synthetic generator) use this so that [`load`] finds what they wrote.
pub fn casme2_frame_path(
    root: &Path,
    subject: u32,
    filename: &str,
    frame: u32,
    cropped: bool,
) -> PathBuf {
    let (dir, prefix) = if cropped {
        ("Cropped", "reg_img")
    } else {
        ("CASME2_RAW_selected", "img")
    };
    root.join(dir)
        .join(format!("sub{subject:02}"))
        .join(filename)
        .join(format!("{prefix}{frame}.jpg"))
}

/// One row of a CASME II coding sheet, as [`write_casme2_coding_xlsx`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Casme2Row {
    /// Subject number (1 → folder `sub01`).
    pub subject: u32,
    /// Clip folder name, e.g. `EP02_01f`.
    pub filename: String,
    /// Onset frame number.
    pub onset: u32,
    /// Apex frame number; `None` is written "/" as in the released sheet.
    pub apex: Option<u32>,
    /// Offset frame number.
    pub offset: u32,
    /// AU list as CASME II writes it, e.g. `4+L10`.
    pub action_units: String,
    /// Estimated emotion, e.g. `happiness`.
    pub emotion: String,
}

/// Writes a CASME II coding sheet (.xlsx) with the released header, blank columns included. A
/// lone numeric AU ("12") is stored as a number cell, as Excel stored it in the release.
pub fn write_casme2_coding_xlsx(path: &Path, rows: &[Casme2Row]) -> Result<()> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let ctx = || format!("cannot build {}", path.display());
    ws.set_name("Sheet1").with_context(ctx)?;
    for (c, name) in CODING_HEADER.iter().enumerate() {
        if !name.is_empty() {
            ws.write_string(0, c as u16, *name).with_context(ctx)?;
        }
    }
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        ws.write_number(row, 0, r.subject).with_context(ctx)?;
        ws.write_string(row, 1, &r.filename).with_context(ctx)?;
        ws.write_number(row, 3, r.onset).with_context(ctx)?;
        match r.apex {
            Some(a) => ws.write_number(row, 4, a),
            None => ws.write_string(row, 4, "/"),
        }
        .with_context(ctx)?;
        ws.write_number(row, 5, r.offset).with_context(ctx)?;
        match r.action_units.trim().parse::<u32>() {
            Ok(n) => ws.write_number(row, 7, n),
            Err(_) => ws.write_string(row, 7, &r.action_units),
        }
        .with_context(ctx)?;
        ws.write_string(row, 8, &r.emotion).with_context(ctx)?;
    }
    // A fixed creation time keeps the file byte-identical for the same rows (synthetic data is
    // compared by hash).
    let created = rust_xlsxwriter::ExcelDateTime::from_ymd(2026, 1, 1).with_context(ctx)?;
    wb.set_properties(&rust_xlsxwriter::DocProperties::new().set_creation_datetime(&created));
    let bytes = wb.save_to_buffer().with_context(ctx)?;
    let mut f = AtomicFile::create(path)?;
    f.write_all(&bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}

/// Writes the same sheet as CSV (header row as released, blank columns included).
pub fn write_casme2_coding_csv(path: &Path, rows: &[Casme2Row]) -> Result<()> {
    let f = AtomicFile::create(path)?;
    let mut w = csv::Writer::from_writer(f);
    let ctx = || format!("cannot write {}", path.display());
    w.write_record(CODING_HEADER).with_context(ctx)?;
    for r in rows {
        let apex = r.apex.map_or("/".to_string(), |a| a.to_string());
        w.write_record([
            r.subject.to_string().as_str(),
            &r.filename,
            "",
            &r.onset.to_string(),
            &apex,
            &r.offset.to_string(),
            "",
            &r.action_units,
            &r.emotion,
        ])
        .with_context(ctx)?;
    }
    let f = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))
        .with_context(ctx)?;
    f.commit()?;
    Ok(())
}
