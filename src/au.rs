//! The one type of a FACS Action Unit code (12 for AU12) across datasets, configuration, models,
//! training and scoring. Imports nothing from the crate.

/// A FACS Action Unit number, e.g. 12 for AU12 (laterality and intensity live in
/// `data::au::AuLabel`).
pub type Au = u16;
