//! Typed run configuration: TOML with every default written down once, unknown keys rejected.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub spot: crate::spot::SpotConfig,
}

/// `aullm run` / `aullm serve` / `aullm batch`: which model and how clips reach it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Model name (a folder under models/) or path.
    pub model: String,
    /// Clips waiting for inference; when full, a new clip is dropped and counted (live only).
    pub clip_queue: usize,
    /// Most clips per model call.
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

/// `aullm train`: optimiser, schedule, losses and augmentation (paper defaults where it gives them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training clips.
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
    pub schedule: String,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Seed of initialisation, sampling order and augmentation.
    pub seed: u64,
    /// Class-imbalance answer: "pos_weight" (BCE weighted n_neg/n_pos per AU, capped at 10),
    /// "asymmetric" (asymmetric loss, Ridnik et al. 2021) or "none".
    pub imbalance: String,
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
    pub ccr_targets: String,
    /// Random-crop augmentation: the crop box moves up to this many pixels (inference uses the centre).
    pub crop_margin: usize,
    /// Horizontal flip augmentation (left/right AU labels swap; unsided labels stay).
    pub flip: bool,
    /// Temporal jitter of the sampled frames, in frames.
    pub temporal_jitter: usize,
    /// Fraction of the training subjects held out (inner validation) to choose per-AU thresholds.
    pub val_fraction: f64,
    /// Compute threads (0 = all cores).
    pub threads: usize,
    /// Run folder of an earlier `aullm train`/`eval` on the same protocol whose finished front-end
    /// (per fold) starts this run instead of a seeded one: two-stage training, e.g. an MLP-head run
    /// then a short LLM run. Each fold checks that its source was trained on exactly its own
    /// training subjects. "" = a fresh front-end. (Left out of the saved configuration when empty,
    /// so runs from before this key keep their fingerprints.)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init_frontend: String,
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
            schedule: "cosine".into(),
            grad_clip: 1.0,
            seed: 1,
            imbalance: "pos_weight".into(),
            asl_gamma_neg: 4.0,
            asl_clip: 0.05,
            lambda_ccr: 0.1,
            lambda_inv: 1.0,
            lambda_delta: 0.01,
            ccr_targets: "one".into(),
            crop_margin: 4,
            flip: true,
            temporal_jitter: 2,
            val_fraction: 0.2,
            threads: 0,
            init_frontend: String::new(),
        }
    }
}

impl TrainConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            bail!("train.epochs and train.batch_size must be at least 1");
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
        if !matches!(self.schedule.as_str(), "cosine" | "constant") {
            bail!(
                "train.schedule = {:?}: expected \"cosine\" or \"constant\"",
                self.schedule
            );
        }
        if !matches!(
            self.imbalance.as_str(),
            "pos_weight" | "asymmetric" | "none"
        ) {
            bail!(
                "train.imbalance = {:?}: expected \"pos_weight\", \"asymmetric\" or \"none\"",
                self.imbalance
            );
        }
        if !matches!(self.ccr_targets.as_str(), "one" | "all") {
            bail!(
                "train.ccr_targets = {:?}: expected \"one\" or \"all\"",
                self.ccr_targets
            );
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

/// Event bus and sinks (`--sink`): queue sizes, where servers listen, client limits, LSL outlets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Address server sinks given a bare port listen on; "0.0.0.0" exposes them to the network.
    pub bind: String,
    /// Bearer token TCP/WebSocket clients must present; empty = none (prefer `--token`/AULLM_EVENTS_TOKEN).
    pub token: String,
    /// Events queued between the bus and each sink; a full queue drops (and counts) the event.
    pub queue: usize,
    /// Events queued per server client; a client this far behind is dropped (and counted).
    pub client_queue: usize,
    /// A socket write blocked this long drops the client as too slow, ms.
    pub write_timeout_ms: u64,
    /// Time a new client has to authenticate or finish the WebSocket handshake, ms.
    pub auth_timeout_ms: u64,
    /// Seconds of samples an LSL outlet keeps for inlets that fall behind.
    pub lsl_max_buffered_s: i32,
    /// At the end of a run, LSL outlets with inlets stay up this long so the last samples arrive, ms.
    pub lsl_linger_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            token: String::new(),
            queue: 4096,
            client_queue: 1024,
            write_timeout_ms: 2000,
            auth_timeout_ms: 5000,
            lsl_max_buffered_s: 360,
            lsl_linger_ms: 500,
        }
    }
}

/// Model artefact locations (both empty by default: cache dir from the environment, built-in manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Cache folder for fetched artefacts; empty = `$AULLM_CACHE_DIR` or the user's cache dir.
    pub cache_dir: String,
    /// Manifest file; empty = the manifest built into the binary (models/manifest.toml).
    pub manifest: String,
}

/// How frames are pulled from GStreamer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Frames buffered between the GStreamer thread and the face thread.
    pub queue_frames: usize,
    /// Treat the source as live (drop oldest when full): "auto" asks GStreamer, "yes" or "no" forces it.
    pub live: String,
    /// Significant bits of GRAY16 cameras (e.g. 10, 12, 16): pixels are scaled to 8 bits from this depth.
    pub gray16_bits: u32,
    /// Folder of extra pipeline templates (`NAME.pipeline`); the built-in ones are always available.
    pub pipelines_dir: String,
    /// Seconds to keep draining decoded frames after a GStreamer error before reporting it.
    pub error_drain_s: f64,
    /// A gap in presentation time longer than this many frame periods counts the missing frames as drops.
    pub gap_tolerance: f64,
    /// MJPEG files stay compressed until the face path reads them, and only the rows and columns it
    /// reads are decoded (same pixels as GStreamer's decoder); false = GStreamer decodes every frame whole.
    pub decode_regions: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            queue_frames: 64,
            live: "auto".into(),
            gray16_bits: 16,
            pipelines_dir: String::new(),
            error_drain_s: 2.0,
            gap_tolerance: 1.5,
            decode_regions: true,
        }
    }
}

/// Face detection (BlazeFace) and multi-face tracking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    /// "front" (128 px input, faces filling much of the frame) or "back" (256 px, smaller faces).
    pub detector: String,
    /// Minimum detection score (after sigmoid).
    pub score_threshold: f32,
    /// IoU above which detections are merged by weighted NMS.
    pub nms_iou: f32,
    /// Run the detector every N frames while all tracks are held (1 = every frame). 20 = 10 Hz at
    /// 200 fps: spotting F1 on the tuning and evaluation sets is identical at 10 and 20, for 5% less CPU.
    pub detect_every: u32,
    /// Maximum number of faces tracked at once.
    pub max_faces: usize,
    /// ONNX Runtime intra-op threads for the detector (one was fastest on this model).
    pub intra_threads: usize,
    /// Minimum IoU between a detection and a track's box to continue that track.
    pub match_iou: f32,
    /// A track is dropped after this many consecutive detector runs without a match.
    pub lost_after: u32,
    /// Side of the square a track is re-detected in, as a multiple of its face box.
    pub region_scale: f32,
    /// RGB gains that turn gray frames into the colour input BlazeFace expects (skin-tone tint;
    /// `[1, 1, 1]` = plain gray). Reduces the detector's keypoint bias on gray faces.
    pub gray_tint: [f32; 3],
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self {
            detector: "front".into(),
            score_threshold: 0.5,
            nms_iou: 0.3,
            detect_every: 20,
            max_faces: 1,
            intra_threads: 1,
            match_iou: 0.3,
            lost_after: 3,
            region_scale: 2.5,
            gray_tint: [1.15, 0.95, 0.8],
        }
    }
}

/// Alignment of each tracked face to a canonical gray crop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// Side of the square aligned crop in pixels.
    pub size: u32,
    /// Canonical eye centres (right eye, left eye in image order) as fractions of `size`.
    pub eye_right: [f32; 2],
    /// See `eye_right`.
    pub eye_left: [f32; 2],
    /// Canonical mouth centre as a fraction of `size`.
    pub mouth: [f32; 2],
    /// Register every crop to the track's reference crop (sub-pixel stabilisation).
    pub stabilise: bool,
    /// Crop region registered to the reference, `[x0, y0, x1, y1]` as fractions (rigid mid-face).
    pub register_region: [f32; 4],
    /// Gauss-Newton iterations of the registration per frame.
    pub refine_iters: u32,
    /// Frames averaged into a new track's reference crop (fewer noisy pixels in the template).
    pub reference_frames: u32,
    /// Keypoint disagreement (crop pixels, RMS over eyes and mouth) that re-anchors the track on the detector.
    pub reanchor_px: f32,
    /// Registration residual (normalised RMS) above which the track asks the detector for help.
    pub lost_residual: f32,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            size: 128,
            eye_right: [0.34, 0.40],
            eye_left: [0.66, 0.40],
            mouth: [0.50, 0.76],
            stabilise: true,
            register_region: [0.18, 0.22, 0.82, 0.70],
            refine_iters: 3,
            reference_frames: 4,
            reanchor_px: 4.0,
            lost_residual: 0.6,
        }
    }
}

/// The LLM reasoner: which decoder weights, the task prompt, LoRA and the AU head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReasonerConfig {
    /// "smollm2-135m" (a manifest artefact), a GGUF file, a Hugging Face folder (config.json,
    /// *.safetensors, tokenizer.json), or "random-qwen2-1.5b" (the paper's decoder shapes with
    /// random weights, for timing).
    pub weights: String,
    /// Task prompt E_text, placed before the content token and the instruction tokens.
    pub prompt: String,
    /// AUs the head predicts (8: CASME II's AU1, 2, 4, 7, 12, 14, 15, 17).
    pub num_aus: usize,
    /// "auto" (f16 on the CPU, bf16 on CUDA), "f32", "bf16" or "f16". On the CPU, f16 and bf16
    /// store the projection weights in half precision and compute in f32 (half the memory read
    /// per clip); "f32" keeps every weight in f32.
    pub dtype: String,
    /// "cpu", "cuda" or "cuda:N" (CUDA needs the `cuda` cargo feature).
    pub device: String,
    /// Trained adapter file (LoRA pairs, head, prompt); empty = fresh LoRA (no effect) and head.
    pub adapter: String,
    /// Seed of fresh LoRA and head values and of random weights.
    pub seed: u64,
    /// CPU threads for the reasoner's forward pass; 0 = every core (candle's global pool). On a
    /// machine whose cores are shared, 1 can be faster: thread hand-offs wait for a core.
    pub threads: usize,
    /// Low-rank adaptation of the attention projections.
    pub lora: LoraSection,
}

impl Default for ReasonerConfig {
    fn default() -> Self {
        Self {
            weights: "smollm2-135m".into(),
            prompt:
                "You are an expert in the Facial Action Coding System. The visual evidence of a \
                     facial micro-expression clip and one instruction per action unit follow. \
                     Decide which action units are active."
                    .into(),
            num_aus: 8,
            dtype: "auto".into(),
            device: "cpu".into(),
            adapter: String::new(),
            seed: 0,
            threads: 0,
            lora: LoraSection::default(),
        }
    }
}

/// Which variant of the paper's ablation table (Table V) the front-end builds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ablation {
    /// The full AULLM++ front-end.
    #[default]
    Full,
    /// w/o R-AUGNN: no instruction tokens.
    NoAugnn,
    /// FACS prior replaced by a fully connected graph.
    FullyConnected,
    /// FACS prior replaced by self-loops only.
    SelfLoopsOnly,
    /// w/o EFP: linear projection of pooled F_mid and F_high instead of the gated fusion.
    NoEfp,
    /// Content token from the enhanced F_mid alone.
    FMidOnly,
    /// Content token from F_high alone.
    FHighOnly,
    /// w/o LLM: the MLP head decides.
    MlpHead,
    /// w/o CCR: training-only switch; the graph is the full one.
    NoCcr,
}

/// The channels of a clip tensor. Global pooling in the front-end discards where motion was, so
/// the gray frame is kept beside the motion it is measured against.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClipInput {
    /// One channel: the aligned gray frames.
    Gray,
    /// Two channels: the gray frames, and each frame minus the clip's first (onset) frame, amplified.
    #[default]
    GrayDiff,
}

impl ClipInput {
    /// Channels of a clip with this input.
    pub fn channels(self) -> usize {
        match self {
            ClipInput::Gray => 1,
            ClipInput::GrayDiff => 2,
        }
    }
}

/// The AULLM++ front-end (3D CNN, MGE-EFP, R-AUGNN, MLP head) and the clips it reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// Frames per clip, sampled onset → apex → offset.
    pub frames: usize,
    /// Side of the square gray input frames (a multiple of 16: the backbone halves it four times).
    pub size: usize,
    /// Channels of the backbone's stages; F_mid is stage 2's output, F_high stage 4's.
    pub channels: [usize; 4],
    /// Temporal kernel of the (2+1)D blocks (odd).
    pub temporal_kernel: usize,
    /// Width D of the tokens (the LLM's hidden size; 576 for SmolLM2-135M).
    pub width: usize,
    /// Width d of the AU graph nodes.
    pub node_dim: usize,
    /// Graph convolution layers L (the paper uses 2).
    pub gcn_layers: usize,
    /// Hidden width of the MLP head.
    pub head_hidden: usize,
    /// AUs, one graph node and one output each (CASME II's usual eight by default).
    pub aus: Vec<u32>,
    /// FACS prior graph file (edges with kind, weight and source).
    pub prior_graph: String,
    /// Initial prior weight α of eq. 6 (learned through a sigmoid; biased toward the prior).
    pub alpha_init: f32,
    /// Initial Laplacian gain γ of eq. 1.
    pub gamma_init: f32,
    /// Ablation variant (Table V).
    pub ablation: Ablation,
    /// What the clip's channels hold (see [`ClipInput`]).
    pub input: ClipInput,
    /// ONNX Runtime provider for the exported front-end: "auto" (CUDA when the loaded ONNX Runtime
    /// has it, else CPU with a logged fall back), "cpu" or "cuda".
    pub execution_provider: String,
    /// ONNX Runtime intra-op threads for the front-end session.
    pub intra_threads: usize,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            frames: 8,
            size: 112,
            channels: [16, 32, 64, 64],
            temporal_kernel: 3,
            width: 576,
            node_dim: 64,
            gcn_layers: 2,
            head_hidden: 256,
            aus: vec![1, 2, 4, 7, 12, 14, 15, 17],
            prior_graph: "calibration/au_prior_graph.toml".into(),
            alpha_init: 0.8,
            gamma_init: 0.1,
            ablation: Ablation::Full,
            input: ClipInput::GrayDiff,
            execution_provider: "auto".into(),
            intra_threads: 1,
        }
    }
}

/// LoRA rank, scale and targets (the paper: r = 16, alpha = 32 on the attention modules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    /// Rank r.
    pub rank: usize,
    /// Scale numerator: updates are multiplied by alpha / r.
    pub alpha: f64,
    /// Adapted projections: any of "q", "k", "v", "o".
    pub targets: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            targets: vec!["q".into(), "v".into()],
        }
    }
}

impl FrontendConfig {
    /// Checks shapes and ranges the graph relies on.
    pub fn validate(&self) -> Result<()> {
        if self.frames == 0 {
            bail!("frontend.frames must be at least 1");
        }
        if !matches!(self.execution_provider.as_str(), "auto" | "cpu" | "cuda") {
            bail!(
                "frontend.execution_provider = {:?}: expected \"auto\", \"cpu\" or \"cuda\"",
                self.execution_provider
            );
        }
        if self.intra_threads == 0 {
            bail!("frontend.intra_threads must be at least 1");
        }
        if self.size < 32 || !self.size.is_multiple_of(16) {
            bail!(
                "frontend.size = {}: expected a multiple of 16, at least 32",
                self.size
            );
        }
        if self.channels.contains(&0) || self.width == 0 || self.node_dim == 0 {
            bail!("frontend.channels, width and node_dim must all be at least 1");
        }
        if self.head_hidden == 0 || self.gcn_layers == 0 {
            bail!("frontend.head_hidden and gcn_layers must be at least 1");
        }
        if self.temporal_kernel.is_multiple_of(2) {
            bail!(
                "frontend.temporal_kernel = {}: expected an odd number",
                self.temporal_kernel
            );
        }
        if self.aus.is_empty() {
            bail!("frontend.aus is empty");
        }
        let mut seen = std::collections::BTreeSet::new();
        for au in &self.aus {
            if !seen.insert(au) {
                bail!("frontend.aus lists AU{au} twice");
            }
        }
        if !(self.alpha_init > 0.0 && self.alpha_init < 1.0) {
            bail!(
                "frontend.alpha_init = {}: expected 0 < alpha < 1",
                self.alpha_init
            );
        }
        if !self.gamma_init.is_finite() {
            bail!("frontend.gamma_init must be finite");
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
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.message()))
                    .with_context(|| format!("invalid TOML in config file {}", p.display()))?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "the defaults".to_string()),
        };
        for ov in overrides {
            apply_override(&mut table, ov)?;
        }
        let cfg: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            anyhow::anyhow!(
                "config {origin} (with overrides {overrides:?}): {}",
                e.message()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("config {origin} is not valid"))?;
        Ok(cfg)
    }

    /// Checks values serde cannot (ranges, enumerations).
    pub fn validate(&self) -> Result<()> {
        match self.face.detector.as_str() {
            "front" | "back" => {}
            other => bail!("face.detector = {other:?}: expected \"front\" or \"back\""),
        }
        if self.events.bind.parse::<std::net::IpAddr>().is_err() {
            bail!(
                "events.bind = {:?}: expected an IP address such as 127.0.0.1 or 0.0.0.0",
                self.events.bind
            );
        }
        if self.events.queue == 0 || self.events.client_queue == 0 {
            bail!("events.queue and events.client_queue must be at least 1");
        }
        if self.events.lsl_max_buffered_s < 1 {
            bail!("events.lsl_max_buffered_s must be at least 1");
        }
        match self.ingest.live.as_str() {
            "auto" | "yes" | "no" => {}
            other => bail!("ingest.live = {other:?}: expected \"auto\", \"yes\" or \"no\""),
        }
        if !(8..=16).contains(&self.ingest.gray16_bits) {
            bail!(
                "ingest.gray16_bits = {}: expected 8..=16",
                self.ingest.gray16_bits
            );
        }
        if self.ingest.queue_frames == 0 {
            bail!("ingest.queue_frames must be at least 1");
        }
        if self.face.detect_every == 0 {
            bail!("face.detect_every must be at least 1");
        }
        if self.face.max_faces == 0 {
            bail!("face.max_faces must be at least 1");
        }
        let r = self.align.register_region;
        if !(r[0] >= 0.02
            && r[1] >= 0.02
            && r[2] <= 0.98
            && r[3] <= 0.98
            && r[0] < r[2]
            && r[1] < r[3])
        {
            bail!(
                "align.register_region = {r:?}: expected 0.02 <= x0 < x1 <= 0.98 and the same for y"
            );
        }
        if self.align.size < 32 {
            bail!("align.size = {}: expected at least 32", self.align.size);
        }
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
        let r = &self.reasoner;
        if r.weights.trim().is_empty() {
            bail!(
                "reasoner.weights is empty: name an artefact, a GGUF file, a folder or \"random-qwen2-1.5b\""
            );
        }
        if r.prompt.trim().is_empty() {
            bail!("reasoner.prompt is empty: the task prompt needs at least one token");
        }
        if r.num_aus == 0 {
            bail!("reasoner.num_aus must be at least 1");
        }
        match r.dtype.as_str() {
            "auto" | "f32" | "bf16" | "f16" => {}
            other => {
                bail!("reasoner.dtype = {other:?}: expected \"auto\", \"f32\", \"bf16\" or \"f16\"")
            }
        }
        crate::runtime::devices::parse(&r.device).context("reasoner.device")?;
        crate::graph::reasoner::LoraConfig::new(r.lora.rank, r.lora.alpha, &r.lora.targets)
            .context("reasoner.lora")?;
        self.frontend.validate()?;
        self.spot.validate()?;
        Ok(())
    }

    /// The effective configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }

    /// The model cache folder this configuration selects.
    pub fn cache_dir(&self) -> PathBuf {
        if self.models.cache_dir.is_empty() {
            crate::models::ModelCache::default_root()
        } else {
            PathBuf::from(&self.models.cache_dir)
        }
    }
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
}
