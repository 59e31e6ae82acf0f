//! CAS(ME)^2 long videos (Qu et al. 2018): 98 recordings of 22 subjects (30 fps) with micro- and
//! macro-expression intervals, for spotting.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   CAS(ME)^2code_final.xlsx                any *code_final*.xlsx (e.g. "(Updated)"; or --annotations)
//!   rawpic/s15/15_0101disgustingteeth/img1.jpg ...   frames from 1; naming learnt from the folder
//!   cropped/...                              cropped frames (--frames cropped)
//! ```
//!
//! The workbook has three sheets, none with a header row:
//! 1. the annotations: `participant | video name & expression number (anger1_1) | onset | apex |
//!    offset | AUs | estimated emotion | expression type (micro-expression / macro-expression) |
//!    self-reported emotion`; an **offset of 0 means unknown**;
//! 2. "naming rule1": participant number (column C) → subject number (column B; 15 → `s15`);
//! 3. "naming rule2": video name (column B, "anger1") → 4-digit video code (column A, "0401").
//!
//! The video id is `<subject number>_<code>` (`15_0401`), the prefix of the video's folder name
//! in `rawpic/s15/`.

use super::rows::{Columns, check_intervals, read_record};
use super::sample::{Dataset, ExpressionKind, FrameSet, IntervalAnnotation};
use super::sheet::{Table, find_annotation_file, read_table, sheet_names};
use super::{FrameVariant, LoadOptions, Loaded, Problem, frames_root};
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads a CAS(ME)^2 folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        |n| {
            let l = n.to_ascii_lowercase();
            l.contains("code_final") && (l.ends_with(".xlsx") || l.ends_with(".xls"))
        },
        "CAS(ME)^2code_final*.xlsx",
    )?;
    let sheets = sheet_names(&file)?;
    if sheets.len() < 3 {
        bail!(
            "{}: has {} sheet(s); CAS(ME)^2's code file has three (annotations, naming rule1, naming rule2)",
            file.display(),
            sheets.len()
        );
    }
    let table = read_table(&file, 0)?;
    let subjects = mapping(&read_table(&file, 1)?, 2, 1);
    let codes = mapping(&read_table(&file, 2)?, 1, 0);
    let cols = Columns {
        subject: 0,
        clip: 1,
        onset: 2,
        apex: Some(3),
        offset: 4,
        aus: Some(5),
        emotion: Some(6),
        kind: Some(7),
    };
    let mut problems = Vec::new();
    let mut intervals = Vec::new();
    let variant_dirs: &[&str] = match opts.frames {
        FrameVariant::Cropped => &["cropped", "Cropped"],
        FrameVariant::Raw => &["rawpic", "."],
        FrameVariant::Auto => &["rawpic", ".", "cropped", "Cropped"],
    };
    let mut frames_base: Option<PathBuf> = None;
    for row in table.rows.iter().filter(|r| !r.is_blank()) {
        // The participant column is raw here: it is mapped through "naming rule1" below.
        let r = match read_record(&table.file, row, &cols, Dataset::Casme2Lv, &opts.au, true) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let participant = row.get(0).text();
        let Some(subject_no) = subjects.get(&participant) else {
            problems.push(Problem::error_at(
                &r.source,
                format!("participant {participant:?} is not in sheet 2 (naming rule1)"),
            ));
            continue;
        };
        let subject = Dataset::Casme2Lv.canonical_subject(subject_no);
        let subject_no = subject.trim_start_matches('s').to_string();
        let name = r.clip.split('_').next().unwrap_or_default().to_string();
        let Some(code) = codes.get(&name) else {
            problems.push(Problem::error_at(
                &r.source,
                format!(
                    "video name {name:?} (from {:?}) is not in sheet 3 (naming rule2)",
                    r.clip
                ),
            ));
            continue;
        };
        let code = if code.len() < 4 && code.chars().all(|c| c.is_ascii_digit()) {
            format!("{code:0>4}")
        } else {
            code.clone()
        };
        let kind = match r.kind.as_deref().map(str::parse::<ExpressionKind>) {
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                problems.push(Problem::error_at(
                    &r.source,
                    format!("expression type: {e}"),
                ));
                continue;
            }
            None => {
                problems.push(Problem::error_at(&r.source, "expression type is empty"));
                continue;
            }
        };
        let video = format!("{subject_no}_{code}");
        let base = frames_base
            .get_or_insert_with(|| {
                frames_root(
                    root,
                    opts.frames_dir.as_deref(),
                    variant_dirs,
                    Path::new(&subject),
                )
            })
            .clone();
        let dir = video_dir(&base.join(&subject), &video);
        let fallback = FrameSet::new(&dir, "img", 0, "jpg");
        intervals.push(IntervalAnnotation {
            dataset: Dataset::Casme2Lv,
            frames: FrameSet::infer(&dir, fallback),
            subject,
            video,
            expression: r.clip,
            onset: r.onset,
            apex: r.apex,
            offset: r.offset,
            kind,
            aus: r.aus,
            emotion: r.emotion,
            source: r.source,
        });
    }
    let intervals = check_intervals(intervals, &mut problems);
    Ok(Loaded {
        dataset: Dataset::Casme2Lv,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root: frames_base.unwrap_or_else(|| root.join("rawpic")),
        samples: Vec::new(),
        intervals,
        problems,
        excluded_rows: 0,
    })
}

/// A key → value map from two columns of a naming sheet (rows with either blank are skipped).
fn mapping(t: &Table, key: usize, value: usize) -> HashMap<String, String> {
    t.rows
        .iter()
        .filter_map(|r| {
            let (k, v) = (r.get(key).text(), r.get(value).text());
            (!k.is_empty() && !v.is_empty()).then_some((k, v))
        })
        .collect()
}

/// The folder in `subject_dir` whose name starts with `<video>` (15_0101 → 15_0101disgustingteeth);
/// `subject_dir/<video>` when none does (the check then reports it missing).
fn video_dir(subject_dir: &Path, video: &str) -> PathBuf {
    let found = std::fs::read_dir(subject_dir).ok().and_then(|rd| {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(video))
            .collect();
        names.sort();
        names.into_iter().next()
    });
    subject_dir.join(found.unwrap_or_else(|| video.to_string()))
}
