//! JSON-lines TCP server: every client gets every event as one line. With a token, a client first
//! sends `AUTH <token>\n` and gets `OK\n` (or `ERR unauthorized\n` and the connection closes).

use super::server::{Conn, token_matches};
use crate::events::sink::SinkOptions;
use anyhow::{Result, bail};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Admits a client (see [`ServerSink::open`]).
pub(crate) fn admit(mut stream: TcpStream, opts: &SinkOptions) -> Result<Box<dyn Conn>> {
    if let Some(token) = &opts.token {
        let mut line = String::new();
        let read = BufReader::new((&stream).take(1024)).read_line(&mut line);
        let given = line.trim_end_matches(['\r', '\n']).strip_prefix("AUTH ");
        if read.is_err() || !given.is_some_and(|g| token_matches(g, token)) {
            let _ = stream.write_all(b"ERR unauthorized\n");
            let _ = stream.shutdown(Shutdown::Both);
            bail!("no valid \"AUTH <token>\" line");
        }
        stream.write_all(b"OK\n")?;
    }
    // Reads after admission only look for the peer closing; they must not wait.
    stream.set_read_timeout(Some(Duration::from_millis(1)))?;
    Ok(Box::new(TcpConn {
        stream,
        buf: Vec::with_capacity(1024),
    }))
}

struct TcpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn for TcpConn {
    fn send(&mut self, json: &str) -> io::Result<()> {
        // One write per event: the line and its newline leave together.
        self.buf.clear();
        self.buf.extend_from_slice(json.as_bytes());
        self.buf.push(b'\n');
        self.stream.write_all(&self.buf)
    }

    fn poll(&mut self) -> io::Result<bool> {
        let mut scratch = [0u8; 256];
        match self.stream.read(&mut scratch) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true), // clients have nothing to say after AUTH; ignore it
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn close(&mut self) {
        let _ = self.stream.flush();
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
