//! The AULLM++ graph in candle: backbone, MGE-EFP, R-AUGNN, MLP head, and the front-end that joins them.

pub mod augnn;
pub mod backbone;
pub mod ccr;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod devices;
pub mod efp;
pub mod frontend;
pub mod head;
pub mod laplacian;
pub mod model;
pub mod prior;
pub mod reasoner;
pub mod seeded;
