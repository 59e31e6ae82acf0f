//! The `[frontend]` section: the AULLM++ front-end's shape, AUs, prior graph, ablation and input.

use crate::onnx::ProviderChoice;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

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

/// What runs the exported front-end at inference (`frontend.engine`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FrontendEngine {
    /// ONNX Runtime, except when `reasoner.device` is a GPU that the loaded ONNX Runtime cannot
    /// use (no CUDA execution provider): then candle on that GPU.
    #[default]
    Auto,
    /// ONNX Runtime (`frontend.onnx`, on `frontend.execution_provider`).
    Onnx,
    /// candle (`frontend.safetensors`, the training graph) on `reasoner.device`.
    Candle,
}

impl FrontendEngine {
    /// serde's skip test: the default is left out of saved configurations.
    pub fn is_auto(&self) -> bool {
        *self == FrontendEngine::Auto
    }
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
    /// Four channels: the gray frames, the optical flow (x, y) from the onset frame to each frame,
    /// and the flow's strain magnitude: motion measured against the face's own texture, the input
    /// the micro-expression literature uses for identity invariance.
    Flow,
}

impl ClipInput {
    /// Channels of a clip with this input.
    pub fn channels(self) -> usize {
        match self {
            ClipInput::Gray => 1,
            ClipInput::GrayDiff => 2,
            ClipInput::Flow => 4,
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
    pub aus: Vec<crate::au::Au>,
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
    pub execution_provider: ProviderChoice,
    /// ONNX Runtime intra-op threads for the front-end session.
    pub intra_threads: usize,
    /// What runs the front-end at inference: "auto", "onnx" or "candle" (see [`FrontendEngine`]).
    #[serde(skip_serializing_if = "FrontendEngine::is_auto")]
    pub engine: FrontendEngine,
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
            execution_provider: ProviderChoice::Auto,
            intra_threads: 1,
            engine: FrontendEngine::Auto,
        }
    }
}

impl FrontendConfig {
    /// Checks shapes and ranges the graph relies on.
    pub fn validate(&self) -> Result<()> {
        if self.frames == 0 {
            bail!("frontend.frames must be at least 1");
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
