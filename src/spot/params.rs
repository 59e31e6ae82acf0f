//! The `[spot]` configuration section. Its defaults are calibration/spotting.toml (embedded), which
//! records how each value was chosen; a config file or `--set spot.KEY=VALUE` overrides single keys.

use anyhow::{Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

/// The calibrated spotting parameters, with their provenance in comments.
pub const CALIBRATION_TOML: &str = include_str!("../../calibration/spotting.toml");

/// Spotting parameters (see calibration/spotting.toml for what each one does and where it came from).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    /// Flow lag in seconds: flow between frame t and t−k, k = round(lag_s × fps).
    pub lag_s: f64,
    /// Running window (s) of the adaptive threshold.
    pub window_s: f64,
    /// Threshold = running median + threshold_mads × 1.4826 × MAD.
    pub threshold_mads: f64,
    /// Lowest threshold, crop pixels.
    pub min_threshold_px: f64,
    /// Onset/offset at this fraction of the apex height above the baseline.
    pub edge_fraction: f64,
    /// Peaks closer than this (s) merge; also the wait before an interval is emitted.
    pub min_distance_s: f64,
    /// Micro-expressions are shorter than this (s); longer intervals are macro.
    pub micro_max_s: f64,
    /// Shortest interval kept (s).
    pub min_duration_s: f64,
    /// Longest interval (s): an event open this long is closed.
    pub max_duration_s: f64,
    /// Eye-led downward motion above this (px) is a blink and is not emitted; 0 disables.
    pub blink_px: f64,
    /// A brow-led event is a blink when both eyes moved down by more than `blink_px` and by at least
    /// this fraction of the brow's downward motion.
    pub blink_brow_ratio: f64,
    /// A brow-led event no longer than this (s) during which both eyes moved down by more than
    /// `blink_px` is a blink whatever the brow did (lids close and reopen fast); 0 disables.
    pub blink_max_s: f64,
    /// Mouth- or chin-led events with the jaw dropping by more than this (px) are speech and are
    /// not emitted; 0 disables.
    pub jaw_px: f64,
    /// Head (nose) motion above this (px) is a jump of the crops (the tracker re-anchored), not a
    /// movement: the spotter restarts its history and drops an open event; 0 disables.
    pub rebase_px: f64,
    /// During an event, a region moving this many times as far as the head means the expression
    /// dragged the crop (no restart); 0 disables.
    pub rebase_drag_ratio: f64,
    /// "both", "micro" or "macro".
    pub emit: String,
    /// DIS optical flow finest pyramid scale (0 = full resolution).
    pub dis_finest_scale: i32,
    /// DIS patch stride in pixels (the preset's is 4); larger is cheaper and coarser.
    pub dis_patch_stride: i32,
    /// Flow is measured on every N-th frame (1 = all; 0 = from the frame rate, see
    /// [`flow_every_at`]); decisions keep whole-frame indices, and the camera path does not
    /// decode or track the frames in between.
    pub flow_every: u32,
    /// How residual head motion is removed from region motion: "nose" (the nose region's
    /// translation) or "similarity" (a robust fit over the face: translation, rotation, scale).
    pub head_model: String,
    /// How region motion is measured: "dis" (dense flow averaged per region) or "lk" (one
    /// Lucas–Kanade translation fitted per region).
    pub motion: String,
    /// The signal must stay over the threshold this long (s) before an event opens.
    pub confirm_s: f64,
    /// ... counted within the latest confirm_window_s (s; at least confirm_s): samples below the
    /// threshold in between are allowed; at confirm_s or less, the samples must be consecutive.
    pub confirm_window_s: f64,
    /// Lucas–Kanade windows: each region grown by this many pixels (brows not downwards).
    pub lk_margin_px: usize,
    /// Lucas–Kanade window of the nose (the head reference): grown by this many pixels.
    pub lk_reference_margin_px: usize,
    /// A mouth- or chin-led event whose mouth corners moved apart by more than this (px, the mean
    /// of both corners' outward motion) is a smile, never speech; 0 disables.
    pub smile_px: f64,
    /// A brow- or eye-led event moving up is the nose window moving down (speech drags it), not an
    /// expression, when at its apex every brow and eye region rose by at least this fraction of
    /// the highest; 0 disables.
    pub uniform_rise: f64,
    /// A frame after this long (s) without motion over the threshold is a rest frame, and an open
    /// event also ends when the regions it follows are back at the latest rest frame (its own
    /// reference may have been pinned mid-movement); 0 disables.
    pub rest_s: f64,
}

impl Default for SpotConfig {
    fn default() -> Self {
        // The embedded file is part of the build; a unit test parses and validates it.
        Self::deserialize(calibration_table())
            .expect("calibration/spotting.toml is a complete [spot] table")
    }
}

/// The `[spot]` table of the embedded calibration file.
fn calibration_table() -> toml::Value {
    let mut t: toml::Table = toml::from_str(CALIBRATION_TOML).unwrap_or_default();
    t.remove("spot")
        .unwrap_or(toml::Value::Table(toml::Table::new()))
}

/// Deserializes a (possibly partial) `[spot]` table over the calibrated values.
pub fn deserialize_over_calibration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<SpotConfig, D::Error> {
    let given = toml::Table::deserialize(d)?;
    let mut base = match calibration_table() {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    };
    base.extend(given);
    // The inner path names the key (`threshold_mads`), which the outer deserializer cannot see.
    serde_path_to_error::deserialize(toml::Value::Table(base)).map_err(|e| {
        let key = e.path().to_string();
        serde::de::Error::custom(format!("spot.{key}: {}", e.inner().message()))
    })
}

/// Which intervals are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Micro and macro, labelled.
    Both,
    /// Micro-expressions only.
    Micro,
    /// Macro-expressions only.
    Macro,
}

impl SpotConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f64| -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("spot.{name} = {v}: expected a positive number");
            }
            Ok(())
        };
        pos("lag_s", self.lag_s)?;
        pos("window_s", self.window_s)?;
        pos("threshold_mads", self.threshold_mads)?;
        pos("micro_max_s", self.micro_max_s)?;
        pos("max_duration_s", self.max_duration_s)?;
        if !(self.min_threshold_px.is_finite() && self.min_threshold_px >= 0.0) {
            bail!(
                "spot.min_threshold_px = {}: expected >= 0",
                self.min_threshold_px
            );
        }
        if !(self.edge_fraction > 0.0 && self.edge_fraction < 1.0) {
            bail!(
                "spot.edge_fraction = {}: expected 0 < f < 1",
                self.edge_fraction
            );
        }
        // Intervals are decided min_distance_s after their offset: below 2k keeps the latency rule.
        if !(self.min_distance_s.is_finite()
            && self.min_distance_s >= 0.0
            && self.min_distance_s < 2.0 * self.lag_s)
        {
            bail!(
                "spot.min_distance_s = {}: expected 0 <= min_distance_s < 2 x spot.lag_s ({})",
                self.min_distance_s,
                self.lag_s
            );
        }
        if !(self.min_duration_s.is_finite()
            && self.min_duration_s >= 0.0
            && self.min_duration_s < self.max_duration_s)
        {
            bail!(
                "spot.min_duration_s = {}: expected 0 <= min_duration_s < max_duration_s ({})",
                self.min_duration_s,
                self.max_duration_s
            );
        }
        if !(self.blink_px.is_finite() && self.blink_px >= 0.0) {
            bail!(
                "spot.blink_px = {}: expected >= 0 (0 disables the blink rule)",
                self.blink_px
            );
        }
        if !(self.jaw_px.is_finite() && self.jaw_px >= 0.0) {
            bail!(
                "spot.jaw_px = {}: expected >= 0 (0 disables the speech rule)",
                self.jaw_px
            );
        }
        if !(self.rebase_px.is_finite() && self.rebase_px >= 0.0) {
            bail!(
                "spot.rebase_px = {}: expected >= 0 (0 disables re-basing)",
                self.rebase_px
            );
        }
        if self.window_s < 4.0 * self.lag_s {
            bail!(
                "spot.window_s = {}: expected at least 4 x spot.lag_s ({})",
                self.window_s,
                self.lag_s
            );
        }
        if !(0..=4).contains(&self.dis_finest_scale) {
            bail!(
                "spot.dis_finest_scale = {}: expected 0..=4",
                self.dis_finest_scale
            );
        }
        if !(0..=4).contains(&self.flow_every) {
            bail!(
                "spot.flow_every = {}: expected 1..=4, or 0 for every ⌊fps / {AUTO_RATE_HZ}⌋-th frame",
                self.flow_every
            );
        }
        if !(1..=8).contains(&self.dis_patch_stride) {
            bail!(
                "spot.dis_patch_stride = {}: expected 1..=8 (the patch is 8 pixels)",
                self.dis_patch_stride
            );
        }
        self.emit_kind()?;
        self.head_model()?;
        if self.motion()? == super::flow::Motion::Lk
            && self.head_model()? != super::flow::HeadModel::Nose
        {
            bail!(
                "spot.head_model = {:?} needs spot.motion = \"dis\" (the similarity is fitted to a dense flow field)",
                self.head_model
            );
        }
        let within_lag = |name: &str, v: f64| -> Result<()> {
            if !(v.is_finite() && v >= 0.0 && v < self.lag_s) {
                bail!(
                    "spot.{name} = {v}: expected 0 <= {name} < spot.lag_s ({})",
                    self.lag_s
                );
            }
            Ok(())
        };
        within_lag("confirm_s", self.confirm_s)?;
        let ratio = |name: &str, v: f64| -> Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                bail!("spot.{name} = {v}: expected a ratio >= 0");
            }
            Ok(())
        };
        ratio("rebase_drag_ratio", self.rebase_drag_ratio)?;
        ratio("blink_brow_ratio", self.blink_brow_ratio)?;
        if !(self.blink_max_s.is_finite() && (0.0..=1.0).contains(&self.blink_max_s)) {
            bail!(
                "spot.blink_max_s = {}: expected 0..=1 (0 disables)",
                self.blink_max_s
            );
        }
        within_lag("confirm_window_s", self.confirm_window_s)?;
        if !(self.smile_px.is_finite() && (0.0..=50.0).contains(&self.smile_px)) {
            bail!(
                "spot.smile_px = {}: expected 0..=50 crop pixels (0 disables)",
                self.smile_px
            );
        }
        if !(self.uniform_rise.is_finite() && (0.0..=1.0).contains(&self.uniform_rise)) {
            bail!(
                "spot.uniform_rise = {}: expected 0..=1 (0 disables)",
                self.uniform_rise
            );
        }
        if !(self.rest_s.is_finite() && (0.0..=10.0).contains(&self.rest_s)) {
            bail!(
                "spot.rest_s = {}: expected 0..=10 seconds (0 disables)",
                self.rest_s
            );
        }
        if self.lk_margin_px > 16 {
            bail!("spot.lk_margin_px = {}: expected 0..=16", self.lk_margin_px);
        }
        if self.lk_reference_margin_px > 16 {
            bail!(
                "spot.lk_reference_margin_px = {}: expected 0..=16",
                self.lk_reference_margin_px
            );
        }
        Ok(())
    }

    /// The parsed `motion` key.
    pub fn motion(&self) -> Result<super::flow::Motion> {
        Ok(match self.motion.as_str() {
            "dis" => super::flow::Motion::Dis,
            "lk" => super::flow::Motion::Lk,
            other => bail!("spot.motion = {other:?}: expected \"dis\" or \"lk\""),
        })
    }

    /// The parsed `head_model` key.
    pub fn head_model(&self) -> Result<super::flow::HeadModel> {
        Ok(match self.head_model.as_str() {
            "nose" => super::flow::HeadModel::Nose,
            "similarity" => super::flow::HeadModel::Similarity,
            other => {
                bail!("spot.head_model = {other:?}: expected \"nose\" or \"similarity\"")
            }
        })
    }

    /// The parsed `emit` key.
    pub fn emit_kind(&self) -> Result<Emit> {
        Ok(match self.emit.as_str() {
            "both" => Emit::Both,
            "micro" => Emit::Micro,
            "macro" => Emit::Macro,
            other => bail!("spot.emit = {other:?}: expected \"both\", \"micro\" or \"macro\""),
        })
    }

    /// The flow lag k in frames at `fps` (at least 1).
    pub fn lag_frames(&self, fps: f64) -> usize {
        frames(self.lag_s, fps).max(1)
    }

    /// Flow is measured on every this-many-th frame at `fps` (see [`flow_every_at`]).
    pub fn every(&self, fps: f64) -> u32 {
        flow_every_at(self.flow_every, fps)
    }
}

/// The spotter reads at least this many frames per second when `spot.flow_every` is 0: its
/// parameters were chosen on 200 fps video read every other frame.
pub const AUTO_RATE_HZ: f64 = 90.0;

/// The frame step of a `spot.flow_every` setting at `fps`: the setting itself, or for 0 the
/// largest step that still reads [`AUTO_RATE_HZ`] frames per second (1 at 30–179 fps, 2 at
/// 180–269 fps, at most 4).
pub fn flow_every_at(setting: u32, fps: f64) -> u32 {
    if setting > 0 {
        return setting;
    }
    let n = (fps / AUTO_RATE_HZ).floor();
    if n.is_finite() {
        n.clamp(1.0, 4.0) as u32
    } else {
        1
    }
}

/// `seconds × fps` rounded to whole frames.
pub fn frames(seconds: f64, fps: f64) -> usize {
    (seconds * fps).round().max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_file_parses_completely() {
        let t: toml::Table = toml::from_str(CALIBRATION_TOML).unwrap();
        let strict = SpotConfig::deserialize(t["spot"].clone()).unwrap();
        strict.validate().unwrap();
        assert_eq!(strict, SpotConfig::default());
        assert_eq!(strict.lag_frames(200.0), 20);
        assert_eq!(strict.lag_frames(100.0), 10);
    }

    #[test]
    fn flow_every_from_the_rate_reads_at_least_90_frames_per_second() {
        let at = |fps| flow_every_at(0, fps);
        assert_eq!([at(25.0), at(179.0), at(180.0), at(200.0)], [1, 1, 2, 2]);
        assert_eq!([at(270.0), at(1000.0), at(f64::NAN)], [3, 4, 1]);
        assert_eq!(flow_every_at(3, 30.0), 3, "a given step is kept");
        let mut c = SpotConfig {
            flow_every: 0,
            ..SpotConfig::default()
        };
        c.validate().unwrap();
        c.flow_every = 5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("spot.flow_every")
        );
    }
}
