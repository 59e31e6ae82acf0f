//! BlazeFace (MediaPipe) face detection through ONNX Runtime: letterbox, anchors, weighted NMS.

use anyhow::{Context, Result, anyhow, bail};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::Path;

/// Keypoint order BlazeFace emits.
pub const KEYPOINT_NAMES: [&str; 6] = [
    "right_eye",
    "left_eye",
    "nose",
    "mouth",
    "right_ear",
    "left_ear",
];

/// One detected face in frame pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Left, top, right, bottom.
    pub bbox: [f32; 4],
    /// Six keypoints (see [`KEYPOINT_NAMES`]) as (x, y).
    pub keypoints: [[f32; 2]; 6],
    /// Detection confidence in [0, 1].
    pub score: f32,
}

impl Detection {
    /// Intersection over union of two boxes.
    pub fn iou(&self, other: &Detection) -> f32 {
        iou(&self.bbox, &other.bbox)
    }
}

/// Intersection over union of two `[l, t, r, b]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// An SSD anchor centre in normalised input coordinates.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    cx: f32,
    cy: f32,
}

/// Anchors for one output layer: `cells`×`cells` positions, `per_cell` anchors each, row-major.
fn layer_anchors(cells: usize, per_cell: usize) -> Vec<Anchor> {
    let mut v = Vec::with_capacity(cells * cells * per_cell);
    for y in 0..cells {
        for x in 0..cells {
            for _ in 0..per_cell {
                v.push(Anchor {
                    cx: (x as f32 + 0.5) / cells as f32,
                    cy: (y as f32 + 0.5) / cells as f32,
                });
            }
        }
    }
    v
}

/// BlazeFace with its ORT session and reusable buffers.
pub struct FaceDetector {
    session: Session,
    input_name: String,
    /// Output names: (scores, boxes) per layer, fine layer first.
    layers: Vec<(String, String, Vec<Anchor>)>,
    size: usize,
    score_threshold: f32,
    nms_iou: f32,
    input: Vec<f32>,
    letterbox: Vec<u8>,
    gray_tint: [f32; 3],
}

/// How a frame was fitted into the square detector input.
#[derive(Debug, Clone, Copy)]
struct Letterbox {
    scale: f32,
    pad_x: f32,
    pad_y: f32,
}

impl FaceDetector {
    /// Loads a BlazeFace ONNX model (front 128 or back 256; the input size is read from the model).
    pub fn new(model: &Path, threads: usize, score_threshold: f32, nms_iou: f32) -> Result<Self> {
        let session = crate::onnx::session(model, threads)?;
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| anyhow!("{}: model has no inputs", model.display()))?;
        let input_name = input.name().to_string();
        let size = match input.dtype().tensor_shape() {
            Some(shape)
                if shape.len() == 4 && shape[1] > 0 && shape[1] == shape[2] && shape[3] == 3 =>
            {
                shape[1] as usize
            }
            other => bail!(
                "{}: expected a BlazeFace NHWC input [1,S,S,3], found {other:?}",
                model.display()
            ),
        };
        // Outputs are [1, anchors, 1] scores and [1, anchors, 16] regressors for a 16x16 layer with 2
        // anchors per cell (512) and an 8x8 layer with 6 (384), in both BlazeFace variants.
        let find = |anchors: i64, width: i64| {
            session.outputs().iter().find_map(|o| {
                let shape = o.dtype().tensor_shape()?;
                (shape.len() == 3 && shape[1] == anchors && shape[2] == width)
                    .then(|| o.name().to_string())
            })
        };
        let mut layers = Vec::new();
        for (anchors, cells, per_cell) in [(512i64, 16usize, 2usize), (384, 8, 6)] {
            match (find(anchors, 1), find(anchors, 16)) {
                (Some(sc), Some(bx)) => layers.push((sc, bx, layer_anchors(cells, per_cell))),
                _ => bail!(
                    "{}: not a BlazeFace model (no [1,{anchors},1] score and [1,{anchors},16] box outputs)",
                    model.display()
                ),
            }
        }
        Ok(Self {
            session,
            input_name,
            layers,
            size,
            score_threshold,
            nms_iou,
            input: vec![0.0; size * size * 3],
            letterbox: vec![0; size * size],
            gray_tint: [1.0, 1.0, 1.0],
        })
    }

    /// Sets the RGB gains applied to gray input (`[1, 1, 1]` = plain gray).
    pub fn with_gray_tint(mut self, tint: [f32; 3]) -> Self {
        self.gray_tint = tint;
        self
    }

    /// Side of the square model input in pixels.
    pub fn input_size(&self) -> usize {
        self.size
    }

    /// Detects faces in a whole gray image (`width`×`height`, tightly packed), best first.
    pub fn detect(&mut self, gray: &[u8], width: usize, height: usize) -> Result<Vec<Detection>> {
        check_dims(gray.len(), width, height, 1)?;
        let lb = self.letterbox_gray(gray, width, height)?;
        self.run(lb)
    }

    /// Detects faces inside the square `[left, top, side]` of a gray image (a tracked face's
    /// neighbourhood): the face is seen at the detector's full resolution, so keypoints are sharper.
    pub fn detect_region(
        &mut self,
        gray: &[u8],
        width: usize,
        height: usize,
        region: [f32; 3],
    ) -> Result<Vec<Detection>> {
        use opencv::core::{BORDER_CONSTANT, Mat, Scalar, Size};
        check_dims(gray.len(), width, height, 1)?;
        let s = self.size;
        let scale = s as f32 / region[2].max(1.0);
        let src =
            Mat::new_rows_cols_with_data(height as i32, width as i32, &gray[..width * height])
                .context("wrapping the frame for the detector")?;
        let m = Mat::from_slice_2d(&[
            [scale as f64, 0.0, (-region[0] * scale) as f64],
            [0.0, scale as f64, (-region[1] * scale) as f64],
        ])?;
        // SAFETY: `letterbox` holds exactly s*s bytes and outlives `dst`.
        let mut dst = unsafe {
            Mat::new_rows_cols_with_data_unsafe_def(
                s as i32,
                s as i32,
                opencv::core::CV_8UC1,
                self.letterbox.as_mut_ptr().cast(),
            )
        }?;
        opencv::imgproc::warp_affine(
            &src,
            &mut dst,
            &m,
            Size::new(s as i32, s as i32),
            opencv::imgproc::INTER_LINEAR,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )
        .context("cropping the detector region")?;
        self.expand_gray();
        self.run(Letterbox {
            scale,
            pad_x: -region[0] * scale,
            pad_y: -region[1] * scale,
        })
    }

    /// Detects faces in an RGB image (3 bytes per pixel), e.g. a colour photo.
    pub fn detect_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Vec<Detection>> {
        use opencv::prelude::*;
        check_dims(rgb.len(), width, height, 3)?;
        let src = opencv::core::Mat::new_rows_cols_with_data(
            height as i32,
            (width * 3) as i32,
            &rgb[..width * height * 3],
        )?;
        let src = src.reshape(3, height as i32)?;
        let (boxed, lb) = self.letterbox_mat(&src, width, height)?;
        let px = boxed.data_bytes().context("letterbox pixels")?;
        for (v, out) in px.iter().zip(self.input.iter_mut()) {
            *out = *v as f32 * (2.0 / 255.0) - 1.0;
        }
        self.run(lb)
    }

    /// Runs the model on the prepared input and decodes the detections.
    fn run(&mut self, lb: Letterbox) -> Result<Vec<Detection>> {
        let s = self.size as i64;
        let mut raw: Vec<Detection> = Vec::new();
        let outputs = self
            .session
            .run(ort::inputs![
                self.input_name.as_str() => TensorRef::from_array_view(([1i64, s, s, 3], self.input.as_slice()))
                    .map_err(|e| anyhow!("detector input tensor: {e}"))?
            ])
            .map_err(|e| anyhow!("BlazeFace inference failed: {e}"))?;
        let logit_min = logit(self.score_threshold);
        for (score_name, box_name, anchors) in &self.layers {
            let (_, scores) = outputs[score_name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| anyhow!("BlazeFace output {score_name}: {e}"))?;
            let (_, boxes) = outputs[box_name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| anyhow!("BlazeFace output {box_name}: {e}"))?;
            if scores.len() != anchors.len() || boxes.len() != anchors.len() * 16 {
                bail!(
                    "BlazeFace outputs {score_name}/{box_name} have {} / {} values, expected {} / {}",
                    scores.len(),
                    boxes.len(),
                    anchors.len(),
                    anchors.len() * 16
                );
            }
            for (i, a) in anchors.iter().enumerate() {
                // Compare logits first: most anchors are rejected without a sigmoid.
                if scores[i] < logit_min {
                    continue;
                }
                let r = &boxes[i * 16..(i + 1) * 16];
                raw.push(decode(r, a, scores[i], self.size as f32, lb));
            }
        }
        Ok(weighted_nms(raw, self.nms_iou))
    }

    /// Resizes (area filter) and pads an image into the square input, keeping its aspect ratio.
    fn letterbox_mat(
        &self,
        src: &impl opencv::core::ToInputArray,
        width: usize,
        height: usize,
    ) -> Result<(opencv::core::Mat, Letterbox)> {
        use opencv::core::{BORDER_CONSTANT, Mat, Scalar, Size};
        let s = self.size;
        let scale = s as f32 / width.max(height) as f32;
        let nw = ((width as f32 * scale).round() as usize).clamp(1, s);
        let nh = ((height as f32 * scale).round() as usize).clamp(1, s);
        let pad_x = (s - nw) / 2;
        let pad_y = (s - nh) / 2;
        let mut small = Mat::default();
        opencv::imgproc::resize(
            src,
            &mut small,
            Size::new(nw as i32, nh as i32),
            0.0,
            0.0,
            opencv::imgproc::INTER_AREA,
        )
        .context("resizing the frame for the detector")?;
        let mut boxed = Mat::default();
        opencv::core::copy_make_border(
            &small,
            &mut boxed,
            pad_y as i32,
            (s - nh - pad_y) as i32,
            pad_x as i32,
            (s - nw - pad_x) as i32,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )
        .context("padding the frame for the detector")?;
        Ok((
            boxed,
            Letterbox {
                scale,
                pad_x: pad_x as f32,
                pad_y: pad_y as f32,
            },
        ))
    }

    /// Letterboxes a gray frame into the input.
    fn letterbox_gray(&mut self, gray: &[u8], width: usize, height: usize) -> Result<Letterbox> {
        use opencv::prelude::*;
        let src = opencv::core::Mat::new_rows_cols_with_data(
            height as i32,
            width as i32,
            &gray[..width * height],
        )
        .context("wrapping the frame for resize")?;
        let (boxed, lb) = self.letterbox_mat(&src, width, height)?;
        self.letterbox
            .copy_from_slice(boxed.data_bytes().context("letterbox pixels")?);
        self.expand_gray();
        Ok(lb)
    }

    /// Gray → RGB in [-1, 1] with a skin-tone tint: BlazeFace was trained on colour faces, and a plain
    /// gray replica shifts its keypoints by a few pixels (measured on astronaut.png, see the README).
    fn expand_gray(&mut self) {
        let t = self.gray_tint;
        for (px, out) in self.letterbox.iter().zip(self.input.chunks_exact_mut(3)) {
            let g = *px as f32;
            out[0] = (g * t[0]).min(255.0) * (2.0 / 255.0) - 1.0;
            out[1] = (g * t[1]).min(255.0) * (2.0 / 255.0) - 1.0;
            out[2] = (g * t[2]).min(255.0) * (2.0 / 255.0) - 1.0;
        }
    }
}

fn check_dims(len: usize, width: usize, height: usize, channels: usize) -> Result<()> {
    if width == 0 || height == 0 || len < width * height * channels {
        bail!("detector input {width}x{height}x{channels} does not match {len} bytes");
    }
    Ok(())
}

/// Inverse sigmoid, so thresholds can be compared to raw logits.
fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// Decodes one anchor's 16 regressors (box centre/size + 6 keypoints, in input pixels relative to the
/// anchor centre) into frame coordinates.
fn decode(r: &[f32], a: &Anchor, logit: f32, size: f32, lb: Letterbox) -> Detection {
    let to_frame_x = |nx: f32| (nx * size - lb.pad_x) / lb.scale;
    let to_frame_y = |ny: f32| (ny * size - lb.pad_y) / lb.scale;
    let cx = r[0] / size + a.cx;
    let cy = r[1] / size + a.cy;
    let w = r[2] / size;
    let h = r[3] / size;
    let mut keypoints = [[0f32; 2]; 6];
    for (k, kp) in keypoints.iter_mut().enumerate() {
        kp[0] = to_frame_x(r[4 + 2 * k] / size + a.cx);
        kp[1] = to_frame_y(r[5 + 2 * k] / size + a.cy);
    }
    Detection {
        bbox: [
            to_frame_x(cx - w / 2.0),
            to_frame_y(cy - h / 2.0),
            to_frame_x(cx + w / 2.0),
            to_frame_y(cy + h / 2.0),
        ],
        keypoints,
        score: 1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp()),
    }
}

/// MediaPipe's weighted non-maximum suppression: overlapping candidates are averaged by score,
/// which is steadier frame to frame than keeping only the best box.
pub fn weighted_nms(mut cands: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !cands.is_empty() {
        let best = cands[0];
        let (group, rest): (Vec<Detection>, Vec<Detection>) = cands
            .into_iter()
            .partition(|c| c.iou(&best) > iou_threshold);
        cands = rest;
        let total: f32 = group.iter().map(|d| d.score).sum();
        let mut merged = Detection {
            bbox: [0.0; 4],
            keypoints: [[0.0; 2]; 6],
            score: best.score,
        };
        for d in &group {
            let w = d.score / total;
            for i in 0..4 {
                merged.bbox[i] += w * d.bbox[i];
            }
            for k in 0..6 {
                merged.keypoints[k][0] += w * d.keypoints[k][0];
                merged.keypoints[k][1] += w * d.keypoints[k][1];
            }
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(l: f32, t: f32, s: f32, score: f32) -> Detection {
        Detection {
            bbox: [l, t, l + s, t + s],
            keypoints: [[l + s / 2.0, t + s / 2.0]; 6],
            score,
        }
    }

    #[test]
    fn anchors_match_blazeface_layout() {
        let a = layer_anchors(16, 2);
        assert_eq!(a.len(), 512);
        assert_eq!((a[0].cx, a[0].cy), (0.5 / 16.0, 0.5 / 16.0));
        assert_eq!(a[2].cx, 1.5 / 16.0);
        assert_eq!(layer_anchors(8, 6).len(), 384);
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_separate_faces() {
        let out = weighted_nms(
            vec![
                det(0.0, 0.0, 10.0, 0.9),
                det(1.0, 0.0, 10.0, 0.9),
                det(50.0, 50.0, 10.0, 0.6),
            ],
            0.3,
        );
        assert_eq!(out.len(), 2);
        assert!((out[0].bbox[0] - 0.5).abs() < 1e-5, "{:?}", out[0]);
        assert_eq!(out[1].score, 0.6);
    }

    #[test]
    fn iou_of_disjoint_and_identical_boxes() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[3.0, 3.0, 4.0, 4.0]), 0.0);
    }
}
