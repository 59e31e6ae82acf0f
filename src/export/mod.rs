//! Export of trained graphs for the streaming runtime.

pub mod frontend_onnx;
