//! `aullm export`: a model bundle rebuilt from a training run's checkpoint.

use crate::config::Config;
use crate::graph::model::Net;
use crate::runtime::bundle::ModelManifest;
use crate::train::state::{self, CHECKPOINT_DIR};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

/// The checkpoint folder of `run` to export: the run's own (one-fold protocols), or that of fold
/// `fold` (`fold-NAME`), or the only fold there is.
pub fn checkpoint_of(run: &Path, fold: Option<&str>) -> Result<PathBuf> {
    let own = run.join(CHECKPOINT_DIR);
    if fold.is_none() && own.is_dir() {
        return Ok(own);
    }
    let mut folds: Vec<String> = std::fs::read_dir(run)
        .with_context(|| format!("cannot read the run folder {}", run.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CHECKPOINT_DIR).is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("fold-")
                .map(String::from)
        })
        .collect();
    folds.sort();
    let pick = match fold {
        Some(f) => {
            let want = crate::train::protocol::sanitize(f);
            ensure!(
                folds.contains(&want),
                "run {}: no fold {f:?} with a checkpoint (folds: {})",
                run.display(),
                list(&folds)
            );
            want
        }
        None => match folds.as_slice() {
            [one] => one.clone(),
            [] => bail!(
                "run {}: no checkpoint (expected {}/ or fold-*/{}/)",
                run.display(),
                CHECKPOINT_DIR,
                CHECKPOINT_DIR
            ),
            _ => bail!(
                "run {} has {} folds: choose one with --fold ({})",
                run.display(),
                folds.len(),
                list(&folds)
            ),
        },
    };
    Ok(run.join(format!("fold-{pick}")).join(CHECKPOINT_DIR))
}

fn list(folds: &[String]) -> String {
    if folds.is_empty() {
        "none".into()
    } else {
        folds.join(", ")
    }
}

/// Rebuilds the network a checkpoint holds (its own configuration, base weights from the manifest
/// artefact it names, found through `runtime`'s model cache) and writes it as model bundle `name`
/// into `out`.
pub fn export_run(
    checkpoint: &Path,
    runtime: &Config,
    name: &str,
    out: &Path,
    root: &Path,
) -> Result<ModelManifest> {
    let cfg_path = checkpoint.join("config.toml");
    let mut cfg = Config::load(Some(&cfg_path), &[])
        .with_context(|| format!("checkpoint {}", checkpoint.display()))?;
    // Where artefacts live is this machine's business, not the run's.
    cfg.models = runtime.models.clone();
    let thresholds = state::load_thresholds(checkpoint)?.with_context(|| {
        format!(
            "checkpoint {} has no {}: its training did not finish (continue it with `aullm train \
             ... --resume`, then export)",
            checkpoint.display(),
            state::THRESHOLDS_FILE
        )
    })?;
    ensure!(
        thresholds.len() == cfg.frontend.aus.len(),
        "{}: {} thresholds for {} AUs",
        checkpoint.join(state::THRESHOLDS_FILE).display(),
        thresholds.len(),
        cfg.frontend.aus.len()
    );
    let mut net = Net::new(&cfg.net_spec(), root)?;
    state::load_weights(checkpoint, &mut net)?;
    crate::export::bundle::export(&net, &cfg, &thresholds, name, out)
}
