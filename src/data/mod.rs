//! Datasets: the synthetic benchmark generator (and, with the loaders, the real datasets).

pub mod synth;
