//! CAS(ME)^3 part A (Li et al. 2022): micro-expressions labelled on JPG indices of the color
//! frames.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   any *part_a*label*.xlsx|.csv, here or
//!                                                          one folder down (or --annotations)
//!   part_A/spNO.1/a/color/1.jpg ...                        <Subject>/<Filename>/color/<N>.jpg
//!                                                          (also data/part_A/, ME_A/; cropped: ME_A_cropped/)
//! ```
//!
//! First sheet, header on row 1: `Subject | Filename | Onset | Apex | Offset | Expression type |
//! AU | Objective class | emotion` (found by name; `Expression type` optional). Quirks handled:
//! rows whose `Expression type` is a macro-expression are not micro-expression samples and are
//! counted as excluded; one recording (`Filename`, e.g. "a") can hold several micro-expressions,
//! so the clip id of the 2nd, 3rd, ... row with the same subject and filename gets a suffix
//! ("a", "a2", "a3", as MEB numbers them) while its frames stay in the recording's folder; the
//! recordings have dropped frames, which `aullm data check` reports as warnings.

use super::rows::{Columns, check_samples, read_record};
use super::sample::{Dataset, ExpressionKind, FrameSet, Sample};
use super::sheet::{find_annotation_file, read_table};
use super::{FrameVariant, LoadOptions, Loaded, Problem, frames_root};
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// Reads a CAS(ME)^3 part A folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = find_annotation_file(
        root,
        opts.annotations.as_deref(),
        |n| {
            let l = n.to_ascii_lowercase();
            l.contains("part_a")
                && l.contains("label")
                && (l.ends_with(".xlsx") || l.ends_with(".csv"))
        },
        "cas(me)3_part_A_ME_label*.xlsx",
    )?;
    let table = read_table(&file, 0)?;
    let header = table.find_header(&["Subject", "Filename", "Onset"], 10)?;
    let cols = Columns {
        subject: header.require(&table, &["Subject"])?,
        clip: header.require(&table, &["Filename"])?,
        onset: header.require(&table, &["Onset"])?,
        apex: Some(header.require(&table, &["Apex"])?),
        offset: header.require(&table, &["Offset"])?,
        aus: Some(header.require(&table, &["AU", "AUs", "Action Units"])?),
        emotion: header.col(&["emotion", "Estimated Emotion", "Objective class"]),
        kind: header.col(&["Expression type", "Type"]),
    };
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut excluded = 0;
    for row in table.records(&header) {
        match read_record(&table.file, row, &cols, Dataset::Casme3A, &opts.au, false) {
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
    let candidates: &[&str] = match opts.frames {
        FrameVariant::Cropped => &["ME_A_cropped"],
        FrameVariant::Raw => &[
            "part_A",
            "data/part_A",
            "data/part_A_split/part_A",
            "ME_A",
            ".",
        ],
        FrameVariant::Auto => &[
            "part_A",
            "data/part_A",
            "data/part_A_split/part_A",
            "ME_A",
            ".",
            "ME_A_cropped",
        ],
    };
    let frames_root = frames_root(root, opts.frames_dir.as_deref(), candidates, &probe);
    let mut samples = Vec::new();
    let mut repeats: HashMap<(String, String), u32> = HashMap::new();
    for r in records {
        let Some(offset) = r.offset else {
            problems.push(Problem::error_at(&r.source, "offset frame is missing"));
            continue;
        };
        let n = repeats
            .entry((r.subject.clone(), r.clip.clone()))
            .or_insert(0);
        *n += 1;
        let clip = if *n == 1 {
            r.clip.clone()
        } else {
            format!("{}{}", r.clip, n)
        };
        let dir = frames_root.join(&r.subject).join(&r.clip).join("color");
        samples.push(Sample {
            dataset: Dataset::Casme3A,
            frames: FrameSet::infer(&dir, FrameSet::new(&dir, "", 0, "jpg")),
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
        dataset: Dataset::Casme3A,
        root: root.to_path_buf(),
        annotation_file: file,
        frames_root,
        samples,
        intervals: Vec::new(),
        problems,
        excluded_rows: excluded,
    })
}
