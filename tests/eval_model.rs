//! `aullm eval --model`: the shipped model scored on a small SynthME set without training. The
//! predictions it writes score with `aullm score` to the numbers its report prints, and its
//! long-video events are the events `aullm run` publishes on the same video.

use aullm::config::Config;
use aullm::data::Dataset;
use aullm::data::synth::{SynthConfig, generate};
use aullm::fixtures::Photo;
use aullm::jobs::eval_model::{ModelEvalOptions, run};
use std::path::Path;
use std::process::Command;

#[test]
fn eval_model_predictions_score_to_its_report_and_long_videos_match_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let photo = Photo::astronaut(&cfg.models).unwrap();
    let root = dir.path().join("synth");
    let sc = SynthConfig {
        seed: 5,
        subjects: 3,
        clips_per_subject: 2,
        long_videos: 1,
        long_seconds: 3.0,
        micros_per_video: 2,
        macros_per_video: 0,
        ..SynthConfig::ci()
    };
    generate(&sc, &photo, &root, 2).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let out = dir.path().join("eval");
    let o = ModelEvalOptions {
        model_dir: model.clone(),
        datasets: vec![format!("synth:{}", root.display()).parse().unwrap()],
        out: out.clone(),
        clip_cache: Some(dir.path().join("clips")),
        paper_metric: false,
        quiet: true,
    };
    let outcome = run(&cfg, &o).unwrap();
    let clips = outcome.clips.as_ref().expect("clip scores");
    assert_eq!(clips.samples, 6);
    assert_eq!(clips.folds.len(), 3, "one fold per subject");

    // The predictions file scores to the report's numbers.
    let opts = aullm::eval::score::ScoreOptions {
        pred: out.join("predictions.csv"),
        gt: root.clone(),
        format: Dataset::Casme2,
        load: aullm::data::LoadOptions::default(),
        threshold: 0.5,
        thresholds: None,
        aus: None,
        paper: false,
        allow_missing: false,
        unknown_offset: Default::default(),
        kind: None,
    };
    let aullm::eval::score::ScoreReport::Au(s) = aullm::eval::score::run(&opts).unwrap() else {
        panic!("AU scores expected");
    };
    assert_eq!(s.report.macro_pooled_f1, clips.macro_pooled_f1);
    assert_eq!(
        s.report.macro_mean_over_folds_f1,
        clips.macro_mean_over_folds_f1
    );
    for (a, b) in s.report.aus.iter().zip(&clips.aus) {
        assert_eq!((a.code, a.pooled), (b.code, b.pooled));
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    assert!(
        md.contains(&format!(
            "| macro-F1, pooled over clips | {} |",
            f(clips.macro_pooled_f1)
        )),
        "{md}"
    );

    // The CPU default reads the reasoner's weights in 8 bits where the kernel is vectorised:
    // the same clips with f32 weights give AU logits within 0.02 (measured 0.0042, the same as f16
    // weights) and the same decisions at the model's thresholds.
    if aullm::graph::reasoner::uses_int8(cfg.reasoner.dtype, &candle_core::Device::Cpu) {
        let mut f32_cfg = cfg.clone();
        f32_cfg.reasoner.dtype = aullm::config::DTypeChoice::F32;
        let f32_out = dir.path().join("eval-f32");
        run(
            &f32_cfg,
            &ModelEvalOptions {
                out: f32_out.clone(),
                ..o.clone()
            },
        )
        .unwrap();
        let thresholds = aullm::runtime::bundle::verify(&model).unwrap().thresholds;
        let probs = |p: &Path| -> Vec<Vec<f64>> {
            let mut r = csv::Reader::from_path(p.join("predictions.csv")).unwrap();
            r.records()
                .map(|row| {
                    let row = row.unwrap();
                    row.iter().skip(3).map(|v| v.parse().unwrap()).collect()
                })
                .collect()
        };
        let (q8, full) = (probs(&out), probs(&f32_out));
        assert_eq!(q8.len(), 6);
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let worst = q8
            .iter()
            .flatten()
            .zip(full.iter().flatten())
            .map(|(a, b)| (logit(*a) - logit(*b)).abs())
            .fold(0f64, f64::max);
        eprintln!("AU logits, int8 vs f32 weights: max |Δ| = {worst:.4}");
        for (a, b) in q8.iter().zip(&full) {
            for ((pa, pb), t) in a.iter().zip(b).zip(&thresholds) {
                // Six decimals in the file: below 1e-5 apart the logits are not resolved.
                let dl = (logit(*pa) - logit(*pb)).abs();
                assert!(
                    dl <= 0.02 || (pa - pb).abs() <= 1e-5,
                    "int8 {pa} vs f32 {pb}"
                );
                assert_eq!(*pa >= *t as f64, *pb >= *t as f64, "{pa} vs {pb} at {t}");
            }
        }
    }

    // Long videos: the same events as `aullm run` on the video (frames and AU decisions).
    let videos = outcome.videos.as_ref().expect("long-video scores");
    assert_eq!(videos.videos, 1);
    let ours: Vec<aullm::events::AuEvent> =
        aullm::events::replay::read_events(&out.join("events/001_1.jsonl")).unwrap();
    let live = dir.path().join("run.jsonl");
    let st = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .arg("run")
        .arg(root.join("videos/001_1.avi"))
        .arg("--sink")
        .arg(format!("jsonl:{}", live.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = aullm::events::replay::read_events(&live).unwrap();
    let key = |e: &aullm::events::AuEvent| {
        (
            e.onset.frame,
            e.apex.frame,
            e.offset.frame,
            e.aus
                .iter()
                .map(|d| {
                    (
                        d.au.clone(),
                        d.present,
                        (d.probability * 1e4).round() as i64,
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    assert!(!ours.is_empty(), "the video has spotted events");
    assert_eq!(
        ours.iter().map(key).collect::<Vec<_>>(),
        theirs.iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(
        videos.spotting.tp + videos.spotting.fp,
        ours.len() as u64,
        "every event is a TP or an FP"
    );
}
