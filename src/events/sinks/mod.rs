//! The sinks: a JSON-lines file or stdout, a JSON-lines TCP server, a WebSocket server, LSL outlets.

pub mod jsonl;
pub mod lsl;
pub(crate) mod server;
pub mod tcp;
pub mod ws;
