//! The one reader of clip datasets (CASME II, SAMM, 4DME, CAS(ME)^3 part A): an annotation sheet
//! with one row per expression, and a folder of frames per clip. What differs between releases
//! (sheet name, column names, frame folders and file naming) is a [`ClipLayout`] table in each
//! dataset's module; the reading, the frame-folder choice and the checks are here, once.

use super::rows::{Columns, check_samples, read_record};
use super::sample::{Dataset, ExpressionKind, FrameSet, Sample};
use super::sheet::{Header, Table, find_annotation_file, read_table};
use super::{FrameVariant, LoadOptions, Loaded, Problem, frames_root};
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Accepted header names of each column, first the released one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnNames {
    /// Subject id.
    pub subject: &'static [&'static str],
    /// Clip (folder) name.
    pub clip: &'static [&'static str],
    /// Onset frame.
    pub onset: &'static [&'static str],
    /// Apex frame.
    pub apex: &'static [&'static str],
    /// Offset frame.
    pub offset: &'static [&'static str],
    /// Action units.
    pub aus: &'static [&'static str],
    /// Emotion (optional column).
    pub emotion: &'static [&'static str],
    /// Expression type, micro or macro (optional column; empty: none).
    pub kind: &'static [&'static str],
}

/// How a record's frames are found: the frames root, the record's subject and recording folder,
/// and whether the root holds the cropped variant.
pub(crate) type FramesOf = fn(root: &Path, subject: &str, clip: &str, cropped: bool) -> FrameSet;

/// Picks the frames root and whether it holds cropped frames (for a record at `probe`).
pub(crate) type ChooseFrames =
    fn(&ClipLayout, root: &Path, &LoadOptions, probe: &Path) -> (PathBuf, bool);

/// Everything that differs between the clip datasets' releases.
pub(crate) struct ClipLayout {
    /// The dataset.
    pub dataset: Dataset,
    /// Whether a file name is the annotation sheet.
    pub is_annotation: fn(&str) -> bool,
    /// The sheet's released name, for messages.
    pub annotation_hint: &'static str,
    /// Names that identify the header row, and how many rows to search for it.
    pub header: (&'static [&'static str], usize),
    /// The columns.
    pub columns: ColumnNames,
    /// Raw-frame folders under the root, most specific first ("." is the root itself).
    pub raw_dirs: &'static [&'static str],
    /// Cropped-frame folders, most specific first.
    pub cropped_dirs: &'static [&'static str],
    /// The frame files of a record.
    pub frames: FramesOf,
    /// The frames root (default: [`choose_frames`]).
    pub choose_frames: ChooseFrames,
    /// One recording holds several expressions: their clip ids get a suffix (a, a2, a3) while
    /// their frames stay in the recording's folder (CAS(ME)^3).
    pub number_repeats: bool,
}

/// The frames root: `--frames-dir`, else the first folder of the variant that holds the first
/// record (Auto: raw folders, the root, then cropped ones).
pub(crate) fn choose_frames(
    layout: &ClipLayout,
    root: &Path,
    opts: &LoadOptions,
    probe: &Path,
) -> (PathBuf, bool) {
    let mut candidates: Vec<&str> = Vec::new();
    if opts.frames != FrameVariant::Cropped {
        candidates.extend(layout.raw_dirs);
        candidates.push(".");
    }
    if opts.frames != FrameVariant::Raw {
        candidates.extend(layout.cropped_dirs);
    }
    let dir = frames_root(root, opts.frames_dir.as_deref(), &candidates, probe);
    let cropped = layout
        .cropped_dirs
        .iter()
        .any(|c| root.join(c) == dir || opts.frames == FrameVariant::Cropped);
    (dir, cropped)
}

/// Finds the column of each name list in `header`.
fn columns(layout: &ClipLayout, table: &Table, header: &Header) -> Result<Columns> {
    let c = &layout.columns;
    Ok(Columns {
        subject: header.require(table, c.subject)?,
        clip: header.require(table, c.clip)?,
        onset: header.require(table, c.onset)?,
        apex: Some(header.require(table, c.apex)?),
        offset: header.require(table, c.offset)?,
        aus: Some(header.require(table, c.aus)?),
        emotion: header.col(c.emotion),
        kind: (!c.kind.is_empty()).then(|| header.col(c.kind)).flatten(),
    })
}

/// Reads a clip dataset laid out as `layout` describes.
pub(crate) fn load(layout: &ClipLayout, root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        layout.is_annotation,
        layout.annotation_hint,
    )?;
    let table = read_table(&file, 0)?;
    let header = table.find_header(layout.header.0, layout.header.1)?;
    let cols = columns(layout, &table, &header)?;
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut excluded = 0;
    for row in table.records(&header) {
        match read_record(&table.file, row, &cols, layout.dataset, &opts.au, false) {
            // Sheets that list macro-expressions too keep them out of the micro-expression set.
            Ok(Some(r)) => match r.kind.as_deref().map(str::parse::<ExpressionKind>) {
                None | Some(Ok(ExpressionKind::Micro)) => records.push(r),
                Some(Ok(ExpressionKind::Macro)) => excluded += 1,
                Some(Err(e)) => problems.push(Problem::error_at(
                    &r.source,
                    format!("expression type: {e}"),
                )),
            },
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    let probe = records
        .first()
        .map(|r| Path::new(&r.subject).join(&r.clip))
        .unwrap_or_default();
    let (frames_root, cropped) = (layout.choose_frames)(layout, root, opts, &probe);
    let mut samples = Vec::new();
    let mut repeats: HashMap<(String, String), u32> = HashMap::new();
    for r in records {
        let Some(offset) = r.offset else {
            problems.push(Problem::error_at(&r.source, "offset frame is missing"));
            continue;
        };
        let clip = if layout.number_repeats {
            let n = repeats
                .entry((r.subject.clone(), r.clip.clone()))
                .or_insert(0);
            *n += 1;
            if *n == 1 {
                r.clip.clone()
            } else {
                format!("{}{}", r.clip, n)
            }
        } else {
            r.clip.clone()
        };
        samples.push(Sample {
            dataset: layout.dataset,
            frames: (layout.frames)(&frames_root, &r.subject, &r.clip, cropped),
            subject: r.subject,
            clip,
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
        dataset: layout.dataset,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root,
        samples,
        intervals: Vec::new(),
        problems,
        excluded_rows: excluded,
    })
}
