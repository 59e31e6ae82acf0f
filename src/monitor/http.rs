//! The monitor's HTTP server: the page, its state as JSON, and the two images as PNG. A thread per
//! request (at most [`MAX_CLIENTS`] at once, each with read and write timeouts), `Connection:
//! close`; nothing here can hold up the camera path, which only ever `try_lock`s the snapshot.

use super::{Gray, ImageKind, Monitor};
use crate::events::sinks::server::token_matches;
use anyhow::{Context, Result};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests served at once; more are closed unanswered (a page polls a few times a second).
pub const MAX_CLIENTS: usize = 16;
/// Time a client has to send its request, and to take each write.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_HEAD: usize = 8192;
/// The page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

/// A running monitor server; dropping it stops accepting.
pub struct UiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl UiServer {
    /// Listens on `addr` and serves `mon`; with a token, every request must present it
    /// (`?token=` in the URL, as a browser can, or `Authorization: Bearer`).
    pub fn start(addr: SocketAddr, mon: Arc<Monitor>, token: Option<String>) -> Result<UiServer> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("--ui: cannot listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let token: Option<Arc<str>> = token.filter(|t| !t.is_empty()).map(Arc::from);
        let accept = std::thread::Builder::new()
            .name("ui accept".into())
            .spawn(move || accept_loop(listener, mon, token, stop2))
            .context("cannot start the --ui thread")?;
        Ok(UiServer {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    mon: Arc<Monitor>,
    token: Option<Arc<str>>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
                    continue; // dropped: closes the connection
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (mon, token, active2) = (mon.clone(), token.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("ui client".into())
                        .spawn(move || {
                            if let Err(e) = serve(stream, &mon, token.as_deref()) {
                                tracing::debug!("ui client: {e}");
                            }
                            active2.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A parsed request line and the header that matters here.
#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    bearer: Option<String>,
}

/// Parses a request head (`GET /path?a=b HTTP/1.1` and headers); None when it is not HTTP.
fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    let bearer = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("authorization").then(|| {
            v.trim()
                .strip_prefix("Bearer ")
                .map(|t| t.trim().to_string())
        })?
    });
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        bearer,
    })
}

/// `%XX` and `+` decoding of a query value (a malformed escape is kept as it is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(mut stream: TcpStream, mon: &Monitor, token: Option<&str>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let Some(req) = parse_head(&String::from_utf8_lossy(&head)) else {
        return respond(&mut stream, 400, "text/plain", b"bad request\n");
    };
    if req.method != "GET" {
        return respond(&mut stream, 405, "text/plain", b"only GET\n");
    }
    if let Some(t) = token {
        let given = req
            .bearer
            .clone()
            .or_else(|| param(&req, "token").map(str::to_string));
        if !given.is_some_and(|g| token_matches(&g, t)) {
            return respond(
                &mut stream,
                401,
                "text/plain",
                b"missing or wrong token: open the page as /?token=YOUR_TOKEN\n",
            );
        }
    }
    match req.path.as_str() {
        "/" | "/index.html" => respond(
            &mut stream,
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        ),
        "/state.json" => {
            let after = param(&req, "after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let body = mon.state_json(after);
            respond(&mut stream, 200, "application/json", body.as_bytes())
        }
        "/face.png" | "/crop.png" => {
            let kind = if req.path == "/face.png" {
                ImageKind::Face
            } else {
                ImageKind::Crop
            };
            match mon.image(kind).and_then(|g| png(&g)) {
                Some(b) => respond(&mut stream, 200, "image/png", &b),
                None => respond(&mut stream, 404, "text/plain", b"no face yet\n"),
            }
        }
        _ => respond(&mut stream, 404, "text/plain", b"not found\n"),
    }
}

fn param<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn png(g: &Gray) -> Option<Vec<u8>> {
    crate::imgio::png::gray(&g.pixels, g.width, g.height)
}

fn respond(stream: &mut TcpStream, code: u16, kind: &str, body: &[u8]) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; connect-src 'self'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_query_and_bearer() {
        let r = parse_head(
            "GET /state.json?after=12&token=a%20b+c HTTP/1.1\r\nHost: x\r\nauthorization: Bearer s3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/state.json");
        assert_eq!(param(&r, "after"), Some("12"));
        assert_eq!(param(&r, "token"), Some("a b c"));
        assert_eq!(r.bearer.as_deref(), Some("s3"));
        assert!(parse_head("hello\r\n\r\n").is_none());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
