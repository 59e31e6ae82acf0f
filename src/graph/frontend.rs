//! The AULLM++ front-end: clip → (T_v, τ_au) and the MLP head's AU logits, built for one ablation variant.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::augnn::AuGnn;
use super::backbone::Backbone;
use super::efp::{Efp, spatio_temporal_pool};
use super::head::MlpHead;
use super::prior::PriorGraph;
use crate::graph::config::Ablation;
use crate::graph::config::FrontendConfig;

/// calibration/au_prior_graph.toml as shipped.
const BUILTIN_PRIOR: &str = include_str!("../../calibration/au_prior_graph.toml");

/// Everything that fixes the graph's shape: the configuration and the FACS prior matrix it was built with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontendSpec {
    /// The `[frontend]` configuration.
    pub config: FrontendConfig,
    /// A_prior over `config.aus`, row-major N x N (from the prior graph file at build time).
    pub prior: Vec<f32>,
}

impl FrontendSpec {
    /// Reads the prior graph named by `config.prior_graph` (relative paths from `root`).
    pub fn from_config(config: &FrontendConfig, root: &Path) -> Result<Self> {
        config.validate()?;
        let p = Path::new(&config.prior_graph);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        };
        // The shipped graph is built in, so an installed binary run from any folder finds it.
        let graph = if !path.exists() && config.prior_graph == FrontendConfig::default().prior_graph
        {
            PriorGraph::parse(BUILTIN_PRIOR)?
        } else {
            PriorGraph::load(&path)?
        };
        let prior = graph.matrix(&config.aus);
        Ok(Self {
            config: config.clone(),
            prior,
        })
    }

    /// Checks the configuration and the prior's size.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        let n = self.config.aus.len();
        if self.prior.len() != n * n {
            bail!(
                "prior has {} entries, expected {n} x {n} for {} AUs",
                self.prior.len(),
                n
            );
        }
        Ok(())
    }
}

/// What the front-end hands the reasoner.
#[derive(Debug, Clone)]
pub struct FrontendOutput {
    /// Content token T_v [B, 1, D] (eq. 4).
    pub content: Tensor,
    /// Instruction tokens τ_au [B, N, D]; `None` without R-AUGNN.
    pub instructions: Option<Tensor>,
}

/// The network: backbone, MGE-EFP, R-AUGNN (unless ablated) and the MLP head.
#[derive(Debug, Clone)]
pub struct Frontend {
    spec: FrontendSpec,
    backbone: Backbone,
    efp: Efp,
    augnn: Option<AuGnn>,
    head: MlpHead,
}

impl Frontend {
    /// Builds the network's variables under `vb` (names `backbone.*`, `efp.*`, `augnn.*`, `head.*`).
    pub fn new(spec: &FrontendSpec, vb: VarBuilder) -> Result<Self> {
        spec.validate()?;
        let cfg = &spec.config;
        let n = cfg.aus.len();
        let augnn = if cfg.ablation == Ablation::NoAugnn {
            None
        } else {
            Some(AuGnn::new(cfg, &spec.prior, vb.pp("augnn"))?)
        };
        let tokens = 1 + if augnn.is_some() { n } else { 0 };
        Ok(Self {
            spec: spec.clone(),
            backbone: Backbone::new(cfg, vb.pp("backbone"))?,
            efp: Efp::new(cfg, vb.pp("efp"))?,
            augnn,
            head: MlpHead::new(tokens, cfg.width, cfg.head_hidden, n, vb.pp("head"))?,
        })
    }

    /// Checks that `clip` is [B, C, T, H, W] with this front-end's channels, T and size.
    pub fn check_clip(&self, clip: &Tensor) -> Result<()> {
        let c = &self.spec.config;
        let dims = clip.dims();
        if dims.len() != 5
            || dims[0] == 0
            || dims[1] != c.input.channels()
            || dims[2] != c.frames
            || dims[3] != c.size
            || dims[4] != c.size
        {
            bail!(
                "clip shape {dims:?}: expected [batch, {}, {}, {}, {}] (frontend.input, frontend.frames, frontend.size)",
                c.input.channels(),
                c.frames,
                c.size,
                c.size
            );
        }
        if clip.dtype() != DType::F32 {
            bail!("clip dtype {:?}: expected f32", clip.dtype());
        }
        Ok(())
    }

    /// Clip [B, C, T, H, W] (f32, see `clip::clip_data`) → T_v and τ_au.
    pub fn forward(&self, clip: &Tensor) -> Result<FrontendOutput> {
        self.check_clip(clip)?;
        let (f_mid, f_high) = self.backbone.forward(clip).context("backbone")?;
        let content = self.efp.forward(&f_mid, &f_high).context("MGE-EFP")?;
        let instructions = match &self.augnn {
            Some(g) => Some(
                g.forward(&spatio_temporal_pool(&f_high)?)
                    .context("R-AUGNN")?,
            ),
            None => None,
        };
        Ok(FrontendOutput {
            content,
            instructions,
        })
    }

    /// The MLP head's AU logits [B, N] for a front-end output.
    pub fn head_logits(&self, out: &FrontendOutput) -> Result<Tensor> {
        Ok(self.head.forward(&out.content, out.instructions.as_ref())?)
    }

    /// The specification this network was built from.
    pub fn spec(&self) -> &FrontendSpec {
        &self.spec
    }

    /// The backbone (for export).
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The graph network, if this variant has one.
    pub fn augnn(&self) -> Option<&AuGnn> {
        self.augnn.as_ref()
    }
}

/// Multiply-accumulates of one clip through the front-end (convolutions, linear layers and graph products;
/// element-wise operations and pooling left out), counted from the configuration.
pub fn multiply_adds_per_clip(cfg: &FrontendConfig) -> u64 {
    let (t, kt) = (cfg.frames as u64, cfg.temporal_kernel as u64);
    let mut side = cfg.size as u64;
    let mut c_in = cfg.input.channels() as u64;
    let mut macs = 0u64;
    let mut mid_side = 0;
    for (i, &c) in cfg.channels.iter().enumerate() {
        side /= 2;
        let c = c as u64;
        macs += t * side * side * c * (c_in * 9 + c * kt);
        if i == 1 {
            mid_side = side;
        }
        c_in = c;
    }
    let (c1, c2) = (cfg.channels[1] as u64, cfg.channels[3] as u64);
    let (w, n, d) = (cfg.width as u64, cfg.aus.len() as u64, cfg.node_dim as u64);
    let high = t * side * side;
    let mode = super::efp::EfpMode::for_ablation(cfg.ablation);
    use super::efp::EfpMode;
    if matches!(mode, EfpMode::Fused | EfpMode::MidOnly) {
        macs += t * mid_side * mid_side * c1 * 9; // Laplacian (depthwise)
        macs += high * c1 * c2; // 1x1 alignment
    }
    if mode == EfpMode::Fused {
        macs += 2 * high * c2 * c2 * 9; // W_g1, W_g2
    }
    macs += if mode == EfpMode::Linear { c1 + c2 } else { c2 } * w;
    let mut tokens = 1;
    if cfg.ablation != Ablation::NoAugnn {
        tokens += n;
        macs += c2 * n * d; // node projections
        macs += 2 * n * d * d + 2 * n * d; // W_q, W_k, aᵀ
        macs += cfg.gcn_layers as u64 * (n * n * d + n * d * d); // eq. 7
        macs += n * (d * w + w * w); // MLP
    }
    macs + tokens * w * cfg.head_hidden as u64 + cfg.head_hidden as u64 * n
}

/// A front-end with the variables that back it (for training, saving and loading).
pub struct FrontendModel {
    /// The variables, by name.
    pub varmap: VarMap,
    /// The network reading them.
    pub net: Frontend,
}

impl FrontendModel {
    /// A freshly initialised model for `spec` on `device` (seed 0).
    pub fn new(spec: &FrontendSpec, device: &Device) -> Result<Self> {
        Self::new_seeded(spec, device, 0)
    }

    /// A freshly initialised model whose variables are drawn from `seed`.
    pub fn new_seeded(spec: &FrontendSpec, device: &Device, seed: u64) -> Result<Self> {
        let varmap = VarMap::new();
        let backend = super::seeded::SeededVarMap {
            map: varmap.clone(),
            seed,
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        let net = Frontend::new(spec, vb)?;
        Ok(Self { varmap, net })
    }

    /// Number of learnable parameters.
    pub fn parameter_count(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small spec (32 px, 4 frames, narrow layers) with the shipped FACS prior.
    pub(crate) fn small_spec(ablation: Ablation) -> FrontendSpec {
        let config = FrontendConfig {
            frames: 4,
            size: 32,
            channels: [4, 8, 8, 12],
            width: 16,
            node_dim: 8,
            head_hidden: 8,
            ablation,
            ..FrontendConfig::default()
        };
        FrontendSpec::from_config(&config, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    pub(crate) const ALL: [Ablation; 9] = [
        Ablation::Full,
        Ablation::NoAugnn,
        Ablation::FullyConnected,
        Ablation::SelfLoopsOnly,
        Ablation::NoEfp,
        Ablation::FMidOnly,
        Ablation::FHighOnly,
        Ablation::MlpHead,
        Ablation::NoCcr,
    ];

    #[test]
    fn every_ablation_builds_and_runs_with_the_right_shapes() {
        let dev = Device::Cpu;
        for ab in ALL {
            let spec = small_spec(ab);
            let m = FrontendModel::new(&spec, &dev).unwrap();
            let clip = Tensor::randn(0f32, 1., (3, 2, 4, 32, 32), &dev).unwrap();
            let out = m.net.forward(&clip).unwrap();
            assert_eq!(out.content.dims(), &[3, 1, 16], "{ab:?}");
            match (&out.instructions, ab) {
                (None, Ablation::NoAugnn) => {}
                (Some(t), a) if a != Ablation::NoAugnn => {
                    assert_eq!(t.dims(), &[3, 8, 16], "{ab:?}")
                }
                other => panic!(
                    "{ab:?}: unexpected instruction tokens {:?}",
                    other.0.as_ref().map(|t| t.dims().to_vec())
                ),
            }
            let logits = m.net.head_logits(&out).unwrap();
            assert_eq!(logits.dims(), &[3, 8], "{ab:?}");
            let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{ab:?}");
        }
    }

    #[test]
    fn default_configuration_runs_on_a_112px_clip() {
        let dev = Device::Cpu;
        let spec = FrontendSpec::from_config(
            &FrontendConfig::default(),
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
        .unwrap();
        let m = FrontendModel::new(&spec, &dev).unwrap();
        let clip = Tensor::rand(0f32, 1., (1, 2, 8, 112, 112), &dev).unwrap();
        let out = m.net.forward(&clip).unwrap();
        assert_eq!(out.content.dims(), &[1, 1, 576]);
        assert_eq!(out.instructions.unwrap().dims(), &[1, 8, 576]);
    }

    #[test]
    fn multiply_adds_count_the_backbone() {
        // Only the backbone's first block differs between a 1-block view and the formula; check totals stay
        // in the expected range for the default configuration (~0.14 GMAC) and that no_efp is cheaper.
        let full = multiply_adds_per_clip(&FrontendConfig::default());
        assert!((100_000_000..200_000_000).contains(&full), "{full}");
        let no_efp = multiply_adds_per_clip(&FrontendConfig {
            ablation: Ablation::NoEfp,
            ..FrontendConfig::default()
        });
        assert!(no_efp < full);
    }

    #[test]
    fn wrong_clip_shape_is_an_error_not_a_panic() {
        let dev = Device::Cpu;
        let m = FrontendModel::new(&small_spec(Ablation::Full), &dev).unwrap();
        let clip = Tensor::zeros((1, 1, 5, 32, 32), DType::F32, &dev).unwrap();
        let err = format!("{:#}", m.net.forward(&clip).unwrap_err());
        assert!(err.contains("frontend.frames"), "{err}");
    }

    #[test]
    fn ablations_own_only_the_variables_they_use() {
        let dev = Device::Cpu;
        let names = |ab| {
            let m = FrontendModel::new(&small_spec(ab), &dev).unwrap();
            let d = m.varmap.data().lock().unwrap();
            d.keys().cloned().collect::<std::collections::BTreeSet<_>>()
        };
        assert!(names(Ablation::Full).contains("efp.gate.w_g1"));
        assert!(!names(Ablation::NoEfp).contains("efp.gamma"));
        assert!(!names(Ablation::FHighOnly).contains("efp.align.weight"));
        assert!(names(Ablation::FMidOnly).contains("efp.gamma"));
        assert!(
            !names(Ablation::NoAugnn)
                .iter()
                .any(|k| k.starts_with("augnn."))
        );
    }
}
