//! SAMM (Davison et al. 2018): 159 micro-movements of 32 subjects at 200 fps.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   SAMM_Micro_FACS_Codes_v2.xlsx      any SAMM_Micro_FACS_Codes*.xlsx|.csv (or --annotations FILE)
//!   SAMM/                              raw frames (or the subject folders directly in ROOT)
//!     006/006_1_2/006_05562.jpg ...    <subject>_<frame, 5 digits>.jpg, numbered as in the
//!                                      subject's whole recording (the onset, e.g. 5562)
//!   SAMM_CROP/006/006_1_2/...          cropped frames (--frames cropped)
//! ```
//!
//! The first sheet opens with a block of notes; the header is on row 13 (found by looking for the
//! `Subject`/`Filename` row in the first 30): `Subject | Filename | Inducement Code | Onset Frame |
//! Apex Frame | Offset Frame | Duration | Type | Action Units | Notes | Estimated Emotion`.
//! Quirks handled: `Subject` is a number (6 → `006`) or text ("006"); `Apex Frame` is "/" or -1
//! where unknown; AUs carry laterality and intensity, with spaces (`R12 + R15`, `R14A`); a few
//! rows say "14 or 15" (ambiguous: an error unless a rule is chosen); frame-file padding is learnt
//! from the folder when it differs from 5 digits.

use super::LoadOptions;
use super::Loaded;
use super::clip_table::{self, ClipLayout, ColumnNames};
use super::sample::{Dataset, FrameSet};
use super::sheet::sheet_named;
use anyhow::Result;
use std::path::Path;

/// SAMM's release.
static LAYOUT: ClipLayout = ClipLayout {
    dataset: Dataset::Samm,
    is_annotation: |n| sheet_named("samm_micro_facs_codes")(n),
    annotation_hint: "SAMM_Micro_FACS_Codes*.xlsx",
    header: (&["Subject", "Filename"], 30),
    columns: ColumnNames {
        subject: &["Subject"],
        clip: &["Filename"],
        onset: &["Onset Frame", "Onset"],
        apex: &["Apex Frame", "Apex"],
        offset: &["Offset Frame", "Offset"],
        aus: &["Action Units", "AU", "AUs"],
        emotion: &["Estimated Emotion", "Emotion"],
        kind: &[],
    },
    raw_dirs: &["SAMM"],
    cropped_dirs: &["SAMM_CROP", "SAMM_CROP2", "Cropped"],
    frames: |root, subject, clip, _| {
        let dir = root.join(subject).join(clip);
        let naming = FrameSet::new(&dir, &format!("{subject}_"), 5, "jpg");
        FrameSet::infer(&dir, naming)
    },
    choose_frames: clip_table::choose_frames,
    number_repeats: false,
};

/// Reads a SAMM folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    clip_table::load(&LAYOUT, root, opts)
}
