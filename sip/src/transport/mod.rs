//! UDP and TCP transport (RFC 3261 section 18, RFC 3581) on tokio: listeners from
//! [`ListenAddr`]s, received messages on an mpsc channel as [`Incoming`], and sending to
//! a [`Target`], reusing an open TCP connection to that peer.
//!
//! Unparseable datagrams are logged and dropped; a TCP framing error closes only that
//! connection. Checking requests ([`check_request`](crate::check_request)) and answering
//! them is the core's job.
//!
//! Targets are socket addresses: [`locate`](crate::locate()) turns a URI into them
//! (RFC 3263). TLS is not offered.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::parse::{DEFAULT_MAX_MESSAGE, StreamDecoder, parse_datagram};
use crate::route::{Target, TransportKind, response_target, stamp_via};
use crate::{Error, Message, Response};

use udp::ReadOnlyUdp;

mod udp;

/// A transport and address to listen on, written `udp:127.0.0.1:5060` or
/// `tcp:[::1]:5060` in the configuration. Port 0 picks a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    /// UDP or TCP.
    pub transport: TransportKind,
    /// Socket address.
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::ListenAddr(s.to_owned());
        let (t, a) = s.split_once(':').ok_or_else(bad)?;
        let transport = if t.eq_ignore_ascii_case("udp") {
            TransportKind::Udp
        } else if t.eq_ignore_ascii_case("tcp") {
            TransportKind::Tcp
        } else {
            return Err(bad());
        };
        let addr = a.parse().map_err(|_| bad())?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
        };
        write!(f, "{t}:{}", self.addr)
    }
}

/// A received message with where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message; a request's top Via already carries `received`/`rport`.
    pub message: Message,
    /// The peer's address.
    pub source: SocketAddr,
    /// The transport it came over.
    pub transport: TransportKind,
    /// Our address it arrived at.
    pub local: SocketAddr,
}

impl Incoming {
    /// The peer as a [`Target`], for answering.
    pub fn source_target(&self) -> Target {
        Target {
            addr: self.source,
            transport: self.transport,
        }
    }
}

/// Limits of the transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest TCP message (and unfinished head) in octets.
    pub max_message: usize,
    /// Most TCP connections open at once, inbound and outbound.
    pub max_connections: usize,
    /// A TCP connection with nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// Capacity of the [`Incoming`] channel (back-pressure on the sockets).
    pub channel_capacity: usize,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_message: DEFAULT_MAX_MESSAGE,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            channel_capacity: 1024,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// An open TCP connection's writer side.
#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

#[derive(Debug)]
struct Shared {
    config: TransportConfig,
    /// Each UDP socket (it knows its bound address: asking the kernel would be a system
    /// call per send).
    udp: Vec<Arc<ReadOnlyUdp>>,
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    incoming: mpsc::Sender<Incoming>,
    shutdown: watch::Receiver<bool>,
}

/// Stops every task when the last [`SipTransport`] clone goes away.
#[derive(Debug)]
struct Guard(watch::Sender<bool>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// The SIP transport: listeners, TCP connections and sending. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SipTransport {
    shared: Arc<Shared>,
    local: Arc<Vec<ListenAddr>>,
    guard: Arc<Guard>,
}

impl SipTransport {
    /// Binds every address and starts receiving; messages arrive on the returned channel.
    pub async fn bind(
        addrs: &[ListenAddr],
        config: TransportConfig,
    ) -> Result<(Self, mpsc::Receiver<Incoming>), Error> {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local = Vec::new();
        for a in addrs {
            match a.transport {
                TransportKind::Udp => {
                    let s = ReadOnlyUdp::bind(a.addr)?;
                    local.push(ListenAddr {
                        transport: a.transport,
                        addr: s.local_addr(),
                    });
                    udp.push(Arc::new(s));
                }
                TransportKind::Tcp => {
                    let l = TcpListener::bind(a.addr).await?;
                    local.push(ListenAddr {
                        transport: a.transport,
                        addr: l.local_addr()?,
                    });
                    tcp.push(l);
                }
            }
        }
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(config.max_connections)),
            config,
            udp,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            incoming: tx,
            shutdown: stop_rx,
        });
        for s in &shared.udp {
            tokio::spawn(udp_loop(shared.clone(), s.clone()));
        }
        for l in tcp {
            tokio::spawn(accept_loop(shared.clone(), l));
        }
        let transport = Self {
            shared,
            local: Arc::new(local),
            guard: Arc::new(Guard(stop_tx)),
        };
        Ok((transport, rx))
    }

    /// The bound addresses, with the ports chosen for port 0.
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.local
    }

    /// The first bound address of a transport.
    pub fn local_addr(&self, transport: TransportKind) -> Option<SocketAddr> {
        self.local
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// Whether [`send`](Self::send) can reach `target` at all: over UDP only with a
    /// bound socket of the target's address family; over TCP always (the connection
    /// is made on demand). Use it to skip [`locate`](crate::locate()) results, such as
    /// IPv6 addresses when only IPv4 is bound.
    pub fn can_send(&self, target: Target) -> bool {
        match target.transport {
            TransportKind::Udp => self.udp_socket_for(target.addr).is_some(),
            TransportKind::Tcp => true,
        }
    }

    /// The UDP socket that sends to `peer`: the first bound one of its address family.
    fn udp_socket_for(&self, peer: SocketAddr) -> Option<&ReadOnlyUdp> {
        self.shared
            .udp
            .iter()
            .find(|s| s.local_addr().is_ipv4() == peer.is_ipv4())
            .map(AsRef::as_ref)
    }

    /// Sends a message: over UDP from a socket of the target's address family, over
    /// TCP on the open connection to that peer or a new one.
    pub async fn send(&self, message: &Message, target: Target) -> Result<(), Error> {
        self.send_bytes(&message.to_bytes(), target).await
    }

    /// Sends a message already serialized, as [`send`](Self::send) does: for the stored
    /// wire form of a response or request that the transaction layer asks to resend.
    pub async fn send_bytes(&self, bytes: &[u8], target: Target) -> Result<(), Error> {
        match target.transport {
            TransportKind::Udp => {
                let sock = self.udp_socket_for(target.addr).ok_or_else(|| {
                    Error::Transport(format!("no UDP socket for {}", target.addr))
                })?;
                sock.send_to(bytes, target.addr).await?;
                Ok(())
            }
            // The connection's writer task owns what it writes: one copy.
            TransportKind::Tcp => self.send_tcp(bytes.to_vec(), target.addr).await,
        }
    }

    /// Sends a response to the request that came from `source` (RFC 3261 18.2.2).
    pub async fn send_response(&self, resp: &Response, source: Target) -> Result<(), Error> {
        let target = response_target(resp, source);
        self.send(&Message::Response(resp.clone()), target).await
    }

    /// Stops the listeners and connections (also done when the last clone is dropped).
    pub fn shutdown(&self) {
        let _ = self.guard.0.send(true);
    }

    async fn send_tcp(&self, bytes: Vec<u8>, peer: SocketAddr) -> Result<(), Error> {
        let existing = lock(&self.shared.conns).get(&peer).cloned();
        if let Some(conn) = existing {
            match conn.tx.send(bytes).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(b)) => {
                    forget(&self.shared, peer, conn.id);
                    return self.connect_and_send(b, peer).await;
                }
            }
        }
        self.connect_and_send(bytes, peer).await
    }

    async fn connect_and_send(&self, bytes: Vec<u8>, peer: SocketAddr) -> Result<(), Error> {
        let permit = self
            .shared
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Transport("too many TCP connections".into()))?;
        let stream =
            tokio::time::timeout(self.shared.config.connect_timeout, TcpStream::connect(peer))
                .await
                .map_err(|_| Error::Transport(format!("connect to {peer} timed out")))??;
        let conn = spawn_connection(self.shared.clone(), stream, peer, permit)?;
        conn.tx
            .send(bytes)
            .await
            .map_err(|_| Error::Transport(format!("connection to {peer} closed")))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a plain map behind: still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn forget(shared: &Shared, peer: SocketAddr, id: u64) {
    let mut conns = lock(&shared.conns);
    if conns.get(&peer).is_some_and(|c| c.id == id) {
        conns.remove(&peer);
    }
}

/// Hands a message to the core, a request with its common fields read and its Via stamped.
async fn deliver(
    shared: &Shared,
    mut message: Message,
    source: SocketAddr,
    transport: TransportKind,
    local: SocketAddr,
) -> bool {
    if let Message::Request(r) = &mut message {
        r.headers.read_common();
        stamp_via(r, source);
    }
    let incoming = Incoming {
        message,
        source,
        transport,
        local,
    };
    shared.incoming.send(incoming).await.is_ok()
}

async fn udp_loop(shared: Arc<Shared>, sock: Arc<ReadOnlyUdp>) {
    let local = sock.local_addr();
    let mut stop = shared.shutdown.clone();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, source) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems: not fatal.
                    tracing::debug!(%local, error = %e, "UDP receive error");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let data = &buf[..n];
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            continue; // Keep-alive.
        }
        match parse_datagram(data) {
            Ok(m) => {
                if !deliver(&shared, m, source, TransportKind::Udp, local).await {
                    return;
                }
            }
            Err(e) => tracing::warn!(%source, %local, error = %e, "dropping UDP datagram"),
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many TCP connections, closing");
            drop(stream);
            continue;
        };
        if let Err(e) = spawn_connection(shared.clone(), stream, peer, permit) {
            tracing::warn!(%peer, error = %e, "TCP connection setup failed");
        }
    }
}

/// Registers a connection for reuse and starts its reader and writer.
fn spawn_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) -> Result<Conn, Error> {
    let local = stream.local_addr()?;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    let conn = Conn { id, tx };
    lock(&shared.conns).insert(peer, conn.clone());
    tokio::spawn(run_connection(shared, stream, peer, local, id, rx, permit));
    Ok(conn)
}

async fn run_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    _permit: OwnedSemaphorePermit,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut stop = shared.shutdown.clone();
    let mut decoder = StreamDecoder::new(shared.config.max_message);
    let mut buf = vec![0u8; 8192];
    let idle = shared.config.idle_timeout;
    loop {
        tokio::select! {
            r = tokio::time::timeout(idle, reader.read(&mut buf)) => {
                let n = match r {
                    Err(_) => {
                        tracing::debug!(%peer, "closing idle TCP connection");
                        break;
                    }
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TCP read error");
                        break;
                    }
                };
                decoder.push(&buf[..n]);
                let mut fatal = false;
                loop {
                    match decoder.next_message() {
                        Ok(Some(m)) => {
                            if !deliver(&shared, m, peer, TransportKind::Tcp, local).await {
                                fatal = true;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "closing TCP connection");
                            fatal = true;
                            break;
                        }
                    }
                }
                if fatal {
                    break;
                }
            }
            msg = outgoing.recv() => match msg {
                Some(bytes) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "TCP write error");
                        break;
                    }
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    forget(&shared, peer, id);
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests;
