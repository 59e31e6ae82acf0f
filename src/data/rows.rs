//! Reading one annotation row into typed fields, and the annotation-level checks every loader
//! shares (onset ≤ offset, apex inside, one record per clip).

use super::Problem;
use super::au::{AuLabel, AuRules, number_as_au_text, parse_aus};
use super::sample::{Dataset, IntervalAnnotation, RowRef, Sample};
use super::sheet::{Cell, FrameValue, Row, frame_value};
use std::collections::HashMap;
use std::path::Path;

/// Where the fields are in a sheet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    pub subject: usize,
    pub clip: usize,
    pub onset: usize,
    pub apex: Option<usize>,
    pub offset: usize,
    pub aus: Option<usize>,
    pub emotion: Option<usize>,
    pub kind: Option<usize>,
}

/// One row's fields, before dataset-specific naming is applied.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Canonical subject id.
    pub subject: String,
    pub clip: String,
    pub onset: u32,
    pub apex: Option<u32>,
    pub offset: Option<u32>,
    pub aus: Vec<AuLabel>,
    pub emotion: Option<String>,
    pub kind: Option<String>,
    pub source: RowRef,
}

/// Reads a row; `Ok(None)` for rows that are not records (no subject and no clip, e.g. notes).
/// Reads every non-blank row after `header`: the records, and a problem for each row that failed.
pub(crate) fn read_records(
    table: &super::sheet::Table,
    header: &super::sheet::Header,
    cols: &Columns,
    dataset: Dataset,
    rules: &AuRules,
) -> (Vec<Record>, Vec<Problem>) {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for row in table.records(header) {
        match read_record(&table.file, row, cols, dataset, rules, false) {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    (records, problems)
}

pub(crate) fn read_record(
    file: &Path,
    row: &Row,
    cols: &Columns,
    dataset: Dataset,
    rules: &AuRules,
    offset_zero_unknown: bool,
) -> Result<Option<Record>, Problem> {
    let source = RowRef {
        file: file.to_path_buf(),
        row: row.number,
    };
    let err = |m: String| Problem::error_at(&source, m);
    let subject = row.get(cols.subject).text();
    let clip = row.get(cols.clip).text();
    if subject.is_empty() && clip.is_empty() {
        return Ok(None);
    }
    if subject.is_empty() {
        return Err(err(format!("clip {clip:?} has no subject")));
    }
    if clip.is_empty() {
        return Err(err(format!("subject {subject:?} row has no clip name")));
    }
    let frame = |i: usize, what: &str| -> Result<FrameValue, Problem> {
        frame_value(row.get(i)).map_err(|e| err(format!("{what}: {e}")))
    };
    let onset = match frame(cols.onset, "onset")? {
        FrameValue::Known(n) => n,
        FrameValue::Unknown => return Err(err("onset frame is missing".into())),
    };
    let apex = match cols.apex {
        Some(i) => match frame(i, "apex")? {
            FrameValue::Known(n) => Some(n),
            FrameValue::Unknown => None,
        },
        None => None,
    };
    let offset = match frame(cols.offset, "offset")? {
        FrameValue::Known(0) if offset_zero_unknown => None,
        FrameValue::Known(n) => Some(n),
        FrameValue::Unknown => None,
    };
    let aus = match cols.aus {
        Some(i) => {
            let text = match row.get(i) {
                Cell::Number(v) => number_as_au_text(*v)
                    .ok_or_else(|| err(format!("AU cell {v} is not an AU list")))?,
                c => c.text(),
            };
            parse_aus(&text, rules).map_err(|e| err(format!("action units: {e}")))?
        }
        None => Vec::new(),
    };
    let opt_text = |i: Option<usize>| {
        i.map(|i| row.get(i).text())
            .filter(|t: &String| !t.is_empty())
    };
    Ok(Some(Record {
        subject: dataset.canonical_subject(&subject),
        clip,
        onset,
        apex,
        offset,
        aus,
        emotion: opt_text(cols.emotion),
        kind: opt_text(cols.kind),
        source,
    }))
}

/// The most frames one clip may span: a micro-expression lasts tens to hundreds of frames, and a
/// clip's frames are listed one by one (an offset of 4e9 in a sheet must not become 4e9 paths).
pub const MAX_CLIP_FRAMES: u32 = 20_000;

/// Annotation-level checks on clips: offset known, onset ≤ offset, apex inside, no duplicate clip.
/// Samples with errors are removed; their problems are added.
pub(crate) fn check_samples(samples: Vec<Sample>, problems: &mut Vec<Problem>) -> Vec<Sample> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let mut bad = false;
        if s.onset > s.offset {
            problems.push(Problem::error_at(
                &s.source,
                format!(
                    "{}/{}: onset {} is after offset {}",
                    s.subject, s.clip, s.onset, s.offset
                ),
            ));
            bad = true;
        } else if s.offset - s.onset >= MAX_CLIP_FRAMES {
            problems.push(Problem::error_at(
                &s.source,
                format!(
                    "{}/{}: onset {} to offset {} spans {} frames; a clip may span at most {MAX_CLIP_FRAMES}",
                    s.subject,
                    s.clip,
                    s.onset,
                    s.offset,
                    u64::from(s.offset - s.onset) + 1
                ),
            ));
            bad = true;
        }
        match s.apex {
            Some(a) if !(s.onset..=s.offset).contains(&a) => {
                problems.push(Problem::error_at(
                    &s.source,
                    format!(
                        "{}/{}: apex {a} is outside onset..offset {}..{}",
                        s.subject, s.clip, s.onset, s.offset
                    ),
                ));
                bad = true;
            }
            None => problems.push(Problem::warning_at(
                &s.source,
                format!(
                    "{}/{}: apex unknown in the annotation (the middle frame {} stands in)",
                    s.subject,
                    s.clip,
                    s.apex_or_middle()
                ),
            )),
            _ => {}
        }
        if s.aus.is_empty() {
            problems.push(Problem::warning_at(
                &s.source,
                format!("{}/{}: no action units coded", s.subject, s.clip),
            ));
        }
        if let Some(first) = seen.get(&(s.subject.clone(), s.clip.clone())) {
            problems.push(Problem::error_at(
                &s.source,
                format!(
                    "{}/{}: clip already annotated on row {first}",
                    s.subject, s.clip
                ),
            ));
            bad = true;
        } else {
            seen.insert((s.subject.clone(), s.clip.clone()), s.source.row);
        }
        if !bad {
            out.push(s);
        }
    }
    out
}

/// The same checks for long-video intervals (an unknown offset is a warning: the sheet says so).
pub(crate) fn check_intervals(
    intervals: Vec<IntervalAnnotation>,
    problems: &mut Vec<Problem>,
) -> Vec<IntervalAnnotation> {
    let mut out = Vec::with_capacity(intervals.len());
    for iv in intervals {
        let name = format!("{} {}", iv.video, iv.expression);
        let end = iv.offset.unwrap_or(u32::MAX);
        let mut bad = false;
        if let Some(off) = iv.offset
            && iv.onset > off
        {
            problems.push(Problem::error_at(
                &iv.source,
                format!("{name}: onset {} is after offset {off}", iv.onset),
            ));
            bad = true;
        }
        if let Some(a) = iv.apex
            && !(iv.onset..=end).contains(&a)
        {
            problems.push(Problem::error_at(
                &iv.source,
                format!("{name}: apex {a} is outside the interval"),
            ));
            bad = true;
        }
        if iv.offset.is_none() {
            problems.push(Problem::warning_at(
                &iv.source,
                format!(
                    "{name}: offset unknown in the annotation (scoring needs --unknown-offset)"
                ),
            ));
        }
        if !bad {
            out.push(iv);
        }
    }
    out
}
