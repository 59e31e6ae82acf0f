//! candle compute devices available to the reasoner and training.

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
    out.push(DeviceReport {
        name: "cuda".into(),
        ok: false,
        detail: if candle_core::utils::cuda_is_available() {
            "available".into()
        } else {
            "not built (cargo feature `cuda`)".into()
        },
    });
    out
}
