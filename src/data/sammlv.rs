//! SAMM Long Videos (Yap et al. 2020): 147 long recordings with micro- and macro-expression
//! intervals, for spotting.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   SAMM_LongVideos_V3_Release.xlsx    any SAMM_LongVideos*.xlsx|.csv (or --annotations FILE)
//!   SAMM_longvideos/006_1/...          one folder per video; frames <prefix><N>.jpg with the
//!                                      naming learnt from the folder (fallback 006_1_0001.jpg)
//! ```
//!
//! First sheet: notes on the first rows, then the header (row 10 in V3; found by looking for the
//! `Subject`/`Filename` row): `Subject | Filename | Inducement Code | Onset | Apex | Offset |
//! Duration | Type | Action Units | Notes`. `Filename` is `<subject>_<video>_<expression>`
//! (006_1_2), so the video id is its first two parts (006_1). `Type` is `Micro - 1/2` or `Macro`.
//! Quirks handled: `Subject` as number or text; `Apex` -1 or "/" for unknown.

use super::rows::{Columns, check_intervals, read_records};
use super::sample::{Dataset, ExpressionKind, FrameSet, IntervalAnnotation};
use super::sheet::{find_annotation_file, read_table, sheet_named};
use super::{LoadOptions, Loaded, Problem, frames_root};
use anyhow::Result;
use std::path::Path;

/// Reads a SAMM-LV folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        sheet_named("samm_longvideos"),
        "SAMM_LongVideos*.xlsx",
    )?;
    let table = read_table(&file, 0)?;
    let header = table.find_header(&["Subject", "Filename"], 30)?;
    let cols = Columns {
        subject: header.require(&table, &["Subject"])?,
        clip: header.require(&table, &["Filename"])?,
        onset: header.require(&table, &["Onset", "Onset Frame"])?,
        apex: Some(header.require(&table, &["Apex", "Apex Frame"])?),
        offset: header.require(&table, &["Offset", "Offset Frame"])?,
        aus: header.col(&["Action Units", "AU", "AUs"]),
        emotion: header.col(&["Estimated Emotion", "Emotion"]),
        kind: Some(header.require(&table, &["Type"])?),
    };
    let (records, mut problems) = read_records(&table, &header, &cols, Dataset::SammLv, &opts.au);
    let video_of = |expression: &str| -> Option<String> {
        let mut parts = expression.split('_');
        let (a, b) = (parts.next()?, parts.next()?);
        (!a.is_empty() && !b.is_empty()).then(|| format!("{a}_{b}"))
    };
    let probe = records
        .first()
        .and_then(|r| video_of(&r.clip))
        .unwrap_or_default();
    let frames_root = frames_root(
        root,
        opts.frames_dir.as_deref(),
        &["SAMM_longvideos", "SAMM_LongVideos", "."],
        Path::new(&probe),
    );
    let mut intervals = Vec::new();
    for r in records {
        let Some(video) = video_of(&r.clip) else {
            problems.push(Problem::error_at(
                &r.source,
                format!(
                    "filename {:?} is not <subject>_<video>_<expression>",
                    r.clip
                ),
            ));
            continue;
        };
        let kind = match r.kind.as_deref().map(str::parse::<ExpressionKind>) {
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                problems.push(Problem::error_at(&r.source, format!("type: {e}")));
                continue;
            }
            None => {
                problems.push(Problem::error_at(&r.source, "type is empty"));
                continue;
            }
        };
        let dir = frames_root.join(&video);
        let fallback = FrameSet::new(&dir, &format!("{video}_"), 4, "jpg");
        intervals.push(IntervalAnnotation {
            dataset: Dataset::SammLv,
            frames: FrameSet::infer(&dir, fallback),
            subject: r.subject,
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
        dataset: Dataset::SammLv,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root,
        samples: Vec::new(),
        intervals,
        problems,
        excluded_rows: 0,
    })
}
