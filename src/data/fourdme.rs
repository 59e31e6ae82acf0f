//! 4DME micro-expressions (Li et al. 2023), the gray-scale 2D frames of the micro set.
//!
//! Expected layout (names as released; the frame file naming is learnt from each folder because
//! it is not documented in the release and we could not verify it):
//!
//! ```text
//! ROOT/
//!   4DME_Labelling_Micro_release v1.xlsx   any 4DME_Labelling_Micro*.xlsx|.csv (or --annotations)
//!   gray_micro/<sub_ID>/<fold_name>/...     frames <prefix><N>.<ext>, N = the sheet's numbering
//!                                            (fallback name when the folder is absent: <N>.jpg)
//!   gray_micro_crop/...                      cropped frames (--frames cropped)
//! ```
//!
//! First sheet, header on row 1, columns found by name: `sub_ID | fold_name | Onset | Apex |
//! Offset | AUs | Emotion` plus emotion-category and other columns that are ignored. Frame numbers
//! may be stored as floats (12.0). Quirk handled: AUs are written `AU4+AU12(k)`; the release does
//! not define "(k)", so such items are an error unless `--k-marked include|exclude` is chosen
//! (public benchmarks such as MEB exclude them).

use super::rows::{Columns, check_samples, read_records};
use super::sample::{Dataset, FrameSet, Sample};
use super::sheet::{find_annotation_file, read_table, sheet_named};
use super::{FrameVariant, LoadOptions, Loaded, Problem, frames_root};
use anyhow::Result;
use std::path::Path;

/// Reads a 4DME folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        sheet_named("4dme_labelling_micro"),
        "4DME_Labelling_Micro_release*.xlsx",
    )?;
    let table = read_table(&file, 0)?;
    let header = table.find_header(&["sub_ID", "fold_name"], 10)?;
    let cols = Columns {
        subject: header.require(&table, &["sub_ID", "Subject"])?,
        clip: header.require(&table, &["fold_name", "Filename"])?,
        onset: header.require(&table, &["Onset", "Onset Frame"])?,
        apex: Some(header.require(&table, &["Apex", "Apex Frame"])?),
        offset: header.require(&table, &["Offset", "Offset Frame"])?,
        aus: Some(header.require(&table, &["AUs", "AU", "Action Units"])?),
        emotion: header.col(&["Emotion", "Estimated Emotion"]),
        kind: None,
    };
    let (records, mut problems) = read_records(&table, &header, &cols, Dataset::FourDme, &opts.au);
    let probe = records
        .first()
        .map(|r| Path::new(&r.subject).join(&r.clip))
        .unwrap_or_default();
    let candidates: &[&str] = match opts.frames {
        FrameVariant::Cropped => &["gray_micro_crop"],
        FrameVariant::Raw => &["gray_micro", "."],
        FrameVariant::Auto => &["gray_micro", ".", "gray_micro_crop"],
    };
    let frames_root = frames_root(root, opts.frames_dir.as_deref(), candidates, &probe);
    let mut samples = Vec::new();
    for r in records {
        let Some(offset) = r.offset else {
            problems.push(Problem::error_at(&r.source, "offset frame is missing"));
            continue;
        };
        let dir = frames_root.join(&r.subject).join(&r.clip);
        samples.push(Sample {
            dataset: Dataset::FourDme,
            frames: FrameSet::infer(&dir, FrameSet::new(&dir, "", 0, "jpg")),
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
        dataset: Dataset::FourDme,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root,
        samples,
        intervals: Vec::new(),
        problems,
        excluded_rows: 0,
    })
}
