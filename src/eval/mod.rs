//! Evaluation: subject-disjoint splits, AU detection and spotting metrics, and `aullm score`.
//! DESIGN.md's evaluation rules are enforced here: subjects never cross a split, F1 is binary at a
//! threshold chosen without test data, and the papers' optimistic variant is opt-in and labelled.

pub mod metrics;
pub mod predictions;
pub mod report;
pub mod score;
pub mod split;
pub mod spotting;
