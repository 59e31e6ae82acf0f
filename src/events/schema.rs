//! The AU event record (`"schema": "aullm.au_event/1"`) and its validating parser.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;

/// The schema tag every event carries; bumped when a field changes meaning or is removed.
pub const SCHEMA: &str = "aullm.au_event/1";

/// The `schema` field: serialises as [`SCHEMA`] and refuses any other value when parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaV1;

impl Serialize for SchemaV1 {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(SCHEMA)
    }
}

impl<'de> Deserialize<'de> for SchemaV1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == SCHEMA {
            Ok(SchemaV1)
        } else {
            Err(serde::de::Error::custom(format!(
                "schema {s:?} is not {SCHEMA:?} (this build reads only version 1)"
            )))
        }
    }
}

/// Micro- or macro-expression, as decided by the spotter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpressionKind {
    /// Shorter than 500 ms (MEGC convention).
    Micro,
    /// 500 ms or longer.
    Macro,
}

/// One instant of an interval on every clock a consumer may want.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePoint {
    /// Frame sequence number in the source.
    pub frame: u64,
    /// Presentation time in seconds from the stream's first frame.
    pub stream_s: f64,
    /// Host wall-clock (CLOCK_REALTIME) time of the frame, ns since the Unix epoch.
    pub host_ns: i64,
    /// CLOCK_MONOTONIC capture time of the frame, ns.
    pub mono_ns: i64,
    /// The capture time on Lab Streaming Layer's clock (`lsl_local_clock()`), seconds.
    pub lsl_s: f64,
}

impl TimePoint {
    /// A time point whose `lsl_s` is derived from `mono_ns` by `clock`.
    pub fn at(
        frame: u64,
        stream_s: f64,
        host_ns: i64,
        mono_ns: i64,
        clock: &super::clock::LslClock,
    ) -> Self {
        Self {
            frame,
            stream_s,
            host_ns,
            mono_ns,
            lsl_s: clock.lsl_s(mono_ns),
        }
    }
}

/// One AU's probability and the model's decision for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuDecision {
    /// AU label, e.g. "AU12" (a side may follow: "AU12L").
    pub au: String,
    /// Probability in [0, 1].
    pub probability: f32,
    /// The model's threshold for this AU (calibrated without test data).
    pub threshold: f32,
    /// The decision: probability >= threshold.
    pub present: bool,
}

/// Which model produced the event and where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Model identifier (name and version or checkpoint hash).
    pub id: String,
    /// Execution provider of the front-end, e.g. "cpu" or "cuda".
    pub execution_provider: String,
}

/// A spotted expression interval with its AU probabilities: the unit every sink carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuEvent {
    /// Always "aullm.au_event/1".
    pub schema: SchemaV1,
    /// The source as given by the user (file path, URI, pipeline).
    pub source: String,
    /// Face track id within the source.
    pub face_id: u32,
    /// Event number within the run, from 0, without gaps as produced (a gap seen by a consumer is a loss).
    pub seq: u64,
    /// Micro or macro expression.
    pub kind: ExpressionKind,
    /// First frame of the interval.
    pub onset: TimePoint,
    /// Frame of maximum intensity.
    pub apex: TimePoint,
    /// Last frame of the interval (inclusive).
    pub offset: TimePoint,
    /// Offset minus onset presentation time, ms.
    pub duration_ms: f64,
    /// Apex motion over the spotter's adaptive threshold (> 1 means above it).
    pub spotting_score: f32,
    /// Per-AU probabilities and decisions, in the model's AU order.
    pub aus: Vec<AuDecision>,
    /// Model identity and execution provider.
    pub model: ModelInfo,
    /// Capture of the offset frame to publication of the event, ms.
    pub latency_ms: f64,
}

impl AuEvent {
    /// Parses one JSON event and checks it ([`AuEvent::validate`]).
    pub fn from_json(text: &str) -> Result<AuEvent> {
        let ev: AuEvent = serde_json::from_str(text).context("not an aullm.au_event/1 object")?;
        ev.validate()?;
        Ok(ev)
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string(self).expect("AuEvent serialises")
    }

    /// Checks what serde cannot: ordering of the interval, finite numbers, ranges, unique AUs.
    pub fn validate(&self) -> Result<()> {
        let (on, ap, off) = (&self.onset, &self.apex, &self.offset);
        if !(on.frame <= ap.frame && ap.frame <= off.frame) {
            bail!(
                "event seq {}: frames out of order: onset {} apex {} offset {}",
                self.seq,
                on.frame,
                ap.frame,
                off.frame
            );
        }
        for (name, t) in [("onset", on), ("apex", ap), ("offset", off)] {
            if !t.stream_s.is_finite() || !t.lsl_s.is_finite() {
                bail!("event seq {}: {name} time is not finite", self.seq);
            }
        }
        if !(on.stream_s <= ap.stream_s && ap.stream_s <= off.stream_s) {
            bail!("event seq {}: stream times out of order", self.seq);
        }
        if !(self.duration_ms.is_finite() && self.duration_ms >= 0.0) {
            bail!(
                "event seq {}: duration_ms {} is not >= 0",
                self.seq,
                self.duration_ms
            );
        }
        if !(self.latency_ms.is_finite() && self.latency_ms >= 0.0) {
            bail!(
                "event seq {}: latency_ms {} is not >= 0",
                self.seq,
                self.latency_ms
            );
        }
        if !(self.spotting_score.is_finite() && self.spotting_score >= 0.0) {
            bail!(
                "event seq {}: spotting_score {} is not a finite number >= 0",
                self.seq,
                self.spotting_score
            );
        }
        let mut seen = HashSet::new();
        for a in &self.aus {
            if !a.au.starts_with("AU") || a.au.len() < 3 {
                bail!(
                    "event seq {}: AU label {:?} does not start with \"AU\"",
                    self.seq,
                    a.au
                );
            }
            if !seen.insert(a.au.as_str()) {
                bail!("event seq {}: {} listed twice", self.seq, a.au);
            }
            for (what, v) in [("probability", a.probability), ("threshold", a.threshold)] {
                if !(0.0..=1.0).contains(&v) {
                    bail!(
                        "event seq {}: {} {what} {v} is outside [0, 1]",
                        self.seq,
                        a.au
                    );
                }
            }
        }
        if self.model.id.is_empty() {
            bail!("event seq {}: model.id is empty", self.seq);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid event for tests, varied by `seq`.
    pub(crate) fn sample(seq: u64) -> AuEvent {
        let clock = crate::events::clock::LslClock::monotonic();
        let t = |frame: u64| {
            TimePoint::at(
                frame,
                frame as f64 / 200.0,
                1_700_000_000_000_000_000 + frame as i64 * 5_000_000,
                10_000_000_000 + frame as i64 * 5_000_000,
                &clock,
            )
        };
        let f0 = 100 + seq * 50;
        AuEvent {
            schema: SchemaV1,
            source: "cam0".into(),
            face_id: 1,
            seq,
            kind: ExpressionKind::Micro,
            onset: t(f0),
            apex: t(f0 + 12),
            offset: t(f0 + 30),
            duration_ms: 150.0,
            spotting_score: 0.8,
            aus: vec![
                AuDecision {
                    au: "AU4".into(),
                    probability: 0.91,
                    threshold: 0.5,
                    present: true,
                },
                AuDecision {
                    au: "AU12".into(),
                    probability: 0.125,
                    threshold: 0.4,
                    present: false,
                },
            ],
            model: ModelInfo {
                id: "aullm-test".into(),
                execution_provider: "cpu".into(),
            },
            latency_ms: 42.5,
        }
    }

    #[test]
    fn round_trips_and_carries_the_schema_tag() {
        let ev = sample(3);
        let json = ev.to_json();
        assert!(
            json.starts_with(r#"{"schema":"aullm.au_event/1","#),
            "{json}"
        );
        assert_eq!(AuEvent::from_json(&json).unwrap(), ev);
    }

    #[test]
    fn rejects_other_versions_unknown_fields_and_bad_values() {
        let json = sample(0).to_json();
        let v2 = json.replace("au_event/1", "au_event/2");
        assert!(format!("{:#}", AuEvent::from_json(&v2).unwrap_err()).contains("version 1"));
        let extra = json.replacen('{', r#"{"extra":1,"#, 1);
        assert!(format!("{:#}", AuEvent::from_json(&extra).unwrap_err()).contains("extra"));
        let mut ev = sample(0);
        ev.aus[0].probability = 1.5;
        assert!(
            ev.validate()
                .unwrap_err()
                .to_string()
                .contains("AU4 probability")
        );
        let mut ev = sample(0);
        ev.apex.frame = ev.offset.frame + 1;
        assert!(
            ev.validate()
                .unwrap_err()
                .to_string()
                .contains("out of order")
        );
        let mut ev = sample(0);
        ev.aus[1].au = "AU4".into();
        assert!(ev.validate().unwrap_err().to_string().contains("twice"));
    }
}
