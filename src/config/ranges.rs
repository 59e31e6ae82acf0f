//! The accepted range of every numeric configuration key, checked when a configuration loads.
//!
//! One table for every section: a value outside its range is an error naming the key, so that
//! nothing is ever sized from an absurd number (`stream.ring_s=1e9`, `reasoner.threads=100000`).
//! Cross-key rules (`spot.min_duration_s < spot.max_duration_s`, odd kernels) stay in each
//! section's `validate`. `aullm config ranges` prints this table; README's copy is that output,
//! and a test fails when a numeric key has no row here.

use super::Config;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// The inclusive range one numeric key accepts (array keys: every element).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Dotted key, e.g. `face.region_scale`.
    pub key: &'static str,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// What the bounds protect or mean.
    pub why: &'static str,
}

const fn r(key: &'static str, min: f64, max: f64, why: &'static str) -> Range {
    Range { key, min, max, why }
}

/// Largest integer TOML can hold (seeds).
const TOML_INT_MAX: f64 = i64::MAX as f64;

/// Every numeric key and its range.
pub const RANGES: &[Range] = &[
    r(
        "ingest.queue_frames",
        1.0,
        20_000.0,
        "frames held in memory; 20,000 is 100 s at 200 fps",
    ),
    r(
        "ingest.gray16_bits",
        8.0,
        16.0,
        "significant bits of a 16-bit camera",
    ),
    r("ingest.error_drain_s", 0.0, 60.0, "seconds"),
    r(
        "ingest.gap_tolerance",
        1.0,
        1000.0,
        "frame periods; below 1 every jitter would count as a drop",
    ),
    r("face.score_threshold", 0.01, 0.99, "a detector probability"),
    r("face.nms_iou", 0.01, 1.0, "an overlap ratio"),
    r("face.detect_every", 1.0, 10_000.0, "frames"),
    r("face.max_faces", 1.0, 32.0, "tracks kept per frame"),
    r(
        "face.intra_threads",
        0.0,
        256.0,
        "ONNX Runtime threads; 0 = its default",
    ),
    r("face.match_iou", 0.01, 1.0, "an overlap ratio"),
    r("face.lost_after", 1.0, 10_000.0, "frames"),
    r(
        "face.region_scale",
        1.0,
        5.0,
        "multiples of the face box; below 1 the region cuts the face",
    ),
    r("face.gray_tint", 0.0, 4.0, "per-channel weights"),
    r("align.size", 32.0, 1024.0, "pixels"),
    r("align.eye_right", 0.0, 1.0, "fractions of the crop"),
    r("align.eye_left", 0.0, 1.0, "fractions of the crop"),
    r("align.mouth", 0.0, 1.0, "fractions of the crop"),
    r("align.register_region", 0.02, 0.98, "fractions of the crop"),
    r("align.refine_iters", 0.0, 50.0, "iterations per frame"),
    r("align.reference_frames", 1.0, 1000.0, "frames"),
    r("align.reanchor_px", 0.1, 100.0, "crop pixels"),
    r("align.lost_residual", 0.0, 10.0, "normalised RMS"),
    r("frontend.frames", 1.0, 64.0, "frames per clip"),
    r("frontend.size", 32.0, 512.0, "pixels (a multiple of 16)"),
    r(
        "frontend.channels",
        1.0,
        1024.0,
        "channels per backbone stage",
    ),
    r("frontend.temporal_kernel", 1.0, 15.0, "frames (odd)"),
    r("frontend.width", 1.0, 8192.0, "token width"),
    r("frontend.node_dim", 1.0, 4096.0, "graph node width"),
    r("frontend.gcn_layers", 1.0, 16.0, "layers"),
    r("frontend.head_hidden", 1.0, 8192.0, "units"),
    r("frontend.aus", 1.0, 99.0, "FACS AU numbers"),
    r("frontend.alpha_init", 0.001, 0.999, "a mixing weight"),
    r("frontend.gamma_init", -10.0, 10.0, "a residual scale"),
    r("frontend.intra_threads", 1.0, 256.0, "ONNX Runtime threads"),
    r("reasoner.num_aus", 1.0, 64.0, "AUs"),
    r("reasoner.seed", 0.0, TOML_INT_MAX, "any"),
    r("reasoner.threads", 0.0, 1024.0, "0 = every core"),
    r("reasoner.lora.rank", 1.0, 1024.0, "LoRA rank"),
    r(
        "reasoner.lora.alpha",
        0.001,
        10_000.0,
        "LoRA scale numerator",
    ),
    r(
        "train.epochs",
        0.0,
        100_000.0,
        "passes; 0 = thresholds only",
    ),
    r("train.batch_size", 1.0, 4096.0, "clips per step"),
    r("train.lr_visual", 0.0, 1.0, "learning rate"),
    r("train.lr_lora", 0.0, 1.0, "learning rate"),
    r("train.weight_decay", 0.0, 1.0, "decoupled decay"),
    r("train.warmup_steps", 0.0, 1_000_000.0, "steps"),
    r("train.grad_clip", 0.0, 1e6, "gradient norm; 0 disables"),
    r("train.seed", 0.0, TOML_INT_MAX, "any"),
    r("train.asl_gamma_neg", 0.0, 20.0, "exponent"),
    r("train.asl_clip", 0.0, 0.5, "probability margin"),
    r("train.lambda_ccr", 0.0, 100.0, "loss weight"),
    r("train.lambda_inv", 0.0, 100.0, "loss weight"),
    r("train.lambda_delta", 0.0, 100.0, "loss weight"),
    r("train.crop_margin", 0.0, 64.0, "pixels"),
    r("train.temporal_jitter", 0.0, 64.0, "frames"),
    r(
        "train.val_fraction",
        0.0,
        0.89,
        "fraction of the training subjects",
    ),
    r("train.threads", 0.0, 1024.0, "0 = every core"),
    r(
        "train.max_clips",
        0.0,
        TOML_INT_MAX,
        "clips per fold; 0 = all",
    ),
    r("stream.clip_queue", 1.0, 100_000.0, "clips"),
    r("stream.max_batch", 1.0, 512.0, "clips per model call"),
    r(
        "stream.ring_s",
        0.5,
        60.0,
        "seconds of crops kept per face (memory)",
    ),
    r("events.queue", 1.0, 1_000_000.0, "events"),
    r("events.client_queue", 1.0, 1_000_000.0, "events per client"),
    r(
        "events.write_timeout_ms",
        10.0,
        600_000.0,
        "milliseconds; 0 would block a sink forever",
    ),
    r("events.auth_timeout_ms", 10.0, 600_000.0, "milliseconds"),
    r("events.lsl_max_buffered_s", 1.0, 3600.0, "seconds"),
    r("events.lsl_linger_ms", 0.0, 60_000.0, "milliseconds"),
    r("spot.lag_s", 0.01, 5.0, "seconds"),
    r("spot.window_s", 0.5, 120.0, "seconds"),
    r("spot.threshold_mads", 0.5, 1000.0, "noise spreads"),
    r("spot.min_threshold_px", 0.0, 50.0, "crop pixels"),
    r("spot.edge_fraction", 0.01, 0.99, "fraction of the peak"),
    r("spot.min_distance_s", 0.0, 10.0, "seconds"),
    r("spot.micro_max_s", 0.04, 10.0, "seconds"),
    r("spot.min_duration_s", 0.0, 60.0, "seconds"),
    r("spot.max_duration_s", 0.1, 60.0, "seconds"),
    r(
        "spot.blink_px",
        0.0,
        50.0,
        "crop pixels; 0 turns the blink rule off",
    ),
    r(
        "spot.jaw_px",
        0.0,
        50.0,
        "crop pixels; 0 turns the speech rule off",
    ),
    r("spot.rebase_px", 0.0, 100.0, "crop pixels"),
    r(
        "spot.rebase_drag_ratio",
        0.0,
        100.0,
        "region motion / head motion; 0: always restart",
    ),
    r("spot.dis_finest_scale", 0.0, 6.0, "pyramid level"),
    r("spot.dis_patch_stride", 1.0, 64.0, "pixels"),
    r(
        "spot.flow_every",
        0.0,
        4.0,
        "frames (0: from the frame rate)",
    ),
    r("spot.confirm_s", 0.0, 1.0, "seconds"),
    r(
        "spot.blink_brow_ratio",
        0.0,
        10.0,
        "eyes' downward motion / the brow's",
    ),
    r("spot.confirm_window_s", 0.0, 1.0, "seconds"),
    r("spot.blink_max_s", 0.0, 1.0, "seconds"),
    r("spot.lk_margin_px", 0.0, 16.0, "crop pixels"),
    r("spot.lk_reference_margin_px", 0.0, 16.0, "crop pixels"),
    r(
        "spot.smile_px",
        0.0,
        50.0,
        "crop pixels; 0 turns the smile exception off",
    ),
    r(
        "spot.uniform_rise",
        0.0,
        1.0,
        "lowest / highest rise of the brows and eyes; 0 turns the rule off",
    ),
    r("spot.rest_s", 0.0, 10.0, "seconds; 0 turns rest frames off"),
];

/// The row for `key`.
pub fn range_of(key: &str) -> Option<&'static Range> {
    RANGES.iter().find(|r| r.key == key)
}

/// Every leaf of `cfg` by dotted key (arrays whole).
pub fn leaves(cfg: &Config) -> BTreeMap<String, toml::Value> {
    fn walk(v: &toml::Value, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        walk(&v, "", &mut out);
    }
    out
}

/// The numbers a leaf holds (an array's elements), or none for text and flags.
fn numbers(v: &toml::Value) -> Vec<f64> {
    match v {
        toml::Value::Integer(i) => vec![*i as f64],
        toml::Value::Float(f) => vec![*f],
        toml::Value::Array(a) => a.iter().flat_map(numbers).collect(),
        _ => Vec::new(),
    }
}

/// Checks every numeric key of `cfg` against its range; the error names the key, the value and
/// the range.
pub fn check(cfg: &Config) -> Result<()> {
    for (key, value) in leaves(cfg) {
        let nums = numbers(&value);
        if nums.is_empty() {
            continue;
        }
        let Some(r) = range_of(&key) else {
            bail!("{key}: no documented range (a bug: add the key to config::ranges)");
        };
        for v in nums {
            if !(v.is_finite() && v >= r.min && v <= r.max) {
                bail!(
                    "{key} = {}: expected {} to {} ({})",
                    show(v),
                    show(r.min),
                    show(r.max),
                    r.why
                );
            }
        }
    }
    Ok(())
}

/// A bound as people write it (integers without a fraction, the TOML maximum by name).
fn show(v: f64) -> String {
    if v >= TOML_INT_MAX {
        "2^63-1".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        // f32 keys widen with noise (0.3 -> 0.30000001...): print the shortest f32 form.
        let short = format!("{}", v as f32);
        if short.parse::<f32>().map(f64::from) == Ok(v) {
            short
        } else {
            format!("{v}")
        }
    }
}

/// The table as Markdown (README's "Configuration ranges"), one row per key.
pub fn markdown() -> String {
    let mut s = String::from("| key | min | max | unit / why |\n|---|---|---|---|\n");
    for r in RANGES {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key,
            show(r.min),
            show(r.max),
            r.why
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_key_has_a_range_and_the_defaults_are_inside() {
        let cfg = Config::default();
        check(&cfg).unwrap();
        // Keys left out of the saved configuration at their default must be listed too.
        let mut all_keys = cfg.clone();
        all_keys.train.max_clips = 1;
        let numeric: Vec<String> = leaves(&all_keys)
            .into_iter()
            .filter(|(_, v)| !numbers(v).is_empty())
            .map(|(k, _)| k)
            .collect();
        for r in RANGES {
            assert!(
                numeric.iter().any(|k| k == r.key),
                "{} has a range but is no numeric key",
                r.key
            );
            assert!(r.min <= r.max, "{}", r.key);
        }
        assert_eq!(numeric.len(), RANGES.len(), "{numeric:?}");
    }

    #[test]
    fn out_of_range_values_name_key_value_and_range() {
        for (ov, key) in [
            ("reasoner.threads=100000", "reasoner.threads = 100000"),
            ("face.score_threshold=2", "face.score_threshold = 2"),
            ("face.region_scale=0", "face.region_scale = 0"),
            ("ingest.gap_tolerance=-5", "ingest.gap_tolerance = -5"),
            ("face.match_iou=5", "face.match_iou = 5"),
            ("events.write_timeout_ms=0", "events.write_timeout_ms = 0"),
            ("stream.ring_s=1e9", "stream.ring_s = 1000000000"),
            (
                "ingest.queue_frames=4000000000",
                "ingest.queue_frames = 4000000000",
            ),
            ("spot.threshold_mads=nan", "spot.threshold_mads = NaN"),
            (
                "align.register_region=[0.0, 0.2, 0.8, 0.7]",
                "align.register_region = 0",
            ),
        ] {
            let err = format!("{:#}", Config::load(None, &[ov.into()]).unwrap_err());
            assert!(err.contains(key), "{ov}: {err}");
            assert!(err.contains("expected"), "{ov}: {err}");
        }
    }

    #[test]
    fn the_markdown_table_has_a_row_per_key() {
        let md = markdown();
        assert_eq!(md.lines().count(), 2 + RANGES.len());
        assert!(md.contains("| `stream.ring_s` | 0.5 | 60 |"), "{md}");
        assert!(md.contains("| `face.nms_iou` | 0.01 | 1 |"), "{md}");
    }
}

#[cfg(test)]
mod readme {
    #[test]
    fn readme_lists_the_ranges_that_config_ranges_prints() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        assert!(
            readme.contains(&super::markdown()),
            "README's configuration ranges are out of date: paste `aullm config ranges`"
        );
    }
}
