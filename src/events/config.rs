//! The `[events]` section: bus queues, where servers listen, client limits, LSL outlets.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Event bus and sinks (`--sink`): queue sizes, where servers listen, client limits, LSL outlets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Address server sinks given a bare port listen on; "0.0.0.0" exposes them to the network.
    pub bind: String,
    /// Bearer token TCP/WebSocket clients must present; empty = none (prefer `--token`/AULLM_EVENTS_TOKEN).
    pub token: String,
    /// Events queued between the bus and each sink; a full queue drops (and counts) the event.
    pub queue: usize,
    /// Events queued per server client; a client this far behind is dropped (and counted).
    pub client_queue: usize,
    /// A socket write blocked this long drops the client as too slow, ms.
    pub write_timeout_ms: u64,
    /// Time a new client has to authenticate or finish the WebSocket handshake, ms.
    pub auth_timeout_ms: u64,
    /// Seconds of samples an LSL outlet keeps for inlets that fall behind.
    pub lsl_max_buffered_s: i32,
    /// At the end of a run, LSL outlets with inlets stay up this long so the last samples arrive, ms.
    pub lsl_linger_ms: u64,
}

impl EventsConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.bind.parse::<std::net::IpAddr>().is_err() {
            bail!(
                "events.bind = {:?}: expected an IP address such as 127.0.0.1 or 0.0.0.0",
                self.bind
            );
        }
        if self.queue == 0 || self.client_queue == 0 {
            bail!("events.queue and events.client_queue must be at least 1");
        }
        if self.lsl_max_buffered_s < 1 {
            bail!("events.lsl_max_buffered_s must be at least 1");
        }
        Ok(())
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            token: String::new(),
            queue: 4096,
            client_queue: 1024,
            write_timeout_ms: 2000,
            auth_timeout_ms: 5000,
            lsl_max_buffered_s: 360,
            lsl_linger_ms: 500,
        }
    }
}
