//! `aullm score`: predictions against a dataset's annotations (read by the same loaders), as
//! AU detection F1 (clip datasets) or MEGC spotting F1 (long-video datasets).

use super::metrics::{AuColumn, AuReport, au_report};
use super::predictions::{read_au_predictions, read_spot_predictions};
use super::spotting::{Span, SpotReport, spotting_report};
use crate::data::{self, Dataset, ExpressionKind, LoadOptions};
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Label printed wherever the papers' variant appears.
pub const PAPER_LABEL: &str = "optimistic, paper-compatible: threshold swept on the pooled test \
predictions, mean of positive- and negative-class F1";

/// What to do with ground-truth intervals whose offset is unknown (CAS(ME)^2 writes 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownOffset {
    /// Refuse to score (default: no silent choice).
    #[default]
    Error,
    /// End the interval at its apex (what public CAS(ME)^2 spotting code does).
    Apex,
    /// Leave such intervals out of the truth.
    Drop,
}

impl FromStr for UnknownOffset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(Self::Error),
            "apex" => Ok(Self::Apex),
            "drop" => Ok(Self::Drop),
            _ => Err(format!("{s:?}: expected error, apex or drop")),
        }
    }
}

/// Everything `aullm score` needs.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Prediction file.
    pub pred: PathBuf,
    /// Dataset folder with the annotations.
    pub gt: PathBuf,
    /// Its format.
    pub format: Dataset,
    /// Loader options.
    pub load: LoadOptions,
    /// Decision threshold for `_p` columns without a `_c` column or a per-AU threshold.
    pub threshold: f64,
    /// Per-AU thresholds (CSV `au,threshold`), chosen without the test data.
    pub thresholds: Option<PathBuf>,
    /// Only these AUs (default: every AU column in the predictions).
    pub aus: Option<Vec<crate::au::Au>>,
    /// Also compute the papers' optimistic variant.
    pub paper: bool,
    /// Score the clips that have predictions even if some annotated clips have none.
    pub allow_missing: bool,
    /// Spotting: ground-truth intervals with unknown offset.
    pub unknown_offset: UnknownOffset,
    /// Spotting: only micro or only macro expressions.
    pub kind: Option<ExpressionKind>,
}

/// AU detection scores.
#[derive(Debug, Clone, Serialize)]
pub struct AuScore {
    /// Dataset format.
    pub dataset: Dataset,
    /// Prediction file.
    pub predictions: PathBuf,
    /// Annotation file.
    pub annotations: PathBuf,
    /// "fold column" or "subject (leave-one-subject-out)".
    pub folds_from: String,
    /// Per AU: "decisions (AU<n>_c)" or "p >= <threshold>".
    pub decisions: BTreeMap<u16, String>,
    /// Annotated clips without a prediction (only with `allow_missing`).
    pub clips_without_prediction: usize,
    /// The metrics.
    pub report: AuReport,
    /// Set when the paper variant is included: how it must be read.
    pub paper_label: Option<&'static str>,
}

/// Spotting scores.
#[derive(Debug, Clone, Serialize)]
pub struct SpotScore {
    /// Dataset format.
    pub dataset: Dataset,
    /// Prediction file.
    pub predictions: PathBuf,
    /// Annotation file.
    pub annotations: PathBuf,
    /// Which expressions were scored ("all", "micro", "macro").
    pub expressions: String,
    /// All intervals.
    pub overall: SpotReport,
    /// Per expression kind, when every prediction has a type.
    pub per_kind: BTreeMap<String, SpotReport>,
    /// Ground-truth intervals with unknown offset, and what was done with them.
    pub unknown_offsets: usize,
    /// The rule applied to them.
    pub unknown_offset_rule: UnknownOffset,
}

/// Either kind of result.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum ScoreReport {
    /// AU detection.
    Au(AuScore),
    /// Spotting.
    Spotting(SpotScore),
}

impl ScoreReport {
    /// The human-readable tables.
    pub fn render(&self) -> String {
        match self {
            ScoreReport::Au(a) => render_au(a),
            ScoreReport::Spotting(s) => render_spot(s),
        }
    }
}

/// Scores predictions against annotations.
pub fn run(opts: &ScoreOptions) -> Result<ScoreReport> {
    let loaded = data::load(&opts.gt, opts.format, &opts.load)?;
    loaded.require_clean()?;
    if opts.format.is_long_video() {
        score_spotting(opts, &loaded).map(ScoreReport::Spotting)
    } else {
        score_aus(opts, &loaded).map(ScoreReport::Au)
    }
}

fn score_aus(opts: &ScoreOptions, loaded: &data::Loaded) -> Result<AuScore> {
    let preds = read_au_predictions(&opts.pred)?;
    let pfile = opts.pred.display();
    let aus: Vec<crate::au::Au> = match &opts.aus {
        Some(want) => {
            for a in want {
                ensure!(
                    preds.aus.contains(a),
                    "{pfile}: --aus names AU{a} but the file has no AU{a}_p or AU{a}_c column"
                );
            }
            want.clone()
        }
        None => preds.aus.clone(),
    };
    let thresholds = match &opts.thresholds {
        Some(p) => read_thresholds(p)?,
        None => BTreeMap::new(),
    };
    ensure!(
        (0.0..=1.0).contains(&opts.threshold),
        "--threshold {} is not in [0, 1]",
        opts.threshold
    );
    let index: HashMap<(&str, &str), usize> = loaded
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.subject.as_str(), s.clip.as_str()), i))
        .collect();
    let mut rows_of_sample: Vec<Option<usize>> = vec![None; loaded.samples.len()];
    for (r, row) in preds.rows.iter().enumerate() {
        ensure!(
            row.dataset == opts.format,
            "{pfile} line {}: dataset {} but the annotations are {}",
            row.line,
            row.dataset,
            opts.format
        );
        let Some(&i) = index.get(&(row.subject.as_str(), row.clip.as_str())) else {
            bail!(
                "{pfile} line {}: {}/{} is not an annotated clip of {}",
                row.line,
                row.subject,
                row.clip,
                loaded.annotation_file.display()
            );
        };
        if let Some(prev) = rows_of_sample[i] {
            bail!(
                "{pfile} line {}: {}/{} already predicted on line {}",
                row.line,
                row.subject,
                row.clip,
                preds.rows[prev].line
            );
        }
        rows_of_sample[i] = Some(r);
    }
    let missing: Vec<String> = rows_of_sample
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_none())
        .map(|(i, _)| {
            let s = &loaded.samples[i];
            format!("{}/{}", s.subject, s.clip)
        })
        .collect();
    if !missing.is_empty() && !opts.allow_missing {
        bail!(
            "{pfile}: {} annotated clip(s) have no prediction (first: {}); pass --allow-missing to score the rest",
            missing.len(),
            missing[..missing.len().min(5)].join(", ")
        );
    }
    let scored: Vec<(usize, usize)> = rows_of_sample
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect();
    ensure!(!scored.is_empty(), "{pfile}: no predictions to score");
    let has_fold = preds.rows.iter().any(|r| r.fold.is_some());
    if has_fold && let Some(r) = preds.rows.iter().find(|r| r.fold.is_none()) {
        bail!("{pfile} line {}: fold is empty", r.line);
    }
    // Fold names: the fold column, or the subject (leave-one-subject-out).
    let fold_key = |r: usize| -> String {
        let row = &preds.rows[r];
        row.fold
            .clone()
            .unwrap_or_else(|| format!("{}/{}", row.dataset, row.subject))
    };
    let fold_names: Vec<String> = scored
        .iter()
        .map(|&(_, r)| fold_key(r))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fold_index: HashMap<&str, usize> = fold_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let fold: Vec<usize> = scored
        .iter()
        .map(|&(_, r)| fold_index[fold_key(r).as_str()])
        .collect();
    if has_fold {
        // Without a fold column folds are subjects, so the invariant holds by construction; with
        // one, no subject's clips may be predicted by two folds (a leak in the caller's split).
        let mut subject_fold: HashMap<&str, &str> = HashMap::new();
        for &(_, r) in &scored {
            let row = &preds.rows[r];
            let f = row.fold.as_deref().unwrap_or_default();
            if let Some(prev) = subject_fold.insert(&row.subject, f)
                && prev != f
            {
                bail!(
                    "{pfile} line {}: subject {} is tested in folds {prev:?} and {f:?}; subjects never cross a split",
                    row.line,
                    row.subject
                );
            }
        }
    }
    let mut decisions_desc = BTreeMap::new();
    let mut columns = Vec::new();
    for &a in &aus {
        let truth: Vec<bool> = scored
            .iter()
            .map(|&(i, _)| loaded.samples[i].has_au(a))
            .collect();
        let has_c = preds.rows.iter().all(|r| r.decision.contains_key(&a));
        let has_p = preds.rows.iter().all(|r| r.prob.contains_key(&a));
        let prob: Option<Vec<f64>> = has_p.then(|| {
            scored
                .iter()
                .map(|&(_, r)| preds.rows[r].prob[&a])
                .collect()
        });
        let decision: Vec<bool> = if has_c {
            decisions_desc.insert(a, format!("decisions (AU{a}_c)"));
            scored
                .iter()
                .map(|&(_, r)| preds.rows[r].decision[&a])
                .collect()
        } else if let Some(p) = &prob {
            let t = thresholds.get(&a).copied().unwrap_or(opts.threshold);
            decisions_desc.insert(a, format!("p >= {t}"));
            p.iter().map(|&x| x >= t).collect()
        } else {
            bail!("{pfile}: AU{a} has neither a complete AU{a}_p nor a complete AU{a}_c column");
        };
        columns.push(AuColumn {
            code: a,
            truth,
            decision,
            prob,
        });
    }
    let report = au_report(&columns, &fold, fold_names, opts.paper);
    Ok(AuScore {
        dataset: opts.format,
        predictions: opts.pred.clone(),
        annotations: loaded.annotation_file.clone(),
        folds_from: if has_fold {
            "fold column".into()
        } else {
            "subject (leave-one-subject-out)".into()
        },
        decisions: decisions_desc,
        clips_without_prediction: missing.len(),
        report,
        paper_label: opts.paper.then_some(PAPER_LABEL),
    })
}

/// Per-AU thresholds: CSV rows `AU<n>,<t>` or `<n>,<t>`; a header row `au,threshold` is allowed.
fn read_thresholds(path: &Path) -> Result<BTreeMap<u16, f64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let (au, t) = (rec.get(0).unwrap_or(""), rec.get(1).unwrap_or(""));
        if au.eq_ignore_ascii_case("au") {
            continue;
        }
        let code: crate::au::Au = au
            .trim_start_matches(['A', 'a'])
            .trim_start_matches(['U', 'u'])
            .parse()
            .with_context(|| format!("{} line {line}: {au:?} is not an AU", path.display()))?;
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| (0.0..=1.0).contains(t))
            .with_context(|| {
                format!(
                    "{} line {line}: {t:?} is not a threshold in [0, 1]",
                    path.display()
                )
            })?;
        out.insert(code, t);
    }
    Ok(out)
}

fn score_spotting(opts: &ScoreOptions, loaded: &data::Loaded) -> Result<SpotScore> {
    let preds = read_spot_predictions(&opts.pred)?;
    let all_typed = !preds.is_empty() && preds.iter().all(|p| p.kind.is_some());
    if opts.kind.is_some() && !all_typed {
        bail!(
            "{}: scoring only {} expressions needs a type on every prediction",
            opts.pred.display(),
            opts.kind.map(|k| k.to_string()).unwrap_or_default()
        );
    }
    let mut unknown = 0;
    let mut truth: Vec<(String, ExpressionKind, Span)> = Vec::new();
    for iv in &loaded.intervals {
        if opts.kind.is_some_and(|k| k != iv.kind) {
            continue;
        }
        let offset = match (iv.offset, opts.unknown_offset) {
            (Some(o), _) => o,
            (None, rule) => {
                unknown += 1;
                match (rule, iv.apex) {
                    (UnknownOffset::Apex, Some(a)) => a,
                    (UnknownOffset::Apex, None) => bail!(
                        "{}: {} has neither offset nor apex",
                        iv.source,
                        iv.expression
                    ),
                    (UnknownOffset::Drop, _) => continue,
                    (UnknownOffset::Error, _) => bail!(
                        "{}: {} has an unknown offset; choose --unknown-offset apex|drop",
                        iv.source,
                        iv.expression
                    ),
                }
            }
        };
        truth.push((
            iv.video.clone(),
            iv.kind,
            Span {
                onset: iv.onset,
                offset,
            },
        ));
    }
    let group = |kind: Option<ExpressionKind>| {
        let mut t: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for (v, k, s) in &truth {
            if kind.is_none_or(|want| want == *k) {
                t.entry(v.clone()).or_default().push(*s);
            }
        }
        let mut p: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for row in &preds {
            if kind.is_none_or(|want| row.kind == Some(want)) {
                p.entry(row.pred.video.clone()).or_default().push(Span {
                    onset: row.pred.onset,
                    offset: row.pred.offset,
                });
            }
        }
        spotting_report(&t, &p)
    };
    let overall = group(opts.kind);
    let mut per_kind = BTreeMap::new();
    if all_typed && opts.kind.is_none() {
        for k in [ExpressionKind::Micro, ExpressionKind::Macro] {
            per_kind.insert(k.to_string(), group(Some(k)));
        }
    }
    Ok(SpotScore {
        dataset: opts.format,
        predictions: opts.pred.clone(),
        annotations: loaded.annotation_file.clone(),
        expressions: opts.kind.map_or("all".to_string(), |k| k.to_string()),
        overall,
        per_kind,
        unknown_offsets: unknown,
        unknown_offset_rule: opts.unknown_offset,
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |x| format!("{x:.4}"))
}

fn render_au(a: &AuScore) -> String {
    let r = &a.report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "AU detection on {} ({}): {} clips, {} folds from the {}",
        a.dataset,
        a.annotations.display(),
        r.samples,
        r.folds.len(),
        a.folds_from
    );
    if a.clips_without_prediction > 0 {
        let _ = writeln!(
            s,
            "{} annotated clips have no prediction and are not scored",
            a.clips_without_prediction
        );
    }
    let _ = writeln!(
        s,
        "binary F1 of the positive class; undefined F1 (no positive in truth or prediction) is left out of means\n"
    );
    let _ = writeln!(
        s,
        "AU     pos   TP   FP   FN  pooled-F1  precision  recall  mean-over-folds-F1 (folds)  decision"
    );
    for au in &r.aus {
        let c = au.pooled;
        let _ = writeln!(
            s,
            "AU{:<4} {:>3} {:>4} {:>4} {:>4}  {:>9}  {:>9}  {:>6}  {:>18} ({:>3})  {}",
            au.code,
            c.positives(),
            c.tp,
            c.fp,
            c.fn_,
            fmt_opt(au.pooled_f1),
            fmt_opt(c.precision()),
            fmt_opt(c.recall()),
            fmt_opt(au.mean_over_folds_f1),
            au.folds_defined,
            a.decisions.get(&au.code).map_or("", String::as_str)
        );
    }
    let _ = writeln!(
        s,
        "macro (pooled over folds)        {}",
        fmt_opt(r.macro_pooled_f1)
    );
    let _ = writeln!(
        s,
        "macro (mean over folds)          {}",
        fmt_opt(r.macro_mean_over_folds_f1)
    );
    if let Some(label) = a.paper_label {
        let _ = writeln!(s, "\n[{label}]");
        let _ = writeln!(s, "AU     threshold  F1");
        for au in &r.aus {
            if let Some(p) = au.paper {
                let t = if au.paper_swept {
                    format!("{:.4}", p.threshold)
                } else {
                    "(given)".to_string()
                };
                let _ = writeln!(s, "AU{:<4} {:>9}  {:.4}", au.code, t, p.f1);
            }
        }
        let _ = writeln!(
            s,
            "macro (optimistic, paper-compatible) {}",
            fmt_opt(r.paper_macro_f1)
        );
    }
    s
}

fn render_spot(sc: &SpotScore) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "spotting on {} ({}), {} expressions: MEGC protocol (inclusive frames, IoU >= 0.5, one-to-one, counts pooled over {} videos)",
        sc.dataset,
        sc.annotations.display(),
        sc.expressions,
        sc.overall.videos
    );
    if sc.unknown_offsets > 0 {
        let _ = writeln!(
            s,
            "{} ground-truth interval(s) with unknown offset: {:?}",
            sc.unknown_offsets, sc.unknown_offset_rule
        );
    }
    let _ = writeln!(s, "\n         TP     FP     FN  precision  recall      F1");
    let mut line = |name: &str, r: &SpotReport| {
        let _ = writeln!(
            s,
            "{name:<6} {:>5}  {:>5}  {:>5}  {:>9}  {:>6}  {:>6}",
            r.counts.tp,
            r.counts.fp,
            r.counts.fn_,
            fmt_opt(r.precision),
            fmt_opt(r.recall),
            fmt_opt(r.f1)
        );
    };
    for (k, r) in &sc.per_kind {
        line(k, r);
    }
    line("all", &sc.overall);
    if !sc.overall.videos_without_truth.is_empty() {
        let _ = writeln!(
            s,
            "predictions on {} video(s) without annotated intervals count as FP: {}",
            sc.overall.videos_without_truth.len(),
            sc.overall.videos_without_truth.join(", ")
        );
    }
    s
}
