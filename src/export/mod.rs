//! Export of trained graphs for the streaming runtime: the front-end as ONNX ([`frontend_onnx`])
//! and whole model folders ([`bundle`]).
//!
//! May import: config, graph, runtime::bundle's format types are defined below it, atomic, models.

pub mod bundle;
pub mod frontend_onnx;
