//! Inference on the live path: model folders ([`bundle`]: find and verify) and the [`detector`]
//! (ONNX Runtime front-end + candle reasoner) that turns clips into AU probabilities.
//!
//! May import: config, graph, export (the front-end's tensor names), onnx, assets, models, atomic.
//! Never train/ or stream/.

pub mod bundle;
pub mod detector;
pub mod engine;
