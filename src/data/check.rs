//! `aullm data check`: the loader's annotation problems plus frame-file checks, and counts per AU
//! and per subject, as a text report or JSON.

use super::au::Side;
use super::sample::{FrameSet, RowRef};
use super::{Loaded, Problem, Severity};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::path::PathBuf;

/// What the check looks at beyond the annotations.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Check that frame files exist (off: annotations only).
    pub frames: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self { frames: true }
    }
}

/// How often one AU is coded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuCount {
    /// Records with the AU (any side).
    pub records: usize,
    /// Labels coded on the left.
    pub left: usize,
    /// Labels coded on the right.
    pub right: usize,
    /// Labels not lateralised.
    pub unlateralised: usize,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Dataset format name.
    pub dataset: String,
    /// Annotation file read.
    pub annotation_file: PathBuf,
    /// Frames folder used.
    pub frames_root: PathBuf,
    /// Records loaded (clips or intervals).
    pub records: usize,
    /// Rows deliberately not loaded (e.g. macro-expressions in a micro set).
    pub excluded_rows: usize,
    /// Distinct long videos (spotting datasets).
    pub videos: usize,
    /// Records per AU code ("AU12").
    pub per_au: BTreeMap<crate::au::Au, AuCount>,
    /// Records per subject.
    pub per_subject: BTreeMap<String, usize>,
    /// Records per expression kind (spotting datasets).
    pub per_kind: BTreeMap<String, usize>,
    /// Whether frame files were checked.
    pub frames_checked: bool,
    /// Every problem, annotation problems first.
    pub problems: Vec<Problem>,
    /// Number of errors.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
}

impl Report {
    /// Whether the dataset has no errors.
    pub fn ok(&self) -> bool {
        self.errors == 0
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "dataset      {}", self.dataset);
        let _ = writeln!(s, "annotations  {}", self.annotation_file.display());
        let _ = writeln!(
            s,
            "frames       {}{}",
            self.frames_root.display(),
            if self.frames_checked {
                ""
            } else {
                " (not checked)"
            }
        );
        let _ = write!(
            s,
            "records      {} from {} subjects",
            self.records,
            self.per_subject.len()
        );
        if self.videos > 0 {
            let _ = write!(s, " in {} videos", self.videos);
        }
        if self.excluded_rows > 0 {
            let _ = write!(s, " ({} rows excluded)", self.excluded_rows);
        }
        s.push('\n');
        for (k, n) in &self.per_kind {
            let _ = writeln!(s, "  {k:<10} {n}");
        }
        let _ = writeln!(s, "\nAU     records   left  right  unlateralised");
        for (code, c) in &self.per_au {
            let _ = writeln!(
                s,
                "AU{:<4} {:>7} {:>6} {:>6} {:>14}",
                code, c.records, c.left, c.right, c.unlateralised
            );
        }
        let _ = writeln!(s, "\nsubject      records");
        for (subj, n) in &self.per_subject {
            let _ = writeln!(s, "{subj:<12} {n:>7}");
        }
        let _ = writeln!(
            s,
            "\n{} error(s), {} warning(s)",
            self.errors, self.warnings
        );
        for p in &self.problems {
            let _ = writeln!(s, "{p}");
        }
        s
    }
}

/// Checks a loaded dataset.
pub fn check(loaded: &Loaded, opts: CheckOptions) -> Report {
    let mut problems = loaded.problems.clone();
    let mut per_au: BTreeMap<crate::au::Au, AuCount> = BTreeMap::new();
    let mut per_subject: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut count_aus = |aus: &[super::AuLabel]| {
        let mut codes = HashSet::new();
        for a in aus {
            let c = per_au.entry(a.code).or_default();
            match a.side {
                Side::Left => c.left += 1,
                Side::Right => c.right += 1,
                Side::None => c.unlateralised += 1,
            }
            if codes.insert(a.code) {
                c.records += 1;
            }
        }
    };
    for s in &loaded.samples {
        count_aus(&s.aus);
        *per_subject.entry(s.subject.clone()).or_default() += 1;
        if opts.frames {
            let frames: Vec<(u32, &str)> = [(s.onset, "onset"), (s.offset, "offset")]
                .into_iter()
                .chain(s.apex.map(|a| (a, "apex")))
                .collect();
            check_frames(
                &s.frames,
                &s.source,
                &format!("{}/{}", s.subject, s.clip),
                &frames,
                Some((s.onset, s.offset)),
                &mut problems,
            );
        }
    }
    let mut videos = HashSet::new();
    for iv in &loaded.intervals {
        count_aus(&iv.aus);
        *per_subject.entry(iv.subject.clone()).or_default() += 1;
        *per_kind.entry(iv.kind.to_string()).or_default() += 1;
        videos.insert(iv.video.clone());
        if opts.frames {
            let frames: Vec<(u32, &str)> = [(iv.onset, "onset")]
                .into_iter()
                .chain(iv.apex.map(|a| (a, "apex")))
                .chain(iv.offset.map(|o| (o, "offset")))
                .collect();
            check_frames(
                &iv.frames,
                &iv.source,
                &format!("{} {}", iv.video, iv.expression),
                &frames,
                None,
                &mut problems,
            );
        }
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    Report {
        dataset: loaded.dataset.to_string(),
        annotation_file: loaded.annotation_file.clone(),
        frames_root: loaded.frames_root.clone(),
        records: loaded.samples.len() + loaded.intervals.len(),
        excluded_rows: loaded.excluded_rows,
        videos: videos.len(),
        per_au,
        per_subject,
        per_kind,
        frames_checked: opts.frames,
        warnings: problems.len() - errors,
        errors,
        problems,
    }
}

/// Key frames must exist (errors); frames missing inside `span` are dropped frames (a warning).
fn check_frames(
    frames: &FrameSet,
    at: &RowRef,
    name: &str,
    key: &[(u32, &str)],
    span: Option<(u32, u32)>,
    problems: &mut Vec<Problem>,
) {
    if !frames.dir.is_dir() {
        problems.push(Problem::error_at(
            at,
            format!(
                "{name}: frames folder {} does not exist",
                frames.dir.display()
            ),
        ));
        return;
    }
    let present: HashSet<u32> = frames.present().into_iter().collect();
    let mut key_missing = HashSet::new();
    for (n, what) in key {
        if !present.contains(n) {
            key_missing.insert(*n);
            problems.push(Problem::error_at(
                at,
                format!(
                    "{name}: {what} frame {} does not exist",
                    frames.path(*n).display()
                ),
            ));
        }
    }
    if let Some((a, b)) = span {
        let missing: Vec<u32> = (a..=b)
            .filter(|n| !present.contains(n) && !key_missing.contains(n))
            .collect();
        if let Some(first) = missing.first() {
            problems.push(Problem::warning_at(
                at,
                format!(
                    "{name}: {} frame(s) missing inside {a}..{b} (dropped frames?), first {}",
                    missing.len(),
                    frames.path(*first).display()
                ),
            ));
        }
    }
}
