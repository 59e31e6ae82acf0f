//! Every dataset loader on a fixture folder in its published layout, quirks included, and
//! `aullm data check`'s findings on them.

mod common;

use aullm::data::check::{CheckOptions, check};
use aullm::data::{
    AmbiguityRule, AuRules, Casme2Row, Dataset, ExpressionKind, FrameVariant, KRule, LoadOptions,
    Severity, Side, casme2_frame_path, load, write_casme2_coding_csv, write_casme2_coding_xlsx,
};
use common::{X, frames, jpg, xlsx};
use std::path::Path;

fn row(
    subject: u32,
    filename: &str,
    onset: u32,
    apex: Option<u32>,
    offset: u32,
    aus: &str,
) -> Casme2Row {
    Casme2Row {
        subject,
        filename: filename.into(),
        onset,
        apex,
        offset,
        action_units: aus.into(),
        emotion: "happiness".into(),
    }
}

fn casme2_rows() -> Vec<Casme2Row> {
    vec![
        // Frames numbered from the recording, not from 1.
        row(1, "EP02_01f", 46, Some(49), 52, "1+2"),
        // Apex written "/" in the release.
        row(1, "EP03_02", 130, None, 136, "4+L10"),
        // A lone AU is a number cell in the release.
        row(2, "EP01_11f", 10, Some(12), 14, "12"),
        row(17, "EP19_05f", 300, Some(302), 304, "R12 + R15"),
    ]
}

/// A CASME II folder with raw and/or cropped frames for `rows`.
fn casme2_folder(root: &Path, rows: &[Casme2Row], raw: bool, cropped: bool) {
    // Through the same helper the synthetic generator uses.
    for r in rows {
        for n in r.onset..=r.offset {
            if raw {
                jpg(&casme2_frame_path(root, r.subject, &r.filename, n, false));
            }
            if cropped {
                jpg(&casme2_frame_path(root, r.subject, &r.filename, n, true));
            }
        }
    }
}

fn errors(report: &aullm::data::check::Report) -> Vec<String> {
    report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn casme2_xlsx_with_its_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rows = casme2_rows();
    // Apex outside onset..offset: an error naming the row (row 2 is the first data row).
    rows[0].apex = Some(59);
    write_casme2_coding_xlsx(&root.join("CASME2-coding-20140508.xlsx"), &rows).unwrap();
    casme2_folder(root, &rows, true, false);
    let l = load(root, Dataset::Casme2, &LoadOptions::default()).unwrap();
    assert_eq!(l.samples.len(), 3, "{:#?}", l.problems);
    let e = l
        .problems
        .iter()
        .find(|p| p.severity == Severity::Error)
        .unwrap();
    assert_eq!(e.row, Some(2));
    assert!(e.message.contains("apex 59 is outside"), "{e}");
    assert!(
        e.to_string().contains("CASME2-coding-20140508.xlsx row 2"),
        "{e}"
    );
    assert!(l.require_clean().is_err());

    let s = &l.samples[0];
    assert_eq!((s.subject.as_str(), s.clip.as_str()), ("sub01", "EP03_02"));
    assert_eq!(s.apex, None);
    assert_eq!(s.apex_or_middle(), 133);
    assert_eq!(aullm::data::au::format_aus(&s.aus), "4+L10");
    assert_eq!(s.aus[1].side, Side::Left);
    assert!(
        s.frames
            .path(130)
            .ends_with("CASME2_RAW_selected/sub01/EP03_02/img130.jpg")
    );
    assert!(l.samples[1].has_au(12));
    assert_eq!(l.samples[2].subject, "sub17");
    assert_eq!(aullm::data::au::format_aus(&l.samples[2].aus), "R12+R15");
    assert_eq!(l.samples[0].emotion.as_deref(), Some("happiness"));

    let report = check(&l, CheckOptions::default());
    assert_eq!(errors(&report).len(), 1, "{:#?}", report.problems);
    assert_eq!(report.per_subject["sub01"], 1);
    assert_eq!(report.per_au[&12].records, 2);
    assert_eq!(report.per_au[&12].right, 1);
    assert_eq!(report.per_au[&10].left, 1);
    // Unknown apex is reported, but only as a warning.
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.severity == Severity::Warning && p.message.contains("apex unknown"))
    );
}

#[test]
fn casme2_csv_and_cropped_frames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = casme2_rows();
    write_casme2_coding_csv(&root.join("CASME2-coding-20140508.csv"), &rows).unwrap();
    casme2_folder(root, &rows, false, true);
    let l = load(root, Dataset::Casme2, &LoadOptions::default()).unwrap();
    assert_eq!(l.samples.len(), 4);
    l.require_clean().unwrap();
    assert!(l.frames_root.ends_with("Cropped"));
    assert!(
        l.samples[0]
            .frames
            .path(46)
            .ends_with("sub01/EP02_01f/reg_img46.jpg")
    );
    let report = check(&l, CheckOptions::default());
    assert!(report.ok(), "{}", report.render());
    // Asking for raw frames that are not there: every clip's folder is an error.
    let raw = LoadOptions {
        frames: FrameVariant::Raw,
        ..Default::default()
    };
    let l = load(root, Dataset::Casme2, &raw).unwrap();
    let report = check(&l, CheckOptions::default());
    assert_eq!(errors(&report).len(), 4);
    assert!(errors(&report)[0].contains("does not exist"));
}

/// Issue 19: a frame count from the sheet is bounded before anything is sized from it.
#[test]
fn a_clip_spanning_billions_of_frames_is_an_error_naming_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rows = casme2_rows();
    casme2_folder(root, &rows, true, false);
    rows.push(row(2, "EP09_01", 5, Some(6), 4_000_000_000, "4"));
    frames(
        &root.join("CASME2_RAW_selected/sub02/EP09_01"),
        "img",
        0,
        5..=7,
    );
    write_casme2_coding_xlsx(&root.join("CASME2-coding-synth.xlsx"), &rows).unwrap();
    let l = load(root, Dataset::Casme2, &LoadOptions::default()).unwrap();
    let errs = errors(&check(&l, CheckOptions::default()));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("EP09_01") && errs[0].contains("row 6") && errs[0].contains("at most"),
        "{}",
        errs[0]
    );
    assert_eq!(l.samples.len(), 4, "the other clips load");
}

#[test]
fn casme2_missing_and_dropped_frames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = casme2_rows();
    write_casme2_coding_xlsx(&root.join("CASME2-coding-synth.xlsx"), &rows).unwrap();
    casme2_folder(root, &rows, true, false);
    let clip = root.join("CASME2_RAW_selected/sub02/EP01_11f");
    std::fs::remove_file(clip.join("img14.jpg")).unwrap(); // the offset frame
    std::fs::remove_file(clip.join("img11.jpg")).unwrap(); // inside the clip
    let l = load(root, Dataset::Casme2, &LoadOptions::default()).unwrap();
    let report = check(&l, CheckOptions::default());
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("offset frame") && errs[0].contains("img14.jpg"));
    assert!(errs[0].contains("row 4"), "{}", errs[0]);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.severity == Severity::Warning && p.message.contains("1 frame(s) missing"))
    );
    // Annotations only: clean.
    assert!(check(&l, CheckOptions { frames: false }).ok());
}

#[test]
fn ambiguous_aus_are_errors_unless_a_rule_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rows = casme2_rows();
    rows[1].action_units = "4+14 or 15".into();
    rows[2].action_units = "?".into();
    write_casme2_coding_xlsx(&root.join("CASME2-coding-20140508.xlsx"), &rows).unwrap();
    let l = load(root, Dataset::Casme2, &LoadOptions::default()).unwrap();
    assert_eq!(l.samples.len(), 2);
    let rows_with_errors: Vec<Option<usize>> = l
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.row)
        .collect();
    assert_eq!(rows_with_errors, [Some(3), Some(4)]);
    assert!(l.problems[0].message.contains("ambiguous"));
    let first = LoadOptions {
        au: AuRules {
            ambiguous: AmbiguityRule::First,
            ..Default::default()
        },
        ..Default::default()
    };
    let l = load(root, Dataset::Casme2, &first).unwrap();
    l.require_clean().unwrap();
    assert_eq!(aullm::data::au::format_aus(&l.samples[1].aus), "4+14");
    assert!(l.samples[2].aus.is_empty());
}

/// SAMM's sheet: twelve rows of notes, header on row 13.
fn samm_sheet(path: &Path, rows: Vec<Vec<X>>) {
    let mut all: Vec<Vec<X>> = (0..12)
        .map(|i| {
            if i == 0 {
                vec![X::S("SAMM Micro-Movement FACS Codes")]
            } else if i == 3 {
                vec![
                    X::S("Notes:"),
                    X::S("frames are numbered from the recording start"),
                ]
            } else {
                vec![]
            }
        })
        .collect();
    all.push(
        [
            "Subject",
            "Filename",
            "Inducement Code",
            "Onset Frame",
            "Apex Frame",
            "Offset Frame",
            "Duration",
            "Type",
            "Action Units",
            "Notes",
            "Estimated Emotion",
        ]
        .into_iter()
        .map(X::S)
        .collect(),
    );
    all.extend(rows);
    xlsx(path, &[("MICRO_ONLY", all)]);
}

fn samm_row(
    subject: X,
    file: &'static str,
    on: f64,
    apex: X,
    off: f64,
    aus: &'static str,
) -> Vec<X> {
    vec![
        subject,
        X::S(file),
        X::N(1.0),
        X::N(on),
        apex,
        X::N(off),
        X::N(off - on + 1.0),
        X::S("Micro - 1/2"),
        X::S(aus),
        X::E,
        X::S("Anger"),
    ]
}

#[test]
fn samm_header_on_row_13_and_its_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    samm_sheet(
        &root.join("SAMM_Micro_FACS_Codes_v2.xlsx"),
        vec![
            samm_row(X::N(6.0), "006_1_2", 5562.0, X::N(5588.0), 5608.0, "4+7"),
            // Subject as text, apex unknown ("/"), laterality with spaces and intensity.
            samm_row(X::S("007"), "007_6_1", 120.0, X::S("/"), 130.0, "R12 + R15"),
            samm_row(X::N(7.0), "007_7_3", 40.0, X::N(45.0), 50.0, "R14A"),
            // "or": ambiguous, an error on row 17 by default.
            samm_row(X::N(9.0), "009_3_1", 10.0, X::N(11.0), 12.0, "14 or 15"),
        ],
    );
    frames(&root.join("SAMM/006/006_1_2"), "006_", 5, 5560..=5610);
    frames(&root.join("SAMM/007/007_6_1"), "007_", 5, 120..=130);
    frames(&root.join("SAMM/007/007_7_3"), "007_", 5, 40..=50);
    let l = load(root, Dataset::Samm, &LoadOptions::default()).unwrap();
    assert_eq!(l.samples.len(), 3);
    let e: Vec<_> = l
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].row, Some(17));
    let s = &l.samples[0];
    assert_eq!(
        (s.subject.as_str(), s.onset, s.apex, s.offset),
        ("006", 5562, Some(5588), 5608)
    );
    assert!(
        s.frames
            .path(5562)
            .ends_with("SAMM/006/006_1_2/006_05562.jpg")
    );
    assert_eq!(l.samples[1].subject, "007");
    assert_eq!(l.samples[1].apex, None);
    let a = l.samples[2].aus[0];
    assert_eq!((a.code, a.side, a.intensity), (14, Side::Right, Some('A')));
    let report = check(&l, CheckOptions::default());
    assert_eq!(errors(&report).len(), 1, "{}", report.render());
    assert_eq!(report.per_subject["007"], 2);
    let all = LoadOptions {
        au: AuRules {
            ambiguous: AmbiguityRule::All,
            ..Default::default()
        },
        ..Default::default()
    };
    let l = load(root, Dataset::Samm, &all).unwrap();
    assert_eq!(aullm::data::au::format_aus(&l.samples[3].aus), "14+15");
}

fn fourdme_folder(root: &Path, k_au: &'static str) {
    let header: Vec<X> = [
        "sub_ID",
        "fold_name",
        "Onset",
        "Apex",
        "Offset",
        "AUs",
        "Emotion",
        "Positive",
        "Negative",
        "Surprise",
        "Repression",
        "Others",
    ]
    .into_iter()
    .map(X::S)
    .collect();
    let r = |s, f, on: f64, ap: f64, off: f64, au| {
        vec![
            X::S(s),
            X::S(f),
            X::N(on),
            X::N(ap),
            X::N(off),
            X::S(au),
            X::S("Negative"),
            X::N(0.0),
            X::N(1.0),
            X::N(0.0),
            X::N(0.0),
            X::N(0.0),
        ]
    };
    xlsx(
        &root.join("4DME_Labelling_Micro_release v1.xlsx"),
        &[(
            "Sheet1",
            vec![
                header,
                r("S01", "S01_0101", 12.0, 20.0, 31.0, "AU4"),
                r("S01", "S01_0102", 5.0, 9.0, 14.0, k_au),
                r("S02", "S02_0201", 1.0, 3.0, 8.0, "AU1+AU2"),
            ],
        )],
    );
    frames(&root.join("gray_micro/S01/S01_0101"), "img", 3, 1..=40);
    frames(&root.join("gray_micro/S01/S01_0102"), "img", 3, 1..=20);
    frames(&root.join("gray_micro/S02/S02_0201"), "img", 3, 1..=10);
}

#[test]
fn fourdme_k_marked_aus_need_an_explicit_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fourdme_folder(root, "AU4+AU12(k)");
    let l = load(root, Dataset::FourDme, &LoadOptions::default()).unwrap();
    assert_eq!(l.samples.len(), 2);
    assert_eq!(l.error_count(), 1);
    assert!(l.problems[0].message.contains("(k)"), "{}", l.problems[0]);
    assert_eq!(l.problems[0].row, Some(3));
    let with = |k| LoadOptions {
        au: AuRules {
            k_marked: k,
            ..Default::default()
        },
        ..Default::default()
    };
    let inc = load(root, Dataset::FourDme, &with(KRule::Include)).unwrap();
    inc.require_clean().unwrap();
    let s = &inc.samples[1];
    assert_eq!(s.clip, "S01_0102");
    assert!(s.has_au(12) && s.aus.iter().any(|a| a.k_marked));
    let exc = load(root, Dataset::FourDme, &with(KRule::Exclude)).unwrap();
    assert!(!exc.samples[1].has_au(12) && exc.samples[1].has_au(4));
    // Frame naming learnt from the folder (img001.jpg).
    assert!(
        exc.samples[0]
            .frames
            .path(12)
            .ends_with("gray_micro/S01/S01_0101/img012.jpg")
    );
    let report = check(&exc, CheckOptions::default());
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.per_subject.len(), 2);
}

#[test]
fn casme3a_repeated_recordings_macro_rows_and_dropped_frames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let header: Vec<X> = [
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "Expression type",
        "AU",
        "Objective class",
        "emotion",
    ]
    .into_iter()
    .map(X::S)
    .collect();
    let r = |f, on: f64, ap: f64, off: f64, kind, au| {
        vec![
            X::S("spNO.1"),
            X::S(f),
            X::N(on),
            X::N(ap),
            X::N(off),
            X::S(kind),
            X::S(au),
            X::N(3.0),
            X::S("disgust"),
        ]
    };
    xlsx(
        &root.join("annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"),
        &[(
            "Sheet1",
            vec![
                header,
                r("a", 10.0, 14.0, 20.0, "Micro-expression", "4"),
                r("a", 40.0, 44.0, 50.0, "Micro-expression", "L14"),
                r("b", 1.0, 5.0, 30.0, "Macro-expression", "12"),
            ],
        )],
    );
    let color = root.join("part_A/spNO.1/a/color");
    frames(&color, "", 0, 1..=60);
    std::fs::remove_file(color.join("17.jpg")).unwrap();
    let l = load(root, Dataset::Casme3A, &LoadOptions::default()).unwrap();
    l.require_clean().unwrap();
    assert_eq!(l.excluded_rows, 1);
    let clips: Vec<&str> = l.samples.iter().map(|s| s.clip.as_str()).collect();
    assert_eq!(clips, ["a", "a2"]);
    assert!(
        l.samples[1]
            .frames
            .path(40)
            .ends_with("part_A/spNO.1/a/color/40.jpg")
    );
    let report = check(&l, CheckOptions::default());
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.warnings, 1);
    assert!(report.problems[0].message.contains("17.jpg"));
    assert!(report.render().contains("(1 rows excluded)"));
}

#[test]
fn sammlv_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rows: Vec<Vec<X>> = (0..9).map(|_| vec![]).collect();
    rows[0] = vec![X::S("SAMM Long Videos - V3")];
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
    let r = |s: X, f, on: f64, ap: f64, off: f64, t| {
        vec![
            s,
            X::S(f),
            X::N(1.0),
            X::N(on),
            X::N(ap),
            X::N(off),
            X::N(off - on),
            X::S(t),
            X::S("R12"),
            X::E,
        ]
    };
    rows.push(r(X::N(6.0), "006_1_1", 10.0, 15.0, 20.0, "Micro - 1/2"));
    rows.push(r(X::N(6.0), "006_1_2", 40.0, -1.0, 80.0, "Macro"));
    rows.push(r(X::S("007"), "007_3_1", 5.0, 7.0, 9.0, "Micro - 1/2"));
    rows.push(r(X::N(7.0), "007_3_2", 30.0, 29.0, 35.0, "Micro - 1/2"));
    xlsx(
        &root.join("SAMM_LongVideos_V3_Release.xlsx"),
        &[("FACS_Movement_Only", rows)],
    );
    frames(&root.join("SAMM_longvideos/006_1"), "006_1_", 4, 1..=90);
    frames(&root.join("SAMM_longvideos/007_3"), "007_3_", 4, 1..=8);
    let l = load(root, Dataset::SammLv, &LoadOptions::default()).unwrap();
    assert_eq!(l.intervals.len(), 3);
    let e: Vec<_> = l
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].row, Some(14));
    let iv = &l.intervals[1];
    assert_eq!(
        (iv.video.as_str(), iv.kind, iv.apex),
        ("006_1", ExpressionKind::Macro, None)
    );
    assert_eq!(l.intervals[2].subject, "007");
    let report = check(&l, CheckOptions::default());
    // 007_3's offset frame 9 is missing.
    let errs = errors(&report);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[1].contains("007_3_0009.jpg"), "{}", errs[1]);
    assert_eq!(report.videos, 2);
    assert_eq!(report.per_kind["micro"], 2);
}

/// A CAS(ME)^2 folder: three sheets without headers, offset 0 for "unknown".
fn casme2lv_folder(root: &Path) {
    let r = |p: f64, name, on: f64, ap: f64, off: f64, au, kind| {
        vec![
            X::N(p),
            X::S(name),
            X::N(on),
            X::N(ap),
            X::N(off),
            X::S(au),
            X::S("anger"),
            X::S(kind),
            X::S("anger"),
        ]
    };
    xlsx(
        &root.join("CAS(ME)^2code_final(Updated).xlsx"),
        &[
            (
                "Sheet1",
                vec![
                    r(
                        1.0,
                        "anger1_1",
                        10.0,
                        15.0,
                        20.0,
                        "4+R10",
                        "micro-expression",
                    ),
                    r(1.0, "anger1_2", 30.0, 35.0, 0.0, "4", "macro-expression"),
                    r(2.0, "disgust1_1", 3.0, 5.0, 8.0, "9", "macro-expression"),
                ],
            ),
            (
                "naming rule1",
                vec![
                    vec![X::S("Wang"), X::N(15.0), X::N(1.0)],
                    vec![X::S("Li"), X::N(16.0), X::N(2.0)],
                ],
            ),
            (
                "naming rule2",
                vec![
                    vec![X::S("0401"), X::S("anger1")],
                    vec![X::N(101.0), X::S("disgust1")],
                ],
            ),
        ],
    );
    frames(
        &root.join("rawpic/s15/15_0401girlcrashing"),
        "img",
        0,
        1..=40,
    );
    frames(
        &root.join("rawpic/s16/16_0101disgustingteeth"),
        "img",
        0,
        1..=10,
    );
}

#[test]
fn casme2lv_intervals_with_unknown_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    casme2lv_folder(root);
    let l = load(root, Dataset::Casme2Lv, &LoadOptions::default()).unwrap();
    l.require_clean().unwrap();
    assert_eq!(l.intervals.len(), 3);
    let v: Vec<(&str, &str)> = l
        .intervals
        .iter()
        .map(|i| (i.subject.as_str(), i.video.as_str()))
        .collect();
    assert_eq!(
        v,
        [("s15", "15_0401"), ("s15", "15_0401"), ("s16", "16_0101")]
    );
    assert_eq!(l.intervals[1].offset, None);
    assert!(
        l.intervals[2]
            .frames
            .path(3)
            .ends_with("rawpic/s16/16_0101disgustingteeth/img3.jpg")
    );
    let report = check(&l, CheckOptions::default());
    assert!(report.ok(), "{}", report.render());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("offset unknown"))
    );
    assert_eq!(report.per_kind["macro"], 2);
}

#[test]
fn missing_annotation_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for d in Dataset::ALL {
        let e = load(dir.path(), d, &LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no annotation file"), "{d}: {e}");
    }
    let e = load(
        &dir.path().join("nope"),
        Dataset::Casme2,
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}
