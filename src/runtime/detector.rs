//! Inference on clips: [`Detector`] loads a verified model folder and turns clips into AU
//! probabilities with ONNX Runtime (front-end) and candle (reasoner or MLP head).

use super::bundle::{CONTENT, Decider, INPUT, INSTRUCTIONS, ModelManifest, verify};
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
    session: ort::session::Session,
    provider: &'static str,
    reasoner: Option<Reasoner>,
    mlp: Option<crate::graph::frontend::FrontendModel>,
    dir: PathBuf,
}

/// Keys of `[frontend]` and `[reasoner]` that say how to run, not what the model is: the caller's
/// configuration sets them.
const RUNTIME_KEYS: &[&str] = &[
    "frontend.execution_provider",
    "frontend.intra_threads",
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
        crate::assets::init_onnx(&config.models)?;
        let (session, provider) = crate::onnx::session_on(
            &dir.join("frontend.onnx"),
            config.frontend.intra_threads,
            config.frontend.execution_provider,
        )?;
        let (reasoner, mlp) = if manifest.decider == Decider::Llm {
            let mut r = config.reasoner.clone();
            r.adapter = dir.join("adapter.safetensors").display().to_string();
            r.num_aus = manifest.aus.len();
            (Some(Reasoner::from_config(&r, &config.models)?), None)
        } else {
            ensure!(
                config.frontend.ablation == Ablation::MlpHead,
                "model {}: decider {:?} but frontend.ablation {:?}",
                manifest.name,
                manifest.decider,
                config.frontend.ablation
            );
            let m =
                crate::graph::checkpoint::load(&dir.join("frontend.safetensors"), &Device::Cpu)?;
            (None, Some(m))
        };
        Ok(Detector {
            manifest,
            config,
            session,
            provider,
            reasoner,
            mlp,
            dir: dir.to_path_buf(),
        })
    }

    /// A second detector for another thread: the reasoner's weights are shared, not loaded again
    /// (loading costs about a second per worker); the ONNX session is its own.
    pub fn fork(&self) -> Result<Detector> {
        let (session, provider) = crate::onnx::session_on(
            &self.dir.join("frontend.onnx"),
            self.config.frontend.intra_threads,
            self.config.frontend.execution_provider,
        )?;
        let mlp = match &self.mlp {
            Some(_) => Some(crate::graph::checkpoint::load(
                &self.dir.join("frontend.safetensors"),
                &Device::Cpu,
            )?),
            None => None,
        };
        Ok(Detector {
            manifest: self.manifest.clone(),
            config: self.config.clone(),
            session,
            provider,
            reasoner: self.reasoner.clone(),
            mlp,
            dir: self.dir.clone(),
        })
    }

    /// The ONNX Runtime provider the front-end runs on ("cpu" or "cuda").
    pub fn execution_provider(&self) -> &'static str {
        self.provider
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
        let shape = [
            n as i64,
            f.input.channels() as i64,
            f.frames as i64,
            f.size as i64,
            f.size as i64,
        ];
        let input = ort::value::TensorRef::from_array_view((shape, data))
            .map_err(|e| anyhow::anyhow!("clip tensor: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT => input])
            .map_err(|e| anyhow::anyhow!("front-end (ONNX Runtime): {e}"))?;
        let width = f.width;
        let (_, tv) = outputs[CONTENT]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("front-end output {CONTENT}: {e}"))?;
        let tv = Tensor::from_slice(tv, (n, 1, width), &Device::Cpu)?;
        let tau = match outputs.get(INSTRUCTIONS) {
            Some(v) => {
                let (s, t) = v
                    .try_extract_tensor::<f32>()
                    .map_err(|e| anyhow::anyhow!("front-end output {INSTRUCTIONS}: {e}"))?;
                Some(Tensor::from_slice(
                    t,
                    (n, s[1] as usize, width),
                    &Device::Cpu,
                )?)
            }
            None => None,
        };
        drop(outputs);
        let logits = match (&self.reasoner, &self.mlp) {
            (Some(r), _) => r.au_logits_tokens(&tv, tau.as_ref())?,
            (None, Some(m)) => m.net.head_logits(&crate::graph::frontend::FrontendOutput {
                content: tv,
                instructions: tau,
            })?,
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
