//! `aullm run --truth ROOT`: a run's events next to a SAMM-LV-layout annotation sheet (SynthME long
//! videos or SAMM Long Videos), with the MEGC spotting score and per-AU F1 over matched intervals.

use crate::data::{Dataset, ExpressionKind, FrameSet, LoadOptions};
use crate::eval::metrics::{Counts, mean_defined};
use crate::eval::spotting::Span;
use crate::events::AuEvent;
use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// An annotated interval: frames as the sheet numbers them (1-based) and its AUs.
#[derive(Debug, Clone)]
pub struct TruthInterval {
    /// Inclusive 1-based frames.
    pub span: Span,
    /// Micro or macro.
    pub kind: ExpressionKind,
    /// Coded AUs.
    pub aus: Vec<crate::au::Au>,
}

/// Every annotated interval of a long-video dataset, by video id (the sheet's), with the video's
/// frames; an interval without an offset is an error naming it.
pub fn truth_by_video(
    loaded: &crate::data::Loaded,
) -> Result<BTreeMap<String, (Vec<TruthInterval>, FrameSet)>> {
    let mut out: BTreeMap<String, (Vec<TruthInterval>, FrameSet)> = BTreeMap::new();
    for iv in &loaded.intervals {
        let offset = iv.offset.with_context(|| {
            format!(
                "{}: interval {} has no offset",
                loaded.root.display(),
                iv.expression
            )
        })?;
        out.entry(iv.video.clone())
            .or_insert_with(|| (Vec::new(), iv.frames.clone()))
            .0
            .push(TruthInterval {
                span: Span {
                    onset: iv.onset,
                    offset,
                },
                kind: iv.kind,
                aus: iv.aus.iter().map(|a| a.code).collect(),
            });
    }
    Ok(out)
}

/// The annotated intervals of `video` (the sheet's video id, e.g. `001_1`) under `root`.
pub fn load_truth(root: &Path, video: &str) -> Result<Vec<TruthInterval>> {
    let loaded = crate::data::load(root, Dataset::SammLv, &LoadOptions::default())
        .with_context(|| format!("--truth {}: not a SAMM-LV-layout folder", root.display()))?;
    loaded.require_clean()?;
    let out: Vec<TruthInterval> = loaded
        .intervals
        .iter()
        .filter(|i| i.video == video)
        .filter_map(|i| {
            Some(TruthInterval {
                span: Span {
                    onset: i.onset,
                    offset: i.offset?,
                },
                kind: i.kind,
                aus: i.aus.iter().map(|a| a.code).collect(),
            })
        })
        .collect();
    ensure!(
        !out.is_empty(),
        "--truth {}: {} has no annotated interval for video {video:?}",
        root.display(),
        loaded.annotation_file.display()
    );
    Ok(out)
}

/// The 1-based inclusive frames of an event (events carry 0-based frames; sheets are 1-based).
fn event_span(e: &AuEvent) -> Span {
    Span {
        onset: e.onset.frame as u32 + 1,
        offset: e.offset.frame as u32 + 1,
    }
}

/// MEGC counts of one expression kind, as `aullm spot-eval` scores it: the truth of that kind
/// against the events the spotter gave that kind, matched on their own.
pub fn kind_counts(
    events: &[AuEvent],
    truth: &[TruthInterval],
    kind: ExpressionKind,
) -> crate::eval::spotting::SpotCounts {
    use crate::events::ExpressionKind as Called;
    let called = |e: &AuEvent| match e.kind {
        Called::Micro => ExpressionKind::Micro,
        Called::Macro => ExpressionKind::Macro,
    };
    let t: Vec<Span> = truth
        .iter()
        .filter(|t| t.kind == kind)
        .map(|t| t.span)
        .collect();
    let p: Vec<Span> = events
        .iter()
        .filter(|e| called(e) == kind)
        .map(event_span)
        .collect();
    crate::eval::spotting::SpotCounts::between(&t, &p)
}

/// One-to-one MEGC matching (IoU >= 0.5; each truth interval takes the unused event of highest
/// IoU, in truth order): (truth index, event index) pairs.
pub fn match_events(events: &[AuEvent], truth: &[TruthInterval]) -> Vec<(usize, usize)> {
    let spans: Vec<Span> = events.iter().map(event_span).collect();
    let mut used = vec![false; events.len()];
    let mut matched = Vec::new();
    for (ti, t) in truth.iter().enumerate() {
        let best = spans
            .iter()
            .enumerate()
            .filter(|(i, sp)| !used[*i] && t.span.matches(sp))
            .max_by(|a, b| t.span.iou(a.1).total_cmp(&t.span.iou(b.1)))
            .map(|(i, _)| i);
        if let Some(i) = best {
            used[i] = true;
            matched.push((ti, i));
        }
    }
    matched
}

/// A table of events beside the truth, the spotting score and per-AU F1 on matched intervals.
pub fn compare(events: &[AuEvent], truth: &[TruthInterval]) -> String {
    let spans: Vec<Span> = events.iter().map(event_span).collect();
    let matched = match_events(events, truth);
    let mut used = vec![false; events.len()];
    for &(_, ei) in &matched {
        used[ei] = true;
    }
    let mut s =
        String::from("truth (frames, kind, AUs)          | event (frames, kind, AUs present)\n");
    for (ti, t) in truth.iter().enumerate() {
        let best = matched.iter().find(|m| m.0 == ti).map(|m| m.1);
        let left = format!(
            "{:>6}-{:<6} {:<5} {:<14}",
            t.span.onset,
            t.span.offset,
            t.kind.to_string(),
            t.aus
                .iter()
                .map(|a| format!("AU{a}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        match best {
            Some(i) => {
                let _ = writeln!(s, "{left} | {}", describe(&events[i], &spans[i]));
            }
            None => {
                let _ = writeln!(s, "{left} | (missed)");
            }
        }
    }
    for (i, e) in events.iter().enumerate() {
        if !used[i] {
            let _ = writeln!(
                s,
                "{:<34} | {} (false positive)",
                "-",
                describe(e, &spans[i])
            );
        }
    }
    let tp = matched.len() as u64;
    let c = crate::eval::spotting::SpotCounts {
        tp,
        fp: events.len() as u64 - tp,
        fn_: truth.len() as u64 - tp,
    };
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    let _ = writeln!(
        s,
        "spotting (MEGC, IoU >= 0.5): TP {} FP {} FN {}, precision {}, recall {}, F1 {}",
        c.tp,
        c.fp,
        c.fn_,
        f(c.precision()),
        f(c.recall()),
        f(c.f1())
    );
    if let Some(first) = events.first() {
        let mut per = Vec::new();
        for (j, d) in first.aus.iter().enumerate() {
            let code: crate::au::Au = d.au.trim_start_matches("AU").parse().unwrap_or(0);
            let mut k = Counts::default();
            for &(ti, ei) in &matched {
                k.add(truth[ti].aus.contains(&code), events[ei].aus[j].present);
            }
            per.push((d.au.clone(), k.f1()));
        }
        let _ = writeln!(
            s,
            "AU F1 over the {} matched intervals (model thresholds): {} | macro {}",
            matched.len(),
            per.iter()
                .map(|(a, v)| format!("{a} {}", f(*v)))
                .collect::<Vec<_>>()
                .join(", "),
            f(mean_defined(per.iter().map(|p| p.1)))
        );
    }
    s
}

/// One event as a table cell.
fn describe(e: &AuEvent, sp: &Span) -> String {
    let present: Vec<&str> = e
        .aus
        .iter()
        .filter(|a| a.present)
        .map(|a| a.au.as_str())
        .collect();
    format!(
        "{:>6}-{:<6} {:<5} {}",
        sp.onset,
        sp.offset,
        format!("{:?}", e.kind).to_lowercase(),
        if present.is_empty() {
            "-".into()
        } else {
            present.join(",")
        }
    )
}
