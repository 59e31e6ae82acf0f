//! Prediction files `aullm score` reads.
//!
//! **AU predictions** (CSV, header required), one row per clip:
//!
//! ```text
//! dataset,subject,clip,AU1_p,AU2_p,AU4_p,...      probabilities in [0, 1]
//! dataset,subject,clip,fold,AU1_c,AU2_c,...       or decisions 0/1 (both may be given per AU)
//! ```
//!
//! `dataset` is a format name (casme2, samm, ...); `subject` is matched after the same
//! canonicalisation the loaders apply (`1`, `01`, `sub01` are one CASME II subject); the optional
//! `fold` column names the fold that produced the row (default: the subject, i.e. LOSO).
//!
//! **Spotting predictions**, one interval per row/line, frames inclusive:
//!
//! ```text
//! video,onset,offset[,type][,score]               CSV with header (type: micro|macro)
//! {"video": "006_1", "onset": 1201, "offset": 1260, "type": "micro"}   JSON Lines (.jsonl/.json)
//! ```

use crate::data::{Dataset, ExpressionKind};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One clip's predictions.
#[derive(Debug, Clone)]
pub struct AuPredRow {
    /// CSV line (header = 1).
    pub line: usize,
    /// Dataset.
    pub dataset: Dataset,
    /// Canonical subject id.
    pub subject: String,
    /// Clip id.
    pub clip: String,
    /// Fold name, when given.
    pub fold: Option<String>,
    /// Probability per AU code (AUs with a `_p` column).
    pub prob: BTreeMap<u16, f64>,
    /// Decision per AU code (AUs with a `_c` column).
    pub decision: BTreeMap<u16, bool>,
}

/// A per-clip AU prediction file.
#[derive(Debug, Clone)]
pub struct AuPredictions {
    /// AU codes with a column, ascending.
    pub aus: Vec<crate::au::Au>,
    /// Rows in file order.
    pub rows: Vec<AuPredRow>,
}

/// Which AU and kind a column is.
enum Col {
    Dataset,
    Subject,
    Clip,
    Fold,
    Prob(u16),
    Decision(u16),
}

/// Reads a per-clip AU prediction CSV.
pub fn read_au_predictions(path: &Path) -> Result<AuPredictions> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let headers = rdr
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    let mut cols = Vec::new();
    for h in headers.iter() {
        let name = h.trim().trim_start_matches('\u{feff}');
        let col = match name.to_ascii_lowercase().as_str() {
            "dataset" => Col::Dataset,
            "subject" => Col::Subject,
            "clip" => Col::Clip,
            "fold" => Col::Fold,
            l => {
                let parsed = l.strip_prefix("au").and_then(|rest| {
                    let (num, kind) = rest.split_once('_')?;
                    let code: crate::au::Au = num.parse().ok()?;
                    match kind {
                        "p" => Some(Col::Prob(code)),
                        "c" => Some(Col::Decision(code)),
                        _ => None,
                    }
                });
                match parsed {
                    Some(c) => c,
                    None => bail!(
                        "{}: unknown column {name:?} (expected dataset, subject, clip, fold, AU<n>_p, AU<n>_c)",
                        path.display()
                    ),
                }
            }
        };
        cols.push(col);
    }
    let has = |want: fn(&Col) -> bool| cols.iter().any(want);
    for (want, present) in [
        ("dataset", has(|c| matches!(c, Col::Dataset))),
        ("subject", has(|c| matches!(c, Col::Subject))),
        ("clip", has(|c| matches!(c, Col::Clip))),
    ] {
        if !present {
            bail!("{}: no {want:?} column", path.display());
        }
    }
    let mut aus: Vec<crate::au::Au> = cols
        .iter()
        .filter_map(|c| match c {
            Col::Prob(a) | Col::Decision(a) => Some(*a),
            _ => None,
        })
        .collect();
    aus.sort_unstable();
    aus.dedup();
    if aus.is_empty() {
        bail!("{}: no AU<n>_p or AU<n>_c column", path.display());
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let at = || format!("{} line {line}", path.display());
        let mut dataset = None;
        let (mut subject, mut clip, mut fold) = (String::new(), String::new(), None);
        let mut prob = BTreeMap::new();
        let mut decision = BTreeMap::new();
        for (col, value) in cols.iter().zip(rec.iter()) {
            let v = value.trim();
            match col {
                Col::Dataset => {
                    dataset = Some(
                        v.parse::<Dataset>()
                            .map_err(anyhow::Error::msg)
                            .with_context(at)?,
                    )
                }
                Col::Subject => subject = v.to_string(),
                Col::Clip => clip = v.to_string(),
                Col::Fold => fold = (!v.is_empty()).then(|| v.to_string()),
                Col::Prob(a) => {
                    let p: f64 = v
                        .parse()
                        .ok()
                        .filter(|p: &f64| p.is_finite() && (0.0..=1.0).contains(p))
                        .with_context(|| {
                            format!("{}: AU{a}_p {v:?} is not a probability in [0, 1]", at())
                        })?;
                    prob.insert(*a, p);
                }
                Col::Decision(a) => {
                    let d = match v {
                        "0" => false,
                        "1" => true,
                        _ => bail!("{}: AU{a}_c {v:?} is not 0 or 1", at()),
                    };
                    decision.insert(*a, d);
                }
            }
        }
        let Some(dataset) = dataset else {
            bail!("{}: dataset is empty", at());
        };
        if subject.is_empty() || clip.is_empty() {
            bail!("{}: subject and clip must not be empty", at());
        }
        if rec.len() != cols.len() {
            bail!(
                "{}: {} fields, the header has {}",
                at(),
                rec.len(),
                cols.len()
            );
        }
        rows.push(AuPredRow {
            line,
            dataset,
            subject: dataset.canonical_subject(&subject),
            clip,
            fold,
            prob,
            decision,
        });
    }
    Ok(AuPredictions { aus, rows })
}

/// One predicted interval.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotPrediction {
    /// Video id (as the loader names it: "006_1", "15_0101").
    pub video: String,
    /// First frame.
    pub onset: u32,
    /// Last frame (inclusive).
    pub offset: u32,
    /// Micro or macro, when the spotter says.
    #[serde(default)]
    pub r#type: Option<String>,
    /// Spotting score (ignored by the metric).
    #[serde(default)]
    pub score: Option<f64>,
    /// Apex frame (ignored by the metric).
    #[serde(default)]
    pub apex: Option<u32>,
}

/// A predicted interval with its parsed kind and where it was read.
#[derive(Debug, Clone)]
pub struct SpotRow {
    /// The prediction.
    pub pred: SpotPrediction,
    /// Parsed `type`.
    pub kind: Option<ExpressionKind>,
    /// Line in the file.
    pub line: usize,
}

/// Reads spotting predictions: JSON Lines for .jsonl/.json, else CSV with a header.
pub fn read_spot_predictions(path: &Path) -> Result<Vec<SpotRow>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Vec::new();
    if ext == "jsonl" || ext == "json" {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let pred: SpotPrediction = serde_json::from_str(l)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?;
            out.push((pred, i + 1));
        }
    } else {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let headers = rdr
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .clone();
        for rec in rdr.records() {
            let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
            let line = rec.position().map_or(0, |p| p.line() as usize);
            let pred: SpotPrediction = rec.deserialize(Some(&headers)).with_context(|| {
                format!(
                    "{} line {line} (columns: video,onset,offset[,type][,score][,apex])",
                    path.display()
                )
            })?;
            out.push((pred, line));
        }
    }
    out.into_iter()
        .map(|(pred, line)| {
            if pred.onset > pred.offset {
                bail!(
                    "{} line {line}: onset {} is after offset {}",
                    path.display(),
                    pred.onset,
                    pred.offset
                );
            }
            let kind = match pred.r#type.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => Some(
                    t.parse::<ExpressionKind>()
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("{} line {line}", path.display()))?,
                ),
                None => None,
            };
            Ok(SpotRow { pred, kind, line })
        })
        .collect()
}
