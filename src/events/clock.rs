//! The mapping of CLOCK_MONOTONIC capture times onto Lab Streaming Layer's clock.

use super::lsl_ffi::LslLib;
use crate::clock::mono_now_ns;

/// Maps CLOCK_MONOTONIC times to `lsl_local_clock()` seconds: `lsl_s = mono_ns / 1e9 + offset_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LslClock {
    offset_s: f64,
}

impl LslClock {
    /// Offset 0: liblsl's clock is `std::chrono::steady_clock`, which is CLOCK_MONOTONIC on Linux.
    pub fn monotonic() -> Self {
        Self { offset_s: 0.0 }
    }

    /// Measures the offset once against liblsl itself (best of 9 bracketed readings).
    pub fn measured(lsl: &LslLib) -> Self {
        let mut best = (f64::INFINITY, 0.0);
        for _ in 0..9 {
            let m0 = mono_now_ns();
            let l = lsl.local_clock();
            let m1 = mono_now_ns();
            let width = (m1 - m0) as f64;
            if width < best.0 {
                best = (width, l - (m0 as f64 + width / 2.0) / 1e9);
            }
        }
        Self { offset_s: best.1 }
    }

    /// LSL clock seconds minus CLOCK_MONOTONIC seconds.
    pub fn offset_s(&self) -> f64 {
        self.offset_s
    }

    /// The LSL-clock time of a CLOCK_MONOTONIC instant.
    pub fn lsl_s(&self, mono_ns: i64) -> f64 {
        mono_ns as f64 / 1e9 + self.offset_s
    }
}
