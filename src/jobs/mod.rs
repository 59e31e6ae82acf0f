//! Top-level jobs behind the CLI commands.
//! Top-level jobs behind the CLI commands that are neither the stream nor training: `faces`,
//! `spot` (and the tracked crops `spot-eval` scores), model export from a training run.
//! May import anything below it; nothing imports jobs.

pub mod eval_model;
pub mod export;
pub mod faces;
pub mod spot;
