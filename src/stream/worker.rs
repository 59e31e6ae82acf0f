//! The inference worker: takes the clips that are waiting (up to a batch), runs the model
//! (ONNX Runtime front-end + candle reasoner), and publishes one AU event per clip.

use super::clips::{ClipJob, FrameTimes};
use crate::clip::CropBox;
use crate::events::clock::LslClock;
use crate::events::schema::{AuDecision, AuEvent, ExpressionKind, ModelInfo, SchemaV1, TimePoint};
use crate::runtime::detector::Detector;
use crate::spot::IntervalKind;
use anyhow::Result;
use crossbeam_channel::Receiver;

/// What the worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// Events published.
    pub events: u64,
    /// Model calls.
    pub batches: u64,
    /// End-to-end latencies (offset frame capture → event published), ms.
    pub latencies_ms: Vec<f64>,
    /// Thread CPU seconds.
    pub cpu_s: f64,
    /// The error that stopped the worker, if any.
    pub error: Option<String>,
    /// Every event (when recording).
    pub kept: Vec<AuEvent>,
    /// Apex crop per event seq (when recording).
    pub apex_crops: std::collections::BTreeMap<u64, Vec<u8>>,
    /// The front-end's execution provider.
    pub provider: String,
}

/// Where events go and how they are labelled.
pub trait EventOut: Send {
    /// Publishes one event (never blocks the caller for long).
    fn publish(&mut self, ev: AuEvent);
    /// The clock that maps capture times to LSL time.
    fn clock(&self) -> LslClock;
}

/// How the worker groups clips into model calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Live: whatever is waiting, up to this many (a call never waits for more clips).
    Waiting(usize),
    /// A recording: always this many, in arrival order (the last call takes the rest). The
    /// model's floating-point sums depend on the batch shape, so grouping by what happened to be
    /// queued would make a recording's probabilities differ in the last digits from run to run.
    Fixed(usize),
}

impl Batching {
    fn size(self) -> usize {
        match self {
            Batching::Waiting(n) | Batching::Fixed(n) => n.max(1),
        }
    }
}

/// Runs until `jobs` is closed and drained.
#[allow(clippy::too_many_arguments)]
pub fn run(
    det: &mut Detector,
    jobs: Receiver<ClipJob>,
    out: &mut dyn EventOut,
    source: &str,
    batching: Batching,
    first_seq: &mut u64,
    record: bool,
    offline: bool,
) -> WorkerReport {
    let mut rep = WorkerReport {
        provider: det.execution_provider().to_string(),
        ..WorkerReport::default()
    };
    let clock = out.clock();
    let mut data = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < batching.size() {
            let next = match batching {
                Batching::Waiting(_) => jobs.try_recv().ok(),
                Batching::Fixed(_) => jobs.recv().ok(),
            };
            match next {
                Some(j) => batch.push(j),
                None => break,
            }
        }
        match infer(det, &batch, &mut data) {
            Ok(probs) => {
                rep.batches += 1;
                for (job, p) in batch.iter().zip(probs) {
                    let mut ev = event(det, job, &p, source, *first_seq, &clock);
                    if offline {
                        ev.latency_ms = 0.0; // no capture clock to measure against
                    }
                    *first_seq += 1;
                    rep.latencies_ms.push(ev.latency_ms);
                    if record {
                        rep.kept.push(ev.clone());
                        rep.apex_crops
                            .insert(ev.seq, job.clip.apex_frame().to_vec());
                    }
                    out.publish(ev);
                    rep.events += 1;
                }
            }
            Err(e) => {
                rep.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    rep.cpu_s = crate::clock::thread_cpu_s();
    rep
}

/// Probabilities for a batch of clips.
pub fn infer(det: &mut Detector, batch: &[ClipJob], data: &mut Vec<f32>) -> Result<Vec<Vec<f32>>> {
    data.clear();
    let cfg = det.config.clone();
    for job in batch {
        let all: Vec<usize> = (0..job.clip.frames()).collect();
        let bx = CropBox::centre(job.clip.size, cfg.train.crop_margin);
        job.clip.tensor_data(&all, &cfg.frontend, bx, false, data)?;
    }
    det.predict(data, batch.len())
}

/// The AU event of one clip.
pub fn event(
    det: &Detector,
    job: &ClipJob,
    probs: &[f32],
    source: &str,
    seq: u64,
    clock: &LslClock,
) -> AuEvent {
    let tp = |t: &FrameTimes| TimePoint::at(t.seq, t.stream_s, t.host_ns, t.mono_ns, clock);
    let [on, ap, off] = &job.times;
    let m = &det.manifest;
    let aus = m
        .aus
        .iter()
        .zip(probs)
        .zip(&m.thresholds)
        .map(|((au, &p), &t)| AuDecision {
            au: format!("AU{au}"),
            probability: p.clamp(0.0, 1.0),
            threshold: t,
            present: p >= t,
        })
        .collect();
    let now = crate::clock::mono_now_ns();
    AuEvent {
        schema: SchemaV1,
        source: source.to_string(),
        face_id: job.face_id,
        seq,
        kind: match job.interval.kind {
            IntervalKind::Micro => ExpressionKind::Micro,
            IntervalKind::Macro => ExpressionKind::Macro,
        },
        onset: tp(on),
        apex: tp(ap),
        offset: tp(off),
        duration_ms: ((off.stream_s - on.stream_s) * 1e3).max(0.0),
        spotting_score: job.interval.score,
        aus,
        model: ModelInfo {
            id: m.name.clone(),
            execution_provider: det.execution_provider().to_string(),
        },
        latency_ms: ((now - off.mono_ns) as f64 / 1e6).max(0.0),
    }
}
