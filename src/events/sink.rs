//! What a sink is: its command-line spec (`jsonl:PATH`, `tcp:ADDR`, `ws:ADDR`, `lsl:NAME`), the options
//! every sink shares, and the trait the bus drives.

use super::schema::AuEvent;
use anyhow::{Result, bail};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a server sink listens: a port on `SinkOptions::bind`, or an explicit address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `PORT`: listen on the configured bind address (127.0.0.1 unless `--bind`).
    Port(u16),
    /// `IP:PORT`: listen exactly there.
    Socket(SocketAddr),
}

impl ServerAddr {
    /// The socket address to bind, given the default bind address.
    pub fn resolve(&self, bind: IpAddr) -> SocketAddr {
        match self {
            ServerAddr::Port(p) => SocketAddr::new(bind, *p),
            ServerAddr::Socket(a) => *a,
        }
    }

    /// Parses `PORT`, `IP:PORT` or `localhost:PORT`; None when it is none of them.
    pub fn parse(value: &str) -> Option<ServerAddr> {
        if let Ok(port) = value.parse::<u16>() {
            return Some(ServerAddr::Port(port));
        }
        let v = value
            .strip_prefix("localhost:")
            .map_or(value.to_string(), |p| format!("127.0.0.1:{p}"));
        v.parse::<SocketAddr>().ok().map(ServerAddr::Socket)
    }
}

/// One `--sink` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// JSON lines to a file (`jsonl:PATH`) or standard output (`jsonl:-`).
    Jsonl(Option<PathBuf>),
    /// JSON-lines TCP server.
    Tcp(ServerAddr),
    /// WebSocket server (one text message per event).
    Ws(ServerAddr),
    /// Lab Streaming Layer outlets: markers `NAME` and probabilities `NAME_AU`.
    Lsl(String),
}

const SINK_FORMS: &str = "jsonl:PATH, jsonl:-, tcp:[IP:]PORT, ws:[IP:]PORT or lsl:NAME";

fn parse_addr(spec: &str, kind: &str, rest: &str) -> Result<ServerAddr> {
    match ServerAddr::parse(rest) {
        Some(a) => Ok(a),
        None => bail!(
            "--sink {spec:?}: {rest:?} is not a port or IP:PORT (e.g. {kind}:9000 or {kind}:0.0.0.0:9000)"
        ),
    }
}

impl SinkSpec {
    /// Parses `jsonl:PATH|-`, `tcp:ADDR`, `ws:ADDR` or `lsl:NAME`; errors name the value and the forms.
    pub fn parse(spec: &str) -> Result<SinkSpec> {
        let Some((kind, rest)) = spec.split_once(':') else {
            bail!("--sink {spec:?}: expected one of {SINK_FORMS}");
        };
        if rest.is_empty() {
            bail!("--sink {spec:?}: nothing after \"{kind}:\" (expected one of {SINK_FORMS})");
        }
        Ok(match kind {
            "jsonl" if rest == "-" => SinkSpec::Jsonl(None),
            "jsonl" => SinkSpec::Jsonl(Some(PathBuf::from(rest))),
            "tcp" => SinkSpec::Tcp(parse_addr(spec, kind, rest)?),
            "ws" => SinkSpec::Ws(parse_addr(spec, kind, rest)?),
            "lsl" => {
                if rest.chars().any(|c| c.is_control()) {
                    bail!("--sink {spec:?}: the LSL stream name has control characters");
                }
                SinkSpec::Lsl(rest.to_string())
            }
            other => {
                bail!("--sink {spec:?}: unknown sink kind {other:?} (expected one of {SINK_FORMS})")
            }
        })
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = |a: &ServerAddr| match a {
            ServerAddr::Port(p) => p.to_string(),
            ServerAddr::Socket(s) => s.to_string(),
        };
        match self {
            SinkSpec::Jsonl(None) => write!(f, "jsonl:-"),
            SinkSpec::Jsonl(Some(p)) => write!(f, "jsonl:{}", p.display()),
            SinkSpec::Tcp(a) => write!(f, "tcp:{}", addr(a)),
            SinkSpec::Ws(a) => write!(f, "ws:{}", addr(a)),
            SinkSpec::Lsl(n) => write!(f, "lsl:{n}"),
        }
    }
}

/// Options shared by the sinks of a run (see `[events]` in the configuration for defaults).
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Address server sinks given as a bare port listen on.
    pub bind: IpAddr,
    /// Bearer token TCP and WebSocket clients must present; `None` = open.
    pub token: Option<String>,
    /// AU labels in channel order for the LSL numeric stream (e.g. "AU1", "AU12").
    pub aus: Vec<String>,
    /// Events buffered between the bus and each sink's thread.
    pub queue: usize,
    /// Events buffered per server client before that client is dropped as too slow.
    pub client_queue: usize,
    /// A socket write blocked this long drops the client as too slow.
    pub write_timeout: Duration,
    /// Time a new client has to authenticate (or finish the WebSocket handshake).
    pub auth_timeout: Duration,
    /// liblsl to load for `lsl:` sinks (the `liblsl` artefact or `$LSL_LIB`).
    pub lsl_lib: Option<PathBuf>,
    /// Seconds of samples an LSL outlet keeps for slow inlets.
    pub lsl_max_buffered_s: i32,
    /// At close, how long LSL outlets with consumers stay up so the last samples reach them.
    pub lsl_linger: Duration,
    /// Replay: publishing waits for room in every queue (sink threads, server clients) instead
    /// of dropping, so the slowest reader sets the pace; a client that takes nothing for
    /// `write_timeout` is still dropped as too slow. Live runs never wait.
    pub pace_by_readers: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self::from_config(&crate::events::EventsConfig::default())
    }
}

impl SinkOptions {
    /// Options from the `[events]` configuration section (no token, no AU list, no liblsl yet).
    pub fn from_config(c: &crate::events::EventsConfig) -> Self {
        Self {
            bind: c.bind.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            token: (!c.token.is_empty()).then(|| c.token.clone()),
            aus: Vec::new(),
            queue: c.queue,
            client_queue: c.client_queue,
            write_timeout: Duration::from_millis(c.write_timeout_ms),
            auth_timeout: Duration::from_millis(c.auth_timeout_ms),
            lsl_lib: None,
            lsl_max_buffered_s: c.lsl_max_buffered_s,
            lsl_linger: Duration::from_millis(c.lsl_linger_ms),
            pace_by_readers: false,
        }
    }
}

/// An event with its JSON text, serialised once and shared by every sink.
#[derive(Debug)]
pub struct Encoded {
    /// The event.
    pub event: AuEvent,
    /// `event.to_json()`, without newline.
    pub json: String,
}

/// A sink driven by its own thread: the bus hands it events in order, then finishes it.
pub trait Sink: Send {
    /// Delivers one event (for servers: hands it to every client's queue without waiting).
    fn deliver(&mut self, ev: &Arc<Encoded>) -> Result<()>;
    /// Called once after the last event: flush, drain client queues, close.
    fn finish(&mut self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_names_bad_values() {
        assert_eq!(SinkSpec::parse("jsonl:-").unwrap(), SinkSpec::Jsonl(None));
        assert_eq!(
            SinkSpec::parse("jsonl:out/ev.jsonl").unwrap(),
            SinkSpec::Jsonl(Some("out/ev.jsonl".into()))
        );
        assert_eq!(
            SinkSpec::parse("tcp:9000").unwrap(),
            SinkSpec::Tcp(ServerAddr::Port(9000))
        );
        assert_eq!(
            SinkSpec::parse("ws:0.0.0.0:81").unwrap(),
            SinkSpec::Ws(ServerAddr::Socket("0.0.0.0:81".parse().unwrap()))
        );
        assert_eq!(
            SinkSpec::parse("ws:localhost:81").unwrap(),
            SinkSpec::Ws(ServerAddr::Socket("127.0.0.1:81".parse().unwrap()))
        );
        assert_eq!(
            SinkSpec::parse("lsl:aullm").unwrap(),
            SinkSpec::Lsl("aullm".into())
        );
        for (bad, says) in [
            ("udp:9000", "unknown sink kind \"udp\""),
            ("tcp:99999", "is not a port or IP:PORT"),
            ("jsonl:", "nothing after"),
            ("events.jsonl", "expected one of"),
        ] {
            let e = SinkSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
        for s in ["jsonl:-", "tcp:9000", "ws:0.0.0.0:81", "lsl:x"] {
            assert_eq!(SinkSpec::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn bare_ports_use_the_bind_address_which_defaults_to_loopback() {
        let o = SinkOptions::default();
        assert_eq!(o.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            ServerAddr::Port(7).resolve(o.bind).to_string(),
            "127.0.0.1:7"
        );
    }
}
