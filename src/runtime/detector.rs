//! Inference on clips: [`Detector`] loads a verified model folder and turns clips into AU
//! probabilities with ONNX Runtime (front-end) and candle (reasoner or MLP head).

use super::bundle::{CONTENT, Decider, INPUT, INSTRUCTIONS, ModelManifest, verify};
use super::engine::Engine;
use crate::config::{Ablation, Config, DTypeChoice};
use crate::graph::reasoner::Reasoner;
use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// A detector to run clips through, possibly still loading on another thread: `aullm batch` starts
/// decoding and tracking while the model loads, and only the inference thread waits for it.
pub enum DetectorSlot<'a> {
    /// Loaded.
    Ready(&'a mut Detector),
    /// Arrives on `rx` (or the error that stopped its loading); kept once it has.
    Pending {
        /// Where the loader sends it.
        rx: crossbeam_channel::Receiver<std::result::Result<Detector, String>>,
        /// The detector once received.
        got: Option<Box<Detector>>,
        /// Model name (from the verified manifest).
        name: String,
        /// Frames per clip (from the model's configuration).
        frames: usize,
    },
}

impl DetectorSlot<'_> {
    /// The model's name.
    pub fn name(&self) -> String {
        match self {
            DetectorSlot::Ready(d) => d.manifest.name.clone(),
            DetectorSlot::Pending { name, .. } => name.clone(),
        }
    }

    /// Frames per clip the model reads.
    pub fn frames_per_clip(&self) -> usize {
        match self {
            DetectorSlot::Ready(d) => d.config.frontend.frames,
            DetectorSlot::Pending { frames, .. } => *frames,
        }
    }

    /// The detector, waiting for the loader the first time.
    pub fn get(&mut self) -> Result<&mut Detector> {
        match self {
            DetectorSlot::Ready(d) => Ok(d),
            DetectorSlot::Pending { rx, got, .. } => {
                if got.is_none() {
                    let d = rx
                        .recv()
                        .map_err(|_| anyhow::anyhow!("the model loader stopped"))?
                        .map_err(|e| anyhow::anyhow!("cannot load the model: {e}"))?;
                    *got = Some(Box::new(d));
                }
                got.as_deref_mut()
                    .ok_or_else(|| anyhow::anyhow!("no model"))
            }
        }
    }
}

/// A loaded model ready to score clips.
pub struct Detector {
    /// The manifest.
    pub manifest: ModelManifest,
    /// The configuration it was trained with (clip shape, preprocessing).
    pub config: Config,
    front: FrontRunner,
    provider: String,
    /// Where the candle parts (reasoner or MLP head, and a candle front-end) run.
    device: Device,
    reasoner: Option<Reasoner>,
    /// The candle front-end (frozen): the MLP head's weights, and the whole front-end when candle
    /// runs it.
    frontend: Option<crate::graph::frontend::Frontend>,
    dir: PathBuf,
}

/// What runs the front-end.
enum FrontRunner {
    /// ONNX Runtime's session of `frontend.onnx`.
    Onnx(Box<ort::session::Session>),
    /// candle, with [`Detector::frontend`].
    Candle,
}

/// Keys of `[frontend]` and `[reasoner]` that say how to run, not what the model is: the caller's
/// configuration sets them.
const RUNTIME_KEYS: &[&str] = &[
    "frontend.execution_provider",
    "frontend.intra_threads",
    "frontend.engine",
    "reasoner.device",
    "reasoner.threads",
    "reasoner.dtype",
];

/// A model folder defines its front-end and reasoner: a key of those sections that the caller
/// changed from its default to something else than the model's value would be silently ignored,
/// so it is an error naming the key, both values and the model.
fn refuse_overridden_model_keys(runtime: &Config, model: &Config, name: &str) -> Result<()> {
    use crate::config::ranges::leaves;
    let defaults = leaves(&Config::default());
    let model = leaves(model);
    for (key, value) in leaves(runtime) {
        let defining = (key.starts_with("frontend.") || key.starts_with("reasoner."))
            && !RUNTIME_KEYS.contains(&key.as_str());
        if defining && defaults.get(&key) != Some(&value) && model.get(&key) != Some(&value) {
            let theirs = model.get(&key).map_or("nothing".into(), |v| v.to_string());
            anyhow::bail!(
                "{key} = {value} is set, but model {name} defines {key} = {theirs} (its config.toml): \
                 remove the setting, or train and export a model with it"
            );
        }
    }
    Ok(())
}

/// Opens the front-end on `engine`; returns it with the label events carry.
fn open_front(dir: &Path, config: &Config, engine: Engine) -> Result<(FrontRunner, String)> {
    Ok(match engine {
        Engine::Onnx(provider) => {
            let (s, p) = crate::onnx::session_on(
                &dir.join("frontend.onnx"),
                config.frontend.intra_threads,
                provider,
            )?;
            (FrontRunner::Onnx(Box::new(s)), p.to_string())
        }
        Engine::Candle(d) => (FrontRunner::Candle, super::engine::candle_label(d)),
    })
}

/// ONNX Runtime's front-end on `n` clips of `dims`: (T_v [n, 1, width], τ_au [n, N, width]) on
/// `device`.
fn onnx_front(
    session: &mut ort::session::Session,
    data: &[f32],
    dims: (usize, usize, usize, usize, usize),
    width: usize,
    device: &Device,
) -> Result<(Tensor, Option<Tensor>)> {
    let (n, c, t, h, w) = dims;
    let shape = [n as i64, c as i64, t as i64, h as i64, w as i64];
    let input = ort::value::TensorRef::from_array_view((shape, data))
        .map_err(|e| anyhow::anyhow!("clip tensor: {e}"))?;
    let outputs = session
        .run(ort::inputs![INPUT => input])
        .map_err(|e| anyhow::anyhow!("front-end (ONNX Runtime): {e}"))?;
    let (_, tv) = outputs[CONTENT]
        .try_extract_tensor::<f32>()
        .map_err(|e| anyhow::anyhow!("front-end output {CONTENT}: {e}"))?;
    let tv = Tensor::from_slice(tv, (n, 1, width), device)?;
    let tau = match outputs.get(INSTRUCTIONS) {
        Some(v) => {
            let (s, t) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| anyhow::anyhow!("front-end output {INSTRUCTIONS}: {e}"))?;
            Some(Tensor::from_slice(t, (n, s[1] as usize, width), device)?)
        }
        None => None,
    };
    Ok((tv, tau))
}

impl Detector {
    /// Loads the model in `dir` (integrity checked). The reasoner's base weights come from the
    /// artefact the model names; `dtype` overrides `reasoner.dtype` (f32 for bit-faithful checks).
    pub fn load(dir: &Path, runtime: &Config, dtype: Option<DTypeChoice>) -> Result<Detector> {
        let manifest = verify(dir)?;
        let mut config = Config::load(Some(&dir.join("config.toml")), &[])
            .with_context(|| format!("model {}: its config.toml", manifest.name))?;
        refuse_overridden_model_keys(runtime, &config, &manifest.name)?;
        // Where artefacts live and how to run is the caller's business; what the model is, is not.
        config.models = runtime.models.clone();
        config.reasoner.device = runtime.reasoner.device;
        config.reasoner.threads = runtime.reasoner.threads;
        config.reasoner.dtype = dtype.unwrap_or(runtime.reasoner.dtype);
        config.frontend.execution_provider = runtime.frontend.execution_provider;
        config.frontend.intra_threads = runtime.frontend.intra_threads;
        config.frontend.engine = runtime.frontend.engine;
        // A front-end forced onto candle needs no ONNX Runtime at all.
        let onnx_cuda = match config.frontend.engine {
            crate::graph::config::FrontendEngine::Candle => false,
            _ => {
                crate::assets::init_onnx(&config.models)?;
                crate::onnx::cuda_available()
            }
        };
        let device = crate::graph::devices::open(config.reasoner.device, "reasoner.device")?;
        let (engine, why) = super::engine::choose(&config, onnx_cuda);
        tracing::info!(
            "model {}: front-end on {} ({why})",
            manifest.name,
            engine.describe()
        );
        let (front, provider) = open_front(dir, &config, engine)?;
        let (reasoner, needs_frontend) = if manifest.decider == Decider::Llm {
            let mut r = config.reasoner.clone();
            r.adapter = dir.join("adapter.safetensors").display().to_string();
            r.num_aus = manifest.aus.len();
            // The skip path's MLP head runs on candle beside an ONNX front-end.
            let needs = matches!(front, FrontRunner::Candle) || config.reasoner.mlp_skip;
            (Some(Reasoner::from_config(&r, &config.models)?), needs)
        } else {
            ensure!(
                config.frontend.ablation == Ablation::MlpHead,
                "model {}: decider {:?} but frontend.ablation {:?}",
                manifest.name,
                manifest.decider,
                config.frontend.ablation
            );
            (None, true)
        };
        let frontend = match needs_frontend {
            true => Some(crate::graph::checkpoint::load_frozen(
                &dir.join("frontend.safetensors"),
                &device,
            )?),
            false => None,
        };
        Ok(Detector {
            manifest,
            config,
            front,
            provider,
            device,
            reasoner,
            frontend,
            dir: dir.to_path_buf(),
        })
    }

    /// A second detector for another thread: the reasoner's weights and a candle front-end are
    /// shared, not loaded again (loading costs about a second per worker); an ONNX session and
    /// the reasoner's thread pool (when it has one) are its own.
    pub fn fork(&self) -> Result<Detector> {
        let front = match &self.front {
            FrontRunner::Onnx(_) => {
                let (s, _) = crate::onnx::session_on(
                    &self.dir.join("frontend.onnx"),
                    self.config.frontend.intra_threads,
                    self.config.frontend.execution_provider,
                )?;
                FrontRunner::Onnx(Box::new(s))
            }
            FrontRunner::Candle => FrontRunner::Candle,
        };
        Ok(Detector {
            manifest: self.manifest.clone(),
            config: self.config.clone(),
            front,
            provider: self.provider.clone(),
            device: self.device.clone(),
            reasoner: self
                .reasoner
                .as_ref()
                .map(|r| r.with_own_threads())
                .transpose()?,
            frontend: self.frontend.clone(),
            dir: self.dir.clone(),
        })
    }

    /// What runs the front-end: ONNX Runtime's execution provider ("CPUExecutionProvider",
    /// "CUDAExecutionProvider") or "candle on DEVICE".
    pub fn execution_provider(&self) -> &str {
        &self.provider
    }

    /// Values per clip in `clip_data` order.
    pub fn clip_len(&self) -> usize {
        let f = &self.config.frontend;
        f.input.channels() * f.frames * f.size * f.size
    }

    /// AU probabilities [clip][AU] for `n` clips laid out back to back in `data` (see
    /// `clip::clip_data`).
    pub fn predict(&mut self, data: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        ensure!(
            n > 0 && data.len() == n * self.clip_len(),
            "clip data has {} values, expected {} x {}",
            data.len(),
            n,
            self.clip_len()
        );
        let f = &self.config.frontend;
        let dims = (n, f.input.channels(), f.frames, f.size, f.size);
        let (tv, tau) = match &mut self.front {
            FrontRunner::Onnx(session) => onnx_front(session, data, dims, f.width, &self.device)?,
            FrontRunner::Candle => {
                let net = self
                    .frontend
                    .as_ref()
                    .context("no candle front-end loaded")?;
                let clip = Tensor::from_slice(data, dims, &self.device)?;
                let out = net.forward(&clip).context("front-end (candle)")?;
                (out.content, out.instructions)
            }
        };
        let tokens = crate::graph::frontend::FrontendOutput {
            content: tv,
            instructions: tau,
        };
        let logits = match (&self.reasoner, &self.frontend) {
            (Some(r), Some(m)) if self.config.reasoner.mlp_skip => {
                let llm = r.au_logits_tokens(&tokens.content, tokens.instructions.as_ref())?;
                (llm.to_dtype(DType::F32)? + m.head_logits(&tokens)?)?
            }
            (Some(r), _) => r.au_logits_tokens(&tokens.content, tokens.instructions.as_ref())?,
            (None, Some(m)) => m.head_logits(&tokens)?,
            _ => bail!("model has no decider"),
        };
        let p = candle_nn::ops::sigmoid(&logits.to_dtype(DType::F32)?)?;
        Ok(p.to_vec2::<f32>()?)
    }

    /// Decisions at the model's thresholds.
    pub fn decide(&self, probs: &[f32]) -> Vec<bool> {
        probs
            .iter()
            .zip(&self.manifest.thresholds)
            .map(|(p, t)| p >= t)
            .collect()
    }
}
