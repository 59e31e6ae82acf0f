//! SAMM (Davison et al. 2018): 159 micro-movements of 32 subjects at 200 fps.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   SAMM_Micro_FACS_Codes_v2.xlsx      any SAMM_Micro_FACS_Codes*.xlsx|.csv (or --annotations FILE)
//!   SAMM/                              raw frames (or the subject folders directly in ROOT)
//!     006/006_1_2/006_05562.jpg ...    <subject>_<frame, 5 digits>.jpg, numbered as in the
//!                                      subject's whole recording (the onset, e.g. 5562)
//!   SAMM_CROP/006/006_1_2/...          cropped frames (--frames cropped)
//! ```
//!
//! The first sheet opens with a block of notes; the header is on row 13 (found by looking for the
//! `Subject`/`Filename` row in the first 30): `Subject | Filename | Inducement Code | Onset Frame |
//! Apex Frame | Offset Frame | Duration | Type | Action Units | Notes | Estimated Emotion`.
//! Quirks handled: `Subject` is a number (6 → `006`) or text ("006"); `Apex Frame` is "/" or -1
//! where unknown; AUs carry laterality and intensity, with spaces (`R12 + R15`, `R14A`); a few
//! rows say "14 or 15" (ambiguous: an error unless a rule is chosen); frame-file padding is learnt
//! from the folder when it differs from 5 digits.

use super::rows::{Columns, check_samples, read_records};
use super::sample::{Dataset, FrameSet, Sample};
use super::sheet::{find_annotation_file, read_table, sheet_named};
use super::{FrameVariant, LoadOptions, Loaded, Problem, frames_root};
use anyhow::Result;
use std::path::Path;

/// Reads a SAMM folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        sheet_named("samm_micro_facs_codes"),
        "SAMM_Micro_FACS_Codes*.xlsx",
    )?;
    let table = read_table(&file, 0)?;
    let header = table.find_header(&["Subject", "Filename"], 30)?;
    let cols = Columns {
        subject: header.require(&table, &["Subject"])?,
        clip: header.require(&table, &["Filename"])?,
        onset: header.require(&table, &["Onset Frame", "Onset"])?,
        apex: Some(header.require(&table, &["Apex Frame", "Apex"])?),
        offset: header.require(&table, &["Offset Frame", "Offset"])?,
        aus: Some(header.require(&table, &["Action Units", "AU", "AUs"])?),
        emotion: header.col(&["Estimated Emotion", "Emotion"]),
        kind: None,
    };
    let (records, mut problems) = read_records(&table, &header, &cols, Dataset::Samm, &opts.au);
    let probe = records
        .first()
        .map(|r| Path::new(&r.subject).join(&r.clip))
        .unwrap_or_default();
    let candidates: &[&str] = match opts.frames {
        FrameVariant::Cropped => &["SAMM_CROP", "SAMM_CROP2", "Cropped"],
        FrameVariant::Raw => &["SAMM", "."],
        FrameVariant::Auto => &["SAMM", ".", "SAMM_CROP", "SAMM_CROP2", "Cropped"],
    };
    let frames_root = frames_root(root, opts.frames_dir.as_deref(), candidates, &probe);
    let mut samples = Vec::new();
    for r in records {
        let Some(offset) = r.offset else {
            problems.push(Problem::error_at(&r.source, "offset frame is missing"));
            continue;
        };
        let dir = frames_root.join(&r.subject).join(&r.clip);
        let naming = FrameSet::new(&dir, &format!("{}_", r.subject), 5, "jpg");
        samples.push(Sample {
            dataset: Dataset::Samm,
            frames: FrameSet::infer(&dir, naming),
            subject: r.subject,
            clip: r.clip,
            onset: r.onset,
            apex: r.apex,
            offset,
            aus: r.aus,
            emotion: r.emotion,
            source: r.source,
        });
    }
    let samples = check_samples(samples, &mut problems);
    Ok(Loaded {
        dataset: Dataset::Samm,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root,
        samples,
        intervals: Vec::new(),
        problems,
        excluded_rows: 0,
    })
}
