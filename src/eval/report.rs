//! `aullm eval` reports: JSON (everything), Markdown (tables), and one self-contained HTML page with
//! per-AU tables and a per-fold chart (inline SVG, no scripts or external files).

use super::metrics::AuReport;
use crate::config::{Config, ThresholdRule};
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Formats an optional score.
fn f(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.3}"))
}

/// One fold's row in a report.
#[derive(Debug, Clone)]
pub struct FoldRow {
    /// Fold name.
    pub name: String,
    /// Clips trained on, validated on (thresholds), tested on.
    pub counts: [usize; 3],
    /// Epochs trained.
    pub epochs: usize,
}

/// What a protocol run did, as plain values (the protocol runner in train/ fills it in).
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The folds trained so far, in protocol order.
    pub folds: Vec<FoldRow>,
    /// How many folds the protocol has.
    pub protocol_folds: usize,
    /// Samples that could not be aligned.
    pub skipped: Vec<String>,
    /// Wall seconds of this invocation.
    pub seconds: f64,
    /// Seconds of every fold's epochs, summed over resumed runs.
    pub training_seconds: f64,
    /// Whether CCR was part of the loss.
    pub ccr_on: bool,
}

/// Per-fold macro-F1 (mean over AUs with a defined F1 in that fold).
pub fn fold_macro(r: &AuReport) -> Vec<Option<f64>> {
    (0..r.folds.len())
        .map(|i| super::metrics::mean_defined(r.aus.iter().map(|a| a.fold_f1[i])))
        .collect()
}

/// How the report's decisions were thresholded, as its text says it.
fn threshold_phrase(cfg: Option<&Config>) -> &'static str {
    match cfg.map(|c| c.train.thresholds) {
        Some(ThresholdRule::Fixed) => "at 0.5 for every AU (`train.thresholds = \"fixed\"`)",
        _ => "at thresholds chosen on each fold's training subjects (inner validation split)",
    }
}

/// The Markdown report.
pub fn render_markdown(o: &RunInfo, r: &AuReport, cfg: Option<&Config>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# AU detection report\n");
    if let Some(c) = cfg {
        let _ = writeln!(
            s,
            "Ablation `{:?}`, {} epochs, batch {}, CCR λ={} ({}), imbalance `{}`, seed {}.\n",
            c.frontend.ablation,
            c.train.epochs,
            c.train.batch_size,
            c.train.lambda_ccr,
            if o.ccr_on { "on" } else { "off" },
            c.train.imbalance,
            c.train.seed
        );
        if !c.train.init_frontend.is_empty() {
            let _ = writeln!(
                s,
                "Two-stage training: each fold's front-end started from that fold's finished run in `{}`; the time below is this stage's only.\n",
                c.train.init_frontend
            );
        }
    }
    if o.folds.len() < o.protocol_folds {
        let _ = writeln!(
            s,
            "**Partial report: {} of the protocol's {} folds** (the others are not trained yet; `aullm eval ... --resume` continues). The scores below cover these folds only.\n",
            o.folds.len(),
            o.protocol_folds
        );
    }
    let _ = writeln!(
        s,
        "{} folds, {} held-out clips; training {:.0} s (every fold's epochs, summed over resumed runs), this run {:.0} s. Binary F1 of the positive class {}; macro = mean over AUs.\n",
        r.folds.len(),
        r.samples,
        o.training_seconds,
        o.seconds,
        threshold_phrase(cfg)
    );
    let _ = writeln!(s, "| metric | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| macro-F1, pooled over folds | {} |",
        f(r.macro_pooled_f1)
    );
    let _ = writeln!(
        s,
        "| macro-F1, mean over folds | {} |",
        f(r.macro_mean_over_folds_f1)
    );
    if let Some(p) = r.paper_macro_f1 {
        let _ = writeln!(
            s,
            "| paper-compatible (OPTIMISTIC: threshold swept on pooled test predictions, mean of both classes' F1) | {p:.3} |"
        );
    }
    au_table(&mut s, r, "fold");
    let _ = writeln!(
        s,
        "\n| fold | train | val | test | epochs | macro-F1 |\n|---|---|---|---|---|---|"
    );
    for (i, (fo, m)) in o.folds.iter().zip(fold_macro(r)).enumerate() {
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | {} | {} | {} |",
            i + 1,
            fo.name,
            fo.counts[0],
            fo.counts[1],
            fo.counts[2],
            fo.epochs,
            f(m)
        );
    }
    if !o.skipped.is_empty() {
        let _ = writeln!(
            s,
            "\nLeft out (could not be aligned): {}",
            o.skipped.join("; ")
        );
    }
    s
}

/// The per-AU table of `r`, its folds called `unit`s (folds, subjects).
pub fn au_table(s: &mut String, r: &AuReport, unit: &str) {
    let _ = writeln!(
        s,
        "\n| AU | positives | TP | FP | FN | F1 pooled | F1 mean over {unit}s | {unit}s defined |\n|---|---|---|---|---|---|---|---|"
    );
    for a in &r.aus {
        let _ = writeln!(
            s,
            "| AU{} | {} | {} | {} | {} | {} | {} | {} |",
            a.code,
            a.pooled.positives(),
            a.pooled.tp,
            a.pooled.fp,
            a.pooled.fn_,
            f(a.pooled_f1),
            f(a.mean_over_folds_f1),
            a.folds_defined
        );
    }
}

/// HTML escaping.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart of per-fold macro-F1 as inline SVG.
fn fold_chart(r: &AuReport) -> String {
    let vals = fold_macro(r);
    let n = vals.len().max(1);
    let (w, h, pad) = (760.0, 220.0, 30.0);
    let bw = (w - 2.0 * pad) / n as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="per-fold macro-F1">"#
    );
    for k in 0..=4 {
        let y = h - pad - (h - 2.0 * pad) * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="2" y="{}" font-size="10">{:.2}</text>"##,
            w - pad,
            y + 3.0,
            k as f64 / 4.0
        );
    }
    for (i, v) in vals.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let v = v.unwrap_or(0.0);
        let bh = (h - 2.0 * pad) * v;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7fb5"><title>{}: {:.3}</title></rect>"##,
            x + 1.0,
            h - pad - bh,
            (bw - 2.0).max(1.0),
            bh,
            esc(&r.folds[i]),
            v
        );
    }
    s.push_str("</svg>");
    s
}

/// The self-contained HTML page.
pub fn render_html(o: &RunInfo, r: &AuReport, cfg: &Config) -> String {
    let md = render_markdown(o, r, Some(cfg));
    html_page(
        "aullm eval report",
        &md,
        &format!("<h2>Macro-F1 per fold</h2>{}", fold_chart(r)),
    )
}

/// A self-contained page from a Markdown report (headings, paragraphs, tables; one source of
/// truth for the numbers) followed by `extra` HTML.
pub fn html_page(title: &str, md: &str, extra: &str) -> String {
    let mut body = String::new();
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                body.push_str("<table>");
                in_table = true;
            }
            body.push_str("<tr>");
            for cell in line.trim_matches('|').split('|') {
                let _ = write!(body, "<td>{}</td>", esc(cell.trim()));
            }
            body.push_str("</tr>\n");
        } else {
            if in_table {
                body.push_str("</table>\n");
                in_table = false;
            }
            if let Some(h) = line.strip_prefix("## ") {
                let _ = write!(body, "<h2>{}</h2>", esc(h));
            } else if let Some(h) = line.strip_prefix("# ") {
                let _ = write!(body, "<h1>{}</h1>", esc(h));
            } else if !line.trim().is_empty() {
                let _ = write!(body, "<p>{}</p>", esc(line));
            }
        }
    }
    if in_table {
        body.push_str("</table>");
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}td{{border:1px solid #ccc;padding:3px 8px;text-align:right}}tr:first-child td{{font-weight:bold;background:#f4f4f4}}</style></head><body>{body}{extra}</body></html>\n",
        esc(title)
    )
}

/// Writes report.json (with `outcome`, the run's full record), report.md and report.html into
/// `dir`.
pub fn write(
    dir: &Path,
    o: &RunInfo,
    outcome: &impl Serialize,
    r: &AuReport,
    cfg: &Config,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({
        "schema": "aullm.eval_report/1",
        "config": cfg,
        "outcome": outcome,
        "metric_note": format!("binary F1 of the positive class {}; macro = mean over AUs; pooled = counts summed over folds", threshold_phrase(Some(cfg))),
    });
    let files = [
        ("report.json", serde_json::to_string_pretty(&json)?),
        ("report.md", render_markdown(o, r, Some(cfg))),
        ("report.html", render_html(o, r, cfg)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        let mut f = crate::atomic::AtomicFile::create(&p)?;
        use std::io::Write;
        f.write_all(text.as_bytes())?;
        f.commit()?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_the_threshold_rule_the_run_used() {
        let mut c = Config::default();
        assert!(threshold_phrase(Some(&c)).contains("chosen on each fold"));
        assert!(threshold_phrase(None).contains("chosen on each fold"));
        c.train.thresholds = ThresholdRule::Fixed;
        assert!(threshold_phrase(Some(&c)).contains("0.5 for every AU"));
    }
}
