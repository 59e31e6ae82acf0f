//! Execution runtimes: ONNX Runtime sessions and candle devices.

pub mod devices;
pub mod onnx;
