//! Typed run configuration: TOML with every default written down once, unknown keys rejected.
//!
//! This module composes, layers (defaults < file < `--set`) and validates. Each stage owns its
//! section and its checks: `[models]` in models, `[ingest]` in ingest, `[face]` and `[align]` in
//! face, `[spot]` in spot, `[frontend]` in graph, `[reasoner]` in graph::reasoner, `[events]` in
//! events. The sections of the commands that join the stages, `[stream]` and `[train]`, are
//! defined here, because stream and train read the whole configuration.
//!
//! May import: the stage modules whose sections it composes. Imported by: stream, train, eval,
//! runtime, jobs, batch, doctor, and the command line; never by a stage module.

pub use crate::events::config::EventsConfig;
pub use crate::face::config::{AlignConfig, DetectorModel, FaceConfig};
pub use crate::graph::config::{Ablation, ClipInput, FrontendConfig};
pub use crate::graph::reasoner::config::{DTypeChoice, LoraSection, ReasonerConfig};
pub use crate::ingest::config::{IngestConfig, LiveMode};
pub use crate::models::config::ModelsConfig;
pub use crate::onnx::ProviderChoice;
pub use crate::spot::SpotConfig;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod ranges;

/// The whole configuration of a run. Every field has its default in the `Default` impls below.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where model artefacts live and which manifest names them.
    pub models: ModelsConfig,
    /// Frame ingest from GStreamer.
    pub ingest: IngestConfig,
    /// Face detection and tracking.
    pub face: FaceConfig,
    /// Alignment to the canonical crop and its stabilisation.
    pub align: AlignConfig,
    /// The LLM reasoner (decoder with LoRA, AU head, task prompt).
    pub reasoner: ReasonerConfig,
    /// AULLM++ visual front-end and AU graph (clip shape, widths, prior graph, ablation).
    pub frontend: FrontendConfig,
    /// Training: optimiser, losses (CCR), augmentation, thresholds.
    pub train: TrainConfig,
    /// The live pipeline: model, clip queue, batching, crop ring.
    pub stream: StreamConfig,
    /// AU events and their sinks (bus queues, server bind address, tokens, LSL).
    pub events: EventsConfig,
    /// Onset/apex/offset spotting; defaults come from calibration/spotting.toml.
    #[serde(deserialize_with = "crate::spot::params::deserialize_over_calibration")]
    pub spot: SpotConfig,
}

/// `aullm run` / `aullm serve` / `aullm batch`: which model and how clips reach it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Model name (a folder under models/) or path.
    pub model: String,
    /// Clips waiting for inference; when full, a new clip is dropped and counted (live only).
    pub clip_queue: usize,
    /// Most clips per model call (a recording always uses full batches, for reproducibility).
    pub max_batch: usize,
    /// Seconds of aligned crops kept per face (longer than the longest interval the spotter emits).
    pub ring_s: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            model: "default".into(),
            clip_queue: 32,
            max_batch: 8,
            ring_s: 4.5,
        }
    }
}

/// `train.schedule`: the learning rate after warm-up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to 5 % of the peak at the last step.
    #[default]
    Cosine,
    /// The peak rate throughout.
    Constant,
}

/// `train.imbalance`: how rare AUs are weighted in the loss.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Imbalance {
    /// BCE with positives weighted n_neg/n_pos per AU, capped at 10.
    #[default]
    PosWeight,
    /// Asymmetric loss (Ridnik et al. 2021).
    Asymmetric,
    /// Plain BCE.
    None,
}

impl std::fmt::Display for Imbalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Imbalance::PosWeight => "pos_weight",
            Imbalance::Asymmetric => "asymmetric",
            Imbalance::None => "none",
        })
    }
}

/// `train.ccr_targets`: which AUs CCR perturbs per sample and step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CcrTargets {
    /// One random target AU (one extra decider pass).
    #[default]
    One,
    /// Every AU (N extra passes).
    All,
}

/// `train.val_by`: what the inner validation split holds out whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValBy {
    /// Subjects (people).
    #[default]
    Subject,
    /// Identity groups: SynthME's people from one photo together (they share its camera, light
    /// and population), so validation asks what a new photo asks; elsewhere a subject is its
    /// own group.
    Group,
}

impl ValBy {
    /// serde's skip test: the default is left out of saved configurations, so runs from before
    /// this key keep their fingerprints.
    fn is_subject(&self) -> bool {
        *self == ValBy::Subject
    }
}

/// `train.thresholds`: how a finished run sets its per-AU decision thresholds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// Each AU's threshold maximises its F1 on the inner validation clips.
    #[default]
    Validation,
    /// 0.5 for every AU: a validation split of a few people is too small to tune 8 cut points on
    /// (README "The shipped model").
    Fixed,
}

impl ThresholdRule {
    /// serde's skip test: the default is left out of saved configurations, so runs from before
    /// this key keep their fingerprints.
    fn is_validation(&self) -> bool {
        *self == ThresholdRule::Validation
    }
}

/// `aullm train`: optimiser, schedule, losses and augmentation (paper defaults where it gives them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training clips. 0 trains nothing: the starting network (fresh, or the
    /// `init_frontend` / `--init` front-end) only gets its thresholds from the validation clips.
    pub epochs: usize,
    /// Clips per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate of the front-end (backbone, MGE-EFP, R-AUGNN, MLP head) and δ (paper: 2e-4).
    pub lr_visual: f64,
    /// AdamW learning rate of the LoRA pairs and the AU head (paper: 1e-4).
    pub lr_lora: f64,
    /// AdamW decoupled weight decay (paper: 1e-4).
    pub weight_decay: f64,
    /// Linear warm-up steps before the schedule.
    pub warmup_steps: usize,
    /// "cosine" (to 5 % of the peak at the last step) or "constant".
    pub schedule: Schedule,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Seed of initialisation, sampling order and augmentation.
    pub seed: u64,
    /// Class-imbalance answer: "pos_weight" (BCE weighted n_neg/n_pos per AU, capped at 10),
    /// "asymmetric" (asymmetric loss, Ridnik et al. 2021) or "none".
    pub imbalance: Imbalance,
    /// Asymmetric loss: focusing exponent on negatives.
    pub asl_gamma_neg: f64,
    /// Asymmetric loss: probability margin shifted off negatives.
    pub asl_clip: f64,
    /// λ_ccr of eq. 9 (paper: 0.1); 0 or ablation "no_ccr" turns CCR off.
    pub lambda_ccr: f64,
    /// λ_inv of eq. 8.
    pub lambda_inv: f64,
    /// λ_Δ of eq. 8.
    pub lambda_delta: f64,
    /// "one": one random target AU per sample per step (one extra decider pass); "all": every AU
    /// (N extra passes: about N/2 times the step cost).
    pub ccr_targets: CcrTargets,
    /// Random-crop augmentation: the crop box moves up to this many pixels (inference uses the centre).
    pub crop_margin: usize,
    /// Horizontal flip augmentation (left/right AU labels swap; unsided labels stay).
    pub flip: bool,
    /// Temporal jitter of the sampled frames, in frames.
    pub temporal_jitter: usize,
    /// Fraction of the training subjects held out (inner validation) to choose per-AU thresholds.
    pub val_fraction: f64,
    /// What the inner validation holds out whole: "subject" or "group" (SynthME: every person of
    /// a photo together).
    #[serde(skip_serializing_if = "ValBy::is_subject")]
    pub val_by: ValBy,
    /// Per-AU decision thresholds: "validation" (each AU's best F1 on the inner validation clips)
    /// or "fixed" (0.5 for every AU).
    #[serde(skip_serializing_if = "ThresholdRule::is_validation")]
    pub thresholds: ThresholdRule,
    /// Compute threads (0 = all cores).
    pub threads: usize,
    /// Run folder of an earlier `aullm train`/`eval` on the same protocol whose finished front-end
    /// (per fold) starts this run instead of a seeded one: two-stage training, e.g. an MLP-head run
    /// then a short LLM run. Each fold checks that its source was trained on exactly its own
    /// training subjects. "" = a fresh front-end. (Left out of the saved configuration when empty,
    /// so runs from before this key keep their fingerprints.)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init_frontend: String,
    /// With `init_frontend` a run's checkpoint: start CCR's perturbations δ from that checkpoint's
    /// too, so that a second stage's CCR loss starts where the first stage's ended rather than at
    /// a fresh δ's flip loss. A model bundle has no δ (an error). (Left out of the saved
    /// configuration when false.)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init_delta: bool,
    /// At most this many clips per fold to learn from (training + inner validation), drawn evenly
    /// over the fold's subjects, the same seed giving nested sets (60 ⊂ 120 ⊂ 250): the points of
    /// a learning curve. 0 = every clip. (Left out of the saved configuration when 0.)
    #[serde(skip_serializing_if = "is_zero")]
    pub max_clips: usize,
    /// The candle device training runs on: "cpu", "cuda" or "cuda:N" (a build with the `cuda`
    /// feature). On a GPU the reasoner's frozen weights take `reasoner.dtype` ("auto" = bf16);
    /// LoRA pairs, the head, the front-end and AdamW stay f32. (Left out of the saved
    /// configuration when "cpu"; never part of a run's fingerprint, so a run resumes anywhere.)
    #[serde(skip_serializing_if = "is_cpu")]
    pub device: crate::graph::devices::DeviceName,
}

/// serde's skip test for the default device.
fn is_cpu(d: &crate::graph::devices::DeviceName) -> bool {
    *d == crate::graph::devices::DeviceName::Cpu
}

/// serde's skip test for counts whose 0 means "off".
fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 16,
            lr_visual: 2e-4,
            lr_lora: 1e-4,
            weight_decay: 1e-4,
            warmup_steps: 20,
            schedule: Schedule::Cosine,
            grad_clip: 1.0,
            seed: 1,
            imbalance: Imbalance::PosWeight,
            asl_gamma_neg: 4.0,
            asl_clip: 0.05,
            lambda_ccr: 0.1,
            lambda_inv: 1.0,
            lambda_delta: 0.01,
            ccr_targets: CcrTargets::One,
            crop_margin: 4,
            flip: true,
            temporal_jitter: 2,
            val_fraction: 0.2,
            val_by: ValBy::Subject,
            thresholds: ThresholdRule::Validation,
            threads: 0,
            init_frontend: String::new(),
            init_delta: false,
            max_clips: 0,
            device: crate::graph::devices::DeviceName::Cpu,
        }
    }
}

impl TrainConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("train.batch_size must be at least 1");
        }
        for (k, v) in [
            ("lr_visual", self.lr_visual),
            ("lr_lora", self.lr_lora),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
            ("lambda_ccr", self.lambda_ccr),
            ("lambda_inv", self.lambda_inv),
            ("lambda_delta", self.lambda_delta),
            ("asl_gamma_neg", self.asl_gamma_neg),
            ("asl_clip", self.asl_clip),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("train.{k} = {v}: expected a finite number >= 0");
            }
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            bail!(
                "train.val_fraction = {}: expected 0 <= f < 0.9",
                self.val_fraction
            );
        }
        Ok(())
    }
}

impl Config {
    /// Loads `path` (if given) over the defaults, then applies `key=value` overrides
    /// (e.g. `face.max_faces=2`); unknown keys are errors naming the key and the file.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    let at = e
                        .span()
                        .map(|s| line_column(&text, s.start))
                        .map_or(String::new(), |(l, c)| format!(":{l}:{c}"));
                    anyhow::anyhow!(
                        "invalid TOML in config file {}{at}: {}",
                        p.display(),
                        e.message()
                    )
                })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "the defaults".to_string()),
        };
        for ov in overrides {
            apply_override(&mut table, ov)?;
        }
        // The path names the key a bad value sits under (`face.detector`), which serde alone loses.
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let (path, msg) = (e.path().to_string(), e.inner().message().to_string());
                // A section that reads its own keys (`[spot]`) names the whole key already.
                let what = if msg.starts_with(&format!("{path}.")) {
                    msg
                } else {
                    format!("{path}: {msg}")
                };
                anyhow::anyhow!("config {origin} (with overrides {overrides:?}): {what}")
            })?;
        cfg.validate().with_context(|| match path {
            Some(p) => format!("config file {} is not valid", p.display()),
            None => "the configuration is not valid".to_string(),
        })?;
        Ok(cfg)
    }

    /// Checks values serde cannot (ranges), section by section.
    pub fn validate(&self) -> Result<()> {
        ranges::check(self)?;
        self.events.validate()?;
        self.ingest.validate()?;
        self.face.validate()?;
        self.align.validate()?;
        self.train.validate()?;
        if self.stream.clip_queue == 0 || self.stream.max_batch == 0 {
            bail!("stream.clip_queue and stream.max_batch must be at least 1");
        }
        if !(self.stream.ring_s > 0.0 && self.stream.ring_s.is_finite()) {
            bail!(
                "stream.ring_s = {}: expected seconds > 0",
                self.stream.ring_s
            );
        }
        self.reasoner.validate()?;
        self.frontend.validate()?;
        self.spot.validate()?;
        Ok(())
    }

    /// The sections a network is built from, seeded with `train.seed`.
    pub fn net_spec(&self) -> crate::graph::model::NetSpec<'_> {
        crate::graph::model::NetSpec {
            frontend: &self.frontend,
            reasoner: &self.reasoner,
            models: &self.models,
            seed: self.train.seed,
            device: self.train.device,
        }
    }

    /// The effective configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }

    /// The model cache folder this configuration selects.
    pub fn cache_dir(&self) -> PathBuf {
        self.models.cache_dir()
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Sets `a.b.c = value` inside `table`; the value is parsed as TOML, falling back to a plain string.
fn apply_override(table: &mut toml::Table, ov: &str) -> Result<()> {
    let (key, raw) = ov
        .split_once('=')
        .with_context(|| format!("override {ov:?}: expected KEY=VALUE, e.g. face.max_faces=2"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let (last, path) = parts
        .split_last()
        .with_context(|| format!("override {ov:?}: empty key"))?;
    let mut cur = table;
    for p in path {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .with_context(|| format!("override {ov:?}: {p} is not a section"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = Config::default();
        let text = cfg.to_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, "[face]\nmax_faces = 2\ndetect_evry = 5\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&p), &[]).unwrap_err());
        assert!(err.contains("detect_evry"), "{err}");
        assert!(err.contains("run.toml"), "{err}");
    }

    #[test]
    fn overrides_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, "[face]\nmax_faces = 2\n").unwrap();
        let cfg = Config::load(Some(&p), &["face.max_faces=3".into()]).unwrap();
        assert_eq!(cfg.face.max_faces, 3);
        assert_eq!(cfg.face.detect_every, FaceConfig::default().detect_every);
        let err = Config::load(None, &["face.nope=1".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("nope"));
    }

    #[test]
    fn reasoner_section_is_checked() {
        let cfg = Config::default();
        assert_eq!(cfg.reasoner.lora.rank, 16);
        assert_eq!(cfg.reasoner.num_aus, 8);
        let err =
            Config::load(None, &["reasoner.lora.targets=[\"q\", \"up\"]".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("reasoner.lora"), "{err:#}");
        let err = Config::load(None, &["reasoner.device=gpu0".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("reasoner.device"), "{err:#}");
        let err = Config::load(None, &["reasoner.dtype=f64".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("reasoner.dtype"), "{err:#}");
        let cfg = Config::load(
            None,
            &[
                "reasoner.lora.alpha=8".into(),
                "reasoner.device=cuda:1".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.reasoner.lora.alpha, 8.0);
    }

    #[test]
    fn frontend_ablation_and_size_are_checked() {
        let cfg = Config::load(None, &["frontend.ablation=\"f_mid_only\"".into()]).unwrap();
        assert_eq!(cfg.frontend.ablation, Ablation::FMidOnly);
        let err = Config::load(None, &["frontend.ablation=\"no_llm\"".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("no_llm"), "{err:#}");
        let err = Config::load(None, &["frontend.size=100".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("frontend.size"), "{err:#}");
    }

    #[test]
    fn toml_syntax_errors_give_line_and_column_and_wrong_types_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, "[face]\nmax_faces = 2\ndetect_every = = 5\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&p), &[]).unwrap_err());
        assert!(err.contains("run.toml:3:"), "{err}");
        std::fs::write(&p, "[spot]\nthreshold_mads = \"high\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&p), &[]).unwrap_err());
        assert!(err.contains("spot.threshold_mads"), "{err}");
        for ov in [
            "face.max_faces=\"two\"",
            "stream.ring_s=[1]",
            "events.queue=1.5",
        ] {
            let key = ov.split('=').next().unwrap();
            let err = format!("{:#}", Config::load(None, &[ov.into()]).unwrap_err());
            assert!(err.contains(key), "{ov}: {err}");
        }
    }

    #[test]
    fn bad_enumeration_is_rejected() {
        let err = Config::load(None, &["face.detector=side".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("face.detector"));
    }

    #[test]
    fn events_section_is_checked() {
        assert_eq!(Config::default().events.bind, "127.0.0.1");
        let err = Config::load(None, &["events.bind=everywhere".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("events.bind"), "{err:#}");
        let err = Config::load(None, &["events.client_queue=0".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("client_queue"), "{err:#}");
        let cfg = Config::load(None, &["events.bind=0.0.0.0".into()]).unwrap();
        assert_eq!(cfg.events.bind, "0.0.0.0");
    }

    #[test]
    fn partial_section_overrides_one_key_and_bad_values_name_the_key() {
        let cfg = Config::load(None, &["spot.threshold_mads=9".into()]).unwrap();
        assert_eq!(cfg.spot.threshold_mads, 9.0);
        assert_eq!(cfg.spot.lag_s, crate::spot::SpotConfig::default().lag_s);
        for (ov, key) in [
            ("spot.lag_s=0", "spot.lag_s"),
            ("spot.edge_fraction=1.5", "spot.edge_fraction"),
            ("spot.emit=\"all\"", "spot.emit"),
            ("spot.window_s=0.1", "spot.window_s"),
        ] {
            let err = format!("{:#}", Config::load(None, &[ov.into()]).unwrap_err());
            assert!(err.contains(key), "{ov}: {err}");
        }
        let err = format!(
            "{:#}",
            Config::load(None, &["spot.lag=0.1".into()]).unwrap_err()
        );
        assert!(err.contains("lag") && err.contains("spot"), "{err}");
    }

    #[test]
    fn the_paper_configuration_loads_with_the_papers_values() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper.toml");
        let c = Config::load(Some(&p), &[]).unwrap();
        let f = &c.frontend;
        assert_eq!((f.size, f.frames, f.width, f.node_dim), (112, 8, 1536, 256));
        let r = &c.reasoner;
        assert_eq!(r.weights, "random-qwen2-1.5b");
        assert_eq!((r.lora.rank, r.lora.alpha), (16, 32.0));
        assert_eq!(r.lora.targets, ["q", "v"]);
        let t = &c.train;
        assert_eq!((t.lr_visual, t.lr_lora, t.weight_decay), (2e-4, 1e-4, 1e-4));
        assert_eq!((t.lambda_ccr, t.epochs, t.batch_size), (0.1, 350, 256));
        assert_eq!(t.ccr_targets, CcrTargets::One);
        let gpu = crate::graph::devices::DeviceName::Cuda(0);
        assert_eq!((t.device, r.device), (gpu, gpu));
        // The device is saved with a run's configuration when it is not the CPU.
        assert!(c.to_toml().contains("device = \"cuda:0\""));
        // Left out at their defaults, so earlier runs keep their fingerprints.
        let saved: toml::Value = toml::from_str(&Config::default().to_toml()).unwrap();
        assert!(saved["train"].get("device").is_none());
        assert!(saved["frontend"].get("engine").is_none());
        assert!(saved["frontend"].get("size").is_some());
    }
}
