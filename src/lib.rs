//! aullm: facial micro-expression Action Unit detection (AULLM++) for live cameras, recorded video
//! and training. See README.md and DESIGN.md for the data flow.

pub mod assets;
pub mod atomic;
pub mod au;
pub mod batch;
pub mod clip;
pub mod clock;
pub mod config;
pub mod data;
pub mod doctor;
pub mod eval;
pub mod events;
pub mod export;
pub mod face;
pub mod fixtures;
pub mod frame;
pub mod graph;
pub mod imgio;
pub mod ingest;
pub mod jobs;
pub mod models;
pub mod monitor;
pub mod onnx;
pub mod output;
pub mod rng;
pub mod runtime;
pub mod spot;
pub mod stream;
pub mod train;
