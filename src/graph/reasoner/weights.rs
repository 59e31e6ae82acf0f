//! Where decoder tensors come from: a GGUF file (dequantised at load), a Hugging Face safetensors
//! folder (config.json, one or several *.safetensors) or seeded random values with given shapes.
//! Every tensor is checked against the shape the decoder expects before it is read.

use anyhow::{Context, Result, bail, ensure};
use candle_core::quantized::{QTensor, gguf_file};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::arch::DecoderConfig;
use super::init;

/// One decoder tensor, named independently of the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightName {
    /// Token embedding table (vocab, D).
    Embed,
    /// Final RMSNorm scale (D).
    FinalNorm,
    /// RMSNorm before attention in layer i.
    AttnNorm(usize),
    /// RMSNorm before the MLP in layer i.
    MlpNorm(usize),
    /// Query projection weight of layer i.
    Q(usize),
    /// Key projection weight.
    K(usize),
    /// Value projection weight.
    V(usize),
    /// Output projection weight.
    O(usize),
    /// Query bias (qwen2).
    QBias(usize),
    /// Key bias (qwen2).
    KBias(usize),
    /// Value bias (qwen2).
    VBias(usize),
    /// MLP gate projection.
    Gate(usize),
    /// MLP up projection.
    Up(usize),
    /// MLP down projection.
    Down(usize),
}

impl WeightName {
    /// The name in GGUF files (llama.cpp's naming).
    pub fn gguf(self) -> String {
        use WeightName::*;
        match self {
            Embed => "token_embd.weight".into(),
            FinalNorm => "output_norm.weight".into(),
            AttnNorm(i) => format!("blk.{i}.attn_norm.weight"),
            MlpNorm(i) => format!("blk.{i}.ffn_norm.weight"),
            Q(i) => format!("blk.{i}.attn_q.weight"),
            K(i) => format!("blk.{i}.attn_k.weight"),
            V(i) => format!("blk.{i}.attn_v.weight"),
            O(i) => format!("blk.{i}.attn_output.weight"),
            QBias(i) => format!("blk.{i}.attn_q.bias"),
            KBias(i) => format!("blk.{i}.attn_k.bias"),
            VBias(i) => format!("blk.{i}.attn_v.bias"),
            Gate(i) => format!("blk.{i}.ffn_gate.weight"),
            Up(i) => format!("blk.{i}.ffn_up.weight"),
            Down(i) => format!("blk.{i}.ffn_down.weight"),
        }
    }

    /// The name in Hugging Face checkpoints (LlamaForCausalLM / Qwen2ForCausalLM).
    pub fn hf(self) -> String {
        use WeightName::*;
        let l = |i: usize, rest: &str| format!("model.layers.{i}.{rest}");
        match self {
            Embed => "model.embed_tokens.weight".into(),
            FinalNorm => "model.norm.weight".into(),
            AttnNorm(i) => l(i, "input_layernorm.weight"),
            MlpNorm(i) => l(i, "post_attention_layernorm.weight"),
            Q(i) => l(i, "self_attn.q_proj.weight"),
            K(i) => l(i, "self_attn.k_proj.weight"),
            V(i) => l(i, "self_attn.v_proj.weight"),
            O(i) => l(i, "self_attn.o_proj.weight"),
            QBias(i) => l(i, "self_attn.q_proj.bias"),
            KBias(i) => l(i, "self_attn.k_proj.bias"),
            VBias(i) => l(i, "self_attn.v_proj.bias"),
            Gate(i) => l(i, "mlp.gate_proj.weight"),
            Up(i) => l(i, "mlp.up_proj.weight"),
            Down(i) => l(i, "mlp.down_proj.weight"),
        }
    }

    /// True for RMSNorm scales (ones in random mode).
    fn is_norm(self) -> bool {
        matches!(
            self,
            WeightName::FinalNorm | WeightName::AttnNorm(_) | WeightName::MlpNorm(_)
        )
    }

    /// True for biases.
    fn is_bias(self) -> bool {
        matches!(
            self,
            WeightName::QBias(_) | WeightName::KBias(_) | WeightName::VBias(_)
        )
    }
}

/// Every tensor a decoder with `cfg` reads, with its shape (e.g. to write test checkpoints).
pub fn expected_tensors(cfg: &DecoderConfig) -> Vec<(WeightName, Vec<usize>)> {
    use WeightName::*;
    let d = cfg.hidden_size;
    let (qd, kvd) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let ff = cfg.intermediate_size;
    let mut v = vec![(Embed, vec![cfg.vocab_size, d])];
    for i in 0..cfg.num_layers {
        v.push((AttnNorm(i), vec![d]));
        v.push((Q(i), vec![qd, d]));
        v.push((K(i), vec![kvd, d]));
        v.push((V(i), vec![kvd, d]));
        if cfg.qkv_bias {
            v.push((QBias(i), vec![qd]));
            v.push((KBias(i), vec![kvd]));
            v.push((VBias(i), vec![kvd]));
        }
        v.push((O(i), vec![d, qd]));
        v.push((MlpNorm(i), vec![d]));
        v.push((Gate(i), vec![ff, d]));
        v.push((Up(i), vec![ff, d]));
        v.push((Down(i), vec![d, ff]));
    }
    v.push((FinalNorm, vec![d]));
    v
}

/// A provider of decoder tensors.
pub trait TensorSource {
    /// What the tensors are read from (a file, a folder), for messages.
    fn origin(&self) -> String;
    /// The tensor `name`, checked to have `shape`, converted to `dtype` on `device`.
    fn load(
        &mut self,
        name: WeightName,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor>;

    /// Every tensor in `wanted` (name, shape, dtype), in order; sources that can convert in
    /// parallel override this.
    fn load_all(
        &mut self,
        wanted: &[(WeightName, Vec<usize>, DType)],
        device: &Device,
    ) -> Result<Vec<Tensor>> {
        wanted
            .iter()
            .map(|(n, shape, dtype)| self.load(*n, shape, *dtype, device))
            .collect()
    }
}

/// Tensors of a GGUF file, dequantised to f32 as they are read.
pub struct GgufSource {
    path: PathBuf,
    content: gguf_file::Content,
    reader: BufReader<File>,
}

impl GgufSource {
    /// Opens `path` and reads its header (metadata and tensor table).
    pub fn open(path: &Path) -> Result<GgufSource> {
        let file = File::open(path)
            .with_context(|| format!("cannot open GGUF file {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).with_context(|| {
            format!(
                "cannot read the GGUF header of {} (not GGUF, truncated, or a tensor type candle \
                 does not know)",
                path.display()
            )
        })?;
        Ok(GgufSource {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// The parsed header.
    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TensorSource for GgufSource {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn load(
        &mut self,
        name: WeightName,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let q = self.read(name, shape)?;
        self.convert(name, q, dtype, device)
    }

    fn load_all(
        &mut self,
        wanted: &[(WeightName, Vec<usize>, DType)],
        device: &Device,
    ) -> Result<Vec<Tensor>> {
        use rayon::prelude::*;
        // Reading is sequential file access; dequantising is most of the load time and runs on
        // every core.
        let raw = wanted
            .iter()
            .map(|(n, shape, _)| self.read(*n, shape))
            .collect::<Result<Vec<_>>>()?;
        let this = &*self;
        raw.into_par_iter()
            .zip(wanted.par_iter())
            .map(|(q, (n, _, dtype))| this.convert(*n, q, *dtype, device))
            .collect()
    }
}

impl GgufSource {
    /// The quantised tensor `name`, checked to have `shape`.
    fn read(&mut self, name: WeightName, shape: &[usize]) -> Result<QTensor> {
        let key = name.gguf();
        let info = self
            .content
            .tensor_infos
            .get(&key)
            .with_context(|| format!("missing tensor {key} in {}", self.path.display()))?;
        ensure!(
            info.shape.dims() == shape,
            "tensor {key} in {} has shape {:?}, expected {shape:?}",
            self.path.display(),
            info.shape.dims()
        );
        info.read(
            &mut self.reader,
            self.content.tensor_data_offset,
            &Device::Cpu,
        )
        .with_context(|| format!("cannot read tensor {key} from {}", self.path.display()))
    }

    /// `q` dequantised and converted to `dtype` on `device`.
    fn convert(
        &self,
        name: WeightName,
        q: QTensor,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let qdtype = q.dtype();
        // Q4 matmuls were measured 10x slower than f32 here (STACK.md): dequantise once at load.
        super::load_convert::dequantize_to(&q, dtype, device).with_context(|| {
            format!(
                "cannot dequantise tensor {} ({qdtype:?}) from {}",
                name.gguf(),
                self.path.display()
            )
        })
    }
}

/// Tensors of a Hugging Face folder: model.safetensors, or shards listed by model.safetensors.index.json.
pub struct SafetensorsSource {
    dir: PathBuf,
    /// Tensor name -> the file holding it.
    files: HashMap<String, PathBuf>,
    st: MmapedSafetensors,
}

impl SafetensorsSource {
    /// Opens the weights of folder `dir`.
    pub fn open(dir: &Path) -> Result<SafetensorsSource> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let mut files = HashMap::new();
        let paths: Vec<PathBuf> = if index.is_file() {
            let text = std::fs::read_to_string(&index)
                .with_context(|| format!("cannot read {}", index.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", index.display()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .with_context(|| format!("{} has no weight_map object", index.display()))?;
            let mut shards = BTreeMap::new();
            for (name, file) in map {
                let file = file.as_str().with_context(|| {
                    format!("{}: weight_map[{name}] is not a string", index.display())
                })?;
                let p = dir.join(file);
                shards.insert(p.clone(), ());
                files.insert(name.clone(), p);
            }
            for p in shards.keys() {
                ensure!(
                    p.is_file(),
                    "shard {} named by {} is missing",
                    p.display(),
                    index.display()
                );
            }
            shards.into_keys().collect()
        } else if single.is_file() {
            vec![single.clone()]
        } else {
            bail!(
                "{} holds neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            );
        };
        // SAFETY: the files are mapped read-only; aullm never writes model files while they are loaded.
        let st = unsafe { MmapedSafetensors::multi(&paths) }
            .with_context(|| format!("cannot read the safetensors files of {}", dir.display()))?;
        if files.is_empty() {
            for (name, _) in st.tensors() {
                files.insert(name, single.clone());
            }
        }
        Ok(SafetensorsSource {
            dir: dir.to_path_buf(),
            files,
            st,
        })
    }
}

impl TensorSource for SafetensorsSource {
    fn origin(&self) -> String {
        self.dir.display().to_string()
    }

    fn load(
        &mut self,
        name: WeightName,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let key = name.hf();
        let file = self.files.get(&key).with_context(|| {
            format!(
                "missing tensor {key} in {} (no file holds it)",
                self.dir.display()
            )
        })?;
        let view = self
            .st
            .get(&key)
            .with_context(|| format!("missing tensor {key} in {}", file.display()))?;
        ensure!(
            view.shape() == shape,
            "tensor {key} in {} has shape {:?}, expected {shape:?}",
            file.display(),
            view.shape()
        );
        use safetensors::Dtype as S;
        match view.dtype() {
            S::F32 | S::F16 | S::BF16 => {}
            other => bail!(
                "tensor {key} in {} has dtype {other:?}: only f32, f16 and bf16 checkpoints are \
                 supported (not quantised ones)",
                file.display()
            ),
        }
        let t = self
            .st
            .load(&key, &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .and_then(|t| t.to_device(device))
            .with_context(|| format!("cannot load tensor {key} from {}", file.display()))?;
        Ok(t)
    }
}

/// Seeded random tensors with the decoder's shapes: std 0.02 weights (the HF initialiser range),
/// unit norms, small biases. For timing a configuration whose weights are not here.
pub struct RandomSource {
    seed: u64,
    label: String,
}

impl RandomSource {
    /// Random weights for `cfg`, labelled in messages as `label`.
    pub fn new(cfg: &DecoderConfig, seed: u64, label: &str) -> RandomSource {
        RandomSource {
            seed: init::derive_seed(seed, &cfg.fingerprint()),
            label: label.to_string(),
        }
    }
}

impl TensorSource for RandomSource {
    fn origin(&self) -> String {
        self.label.clone()
    }

    fn load(
        &mut self,
        name: WeightName,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        if name.is_norm() {
            return Ok(Tensor::ones(shape, dtype, device)?);
        }
        // Uniform on +-b has std b / sqrt(3).
        let bound = if name.is_bias() {
            0.02
        } else {
            0.02 * 3f32.sqrt()
        };
        init::uniform(
            init::derive_seed(self.seed, &name.hf()),
            shape,
            bound,
            dtype,
            device,
        )
    }
}
