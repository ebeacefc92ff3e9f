//! The link task: connect, XEP-0114 handshake, stanza pump, XEP-0199 keepalive, clean
//! close, and reconnection with capped exponential backoff.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{Instrument, debug, error, info, info_span, warn};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::DefinedCondition;

use crate::backoff::Backoff;
use crate::stanza::{Incoming, LocalInfo, encode_outgoing, is_handshake_ok, parse_stream_error};
use crate::stream::{self, StreamEvent, StreamReader};
use crate::{ChatMessage, ComponentConfig, Error, IncomingChat};

/// How long `shutdown` waits for the server's `</stream:stream>` after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Events the core has not read yet before the link stops reading the socket.
const EVENT_QUEUE: usize = 256;
/// Read buffer size; stanzas may span several reads.
const READ_CHUNK: usize = 16 * 1024;
/// Most bytes of queued stanzas gathered into one socket write.
const WRITE_BATCH: usize = 64 * 1024;

/// What the link tells the gateway core.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The handshake succeeded: [`StanzaSender::send`] works from now on, so this is the
    /// moment to flush whatever was queued while the link was down.
    Connected,
    /// The link went down, or an attempt to bring it up failed; `send` fails until the
    /// next `Connected`. The link retries by itself after `retry_in`.
    Disconnected {
        /// Why: a stream error such as `not-authorized`, a dead peer, a close...
        reason: Error,
        /// Delay before the next connection attempt.
        retry_in: Duration,
    },
    /// A `message`, `presence` or `iq` for the gateway (namespace
    /// `jabber:component:accept`). Disco#info and pings to the bare domain, and answers
    /// to the link's own keepalives, are handled inside and never show up here.
    Stanza(Element),
    /// A chat message of the plain shape most have, read without a tree
    /// ([`IncomingChat::into_element`] gives the [`Stanza`](Self::Stanza) it stands for).
    Chat(IncomingChat),
}

/// Opens the byte stream to the server; [`TcpConnector`] in production, an in-memory
/// pipe in tests.
pub trait Connect: Send + 'static {
    /// The connected byte stream.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Opens one connection; called again for every reconnect.
    fn connect(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain TCP to the server's component port: XEP-0114 has no TLS, the server is local.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    host: String,
    port: u16,
}

impl TcpConnector {
    /// Connector for `host:port` (a name is resolved by the OS on each attempt).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl Connect for TcpConnector {
    type Io = TcpStream;

    async fn connect(&mut self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Stanzas are small and latency matters more than packet count.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Serialised stanzas on their way to the live stream.
type Outbound = mpsc::Sender<Vec<u8>>;

/// Cheap, cloneable handle for sending stanzas; usable from any task.
#[derive(Debug, Clone)]
pub struct StanzaSender {
    domain: Arc<str>,
    live: watch::Receiver<Option<Outbound>>,
}

impl StanzaSender {
    /// Checks the stanza (`from` in the component domain, `to` present, a `message`,
    /// `presence` or `iq`) and hands it to the live stream without waiting.
    ///
    /// `Ok` means the stream took it; like any XEP-0114 stanza it may still be lost if
    /// the connection dies right after. [`Error::NotConnected`] and [`Error::QueueFull`]
    /// mean it was not sent: keep it and retry after [`LinkEvent::Connected`]. Other
    /// errors are faults of the stanza itself ([`Error::is_bad_stanza`]).
    pub fn send(&self, stanza: impl Into<Element>) -> Result<(), Error> {
        self.send_element(&stanza.into())
    }

    /// [`StanzaSender::send`] that leaves the stanza with the caller, who can queue it again
    /// if the link turns out to be down, without copying every stanza to that end.
    pub fn send_element(&self, stanza: &Element) -> Result<(), Error> {
        self.hand_over(encode_outgoing(stanza, &self.domain)?)
    }

    /// [`StanzaSender::send_element`] for a chat message, written without a tree.
    pub fn send_chat(&self, chat: &ChatMessage) -> Result<(), Error> {
        self.hand_over(chat.encode(&self.domain)?)
    }

    fn hand_over(&self, bytes: Vec<u8>) -> Result<(), Error> {
        match &*self.live.borrow() {
            Some(tx) => tx.try_send(bytes).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Error::NotConnected,
            }),
            None => Err(Error::NotConnected),
        }
    }

    /// Whether a handshaken stream is up right now (it may drop at any time).
    pub fn is_connected(&self) -> bool {
        self.live
            .borrow()
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// The component domain every `from` must be in.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// The gateway's end of the component connection: a background task connects and
/// reconnects forever; this handle receives its events and stops it.
#[derive(Debug)]
pub struct ComponentLink {
    events: mpsc::Receiver<LinkEvent>,
    sender: StanzaSender,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ComponentLink {
    /// Starts the link over TCP to `cfg.host:cfg.port`. Must be called inside a Tokio
    /// runtime. Out-of-range settings are clamped (see [`ComponentConfig`]).
    pub fn spawn(cfg: ComponentConfig) -> Self {
        let connector = TcpConnector::new(cfg.host.clone(), cfg.port);
        Self::spawn_with(cfg, connector)
    }

    /// Starts the link over any byte stream: tests use `tokio::io::duplex`.
    pub fn spawn_with<C: Connect>(cfg: ComponentConfig, connector: C) -> Self {
        let cfg = cfg.sanitized();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (live_tx, live) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let sender = StanzaSender {
            domain: Arc::from(cfg.domain.as_str()),
            live,
        };
        let worker = Worker {
            info: LocalInfo::new(&cfg.domain, &cfg.name, &cfg.features),
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            cfg,
            connector,
            events: events_tx,
            live: live_tx,
            stop: stop_rx,
            ping_seq: 0,
        };
        let task = tokio::spawn(worker.run());
        Self {
            events,
            sender,
            stop,
            task,
        }
    }

    /// A handle for sending stanzas.
    pub fn sender(&self) -> StanzaSender {
        self.sender.clone()
    }

    /// The next event; `None` only once the link task has ended. Cancel-safe, so it
    /// can sit in the core's `select!`.
    pub async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting: for a caller that has just
    /// handled one and takes the rest of a burst before it waits on anything else.
    pub fn try_next_event(&mut self) -> Option<LinkEvent> {
        self.events.try_recv().ok()
    }

    /// Ends the link: sends `</stream:stream>`, waits briefly for the server's, and
    /// stops reconnecting. Stanzas not yet read from [`Self::next_event`] are dropped.
    pub async fn shutdown(self) {
        let Self {
            events, stop, task, ..
        } = self;
        // The worker sees either: the flag, or the closed event channel when it is
        // blocked handing over an event.
        stop.send_replace(true);
        drop(events);
        let abort = task.abort_handle();
        if timeout(CLOSE_WAIT * 3, task).await.is_err() {
            warn!("component link did not stop in time; aborting it");
            abort.abort();
        }
    }
}

/// How one connection attempt or session ended.
enum End {
    /// Shutdown was requested (or the core dropped its handle).
    Stop,
    /// The link failed; reconnect.
    Lost(Error),
}

struct Worker<C> {
    cfg: ComponentConfig,
    info: LocalInfo,
    connector: C,
    events: mpsc::Sender<LinkEvent>,
    live: watch::Sender<Option<Outbound>>,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    ping_seq: u64,
}

impl<C: Connect> Worker<C> {
    async fn run(mut self) {
        let mut attempt: u64 = 0;
        while !stopping(&mut self.stop) {
            attempt += 1;
            let span = info_span!("xmpp_component", domain = %self.cfg.domain, attempt);
            let End::Lost(reason) = self.attempt().instrument(span.clone()).await else {
                break;
            };
            let retry_in = self.backoff.next_delay(reason.needs_admin());
            span.in_scope(|| log_failure(&reason, retry_in, &self.cfg.domain));
            let event = LinkEvent::Disconnected { reason, retry_in };
            if !emit(&self.events, &mut self.stop, event).await {
                break;
            }
            tokio::select! {
                biased;
                () = wait_stop(&mut self.stop) => break,
                () = sleep(retry_in) => {}
            }
        }
        self.live.send_replace(None);
        debug!("component link stopped");
    }

    /// One connection: handshake, then the session until it ends.
    async fn attempt(&mut self) -> End {
        let started = Instant::now();
        let limit = self.cfg.connect_timeout;
        let connected = tokio::select! {
            biased;
            () = wait_stop(&mut self.stop) => return End::Stop,
            r = timeout(limit, handshake(&mut self.connector, &self.cfg)) => r,
        };
        let mut conn = match connected {
            Err(_) => return End::Lost(Error::HandshakeTimeout(limit)),
            Ok(Err(e)) => return End::Lost(e),
            Ok(Ok(conn)) => conn,
        };
        info!(server = %format_args!("{}:{}", self.cfg.host, self.cfg.port), "component link up");
        let (tx, rx) = mpsc::channel(self.cfg.send_queue);
        self.live.send_replace(Some(tx));
        let end = if emit(&self.events, &mut self.stop, LinkEvent::Connected).await {
            self.session(&mut conn, rx).await
        } else {
            End::Stop
        };
        self.live.send_replace(None);
        if matches!(end, End::Stop) {
            conn.close().await;
        }
        // Only a session that lived a while proves the trouble over; otherwise a server
        // that accepts and then drops us would be hammered every `backoff_min`.
        if started.elapsed() >= self.cfg.backoff_max {
            self.backoff.reset();
        }
        end
    }

    async fn session(&mut self, conn: &mut Conn<C::Io>, mut rx: mpsc::Receiver<Vec<u8>>) -> End {
        let keepalive = self.cfg.keepalive;
        let dead_after = keepalive.saturating_mul(2);
        let mut next_ping = Instant::now() + keepalive;
        // One timer for the ping and the dead-peer check, moved only when it fires (the
        // dead-peer time moves with every byte received; it is checked then).
        let timer = sleep_until(next_ping.min(conn.last_rx + dead_after));
        tokio::pin!(timer);
        loop {
            // Unbiased: a flood of incoming stanzas must not starve outgoing ones.
            tokio::select! {
                () = wait_stop(&mut self.stop) => return End::Stop,
                event = conn.next_event() => match event {
                    Ok(StreamEvent::Stanza(el)) => match self.info.classify(el) {
                        Incoming::Deliver(el) => {
                            if !emit(&self.events, &mut self.stop, LinkEvent::Stanza(el)).await {
                                return End::Stop;
                            }
                        }
                        Incoming::Reply(el) => {
                            let mut bytes = Vec::with_capacity(512);
                            if let Err(e) = el.write_to(&mut bytes) {
                                warn!(error = %e, "cannot serialise a local answer");
                            } else if let Err(e) = conn.write(&bytes).await {
                                return End::Lost(e);
                            }
                        }
                        Incoming::Drop(why) => debug!(why, "incoming element not passed on"),
                        Incoming::StreamError(e) => {
                            conn.write_best_effort(stream::CLOSE).await;
                            return End::Lost(e);
                        }
                    },
                    Ok(StreamEvent::Chat(chat)) => {
                        if !emit(&self.events, &mut self.stop, LinkEvent::Chat(chat)).await {
                            return End::Stop;
                        }
                    }
                    Ok(StreamEvent::Closed) => {
                        conn.write_best_effort(stream::CLOSE).await;
                        return End::Lost(Error::StreamClosed);
                    }
                    Ok(StreamEvent::Opened(_)) => {
                        return End::Lost(Error::Protocol("second stream header".into()));
                    }
                    Err(e @ Error::Malformed(_)) => {
                        conn.write_best_effort(&stream::error_and_close("not-well-formed", None)).await;
                        return End::Lost(e);
                    }
                    Err(e @ Error::StanzaTooLarge { .. }) => {
                        let text = format!("stanza over {} bytes", self.cfg.max_stanza);
                        conn.write_best_effort(&stream::error_and_close("policy-violation", Some(&text))).await;
                        return End::Lost(e);
                    }
                    Err(e) => return End::Lost(e),
                },
                Some(bytes) = rx.recv() => {
                    if let Err(e) = conn.write(&gather(bytes, &mut rx)).await {
                        return End::Lost(e);
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= conn.last_rx + dead_after {
                        conn.write_best_effort(&stream::error_and_close("connection-timeout", None)).await;
                        return End::Lost(Error::PeerDead(dead_after));
                    }
                    if now >= next_ping {
                        self.ping_seq += 1;
                        let ping = self.info.keepalive_ping(self.cfg.ping_target(), self.ping_seq);
                        if let Err(e) = conn.write(&ping).await {
                            return End::Lost(e);
                        }
                        next_ping = Instant::now() + keepalive;
                    }
                    timer.as_mut().reset(next_ping.min(conn.last_rx + dead_after));
                }
            }
        }
    }
}

/// `first` and the stanzas already queued behind it, up to [`WRITE_BATCH`] bytes: a burst
/// of stanzas costs one write instead of one each.
fn gather(mut first: Vec<u8>, rx: &mut mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    while first.len() < WRITE_BATCH {
        match rx.try_recv() {
            Ok(more) => first.extend_from_slice(&more),
            Err(_) => break,
        }
    }
    first
}

/// Connects and runs the XEP-0114 handshake.
async fn handshake<C: Connect>(
    connector: &mut C,
    cfg: &ComponentConfig,
) -> Result<Conn<C::Io>, Error> {
    let io = connector.connect().await.map_err(Error::Connect)?;
    let mut conn = Conn::new(io, cfg);
    conn.write(stream::header(&cfg.domain).as_bytes()).await?;
    let header = match conn.next_event().await? {
        StreamEvent::Opened(header) => header,
        other => {
            return Err(Error::Protocol(format!(
                "expected a stream header, got {other:?}"
            )));
        }
    };
    let id = header
        .attr("id")
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    // Prosody refuses an unknown domain with a header without id, then the error and the
    // close, all in one packet.
    if id.is_none() || !conn.pending.is_empty() {
        if let Some(error) = conn.stream_error_soon().await {
            return Err(error);
        }
    }
    let id = id.ok_or_else(|| Error::Protocol("stream header without id".into()))?;
    let mut bytes = Vec::with_capacity(128);
    Element::from(Handshake::from_stream_id_and_password(id, &cfg.secret))
        .write_to(&mut bytes)
        .map_err(|e| Error::Serialize(e.to_string()))?;
    if let Err(e) = conn.write(&bytes).await {
        // The server may have said why before closing.
        return Err(conn.stream_error_soon().await.unwrap_or(e));
    }
    match conn.next_event().await? {
        StreamEvent::Stanza(el) if is_handshake_ok(&el) => Ok(conn),
        StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => Err(parse_stream_error(&el)),
        StreamEvent::Stanza(el) => Err(Error::Protocol(format!(
            "expected <handshake/>, got <{} xmlns='{}'>",
            el.name(),
            el.ns()
        ))),
        StreamEvent::Chat(_) => Err(Error::Protocol(
            "expected <handshake/>, got <message xmlns='jabber:component:accept'>".into(),
        )),
        StreamEvent::Closed => Err(Error::StreamClosed),
        StreamEvent::Opened(_) => Err(Error::Protocol("second stream header".into())),
    }
}

/// One connection's halves and parser state.
struct Conn<Io> {
    rd: ReadHalf<Io>,
    wr: WriteHalf<Io>,
    reader: StreamReader,
    pending: VecDeque<StreamEvent>,
    /// A parse error met after some complete stanzas; reported once those are out.
    failed: Option<Error>,
    buf: Box<[u8]>,
    last_rx: Instant,
    write_timeout: Duration,
}

impl<Io: AsyncRead + AsyncWrite + Send + Unpin> Conn<Io> {
    fn new(io: Io, cfg: &ComponentConfig) -> Self {
        let (rd, wr) = tokio::io::split(io);
        Self {
            rd,
            wr,
            reader: StreamReader::new(cfg.max_stanza),
            pending: VecDeque::new(),
            failed: None,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            last_rx: Instant::now(),
            // A server that takes no bytes for this long is as dead as a silent one.
            write_timeout: cfg.keepalive.saturating_mul(2),
        }
    }

    /// The next stream event. Cancel-safe: the only await is the socket read.
    async fn next_event(&mut self) -> Result<StreamEvent, Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            let n = self.rd.read(&mut self.buf).await.map_err(Error::Io)?;
            if n == 0 {
                return Err(Error::ConnectionLost);
            }
            self.last_rx = Instant::now();
            if let Err(e) = self.reader.feed(&self.buf[..n], &mut self.pending) {
                self.failed = Some(e);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let write = async {
            self.wr.write_all(bytes).await?;
            self.wr.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Io(e)),
            Err(_) => Err(Error::PeerDead(self.write_timeout)),
        }
    }

    /// A stream error that is already buffered or arrives within a second; consumes
    /// the next event either way (only for a stream that is failing anyway).
    async fn stream_error_soon(&mut self) -> Option<Error> {
        match timeout(Duration::from_secs(1), self.next_event()).await {
            Ok(Ok(StreamEvent::Stanza(el))) if el.is("error", ns::STREAM) => {
                Some(parse_stream_error(&el))
            }
            _ => None,
        }
    }

    /// For goodbyes on a stream that is ending anyway.
    async fn write_best_effort(&mut self, text: &str) {
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.wr.write_all(text.as_bytes()).await;
            let _ = self.wr.flush().await;
        })
        .await;
    }

    /// Our `</stream:stream>`, then the server's (or EOF), for at most `CLOSE_WAIT`.
    async fn close(&mut self) {
        self.write_best_effort(stream::CLOSE).await;
        let drain = async {
            loop {
                match self.next_event().await {
                    Ok(StreamEvent::Closed) | Err(_) => break,
                    Ok(_) => debug!("stanza arrived while closing; dropped"),
                }
            }
        };
        if timeout(CLOSE_WAIT, drain).await.is_err() {
            debug!("server did not close its stream in time");
        }
        let _ = self.wr.shutdown().await;
    }
}

/// Hands an event to the core; false when the link should stop (shutdown, or the core
/// dropped its handle).
async fn emit(
    events: &mpsc::Sender<LinkEvent>,
    stop: &mut watch::Receiver<bool>,
    event: LinkEvent,
) -> bool {
    tokio::select! {
        biased;
        () = wait_stop(stop) => false,
        sent = events.send(event) => sent.is_ok(),
    }
}

/// Resolves once shutdown is requested or the [`ComponentLink`] is gone. Cancel-safe.
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn stopping(stop: &mut watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// One clear line per failure; the three admin-fixable stream errors say what to fix.
fn log_failure(reason: &Error, retry_in: Duration, domain: &str) {
    match reason.stream_condition() {
        Some(DefinedCondition::NotAuthorized) => error!(
            ?retry_in,
            "server rejected the component secret (not-authorized): check that the gateway's \
             secret matches component_secret for {domain}"
        ),
        Some(DefinedCondition::Conflict) => error!(
            ?retry_in,
            "another connection already holds component {domain} (conflict): is a second \
             gateway instance running?"
        ),
        Some(DefinedCondition::HostUnknown) => error!(
            ?retry_in,
            "server does not serve {domain} as a component (host-unknown): add it to the \
             server configuration (Prosody: Component \"{domain}\")"
        ),
        _ => warn!(?retry_in, error = %reason, "component link down"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use tokio::io::DuplexStream;

    use super::*;

    const DOMAIN: &str = "sip.xmpp.test";
    const SECRET: &str = "cr3dential";
    /// sha1("sid-1" + SECRET), computed outside this crate.
    const SID1_HANDSHAKE: &str = "2df65a3b4881068b743d82b4efcbb0f8669c7271";
    const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:component:accept' id='sid-1' from='sip.xmpp.test'>";
    const LONG: Duration = Duration::from_secs(1000);

    /// Hands the server end of each new in-memory connection to the test.
    struct PipeConnector(mpsc::UnboundedSender<DuplexStream>);

    impl Connect for PipeConnector {
        type Io = DuplexStream;

        async fn connect(&mut self) -> io::Result<DuplexStream> {
            let (client, server) = tokio::io::duplex(64 * 1024);
            self.0
                .send(server)
                .map_err(|_| io::Error::other("test is over"))?;
            Ok(client)
        }
    }

    /// The scripted server side of one connection.
    struct FakeServer<Io = DuplexStream> {
        io: Io,
        reader: StreamReader,
        pending: VecDeque<StreamEvent>,
        failed: bool,
    }

    impl FakeServer {
        async fn accept(conns: &mut mpsc::UnboundedReceiver<DuplexStream>) -> Self {
            let io = timeout(LONG * 10, conns.recv())
                .await
                .expect("no connection attempt")
                .expect("connector gone");
            Self::over(io)
        }
    }

    impl<Io: AsyncRead + AsyncWrite + Unpin> FakeServer<Io> {
        fn over(io: Io) -> Self {
            Self {
                io,
                reader: StreamReader::new(1 << 20),
                pending: VecDeque::new(),
                failed: false,
            }
        }

        async fn send(&mut self, text: &str) {
            self.io.write_all(text.as_bytes()).await.unwrap();
        }

        /// The next thing the component sent; `None` on EOF.
        async fn next(&mut self) -> Option<StreamEvent> {
            loop {
                if let Some(ev) = self.pending.pop_front() {
                    return Some(ev);
                }
                let mut buf = [0u8; 4096];
                let n = self.io.read(&mut buf).await.unwrap_or(0);
                if n == 0 || self.failed {
                    return None;
                }
                if self.reader.feed(&buf[..n], &mut self.pending).is_err() {
                    self.failed = true;
                }
            }
        }

        async fn next_stanza(&mut self) -> Element {
            match self.next().await {
                Some(StreamEvent::Stanza(el)) => el,
                Some(StreamEvent::Chat(chat)) => chat.into_element(),
                other => panic!("expected a stanza, got {other:?}"),
            }
        }

        /// Reads the component's header and checks its `to`.
        async fn open(&mut self) {
            let Some(StreamEvent::Opened(h)) = self.next().await else {
                panic!("no stream header")
            };
            assert_eq!(h.attr("to"), Some(DOMAIN));
            assert!(h.ns() == ns::STREAM);
        }

        /// Header, handshake check, and `reply` as the handshake answer.
        async fn handshake_with(&mut self, reply: &str) {
            self.open().await;
            self.send(SERVER_HEADER).await;
            let hs = self.next_stanza().await;
            assert!(hs.is("handshake", ns::COMPONENT));
            assert_eq!(hs.text(), SID1_HANDSHAKE);
            self.send(reply).await;
        }

        async fn handshake(&mut self) {
            self.handshake_with("<handshake/>").await;
        }

        /// All raw bytes until EOF.
        async fn rest(&mut self) -> String {
            let mut out = Vec::new();
            let _ = timeout(LONG, self.io.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    fn config() -> ComponentConfig {
        let mut cfg = ComponentConfig::new("unused", 0, DOMAIN, SECRET);
        cfg.keepalive = LONG;
        cfg.features = vec!["urn:xmpp:receipts".into()];
        cfg
    }

    fn start(cfg: ComponentConfig) -> (ComponentLink, mpsc::UnboundedReceiver<DuplexStream>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ComponentLink::spawn_with(cfg, PipeConnector(tx)), rx)
    }

    async fn event(link: &mut ComponentLink) -> LinkEvent {
        timeout(LONG * 10, link.next_event())
            .await
            .expect("no event")
            .expect("link ended")
    }

    async fn disconnected(link: &mut ComponentLink) -> (Error, Duration) {
        match event(link).await {
            LinkEvent::Disconnected { reason, retry_in } => (reason, retry_in),
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    async fn connected(link: &mut ComponentLink) {
        let ev = event(link).await;
        assert!(matches!(ev, LinkEvent::Connected), "{ev:?}");
    }

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    const STREAM_ERROR: &str = "<stream:error><{}xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";

    fn stream_error(condition: &str) -> String {
        STREAM_ERROR.replace("{}", &format!("{condition} "))
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_success_self_closing() {
        let (mut link, mut conns) = start(config());
        let sender = link.sender();
        assert!(!sender.is_connected());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        assert!(sender.is_connected());
    }

    /// Real time: paused time would fire the connect timeout while waiting on real I/O.
    #[tokio::test]
    async fn tcp_connector_reaches_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = config();
        cfg.host = "127.0.0.1".into();
        cfg.port = port;
        let mut link = ComponentLink::spawn(cfg);
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::over(tcp);
        server.handshake().await;
        connected(&mut link).await;
        let closer = tokio::spawn(async move {
            assert!(matches!(server.next().await, Some(StreamEvent::Closed)));
            server.send("</stream:stream>").await;
        });
        link.shutdown().await;
        closer.await.unwrap();
    }

    #[tokio::test]
    async fn refused_connection_is_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut cfg = config();
        cfg.host = "127.0.0.1".into();
        cfg.port = port;
        let mut link = ComponentLink::spawn(cfg);
        let (reason, retry_in) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::Connect(_)), "{reason:?}");
        assert!(retry_in <= Duration::from_secs(1));
        link.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_success_jabberd2_form() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake_with("<handshake></handshake>").await;
        connected(&mut link).await;
    }

    #[tokio::test(start_paused = true)]
    async fn stanzas_in_the_handshake_packet_are_kept() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server
            .handshake_with("<handshake/><message from='a@xmpp.test' to='b@sip.xmpp.test'><body>hi</body></message>")
            .await;
        connected(&mut link).await;
        let LinkEvent::Chat(msg) = event(&mut link).await else {
            panic!()
        };
        assert_eq!(msg.to.as_deref(), Some("b@sip.xmpp.test"));
    }

    #[tokio::test(start_paused = true)]
    async fn bad_secret_is_not_authorized_and_waits_at_cap() {
        let mut cfg = config();
        cfg.backoff_max = Duration::from_secs(60);
        let (mut link, mut conns) = start(cfg);
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake_with(&stream_error("not-authorized")).await;
        let failed_at = Instant::now();
        let (reason, retry_in) = disconnected(&mut link).await;
        assert_eq!(
            reason.stream_condition(),
            Some(&DefinedCondition::NotAuthorized)
        );
        assert!(retry_in >= Duration::from_secs(30), "{retry_in:?}");
        // No spinning: the next attempt comes only after the delay.
        let mut server = FakeServer::accept(&mut conns).await;
        assert!(failed_at.elapsed() >= Duration::from_secs(30));
        server.handshake_with(&stream_error("not-authorized")).await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(reason.needs_admin());
    }

    #[tokio::test(start_paused = true)]
    async fn conflict_is_reported_and_backs_off() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake_with(&stream_error("conflict")).await;
        let (reason, retry_in) = disconnected(&mut link).await;
        assert_eq!(reason.stream_condition(), Some(&DefinedCondition::Conflict));
        assert!(retry_in <= Duration::from_secs(1));
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake_with(&stream_error("conflict")).await;
        let (_, retry_in) = disconnected(&mut link).await;
        assert!(retry_in >= Duration::from_secs(1) && retry_in <= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn host_unknown_before_handshake() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.open().await;
        // Prosody's answer for a domain that is not a component: a header without id,
        // the error and the close, in one packet.
        let header = SERVER_HEADER.replace(" id='sid-1'", "");
        server
            .send(&format!("{header}{}", stream_error("host-unknown")))
            .await;
        let (reason, _) = disconnected(&mut link).await;
        assert_eq!(
            reason.stream_condition(),
            Some(&DefinedCondition::HostUnknown)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn error_right_after_header() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.open().await;
        server
            .send(&format!(
                "{SERVER_HEADER}{}",
                stream_error("system-shutdown")
            ))
            .await;
        let (reason, _) = disconnected(&mut link).await;
        assert_eq!(
            reason.stream_condition(),
            Some(&DefinedCondition::SystemShutdown)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn header_without_id_is_protocol_error() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.open().await;
        server.send(&SERVER_HEADER.replace(" id='sid-1'", "")).await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::Protocol(_)), "{reason:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn malformed_stanza_is_not_a_close() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        server
            .send("<message from='a@xmpp.test' to='b@sip.xmpp.test'><body>x</bod></message>")
            .await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::Malformed(_)), "{reason:?}");
        assert!(!link.sender().is_connected());
        assert!(
            server
                .rest()
                .await
                .contains("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
        );
        // And it reconnects.
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
    }

    #[tokio::test(start_paused = true)]
    async fn oversize_stanza_is_policy_violation() {
        let mut cfg = config();
        cfg.max_stanza = 8192;
        let (mut link, mut conns) = start(cfg);
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        let body = "x".repeat(10_000);
        server
            .send(&format!(
                "<message from='a@xmpp.test' to='b@sip.xmpp.test'><body>{body}</body></message>"
            ))
            .await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(
            matches!(reason, Error::StanzaTooLarge { limit: 8192 }),
            "{reason:?}"
        );
        assert!(server.rest().await.contains("<policy-violation "));
    }

    #[tokio::test(start_paused = true)]
    async fn server_close_is_answered_and_reported() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        server.send("</stream:stream>").await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::StreamClosed), "{reason:?}");
        assert!(matches!(server.next().await, Some(StreamEvent::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn eof_is_connection_lost() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        drop(server);
        let (reason, _) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::ConnectionLost), "{reason:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_handshake_times_out() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.open().await;
        let (reason, _) = disconnected(&mut link).await;
        assert!(matches!(reason, Error::HandshakeTimeout(_)), "{reason:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_and_dead_peer() {
        let mut cfg = config();
        cfg.keepalive = Duration::from_secs(10);
        let (mut link, mut conns) = start(cfg);
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        let up = Instant::now();
        // A live server answers the pings: the link stays up.
        for _ in 0..5 {
            let ping = server.next_stanza().await;
            assert!(ping.has_child("ping", ns::PING));
            assert_eq!(ping.attr("from"), Some(DOMAIN));
            assert_eq!(ping.attr("to"), Some("xmpp.test"));
            let id = ping.attr("id").unwrap();
            server
                .send(&format!(
                    "<iq type='result' id='{id}' from='xmpp.test' to='{DOMAIN}'/>"
                ))
                .await;
        }
        assert!(up.elapsed() >= Duration::from_secs(50));
        assert!(link.sender().is_connected());
        // Then it goes silent: dead within 2 keepalives of the last byte.
        let silent = Instant::now();
        let (reason, _) = disconnected(&mut link).await;
        assert!(
            matches!(reason, Error::PeerDead(d) if d == Duration::from_secs(20)),
            "{reason:?}"
        );
        let waited = silent.elapsed();
        assert!(
            waited >= Duration::from_secs(19) && waited <= Duration::from_secs(21),
            "{waited:?}"
        );
        assert!(!link.sender().is_connected());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_disco_info_and_ping_itself() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        server
            .send(include_str!(
                "../../fixtures/xmpp/component-disco-info-get.xml"
            ))
            .await;
        let golden = include_str!("../../fixtures/xmpp/component-disco-info-result.xml");
        assert_eq!(server.next_stanza().await, el(golden.trim()));
        server
            .send("<iq type='get' id='p9' from='xmpp.test' to='sip.xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let pong = server.next_stanza().await;
        assert_eq!(
            pong,
            el(
                "<iq xmlns='jabber:component:accept' type='result' id='p9' from='sip.xmpp.test' to='xmpp.test'/>"
            )
        );
        // Neither reached the core; the next stanza for a user does.
        server
            .send("<message from='a@xmpp.test/r' to='bob@sip.xmpp.test'><body>hi</body></message>")
            .await;
        let LinkEvent::Chat(msg) = event(&mut link).await else {
            panic!()
        };
        assert_eq!(msg.body, "hi");
    }

    #[tokio::test(start_paused = true)]
    async fn send_enforces_from_and_to_and_link_state() {
        let (mut link, mut conns) = start(config());
        let sender = link.sender();
        assert_eq!(sender.domain(), DOMAIN);
        let good = "<message xmlns='jabber:component:accept' from='alice@sip.xmpp.test' to='bob@xmpp.test'><body>1</body></message>";
        assert!(matches!(sender.send(el(good)), Err(Error::NotConnected)));
        let no_from = el("<message xmlns='jabber:component:accept' to='bob@xmpp.test'/>");
        assert!(matches!(
            sender.send(no_from.clone()),
            Err(Error::MissingFrom)
        ));
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        assert!(matches!(sender.send(no_from), Err(Error::MissingFrom)));
        let foreign = el(
            "<message xmlns='jabber:component:accept' from='alice@xmpp.test' to='bob@xmpp.test'/>",
        );
        let err = sender.send(foreign).unwrap_err();
        assert!(matches!(err, Error::ForeignFrom { .. }) && err.is_bad_stanza());
        let no_to = el("<presence xmlns='jabber:component:accept' from='alice@sip.xmpp.test'/>");
        assert!(matches!(sender.send(no_to), Err(Error::MissingTo)));
        sender.send(el(good)).unwrap();
        assert_eq!(server.next_stanza().await, el(good));
        // Down again: fails fast.
        server.send("</stream:stream>").await;
        disconnected(&mut link).await;
        assert!(matches!(sender.send(el(good)), Err(Error::NotConnected)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_stream_cleanly() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        let sender = link.sender();
        let closer = tokio::spawn(async move {
            assert!(matches!(server.next().await, Some(StreamEvent::Closed)));
            server.send("</stream:stream>").await;
            server
        });
        let begun = Instant::now();
        link.shutdown().await;
        assert!(
            begun.elapsed() < CLOSE_WAIT,
            "waited for the timeout, not the server"
        );
        assert!(!sender.is_connected());
        assert!(matches!(
            sender.send(el(
                "<message xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='b@xmpp.test'/>"
            )),
            Err(Error::NotConnected)
        ));
        let mut server = closer.await.unwrap();
        assert_eq!(server.rest().await, "");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_does_not_hang_on_a_mute_server() {
        let (mut link, mut conns) = start(config());
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake().await;
        connected(&mut link).await;
        let begun = Instant::now();
        link.shutdown().await;
        assert!(begun.elapsed() <= CLOSE_WAIT + Duration::from_secs(1));
        assert!(matches!(server.next().await, Some(StreamEvent::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_backing_off() {
        let mut cfg = config();
        cfg.backoff_min = Duration::from_secs(30);
        let (mut link, mut conns) = start(cfg);
        let mut server = FakeServer::accept(&mut conns).await;
        server.handshake_with(&stream_error("conflict")).await;
        disconnected(&mut link).await;
        let begun = Instant::now();
        link.shutdown().await;
        assert!(begun.elapsed() < Duration::from_secs(1));
    }
}
