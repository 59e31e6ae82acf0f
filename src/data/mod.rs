//! Micro-expression datasets: loaders for the published layouts of CASME II, SAMM, 4DME,
//! CAS(ME)^3 part A (clips, AU detection) and SAMM-LV, CAS(ME)^2 (long videos, spotting), their
//! validation (`aullm data check`), and the CASME II sheet writer the synthetic generator uses.
//! The clip datasets share one reader (`clip_table`); each dataset module is its layout table.
//! May import: face, output, fixtures, assets, models, atomic, rng.
//!
//! Every loader returns a [`Loaded`]: the records it could read plus every problem it found, each
//! naming file and row. A row with an error is left out of the records; [`Loaded::require_clean`]
//! turns any error into a failure for callers that must not work on partial data.

pub mod au;
pub mod casme2;
pub mod casme2lv;
pub mod casme3a;
pub mod check;
mod clip_table;
pub mod detectability;
pub mod fourdme;
mod rows;
pub mod samm;
pub mod sammlv;
pub mod sample;
pub mod sheet;
pub mod synth;

pub use au::{AmbiguityRule, AuLabel, AuRules, KRule, Side, parse_aus};
pub use casme2::{Casme2Row, casme2_frame_path, write_casme2_coding_csv, write_casme2_coding_xlsx};
pub use sample::{
    Dataset, ExpressionKind, FrameSet, IntervalAnnotation, RowRef, Sample, SubjectKey,
};

use anyhow::{Result, bail};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How bad a problem is: errors fail `aullm data check`, warnings are reported only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something a user should know (unknown apex, dropped frames inside a clip).
    Warning,
    /// The record is wrong or unusable.
    Error,
}

/// One problem found in a dataset, with where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in (annotation sheet or frame folder).
    pub file: PathBuf,
    /// 1-based sheet row, when the problem is a row's.
    pub row: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// An error on a sheet row.
    pub fn error_at(at: &RowRef, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: at.file.clone(),
            row: Some(at.row),
            message: message.into(),
        }
    }

    /// A warning on a sheet row.
    pub fn warning_at(at: &RowRef, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error_at(at, message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.row {
            Some(r) => write!(
                f,
                "{sev}: {} row {r}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{sev}: {}: {}", self.file.display(), self.message),
        }
    }
}

/// Which frames to use where a dataset ships both raw and cropped/aligned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameVariant {
    /// Raw frames when their folder exists, else cropped.
    #[default]
    Auto,
    /// The raw frames (CASME2_RAW_selected, SAMM, gray_micro, part_A, rawpic).
    Raw,
    /// The cropped frames (Cropped with reg_img names, SAMM_CROP, gray_micro_crop, ...).
    Cropped,
}

impl FromStr for FrameVariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "raw" => Ok(Self::Raw),
            "cropped" => Ok(Self::Cropped),
            _ => Err(format!("{s:?}: expected auto, raw or cropped")),
        }
    }
}

/// Options every loader takes.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// How uncertain and "(k)" AU items are treated.
    pub au: AuRules,
    /// The annotation file, when it is not the one the loader finds by its published name.
    pub annotations: Option<PathBuf>,
    /// The folder holding subject folders, when it is not one of the published names.
    pub frames_dir: Option<PathBuf>,
    /// Raw or cropped frames.
    pub frames: FrameVariant,
}

/// What a loader read from a dataset folder.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The dataset format.
    pub dataset: Dataset,
    /// The folder given.
    pub root: PathBuf,
    /// The annotation file read.
    pub annotation_file: PathBuf,
    /// The folder the frame paths start from.
    pub frames_root: PathBuf,
    /// Clips (clip datasets).
    pub samples: Vec<Sample>,
    /// Annotated intervals (long-video datasets).
    pub intervals: Vec<IntervalAnnotation>,
    /// Problems found while reading, in file order.
    pub problems: Vec<Problem>,
    /// Rows read but deliberately not records (e.g. macro-expressions in a micro-expression set).
    pub excluded_rows: usize,
}

impl Loaded {
    /// Number of error problems.
    pub fn error_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    /// Fails, listing up to ten errors, if any problem is an error.
    pub fn require_clean(&self) -> Result<()> {
        let errors: Vec<String> = self
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.to_string())
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let shown = errors.len().min(10);
        bail!(
            "{} has {} error(s) (run `aullm data check {} --format {}`):\n  {}{}",
            self.annotation_file.display(),
            errors.len(),
            self.root.display(),
            self.dataset,
            errors[..shown].join("\n  "),
            if errors.len() > shown { "\n  ..." } else { "" }
        )
    }
}

/// Reads a dataset folder in its published layout (see each loader's module doc).
pub fn load(root: &Path, dataset: Dataset, opts: &LoadOptions) -> Result<Loaded> {
    match dataset {
        Dataset::Casme2 => casme2::load(root, opts),
        Dataset::Samm => samm::load(root, opts),
        Dataset::FourDme => fourdme::load(root, opts),
        Dataset::Casme3A => casme3a::load(root, opts),
        Dataset::SammLv => sammlv::load(root, opts),
        Dataset::Casme2Lv => casme2lv::load(root, opts),
    }
}

/// Picks the folder frame paths start from: `explicit`, else the first of `candidates` (relative to
/// `root`) that contains `probe` (a relative path expected inside it), else the first that exists,
/// else `root`.
fn frames_root(root: &Path, explicit: Option<&Path>, candidates: &[&str], probe: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return if p.is_relative() {
            root.join(p)
        } else {
            p.to_path_buf()
        };
    }
    let dirs: Vec<PathBuf> = candidates.iter().map(|c| root.join(c)).collect();
    dirs.iter()
        .find(|d| d.join(probe).exists())
        .or_else(|| dirs.iter().find(|d| d.is_dir()))
        .cloned()
        .unwrap_or_else(|| root.to_path_buf())
}
