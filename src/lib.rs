//! aullm: facial micro-expression Action Unit detection (AULLM++) for live cameras, recorded video
//! and training. See README.md and DESIGN.md for the data flow.

pub mod assets;
pub mod config;
pub mod face;
pub mod frame;
pub mod ingest;
pub mod models;
pub mod runtime;
pub mod doctor;
pub mod jobs;
pub mod output;
pub mod fixtures;
