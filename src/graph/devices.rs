//! candle compute devices available to the reasoner and training.

use anyhow::{Context, Result, bail};

/// A device named in a configuration: "cpu", "cuda" (= "cuda:0") or "cuda:N".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceName {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl TryFrom<String> for DeviceName {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        parse(&s).map_err(|e| e.to_string())
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Parses "cpu", "cuda" (= "cuda:0") or "cuda:N".
pub fn parse(name: &str) -> Result<DeviceName> {
    match name.trim() {
        "cpu" => Ok(DeviceName::Cpu),
        "cuda" => Ok(DeviceName::Cuda(0)),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(DeviceName::Cuda(n)),
            _ => bail!("device {other:?}: expected \"cpu\", \"cuda\" or \"cuda:N\""),
        },
    }
}

/// The candle device `name` selects; CUDA needs a build with the `cuda` feature and a GPU. A GPU is
/// opened once per process: candle gives every `new_cuda` call its own device identity, and
/// tensors of two identities refuse to meet (the front-end's output and the reasoner would be on
/// "different devices" of the same GPU).
pub fn select(name: DeviceName) -> Result<candle_core::Device> {
    match name {
        DeviceName::Cpu => Ok(candle_core::Device::Cpu),
        DeviceName::Cuda(n) => {
            type Open = std::sync::Mutex<std::collections::HashMap<usize, candle_core::Device>>;
            static OPEN: std::sync::OnceLock<Open> = std::sync::OnceLock::new();
            let mut open = OPEN
                .get_or_init(Default::default)
                .lock()
                .map_err(|_| anyhow::anyhow!("device table lock poisoned"))?;
            if let Some(d) = open.get(&n) {
                return Ok(d.clone());
            }
            let d = candle_core::Device::new_cuda(n).with_context(|| {
                if candle_core::utils::cuda_is_available() {
                    format!("cannot open CUDA device {n}")
                } else {
                    format!(
                        "device \"{name}\": this aullm was built without CUDA (cargo feature `cuda`)"
                    )
                }
            })?;
            open.insert(n, d.clone());
            Ok(d)
        }
    }
}

/// Whether the im2col convolution and the Laplacian run aullm's own kernels on a GPU (they
/// always do on the CPU); off, they give way to candle's conv2d and shifted sums (for A/B timing).
static OWN_GPU_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns aullm's CUDA kernels for the convolution and the Laplacian on or off (default on).
pub fn set_own_gpu_kernels(on: bool) {
    OWN_GPU_KERNELS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the im2col convolution and the Laplacian use aullm's own kernels on `device`: always on
/// the CPU; on a GPU in a CUDA build unless [`set_own_gpu_kernels`] turned them off.
pub fn own_kernels(device: &candle_core::Device) -> bool {
    device.is_cpu()
        || (cfg!(feature = "cuda")
            && device.is_cuda()
            && OWN_GPU_KERNELS.load(std::sync::atomic::Ordering::Relaxed))
}

/// aullm's hand-written CPU kernels that have no GPU path; on another device each gives way to
/// candle's own operation. (The im2col convolution and the Laplacian have CUDA kernels.)
pub const CPU_KERNELS: &[(&str, &str)] = &[
    (
        "small-row matmul (f16/bf16 weights, f32 rows)",
        "candle matmul (cuBLAS; while training, with the input-only backward)",
    ),
    (
        "int8 block matmul",
        "candle matmul on the unquantised weights",
    ),
];

/// Opens the device configuration key `key` names (errors name the key). Off the CPU it logs,
/// once per process, which of aullm's CPU kernels give way to candle's own operations there, so
/// nothing runs on the CPU behind the device's back.
pub fn open(name: DeviceName, key: &str) -> Result<candle_core::Device> {
    let device = select(name).with_context(|| format!("{key} = \"{name}\""))?;
    static LOGGED: std::sync::Once = std::sync::Once::new();
    if !device.is_cpu() {
        LOGGED.call_once(|| {
            for (kernel, instead) in CPU_KERNELS {
                tracing::info!("{key} = \"{name}\": {kernel} runs as {instead}");
            }
        });
    }
    Ok(device)
}

/// A device candle can use, with whether it works here.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Device name as users select it ("cpu", "cuda:0").
    pub name: String,
    /// True when a small tensor operation succeeded on it.
    pub ok: bool,
    /// What was found, or why it is unavailable.
    pub detail: String,
}

/// Probes candle's CPU device (and CUDA when built with it) with a real tensor operation.
pub fn probe() -> Vec<DeviceReport> {
    let mut out = Vec::new();
    let cpu = candle_core::Device::Cpu;
    let res = candle_core::Tensor::arange(0f32, 16f32, &cpu)
        .and_then(|t| t.reshape((4, 4)))
        .and_then(|t| t.matmul(&t))
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f32>());
    out.push(match res {
        Ok(v) => DeviceReport {
            name: "cpu".into(),
            ok: (v - 3920.0).abs() < 1e-3,
            detail: format!(
                "candle 0.11 (avx: {}, f16c: {})",
                candle_core::utils::with_avx(),
                candle_core::utils::with_f16c()
            ),
        },
        Err(e) => DeviceReport {
            name: "cpu".into(),
            ok: false,
            detail: e.to_string(),
        },
    });
    out.push(if candle_core::utils::cuda_is_available() {
        match select(DeviceName::Cuda(0)) {
            Ok(_) => DeviceReport {
                name: "cuda:0".into(),
                ok: true,
                detail: "available".into(),
            },
            Err(e) => DeviceReport {
                name: "cuda:0".into(),
                ok: false,
                detail: format!("{e:#}"),
            },
        }
    } else {
        DeviceReport {
            name: "cuda".into(),
            ok: false,
            detail: "not built (cargo feature `cuda`)".into(),
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(parse("cpu").unwrap(), DeviceName::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceName::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), DeviceName::Cuda(3));
        assert!(parse("cuda:x").is_err());
        assert!(parse("gpu").is_err());
        assert!(select(DeviceName::Cpu).unwrap().is_cpu());
        assert!(open(DeviceName::Cpu, "train.device").unwrap().is_cpu());
    }

    #[test]
    fn the_cpu_always_runs_aullms_kernels() {
        // The switch is for A/B timing on a GPU; it never moves the CPU off its kernels.
        set_own_gpu_kernels(false);
        let off = own_kernels(&candle_core::Device::Cpu);
        set_own_gpu_kernels(true);
        assert!(off && own_kernels(&candle_core::Device::Cpu));
    }

    #[test]
    fn a_gpu_is_opened_once_per_process() {
        // Only where a GPU opens (a CUDA build on a GPU machine).
        if let (Ok(a), Ok(b)) = (select(DeviceName::Cuda(0)), select(DeviceName::Cuda(0))) {
            assert!(a.same_device(&b));
        }
    }

    #[test]
    fn a_cuda_device_without_the_feature_is_a_clear_error() {
        if candle_core::utils::cuda_is_available() {
            return; // a CUDA build: the device may well open
        }
        let e = format!(
            "{:#}",
            open(DeviceName::Cuda(0), "train.device").unwrap_err()
        );
        assert!(e.contains("train.device = \"cuda:0\""), "{e}");
        assert!(e.contains("without CUDA (cargo feature `cuda`)"), "{e}");
    }
}
