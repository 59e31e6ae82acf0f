//! SynthME: a synthetic micro-expression benchmark with exact ground truth, written in the real
//! datasets' layouts (CASME II clips, SAMM-LV long videos) so the same loaders read it.
//!
//! Identities come from real face photos reshaped and re-lit per subject ([`identity`], [`faces`]);
//! AUs are FACS actions ([`aus`]) rendered by one of several displacement families ([`motion`]) with
//! amplitudes in canonical-face pixels; clips and long videos are planned from the seed first
//! ([`plan`]), then rendered with nuisances and drawn capture conditions ([`render`], [`capture`])
//! and written with their annotations ([`generate`], [`annotations`]).

pub mod annotations;
pub mod aus;
pub mod capture;
pub mod faces;
pub mod generate;
pub mod identity;
pub mod motion;
pub mod plan;
pub mod render;

pub use generate::{SynthReport, generate, generate_from};
pub use plan::SynthConfig;
