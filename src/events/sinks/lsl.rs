//! Lab Streaming Layer output: a marker stream (type "Markers", one string channel) carrying each
//! event's JSON and a numeric stream (type "AU", one float32 channel per AU) of its probabilities,
//! both irregular-rate and time-stamped with the apex frame's capture time on LSL's clock.

use crate::events::clock::LslClock;
use crate::events::lsl_ffi::{ChannelFormat, LslLib, Outlet, StreamSpec};
use crate::events::sink::{Encoded, Sink, SinkOptions};
use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::sync::Arc;
use std::time::Duration;

/// The LSL sink: outlets `NAME` (markers) and `NAME_AU` (probabilities).
pub struct LslSink {
    lib: Arc<LslLib>,
    markers: Option<Outlet>,
    numeric: Option<Outlet>,
    aus: Vec<String>,
    clock: LslClock,
    linger: Duration,
    values: Vec<f32>,
}

impl LslSink {
    /// Creates both outlets; `opts.aus` names the numeric channels (at least one).
    pub fn open(lib: Arc<LslLib>, name: &str, opts: &SinkOptions, clock: LslClock) -> Result<Self> {
        if opts.aus.is_empty() {
            bail!("lsl:{name}: the AU list is empty (the numeric stream needs one channel per AU)");
        }
        let markers = lib
            .outlet(&StreamSpec {
                name,
                kind: "Markers",
                format: ChannelFormat::String,
                channels: 1,
                labels: &[],
                source_id: &format!("aullm:{name}:markers"),
                max_buffered_s: opts.lsl_max_buffered_s,
            })
            .with_context(|| format!("lsl:{name}: marker outlet"))?;
        let numeric = lib
            .outlet(&StreamSpec {
                name: &format!("{name}_AU"),
                kind: "AU",
                format: ChannelFormat::Float32,
                channels: opts.aus.len(),
                labels: &opts.aus,
                source_id: &format!("aullm:{name}:au"),
                max_buffered_s: opts.lsl_max_buffered_s,
            })
            .with_context(|| format!("lsl:{name}: AU outlet"));
        let numeric = match numeric {
            Ok(n) => n,
            Err(e) => {
                lib.destroy(markers);
                return Err(e);
            }
        };
        Ok(Self {
            lib,
            markers: Some(markers),
            numeric: Some(numeric),
            aus: opts.aus.clone(),
            clock,
            linger: opts.lsl_linger,
            values: vec![f32::NAN; opts.aus.len()],
        })
    }

    fn close(&mut self) {
        for o in [self.markers.take(), self.numeric.take()]
            .into_iter()
            .flatten()
        {
            self.lib.destroy(o);
        }
    }
}

impl Sink for LslSink {
    fn deliver(&mut self, ev: &Arc<Encoded>) -> Result<()> {
        // Back-dated to the apex capture: consumers align it with their other streams' samples.
        let ts = self.clock.lsl_s(ev.event.apex.mono_ns);
        let text = CString::new(ev.json.as_str()).context("event JSON contains NUL")?;
        let (Some(markers), Some(numeric)) = (&self.markers, &self.numeric) else {
            bail!("LSL outlets already closed");
        };
        self.lib.push_string(markers, &text, ts)?;
        // Channels follow the configured AU order; an AU the event lacks is NaN.
        for (v, au) in self.values.iter_mut().zip(&self.aus) {
            *v = ev
                .event
                .aus
                .iter()
                .find(|a| &a.au == au)
                .map_or(f32::NAN, |a| a.probability);
        }
        self.lib.push_floats(numeric, &self.values, ts)
    }

    fn finish(&mut self) -> Result<()> {
        // liblsl has no "delivered" acknowledgement: keep outlets up briefly when inlets listen.
        let listened = [&self.markers, &self.numeric]
            .into_iter()
            .flatten()
            .any(|o| self.lib.have_consumers(o));
        if listened {
            std::thread::sleep(self.linger);
        }
        self.close();
        Ok(())
    }
}

impl Drop for LslSink {
    fn drop(&mut self) {
        self.close();
    }
}
