//! Self-contained HTML for batch results: one page per video (AU timeline, spotting signal with the
//! detected intervals, apex thumbnails of each event) and an index linking every video. Inline SVG
//! and PNG data URIs only: the pages open anywhere, offline.

use crate::eval::truth::TruthInterval;
use crate::events::AuEvent;
use crate::stream::Recording;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One line of the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexRow {
    /// Output folder name.
    pub id: String,
    /// Input file.
    pub input: String,
    /// "ok" or "failed".
    pub status: String,
    /// Seconds of video.
    pub duration_s: f64,
    /// Frames read.
    pub frames: u64,
    /// Events (micro, macro).
    pub events: [u64; 2],
    /// The error, when failed.
    pub error: Option<String>,
}

/// HTML escaping.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A gray crop as a PNG data URI.
fn png_uri(crop: &[u8], size: usize) -> Result<String> {
    let buf = crate::imgio::png::gray(crop, size, size)
        .with_context(|| format!("a crop of {} bytes is not {size}x{size}", crop.len()))?;
    Ok(format!("data:image/png;base64,{}", base64(&buf)))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f4f4f4}img{image-rendering:pixelated}pre{white-space:pre-wrap;font-size:12px}.micro{fill:#d9534f}.macro{fill:#5b7fb5}";

/// Annotated intervals to draw beside the events (`aullm run --truth`), with the frame rate that
/// turns their 1-based frame numbers into times.
pub struct Truth<'a> {
    /// The annotation of this video.
    pub intervals: &'a [TruthInterval],
    /// Frames per second of the video.
    pub fps: f64,
}

/// The page of one video; with `truth`, the annotated intervals are drawn under the signal and the
/// spotting and AU comparison is printed. The events are also embedded as JSON
/// (`<script type="application/json" id="aullm-events">`), the same objects as the jsonl sink's.
pub fn video_page(
    id: &str,
    input: &str,
    rec: &Recording,
    duration_s: f64,
    model: &str,
    truth: Option<&Truth>,
) -> Result<String> {
    let mut b = String::new();
    let _ = write!(
        b,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p>{} · {:.1} s · {} frame rows · {} events · model {}</p>",
        esc(id),
        esc(id),
        esc(input),
        duration_s,
        rec.frames.len(),
        rec.events.len(),
        esc(model)
    );
    b.push_str("<h2>Spotting signal and detected intervals</h2><p>The signal is the largest region motion in noise spreads; shaded: detected intervals (red micro, blue macro)");
    b.push_str(if truth.is_some() {
        "; green bars: annotated intervals.</p>"
    } else {
        ".</p>"
    });
    b.push_str(&signal_svg(rec, duration_s, truth));
    if let Some(t) = truth {
        let _ = write!(
            b,
            "<h2>Against the ground truth</h2><pre>{}</pre>",
            esc(&crate::eval::truth::compare(&rec.events, t.intervals))
        );
    }
    b.push_str("<h2>AU timeline</h2>");
    b.push_str(&au_timeline_svg(&rec.events, duration_s));
    b.push_str("<h2>Events</h2><table><tr><th>#</th><th>apex</th><th>face</th><th>kind</th><th>onset–offset (s)</th><th>score</th><th>AUs present (probability)</th></tr>");
    for e in &rec.events {
        let thumb = match rec.apex_crops.get(&e.seq) {
            Some(c) => format!(
                "<img width=\"96\" height=\"96\" alt=\"apex crop\" src=\"{}\">",
                png_uri(c, rec.crop_size)?
            ),
            None => String::new(),
        };
        let aus: Vec<String> = e
            .aus
            .iter()
            .filter(|a| a.present)
            .map(|a| format!("{} ({:.2})", a.au, a.probability))
            .collect();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{thumb}</td><td>{}</td><td>{}</td><td>{:.3}–{:.3}</td><td>{:.2}</td><td>{}</td></tr>",
            e.seq,
            e.face_id,
            format!("{:?}", e.kind).to_lowercase(),
            e.onset.stream_s,
            e.offset.stream_s,
            e.spotting_score,
            if aus.is_empty() {
                "-".into()
            } else {
                aus.join(", ")
            }
        );
    }
    b.push_str("</table>");
    let json: Vec<String> = rec.events.iter().map(|e| e.to_json()).collect();
    // `</` cannot end the script element early once escaped; JSON reads `<\/` as `</`.
    let _ = writeln!(
        b,
        "<script type=\"application/json\" id=\"aullm-events\">[{}]</script></body></html>",
        json.join(",").replace("</", "<\\/")
    );
    Ok(b)
}

/// Plot geometry.
const W: f64 = 960.0;
const PAD: f64 = 40.0;

fn x_of(t: f64, dur: f64) -> f64 {
    PAD + (W - 2.0 * PAD) * (t / dur.max(1e-9)).clamp(0.0, 1.0)
}

/// Spotting signal as a polyline (downsampled to at most 2000 points) over shaded intervals; the
/// annotated intervals, when given, as green bars along the bottom.
fn signal_svg(rec: &Recording, dur: f64, truth: Option<&Truth>) -> String {
    let h = 180.0;
    let pts: Vec<(f64, f32)> = rec
        .frames
        .iter()
        .filter_map(|r| r.signal.map(|s| (r.timestamp, s)))
        .collect();
    let max = pts.iter().map(|p| p.1).fold(0.0f32, f32::max).max(1e-3) as f64;
    let step = pts.len().div_ceil(2000).max(1);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" aria-label="spotting signal">"#
    );
    for e in &rec.events {
        let (x0, x1) = (x_of(e.onset.stream_s, dur), x_of(e.offset.stream_s, dur));
        let class = format!("{:?}", e.kind).to_lowercase();
        let _ = write!(
            s,
            r#"<rect class="{class}" opacity="0.25" x="{x0:.1}" y="10" width="{:.1}" height="{:.1}"><title>event {} {class}</title></rect>"#,
            (x1 - x0).max(1.0),
            h - 30.0,
            e.seq
        );
    }
    if let Some(t) = truth {
        for iv in t.intervals {
            let t0 = (iv.span.onset as f64 - 1.0) / t.fps.max(1e-9);
            let t1 = (iv.span.offset as f64 - 1.0) / t.fps.max(1e-9);
            let (x0, x1) = (x_of(t0, dur), x_of(t1, dur));
            let _ = write!(
                s,
                r##"<rect class="truth" fill="#2e7d32" x="{x0:.1}" y="{:.1}" width="{:.1}" height="6"><title>truth {} frames {}–{}</title></rect>"##,
                h - 16.0,
                (x1 - x0).max(1.0),
                iv.kind,
                iv.span.onset,
                iv.span.offset
            );
        }
    }
    let poly: Vec<String> = pts
        .iter()
        .step_by(step)
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                x_of(*t, dur),
                h - 20.0 - (h - 30.0) * (*v as f64 / max)
            )
        })
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#222" stroke-width="1" points="{}"/><text x="{PAD}" y="{}" font-size="11">0 s</text><text x="{}" y="{}" font-size="11" text-anchor="end">{dur:.1} s</text><text x="2" y="14" font-size="11">{max:.1} spreads</text></svg>"##,
        poly.join(" "),
        h - 4.0,
        W - PAD,
        h - 4.0
    );
    s
}

/// One row per AU; each event is a bar over its interval, opacity = probability, outlined if present.
fn au_timeline_svg(events: &[AuEvent], dur: f64) -> String {
    let aus: Vec<String> = events
        .first()
        .map(|e| e.aus.iter().map(|a| a.au.clone()).collect())
        .unwrap_or_default();
    let row = 18.0;
    let h = 20.0 + row * aus.len().max(1) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" aria-label="AU timeline">"#
    );
    for (j, au) in aus.iter().enumerate() {
        let y = 10.0 + row * j as f64;
        let _ = write!(
            s,
            r##"<text x="2" y="{:.1}" font-size="11">{}</text><line x1="{PAD}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            y + 12.0,
            esc(au),
            W - PAD,
            y + row / 2.0,
            y + row / 2.0
        );
        for e in events {
            let Some(d) = e.aus.get(j) else { continue };
            let (x0, x1) = (x_of(e.onset.stream_s, dur), x_of(e.offset.stream_s, dur));
            let _ = write!(
                s,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#c0392b" fill-opacity="{:.2}" stroke="{}"><title>{} event {}: p = {:.3}</title></rect>"##,
                y + 2.0,
                (x1 - x0).max(2.0),
                row - 4.0,
                d.probability,
                if d.present { "#000" } else { "none" },
                esc(au),
                e.seq,
                d.probability
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The index of every video in a batch output folder.
pub fn index_page(rows: &[IndexRow]) -> String {
    let ok = rows.iter().filter(|r| r.status == "ok").count();
    let mut b = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>aullm batch</title><style>{STYLE}</style></head><body><h1>aullm batch</h1><p>{} videos: {ok} processed, {} failed · {} events</p><table><tr><th>video</th><th>input</th><th>status</th><th>duration (s)</th><th>frames</th><th>micro</th><th>macro</th><th>error</th></tr>",
        rows.len(),
        rows.len() - ok,
        rows.iter().map(|r| r.events[0] + r.events[1]).sum::<u64>()
    );
    for r in rows {
        let name = if r.status == "ok" {
            format!("<a href=\"{0}/report.html\">{0}</a>", esc(&r.id))
        } else {
            esc(&r.id)
        };
        let _ = write!(
            b,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.input),
            esc(&r.status),
            r.duration_s,
            r.frames,
            r.events[0],
            r.events[1],
            esc(r.error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table></body></html>\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
