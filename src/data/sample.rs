//! The in-memory types every loader produces: [`Sample`] (a short clip around one expression) and
//! [`IntervalAnnotation`] (one expression inside a long video, for spotting).

use super::au::AuLabel;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A dataset whose published layout aullm reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// CASME II (clips, 200 fps).
    Casme2,
    /// SAMM micro-expressions (clips, 200 fps).
    Samm,
    /// 4DME micro-expressions (clips).
    FourDme,
    /// CAS(ME)^3 part A micro-expressions (clips).
    Casme3A,
    /// SAMM Long Videos (spotting).
    SammLv,
    /// CAS(ME)^2 long videos (spotting).
    Casme2Lv,
}

impl Dataset {
    /// Every dataset, in CLI order.
    pub const ALL: [Dataset; 6] = [
        Dataset::Casme2,
        Dataset::Samm,
        Dataset::FourDme,
        Dataset::Casme3A,
        Dataset::SammLv,
        Dataset::Casme2Lv,
    ];

    /// The name used on the command line and in prediction files.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Casme2 => "casme2",
            Dataset::Samm => "samm",
            Dataset::FourDme => "fourdme",
            Dataset::Casme3A => "casme3a",
            Dataset::SammLv => "sammlv",
            Dataset::Casme2Lv => "casme2lv",
        }
    }

    /// The letter the papers use in cross-dataset protocols ("C→S").
    pub fn letter(self) -> &'static str {
        match self {
            Dataset::Casme2 => "C",
            Dataset::Samm => "S",
            Dataset::FourDme => "D",
            Dataset::Casme3A => "C3",
            Dataset::SammLv => "SLV",
            Dataset::Casme2Lv => "C2LV",
        }
    }

    /// Whether the dataset annotates long videos (spotting) rather than clips.
    pub fn is_long_video(self) -> bool {
        matches!(self, Dataset::SammLv | Dataset::Casme2Lv)
    }

    /// The AUs the AULLM++ paper evaluates on this dataset (Tables I–III), if it does.
    pub fn paper_aus(self) -> Option<&'static [crate::au::Au]> {
        match self {
            Dataset::Casme2 => Some(&[1, 2, 4, 7, 12, 14, 15, 17]),
            Dataset::Samm => Some(&[2, 4, 7, 12]),
            Dataset::FourDme => Some(&[1, 2, 4, 6, 7, 12, 17, 45]),
            _ => None,
        }
    }

    /// The canonical subject id for a subject as a sheet or a prediction file writes it, so that
    /// `1`, `01`, `sub1` and `sub01` are one CASME II subject and `6`, `006` one SAMM subject.
    pub fn canonical_subject(self, raw: &str) -> String {
        let raw = raw.trim();
        let digits_after = |prefix: &str| -> Option<u32> {
            let lower = raw.to_ascii_lowercase();
            let rest = lower.strip_prefix(prefix)?;
            (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
                .then(|| rest.parse().ok())
                .flatten()
        };
        match self {
            Dataset::Casme2 => match digits_after("sub").or_else(|| digits_after("")) {
                Some(n) => format!("sub{n:02}"),
                None => raw.to_string(),
            },
            Dataset::Samm | Dataset::SammLv => match digits_after("") {
                Some(n) => format!("{n:03}"),
                None => raw.to_string(),
            },
            Dataset::Casme2Lv => match digits_after("s").or_else(|| digits_after("")) {
                Some(n) => format!("s{n:02}"),
                None => raw.to_string(),
            },
            Dataset::FourDme | Dataset::Casme3A => raw.to_string(),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = Dataset::ALL.iter().map(|d| d.name()).collect();
                format!("{s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// A subject's identity: the same number in two datasets is two people.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct SubjectKey {
    /// The dataset.
    pub dataset: Dataset,
    /// The canonical subject id within it (see [`Dataset::canonical_subject`]).
    pub subject: String,
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dataset, self.subject)
    }
}

/// Where a record came from: file and 1-based spreadsheet row (as Excel numbers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowRef {
    /// The annotation file.
    pub file: PathBuf,
    /// 1-based row; for CSV files the header is row 1.
    pub row: usize,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row {}", self.file.display(), self.row)
    }
}

/// How a clip's or video's frame files are named: `DIR/PREFIX<n zero-padded to PAD>.EXT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameSet {
    /// Folder holding the frames.
    pub dir: PathBuf,
    /// File name before the frame number ("img", "reg_img", "006_").
    pub prefix: String,
    /// Zero-padding width of the number (0 = none).
    pub pad: usize,
    /// Extension without the dot.
    pub ext: String,
}

impl FrameSet {
    /// A frame set with a known naming.
    pub fn new(dir: impl Into<PathBuf>, prefix: &str, pad: usize, ext: &str) -> Self {
        Self {
            dir: dir.into(),
            prefix: prefix.to_string(),
            pad,
            ext: ext.to_string(),
        }
    }

    /// The path of frame `n` (whether or not it exists).
    pub fn path(&self, n: u32) -> PathBuf {
        self.dir.join(format!(
            "{}{:0pad$}.{}",
            self.prefix,
            n,
            self.ext,
            pad = self.pad
        ))
    }

    /// Learns the naming from the image files in `dir` (for datasets whose naming varies between
    /// releases); `fallback` when the folder has none. Names are `<prefix><digits>.<ext>`.
    pub fn infer(dir: &Path, fallback: FrameSet) -> FrameSet {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return fallback;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_image_name(n))
            .collect();
        names.sort();
        for name in names {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
            let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                continue;
            }
            let (prefix, num) = stem.split_at(stem.len() - digits);
            let pad = if num.len() > 1 && num.starts_with('0') {
                num.len()
            } else {
                0
            };
            return FrameSet::new(dir, prefix, pad, ext);
        }
        fallback
    }

    /// Frame numbers present in the folder under this naming (sorted).
    pub fn present(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let suffix = format!(".{}", self.ext);
        let mut v: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                let num = n.strip_prefix(&self.prefix)?.strip_suffix(&suffix)?;
                (!num.is_empty() && num.chars().all(|c| c.is_ascii_digit()))
                    .then(|| num.parse().ok())
                    .flatten()
            })
            .collect();
        v.sort_unstable();
        v
    }
}

/// Image extensions the datasets ship.
fn is_image_name(n: &str) -> bool {
    let lower = n.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".bmp"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// One annotated micro-expression clip.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The dataset.
    pub dataset: Dataset,
    /// Canonical subject id ("sub01", "006", ...).
    pub subject: String,
    /// Clip id, unique within the subject ("EP02_01f", "006_1_2").
    pub clip: String,
    /// First frame of the expression (the dataset's own numbering).
    pub onset: u32,
    /// Apex frame; `None` where the annotation says it is unknown ("/", "-", "-1").
    pub apex: Option<u32>,
    /// Last frame of the expression (inclusive).
    pub offset: u32,
    /// Coded AUs, sorted, duplicates removed.
    pub aus: Vec<AuLabel>,
    /// Estimated emotion as written in the sheet.
    pub emotion: Option<String>,
    /// Where the frames are.
    pub frames: FrameSet,
    /// Where the annotation is.
    pub source: RowRef,
}

impl Sample {
    /// The subject's identity across datasets.
    pub fn subject_key(&self) -> SubjectKey {
        SubjectKey {
            dataset: self.dataset,
            subject: self.subject.clone(),
        }
    }

    /// Whether AU `code` is coded (on any side, at any intensity).
    pub fn has_au(&self, code: crate::au::Au) -> bool {
        self.aus.iter().any(|a| a.code == code)
    }

    /// The apex, or the middle frame where it is unknown (the usual fallback in the literature).
    pub fn apex_or_middle(&self) -> u32 {
        self.apex
            .unwrap_or(self.onset + (self.offset.saturating_sub(self.onset)) / 2)
    }

    /// Paths of frames onset..=offset.
    pub fn frame_paths(&self) -> Vec<PathBuf> {
        (self.onset..=self.offset)
            .map(|n| self.frames.path(n))
            .collect()
    }
}

/// Micro- or macro-expression (long-video annotations carry both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpressionKind {
    /// Micro-expression.
    Micro,
    /// Macro-expression.
    Macro,
}

impl FromStr for ExpressionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        if l.starts_with("micro") || l == "me" {
            Ok(Self::Micro)
        } else if l.starts_with("macro") || l == "mae" {
            Ok(Self::Macro)
        } else {
            Err(format!("{s:?}: expected micro or macro"))
        }
    }
}

impl fmt::Display for ExpressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpressionKind::Micro => "micro",
            ExpressionKind::Macro => "macro",
        })
    }
}

/// One expression annotated inside a long video (SAMM-LV, CAS(ME)^2).
#[derive(Debug, Clone, Serialize)]
pub struct IntervalAnnotation {
    /// The dataset.
    pub dataset: Dataset,
    /// Canonical subject id.
    pub subject: String,
    /// Video id, the key spotting predictions use ("006_1", "15_0101").
    pub video: String,
    /// The expression's own id where the sheet has one ("006_1_2", "anger1_1").
    pub expression: String,
    /// Onset frame.
    pub onset: u32,
    /// Apex frame, when known.
    pub apex: Option<u32>,
    /// Offset frame (inclusive); `None` where the annotation says unknown (CAS(ME)^2 writes 0).
    pub offset: Option<u32>,
    /// Micro or macro.
    pub kind: ExpressionKind,
    /// Coded AUs.
    pub aus: Vec<AuLabel>,
    /// Estimated emotion, when the sheet has one.
    pub emotion: Option<String>,
    /// The video's frames.
    pub frames: FrameSet,
    /// Where the annotation is.
    pub source: RowRef,
}

impl IntervalAnnotation {
    /// The subject's identity across datasets.
    pub fn subject_key(&self) -> SubjectKey {
        SubjectKey {
            dataset: self.dataset,
            subject: self.subject.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_canonicalise() {
        assert_eq!(Dataset::Casme2.canonical_subject("1"), "sub01");
        assert_eq!(Dataset::Casme2.canonical_subject("sub1"), "sub01");
        assert_eq!(Dataset::Casme2.canonical_subject("Sub17"), "sub17");
        assert_eq!(Dataset::Samm.canonical_subject("6"), "006");
        assert_eq!(Dataset::Samm.canonical_subject("006"), "006");
        assert_eq!(Dataset::Casme2Lv.canonical_subject("15"), "s15");
        assert_eq!(Dataset::Casme2Lv.canonical_subject("S15"), "s15");
        assert_eq!(Dataset::FourDme.canonical_subject("S01"), "S01");
    }

    #[test]
    fn frame_paths_follow_the_naming() {
        let f = FrameSet::new("/d", "006_", 5, "jpg");
        assert_eq!(f.path(5562), PathBuf::from("/d/006_05562.jpg"));
        let f = FrameSet::new("/d", "reg_img", 0, "jpg");
        assert_eq!(f.path(46), PathBuf::from("/d/reg_img46.jpg"));
    }
}
