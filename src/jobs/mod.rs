//! Top-level jobs behind the CLI commands.

pub mod export;
pub mod faces;
pub mod spot;
