//! SynthME: a synthetic micro-expression benchmark with exact ground truth, written in the real
//! datasets' layouts (CASME II clips, SAMM-LV long videos) so the same loaders read it.
//!
//! Identities come from a real face photo reshaped and re-lit per subject ([`identity`]); AUs are
//! FACS-plausible local displacements with amplitudes in canonical-face pixels ([`aus`]); clips and long
//! videos are planned from the seed first ([`plan`]), then rendered with controllable nuisances
//! ([`render`]) and written with their annotations ([`generate`], [`annotations`]).

pub mod annotations;
pub mod aus;
pub mod faces;
pub mod generate;
pub mod identity;
pub mod plan;
pub mod render;

pub use generate::{SynthReport, generate, generate_from};
pub use plan::SynthConfig;
