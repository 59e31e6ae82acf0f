//! The `[models]` section: where artefacts are cached and which manifest names them.

use serde::{Deserialize, Serialize};

/// Model artefact locations (both empty by default: cache dir from the environment, built-in manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Cache folder for fetched artefacts; empty = `$AULLM_CACHE_DIR` or the user's cache dir.
    pub cache_dir: String,
    /// Manifest file; empty = the manifest built into the binary (models/manifest.toml).
    pub manifest: String,
}

impl ModelsConfig {
    /// The artefact cache folder this section selects.
    pub fn cache_dir(&self) -> std::path::PathBuf {
        if self.cache_dir.is_empty() {
            super::ModelCache::default_root()
        } else {
            std::path::PathBuf::from(&self.cache_dir)
        }
    }
}
