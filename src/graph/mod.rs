//! The AULLM++ graph in candle (DESIGN.md "Data flow"): written once, run by training and inference.

pub mod reasoner;
