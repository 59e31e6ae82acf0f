//! The protocol runner behind `aullm train` and `aullm eval`: align the datasets' clips, run a
//! protocol's folds (training a fresh network per fold), score the held-out predictions, write the
//! report, and return the network trained on all data for export.

use crate::config::Config;
use crate::eval::metrics::{AuColumn, AuReport, au_report};
use crate::graph::model::Net;
use crate::train::clips::{AlignedClip, default_cache_dir};
use crate::train::fold_result;
use crate::train::trainer::{RunOptions, TrainSummary, predict, train};
use crate::train::{DatasetArg, Protocol, folds, inner_split, load_clips};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What `aullm train` / `aullm eval` were asked to do.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// Datasets to read.
    pub datasets: Vec<DatasetArg>,
    /// Protocol.
    pub protocol: Protocol,
    /// Output folder.
    pub out: PathBuf,
    /// Resume each fold from its checkpoint.
    pub resume: bool,
    /// Stop each fold after this many steps.
    pub max_steps: Option<u64>,
    /// Clip cache folder (default: beside the model cache).
    pub cache_dir: Option<PathBuf>,
    /// Folder prior-graph paths are relative to.
    pub root: PathBuf,
    /// No progress lines.
    pub quiet: bool,
    /// Ctrl-C flag.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Add the optimistic paper-compatible metric.
    pub paper_metric: bool,
    /// Train at most this many unfinished folds, then stop (finished folds are still scored).
    pub max_folds: Option<usize>,
    /// `(i, n)`: train only folds whose index is i modulo n (finished folds are still scored), so
    /// that n processes can share a protocol.
    pub shard: Option<(usize, usize)>,
}

/// One held-out prediction.
#[derive(Debug, Clone, Serialize)]
pub struct TestPrediction {
    /// `dataset/subject/clip`.
    pub key: String,
    /// Index into `ProtocolOutcome::folds`.
    pub fold: usize,
    /// Probability per AU.
    pub prob: Vec<f32>,
    /// Decision per AU (at the fold's training-chosen thresholds).
    pub decision: Vec<bool>,
    /// Truth per AU.
    pub truth: Vec<bool>,
}

/// One fold's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FoldOutcome {
    /// Fold name.
    pub name: String,
    /// Clips trained on, validated on (thresholds), tested on.
    pub counts: [usize; 3],
    /// The training run.
    pub summary: TrainSummary,
}

/// A protocol's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolOutcome {
    /// AUs in model order.
    pub aus: Vec<crate::au::Au>,
    /// Per fold that has been trained (all of the protocol's unless `--max-folds` stopped early).
    pub folds: Vec<FoldOutcome>,
    /// How many folds the protocol has.
    pub protocol_folds: usize,
    /// Held-out predictions (empty for `all`).
    pub predictions: Vec<TestPrediction>,
    /// Scores (None for `all`).
    pub report: Option<AuReport>,
    /// Samples that could not be aligned.
    pub skipped: Vec<String>,
    /// Wall seconds.
    pub seconds: f64,
    /// The report files written to the output folder (none for `all`).
    #[serde(skip)]
    pub report_files: Vec<PathBuf>,
}

impl ProtocolOutcome {
    /// The plain values a report is built from.
    pub fn report_info(&self, cfg: &Config) -> crate::eval::report::RunInfo {
        crate::eval::report::RunInfo {
            folds: self
                .folds
                .iter()
                .map(|f| crate::eval::report::FoldRow {
                    name: f.name.clone(),
                    counts: f.counts,
                    epochs: f.summary.epochs,
                })
                .collect(),
            protocol_folds: self.protocol_folds,
            skipped: self.skipped.clone(),
            seconds: self.seconds,
            training_seconds: self.training_seconds(),
            ccr_on: crate::train::trainer::ccr_active(cfg),
        }
    }

    /// Seconds spent in the epochs of every fold, including epochs of earlier runs that
    /// `--resume` continued (their records travel in the checkpoint).
    pub fn training_seconds(&self) -> f64 {
        self.folds
            .iter()
            .flat_map(|f| &f.summary.history)
            .map(|e| e.seconds)
            .sum::<f64>()
            .max(0.0) // an empty sum is -0.0, which prints as "-0"
    }
}

/// Runs every fold of the protocol and, unless it is `all`, writes its report (json, md, html) to
/// `o.out`. With `all`, the trained network is returned for export.
pub fn run(cfg: &Config, o: &ProtocolOptions) -> Result<(ProtocolOutcome, Option<Net>)> {
    let t0 = std::time::Instant::now();
    crate::train::alloc::keep_freed_memory();
    let cache = o
        .cache_dir
        .clone()
        .unwrap_or_else(|| default_cache_dir(cfg));
    let threads = if cfg.train.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.train.threads
    };
    let set = load_clips(&o.datasets, cfg, &cache, threads)?;
    anyhow::ensure!(
        !set.clips.is_empty(),
        "no clip could be aligned: {:?}",
        set.skipped
    );
    let clips = &set.clips;
    let keys: Vec<crate::data::SubjectKey> = clips.iter().map(|c| c.subject.clone()).collect();
    // Learning-curve points: each fold learns from at most train.max_clips of its clips.
    let fold_list = folds(&o.protocol, clips, &set.groups)?
        .iter()
        .map(|f| crate::eval::split::cap_training(f, &keys, cfg.train.max_clips, cfg.train.seed))
        .collect::<Result<Vec<_>>>()?;
    // Cross-dataset protocols train and score the AUs their datasets share.
    let aus = crate::train::protocol_aus(&cfg.frontend.aus, &fold_list)?;
    if aus != cfg.frontend.aus && !o.quiet {
        eprintln!(
            "the datasets share AUs {aus:?}: the protocol trains and scores these (of frontend.aus {:?})",
            cfg.frontend.aus
        );
    }
    let cfg = &crate::train::with_aus(cfg, &aus);
    let mut outcome = ProtocolOutcome {
        aus: cfg.frontend.aus.clone(),
        folds: Vec::new(),
        protocol_folds: fold_list.len(),
        predictions: Vec::new(),
        report: None,
        skipped: set.skipped.clone(),
        seconds: 0.0,
        report_files: Vec::new(),
    };
    let mut last_net = None;
    let mut started = 0;
    // Protocol index of each entry of `outcome.folds`.
    let mut included = Vec::new();
    for (fi, fold) in fold_list.iter().enumerate() {
        let dir = fold_dir(o, fold);
        if !(o.resume && is_finished(&dir)?) {
            if o.shard.is_some_and(|(i, n)| fi % n != i) {
                continue;
            }
            if o.max_folds.is_some_and(|m| started >= m) {
                if !o.quiet {
                    eprintln!(
                        "fold {}/{} {}: not trained (--max-folds {})",
                        fi + 1,
                        fold_list.len(),
                        fold.name,
                        started
                    );
                }
                continue;
            }
            started += 1;
        }
        let (net, stopped) = run_fold(cfg, o, (fi, fold_list.len()), fold, &set, &mut outcome)?;
        included.push(fi);
        if net.is_some() {
            last_net = net;
        }
        if stopped
            && o.interrupt
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
        {
            anyhow::bail!(
                "interrupted: checkpoint written to {}; continue with --resume",
                dir.display()
            );
        }
    }
    if o.protocol != Protocol::All {
        // Other processes may share `out` (`--shard`, `--max-folds`): under a lock, score the folds
        // they finished meanwhile and write the report, so that the report written last is never
        // older than one written before it.
        let _lock = lock_report(&o.out)?;
        if o.resume {
            for (fi, fold) in fold_list.iter().enumerate() {
                if included.contains(&fi) || !is_finished(&fold_dir(o, fold))? {
                    continue;
                }
                run_fold(cfg, o, (fi, fold_list.len()), fold, &set, &mut outcome)?;
                included.push(fi);
            }
            protocol_order(&mut outcome, &included);
        }
        outcome.report = Some(score(&outcome, o.paper_metric));
        outcome.seconds = t0.elapsed().as_secs_f64();
        if let Some(r) = &outcome.report {
            outcome.report_files =
                crate::eval::report::write(&o.out, &outcome.report_info(cfg), &outcome, r, cfg)?;
        }
    }
    outcome.seconds = t0.elapsed().as_secs_f64();
    // A single fold (all data, or one subject split) is a model worth exporting.
    let net = if fold_list.len() == 1 { last_net } else { None };
    Ok((outcome, net))
}

/// The folder of `fold`'s checkpoint (the output folder itself for `all`).
fn fold_dir(o: &ProtocolOptions, fold: &crate::eval::split::Fold) -> PathBuf {
    if o.protocol == Protocol::All {
        o.out.clone()
    } else {
        o.out.join(format!("fold-{}", sanitize(&fold.name)))
    }
}

/// Whether the fold in `dir` finished: its checkpoint's thresholds are chosen only at the end, and
/// its result file is written only then (the checkpoint may have been deleted since).
fn is_finished(dir: &std::path::Path) -> Result<bool> {
    Ok(checkpoint_finished(dir)? || fold_result::exists(dir))
}

/// Whether `dir` holds a finished checkpoint.
fn checkpoint_finished(dir: &std::path::Path) -> Result<bool> {
    let ckpt = crate::train::state::checkpoint_dir(dir);
    Ok(ckpt.join("state.json").exists() && crate::train::state::load_thresholds(&ckpt)?.is_some())
}

/// Trains `fold`, number `fi` of `n_folds` (or resumes it; a finished checkpoint trains nothing),
/// scores its held-out clips at its training-chosen thresholds and adds both to `outcome`. Under
/// `--resume`, a fold whose result file matches is scored from it without loading a network.
/// Returns the network (None when scored from the file) and whether training stopped early.
fn run_fold(
    cfg: &Config,
    o: &ProtocolOptions,
    (fi, n_folds): (usize, usize),
    fold: &crate::eval::split::Fold,
    set: &crate::train::clips::ClipSet,
    outcome: &mut ProtocolOutcome,
) -> Result<(Option<Net>, bool)> {
    let clips = &set.clips[..];
    let dir = fold_dir(o, fold);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (tr, va) = inner_split(&fold.train, clips, &set.groups, &cfg.train);
    let train_clips: Vec<&AlignedClip> = tr.iter().map(|&i| &clips[i]).collect();
    let val_clips: Vec<&AlignedClip> = va.iter().map(|&i| &clips[i]).collect();
    let test: Vec<&AlignedClip> = fold.test.iter().map(|&i| &clips[i]).collect();
    // Only a protocol with held-out clips keeps a result (hashing every crop costs ~0.3 s).
    let fingerprint = (o.protocol != Protocol::All).then(|| {
        fold_result::fingerprint(
            cfg,
            &fold_result::FoldClips {
                train: &train_clips,
                val: &val_clips,
                test: &test,
            },
        )
    });
    if let Some(fingerprint) = &fingerprint {
        // A protocol of one fold returns its network (for export): that needs the checkpoint.
        let has_checkpoint = crate::train::state::checkpoint_dir(&dir).exists();
        if o.resume && !(n_folds == 1 && has_checkpoint) {
            match fold_result::load(&dir, fingerprint, &test) {
                Ok(Some(saved)) => {
                    if !o.quiet {
                        eprintln!(
                            "fold {}/{} {}: scored from {}",
                            fi + 1,
                            n_folds,
                            fold.name,
                            fold_result::path(&dir).display()
                        );
                    }
                    restore(saved, fold, &test, outcome);
                    return Ok((None, false));
                }
                Ok(None) => {}
                // More epochs than the result had, say: the checkpoint continues.
                Err(e) if has_checkpoint => {
                    if !o.quiet {
                        eprintln!("{e:#}: continuing from the checkpoint instead");
                    }
                    fold_result::remove(&dir)?;
                }
                Err(e) => return Err(e),
            }
        } else if !o.resume {
            fold_result::remove(&dir)?;
        }
    }
    if !o.quiet {
        eprintln!(
            "fold {}/{} {}: {} training clips, {} validation, {} test (on {})",
            fi + 1,
            n_folds,
            fold.name,
            train_clips.len(),
            val_clips.len(),
            fold.test.len(),
            cfg.train.device
        );
    }
    anyhow::ensure!(
        !cfg.train.init_delta || !cfg.train.init_frontend.is_empty(),
        "train.init_delta = true needs train.init_frontend (the run whose checkpoints hold δ)"
    );
    let mut net = Net::new(&cfg.net_spec(), &o.root)?;
    let resume = o.resume && crate::train::state::checkpoint_dir(&dir).exists();
    if !cfg.train.init_frontend.is_empty() && !resume {
        let src = init_source(cfg, o, fold, set)?;
        crate::train::state::load_frontend(&src, &mut net)?;
        if cfg.train.init_delta {
            crate::train::state::load_delta(&src, &mut net)?;
        }
        if !o.quiet {
            eprintln!("front-end initialised from {}", src.display());
        }
    }
    let run = RunOptions {
        out: dir.clone(),
        resume,
        max_steps: o.max_steps,
        quiet: o.quiet,
        interrupt: o.interrupt.clone(),
    };
    let summary = train(&mut net, cfg, &train_clips, &val_clips, &run)?;
    let stopped = summary.stopped_early;
    let first = outcome.predictions.len();
    if !test.is_empty() {
        let probs = predict(&net, &test, cfg)?;
        add_predictions(outcome, &test, probs, &summary.thresholds);
    }
    let counts = [train_clips.len(), val_clips.len(), test.len()];
    if let Some(fingerprint) = fingerprint.filter(|_| !stopped) {
        let saved = fold_result::FoldResult {
            format: fold_result::FORMAT,
            fold: fold.name.clone(),
            fingerprint,
            counts,
            summary: summary.clone(),
            predictions: outcome.predictions[first..]
                .iter()
                .map(|p| fold_result::SavedPrediction {
                    key: p.key.clone(),
                    prob: p.prob.clone(),
                })
                .collect(),
        };
        fold_result::save(&dir, &saved)?;
    }
    outcome.folds.push(FoldOutcome {
        name: fold.name.clone(),
        counts,
        summary,
    });
    Ok((Some(net), stopped))
}

/// Adds a fold scored from its result file to `outcome`: decisions at its saved thresholds, truth
/// from this run's labels (the fingerprint has checked they are the labels it was trained with).
fn restore(
    saved: fold_result::FoldResult,
    fold: &crate::eval::split::Fold,
    test: &[&AlignedClip],
    outcome: &mut ProtocolOutcome,
) {
    let probs = saved.predictions.into_iter().map(|p| p.prob).collect();
    add_predictions(outcome, test, probs, &saved.summary.thresholds);
    outcome.folds.push(FoldOutcome {
        name: fold.name.clone(),
        counts: saved.counts,
        summary: saved.summary,
    });
}

/// Adds the held-out predictions of the fold about to be pushed to `outcome`: decisions at its
/// training-chosen thresholds, truth from the clips' labels.
fn add_predictions(
    outcome: &mut ProtocolOutcome,
    test: &[&AlignedClip],
    probs: Vec<Vec<f32>>,
    thresholds: &[f32],
) {
    let fold = outcome.folds.len();
    for (c, prob) in test.iter().zip(probs) {
        let decision = prob.iter().zip(thresholds).map(|(p, t)| p >= t).collect();
        let truth = c.targets(&outcome.aus).iter().map(|&v| v > 0.5).collect();
        outcome.predictions.push(TestPrediction {
            key: c.key.clone(),
            fold,
            prob,
            decision,
            truth,
        });
    }
}

/// Takes the exclusive lock on `out`'s report (waiting while another process holds it).
fn lock_report(out: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(".report.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

/// Puts `outcome`'s folds (and their predictions) in protocol order; `included[i]` is the
/// protocol index of `outcome.folds[i]`.
fn protocol_order(outcome: &mut ProtocolOutcome, included: &[usize]) {
    let mut order: Vec<usize> = (0..included.len()).collect();
    order.sort_by_key(|&i| included[i]);
    let mut new_pos = vec![0; order.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_pos[old] = pos;
    }
    let mut folds: Vec<Option<FoldOutcome>> = outcome.folds.drain(..).map(Some).collect();
    outcome.folds = order.iter().filter_map(|&i| folds[i].take()).collect();
    for p in &mut outcome.predictions {
        p.fold = new_pos[p.fold];
    }
    outcome.predictions.sort_by_key(|p| p.fold);
}

/// Where `fold`'s front-end starts from under `train.init_frontend`: a trained model (a folder
/// with model.json, or a name under models/, e.g. the shipped `default`: fine-tuning), or the
/// finished checkpoint of an earlier run of this protocol, checked to have been trained on exactly
/// this fold's training and validation clips (so its front-end never saw the test subjects).
fn init_source(
    cfg: &Config,
    o: &ProtocolOptions,
    fold: &crate::eval::split::Fold,
    set: &crate::train::clips::ClipSet,
) -> Result<PathBuf> {
    let clips = &set.clips[..];
    use crate::train::state::{TrainState, checkpoint_dir, load_thresholds, read_checkpoint_info};
    if let Ok(model) = crate::runtime::bundle::locate(&cfg.train.init_frontend) {
        crate::runtime::bundle::verify(&model)?;
        let file = model.join("config.toml");
        let src_cfg = Config::load(Some(&file), &[])
            .with_context(|| format!("cannot read {}", file.display()))?;
        same_frontend(&src_cfg, cfg, &file)?;
        return Ok(model);
    }
    let run = PathBuf::from(&cfg.train.init_frontend);
    let run_dir = if o.protocol == Protocol::All {
        run.clone()
    } else {
        run.join(format!("fold-{}", sanitize(&fold.name)))
    };
    let dir = checkpoint_dir(&run_dir);
    anyhow::ensure!(
        dir.join("state.json").exists(),
        "train.init_frontend = {}: not a model (no model.json there or under models/) and no checkpoint for fold {} in {} (train that run on the same protocol first)",
        run.display(),
        fold.name,
        dir.display()
    );
    anyhow::ensure!(
        load_thresholds(&dir)?.is_some(),
        "train.init_frontend: the run in {} has not finished (continue it with --resume first)",
        dir.display()
    );
    let (src_cfg, st) = read_checkpoint_info(&dir)?;
    same_frontend(&src_cfg, cfg, &dir.join("config.toml"))?;
    let (tr, va) = inner_split(&fold.train, clips, &set.groups, &src_cfg.train);
    let tr: Vec<&AlignedClip> = tr.iter().map(|&i| &clips[i]).collect();
    let va: Vec<&AlignedClip> = va.iter().map(|&i| &clips[i]).collect();
    anyhow::ensure!(
        TrainState::new(&src_cfg, &tr, &va).fingerprint == st.fingerprint,
        "train.init_frontend: the checkpoint in {} was not trained on fold {}'s training clips (another protocol, split seed or dataset); using it could leak test subjects",
        dir.display(),
        fold.name
    );
    Ok(dir)
}

/// Refuses a front-end source whose graph differs from this run's (the decider may differ: that
/// is the point of an MLP-head first stage).
fn same_frontend(src: &Config, cfg: &Config, file: &std::path::Path) -> Result<()> {
    let mut same = src.frontend.clone();
    same.ablation = cfg.frontend.ablation;
    if same == cfg.frontend {
        return Ok(());
    }
    let a = toml::Value::try_from(&same)?;
    let b = toml::Value::try_from(&cfg.frontend)?;
    let differ: Vec<String> = match (a.as_table(), b.as_table()) {
        (Some(a), Some(b)) => b
            .iter()
            .filter(|(k, v)| a.get(*k) != Some(v))
            .map(|(k, v)| {
                format!(
                    "frontend.{k} = {} there, {v} here",
                    a.get(k).map_or("(unset)".to_string(), |x| x.to_string())
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    anyhow::bail!(
        "train.init_frontend: {} has another [frontend] configuration than this run ({})",
        file.display(),
        differ.join("; ")
    )
}

/// Per-AU F1 over the held-out predictions: pooled and mean over folds.
pub fn score(o: &ProtocolOutcome, paper: bool) -> AuReport {
    let columns: Vec<AuColumn> = o
        .aus
        .iter()
        .enumerate()
        .map(|(j, &code)| AuColumn {
            code,
            truth: o.predictions.iter().map(|p| p.truth[j]).collect(),
            decision: o.predictions.iter().map(|p| p.decision[j]).collect(),
            prob: Some(o.predictions.iter().map(|p| p.prob[j] as f64).collect()),
        })
        .collect();
    let fold: Vec<usize> = o.predictions.iter().map(|p| p.fold).collect();
    let names = o.folds.iter().map(|f| f.name.clone()).collect();
    au_report(&columns, &fold, names, paper)
}

/// A fold name as a folder name.
pub(crate) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The folder relative prior-graph paths start from: the current folder (the built-in graph is
/// used when the default path is not there).
pub fn default_root() -> PathBuf {
    PathBuf::from(".")
}
