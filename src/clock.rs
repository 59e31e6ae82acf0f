//! Host clocks, one definition each: CLOCK_MONOTONIC (frame capture and Lab Streaming Layer time),
//! CLOCK_REALTIME (wall clock in events) and CPU-time counters for run summaries. Imports nothing
//! from the crate.

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; the clock ids used here exist on Linux.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, ns: the clock frame capture times and liblsl's `lsl_local_clock` read.
pub fn mono_now_ns() -> i64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now, ns since the Unix epoch.
pub fn realtime_now_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CPU seconds the calling thread has used.
pub fn thread_cpu_s() -> f64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) as f64 / 1e9
}

/// CPU seconds the whole process has used.
pub fn process_cpu_s() -> f64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_advance_and_agree_in_scale() {
        let (m0, r0) = (mono_now_ns(), realtime_now_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (m1, r1) = (mono_now_ns(), realtime_now_ns());
        assert!(m1 - m0 >= 20_000_000, "monotonic advanced {} ns", m1 - m0);
        // Both clocks tick in ns: their elapsed times differ by far less than the sleep.
        assert!(((r1 - r0) - (m1 - m0)).abs() < 10_000_000);
        assert!(
            r0 > 1_600_000_000 * 1_000_000_000,
            "realtime is since the epoch"
        );
    }
}
