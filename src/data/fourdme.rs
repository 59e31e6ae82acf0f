//! 4DME micro-expressions (Li et al. 2023), the gray-scale 2D frames of the micro set.
//!
//! Expected layout (names as released; the frame file naming is learnt from each folder because
//! it is not documented in the release and we could not verify it):
//!
//! ```text
//! ROOT/
//!   4DME_Labelling_Micro_release v1.xlsx   any 4DME_Labelling_Micro*.xlsx|.csv (or --annotations)
//!   gray_micro/<sub_ID>/<fold_name>/...     frames <prefix><N>.<ext>, N = the sheet's numbering
//!                                            (fallback name when the folder is absent: <N>.jpg)
//!   gray_micro_crop/...                      cropped frames (--frames cropped)
//! ```
//!
//! First sheet, header on row 1, columns found by name: `sub_ID | fold_name | Onset | Apex |
//! Offset | AUs | Emotion` plus emotion-category and other columns that are ignored. Frame numbers
//! may be stored as floats (12.0). Quirk handled: AUs are written `AU4+AU12(k)`; the release does
//! not define "(k)", so such items are an error unless `--k-marked include|exclude` is chosen
//! (public benchmarks such as MEB exclude them).

use super::clip_table::{self, ClipLayout, ColumnNames};
use super::sample::{Dataset, FrameSet};
use super::sheet::sheet_named;
use super::{LoadOptions, Loaded};
use anyhow::Result;
use std::path::Path;

/// 4DME's release.
static LAYOUT: ClipLayout = ClipLayout {
    dataset: Dataset::FourDme,
    is_annotation: |n| sheet_named("4dme_labelling_micro")(n),
    annotation_hint: "4DME_Labelling_Micro_release*.xlsx",
    header: (&["sub_ID", "fold_name"], 10),
    columns: ColumnNames {
        subject: &["sub_ID", "Subject"],
        clip: &["fold_name", "Filename"],
        onset: &["Onset", "Onset Frame"],
        apex: &["Apex", "Apex Frame"],
        offset: &["Offset", "Offset Frame"],
        aus: &["AUs", "AU", "Action Units"],
        emotion: &["Emotion", "Estimated Emotion"],
        kind: &[],
    },
    raw_dirs: &["gray_micro"],
    cropped_dirs: &["gray_micro_crop"],
    frames: |root, subject, clip, _| {
        let dir = root.join(subject).join(clip);
        FrameSet::infer(&dir, FrameSet::new(&dir, "", 0, "jpg"))
    },
    choose_frames: clip_table::choose_frames,
    number_repeats: false,
};

/// Reads a 4DME folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    clip_table::load(&LAYOUT, root, opts)
}
