//! Training on real SynthME clips with the real SmolLM2 reasoner, in a tiny front-end configuration:
//! the loss falls, CCR's gradient reaches δ and every LoRA tensor, the base LLM stays as loaded,
//! `--resume` continues exactly, and export → load → predict reproduces training-time predictions.

use aullm::config::Config;
use aullm::data::synth::{SynthConfig, generate};
use aullm::fixtures::Photo;
use aullm::graph::model::Net;
use aullm::rng::Rng;
use aullm::train::clips::{AlignedClip, ClipSet, align_samples};
use aullm::train::trainer::{
    RunOptions, batch_loss, make_batch, optimiser, positive_weights, predict, train,
};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::sync::OnceLock;

/// A tiny front-end (32 px, 4 frames) in front of the real SmolLM2-135M reasoner.
fn tiny_config() -> Config {
    let mut cfg = Config::load(
        None,
        &[
            "frontend.size=32".into(),
            "frontend.frames=4".into(),
            "frontend.channels=[4, 8, 8, 12]".into(),
            "frontend.node_dim=8".into(),
            "frontend.head_hidden=8".into(),
            "train.batch_size=3".into(),
            "train.warmup_steps=0".into(),
            "train.lr_visual=1e-3".into(),
            "train.lr_lora=5e-4".into(),
            "train.crop_margin=2".into(),
            "train.lambda_ccr=1.0".into(),
        ],
    )
    .unwrap();
    cfg.train.threads = 2;
    cfg
}

/// SynthME's CI preset, generated once and aligned by the real face path.
fn clips() -> &'static ClipSet {
    &synth().1
}

/// The CI preset's folder and its aligned clips.
fn synth() -> &'static (std::path::PathBuf, ClipSet) {
    static SET: OnceLock<(std::path::PathBuf, ClipSet)> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let photo = Photo::astronaut(&Config::default().models).unwrap();
        generate(&SynthConfig::ci(), &photo, &dir, 2).unwrap();
        let loaded = aullm::data::load(
            &dir,
            aullm::data::Dataset::Casme2,
            &aullm::data::LoadOptions::default(),
        )
        .unwrap();
        let set = align_samples(&loaded.samples, &Config::default(), 2).unwrap();
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        assert_eq!(set.clips.len(), 6);
        (dir, set)
    })
}

fn refs(set: &ClipSet) -> Vec<&AlignedClip> {
    set.clips.iter().collect()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn loss_falls_and_gradients_reach_delta_and_lora_but_not_the_base() {
    let cfg = tiny_config();
    let set = clips();
    let batch: Vec<&AlignedClip> = refs(set)[..3].to_vec();
    let mut net = Net::new(&cfg.net_spec(), root()).unwrap();
    let base_before: Vec<Vec<f32>> = net
        .reasoner
        .as_ref()
        .unwrap()
        .decoder()
        .base_attention_weights()
        .iter()
        .map(flat)
        .collect();
    let lora_before: Vec<Vec<f32>> = net
        .lora_vars()
        .iter()
        .map(|(_, v)| flat(v.as_tensor()))
        .collect();
    let delta_before = flat(net.ccr.delta.as_tensor());
    let mut opt = optimiser(&net, &cfg).unwrap();
    let pw = Tensor::new(positive_weights(&batch, &cfg.frontend.aus), &Device::Cpu).unwrap();
    let mut losses = Vec::new();
    for step in 0..8 {
        // One fixed batch without augmentation: the loss must fall as the model fits it.
        let (x, y) = make_batch(&batch, &cfg, None, &net.device).unwrap();
        let mut rng = Rng::new(0); // the same CCR targets every step
        let (loss, parts) = batch_loss(&net, &x, &y, &pw, &cfg, &mut rng).unwrap();
        assert!(parts.ccr > 0.0, "CCR must be active in this configuration");
        let grads = loss.backward().unwrap();
        if step == 0 {
            // CCR is the only path to δ: its gradient must be there and non-zero.
            let g = grads
                .get(net.ccr.delta.as_tensor())
                .expect("no gradient for δ");
            assert!(flat(g).iter().any(|v| *v != 0.0));
            // LoRA B starts at zero, so B (and the head) get gradients on the first step.
            for (name, v) in net.lora_vars() {
                if name.ends_with(".b") || name.starts_with("head") {
                    let g = grads
                        .get(v.as_tensor())
                        .unwrap_or_else(|| panic!("no gradient for {name}"));
                    assert!(
                        flat(g).iter().any(|x| *x != 0.0),
                        "zero gradient for {name}"
                    );
                }
            }
        }
        opt.step(&grads, 1.0, 1.0).unwrap();
        net.after_step().unwrap();
        losses.push(parts.cls);
    }
    let first = (losses[0] + losses[1]) / 2.0;
    let last = (losses[6] + losses[7]) / 2.0;
    assert!(
        last < 0.8 * first,
        "classification loss did not fall: {losses:?}"
    );
    // Every LoRA tensor and δ moved; every base attention weight is bit-identical.
    for ((name, v), before) in net.lora_vars().iter().zip(&lora_before) {
        assert_ne!(&flat(v.as_tensor()), before, "{name} did not change");
    }
    assert_ne!(flat(net.ccr.delta.as_tensor()), delta_before);
    let base_after = net
        .reasoner
        .as_ref()
        .unwrap()
        .decoder()
        .base_attention_weights();
    assert_eq!(base_after.len(), base_before.len());
    for (a, b) in base_after.iter().zip(&base_before) {
        assert_eq!(&flat(a), b, "a base LLM weight changed");
    }
}

#[test]
fn resume_continues_exactly_and_export_reproduces_predictions() {
    let cfg = {
        let mut c = tiny_config();
        c.train.epochs = 2;
        c
    };
    let set = clips();
    let all = refs(set);
    let (tr, va) = (&all[..4], &all[4..]);
    let dir = tempfile::tempdir().unwrap();

    // Uninterrupted: 2 epochs of 2 steps.
    let straight = dir.path().join("straight");
    let mut a = Net::new(&cfg.net_spec(), root()).unwrap();
    let sa = train(
        &mut a,
        &cfg,
        tr,
        va,
        &RunOptions {
            out: straight.clone(),
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((sa.epochs, sa.steps), (2, 4));

    // Stopped after 3 steps (mid-epoch, as Ctrl-C would), then resumed in a fresh process state.
    let split = dir.path().join("split");
    let mut b = Net::new(&cfg.net_spec(), root()).unwrap();
    let first = train(
        &mut b,
        &cfg,
        tr,
        va,
        &RunOptions {
            out: split.clone(),
            quiet: true,
            max_steps: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(first.stopped_early);
    assert_eq!(first.steps, 3);
    let mut c = Net::new(&cfg.net_spec(), root()).unwrap();
    let sc = train(
        &mut c,
        &cfg,
        tr,
        va,
        &RunOptions {
            out: split.clone(),
            quiet: true,
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sc.steps, 4);
    for ((n1, v1), (_, v2)) in a.visual_vars().iter().zip(c.visual_vars()) {
        assert_eq!(
            flat(v1.as_tensor()),
            flat(v2.as_tensor()),
            "{n1} differs after resume"
        );
    }
    for ((n1, v1), (_, v2)) in a.lora_vars().iter().zip(c.lora_vars()) {
        assert_eq!(
            flat(v1.as_tensor()),
            flat(v2.as_tensor()),
            "{n1} differs after resume"
        );
    }
    assert_eq!(sa.thresholds, sc.thresholds);

    // A checkpoint written for another configuration is refused with a clear error.
    let mut other = cfg.clone();
    other.train.seed = 99;
    let mut d = Net::new(&other.net_spec(), root()).unwrap();
    let err = train(
        &mut d,
        &other,
        tr,
        va,
        &RunOptions {
            out: split,
            quiet: true,
            resume: true,
            ..Default::default()
        },
    )
    .expect_err("resume with another configuration must fail");
    assert!(
        format!("{err:#}").contains("another configuration"),
        "{err:#}"
    );

    // `aullm export --run` rebuilds the same bundle from the finished run's checkpoint alone.
    let model_dir = dir.path().join("model");
    let m = aullm::export::bundle::export(&a, &cfg, &sa.thresholds, "tiny", &model_dir).unwrap();
    let ck = aullm::jobs::export::checkpoint_of(&straight, None).unwrap();
    let rebuilt =
        aullm::jobs::export::export_run(&ck, &cfg, "tiny", &dir.path().join("rebuilt"), root())
            .unwrap();
    for (file, hash) in &m.files {
        assert_eq!(
            rebuilt.files.get(file),
            Some(hash),
            "export --run wrote a different {file} than the trained network's export"
        );
    }
    assert_eq!(rebuilt.files.len(), m.files.len());
    assert_eq!(rebuilt.thresholds, m.thresholds);
    // A run stopped before its last epoch has no thresholds and is refused, naming the file.
    let ck = aullm::jobs::export::checkpoint_of(&dir.path().join("split"), None).unwrap();
    std::fs::remove_file(ck.join("thresholds.json")).ok();
    let err = aullm::jobs::export::export_run(&ck, &cfg, "x", &dir.path().join("x"), root())
        .expect_err("an unfinished run must not export");
    assert!(format!("{err:#}").contains("thresholds.json"), "{err:#}");

    // Export, load (integrity checked, f32 reasoner), predict: same probabilities as training-time.
    let want = predict(&a, &all, &cfg).unwrap();
    let mut det = aullm::runtime::detector::Detector::load(
        &model_dir,
        &Config::default(),
        Some(aullm::config::DTypeChoice::F32),
    )
    .unwrap();
    let mut data = Vec::new();
    for c in &all {
        let (x, _) = make_batch(&[*c], &cfg, None, &Device::Cpu).unwrap();
        data.extend(flat(&x));
    }
    let got = det.predict(&data, all.len()).unwrap();
    for (g, w) in got.iter().zip(&want) {
        for (x, y) in g.iter().zip(w) {
            assert!(
                (x - y).abs() < 1e-4,
                "exported model predicts {x}, training-time {y}"
            );
        }
    }
    assert_eq!(det.manifest.thresholds, sa.thresholds);
    assert_eq!(det.execution_provider(), "CPUExecutionProvider");

    // The same model with candle running the front-end from frontend.safetensors (what a GPU
    // without ONNX Runtime's CUDA build gets; here on the CPU): the same probabilities and
    // decisions, the engine named, and a fork that shares it computes the same.
    let mut on_candle = Config::default();
    on_candle.frontend.engine = aullm::graph::config::FrontendEngine::Candle;
    let mut cdet = aullm::runtime::detector::Detector::load(
        &model_dir,
        &on_candle,
        Some(aullm::config::DTypeChoice::F32),
    )
    .unwrap();
    assert_eq!(cdet.execution_provider(), "candle on cpu");
    let by_candle = cdet.predict(&data, all.len()).unwrap();
    for (c, o) in by_candle.iter().zip(&got) {
        for ((x, y), t) in c.iter().zip(o).zip(&sa.thresholds) {
            assert!(
                (x - y).abs() < 1e-4,
                "candle front-end {x}, ONNX Runtime {y}"
            );
            assert_eq!(
                x >= t,
                y >= t,
                "decision differs at threshold {t}: {x} vs {y}"
            );
        }
    }
    let forked = cdet.fork().unwrap().predict(&data, all.len()).unwrap();
    assert_eq!(forked, by_candle);

    // A damaged file is caught by the integrity check, naming the file.
    let onnx = model_dir.join("frontend.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let err = aullm::runtime::bundle::verify(&model_dir).unwrap_err();
    assert!(format!("{err:#}").contains("frontend.onnx"), "{err:#}");
}

#[test]
fn zero_epochs_only_choose_thresholds_and_finish_the_run() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 0;
    let all = refs(clips());
    let (tr, va) = (&all[..4], &all[4..]);
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new(&cfg.net_spec(), root()).unwrap();
    let before = predict(&net, &all, &cfg).unwrap();
    let opts = RunOptions {
        out: dir.path().to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    let s = train(&mut net, &cfg, tr, va, &opts).unwrap();
    assert_eq!((s.epochs, s.steps, s.stopped_early), (0, 0, false));
    // The network is untouched; the run is finished, with the thresholds validation chose.
    assert_eq!(predict(&net, &all, &cfg).unwrap(), before);
    let ckpt = aullm::train::state::checkpoint_dir(dir.path());
    assert_eq!(
        aullm::train::state::load_thresholds(&ckpt).unwrap(),
        Some(s.thresholds.clone())
    );
}

#[test]
fn fixed_thresholds_are_one_half_where_validation_would_choose_others() {
    let all = refs(clips());
    let (tr, va) = (&all[..4], &all[4..]);
    let run = |rule: &str| {
        let mut cfg = tiny_config();
        cfg.train.epochs = 0;
        cfg.train.thresholds = serde_json::from_str(&format!("\"{rule}\"")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut net = Net::new(&cfg.net_spec(), root()).unwrap();
        let opts = RunOptions {
            out: dir.path().to_path_buf(),
            quiet: true,
            ..Default::default()
        };
        let s = train(&mut net, &cfg, tr, va, &opts).unwrap();
        let ckpt = aullm::train::state::checkpoint_dir(dir.path());
        let saved = aullm::train::state::load_thresholds(&ckpt).unwrap();
        (s.thresholds, saved, cfg.to_toml())
    };
    let (chosen, _, default_toml) = run("validation");
    assert!(chosen.iter().any(|&t| t != 0.5), "{chosen:?}");
    // The default rule is left out of saved configurations (older runs keep their fingerprints).
    assert!(!default_toml.contains("thresholds"), "{default_toml}");
    let (fixed, saved, fixed_toml) = run("fixed");
    assert_eq!(fixed, vec![0.5; fixed.len()]);
    assert_eq!(saved, Some(fixed));
    assert!(
        fixed_toml.contains("thresholds = \"fixed\""),
        "{fixed_toml}"
    );
}

#[test]
fn a_gpu_training_device_in_a_cpu_build_is_refused_naming_the_key() {
    if candle_core::utils::cuda_is_available() {
        return; // a CUDA build may well open it
    }
    let mut cfg = tiny_config();
    cfg.train.device = aullm::graph::devices::DeviceName::Cuda(0);
    let err = match Net::new(&cfg.net_spec(), root()) {
        Ok(_) => panic!("a CPU build opened cuda:0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("train.device = \"cuda:0\""), "{err}");
    assert!(err.contains("cargo feature `cuda`"), "{err}");
}

/// `aullm train` on the CI preset with `protocol`, writing to `out`.
fn run_protocol(
    cfg: &Config,
    protocol: &str,
    out: &Path,
    max_steps: Option<u64>,
) -> anyhow::Result<(aullm::train::protocol::ProtocolOutcome, Option<Net>)> {
    run_protocol_in_parts(cfg, protocol, out, max_steps, false, (None, None))
}

/// [`run_protocol`] with `--resume`, `--max-folds` and `--shard`.
fn run_protocol_in_parts(
    cfg: &Config,
    protocol: &str,
    out: &Path,
    max_steps: Option<u64>,
    resume: bool,
    (max_folds, shard): (Option<usize>, Option<(usize, usize)>),
) -> anyhow::Result<(aullm::train::protocol::ProtocolOutcome, Option<Net>)> {
    let (dir, _) = synth();
    aullm::train::protocol::run(
        cfg,
        &aullm::train::protocol::ProtocolOptions {
            datasets: vec![format!("casme2:{}", dir.display()).parse().unwrap()],
            protocol: protocol.parse().unwrap(),
            out: out.to_path_buf(),
            resume,
            max_steps,
            cache_dir: Some(out.join("cache")),
            root: root().to_path_buf(),
            quiet: true,
            interrupt: None,
            paper_metric: false,
            max_folds,
            shard,
        },
    )
}

#[test]
fn two_stage_training_starts_from_the_same_folds_frontend_and_refuses_another_split() {
    let (_, set) = synth();
    let subjects: std::collections::BTreeSet<String> = set
        .clips
        .iter()
        .map(|c| c.key.rsplit_once('/').unwrap().0.to_string())
        .collect();
    let subjects: Vec<String> = subjects.into_iter().collect();
    assert!(subjects.len() >= 2, "{subjects:?}");
    let dir = tempfile::tempdir().unwrap();

    // Stage 1: the MLP-head ablation, one finished epoch, with the first subject held out.
    let mut mlp = tiny_config();
    mlp.train.epochs = 1;
    mlp.frontend.ablation = aullm::config::Ablation::MlpHead;
    let stage1 = dir.path().join("stage1");
    let split = format!("split:{}", subjects[0]);
    run_protocol(&mlp, &split, &stage1, None).unwrap();
    let saved = candle_core::safetensors::load(
        stage1.join("fold-split/checkpoint/frontend.safetensors"),
        &Device::Cpu,
    )
    .unwrap();

    // Stage 2: the LLM model starts from exactly that front-end (no step taken, so it is unchanged).
    let mut llm = tiny_config();
    llm.train.epochs = 1;
    llm.train.init_frontend = stage1.display().to_string();
    let (_, net) = run_protocol(&llm, &split, &dir.path().join("stage2"), Some(0)).unwrap();
    let net = net.expect("one fold returns its network");
    let fresh = Net::new(&llm.net_spec(), root()).unwrap();
    let mut compared = 0;
    for ((name, var), (_, fresh_var)) in net.visual_vars().iter().zip(fresh.visual_vars()) {
        let Some(key) = name.strip_prefix("frontend.") else {
            continue;
        };
        assert_eq!(flat(var.as_tensor()), flat(&saved[key]), "{name}");
        compared += usize::from(flat(var.as_tensor()) != flat(fresh_var.as_tensor()));
    }
    assert!(compared > 0, "the initialised front-end equals a fresh one");

    // CCR's δ starts fresh, unless `train.init_delta` carries stage 1's over as well.
    let stage1_delta = candle_core::safetensors::load(
        stage1.join("fold-split/checkpoint/optimiser.safetensors"),
        &Device::Cpu,
    )
    .unwrap()["ccr.delta"]
        .clone();
    assert_ne!(flat(net.ccr.delta.as_tensor()), flat(&stage1_delta));
    llm.train.init_delta = true;
    let (_, net) = run_protocol(&llm, &split, &dir.path().join("stage2d"), Some(0)).unwrap();
    assert_eq!(
        flat(net.unwrap().ccr.delta.as_tensor()),
        flat(&stage1_delta)
    );
    llm.train.init_delta = false;

    // A stage 1 that held out another subject trained on this fold's test subject: refused.
    let other = dir.path().join("other");
    run_protocol(&mlp, &format!("split:{}", subjects[1]), &other, None).unwrap();
    llm.train.init_frontend = other.display().to_string();
    let err = run_protocol(&llm, &split, &dir.path().join("leak"), Some(0))
        .err()
        .expect("a front-end trained on the test subject must be refused");
    assert!(format!("{err:#}").contains("leak test subjects"), "{err:#}");
}

#[test]
fn fine_tuning_starts_from_a_model_folder_and_refuses_another_graph() {
    let dir = tempfile::tempdir().unwrap();
    // A model trained on every clip and exported, as `aullm train` writes it (the shipped
    // `default` is one such folder).
    let mut cfg = tiny_config();
    cfg.train.epochs = 1;
    let (_, net) = run_protocol(&cfg, "all", &dir.path().join("pre"), None).unwrap();
    let net = net.expect("`all` returns its network");
    let model = dir.path().join("model");
    let thresholds = vec![0.5; cfg.frontend.aus.len()];
    aullm::export::bundle::export(&net, &cfg, &thresholds, "pre", &model).unwrap();

    // `--init MODEL` (train.init_frontend naming a model folder): every fold's front-end starts
    // from the model's, under any protocol, before the first step.
    let mut tune = tiny_config();
    tune.train.init_frontend = model.display().to_string();
    let (outcome, tuned) = run_protocol(&tune, "all", &dir.path().join("tune"), Some(0)).unwrap();
    assert_eq!(outcome.folds.len(), 1);
    let tuned = tuned.unwrap();
    for ((name, a), (_, b)) in tuned.visual_vars().iter().zip(net.visual_vars()) {
        if name.starts_with("frontend.") {
            assert_eq!(flat(a.as_tensor()), flat(b.as_tensor()), "{name}");
        }
    }
    let (_, set) = synth();
    let subject = set.clips[0].key.rsplit_once('/').unwrap().0.to_string();
    run_protocol(
        &tune,
        &format!("split:{subject}"),
        &dir.path().join("split"),
        Some(0),
    )
    .unwrap();

    // A model bundle keeps no CCR δ: asking for it is an error naming the file.
    let mut delta = tune.clone();
    delta.train.init_delta = true;
    let err = run_protocol(&delta, "all", &dir.path().join("delta"), Some(0))
        .err()
        .expect("a bundle has no δ");
    assert!(
        format!("{err:#}").contains("optimiser.safetensors"),
        "{err:#}"
    );

    // A model whose graph differs (here the input) is refused, naming the key.
    let mut other = tune.clone();
    other.frontend.input = aullm::config::ClipInput::Flow;
    let err = run_protocol(&other, "all", &dir.path().join("other"), Some(0))
        .err()
        .expect("another front-end graph must be refused");
    assert!(format!("{err:#}").contains("frontend.input"), "{err:#}");
}

/// `--max-folds` and `--shard` spread LOSO over several runs and processes: each trains only its
/// folds, the report says it is partial, and finished folds are scored again rather than retrained.
#[test]
fn max_folds_and_shards_train_loso_in_parts_and_label_the_report_partial() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 1;
    cfg.frontend.ablation = aullm::config::Ablation::MlpHead;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loso");
    let render = |o: &aullm::train::protocol::ProtocolOutcome| {
        aullm::eval::report::render_markdown(
            &o.report_info(&aullm::config::Config::default()),
            o.report.as_ref().unwrap(),
            None,
        )
    };
    let names = |o: &aullm::train::protocol::ProtocolOutcome| -> Vec<String> {
        o.folds.iter().map(|f| f.name.clone()).collect()
    };

    // Shard 1 of 2, one fold: the protocol's second fold.
    let (a, _) =
        run_protocol_in_parts(&cfg, "loso", &out, None, true, (Some(1), Some((1, 2)))).unwrap();
    assert_eq!(a.folds.len(), 1);
    assert!(a.protocol_folds >= 3, "{} folds", a.protocol_folds);
    let partial = format!(
        "Partial report: 1 of the protocol's {} folds",
        a.protocol_folds
    );
    assert!(render(&a).contains(&partial), "{}", render(&a));
    let second = &a.folds[0].name;
    assert!(
        a.predictions
            .iter()
            .all(|p| p.key.starts_with(&format!("{second}/")))
    );

    // Shard 0 of 2, no limit: every even fold, and the finished odd one scored again, not retrained.
    let (b, _) =
        run_protocol_in_parts(&cfg, "loso", &out, None, true, (None, Some((0, 2)))).unwrap();
    assert_eq!(b.folds.len(), 1 + a.protocol_folds.div_ceil(2));
    assert!(names(&b).contains(second));
    let of_second = |o: &aullm::train::protocol::ProtocolOutcome| -> Vec<(String, Vec<f32>)> {
        o.predictions
            .iter()
            .filter(|p| p.key.starts_with(&format!("{second}/")))
            .map(|p| (p.key.clone(), p.prob.clone()))
            .collect()
    };
    assert!(!of_second(&a).is_empty());
    assert_eq!(
        of_second(&a),
        of_second(&b),
        "the finished fold was retrained"
    );
    let th = |o: &aullm::train::protocol::ProtocolOutcome, name: &str| {
        o.folds
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .summary
            .thresholds
            .clone()
    };
    assert_eq!(th(&a, second), th(&b, second));

    // No shard, no limit: the rest of shard 1, and the report is complete.
    let (c, _) = run_protocol_in_parts(&cfg, "loso", &out, None, true, (None, None)).unwrap();
    assert_eq!(c.folds.len(), c.protocol_folds);
    assert!(!render(&c).contains("Partial report"), "{}", render(&c));
    // The training time counts every fold's epoch, those of earlier runs included.
    assert!(c.folds.iter().all(|f| f.summary.history.len() == 1));
    let secs = |o: &aullm::train::protocol::ProtocolOutcome| o.training_seconds();
    assert!(secs(&a) > 0.0 && secs(&b) > secs(&a) && secs(&c) >= secs(&b));
}

/// Shards started apart (the second once the first has finished), in either order: the shard
/// that finishes last writes the complete report, with the other's folds scored from their
/// checkpoints (issue 23: the last writer's report held only its own folds, labelled partial).
#[test]
fn shards_run_one_after_the_other_in_either_order_leave_a_complete_report() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 1;
    cfg.frontend.ablation = aullm::config::Ablation::MlpHead;
    for order in [[0, 1], [1, 0]] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("loso");
        let mut total = 0;
        for (k, i) in order.into_iter().enumerate() {
            let (o, _) =
                run_protocol_in_parts(&cfg, "loso", &out, None, true, (None, Some((i, 2))))
                    .unwrap();
            total = o.protocol_folds;
            let md = std::fs::read_to_string(out.join("report.md")).unwrap();
            assert_eq!(
                md.contains("Partial report"),
                k == 0,
                "order {order:?}: {md}"
            );
        }
        let text = std::fs::read_to_string(out.join("report.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let folds = json["outcome"]["folds"].as_array().unwrap().len();
        assert_eq!(folds, total, "order {order:?}");
    }
}

/// Two shards running at once each write the shared report when they finish; the one written last
/// holds every fold, because each writer scores, under the report lock, the folds the other
/// finished while it trained. (Without that the later writer could miss the other's last fold.)
#[test]
fn concurrent_shards_leave_a_complete_report() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 1;
    cfg.frontend.ablation = aullm::config::Ablation::MlpHead;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loso");
    // Align the clips once, so that both shards start training together.
    run_protocol_in_parts(&cfg, "loso", &out, None, true, (Some(0), None)).unwrap();
    let shard = |i: usize| {
        let (cfg, out) = (cfg.clone(), out.clone());
        std::thread::spawn(move || {
            let (o, _) =
                run_protocol_in_parts(&cfg, "loso", &out, None, true, (None, Some((i, 2))))
                    .unwrap();
            assert_eq!(o.report_files.len(), 3, "{:?}", o.report_files);
            o.protocol_folds
        })
    };
    let (a, b) = (shard(0), shard(1));
    let protocol_folds = a.join().unwrap();
    b.join().unwrap();
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let folds: Vec<&str> = json["outcome"]["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(folds.len(), protocol_folds, "{folds:?}");
    let pooled = &json["outcome"]["report"]["macro_pooled_f1"];
    assert!(
        pooled.as_f64().is_some(),
        "no scores in report.json: {pooled}"
    );
    let mut sorted = folds.clone();
    sorted.sort();
    assert_eq!(folds, sorted, "folds out of protocol order");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!md.contains("Partial report"), "{md}");
}

/// A finished fold leaves `result.json`. With its checkpoint deleted (for disk, or on another
/// machine), a resumed protocol scores the fold from that file, exactly as before, and trains only
/// the others; a file written under another configuration, or a damaged one, is an error naming it.
#[test]
fn finished_folds_are_scored_from_their_result_files_once_checkpoints_are_gone() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 1;
    cfg.frontend.ablation = aullm::config::Ablation::MlpHead;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loso");
    let (a, _) = run_protocol_in_parts(&cfg, "loso", &out, None, true, (Some(1), None)).unwrap();
    assert_eq!(a.folds.len(), 1);
    let finished: Vec<std::path::PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("result.json").exists())
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    let fold_dir = &finished[0];
    std::fs::remove_dir_all(fold_dir.join("checkpoint")).unwrap();

    let (b, _) = run_protocol_in_parts(&cfg, "loso", &out, None, true, (Some(1), None)).unwrap();
    assert_eq!(b.folds.len(), 2, "one fold from its file, one trained");
    assert_eq!(b.folds[0].name, a.folds[0].name);
    assert!(
        !fold_dir.join("checkpoint").exists(),
        "the finished fold was trained again"
    );
    // Key, probabilities, decisions and truth of the first fold's held-out clips.
    let rows = |o: &aullm::train::protocol::ProtocolOutcome| -> Vec<serde_json::Value> {
        o.predictions
            .iter()
            .filter(|p| p.fold == 0)
            .map(|p| serde_json::to_value(p).unwrap())
            .collect()
    };
    assert!(!rows(&a).is_empty());
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(a.folds[0].summary.thresholds, b.folds[0].summary.thresholds);
    assert_eq!(a.folds[0].counts, b.folds[0].counts);
    assert!(b.predictions.iter().any(|p| p.fold == 1));

    // Another configuration: the file is refused, not mixed into the report.
    let mut other = cfg.clone();
    other.train.lr_visual *= 2.0;
    let err = run_protocol_in_parts(&other, "loso", &out, None, true, (Some(0), None))
        .err()
        .expect("a result of another configuration must be refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("result.json") && msg.contains("another configuration"),
        "{msg}"
    );

    // A damaged file is named.
    std::fs::write(fold_dir.join("result.json"), "{").unwrap();
    let err = run_protocol_in_parts(&cfg, "loso", &out, None, true, (Some(0), None))
        .err()
        .expect("a damaged result must be an error");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("result.json") && msg.contains("not a fold result"),
        "{msg}"
    );
}

#[test]
fn the_mlp_skip_starts_as_the_mlp_head_learns_and_exports_what_it_trained() {
    let mut cfg = tiny_config();
    cfg.reasoner.mlp_skip = true;
    let all = refs(clips());
    let mut net = Net::new(&cfg.net_spec(), root()).unwrap();
    let (x, y) = make_batch(&all, &cfg, None, &net.device).unwrap();
    // The LLM head starts at zero: the sum is the MLP head's logits, exactly.
    let (logits, out) = net.forward(&x).unwrap();
    assert_eq!(
        flat(&logits),
        flat(&net.frontend.net.head_logits(&out).unwrap())
    );
    let mut opt = optimiser(&net, &cfg).unwrap();
    let pw = Tensor::new(positive_weights(&all, &cfg.frontend.aus), &Device::Cpu).unwrap();
    let mut rng = Rng::new(0);
    for _ in 0..3 {
        aullm::train::trainer::train_step(&mut net, &mut opt, &x, &y, &pw, &cfg, &mut rng, 1.0)
            .unwrap();
    }
    // Both paths learn: the LLM head is no longer zero and the sum is no longer the MLP head's.
    let head = flat(net.reasoner.as_ref().unwrap().head().weight.as_tensor());
    assert!(head.iter().any(|v| *v != 0.0), "the LLM head did not learn");
    let (logits, out) = net.forward(&x).unwrap();
    let mlp = flat(&net.frontend.net.head_logits(&out).unwrap());
    assert!(
        flat(&logits)
            .iter()
            .zip(&mlp)
            .any(|(a, b)| (a - b).abs() > 1e-4),
        "the LLM adds nothing after training"
    );
    // Exported and loaded as a model, it predicts what the trained network predicts.
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    aullm::export::bundle::export(&net, &cfg, &[0.5; 8], "skip", &model_dir).unwrap();
    let want = predict(&net, &all, &cfg).unwrap();
    let mut det = aullm::runtime::detector::Detector::load(
        &model_dir,
        &Config::default(),
        Some(aullm::config::DTypeChoice::F32),
    )
    .unwrap();
    let got = det.predict(&flat(&x), all.len()).unwrap();
    for (g, w) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() < 1e-4,
                "exported model predicts {a}, training-time {b}"
            );
        }
    }
}
