//! Files aullm writes: per-frame CSV, crop images and videos, contact sheets.
//! May import: face, ingest, atomic.

pub mod contact_sheet;
pub mod face_csv;
pub mod video;
