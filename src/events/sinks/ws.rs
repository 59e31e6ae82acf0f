//! WebSocket server: one text message per event. With a token, the handshake must carry
//! `Authorization: Bearer <token>` (or `?token=<token>` in the URL, for browsers); otherwise HTTP 401.

use super::server::{Conn, token_matches};
use crate::events::sink::SinkOptions;
use anyhow::{Result, anyhow};
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// The token a handshake request presents, from its Authorization header or `token` query parameter.
fn presented_token(req: &Request) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
}

// The error type of the handshake callback is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
/// Admits a client (see [`ServerSink::open`]).
pub(crate) fn admit(stream: TcpStream, opts: &SinkOptions) -> Result<Box<dyn Conn>> {
    let token = opts.token.clone();
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match &token {
            Some(t) if !presented_token(req).is_some_and(|g| token_matches(&g, t)) => {
                let mut r = ErrorResponse::new(Some("missing or wrong bearer token".into()));
                *r.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(r)
            }
            _ => Ok(resp),
        }
    };
    let answer = stream.try_clone();
    let ws = tungstenite::accept_hdr(stream, check).map_err(|e| {
        // A plain HTTP request (a browser, curl) gets an answer that says what this port is.
        if let (tungstenite::HandshakeError::Failure(tungstenite::Error::Protocol(_)), Ok(mut s)) =
            (&e, answer)
        {
            let body = "This port serves aullm AU events over WebSocket: connect with a WebSocket client (ws://HOST:PORT/).\n";
            let _ = write!(
                s,
                "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        anyhow!("WebSocket handshake: {e}")
    })?;
    // Reads after the handshake only serve pings and close frames; they must not wait.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(1)))?;
    Ok(Box::new(WsConn { ws }))
}

struct WsConn {
    ws: WebSocket<TcpStream>,
}

fn io_err(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::ConnectionAborted, other.to_string()),
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

impl Conn for WsConn {
    fn send(&mut self, json: &str) -> io::Result<()> {
        self.ws.send(Message::text(json)).map_err(io_err)
    }

    fn poll(&mut self) -> io::Result<bool> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(_)) => return Ok(false),
                Ok(_) => continue, // pings are answered by tungstenite on the next flush
                Err(e) if would_block(&e) => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(false);
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        match self.ws.flush() {
            Ok(()) => Ok(true),
            Err(e) if would_block(&e) => Ok(true),
            Err(e) => Err(io_err(e)),
        }
    }

    fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "end of run".into(),
        };
        if self.ws.close(Some(frame)).is_err() {
            return;
        }
        // Give the client a moment to answer the close frame so it sees a clean close (1000).
        for _ in 0..200 {
            match self.ws.read() {
                Err(e) if would_block(&e) => {}
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
