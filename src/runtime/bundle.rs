//! Trained models as folders (`models/<name>/`): `model.json` lists what the model is and every
//! file with its SHA-256 (the front-end as ONNX and candle weights, the reasoner's adapter, the
//! configuration, the prompt). This module finds and verifies one; `export::bundle` writes one.

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The front-end's input name: the clip [batch, C, T, H, W].
pub const INPUT: &str = "clip";
/// The front-end's output name: the content token [batch, 1, D].
pub const CONTENT: &str = "t_v";
/// The front-end's output name: the instruction tokens [batch, N, D] (absent without R-AUGNN).
pub const INSTRUCTIONS: &str = "tau_au";

/// `model.json`'s format tag.
pub const FORMAT: &str = "aullm.model/1";

/// What turns a model's tokens into AU logits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// The LLM reasoner with the model's adapter.
    Llm,
    /// The MLP head (the paper's w/o-LLM ablation).
    Mlp,
}

impl std::fmt::Display for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decider::Llm => "llm",
            Decider::Mlp => "mlp",
        })
    }
}

/// `model.json`: what the model is and the files that make it, with hashes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Model id (events carry it).
    pub name: String,
    /// AUs in output order.
    pub aus: Vec<crate::au::Au>,
    /// Per-AU decision thresholds (chosen on training data only).
    pub thresholds: Vec<f32>,
    /// "llm" (reasoner + adapter) or "mlp" (the w/o-LLM ablation's MLP head).
    pub decider: Decider,
    /// The LLM the adapter was trained on: `reasoner.weights` and its shape fingerprint.
    pub base: String,
    /// File name → SHA-256 (hex).
    pub files: BTreeMap<String, String>,
    /// Free-form provenance (dataset, protocol, epochs, wall time).
    pub trained: BTreeMap<String, String>,
}

/// Finds a model: an existing folder path, else `models/<name>` under the current folder, else
/// under the folder the binary was built from.
pub fn locate(name_or_path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name_or_path);
    if p.join("model.json").exists() {
        return Ok(p);
    }
    for base in [
        PathBuf::from("models"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    ] {
        let d = base.join(name_or_path);
        if d.join("model.json").exists() {
            return Ok(d);
        }
    }
    bail!("no model {name_or_path:?}: not a folder with model.json, and not found under models/")
}

/// Reads `dir/model.json` and checks every listed file's SHA-256.
pub fn verify(dir: &Path) -> Result<ModelManifest> {
    let path = dir.join("model.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let m: ModelManifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a model manifest", path.display()))?;
    ensure!(
        m.format == FORMAT,
        "{}: format {:?}, expected {FORMAT:?}",
        path.display(),
        m.format
    );
    ensure!(
        m.thresholds.len() == m.aus.len(),
        "{}: {} thresholds for {} AUs",
        path.display(),
        m.thresholds.len(),
        m.aus.len()
    );
    for (f, want) in &m.files {
        // A manifest names files inside its folder: never `../..`, an absolute path or a drive.
        let plain = Path::new(f)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        ensure!(
            plain && !f.is_empty(),
            "{}: file entry {f:?} is not a plain name inside the model folder",
            path.display()
        );
        let fp = dir.join(f);
        let got = crate::models::sha256_file(&fp)
            .with_context(|| format!("model {}: cannot read {f}", m.name))?;
        ensure!(
            &got == want,
            "model {}: {} has SHA-256 {got}, model.json says {want} (the folder was modified or damaged)",
            m.name,
            fp.display()
        );
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_stay_inside_the_model_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(root.path().join("secret"), "outside").unwrap();
        let hash = crate::models::sha256_file(&root.path().join("secret")).unwrap();
        for entry in ["../secret", "/etc/hostname", "a/../../secret", ""] {
            let m = serde_json::json!({
                "format": FORMAT, "name": "m", "aus": [], "thresholds": [], "decider": "mlp",
                "base": "", "files": { entry: hash }, "trained": {}
            });
            std::fs::write(dir.join("model.json"), m.to_string()).unwrap();
            let err = format!("{:#}", verify(&dir).unwrap_err());
            assert!(err.contains("not a plain name"), "{entry}: {err}");
        }
        std::fs::copy(root.path().join("secret"), dir.join("inside")).unwrap();
        let m = serde_json::json!({
            "format": FORMAT, "name": "m", "aus": [], "thresholds": [], "decider": "mlp",
            "base": "", "files": { "inside": hash }, "trained": {}
        });
        std::fs::write(dir.join("model.json"), m.to_string()).unwrap();
        verify(&dir).unwrap();
    }
}
