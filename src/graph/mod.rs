//! The AULLM++ graph in candle: backbone, MGE-EFP, R-AUGNN, MLP head, and the front-end that joins them.
//! The composed network ([`model`]) that training updates and export writes, candle devices
//! ([`devices`]), and the reasoner. Owns `[frontend]` ([`config`]) and `[reasoner]`.
//! May import: models, assets, onnx (provider choice), atomic, rng. Never config, train or runtime.

pub mod augnn;
pub mod backbone;
pub mod ccr;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod devices;
pub mod efp;
pub mod frontend;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod head;
pub mod laplacian;
pub mod model;
pub mod prior;
pub mod reasoner;
pub mod seeded;
