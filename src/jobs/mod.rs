//! Top-level jobs behind the CLI commands.

pub mod faces;
pub mod train;
