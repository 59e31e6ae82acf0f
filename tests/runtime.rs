//! ONNX Runtime execution-provider selection: CUDA when the loaded library has it, else a logged CPU fall back.

use aullm::config::Config;
use aullm::onnx::{CPU_EP, CUDA_EP, ProviderChoice, cuda_available, session_on};

#[test]
fn provider_selection_falls_back_to_the_cpu_library() {
    let cfg = Config::default();
    aullm::assets::init_onnx(&cfg.models).unwrap();
    let model = aullm::assets::artefact_path(&cfg.models, "blazeface-front").unwrap();
    let expected = if cuda_available() { CUDA_EP } else { CPU_EP };
    let (mut s, ep) = session_on(&model, 1, ProviderChoice::Auto).unwrap();
    assert_eq!(ep, expected);
    // The session it returns really runs.
    let x = vec![0f32; 128 * 128 * 3];
    let out = s
        .run(ort::inputs!["input:0" => ort::value::TensorRef::from_array_view(([1i64, 128, 128, 3], x.as_slice())).unwrap()])
        .unwrap();
    assert_eq!(out.len(), 4);
    drop(out);
    let (_, ep) = session_on(&model, 1, ProviderChoice::Cpu).unwrap();
    assert_eq!(ep, CPU_EP);
    // The manifest's library is the CPU build: asking for CUDA still gives a working CPU session.
    let (_, ep) = session_on(&model, 1, ProviderChoice::Cuda).unwrap();
    assert_eq!(ep, expected);
    // An unknown provider is a configuration error that names the key.
    let err = format!(
        "{:#}",
        Config::load(None, &["frontend.execution_provider=tpu".into()]).unwrap_err()
    );
    assert!(
        err.contains("frontend.execution_provider") && err.contains("tpu"),
        "{err}"
    );
}
