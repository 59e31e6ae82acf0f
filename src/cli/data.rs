//! `aullm data check` and `aullm score`.

use anyhow::Result;
use aullm::config::Config;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum DataAction {
    /// Validate a dataset folder: annotations, apex inside onset..offset, frame files; counts per
    /// AU and per subject. Exits 1 when there are errors.
    Check(DataCheckArgs),
}

/// How a dataset folder is read (shared by `data check` and `score`).
#[derive(clap::Args)]
pub(crate) struct LoadArgs {
    /// Annotation file, when not found by its published name in the folder.
    #[arg(long)]
    pub(crate) annotations: Option<PathBuf>,
    /// Folder holding the subject folders, when not a published name.
    #[arg(long)]
    pub(crate) frames_dir: Option<PathBuf>,
    /// Frames: auto, raw or cropped.
    #[arg(long, default_value = "auto")]
    pub(crate) frames: aullm::data::FrameVariant,
    /// Uncertain AUs ("14 or 15", "?"): error, first, all or drop.
    #[arg(long, default_value = "error")]
    pub(crate) ambiguous: aullm::data::AmbiguityRule,
    /// 4DME AUs marked "(k)": error, include or exclude.
    #[arg(long, default_value = "error")]
    pub(crate) k_marked: aullm::data::KRule,
}

impl LoadArgs {
    fn options(&self) -> aullm::data::LoadOptions {
        aullm::data::LoadOptions {
            au: aullm::data::AuRules {
                ambiguous: self.ambiguous,
                k_marked: self.k_marked,
            },
            annotations: self.annotations.clone(),
            frames_dir: self.frames_dir.clone(),
            frames: self.frames,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct DataCheckArgs {
    /// Dataset folder.
    pub(crate) root: PathBuf,
    /// Dataset format: casme2, samm, fourdme, casme3a, sammlv or casme2lv.
    #[arg(long)]
    pub(crate) format: aullm::data::Dataset,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    /// Check the annotations only, not the frame files.
    #[arg(long)]
    pub(crate) no_frames: bool,
    /// Also run the face detector on every annotated frame and report how often it finds one face.
    #[arg(long)]
    pub(crate) detect: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct ScoreArgs {
    /// Predictions: per-clip CSV (dataset,subject,clip[,fold],AU<n>_p|AU<n>_c...) or, for
    /// spotting, intervals as CSV (video,onset,offset[,type]) or JSON Lines.
    #[arg(long)]
    pub(crate) pred: PathBuf,
    /// Dataset folder with the ground-truth annotations.
    #[arg(long)]
    pub(crate) gt: PathBuf,
    /// Its format: casme2, samm, fourdme, casme3a (AU detection) or sammlv, casme2lv (spotting).
    #[arg(long)]
    pub(crate) format: aullm::data::Dataset,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    /// Decision threshold for probabilities (choose it without the test data).
    #[arg(long, default_value_t = 0.5)]
    pub(crate) threshold: f64,
    /// Per-AU thresholds, CSV rows `AU<n>,<threshold>` (override --threshold).
    #[arg(long)]
    pub(crate) thresholds: Option<PathBuf>,
    /// Only these AUs, e.g. `--aus 1,2,4,7,12,14,15,17`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) aus: Option<Vec<aullm::au::Au>>,
    /// Also print the published papers' variant (optimistic: threshold swept on the test
    /// predictions, mean of positive- and negative-class F1).
    #[arg(long)]
    pub(crate) paper_compatible: bool,
    /// Score the predicted clips even when some annotated clips have no prediction.
    #[arg(long)]
    pub(crate) allow_missing: bool,
    /// Spotting: ground-truth intervals with unknown offset: error, apex or drop.
    #[arg(long, default_value = "error")]
    pub(crate) unknown_offset: aullm::eval::score::UnknownOffset,
    /// Spotting: score only micro or macro expressions.
    #[arg(long)]
    pub(crate) expressions: Option<aullm::data::ExpressionKind>,
    /// Print the scores as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn data_command(cfg: &Config, action: DataAction) -> Result<ExitCode> {
    match action {
        DataAction::Check(a) => {
            let loaded = aullm::data::load(&a.root, a.format, &a.load.options())?;
            let report = aullm::data::check::check(
                &loaded,
                aullm::data::check::CheckOptions {
                    frames: !a.no_frames,
                },
            );
            let detect = if a.detect {
                Some(aullm::data::detectability::detectability(
                    &loaded,
                    &cfg.face,
                    &cfg.models,
                )?)
            } else {
                None
            };
            if a.json {
                let mut v = serde_json::to_value(&report)?;
                if let (Some(d), Some(obj)) = (&detect, v.as_object_mut()) {
                    obj.insert("detection".into(), serde_json::to_value(d)?);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", report.render());
                if let Some(d) = &detect {
                    print!("{}", d.render());
                }
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(super::exit::INCOMPLETE)
            })
        }
    }
}

pub(crate) fn score_command(a: ScoreArgs) -> Result<ExitCode> {
    let opts = aullm::eval::score::ScoreOptions {
        pred: a.pred,
        gt: a.gt,
        format: a.format,
        load: a.load.options(),
        threshold: a.threshold,
        thresholds: a.thresholds,
        aus: a.aus,
        paper: a.paper_compatible,
        allow_missing: a.allow_missing,
        unknown_offset: a.unknown_offset,
        kind: a.expressions,
    };
    let report = aullm::eval::score::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
