//! CAS(ME)^3 part A (Li et al. 2022): micro-expressions labelled on JPG indices of the color
//! frames.
//!
//! Expected layout (names as released):
//!
//! ```text
//! ROOT/
//!   annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   any *part_a*label*.xlsx|.csv, here or
//!                                                          one folder down (or --annotations)
//!   part_A/spNO.1/a/color/1.jpg ...                        <Subject>/<Filename>/color/<N>.jpg
//!                                                          (also data/part_A/, ME_A/; cropped: ME_A_cropped/)
//! ```
//!
//! First sheet, header on row 1: `Subject | Filename | Onset | Apex | Offset | Expression type |
//! AU | Objective class | emotion` (found by name; `Expression type` optional). Quirks handled:
//! rows whose `Expression type` is a macro-expression are not micro-expression samples and are
//! counted as excluded; one recording (`Filename`, e.g. "a") can hold several micro-expressions,
//! so the clip id of the 2nd, 3rd, ... row with the same subject and filename gets a suffix
//! ("a", "a2", "a3", as MEB numbers them) while its frames stay in the recording's folder; the
//! recordings have dropped frames, which `aullm data check` reports as warnings.

use super::clip_table::{self, ClipLayout, ColumnNames};
use super::sample::{Dataset, FrameSet};
use super::{LoadOptions, Loaded};
use anyhow::Result;
use std::path::Path;

/// Whether `name` is the part A label sheet.
fn is_label_sheet(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("part_a") && l.contains("label") && (l.ends_with(".xlsx") || l.ends_with(".csv"))
}

/// CAS(ME)^3 part A's release.
static LAYOUT: ClipLayout = ClipLayout {
    dataset: Dataset::Casme3A,
    is_annotation: is_label_sheet,
    annotation_hint: "cas(me)3_part_A_ME_label*.xlsx",
    header: (&["Subject", "Filename", "Onset"], 10),
    columns: ColumnNames {
        subject: &["Subject"],
        clip: &["Filename"],
        onset: &["Onset"],
        apex: &["Apex"],
        offset: &["Offset"],
        aus: &["AU", "AUs", "Action Units"],
        emotion: &["emotion", "Estimated Emotion", "Objective class"],
        kind: &["Expression type", "Type"],
    },
    raw_dirs: &["part_A", "data/part_A", "data/part_A_split/part_A", "ME_A"],
    cropped_dirs: &["ME_A_cropped"],
    frames: |root, subject, clip, _| {
        let dir = root.join(subject).join(clip).join("color");
        FrameSet::infer(&dir, FrameSet::new(&dir, "", 0, "jpg"))
    },
    choose_frames: clip_table::choose_frames,
    number_repeats: true,
};

/// Reads a CAS(ME)^3 part A folder.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    clip_table::load(&LAYOUT, root, opts)
}
