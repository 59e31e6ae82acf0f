//! Learning curves: the `aullm eval` reports of one protocol run at several training-set sizes
//! (`--max-clips N`) and for several recipes, gathered into one table and one chart
//! (`aullm curve DIR` → `DIR/curve.{md,html,json}`).
//!
//! Layout read: `DIR/<variant>/n<N>/report.json`, one folder per recipe, one per size.

use crate::eval::report::html_page;
use anyhow::{Context, Result, ensure};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One point: a recipe at one training-set size.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Recipe (the variant folder's name).
    pub variant: String,
    /// Clips each fold could learn from (`train.max_clips`; 0 = all).
    pub max_clips: usize,
    /// Mean over folds of the clips actually used (training + validation).
    pub clips: f64,
    /// Macro-F1 pooled over folds.
    pub macro_pooled: Option<f64>,
    /// Macro-F1 mean over folds.
    pub macro_mean_over_folds: Option<f64>,
    /// Folds finished / the protocol's folds (a partial point says so).
    pub folds: (usize, usize),
    /// Training wall seconds, all folds.
    pub seconds: f64,
    /// The report it came from.
    pub report: PathBuf,
}

/// Reads every `DIR/<variant>/n<N>/report.json` (sorted by variant, then size).
pub fn collect(dir: &Path) -> Result<Vec<CurvePoint>> {
    let mut points = Vec::new();
    let variants =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for v in variants {
        let v = v?.path();
        if !v.is_dir() {
            continue;
        }
        for p in std::fs::read_dir(&v).with_context(|| format!("cannot read {}", v.display()))? {
            let report = p?.path().join("report.json");
            if report.exists() {
                points.push(point(&report, &v)?);
            }
        }
    }
    ensure!(
        !points.is_empty(),
        "{}: no learning-curve points (expected VARIANT/nN/report.json from `aullm eval --max-clips N --out ...`)",
        dir.display()
    );
    points.sort_by(|a, b| (&a.variant, a.clips as u64).cmp(&(&b.variant, b.clips as u64)));
    Ok(points)
}

/// One report's point.
fn point(report: &Path, variant_dir: &Path) -> Result<CurvePoint> {
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("cannot read {}", report.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", report.display()))?;
    let o = &v["outcome"];
    let folds = o["folds"].as_array().with_context(|| {
        format!(
            "{}: no outcome.folds (not an eval report)",
            report.display()
        )
    })?;
    let used: Vec<f64> = folds
        .iter()
        .map(|f| {
            let c = &f["counts"];
            c[0].as_f64().unwrap_or(0.0) + c[1].as_f64().unwrap_or(0.0)
        })
        .collect();
    let seconds = folds
        .iter()
        .flat_map(|f| f["summary"]["history"].as_array().into_iter().flatten())
        .filter_map(|e| e["seconds"].as_f64())
        .sum::<f64>()
        .max(0.0); // an empty sum is -0.0
    Ok(CurvePoint {
        variant: variant_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        max_clips: v["config"]["train"]["max_clips"].as_u64().unwrap_or(0) as usize,
        clips: used.iter().sum::<f64>() / used.len().max(1) as f64,
        macro_pooled: o["report"]["macro_pooled_f1"].as_f64(),
        macro_mean_over_folds: o["report"]["macro_mean_over_folds_f1"].as_f64(),
        folds: (
            folds.len(),
            o["protocol_folds"].as_u64().unwrap_or(0) as usize,
        ),
        seconds,
        report: report.to_path_buf(),
    })
}

fn f3(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.3}"))
}

/// The Markdown table: one row per point.
pub fn render_markdown(points: &[CurvePoint], title: &str) -> String {
    let mut s = format!("# {title}\n\n");
    s.push_str(
        "Binary F1 of the positive class at thresholds chosen on each fold's inner validation subjects; macro = mean over AUs. Clips = what each fold learned from (training + validation), mean over folds.\n\n",
    );
    s.push_str("| recipe | max clips | clips | macro-F1 pooled | macro-F1 mean over folds | folds | training s |\n|---|---|---|---|---|---|---|\n");
    for p in points {
        let partial = if p.folds.0 < p.folds.1 {
            " (partial)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} | {}/{}{partial} | {:.0} |",
            p.variant,
            if p.max_clips == 0 {
                "all".to_string()
            } else {
                p.max_clips.to_string()
            },
            p.clips,
            f3(p.macro_pooled),
            f3(p.macro_mean_over_folds),
            p.folds.0,
            p.folds.1,
            p.seconds
        );
    }
    s
}

/// Pooled macro-F1 against clips (log scale), one line per recipe, as inline SVG.
pub fn chart(points: &[CurvePoint]) -> String {
    let (w, h, pad) = (760.0_f64, 320.0_f64, 40.0_f64);
    let xs: Vec<f64> = points.iter().map(|p| p.clips.max(1.0).ln()).collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let span = (hi - lo).max(1e-9);
    let px = |c: f64| pad + (w - 2.0 * pad) * (c.max(1.0).ln() - lo) / span;
    let py = |f: f64| h - pad - (h - 2.0 * pad) * f;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="macro-F1 against training clips">"#
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="4" y="{}" font-size="10">{f:.2}</text>"##,
            w - pad,
            py(f) + 3.0,
            y = py(f)
        );
    }
    let colours = [
        "#4a7fb5", "#d0743c", "#5a9e4b", "#a35fb0", "#c44e52", "#8c8c3c",
    ];
    let mut variants: Vec<&str> = points.iter().map(|p| p.variant.as_str()).collect();
    variants.dedup();
    for (vi, v) in variants.iter().enumerate() {
        let c = colours[vi % colours.len()];
        let pts: Vec<&CurvePoint> = points.iter().filter(|p| p.variant == *v).collect();
        let path: Vec<String> = pts
            .iter()
            .filter_map(|p| {
                p.macro_pooled
                    .map(|f| format!("{:.1},{:.1}", px(p.clips), py(f)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for p in &pts {
            if let Some(f) = p.macro_pooled {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}"><title>{v}: {:.0} clips, {f:.3}</title></circle><text x="{:.1}" y="{}" font-size="10">{:.0}</text>"#,
                    px(p.clips),
                    py(f),
                    p.clips,
                    px(p.clips) - 8.0,
                    h - pad + 14.0,
                    p.clips
                );
            }
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="12" fill="{c}">{}</text>"#,
            w - pad - 180.0,
            pad + 14.0 * vi as f64,
            v.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    s.push_str("</svg>");
    s
}

/// Writes `dir/curve.json`, `curve.md` and `curve.html`; returns the points.
pub fn write(dir: &Path, title: &str) -> Result<Vec<CurvePoint>> {
    let points = collect(dir)?;
    let md = render_markdown(&points, title);
    let html = html_page(
        title,
        &md,
        &format!(
            "<h2>Macro-F1 (pooled) against training clips</h2>{}",
            chart(&points)
        ),
    );
    for (name, text) in [
        ("curve.json", serde_json::to_string_pretty(&points)?),
        ("curve.md", md),
        ("curve.html", html),
    ] {
        let p = dir.join(name);
        let mut f = crate::atomic::AtomicFile::create(&p)?;
        use std::io::Write;
        f.write_all(text.as_bytes())?;
        f.commit()?;
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dir: &Path, max_clips: usize, counts: [usize; 3], f1: f64) {
        std::fs::create_dir_all(dir).unwrap();
        let v = serde_json::json!({
            "config": {"train": {"max_clips": max_clips}},
            "outcome": {
                "protocol_folds": 2,
                "folds": [
                    {"counts": counts, "summary": {"history": [{"seconds": 10.0}]}},
                    {"counts": counts, "summary": {"history": [{"seconds": 5.0}]}}
                ],
                "report": {"macro_pooled_f1": f1, "macro_mean_over_folds_f1": f1 - 0.01}
            }
        });
        std::fs::write(dir.join("report.json"), v.to_string()).unwrap();
    }

    #[test]
    fn points_are_read_per_recipe_and_size_and_drawn() {
        let d = tempfile::tempdir().unwrap();
        report(&d.path().join("flow/n250"), 250, [200, 50, 80], 0.71);
        report(&d.path().join("flow/n60"), 60, [48, 12, 80], 0.52);
        report(&d.path().join("gray/n60"), 60, [48, 12, 80], 0.30);
        let pts = write(d.path(), "curve").unwrap();
        assert_eq!(pts.len(), 3);
        assert_eq!((pts[0].variant.as_str(), pts[0].max_clips), ("flow", 60));
        assert_eq!(pts[1].clips, 250.0);
        assert_eq!(pts[1].seconds, 15.0);
        assert_eq!(pts[2].macro_pooled, Some(0.30));
        let md = std::fs::read_to_string(d.path().join("curve.md")).unwrap();
        assert!(
            md.contains("| flow | 250 | 250 | 0.710 | 0.700 | 2/2 | 15 |"),
            "{md}"
        );
        let html = std::fs::read_to_string(d.path().join("curve.html")).unwrap();
        assert_eq!(html.matches("<polyline").count(), 2);
        assert_eq!(html.matches("<circle").count(), 3);
        // A folder without reports is an error naming the layout.
        let empty = tempfile::tempdir().unwrap();
        assert!(
            collect(empty.path())
                .unwrap_err()
                .to_string()
                .contains("VARIANT/nN")
        );
    }
}
