//! Video frames as they leave ingest: 8-bit gray pixels in pooled buffers with their timing.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A gray 8-bit frame with its stream timing.
pub struct Frame {
    /// Position in the stream as delivered by the source, counting from 0 (gaps mean lost frames).
    pub seq: u64,
    /// Presentation timestamp on the stream clock, nanoseconds from the stream start.
    pub pts_ns: u64,
    /// Host wall-clock time (ns since the Unix epoch) when the buffer reached aullm.
    pub host_ns: u64,
    /// Monotonic host time (ns, `CLOCK_MONOTONIC`) when the buffer reached aullm; used for latency.
    pub mono_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame period the source declares in its caps (ns), when it declares a rate.
    pub period_ns: Option<u64>,
    /// Pixels, tightly packed rows of `width` bytes.
    pub pixels: PooledBuf,
}

impl Frame {
    /// Pixel rows as a slice of `width * height` bytes.
    pub fn data(&self) -> &[u8] {
        &self.pixels
    }
}

/// A byte buffer that returns itself to its pool when dropped, so steady-state ingest allocates nothing.
pub struct PooledBuf {
    buf: Vec<u8>,
    pool: Option<Arc<ArrayQueue<Vec<u8>>>>,
}

impl PooledBuf {
    /// A buffer that belongs to no pool (tests, still images).
    pub fn unpooled(buf: Vec<u8>) -> Self {
        Self { buf, pool: None }
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            // A full pool simply lets the buffer go: the pool bounds memory, not correctness.
            let _ = pool.push(std::mem::take(&mut self.buf));
        }
    }
}

/// A bounded pool of frame buffers shared by the producer and whoever drops frames.
#[derive(Clone)]
pub struct FramePool {
    free: Arc<ArrayQueue<Vec<u8>>>,
}

impl FramePool {
    /// A pool keeping at most `capacity` spare buffers.
    pub fn new(capacity: usize) -> Self {
        Self {
            free: Arc::new(ArrayQueue::new(capacity.max(1))),
        }
    }

    /// A buffer of exactly `len` bytes (contents unspecified), reused when one is free.
    pub fn take(&self, len: usize) -> PooledBuf {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.resize(len, 0);
        PooledBuf {
            buf,
            pool: Some(self.free.clone()),
        }
    }

    /// Number of spare buffers waiting for reuse.
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}

/// Host wall-clock time in ns since the Unix epoch.
pub fn host_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Monotonic host time in ns (`CLOCK_MONOTONIC`, the clock liblsl's `lsl_local_clock` reads), so
/// events can be placed on the Lab Streaming Layer clock without a second conversion.
pub fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_buffers() {
        let pool = FramePool::new(4);
        let a = pool.take(100);
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.spare(), 1);
        let b = pool.take(100);
        assert_eq!(b.as_ptr(), ptr, "the dropped buffer is handed out again");
        assert_eq!(pool.spare(), 0);
    }
}
