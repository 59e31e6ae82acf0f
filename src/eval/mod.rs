//! Evaluation: subject-disjoint splits, AU detection and spotting metrics, reports, truth matching
//! (`run --truth`, `spot-eval`) and `aullm score`. DESIGN.md's evaluation rules are enforced here:
//! subjects never cross a split, F1 is binary at a threshold chosen without test data, and the
//! papers' optimistic variant is opt-in and labelled.
//!
//! Scores plain values: may import config, data, events (the event record), spot (the spotter
//! it evaluates), atomic. Knows no command, no training code, no stream.

pub mod curve;
pub mod metrics;
pub mod predictions;
pub mod report;
pub mod score;
pub mod split;
pub mod spot_videos;
pub mod spotting;
pub mod truth;
