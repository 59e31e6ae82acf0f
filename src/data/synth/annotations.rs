//! SynthME's annotation files in the real datasets' layouts, plus the full ground truth as JSON.
//!
//! - `CASME2-coding-synth.xlsx` and `.csv`: CASME II's coding sheet, written by the CASME II module's
//!   own writer (released header and quirks), frame numbers = the `imgN.jpg` numbers.
//! - `SAMM_LongVideos_synth.xlsx` and `.csv`: SAMM-LV's interval sheet (Subject, Filename, Inducement Code,
//!   Onset, Apex, Offset, Duration, Type, Action Units, Notes), frame numbers 1-based as the frame files;
//!   macro-expressions are annotated (Type "Macro"), blinks and speech are not (they are nuisances, as
//!   in SAMM-LV).
//! - `synth_truth.json`: everything the generator decided (amplitudes, sides, nuisances, identities).

use super::aus::au_string;
use super::identity::Identity;
use super::plan::{Plan, SynthConfig};
use crate::data::casme2::{Casme2Row, write_casme2_coding_csv, write_casme2_coding_xlsx};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// SAMM-LV interval-sheet header.
pub const SAMMLV_HEADER: [&str; 10] = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
];

/// One cell value.
enum Cell {
    Text(String),
    Int(i64),
}

fn casme2_rows(plan: &Plan) -> Vec<Casme2Row> {
    plan.clips
        .iter()
        .map(|c| {
            let f = c.first_frame;
            Casme2Row {
                subject: c.subject,
                filename: c.name.clone(),
                onset: f + c.event.onset,
                apex: Some(f + c.event.apex),
                offset: f + c.event.offset,
                action_units: au_string(&c.event.aus),
                emotion: c.event.emotion.clone(),
            }
        })
        .collect()
}

fn sammlv_rows(plan: &Plan) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for v in &plan.videos {
        let mut n = 0;
        for e in v
            .events
            .iter()
            .filter(|e| e.kind == "micro" || e.kind == "macro")
        {
            n += 1;
            rows.push(vec![
                Cell::Text(format!("{:03}", v.subject)),
                Cell::Text(format!("{}_{}", v.name, n)),
                Cell::Text("synth".into()),
                Cell::Int(e.onset as i64 + 1),
                Cell::Int(e.apex as i64 + 1),
                Cell::Int(e.offset as i64 + 1),
                Cell::Int((e.offset - e.onset + 1) as i64),
                Cell::Text(if e.kind == "macro" {
                    "Macro".into()
                } else {
                    "Micro - 1/2".into()
                }),
                Cell::Text(au_string(&e.aus)),
                Cell::Text(format!("emotion {}", e.emotion)),
            ]);
        }
    }
    rows
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<Cell>]) -> Result<()> {
    let mut f = crate::atomic::AtomicFile::create(path)?;
    writeln!(f, "{}", header.join(","))?;
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .map(|c| match c {
                Cell::Text(s) if s.contains([',', '"']) => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                Cell::Text(s) => s.clone(),
                Cell::Int(i) => i.to_string(),
            })
            .collect();
        writeln!(f, "{}", line.join(","))?;
    }
    f.commit()?;
    Ok(())
}

fn write_xlsx(path: &Path, sheet: &str, header: &[&str], rows: &[Vec<Cell>]) -> Result<()> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet).context("sheet name")?;
    for (c, h) in header.iter().enumerate() {
        ws.write_string(0, c as u16, *h)?;
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            match cell {
                Cell::Text(s) => ws.write_string(r as u32 + 1, c as u16, s)?,
                Cell::Int(i) => ws.write_number(r as u32 + 1, c as u16, *i as f64)?,
            };
        }
    }
    // A fixed creation time keeps the file byte-identical for a seed.
    let props = rust_xlsxwriter::DocProperties::new()
        .set_creation_datetime(&rust_xlsxwriter::ExcelDateTime::from_ymd(2026, 1, 1)?);
    wb.set_properties(&props);
    wb.save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes every annotation file under `root`.
pub fn write_all(cfg: &SynthConfig, plan: &Plan, ids: &[Identity], root: &Path) -> Result<()> {
    let casme = casme2_rows(plan);
    write_casme2_coding_csv(&root.join("CASME2-coding-synth.csv"), &casme)?;
    write_casme2_coding_xlsx(&root.join("CASME2-coding-synth.xlsx"), &casme)?;
    if !plan.videos.is_empty() {
        let lv = sammlv_rows(plan);
        write_csv(&root.join("SAMM_LongVideos_synth.csv"), &SAMMLV_HEADER, &lv)?;
        write_xlsx(
            &root.join("SAMM_LongVideos_synth.xlsx"),
            "FACS_Movement_Only",
            &SAMMLV_HEADER,
            &lv,
        )?;
    }
    #[derive(serde::Serialize)]
    struct Truth<'a> {
        schema: &'static str,
        config: &'a SynthConfig,
        identities: Vec<IdentityTruth<'a>>,
        plan: &'a Plan,
    }
    #[derive(serde::Serialize)]
    struct IdentityTruth<'a> {
        subject: u32,
        landmarks: &'a super::identity::Landmarks,
        crop_to_frame_scale: f32,
        description: &'a str,
        face: &'a str,
    }
    let truth = Truth {
        schema: "aullm.synthme/1",
        config: cfg,
        identities: ids
            .iter()
            .map(|i| IdentityTruth {
                subject: i.index + 1,
                landmarks: &i.landmarks,
                crop_to_frame_scale: i.crop_to_frame_scale,
                description: &i.description,
                face: &i.face,
            })
            .collect(),
        plan,
    };
    let mut f = crate::atomic::AtomicFile::create(&root.join("synth_truth.json"))?;
    serde_json::to_writer_pretty(&mut f, &truth)?;
    f.commit()?;
    Ok(())
}

/// Whether the SynthME dataset under `root` was written as an evaluation set (a held-out family or
/// held-out identities); false for folders that are not SynthME.
pub fn evaluation_only(root: &Path) -> Result<bool> {
    Ok(
        read_truth(root)?
            .is_some_and(|v| v["config"]["evaluation_only"].as_bool().unwrap_or(false)),
    )
}

/// `root/synth_truth.json` as JSON; None when the folder is not SynthME.
fn read_truth(root: &Path) -> Result<Option<serde_json::Value>> {
    let path = root.join("synth_truth.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))
        .map(Some)
}

/// The photo each SynthME subject's face came from, by subject folder (`sub07` → the photo's
/// manifest name): people drawn from one photo share its camera and light, so cross-identity splits
/// keep them on one side. Subjects re-shaped from astronaut.png count as their own identity, and a
/// folder that is not SynthME gives an empty map.
pub fn photo_groups(root: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let mut groups = std::collections::BTreeMap::new();
    let Some(v) = read_truth(root)? else {
        return Ok(groups);
    };
    for (i, id) in v["identities"].as_array().into_iter().flatten().enumerate() {
        let subject = id["subject"].as_u64().with_context(|| {
            format!(
                "{}: identities[{i}] has no subject number",
                root.join("synth_truth.json").display()
            )
        })?;
        let name = format!("sub{subject:02}");
        let group = match id["face"].as_str().and_then(|f| f.split_once('#')) {
            Some((photo, _)) => photo.to_string(),
            None => name.clone(),
        };
        groups.insert(name, group);
    }
    Ok(groups)
}
