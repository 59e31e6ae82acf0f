//! Export parity: the ONNX front-end in ONNX Runtime (CPU) against the candle graph, every ablation,
//! several clip sizes; and export determinism.

use aullm::config::{Ablation, Config, FrontendConfig};
use aullm::export::frontend_onnx::{
    CONTENT, INPUT, INSTRUCTIONS, export_frontend, frontend_onnx_bytes,
};
use aullm::graph::frontend::{FrontendModel, FrontendSpec};
use candle_core::{Device, Tensor};
use ort::value::TensorRef;
use std::path::Path;

fn spec(frames: usize, size: usize, ablation: Ablation) -> FrontendSpec {
    let config = FrontendConfig {
        frames,
        size,
        channels: [8, 16, 16, 24],
        width: 32,
        node_dim: 16,
        head_hidden: 16,
        ablation,
        ..FrontendConfig::default()
    };
    FrontendSpec::from_config(&config, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Randomises the biases, γ and α's logit too (they start at constants that would hide a wrong export).
fn randomise_vectors(model: &FrontendModel) {
    for (name, var) in model.varmap.data().lock().unwrap().iter() {
        if var.rank() <= 1 {
            let t = Tensor::randn(0f32, 0.3, var.shape(), var.device()).unwrap();
            var.set(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn onnx_runtime_matches_candle() {
    aullm::assets::init_onnx(&Config::default().models).unwrap();
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (8, 112, Ablation::Full),
        (4, 32, Ablation::Full),
        (6, 64, Ablation::Full),
        (4, 48, Ablation::NoAugnn),
        (4, 32, Ablation::FullyConnected),
        (4, 32, Ablation::SelfLoopsOnly),
        (4, 32, Ablation::NoEfp),
        (4, 32, Ablation::FMidOnly),
        (4, 32, Ablation::FHighOnly),
    ];
    for (frames, size, ab) in cases {
        let model = FrontendModel::new(&spec(frames, size, ab), &dev).unwrap();
        randomise_vectors(&model);
        let path = dir.path().join(format!("{ab:?}_{size}.onnx"));
        export_frontend(&model, &path).unwrap();
        let mut session = aullm::onnx::session(&path, 1).unwrap();
        for batch in [1usize, 3] {
            let clip = Tensor::rand(0f32, 1., (batch, 2, frames, size, size), &dev).unwrap();
            let out = model.net.forward(&clip).unwrap();
            let data: Vec<f32> = clip.flatten_all().unwrap().to_vec1().unwrap();
            let shape = [batch as i64, 2, frames as i64, size as i64, size as i64];
            let outputs = session
                .run(ort::inputs![INPUT => TensorRef::from_array_view((shape, data.as_slice())).unwrap()])
                .unwrap();
            let (s, tv) = outputs[CONTENT].try_extract_tensor::<f32>().unwrap();
            assert_eq!(&**s, &[batch as i64, 1, 32]);
            let want: Vec<f32> = out.content.flatten_all().unwrap().to_vec1().unwrap();
            let d = max_abs_diff(tv, &want);
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            eprintln!(
                "{ab:?} {size}px T={frames} batch {batch}: T_v max |Δ| {d:.2e} (max |T_v| {scale:.2})"
            );
            assert!(
                d <= 1e-4,
                "{ab:?} {size}px T={frames} batch {batch}: T_v max |Δ| = {d}"
            );
            match &out.instructions {
                Some(t) => {
                    let (s, tau) = outputs[INSTRUCTIONS].try_extract_tensor::<f32>().unwrap();
                    assert_eq!(&**s, &[batch as i64, 8, 32]);
                    let want: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    let d = max_abs_diff(tau, &want);
                    eprintln!("    tau_au max |Δ| {d:.2e}");
                    assert!(
                        d <= 1e-4,
                        "{ab:?} {size}px T={frames} batch {batch}: tau_au max |Δ| = {d}"
                    );
                }
                None => assert!(outputs.get(INSTRUCTIONS).is_none()),
            }
        }
    }
}

#[test]
fn export_is_deterministic() {
    let dev = Device::Cpu;
    let model = FrontendModel::new(&spec(4, 32, Ablation::Full), &dev).unwrap();
    let a = frontend_onnx_bytes(&model).unwrap();
    let b = frontend_onnx_bytes(&model).unwrap();
    assert_eq!(a, b);
    // Same weights through a checkpoint round trip → same bytes.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    aullm::graph::checkpoint::save(&model, &p).unwrap();
    let back = aullm::graph::checkpoint::load(&p, &dev).unwrap();
    assert_eq!(frontend_onnx_bytes(&back).unwrap(), a);
}

#[test]
fn export_command_writes_the_same_bytes_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let model = FrontendModel::new(&spec(4, 32, Ablation::Full), &dev).unwrap();
    randomise_vectors(&model);
    let ck = dir.path().join("ck.safetensors");
    aullm::graph::checkpoint::save(&model, &ck).unwrap();
    for name in ["a.onnx", "b.onnx"] {
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_aullm"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "export",
                dir.path().join(name).to_str().unwrap(),
                "--checkpoint",
            ])
            .arg(&ck)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let a = std::fs::read(dir.path().join("a.onnx")).unwrap();
    assert!(a == std::fs::read(dir.path().join("b.onnx")).unwrap());
    assert!(a == frontend_onnx_bytes(&model).unwrap());
    // A missing checkpoint is an error naming it, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aullm"))
        .args([
            "export",
            dir.path().join("c.onnx").to_str().unwrap(),
            "--checkpoint",
            "absent.safetensors",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.safetensors"));
}
