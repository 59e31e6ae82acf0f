//! The trainable AULLM++ network: front-end, decider (LLM reasoner with LoRA and AU head, or the MLP
//! head for the "w/o LLM" ablation) and CCR's perturbations, with named variables for the optimiser.

use crate::graph::ccr::Perturbations;
use crate::graph::config::Ablation;
use crate::graph::config::FrontendConfig;
use crate::graph::frontend::{FrontendModel, FrontendOutput, FrontendSpec};
use crate::graph::reasoner::config::ReasonerConfig;
use crate::graph::reasoner::{Reasoner, ReasonerOptions, WeightsSpec};
use crate::models::ModelsConfig;
use anyhow::{Context, Result, ensure};
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;

/// Everything `aullm train` updates, and the frozen LLM it adapts.
pub struct Net {
    /// Backbone, MGE-EFP, R-AUGNN, MLP head.
    pub frontend: FrontendModel,
    /// The LLM reasoner (LoRA live, not merged); `None` for the MLP-head ablation.
    pub reasoner: Option<Reasoner>,
    /// CCR's δ.
    pub ccr: Perturbations,
    /// Whether the MLP head's logits are added to the LLM's (`reasoner.mlp_skip`).
    pub mlp_skip: bool,
    /// The device every variable lives on.
    pub device: Device,
}

/// The configuration sections a network is built from, and the seed of its fresh weights.
#[derive(Debug, Clone, Copy)]
pub struct NetSpec<'a> {
    /// `[frontend]`.
    pub frontend: &'a FrontendConfig,
    /// `[reasoner]`.
    pub reasoner: &'a ReasonerConfig,
    /// `[models]` (where the reasoner's base weights are cached).
    pub models: &'a ModelsConfig,
    /// Seed of initialisation (`train.seed`).
    pub seed: u64,
    /// Where it trains (`train.device`).
    pub device: crate::graph::devices::DeviceName,
}

impl Net {
    /// A fresh network (front-end from `[frontend]`, reasoner from `[reasoner]` in f32 with fresh
    /// LoRA pairs and head), prior graph paths relative to `root`.
    pub fn new(net: &NetSpec<'_>, root: &Path) -> Result<Net> {
        let device = crate::graph::devices::open(net.device, "train.device")?;
        let spec = FrontendSpec::from_config(net.frontend, root)?;
        let frontend = FrontendModel::new_seeded(&spec, &device, net.seed)?;
        let n = net.frontend.aus.len();
        let reasoner = if net.frontend.ablation == Ablation::MlpHead {
            None
        } else {
            let mut opts =
                ReasonerOptions::from_config(&crate::graph::reasoner::config::ReasonerConfig {
                    device: net.device,
                    ..net.reasoner.clone()
                })?;
            // On the CPU, backpropagating through half-precision weights would convert them on
            // every pass; a GPU computes in bf16 natively (LoRA pairs and head stay f32).
            if device.is_cpu() {
                opts.dtype = DType::F32;
            }
            // Training reads the weights it backpropagates through; the exported model's runtime
            // chooses its own precision.
            opts.int8 = false;
            opts.num_aus = n;
            opts.seed = net.seed;
            let r = Reasoner::load(&WeightsSpec::resolve(net.reasoner, net.models)?, &opts)?;
            if net.reasoner.mlp_skip {
                // The sum starts as the MLP head alone: the LLM's first steps cannot undo stage 1.
                r.head().zero()?;
            }
            ensure!(
                r.hidden_size() == net.frontend.width,
                "frontend.width = {} but the reasoner's hidden size is {}: set frontend.width = {}",
                net.frontend.width,
                r.hidden_size(),
                r.hidden_size()
            );
            Some(r)
        };
        let ccr = Perturbations::new(n, net.frontend.width, net.seed ^ 0xcc, &device)?;
        let mlp_skip = net.reasoner.mlp_skip && reasoner.is_some();
        Ok(Net {
            frontend,
            reasoner,
            ccr,
            mlp_skip,
            device,
        })
    }

    /// AU logits [B, N] from a front-end output: the LLM reads [E_text ‖ T_v ‖ τ_au] (prompt from the
    /// prefix cache), or the MLP head reads the tokens, or both are added (`reasoner.mlp_skip`).
    pub fn decide(&self, content: &Tensor, instructions: Option<&Tensor>) -> Result<Tensor> {
        let mlp = || {
            self.frontend.net.head_logits(&FrontendOutput {
                content: content.clone(),
                instructions: instructions.cloned(),
            })
        };
        match &self.reasoner {
            Some(r) => {
                let llm = r
                    .au_logits_tokens(content, instructions)?
                    .to_dtype(DType::F32)?;
                match self.mlp_skip {
                    true => Ok((llm + mlp()?)?),
                    false => Ok(llm),
                }
            }
            None => mlp(),
        }
    }

    /// Clip [B, C, T, S, S] → (AU logits [B, N], front-end output).
    pub fn forward(&self, clip: &Tensor) -> Result<(Tensor, FrontendOutput)> {
        let out = self.frontend.net.forward(clip).context("front-end")?;
        let logits = self.decide(&out.content, out.instructions.as_ref())?;
        Ok((logits, out))
    }

    /// Variables trained at the visual/graph learning rate: the front-end's and δ.
    pub fn visual_vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self
            .frontend
            .varmap
            .data()
            .lock()
            .map(|d| {
                d.iter()
                    .map(|(k, v)| (format!("frontend.{k}"), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.push(("ccr.delta".into(), self.ccr.delta.clone()));
        v
    }

    /// Variables trained at the LoRA learning rate: every LoRA A and B and the AU head.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let Some(r) = &self.reasoner else {
            return Vec::new();
        };
        let mut v: Vec<(String, Var)> = r
            .decoder()
            .lora_pairs()
            .into_iter()
            .flat_map(|(l, t, a, b)| {
                [
                    (format!("lora.{l}.{}.a", t.name()), a),
                    (format!("lora.{l}.{}.b", t.name()), b),
                ]
            })
            .collect();
        v.push(("head.weight".into(), r.head().weight.clone()));
        v.push(("head.bias".into(), r.head().bias.clone()));
        v
    }

    /// After an optimiser step: the prompt's cached keys and values depend on the LoRA pairs.
    pub fn after_step(&mut self) -> Result<()> {
        if let Some(r) = &mut self.reasoner {
            r.refresh_prefix()?;
        }
        Ok(())
    }

    /// Whether the decider is the LLM.
    pub fn has_llm(&self) -> bool {
        self.reasoner.is_some()
    }
}
