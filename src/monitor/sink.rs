//! The monitor as one more sink on the event bus: it keeps each published event for the page.

use super::Monitor;
use crate::events::sink::{Encoded, Sink};
use anyhow::Result;
use std::sync::Arc;

/// Hands every event to the monitor.
pub struct MonitorSink(pub Arc<Monitor>);

impl Sink for MonitorSink {
    fn deliver(&mut self, ev: &Arc<Encoded>) -> Result<()> {
        self.0.event(&ev.json);
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
