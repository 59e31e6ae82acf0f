//! The `[ingest]` section: how frames are pulled from GStreamer.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Whether a source is treated as live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LiveMode {
    /// Ask GStreamer (cameras and network streams are live, files are not).
    #[default]
    Auto,
    /// Live: drop the oldest frame when the face path is behind.
    Yes,
    /// Not live: the decoder waits for the face path.
    No,
}

/// How frames are pulled from GStreamer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Frames buffered between the GStreamer thread and the face thread.
    pub queue_frames: usize,
    /// Treat the source as live (drop oldest when full): "auto" asks GStreamer, "yes" or "no" forces it.
    pub live: LiveMode,
    /// Significant bits of GRAY16 cameras (e.g. 10, 12, 16): pixels are scaled to 8 bits from this depth.
    pub gray16_bits: u32,
    /// Folder of extra pipeline templates (`NAME.pipeline`); the built-in ones are always available.
    pub pipelines_dir: String,
    /// Seconds to keep draining decoded frames after a GStreamer error before reporting it.
    pub error_drain_s: f64,
    /// A gap in presentation time longer than this many frame periods counts the missing frames as drops.
    pub gap_tolerance: f64,
    /// MJPEG files stay compressed until the face path reads them, and only the rows and columns it
    /// reads are decoded (same pixels as GStreamer's decoder); false = GStreamer decodes every frame whole.
    pub decode_regions: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            queue_frames: 64,
            live: LiveMode::Auto,
            gray16_bits: 16,
            pipelines_dir: String::new(),
            error_drain_s: 2.0,
            gap_tolerance: 1.5,
            decode_regions: true,
        }
    }
}

impl IngestConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if !(8..=16).contains(&self.gray16_bits) {
            bail!("ingest.gray16_bits = {}: expected 8..=16", self.gray16_bits);
        }
        if self.queue_frames == 0 {
            bail!("ingest.queue_frames must be at least 1");
        }
        Ok(())
    }
}
