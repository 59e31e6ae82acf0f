//! What the TCP and WebSocket servers share: accepting clients, one bounded queue and writer thread
//! per client, dropping (and counting) a client that falls behind without slowing anyone else.

use crate::events::bus::SinkCounters;
use crate::events::sink::{Encoded, SinkOptions};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often an idle writer checks its client (close frames, pings) and the accept loop its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// One admitted client connection as the writer thread sees it.
pub(crate) trait Conn: Send {
    /// Writes one event (blocking, bounded by the socket's write timeout).
    fn send(&mut self, json: &str) -> io::Result<()>;
    /// Checks an idle connection; `Ok(false)` when the peer has closed it.
    fn poll(&mut self) -> io::Result<bool>;
    /// Closes gracefully after the last event.
    fn close(&mut self);
}

/// Turns an accepted socket into a client (authentication, handshake) or refuses it.
pub(crate) type Admit = dyn Fn(TcpStream, &SinkOptions) -> Result<Box<dyn Conn>> + Send + Sync;

struct Client {
    id: u64,
    tx: Sender<Arc<Encoded>>,
    socket: TcpStream,
    dropped_slow: Arc<AtomicBool>,
}

struct Shared {
    clients: Mutex<Vec<Client>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
    next_id: AtomicU64,
    counters: Arc<SinkCounters>,
    opts: SinkOptions,
    admit: Box<Admit>,
    name: String,
    /// When the last refusal was logged, and how many were refused quietly since.
    refusal_log: Mutex<(Option<std::time::Instant>, u64)>,
}

/// Queues `ev` for a client: at once, or waiting up to `wait` for room (replay's pacing).
fn offer(
    tx: &Sender<Arc<Encoded>>,
    ev: &Arc<Encoded>,
    wait: Option<Duration>,
) -> Result<(), TrySendError<Arc<Encoded>>> {
    match wait {
        None => tx.try_send(ev.clone()),
        Some(d) => tx.send_timeout(ev.clone(), d).map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(v) => TrySendError::Full(v),
            crossbeam_channel::SendTimeoutError::Disconnected(v) => TrySendError::Disconnected(v),
        }),
    }
}

/// A listening server that fans events out to its clients.
pub(crate) struct Server {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` and starts accepting.
    pub fn start(
        name: &str,
        addr: SocketAddr,
        opts: &SinkOptions,
        counters: Arc<SinkCounters>,
        admit: Box<Admit>,
    ) -> Result<Server> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("{name}: cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        // Non-blocking accept so the loop can see the stop flag.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            clients: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            counters,
            opts: opts.clone(),
            admit,
            name: name.to_string(),
            refusal_log: Mutex::new((None, 0)),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("{name} accept"))
            .spawn(move || accept_loop(listener, sh))?;
        Ok(Server {
            shared,
            accept: Some(accept),
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands `ev` to every client's queue; a full queue drops that client (counted), never waits.
    pub fn broadcast(&self, ev: &Arc<Encoded>) {
        let c = &self.shared.counters;
        let mut clients = self.shared.clients.lock().unwrap();
        let pace = self.shared.opts.pace_by_readers;
        let wait = self.shared.opts.write_timeout;
        clients.retain(|cl| match offer(&cl.tx, ev, pace.then_some(wait)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                c.client_events_dropped.fetch_add(1, Relaxed);
                cl.dropped_slow.store(true, Relaxed);
                c.clients_dropped_slow.fetch_add(1, Relaxed);
                tracing::warn!(
                    "{}: client {} dropped: {} events behind",
                    self.shared.name,
                    cl.id,
                    self.shared.opts.client_queue
                );
                // Unblocks its writer if it is stuck in a write.
                let _ = cl.socket.shutdown(Shutdown::Both);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                // Its writer has left (and counted why); this copy is lost too.
                c.client_events_dropped.fetch_add(1, Relaxed);
                false
            }
        });
    }

    /// Stops accepting, lets every writer drain its queue, closes every client.
    pub fn finish(&mut self) {
        self.shared.stop.store(true, Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        // Dropping the senders ends each writer after its queued events.
        self.shared.clients.lock().unwrap().clear();
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.finish();
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    while !sh.stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let sh2 = sh.clone();
                let t = std::thread::Builder::new()
                    .name(format!("{} client", sh.name))
                    .spawn(move || serve_client(stream, peer, sh2));
                let mut threads = sh.threads.lock().unwrap();
                threads.retain(|t| !t.is_finished());
                match t {
                    Ok(t) => threads.push(t),
                    Err(e) => tracing::error!("{}: cannot start a client thread: {e}", sh.name),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                tracing::warn!("{}: accept failed: {e}", sh.name);
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Logs a refused client, at most one message per [`REFUSAL_LOG_EVERY`] (a flood of bad clients
/// must not flood the log); the message counts the refusals it stands for.
fn log_refusal(sh: &Shared, peer: SocketAddr, e: &anyhow::Error) {
    let mut log = sh.refusal_log.lock().unwrap();
    let (last, quiet) = &mut *log;
    if last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
        *quiet += 1;
        return;
    }
    let more = match std::mem::take(quiet) {
        0 => String::new(),
        n => format!(" ({n} more refused since the last message)"),
    };
    *last = Some(std::time::Instant::now());
    tracing::warn!("{}: client {peer} refused: {e:#}{more}", sh.name);
}

/// The shortest time between two refusal messages of one server.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

fn serve_client(stream: TcpStream, peer: SocketAddr, sh: Arc<Shared>) {
    let c = &sh.counters;
    let prepared = (|| -> io::Result<TcpStream> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(sh.opts.auth_timeout))?;
        stream.set_write_timeout(Some(sh.opts.write_timeout))?;
        stream.try_clone()
    })();
    let socket = match prepared {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{}: client {peer}: {e}", sh.name);
            return;
        }
    };
    let mut conn = match (sh.admit)(stream, &sh.opts) {
        Ok(conn) => conn,
        Err(e) => {
            c.clients_rejected.fetch_add(1, Relaxed);
            log_refusal(&sh, peer, &e);
            return;
        }
    };
    let id = sh.next_id.fetch_add(1, Relaxed);
    let (tx, rx) = bounded(sh.opts.client_queue.max(1));
    let dropped_slow = Arc::new(AtomicBool::new(false));
    {
        let mut clients = sh.clients.lock().unwrap();
        if sh.stop.load(Relaxed) {
            conn.close();
            return;
        }
        clients.push(Client {
            id,
            tx,
            socket,
            dropped_slow: dropped_slow.clone(),
        });
        c.clients_total.fetch_add(1, Relaxed);
        c.clients_connected.fetch_add(1, Relaxed);
    }
    tracing::info!("{}: client {id} connected from {peer}", sh.name);
    let end = write_loop(conn.as_mut(), &rx, c);
    sh.clients.lock().unwrap().retain(|cl| cl.id != id);
    // Whatever is still queued for this client will never reach it.
    let left = rx.try_iter().count() as u64;
    c.client_events_dropped.fetch_add(left, Relaxed);
    c.clients_connected.fetch_sub(1, Relaxed);
    match end {
        End::Drained => conn.close(),
        End::Failed(e) if !dropped_slow.load(Relaxed) => {
            let slow = matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            );
            if slow {
                c.clients_dropped_slow.fetch_add(1, Relaxed);
                tracing::warn!(
                    "{}: client {id} dropped: a write blocked past the timeout",
                    sh.name
                );
            } else {
                c.clients_disconnected.fetch_add(1, Relaxed);
                tracing::info!("{}: client {id} went away: {e}", sh.name);
            }
        }
        End::Failed(_) => {}
        End::Closed => {
            c.clients_disconnected.fetch_add(1, Relaxed);
            tracing::info!("{}: client {id} closed the connection", sh.name);
        }
    }
}

enum End {
    /// The sink finished and every queued event was written.
    Drained,
    /// A write or poll failed; the event being written is counted lost.
    Failed(io::Error),
    /// The peer closed while idle.
    Closed,
}

fn write_loop(conn: &mut dyn Conn, rx: &Receiver<Arc<Encoded>>, c: &SinkCounters) -> End {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(ev) => match conn.send(&ev.json) {
                Ok(()) => {
                    c.client_events_sent.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    c.client_events_dropped.fetch_add(1, Relaxed);
                    return End::Failed(e);
                }
            },
            Err(RecvTimeoutError::Timeout) => match conn.poll() {
                Ok(true) => {}
                Ok(false) => return End::Closed,
                Err(e) => return End::Failed(e),
            },
            Err(RecvTimeoutError::Disconnected) => return End::Drained,
        }
    }
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server as a sink: every event goes to every admitted client (TCP lines, WebSocket messages;
/// the protocol is in its admission function).
pub struct ServerSink {
    server: Server,
}

impl ServerSink {
    /// Listens on `addr` (port 0 picks a free port; see [`ServerSink::local_addr`]); `admit` turns
    /// an accepted connection into a client (authentication, handshake) or refuses it.
    pub(crate) fn open(
        name: &str,
        addr: SocketAddr,
        opts: &SinkOptions,
        counters: Arc<SinkCounters>,
        admit: Box<Admit>,
    ) -> Result<ServerSink> {
        Ok(ServerSink {
            server: Server::start(name, addr, opts, counters, admit)?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

impl crate::events::sink::Sink for ServerSink {
    fn deliver(&mut self, ev: &Arc<crate::events::sink::Encoded>) -> Result<()> {
        self.server.broadcast(ev);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.server.finish();
        Ok(())
    }
}
