//! Metric parity with scikit-learn: tests/reference/metric_expectations.json holds fixed
//! pseudo-random predictions and the values scikit-learn computed for them
//! (tests/reference/make_metric_expectations.py). aullm must agree to 1e-12.

use aullm::eval::metrics::{AuColumn, au_report};
use aullm::eval::spotting::{Span, spotting_report};
use serde_json::Value;
use std::collections::BTreeMap;

const TOL: f64 = 1e-12;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/metric_expectations.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (None, None) => assert!(want.is_null(), "{what}: expected {want}"),
        (Some(g), Some(w)) => assert!((g - w).abs() <= TOL, "{what}: got {g}, sklearn {w}"),
        (g, _) => panic!("{what}: got {g:?}, sklearn {want}"),
    }
}

#[test]
fn au_metrics_match_sklearn() {
    let f = fixture();
    let inputs = &f["au"]["inputs"];
    let expected = &f["au"]["expected"];
    let threshold = expected["threshold"].as_f64().unwrap();
    let folds: Vec<usize> = inputs["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let n_folds = folds.iter().max().unwrap() + 1;
    let columns: Vec<AuColumn> = inputs["aus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let truth: Vec<bool> = a["truth"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() == 1)
                .collect();
            let prob: Vec<f64> = a["prob"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            AuColumn {
                code: a["code"].as_u64().unwrap() as u16,
                decision: prob.iter().map(|&p| p >= threshold).collect(),
                truth,
                prob: Some(prob),
            }
        })
        .collect();
    let names = (0..n_folds).map(|i| format!("s{i}")).collect();
    let r = au_report(&columns, &folds, names, true);
    let want_aus = expected["aus"].as_array().unwrap();
    assert_eq!(r.aus.len(), want_aus.len());
    for (got, want) in r.aus.iter().zip(want_aus) {
        let code = got.code;
        assert_eq!(u64::from(code), want["code"].as_u64().unwrap());
        close(
            &format!("AU{code} pooled"),
            got.pooled_f1,
            &want["pooled_f1"],
        );
        let wf = want["fold_f1"].as_array().unwrap();
        assert_eq!(got.fold_f1.len(), wf.len());
        for (i, (g, w)) in got.fold_f1.iter().zip(wf).enumerate() {
            close(&format!("AU{code} fold {i}"), *g, w);
        }
        close(
            &format!("AU{code} mean over folds"),
            got.mean_over_folds_f1,
            &want["mean_over_folds_f1"],
        );
        let paper = got.paper.unwrap();
        close(
            &format!("AU{code} paper"),
            Some(paper.f1),
            &want["paper_f1"],
        );
        let t = (!paper.threshold.is_infinite()).then_some(paper.threshold);
        close(
            &format!("AU{code} paper threshold"),
            t,
            &want["paper_threshold"],
        );
    }
    close(
        "macro pooled",
        r.macro_pooled_f1,
        &expected["macro_pooled_f1"],
    );
    close(
        "macro mean over folds",
        r.macro_mean_over_folds_f1,
        &expected["macro_mean_over_folds_f1"],
    );
    close("paper macro", r.paper_macro_f1, &expected["paper_macro_f1"]);
}

#[test]
fn spotting_matches_the_independent_reference() {
    let f = fixture();
    let spans = |v: &Value| -> Vec<Span> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| Span {
                onset: p[0].as_u64().unwrap() as u32,
                offset: p[1].as_u64().unwrap() as u32,
            })
            .collect()
    };
    let mut truth = BTreeMap::new();
    let mut pred = BTreeMap::new();
    for (video, v) in f["spotting"]["inputs"].as_object().unwrap() {
        truth.insert(video.clone(), spans(&v["truth"]));
        pred.insert(video.clone(), spans(&v["pred"]));
    }
    let r = spotting_report(&truth, &pred);
    let e = &f["spotting"]["expected"];
    assert_eq!(r.counts.tp, e["tp"].as_u64().unwrap());
    assert_eq!(r.counts.fp, e["fp"].as_u64().unwrap());
    assert_eq!(r.counts.fn_, e["fn"].as_u64().unwrap());
    close("spotting F1", r.f1, &e["f1"]);
}
