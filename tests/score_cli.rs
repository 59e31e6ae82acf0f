//! `aullm data check` and `aullm score` end to end: fixture datasets in their published layouts,
//! prediction files in the documented formats, the binary's output and exit codes.

mod common;

use aullm::data::{Casme2Row, write_casme2_coding_xlsx};
use common::{X, frames, xlsx};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn aullm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aullm"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Six clips of three subjects; AU12 in clips 0, 1, 3, AU4 in clips 2, 3.
fn casme2(root: &Path) {
    let clips = [
        (1, "EP01_01", "12"),
        (1, "EP01_02", "R12"),
        (2, "EP02_01", "4"),
        (2, "EP02_02", "4+12"),
        (3, "EP03_01", "1"),
        (3, "EP03_02", "1+2"),
    ];
    let rows: Vec<Casme2Row> = clips
        .iter()
        .map(|(s, f, au)| Casme2Row {
            subject: *s,
            filename: f.to_string(),
            onset: 100,
            apex: Some(102),
            offset: 104,
            action_units: au.to_string(),
            emotion: "others".into(),
        })
        .collect();
    write_casme2_coding_xlsx(&root.join("CASME2-coding-20140508.xlsx"), &rows).unwrap();
    for (s, f, _) in clips {
        frames(
            &root.join(format!("CASME2_RAW_selected/sub{s:02}/{f}")),
            "img",
            0,
            100..=104,
        );
    }
}

#[test]
fn data_check_reports_and_exits_by_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    casme2(root);
    let r = root.to_str().unwrap();
    let o = aullm(&["data", "check", r, "--format", "casme2"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("records      6 from 3 subjects"), "{t}");
    assert!(t.contains("AU12"), "{t}");
    assert!(t.contains("0 error(s)"), "{t}");
    let o = aullm(&["data", "check", r, "--format", "casme2", "--json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["check"]["per_au"]["12"]["records"], 3);
    assert_eq!(j["check"]["per_subject"]["sub02"], 2);
    std::fs::remove_file(root.join("CASME2_RAW_selected/sub03/EP03_02/img102.jpg")).unwrap();
    let o = aullm(&["data", "check", r, "--format", "casme2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("CASME2-coding-20140508.xlsx row 7: sub03/EP03_02: apex frame"),
        "{t}"
    );
    // Wrong format name: a usage error listing the formats.
    let o = aullm(&["data", "check", r, "--format", "casme9"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("casme2, samm, fourdme"), "{}", text(&o));
}

#[test]
fn score_au_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("casme2");
    casme2(&root);
    let pred = dir.path().join("pred.csv");
    // AU12 truth 1,1,0,1,0,0; decisions at 0.5: 1,0,1,1,0,0 -> TP 2, FP 1, FN 1 -> F1 2/3.
    // Subjects as numbers: canonicalised like the loader's.
    std::fs::write(
        &pred,
        "dataset,subject,clip,AU4_p,AU12_p\n\
         casme2,1,EP01_01,0.1,0.9\n\
         casme2,1,EP01_02,0.2,0.4\n\
         casme2,sub02,EP02_01,0.7,0.6\n\
         casme2,02,EP02_02,0.8,0.55\n\
         casme2,3,EP03_01,0.3,0.2\n\
         casme2,3,EP03_02,0.6,0.1\n",
    )
    .unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "score",
            "--pred",
            pred.to_str().unwrap(),
            "--gt",
            root.to_str().unwrap(),
            "--format",
            "casme2",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        aullm(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run(&["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["task"], "au");
    let au12 = &j["report"]["aus"][1];
    assert_eq!(au12["code"], 12);
    assert!((au12["pooled_f1"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // Per subject (LOSO folds): sub01 1 TP 1 FN -> 2/3; sub02 1 TP 1 FP -> 2/3; sub03 undefined.
    assert_eq!(au12["folds_defined"], 2);
    assert!((au12["mean_over_folds_f1"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // AU4 truth 0,0,1,1,0,0; decisions 0,0,1,1,0,1 -> TP 2 FP 1 -> 0.8.
    assert!((j["report"]["aus"][0]["pooled_f1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(j["folds_from"], "subject (leave-one-subject-out)");
    assert!(j["paper_label"].is_null());

    let o = run(&["--paper-compatible"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("macro (pooled over folds)"), "{t}");
    assert!(t.contains("macro (mean over folds)"), "{t}");
    assert!(t.contains("optimistic, paper-compatible"), "{t}");

    // A per-AU thresholds file.
    let th = dir.path().join("thresholds.csv");
    std::fs::write(&th, "au,threshold\nAU12,0.35\n").unwrap();
    let o = run(&[
        "--thresholds",
        th.to_str().unwrap(),
        "--json",
        "--aus",
        "12",
    ]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["decisions"]["12"], "p >= 0.35");
    assert_eq!(j["report"]["aus"].as_array().unwrap().len(), 1);
}

#[test]
fn score_refuses_leaks_missing_and_unknown_clips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("casme2");
    casme2(&root);
    let score = |body: &str, extra: &[&str]| {
        let pred = dir.path().join("p.csv");
        std::fs::write(&pred, body).unwrap();
        let mut a = vec![
            "score",
            "--pred",
            pred.to_str().unwrap(),
            "--gt",
            root.to_str().unwrap(),
            "--format",
            "casme2",
        ];
        a.extend_from_slice(extra);
        aullm(&a)
    };
    let head = "dataset,subject,clip,fold,AU12_c\n";
    // One subject tested by two folds.
    let leak = format!(
        "{head}casme2,1,EP01_01,a,1\ncasme2,1,EP01_02,b,0\ncasme2,2,EP02_01,b,0\n\
         casme2,2,EP02_02,b,1\ncasme2,3,EP03_01,c,0\ncasme2,3,EP03_02,c,0\n"
    );
    let o = score(&leak, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("never cross a split"), "{}", text(&o));
    // Missing clips: an error unless allowed.
    let part = format!("{head}casme2,1,EP01_01,a,1\ncasme2,2,EP02_01,b,0\n");
    let o = score(&part, &[]);
    assert!(
        text(&o).contains("4 annotated clip(s) have no prediction"),
        "{}",
        text(&o)
    );
    let o = score(&part, &["--allow-missing", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["clips_without_prediction"], 4);
    assert_eq!(j["folds_from"], "fold column");
    // A clip that is not annotated.
    let o = score(&format!("{head}casme2,1,EP09_09,a,1\n"), &[]);
    assert!(
        text(&o).contains("is not an annotated clip"),
        "{}",
        text(&o)
    );
    // A probability out of range.
    let o = score("dataset,subject,clip,AU12_p\ncasme2,1,EP01_01,1.5\n", &[]);
    assert!(text(&o).contains("line 2: AU12_p"), "{}", text(&o));
}

/// A SAMM-LV folder with two videos.
fn sammlv(root: &Path) {
    let mut rows: Vec<Vec<X>> = (0..9).map(|_| vec![X::S("note")]).collect();
    rows.push(
        [
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
        ]
        .into_iter()
        .map(X::S)
        .collect(),
    );
    let r = |f, on: f64, off: f64, t| {
        vec![
            X::N(6.0),
            X::S(f),
            X::N(1.0),
            X::N(on),
            X::N(on + 2.0),
            X::N(off),
            X::N(off - on),
            X::S(t),
            X::S("12"),
            X::E,
        ]
    };
    rows.push(r("006_1_1", 10.0, 29.0, "Micro - 1/2"));
    rows.push(r("006_1_2", 100.0, 199.0, "Macro"));
    rows.push(r("006_2_1", 50.0, 69.0, "Micro - 1/2"));
    xlsx(
        &root.join("SAMM_LongVideos_V3_Release.xlsx"),
        &[("Sheet1", rows)],
    );
    frames(&root.join("SAMM_longvideos/006_1"), "006_1_", 4, 1..=200);
    frames(&root.join("SAMM_longvideos/006_2"), "006_2_", 4, 1..=80);
}

#[test]
fn score_spotting_megc() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sammlv");
    sammlv(&root);
    let o = aullm(&[
        "data",
        "check",
        root.to_str().unwrap(),
        "--format",
        "sammlv",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let pred = dir.path().join("spots.jsonl");
    // 12..30 vs 10..29: IoU 18/21 -> TP; 110..140 vs 100..199: 31/100 -> FP; 006_2 missed -> FN;
    // a duplicate of the first -> FP (one-to-one).
    std::fs::write(
        &pred,
        "{\"video\":\"006_1\",\"onset\":12,\"offset\":30,\"type\":\"micro\"}\n\
         {\"video\":\"006_1\",\"onset\":110,\"offset\":140,\"type\":\"macro\"}\n\
         \n\
         {\"video\":\"006_1\",\"onset\":11,\"offset\":29,\"type\":\"micro\"}\n",
    )
    .unwrap();
    let o = aullm(&[
        "score",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        root.to_str().unwrap(),
        "--format",
        "sammlv",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["task"], "spotting");
    let c = &j["overall"]["counts"];
    assert_eq!(
        (c["tp"].as_u64(), c["fp"].as_u64(), c["fn"].as_u64()),
        (Some(1), Some(2), Some(2))
    );
    assert!((j["overall"]["f1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(j["per_kind"]["micro"]["counts"]["tp"], 1);
    assert_eq!(j["per_kind"]["macro"]["counts"]["fp"], 1);
    // CSV predictions, micro only.
    let csv = dir.path().join("spots.csv");
    std::fs::write(
        &csv,
        "video,onset,offset,type\n006_2,52,70,micro\n006_1,9,28,micro\n",
    )
    .unwrap();
    let o = aullm(&[
        "score",
        "--pred",
        csv.to_str().unwrap(),
        "--gt",
        root.to_str().unwrap(),
        "--format",
        "sammlv",
        "--expressions",
        "micro",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("all        2      0      0"), "{t}");
}

#[test]
fn casme2lv_unknown_offsets_need_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = |p: f64, name, on: f64, ap: f64, off: f64, kind| {
        vec![
            X::N(p),
            X::S(name),
            X::N(on),
            X::N(ap),
            X::N(off),
            X::S("4"),
            X::S("anger"),
            X::S(kind),
            X::S("anger"),
        ]
    };
    xlsx(
        &root.join("CAS(ME)^2code_final.xlsx"),
        &[
            (
                "Sheet1",
                vec![
                    r(1.0, "anger1_1", 10.0, 15.0, 20.0, "micro-expression"),
                    r(1.0, "anger1_2", 30.0, 40.0, 0.0, "macro-expression"),
                ],
            ),
            ("naming rule1", vec![vec![X::S("x"), X::N(15.0), X::N(1.0)]]),
            ("naming rule2", vec![vec![X::S("0401"), X::S("anger1")]]),
        ],
    );
    frames(
        &root.join("rawpic/s15/15_0401girlcrashing"),
        "img",
        0,
        1..=50,
    );
    let pred = root.join("p.csv");
    std::fs::write(&pred, "video,onset,offset\n15_0401,10,20\n15_0401,31,40\n").unwrap();
    let base = [
        "score",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        root.to_str().unwrap(),
        "--format",
        "casme2lv",
    ];
    let o = aullm(&base);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--unknown-offset apex|drop"),
        "{}",
        text(&o)
    );
    let mut a = base.to_vec();
    a.extend(["--unknown-offset", "apex", "--json"]);
    let o = aullm(&a);
    assert!(o.status.success(), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    // 31..40 vs 30..40 (apex as offset): IoU 10/11 -> both TP.
    assert_eq!(j["overall"]["counts"]["tp"], 2);
    assert_eq!(j["unknown_offsets"], 1);
}
