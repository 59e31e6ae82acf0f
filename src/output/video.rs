//! Gray video files written through GStreamer (appsrc → encoder → muxer → file).

use anyhow::{Context, Result, anyhow, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::{Path, PathBuf};

/// Writes GRAY8 frames of a fixed size to `.mkv` (FFV1, lossless) or `.avi` (Motion JPEG).
pub struct VideoWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    width: u32,
    height: u32,
    frame_ns: u64,
    count: u64,
    path: PathBuf,
    tmp: PathBuf,
}

/// How frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// FFV1 in Matroska: lossless and compact (the default for `.mkv`).
    Ffv1,
    /// Motion JPEG in AVI: lossy, plays everywhere (the default for `.avi`).
    Mjpeg,
    /// Uncompressed GRAY8 in Matroska: lossless and the cheapest to decode.
    Raw,
}

impl VideoCodec {
    /// The codec a file name implies.
    pub fn for_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
        {
            Some(e) if e == "mkv" => Ok(VideoCodec::Ffv1),
            Some(e) if e == "avi" => Ok(VideoCodec::Mjpeg),
            _ => bail!(
                "video output {}: use a .mkv (lossless FFV1) or .avi (Motion JPEG) file name",
                path.display()
            ),
        }
    }

    fn chain(self) -> &'static str {
        match self {
            VideoCodec::Ffv1 => "videoconvert ! avenc_ffv1 ! matroskamux",
            VideoCodec::Mjpeg => "videoconvert ! jpegenc quality=95 ! avimux",
            VideoCodec::Raw => "matroskamux",
        }
    }
}

impl VideoWriter {
    /// Opens the file for frames of `width`×`height` at `fps` (written under `NAME.partial` until finished).
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        Self::create_with(path, VideoCodec::for_path(path)?, width, height, fps)
    }

    /// Opens the file with an explicit codec.
    pub fn create_with(
        path: &Path,
        codec: VideoCodec,
        width: u32,
        height: u32,
        fps: f64,
    ) -> Result<Self> {
        crate::ingest::init_gstreamer()?;
        let chain = codec.chain();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let fps_n = (fps * 1000.0).round().max(1.0) as i32;
        let desc = format!(
            "appsrc name=src format=time is-live=false caps=video/x-raw,format=GRAY8,width={width},height={height},framerate={fps_n}/1000 \
             ! {chain} ! filesink name=sink"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| anyhow!("video writer for {}: {e}", path.display()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("video writer: not a pipeline"))?;
        let sink = pipeline
            .by_name("sink")
            .ok_or_else(|| anyhow!("video writer: no filesink"))?;
        sink.set_property("location", tmp.to_string_lossy().to_string());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| anyhow!("video writer: no appsrc"))?;
        // Never drop: block the producer when the encoder is behind.
        src.set_property("block", true);
        src.set_property("max-bytes", (width as u64 * height as u64 * 8).max(1 << 20));
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            anyhow!(
                "video writer for {}: cannot start the encoder",
                path.display()
            )
        })?;
        Ok(Self {
            pipeline,
            src,
            width,
            height,
            frame_ns: (1e9 / fps.max(1e-3)) as u64,
            count: 0,
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// Appends one frame (`width*height` bytes).
    pub fn push(&mut self, gray: &[u8]) -> Result<()> {
        let n = (self.width * self.height) as usize;
        if gray.len() != n {
            bail!(
                "video writer {}: frame has {} bytes, expected {n}",
                self.path.display(),
                gray.len()
            );
        }
        let mut buf = gst::Buffer::from_slice(gray.to_vec());
        {
            let b = buf
                .get_mut()
                .ok_or_else(|| anyhow!("buffer not writable"))?;
            b.set_pts(gst::ClockTime::from_nseconds(self.count * self.frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(self.frame_ns));
        }
        self.src.push_buffer(buf).map_err(|e| {
            anyhow!(
                "video writer {}: encoder refused a frame: {e:?}",
                self.path.display()
            )
        })?;
        self.count += 1;
        Ok(())
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.count
    }

    /// Ends the stream, waits for the muxer to finish the file, renames it into place.
    pub fn finish(self) -> Result<PathBuf> {
        self.src
            .end_of_stream()
            .map_err(|e| anyhow!("video writer {}: {e:?}", self.path.display()))?;
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| anyhow!("video writer: no bus"))?;
        let result = loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) else {
                break Err(anyhow!(
                    "video writer {}: timed out finishing the file",
                    self.path.display()
                ));
            };
            match msg.view() {
                gst::MessageView::Eos(_) => break Ok(()),
                gst::MessageView::Error(e) => {
                    let el = msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    break Err(anyhow!(
                        "video writer {}: element {el}: {}",
                        self.path.display(),
                        e.error()
                    ));
                }
                _ => {}
            }
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.tmp.display(),
                self.path.display()
            )
        })?;
        Ok(self.path.clone())
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
