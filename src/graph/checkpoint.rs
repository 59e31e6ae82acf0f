//! Front-end checkpoints: safetensors with the graph specification (JSON) in the header metadata;
//! loading rebuilds the graph from that specification and checks every tensor's name and shape.

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use super::frontend::{FrontendModel, FrontendSpec};
use crate::atomic::AtomicFile;

/// The one metadata key; its value is the JSON object `{"format": FORMAT, "spec": FrontendSpec}`.
/// One key only: safetensors writes the metadata map in hash order, so several keys would make the
/// bytes vary between saves of the same weights.
pub const META_KEY: &str = "aullm.frontend";
/// Format tag of front-end checkpoints.
pub const FORMAT: &str = "aullm.frontend/1";

/// The metadata value.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    spec: FrontendSpec,
}

/// Writes `model`'s variables and specification to `path` (atomically; tensors sorted by name, so the
/// same weights give the same bytes).
pub fn save(model: &FrontendModel, path: &Path) -> Result<()> {
    let header = serde_json::to_string(&Header {
        format: FORMAT.into(),
        spec: model.net.spec().clone(),
    })
    .context("cannot serialise the front-end spec")?;
    let tensors: BTreeMap<String, Tensor> = {
        let data = model
            .varmap
            .data()
            .lock()
            .map_err(|_| anyhow!("variable map lock poisoned"))?;
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    };
    let meta = HashMap::from([(META_KEY.to_string(), header)]);
    let bytes = serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), meta)
        .with_context(|| format!("cannot serialise front-end checkpoint {}", path.display()))?;
    let mut f = AtomicFile::create(path)?;
    f.write_all(&bytes)
        .with_context(|| format!("cannot write front-end checkpoint {}", path.display()))?;
    f.commit()?;
    Ok(())
}

/// Reads a checkpoint written by [`save`]: rebuilds the graph from the stored specification, then loads
/// every tensor, failing on a missing, unexpected, wrongly typed or wrongly shaped one (named, with the file).
pub fn load(path: &Path, device: &Device) -> Result<FrontendModel> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read front-end checkpoint {}", path.display()))?;
    let (_, st_header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        anyhow!(
            "{}: not a safetensors file (corrupt or truncated?): {e}",
            path.display()
        )
    })?;
    let meta = st_header.metadata().clone().unwrap_or_default();
    let json = meta.get(META_KEY).with_context(|| {
        format!(
            "{}: no {META_KEY:?} in the metadata: not an aullm front-end checkpoint",
            path.display()
        )
    })?;
    let header: Header = serde_json::from_str(json)
        .with_context(|| format!("{}: invalid {META_KEY:?} metadata", path.display()))?;
    if header.format != FORMAT {
        bail!(
            "{}: format {:?}, expected {FORMAT:?}",
            path.display(),
            header.format
        );
    }
    let spec = header.spec;
    let model = FrontendModel::new(&spec, device).with_context(|| {
        format!(
            "{}: cannot build the graph its spec describes",
            path.display()
        )
    })?;
    let stored = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| anyhow!("{}: cannot read tensors: {e}", path.display()))?;
    let vars = model
        .varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("variable map lock poisoned"))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let t = stored.get(name).with_context(|| {
            format!(
                "{}: tensor {name:?} is missing (expected shape {:?})",
                path.display(),
                var.dims()
            )
        })?;
        if t.dims() != var.dims() {
            bail!(
                "{}: tensor {name:?} has shape {:?}, expected {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
        }
        if t.dtype() != DType::F32 {
            bail!(
                "{}: tensor {name:?} has dtype {:?}, expected F32",
                path.display(),
                t.dtype()
            );
        }
        var.set(t)
            .with_context(|| format!("{}: cannot set tensor {name:?}", path.display()))?;
    }
    let mut extra: Vec<&String> = stored.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !extra.is_empty() {
        extra.sort();
        bail!(
            "{}: tensors {extra:?} are not part of the {:?} front-end",
            path.display(),
            spec.config.ablation
        );
    }
    drop(vars);
    Ok(model)
}

/// A checkpoint for inference: the network reads plain tensors, so its forward pass records no
/// gradient graph.
pub fn load_frozen(path: &Path, device: &Device) -> Result<super::frontend::Frontend> {
    let model = load(path, device)?;
    let tensors: HashMap<String, Tensor> = model
        .varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("variable map lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
    super::frontend::Frontend::new(model.net.spec(), vb)
        .with_context(|| format!("{}: cannot rebuild the front-end", path.display()))
}

/// Tensors and metadata as safetensors bytes, header keys in sorted order: the `safetensors` writer
/// takes metadata as a `HashMap`, so equal content would otherwise give different bytes (and SHA-256
/// in model manifests) on every run. Every file aullm writes goes through here.
pub fn serialize<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes = safetensors::serialize(tensors, Some(meta))
        .map_err(|e| anyhow!("cannot serialise tensors: {e}"))?;
    sort_header(bytes)
}

/// Rewrites a safetensors header with every JSON object's keys in sorted order; the header keeps
/// its length, so tensor offsets are unchanged.
fn sort_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let b: BTreeMap<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(b).unwrap_or(serde_json::Value::Null)
            }
            other => other,
        }
    }
    let n = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| u64::from_le_bytes(b) as usize)
        .filter(|&n| bytes.len() >= 8 + n)
        .ok_or_else(|| anyhow!("not a safetensors buffer"))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let text = serde_json::to_vec(&sorted(header))?;
    if text.len() > n {
        return Err(anyhow!("safetensors header grew when sorted"));
    }
    bytes[8..8 + text.len()].copy_from_slice(&text);
    bytes[8 + text.len()..8 + n].fill(b' ');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::config::Ablation;
    use crate::graph::frontend::tests::{ALL, small_spec};

    fn outputs(m: &FrontendModel, clip: &Tensor) -> Vec<f32> {
        let out = m.net.forward(clip).unwrap();
        let mut v: Vec<f32> = out.content.flatten_all().unwrap().to_vec1().unwrap();
        if let Some(t) = &out.instructions {
            v.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        v.extend(
            m.net
                .head_logits(&out)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
        v
    }

    #[test]
    fn round_trip_gives_identical_outputs_and_bytes() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        for ab in ALL {
            let m = FrontendModel::new(&small_spec(ab), &dev).unwrap();
            let p = dir.path().join(format!("{ab:?}.safetensors"));
            save(&m, &p).unwrap();
            let back = load(&p, &dev).unwrap();
            assert_eq!(back.net.spec(), m.net.spec());
            let clip = Tensor::randn(0f32, 1., (2, 2, 4, 32, 32), &dev).unwrap();
            assert_eq!(outputs(&m, &clip), outputs(&back, &clip), "{ab:?}");
            let p2 = dir.path().join("again.safetensors");
            save(&back, &p2).unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&p2).unwrap(),
                "{ab:?}"
            );
        }
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
        let err = format!("{:#}", load(&p, &dev).err().unwrap());
        assert!(
            err.contains("bad.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
        // Truncated real checkpoint.
        let m = FrontendModel::new(&small_spec(Ablation::Full), &dev).unwrap();
        save(&m, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", load(&p, &dev).err().unwrap());
        assert!(err.contains("bad.safetensors"), "{err}");
        let err = format!(
            "{:#}",
            load(&dir.path().join("absent.safetensors"), &dev)
                .err()
                .unwrap()
        );
        assert!(err.contains("absent.safetensors"), "{err}");
    }

    #[test]
    fn mismatched_shape_names_tensor_expected_and_found() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        let m = FrontendModel::new(&small_spec(Ablation::Full), &dev).unwrap();
        save(&m, &p).unwrap();
        // Rewrite the file with one tensor of another shape, keeping the metadata.
        let bytes = std::fs::read(&p).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone();
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &dev).unwrap();
        tensors.insert(
            "efp.proj.weight".into(),
            Tensor::zeros((16, 7), DType::F32, &dev).unwrap(),
        );
        let sorted: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let out = safetensors::serialize(sorted.iter().map(|(k, v)| (k.as_str(), v)), meta.clone())
            .unwrap();
        std::fs::write(&p, out).unwrap();
        let err = format!("{:#}", load(&p, &dev).err().unwrap());
        assert!(
            err.contains("efp.proj.weight")
                && err.contains("[16, 7]")
                && err.contains("[16, 12]")
                && err.contains("ck.safetensors"),
            "{err}"
        );
        // A tensor the graph does not have.
        let mut extra = sorted.clone();
        extra.insert(
            "efp.proj.weight".into(),
            m.varmap.data().lock().unwrap()["efp.proj.weight"]
                .as_tensor()
                .clone(),
        );
        extra.insert(
            "augnn.ghost".into(),
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
        );
        let out = safetensors::serialize(extra.iter().map(|(k, v)| (k.as_str(), v)), meta).unwrap();
        std::fs::write(&p, out).unwrap();
        let err = format!("{:#}", load(&p, &dev).err().unwrap());
        assert!(err.contains("augnn.ghost"), "{err}");
    }
}
