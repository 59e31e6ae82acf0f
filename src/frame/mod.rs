//! Video frames as they leave ingest: 8-bit gray pixels in pooled buffers with their timing. A frame
//! from an MJPEG file may still be compressed: its readers ask for regions ([`Pixels`]) and only
//! those are decoded.
//! Imports nothing from the crate: every other video module builds on it.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

pub mod baseline;
pub mod jpeg;

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
    /// Pixels, tightly packed rows of `width` bytes (only `valid` holds decoded pixels).
    pub pixels: PooledBuf,
    /// The compressed frame, while parts of it are still undecoded.
    pub jpeg: Option<PooledBuf>,
    /// Rectangle of `pixels` already decoded: the whole frame unless `jpeg` is set.
    pub valid: Rect,
    /// Decoder passes this frame took (0 for frames decoded upstream).
    pub decodes: u32,
}

/// A compressed frame whose data libjpeg refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("frame {seq}: {message}")]
pub struct CorruptFrame {
    /// The frame's sequence number.
    pub seq: u64,
    /// What the decoder said.
    pub message: String,
}

/// A pixel rectangle `[x0, y0, x1, y1)`, end exclusive.
pub type Rect = [u32; 4];

/// Extra rows and columns decoded around what is asked, so that the next request of the same
/// reader (a registration iteration moving by a pixel) is already there.
const DECODE_MARGIN: u32 = 16;

impl Frame {
    /// All pixel rows as a slice of `width * height` bytes (decoding what is still compressed).
    pub fn data(&mut self) -> anyhow::Result<&[u8]> {
        self.region([0, 0, self.width, self.height])
    }

    /// Decodes `rect` ahead of the readers (e.g. the tracked faces' neighbourhood), exactly: a
    /// hint already holds the readers' room for motion, and every block decoded beyond it is
    /// Huffman-decoded for nothing (one more block row and column per side cost ~1 % of a batch).
    pub fn prefetch(&mut self, rect: Rect) -> anyhow::Result<()> {
        self.decode_region(rect, 0).map(|_| ())
    }

    /// Decodes `rect` of this frame and of `next`, the stream's following frame, together
    /// ([`jpeg::decode_gray_pair`]: ~20 % cheaper than one after the other) when both are still
    /// wholly compressed frames of one size; otherwise leaves both as they are. An error is this
    /// frame's; `next` stays compressed after one of its own, which its reader then meets.
    pub fn prefetch_pair(&mut self, next: &mut Frame, rect: Rect) -> anyhow::Result<()> {
        if !self.undecoded()
            || !next.undecoded()
            || (self.width, self.height) != (next.width, next.height)
        {
            return Ok(());
        }
        let (Some(a), Some(b)) = (&self.jpeg, &next.jpeg) else {
            return Ok(());
        };
        let (w, h) = (self.width, self.height);
        let [ra, rb] =
            jpeg::decode_gray_pair([a, b], w, h, rect, [&mut self.pixels, &mut next.pixels]);
        if let Ok(got) = rb {
            next.decoded(got);
        }
        let got = ra.map_err(|e| CorruptFrame {
            seq: self.seq,
            message: format!("{e:#}"),
        })?;
        self.decoded(got);
        Ok(())
    }

    /// Still wholly compressed: nothing of it is decoded yet.
    pub fn undecoded(&self) -> bool {
        self.jpeg.is_some() && (self.valid[0] >= self.valid[2] || self.valid[1] >= self.valid[3])
    }

    /// Records a decode that left `got` valid.
    fn decoded(&mut self, got: Rect) {
        self.decodes += 1;
        self.valid = got;
        if got == [0, 0, self.width, self.height] {
            self.jpeg = None; // nothing left to decode: give the buffer back
        }
    }

    /// The frame with at least `rect` decoded; a decode that is needed takes `margin` more pixels
    /// on each side.
    fn decode_region(&mut self, rect: Rect, margin: u32) -> anyhow::Result<&[u8]> {
        let (w, h) = (self.width, self.height);
        let want = jpeg::clamp(rect, w, h);
        if !contains(&self.valid, &want) {
            let Some(jpeg) = &self.jpeg else {
                anyhow::bail!("frame {}: pixels outside the decoded frame", self.seq);
            };
            // libjpeg cannot go back up: a wider request decodes again, the union and a margin.
            let v = self.valid;
            let u = if v[0] >= v[2] {
                want
            } else {
                [
                    v[0].min(want[0]),
                    v[1].min(want[1]),
                    v[2].max(want[2]),
                    v[3].max(want[3]),
                ]
            };
            let m = margin;
            let grown = [
                u[0].saturating_sub(m),
                u[1].saturating_sub(m),
                (u[2] + m).min(w),
                (u[3] + m).min(h),
            ];
            let got = jpeg::decode_gray(jpeg, w, h, grown, &mut self.pixels).map_err(|e| {
                CorruptFrame {
                    seq: self.seq,
                    message: format!("{e:#}"),
                }
            })?;
            self.decoded(got);
        }
        Ok(&self.pixels)
    }
}

/// Rectangle `a` contains `b` (an empty `b` is contained anywhere).
fn contains(a: &Rect, b: &Rect) -> bool {
    b[0] >= b[2] || b[1] >= b[3] || (a[0] <= b[0] && a[1] <= b[1] && a[2] >= b[2] && a[3] >= b[3])
}

/// Read access to a gray image by region: each reader asks for the rectangle it is about to read and
/// gets the whole `width*height` buffer with at least that rectangle valid.
pub trait Pixels {
    /// Width and height.
    fn size(&self) -> (usize, usize);
    /// The packed frame buffer with `rect` (clamped to the frame) decoded.
    fn region(&mut self, rect: Rect) -> anyhow::Result<&[u8]>;
    /// The whole frame.
    fn all(&mut self) -> anyhow::Result<&[u8]> {
        let (w, h) = self.size();
        self.region([0, 0, w as u32, h as u32])
    }
}

impl Pixels for Frame {
    fn size(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn region(&mut self, rect: Rect) -> anyhow::Result<&[u8]> {
        self.decode_region(rect, DECODE_MARGIN)
    }
}

/// A decoded gray image borrowed as [`Pixels`].
pub struct Gray<'a> {
    /// Packed rows.
    pub data: &'a [u8],
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

impl Pixels for Gray<'_> {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn region(&mut self, _rect: Rect) -> anyhow::Result<&[u8]> {
        Ok(self.data)
    }
}

/// The frame pixels a bilinear warp of the quadrilateral `corners` (frame coordinates) reads, with
/// `margin` pixels around it, clamped to a `width`×`height` frame.
pub fn footprint(corners: &[[f64; 2]], margin: f64, width: usize, height: usize) -> Rect {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for c in corners {
        x0 = x0.min(c[0]);
        y0 = y0.min(c[1]);
        x1 = x1.max(c[0]);
        y1 = y1.max(c[1]);
    }
    if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
        return [0, 0, width as u32, height as u32];
    }
    // Samples outside the frame replicate its border: clamping keeps the border in the rectangle.
    let clamp = |v: f64, hi: usize| v.clamp(0.0, hi as f64) as u32;
    let (rx0, ry0) = (
        clamp((x0 - margin).floor(), width.saturating_sub(1)),
        clamp((y0 - margin).floor(), height.saturating_sub(1)),
    );
    [
        rx0,
        ry0,
        clamp((x1 + margin).ceil() + 1.0, width).max(rx0 + 1),
        clamp((y1 + margin).ceil() + 1.0, height).max(ry0 + 1),
    ]
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
