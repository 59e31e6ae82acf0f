//! Writes a trained network as a model folder (see `runtime::bundle` for the format).

use crate::config::Config;
use crate::export::frontend_onnx::export_frontend;
use crate::graph::model::Net;
use crate::runtime::bundle::{Decider, FORMAT, ModelManifest};
use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use std::path::Path;

/// Writes `net` as a model folder `dir` and returns its manifest.
pub fn export(
    net: &Net,
    cfg: &Config,
    thresholds: &[f32],
    name: &str,
    dir: &Path,
) -> Result<ModelManifest> {
    ensure!(
        thresholds.len() == cfg.frontend.aus.len(),
        "{} thresholds for {} AUs",
        thresholds.len(),
        cfg.frontend.aus.len()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    export_frontend(&net.frontend, &dir.join("frontend.onnx"))?;
    crate::graph::checkpoint::save(&net.frontend, &dir.join("frontend.safetensors"))?;
    let mut names = vec!["frontend.onnx", "frontend.safetensors", "config.toml"];
    let (decider, base) = match &net.reasoner {
        Some(r) => {
            r.save_adapter(&dir.join("adapter.safetensors"))?;
            std::fs::write(dir.join("prompt.txt"), r.prompt())?;
            names.push("adapter.safetensors");
            names.push("prompt.txt");
            (
                Decider::Llm,
                format!(
                    "{} ({})",
                    cfg.reasoner.weights,
                    r.decoder().config().fingerprint()
                ),
            )
        }
        None => (Decider::Mlp, String::new()),
    };
    // The warm-start run is a folder on the training machine: meaningless to whoever loads the
    // model (the weights already hold what it contributed), so it is not shipped, nor is the
    // switch that reads δ from it.
    let mut shipped = cfg.clone();
    shipped.train.init_frontend.clear();
    shipped.train.init_delta = false;
    std::fs::write(dir.join("config.toml"), shipped.to_toml())?;
    let mut files = BTreeMap::new();
    for n in names {
        files.insert(n.to_string(), crate::models::sha256_file(&dir.join(n))?);
    }
    let m = ModelManifest {
        format: FORMAT.into(),
        name: name.into(),
        aus: cfg.frontend.aus.clone(),
        thresholds: thresholds.to_vec(),
        decider,
        base,
        files,
        trained: BTreeMap::new(),
    };
    write_manifest(dir, &m)?;
    Ok(m)
}

/// Writes `model.json` atomically (written last: a folder without it is not a model).
pub fn write_manifest(dir: &Path, m: &ModelManifest) -> Result<()> {
    let mut f = crate::atomic::AtomicFile::create(&dir.join("model.json"))?;
    use std::io::Write;
    f.write_all(serde_json::to_string_pretty(m)?.as_bytes())?;
    f.commit()?;
    Ok(())
}
