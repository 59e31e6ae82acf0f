//! Resolves the artefacts a run needs (verified files from the model cache) from the `[models]`
//! section. May import: models, onnx.

use crate::models::ModelsConfig;
use crate::models::{Manifest, ModelCache};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The manifest this configuration selects (a file, or the one built into the binary).
pub fn manifest(cfg: &ModelsConfig) -> Result<Manifest> {
    if cfg.manifest.is_empty() {
        Ok(Manifest::embedded())
    } else {
        Manifest::load(Path::new(&cfg.manifest))
    }
}

/// The cache this configuration selects.
pub fn cache(cfg: &ModelsConfig) -> ModelCache {
    ModelCache::new(cfg.cache_dir())
}

/// The verified local path of artefact `name`; the error says how to fetch it.
pub fn artefact_path(cfg: &ModelsConfig, name: &str) -> Result<PathBuf> {
    let m = manifest(cfg)?;
    let a = m.get(name)?;
    cache(cfg).resolve(a)
}

/// Loads ONNX Runtime: `ORT_DYLIB_PATH` when set (e.g. a GPU build), else the manifest's library.
pub fn init_onnx(cfg: &ModelsConfig) -> Result<()> {
    let lib = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => artefact_path(cfg, "onnxruntime")?,
    };
    crate::onnx::init(&lib)
}
