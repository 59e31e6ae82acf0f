//! Which engine runs a model's front-end at inference: ONNX Runtime (`frontend.onnx`) or candle
//! (`frontend.safetensors`, the same graph training builds) on the reasoner's device.

use crate::config::Config;
use crate::graph::config::FrontendEngine;
use crate::graph::devices::DeviceName;
use crate::onnx::ProviderChoice;

/// The engine chosen for a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// ONNX Runtime on the requested provider (it may still fall back to the CPU, logged).
    Onnx(ProviderChoice),
    /// candle on this device.
    Candle(DeviceName),
}

impl Engine {
    /// How reports name it before a session exists ("candle on cuda:0", "ONNX Runtime").
    pub fn describe(&self) -> String {
        match self {
            Engine::Onnx(_) => "ONNX Runtime".into(),
            Engine::Candle(d) => candle_label(*d),
        }
    }
}

/// The label a candle front-end carries in events and summaries, where ONNX Runtime's carry its
/// execution provider's name.
pub fn candle_label(device: DeviceName) -> String {
    format!("candle on {device}")
}

/// `frontend.engine` resolved against `reasoner.device` and whether the loaded ONNX Runtime has
/// a CUDA execution provider (`onnx_cuda`), with the reason in words.
pub fn choose(cfg: &Config, onnx_cuda: bool) -> (Engine, String) {
    let device = cfg.reasoner.device;
    let provider = cfg.frontend.execution_provider;
    match cfg.frontend.engine {
        FrontendEngine::Onnx => (Engine::Onnx(provider), "frontend.engine = \"onnx\"".into()),
        FrontendEngine::Candle => (
            Engine::Candle(device),
            format!("frontend.engine = \"candle\" (reasoner.device = \"{device}\")"),
        ),
        FrontendEngine::Auto => match device {
            DeviceName::Cuda(_) if !onnx_cuda && provider != ProviderChoice::Cpu => (
                Engine::Candle(device),
                format!(
                    "reasoner.device = \"{device}\" and the loaded ONNX Runtime has no CUDA \
                     execution provider"
                ),
            ),
            _ => (
                Engine::Onnx(provider),
                format!("frontend.engine = \"auto\", reasoner.device = \"{device}\""),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(engine: FrontendEngine, device: DeviceName, provider: ProviderChoice) -> Config {
        let mut c = Config::default();
        c.frontend.engine = engine;
        c.reasoner.device = device;
        c.frontend.execution_provider = provider;
        c
    }

    #[test]
    fn auto_moves_the_front_end_to_candle_only_for_a_gpu_onnx_runtime_cannot_use() {
        use FrontendEngine::*;
        let (cpu, gpu) = (DeviceName::Cpu, DeviceName::Cuda(1));
        let auto = ProviderChoice::Auto;
        assert_eq!(choose(&cfg(Auto, cpu, auto), false).0, Engine::Onnx(auto));
        assert_eq!(choose(&cfg(Auto, gpu, auto), false).0, Engine::Candle(gpu));
        assert_eq!(choose(&cfg(Auto, gpu, auto), true).0, Engine::Onnx(auto));
        // The front-end asked to stay on the CPU stays with ONNX Runtime.
        let cpu_ep = ProviderChoice::Cpu;
        assert_eq!(
            choose(&cfg(Auto, gpu, cpu_ep), false).0,
            Engine::Onnx(cpu_ep)
        );
        // Explicit choices are kept.
        assert_eq!(choose(&cfg(Candle, cpu, auto), true).0, Engine::Candle(cpu));
        assert_eq!(choose(&cfg(Onnx, gpu, auto), false).0, Engine::Onnx(auto));
        let (_, why) = choose(&cfg(Auto, gpu, auto), false);
        assert!(why.contains("no CUDA execution provider"), "{why}");
        assert_eq!(Engine::Candle(gpu).describe(), "candle on cuda:1");
    }
}
