//! Non-INVITE transactions (RFC 3261 section 17.1.2, 17.2.2 and 17.2.3) as sans-IO state
//! machines: every input takes `now`, outputs are returned, and `poll_timeout` says when
//! to call `handle_timeout` next. The gateway never sends or accepts INVITE.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;
use crate::header::{Name, Via};
use crate::message::{Method, Request, Response, StatusCode, push_hex};
use crate::route::{Target, answer_target, response_target};
use crate::uri::{Host, is_token_char, split_byte};

/// The RFC 3261 branch prefix (section 8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";
/// RTT estimate (RFC 3261 17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests.
pub const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);
/// How late [`TransactionTable::poll_timeout`] reports Timer J and Timer K. Those timers
/// only end transactions that are done, one per transaction: reported on time they would
/// wake the loop at every tick of its slack (20 ms in sipjab), at any rate. This late, their
/// expiries share five wake-ups a second, a transaction absorbs retransmissions that much
/// longer, and a batch stays small enough (800 at 4,000 requests/s) not to hold up the
/// messages behind it.
pub const CLEANUP_DELAY: Duration = Duration::from_millis(200);

/// A map keyed by the transactions the gateway starts. Their branches are its own (a
/// random nonce and a counter), so no peer can fill such a map with colliding keys, and a
/// fast hash (foldhash, seeded per process) serves instead of SipHash: a message sent and
/// answered looks its transaction up about six times.
pub type TransactionMap<V> = HashMap<TransactionId, V, foldhash::fast::RandomState>;

/// What identifies a transaction (RFC 3261 17.1.3 and 17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    /// Top Via branch, or for an RFC 2543 request a digest of the fields that match it.
    pub branch: String,
    /// Top Via sent-by, lower-cased.
    pub sent_by: String,
    /// CSeq method for responses, request method for requests (ACK counts as INVITE).
    pub method: Method,
}

impl TransactionId {
    /// The server-side key of a request: branch + sent-by + method when the branch has
    /// the magic cookie; otherwise an RFC 2543-style key (17.2.3) from Request-URI,
    /// From tag, To tag, Call-ID, CSeq and the top Via.
    pub fn for_request(req: &Request) -> Result<Self, Error> {
        let via = req
            .headers
            .top_via()?
            .ok_or_else(|| Error::Transaction("no Via".into()))?;
        let method = key_method(&req.method).clone();
        let sent_by = lowercase(via.sent_by());
        let branch = match rfc3261_branch(via) {
            Some(b) => b.to_owned(),
            None => {
                let mut h = DefaultHasher::new();
                req.uri.to_string().hash(&mut h);
                let tag = |r: Result<Option<&crate::NameAddr>, Error>| {
                    r.ok().flatten().and_then(|a| a.tag().map(str::to_owned))
                };
                tag(req.headers.from()).hash(&mut h);
                tag(req.headers.to()).hash(&mut h);
                req.headers.call_id().ok().flatten().hash(&mut h);
                req.headers
                    .cseq()
                    .ok()
                    .flatten()
                    .map(|c| c.seq)
                    .hash(&mut h);
                via.to_string().hash(&mut h);
                format!("rfc2543-{:016x}", h.finish())
            }
        };
        Ok(Self {
            branch,
            sent_by,
            method,
        })
    }

    /// The client-side key of a response: top Via branch + sent-by + CSeq method.
    pub fn for_response(resp: &Response) -> Result<Self, Error> {
        let via = resp
            .headers
            .top_via()?
            .ok_or_else(|| Error::Transaction("no Via".into()))?;
        let cseq = resp
            .headers
            .cseq()?
            .ok_or_else(|| Error::Transaction("no CSeq".into()))?;
        let branch = via
            .branch()
            .ok_or_else(|| Error::Transaction("no branch".into()))?;
        Ok(Self {
            branch: branch.to_owned(),
            sent_by: lowercase(via.sent_by()),
            method: cseq.method,
        })
    }

    /// [`TransactionId::for_response`] read from the top Via's text, without parsing it:
    /// the answer to a request of the gateway's carries the gateway's own Via as it wrote
    /// it, and parsing that cost about 3,500 instructions a response, a twentieth of an
    /// XMPP -> SIP message. `None` for anything but that plain form (`SIP/2.0/`, an IPv4
    /// sent-by written the one way the parser writes it back, `name[=value]` parameters of
    /// token characters, one `branch` spelled so), which the parser then judges; where this
    /// gives a key at all it is the parser's.
    pub(crate) fn for_plain_response(resp: &Response) -> Option<Self> {
        let value = resp.headers.first_value(Name::VIA)?;
        let (head, params) = split_byte(value, b';')?;
        let token = |t: &str| !t.is_empty() && t.bytes().all(is_token_char);
        let (transport, sent_by) = split_byte(head.strip_prefix("SIP/2.0/")?, b' ')?;
        if !token(transport) {
            return None;
        }
        let (host, port) = match split_byte(sent_by, b':') {
            Some((host, port)) => (host, Some(port)),
            None => (sent_by, None),
        };
        // Rust's reader takes only the canonical form: four decimal octets, no leading zero.
        host.parse::<std::net::Ipv4Addr>().ok()?;
        if let Some(port) = port
            && (port.starts_with('0') || port.parse::<u16>().is_err())
        {
            return None;
        }
        let mut branch = None;
        for param in params.split(';') {
            let (name, value) = match split_byte(param, b'=') {
                Some((name, value)) => (name, Some(value)),
                None => (param, None),
            };
            if !token(name) || !value.is_none_or(token) {
                return None;
            }
            if name.eq_ignore_ascii_case("branch") {
                // One branch, spelled as the gateway writes it.
                if name != "branch" || branch.is_some() {
                    return None;
                }
                branch = Some(value?);
            }
        }
        let branch = branch.filter(|b| is_rfc3261_branch(b))?;
        let method = resp.headers.cseq().ok()??.method;
        Some(Self {
            branch: branch.to_owned(),
            sent_by: sent_by.to_owned(),
            method,
        })
    }
}

/// The top Via's branch when it is an RFC 3261 one ([`is_rfc3261_branch`]).
fn rfc3261_branch(via: &Via) -> Option<&str> {
    via.branch().filter(|b| is_rfc3261_branch(b))
}

/// An RFC 3261 branch: the magic cookie and more after it.
fn is_rfc3261_branch(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE) && branch.len() > MAGIC_COOKIE.len()
}

/// The method a server transaction is keyed by: an ACK counts as INVITE.
fn key_method(method: &Method) -> &Method {
    match method {
        Method::Ack => &Method::Invite,
        m => m,
    }
}

/// `s` in ASCII lower case, in place (sent-by hosts compare without regard to case).
fn lowercase(mut s: String) -> String {
    s.make_ascii_lowercase();
    s
}

/// States of RFC 3261 figures 6 and 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Request sent or received, nothing answered yet.
    Trying,
    /// A provisional response went by.
    Proceeding,
    /// A final response went by; absorbing retransmissions.
    Completed,
    /// Done; the table drops it.
    Terminated,
}

/// A message as sent on the wire, kept for retransmission. Shared, so handing it to the
/// driver copies nothing; `Arc` rather than `Rc` keeps the driver's future `Send`.
pub type WireBytes = Arc<[u8]>;

/// A non-INVITE server transaction (RFC 3261 17.2.2).
///
/// Over UDP a transaction lives 64*T1 after its final response and there can be 100,000
/// of them, so the last response is kept as little as resending it needs (see `Sent`).
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    source: Target,
    state: State,
    last_response: Option<Sent>,
    timer_j: Option<Instant>,
}

/// Reason phrases kept without an allocation of their own.
const COMMON_REASONS: &[&str] = &["OK", "Accepted", "Trying"];

/// The last response of a server transaction, kept for retransmissions of the request.
#[derive(Debug, Clone)]
enum Sent {
    /// Exactly [`Response::for_request`] of the request (most answers, 202 and 200
    /// included): rebuilt from the retransmission, whose copied headers (Via, From, To,
    /// Call-ID, CSeq) are the original's, so the bytes are the same. A dozen bytes
    /// instead of the ~700 of the wire form.
    Plain {
        status: StatusCode,
        reason: Cow<'static, str>,
    },
    /// Anything else (extra headers, a body, a To-tag of the TU's): as sent. Boxed, as
    /// these are few and the plain ones many.
    Wire(Box<(Target, WireBytes)>),
}

impl ServerTransaction {
    /// A transaction for a request that came from `source`.
    pub fn new(source: Target) -> Self {
        Self {
            source,
            state: State::Trying,
            last_response: None,
            timer_j: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A retransmission `req` of the request arrived: the last response to send again, if
    /// any, with its target.
    pub fn handle_retransmission(&self, req: &Request) -> Option<(Target, WireBytes)> {
        match self.state {
            State::Proceeding | State::Completed => match self.last_response.as_ref()? {
                Sent::Plain { status, reason } => Some(self.plain_answer(req, *status, reason)),
                Sent::Wire(sent) => Some((sent.0, sent.1.clone())),
            },
            State::Trying | State::Terminated => None,
        }
    }

    /// The TU sends `resp` to `req`; a final one starts Timer J (64*T1 over UDP, 0 over
    /// TCP). Returns where it goes ([`response_target`]) and its wire form, which the
    /// driver sends as is.
    pub fn send_response(
        &mut self,
        req: &Request,
        resp: &Response,
        now: Instant,
    ) -> Result<(Target, WireBytes), Error> {
        self.check_open()?;
        let target = response_target(resp, self.source);
        let bytes = WireBytes::from(resp.to_bytes());
        self.last_response = Some(if resp.is_plain_answer_to(req) {
            Sent::Plain {
                status: resp.status,
                reason: COMMON_REASONS
                    .iter()
                    .find(|r| **r == resp.reason)
                    .map_or_else(|| Cow::Owned(resp.reason.clone()), |r| Cow::Borrowed(*r)),
            }
        } else {
            Sent::Wire(Box::new((target, bytes.clone())))
        });
        self.advance(resp.status, now);
        Ok((target, bytes))
    }

    /// [`ServerTransaction::send_response`] of [`Response::for_request`]`(req, status,
    /// reason)`, written without building it ([`Response::plain_answer_bytes`]).
    pub fn send_plain_answer(
        &mut self,
        req: &Request,
        status: StatusCode,
        reason: &'static str,
        now: Instant,
    ) -> Result<(Target, WireBytes), Error> {
        self.check_open()?;
        let sent = self.plain_answer(req, status, reason);
        self.last_response = Some(Sent::Plain {
            status,
            reason: Cow::Borrowed(reason),
        });
        self.advance(status, now);
        Ok(sent)
    }

    fn plain_answer(&self, req: &Request, status: StatusCode, reason: &str) -> (Target, WireBytes) {
        (
            answer_target(req, self.source),
            WireBytes::from(Response::plain_answer_bytes(req, status, reason)),
        )
    }

    fn check_open(&self) -> Result<(), Error> {
        if matches!(self.state, State::Completed | State::Terminated) {
            return Err(Error::Transaction("final response already sent".into()));
        }
        Ok(())
    }

    /// The state after sending a response with `status`.
    fn advance(&mut self, status: StatusCode, now: Instant) {
        if status.is_provisional() {
            self.state = State::Proceeding;
        } else if self.source.transport.is_reliable() {
            self.state = State::Terminated;
        } else {
            self.state = State::Completed;
            self.timer_j = Some(now + 64 * T1);
        }
    }

    /// Fires Timer J.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Completed && self.timer_j.is_some_and(|j| now >= j) {
            self.state = State::Terminated;
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == State::Completed)
            .then_some(self.timer_j)
            .flatten()
    }
}

/// What a client transaction asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send the request again (Timer E): its wire form.
    Retransmit(WireBytes),
    /// Timer F fired before a final response: the TU treats it as 408.
    Timeout,
}

/// A non-INVITE client transaction (RFC 3261 17.1.2). It keeps the request serialized,
/// for Timer E retransmissions.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    /// Kept for Timer E until a final response; Completed only absorbs retransmitted
    /// responses (RFC 3261 17.1.2.2), so the bytes go then.
    request: Option<WireBytes>,
    target: Target,
    state: State,
    timer_e: Option<Instant>,
    interval: Duration,
    timer_f: Instant,
    timer_k: Option<Instant>,
}

impl ClientTransaction {
    /// Starts the transaction; the caller sends `request` (a serialized request) to
    /// `target` once now.
    pub fn new(request: WireBytes, target: Target, now: Instant) -> Self {
        let reliable = target.transport.is_reliable();
        Self {
            request: Some(request),
            target,
            state: State::Trying,
            timer_e: (!reliable).then(|| now + T1),
            interval: T1,
            timer_f: now + 64 * T1,
            timer_k: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Where the request goes.
    pub fn target(&self) -> Target {
        self.target
    }

    /// A response matched this transaction: `Some` to pass up to the TU, `None` when it
    /// is absorbed (a retransmitted final response).
    pub fn handle_response(&mut self, resp: Response, now: Instant) -> Option<Response> {
        match self.state {
            State::Trying | State::Proceeding => {
                if resp.status.is_provisional() {
                    self.state = State::Proceeding;
                } else {
                    // A final response: nothing is retransmitted any more.
                    self.request = None;
                    if self.target.transport.is_reliable() {
                        self.state = State::Terminated;
                    } else {
                        self.state = State::Completed;
                        self.timer_e = None;
                        self.timer_k = Some(now + T4);
                    }
                }
                Some(resp)
            }
            State::Completed | State::Terminated => None,
        }
    }

    /// Fires due timers: E (retransmit, doubling up to T2, T2 once Proceeding),
    /// F (timeout) and K (end of Completed).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ClientOutput> {
        match self.state {
            State::Trying | State::Proceeding => {
                if now >= self.timer_f {
                    self.state = State::Terminated;
                    return Some(ClientOutput::Timeout);
                }
                match self.timer_e {
                    Some(e) if now >= e => {
                        self.interval = if self.state == State::Proceeding {
                            T2
                        } else {
                            (self.interval * 2).min(T2)
                        };
                        self.timer_e = Some(now + self.interval);
                        self.request.clone().map(ClientOutput::Retransmit)
                    }
                    _ => None,
                }
            }
            State::Completed => {
                if self.timer_k.is_some_and(|k| now >= k) {
                    self.state = State::Terminated;
                }
                None
            }
            State::Terminated => None,
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Trying | State::Proceeding => Some(match self.timer_e {
                Some(e) => e.min(self.timer_f),
                None => self.timer_f,
            }),
            State::Completed => self.timer_k,
            State::Terminated => None,
        }
    }
}

/// What happened to an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDisposition {
    /// A new transaction: pass the request to the TU, answer with `send_response`.
    New(ServerId),
    /// A retransmission: not passed up; send these stored response bytes again, if any,
    /// to that target (already worked out by [`response_target`]).
    Retransmission(Option<(Target, WireBytes)>),
}

/// What the table's timers ask of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableOutput {
    /// Send this request again.
    Retransmit {
        /// The client transaction.
        id: TransactionId,
        /// Where to send it.
        target: Target,
        /// The request as first sent.
        request: WireBytes,
    },
    /// No final response in time (Timer F): treat as 408 Request Timeout.
    Timeout {
        /// The client transaction.
        id: TransactionId,
    },
}

/// All live transactions, keyed by [`TransactionId`].
///
/// Client timers sit in a heap of deadlines, so finding the next one and firing the due
/// ones costs O(log n) however many transactions are live. A deadline that has moved or
/// whose transaction is gone stays in the heap until its time and is then skipped. A
/// completed transaction waits for Timer K in a queue instead, so the heap holds only the
/// transactions still waiting for their final response. Map keys, heap and queue entries
/// share one [`TransactionId`] allocation through an `Arc`.
///
/// Server transactions are the many ones (at 4,000 requests/s Timer J keeps over 100,000),
/// so they are kept small and allocate nothing of their own: keyed by a 128-bit digest of
/// the [`TransactionId`] (`ServerKeys`), and their only timer, J, is always 64*T1 after
/// the response, so a queue in sending order holds the deadlines, oldest first.
#[derive(Debug, Default)]
pub struct TransactionTable {
    servers: HashMap<u128, ServerTransaction, BuildHasherDefault<DigestHasher>>,
    timer_j: VecDeque<(Instant, u128)>,
    server_keys: ServerKeys,
    clients: HashMap<Arc<TransactionId>, ClientTransaction, foldhash::fast::RandomState>,
    /// Client deadlines, each with a number of its own, so equal deadlines (all the
    /// requests of one turn of the loop) are ordered without comparing their ids.
    timers: BinaryHeap<Reverse<(Instant, u64, Arc<TransactionId>)>>,
    /// The number of the heap's top entry once it was found current: until that
    /// transaction changes, [`poll_timeout`](Self::poll_timeout) needs no map lookup.
    current_top: Option<u64>,
    /// Completed client transactions in the order they completed. Their only timer, K,
    /// is always T4 after that, so a queue holds the deadlines (as for Timer J) and the
    /// heap keeps only the few transactions still waiting for a final response.
    timer_k: VecDeque<(Instant, Arc<TransactionId>)>,
    timer_count: u64,
    nonce: u64,
    counter: u64,
}

/// Fires the due deadlines of a queue kept in deadline order (Timer J, Timer K): `fire`
/// tells each transaction still live the time and says whether it ended, and an ended one
/// leaves `live`.
fn fire_queue<K: Hash + Eq, V, S: BuildHasher>(
    queue: &mut VecDeque<(Instant, K)>,
    live: &mut HashMap<K, V, S>,
    now: Instant,
    mut fire: impl FnMut(&mut V) -> bool,
) {
    while queue.front().is_some_and(|(at, _)| *at <= now) {
        let Some((_, key)) = queue.pop_front() else {
            break;
        };
        if let Some(t) = live.get_mut(&key)
            && fire(t)
        {
            live.remove(&key);
        }
    }
}

/// A server transaction, as the table knows it: the key [`RequestDisposition::New`] hands
/// out for the answer, so the request's [`TransactionId`] is digested once, not again for
/// the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerId(u128);

/// Server transaction keys: a [`TransactionId`] hashed by two SipHashes with keys drawn at
/// random per table, 128 bits in all. Peers cannot aim at a collision without the keys, and
/// by chance one among a million live transactions has odds below 2^-88.
#[derive(Debug, Default)]
struct ServerKeys(RandomState, RandomState);

impl ServerKeys {
    fn key(&self, id: &TransactionId) -> u128 {
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }

    /// The key of the request's [`TransactionId`], hashed from its parsed top Via when the
    /// branch is an RFC 3261 one: building the id first (two strings, the sent-by written
    /// out and lower-cased) cost about 700 instructions a request. The parts are the id's,
    /// the sent-by as host (a name lower-cased) and port, so requests of one transaction
    /// get one key, and those of two transactions two keys, as by the id.
    fn request_key(&self, req: &Request) -> Result<u128, Error> {
        let via = req
            .headers
            .top_via()?
            .ok_or_else(|| Error::Transaction("no Via".into()))?;
        let Some(branch) = rfc3261_branch(via) else {
            return Ok(self.key(&TransactionId::for_request(req)?));
        };
        let method = key_method(&req.method);
        // The parts in one buffer, each ended where it cannot be taken for the next (no
        // branch or name holds 0xff): SipHash costs about as much per `write` call as per
        // eight bytes.
        let mut material = Vec::with_capacity(branch.len() + 64);
        material.extend_from_slice(branch.as_bytes());
        material.push(0xff);
        match &via.host {
            Host::Domain(name) => {
                material.push(0);
                material.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            }
            Host::Ipv4(a) => {
                material.push(1);
                material.extend_from_slice(&a.octets());
            }
            Host::Ipv6(a) => {
                material.push(2);
                material.extend_from_slice(&a.octets());
            }
        }
        material.push(0xff);
        match via.port {
            Some(port) => {
                material.push(1);
                material.extend_from_slice(&port.to_be_bytes());
            }
            None => material.push(0),
        }
        material.extend_from_slice(method.as_str().as_bytes());
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write(&material);
            h.finish()
        };
        Ok((u128::from(hash(&self.0)) << 64) | u128::from(hash(&self.1)))
    }
}

/// Hashes a server key, already a keyed digest, by its low 64 bits: hashing it again on
/// every lookup would buy nothing.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here; any other input still spreads.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

impl TransactionTable {
    /// An empty table; `nonce` (random, from the driver) makes our branches unique
    /// across restarts without this crate touching a random source.
    pub fn new(nonce: u64) -> Self {
        Self {
            nonce,
            ..Self::default()
        }
    }

    /// [`TransactionTable::new`] with room for `servers` server transactions and their
    /// Timer J deadlines: sized for the expected load (rate times 32 s), the map never
    /// rehashes while it fills, which would stall the loop for a moment at each doubling.
    ///
    /// The room is written once here, so its memory is resident from the start: the
    /// process does not grow while the table fills (`now` is only a filler value).
    pub fn with_capacity(nonce: u64, servers: usize, now: Instant) -> Self {
        let mut table = Self {
            servers: HashMap::with_capacity_and_hasher(servers, BuildHasherDefault::default()),
            timer_j: VecDeque::with_capacity(servers),
            ..Self::new(nonce)
        };
        let filler = || {
            ServerTransaction::new(Target {
                addr: (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                transport: crate::route::TransportKind::Udp,
            })
        };
        for key in 0..servers as u128 {
            table.servers.insert(key, filler());
        }
        table.servers.clear();
        table.timer_j.resize(servers, (now, 0));
        table.timer_j.clear();
        table
    }

    /// A fresh branch for a request we send (RFC 3261 8.1.1.7).
    pub fn new_branch(&mut self) -> String {
        self.counter += 1;
        let mut branch = String::with_capacity(MAGIC_COOKIE.len() + 33);
        branch.push_str(MAGIC_COOKIE);
        push_hex(&mut branch, self.nonce, 1);
        branch.push('.');
        push_hex(&mut branch, self.counter, 1);
        branch
    }

    /// Number of live transactions (server, client).
    pub fn len(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// An incoming request: new transaction, or a retransmission absorbed here.
    pub fn handle_request(
        &mut self,
        req: &Request,
        source: Target,
        _now: Instant,
    ) -> Result<RequestDisposition, Error> {
        if req.method == Method::Invite || req.method == Method::Ack {
            return Err(Error::Transaction(
                "INVITE transactions are not supported".into(),
            ));
        }
        let key = self.server_keys.request_key(req)?;
        if let Some(t) = self.servers.get(&key) {
            return Ok(RequestDisposition::Retransmission(
                t.handle_retransmission(req),
            ));
        }
        // Trying has no timer, so nothing to schedule yet.
        self.servers.insert(key, ServerTransaction::new(source));
        Ok(RequestDisposition::New(ServerId(key)))
    }

    /// The TU answers `req`'s server transaction; returns where the response goes (RFC 3261
    /// 18.2.2 and RFC 3581 through [`response_target`]: the same connection over TCP,
    /// `received`/`rport` or the sent-by port over UDP) and the bytes to send there, the
    /// same ones any retransmission of the request gets.
    pub fn send_response(
        &mut self,
        id: ServerId,
        req: &Request,
        resp: &Response,
        now: Instant,
    ) -> Result<(Target, WireBytes), Error> {
        self.answer(id, |t| t.send_response(req, resp, now))
    }

    /// [`TransactionTable::send_response`] of a plain answer
    /// ([`ServerTransaction::send_plain_answer`]): the 202 to every MESSAGE.
    pub fn send_plain_answer(
        &mut self,
        id: ServerId,
        req: &Request,
        status: StatusCode,
        reason: &'static str,
        now: Instant,
    ) -> Result<(Target, WireBytes), Error> {
        self.answer(id, |t| t.send_plain_answer(req, status, reason, now))
    }

    /// Sends an answer in transaction `id`, then files it by its new state.
    fn answer(
        &mut self,
        id: ServerId,
        send: impl FnOnce(&mut ServerTransaction) -> Result<(Target, WireBytes), Error>,
    ) -> Result<(Target, WireBytes), Error> {
        let ServerId(key) = id;
        let Some(t) = self.servers.get_mut(&key) else {
            return Err(Error::Transaction("no such server transaction".into()));
        };
        let sent = send(t)?;
        match t.state() {
            State::Terminated => {
                self.servers.remove(&key);
            }
            State::Completed => {
                if let Some(due) = t.poll_timeout() {
                    self.timer_j.push_back((due, key));
                }
            }
            State::Trying | State::Proceeding => {}
        }
        Ok(sent)
    }

    /// Starts a client transaction for `req`, whose top Via must carry a branch from
    /// [`new_branch`](Self::new_branch). Returns its key and the request serialized; the
    /// caller sends those bytes to `target` now, and Timer E resends them.
    pub fn send_request(
        &mut self,
        req: &Request,
        target: Target,
        now: Instant,
    ) -> Result<(TransactionId, WireBytes), Error> {
        let id = TransactionId::for_request(req)?;
        if !id.branch.starts_with(MAGIC_COOKIE) {
            return Err(Error::Transaction(
                "request without an RFC 3261 branch".into(),
            ));
        }
        if self.clients.contains_key(&id) {
            return Err(Error::Transaction("branch already in use".into()));
        }
        let bytes = WireBytes::from(req.to_bytes());
        let key = Arc::new(id.clone());
        let t = ClientTransaction::new(bytes.clone(), target, now);
        if let Some(due) = t.poll_timeout() {
            self.push_timer(due, Arc::clone(&key));
        }
        self.clients.insert(key, t);
        Ok((id, bytes))
    }

    /// An incoming response: `Some` to pass up to the TU with its transaction, `None`
    /// for a stray or retransmitted one.
    pub fn handle_response(
        &mut self,
        resp: Response,
        now: Instant,
    ) -> Option<(TransactionId, Response)> {
        // The plain reading first; the parser's when it finds no transaction.
        let id = match TransactionId::for_plain_response(&resp) {
            Some(id) if self.clients.contains_key(&id) => id,
            _ => TransactionId::for_response(&resp).ok()?,
        };
        self.changing(&id);
        let t = self.clients.get_mut(&id)?;
        let up = t.handle_response(resp, now);
        match (t.state(), &up) {
            (State::Terminated, _) => {
                self.clients.remove(&id);
            }
            // Just completed: Timer K's turn comes in the queue.
            (State::Completed, Some(_)) => {
                if let Some(due) = t.poll_timeout()
                    && let Some((key, _)) = self.clients.get_key_value(&id)
                {
                    self.timer_k.push_back((due, Arc::clone(key)));
                }
            }
            (State::Completed, None) => {}
            _ => self.schedule(&id),
        }
        up.map(|r| (id, r))
    }

    /// The transport could not send a client transaction's request (RFC 3261 §17.1.4):
    /// the transaction ends now and the TU treats it as a 503. `false` when there was no
    /// such transaction.
    pub fn fail_client(&mut self, id: &TransactionId) -> bool {
        self.changing(id);
        self.clients.remove(id).is_some()
    }

    /// Fires every due timer and forgets terminated transactions.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TableOutput> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            self.current_top = None;
            let Some(Reverse((_, _, id))) = self.timers.pop() else {
                break;
            };
            let Some(t) = self.clients.get_mut(&id) else {
                continue;
            };
            if t.poll_timeout().is_none_or(|due| due > now) {
                continue;
            }
            match t.handle_timeout(now) {
                Some(ClientOutput::Retransmit(request)) => {
                    out.push(TableOutput::Retransmit {
                        id: TransactionId::clone(&id),
                        target: t.target(),
                        request,
                    });
                }
                Some(ClientOutput::Timeout) => {
                    out.push(TableOutput::Timeout {
                        id: TransactionId::clone(&id),
                    });
                }
                None => {}
            }
            if t.state() == State::Terminated {
                self.clients.remove(&id);
            } else if let Some(due) = t.poll_timeout() {
                self.push_timer(due, id);
            }
        }
        fire_queue(&mut self.timer_k, &mut self.clients, now, |t| {
            t.handle_timeout(now);
            t.state() == State::Terminated
        });
        fire_queue(&mut self.timer_j, &mut self.servers, now, |t| {
            t.handle_timeout(now);
            t.state() == State::Terminated
        });
        out
    }

    /// The earliest timer of any transaction, Timer J and Timer K [`CLEANUP_DELAY`] late.
    /// Client deadlines that have moved or whose transaction is gone are dropped from the
    /// heap here, so the answer is exact.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut client = None;
        while let Some(Reverse((at, number, id))) = self.timers.peek() {
            if self.current_top == Some(*number) {
                client = Some(*at);
                break;
            }
            let current = self
                .clients
                .get(id.as_ref())
                .and_then(ClientTransaction::poll_timeout);
            if current == Some(*at) {
                self.current_top = Some(*number);
                client = Some(*at);
                break;
            }
            self.timers.pop();
        }
        [
            client,
            self.timer_k.front().map(|(at, _)| *at + CLEANUP_DELAY),
            self.timer_j.front().map(|(at, _)| *at + CLEANUP_DELAY),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Puts the client transaction's next deadline, if any, in the heap, sharing the map's
    /// key.
    fn schedule(&mut self, id: &TransactionId) {
        if let Some((due, key)) = self
            .clients
            .get_key_value(id)
            .and_then(|(k, t)| Some((t.poll_timeout()?, k)))
        {
            let key = Arc::clone(key);
            self.push_timer(due, key);
        }
    }

    fn push_timer(&mut self, due: Instant, id: Arc<TransactionId>) {
        self.timer_count += 1;
        self.timers.push(Reverse((due, self.timer_count, id)));
    }

    /// Client transaction `id` is about to change or go: if its deadline is the heap's top
    /// that was found current, it must be looked at again.
    fn changing(&mut self, id: &TransactionId) {
        if let Some(Reverse((_, _, top))) = self.timers.peek()
            && top.as_ref() == id
        {
            self.current_top = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::TransportKind;
    use crate::{Message, StatusCode, parse_datagram};

    fn req(branch: &str, method: &str) -> Request {
        let branch = if branch.is_empty() {
            String::new()
        } else {
            format!(";branch={branch}")
        };
        let text = format!(
            "{method} sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060{branch}\r\n\
             From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        }
    }

    fn target(t: TransportKind) -> Target {
        Target {
            addr: "192.0.2.1:5060".parse().unwrap(),
            transport: t,
        }
    }

    #[test]
    fn failed_client_transaction_is_gone() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(1);
        let (id, _) = table
            .send_request(
                &req("z9hG4bKfail", "MESSAGE"),
                target(TransportKind::Tcp),
                t0,
            )
            .unwrap();
        assert_eq!(table.len().1, 1);
        assert!(table.fail_client(&id));
        assert_eq!(table.len().1, 0);
        assert!(!table.fail_client(&id));
        assert!(table.handle_timeout(t0 + 64 * T1).is_empty());
    }

    #[test]
    fn server_absorbs_retransmissions_and_resends_final() {
        let t0 = Instant::now();
        let (mut table, r, src, id) = received("z9hG4bKabc", t0);
        // Retransmission before any response: absorbed, nothing to send.
        assert_eq!(
            table.handle_request(&r, src, t0).unwrap(),
            RequestDisposition::Retransmission(None)
        );
        let ok = Response::for_request(&r, StatusCode::OK, "OK");
        let (to, sent) = table.send_response(id, &r, &ok, t0).unwrap();
        assert_eq!(to, src);
        assert_eq!(&*sent, &ok.to_bytes()[..]);
        // Every retransmission gets the very bytes first sent.
        for _ in 0..3 {
            let RequestDisposition::Retransmission(Some((again, bytes))) =
                table.handle_request(&r, src, t0).unwrap()
            else {
                panic!("no resend")
            };
            assert_eq!(again, src);
            assert_eq!(bytes, sent);
        }
        assert!(table.send_response(id, &r, &ok, t0).is_err());
        // Same branch, other method: another transaction.
        let other = req("z9hG4bKabc", "OPTIONS");
        assert!(matches!(
            table.handle_request(&other, src, t0).unwrap(),
            RequestDisposition::New(_)
        ));
        // Timer J = 64*T1, reported CLEANUP_DELAY late.
        assert_eq!(table.poll_timeout(), Some(t0 + 64 * T1 + CLEANUP_DELAY));
        table.handle_timeout(t0 + 64 * T1 - Duration::from_millis(1));
        assert_eq!(table.len().0, 2);
        table.handle_timeout(t0 + 64 * T1);
        assert_eq!(table.len().0, 1);
        assert!(matches!(
            table.handle_request(&r, src, t0 + 64 * T1).unwrap(),
            RequestDisposition::New(_)
        ));
    }

    #[test]
    fn a_plain_answer_is_sent_and_resent_as_the_built_one() {
        let t0 = Instant::now();
        let (mut table, r, src, id) = received("z9hG4bKplain", t0);
        let built = Response::for_request(&r, StatusCode::ACCEPTED, "Accepted");
        let (to, sent) = table
            .send_plain_answer(id, &r, StatusCode::ACCEPTED, "Accepted", t0)
            .unwrap();
        assert_eq!(
            (to, &*sent),
            (response_target(&built, src), &built.to_bytes()[..])
        );
        let RequestDisposition::Retransmission(Some((again, bytes))) =
            table.handle_request(&r, src, t0).unwrap()
        else {
            panic!("no resend")
        };
        assert_eq!((again, bytes), (to, sent));
        assert!(
            table
                .send_plain_answer(id, &r, StatusCode::OK, "OK", t0)
                .is_err()
        );
        assert_eq!(table.poll_timeout(), Some(t0 + 64 * T1 + CLEANUP_DELAY));
    }

    /// A table with one server transaction: a MESSAGE with `branch`, received over UDP.
    fn received(branch: &str, now: Instant) -> (TransactionTable, Request, Target, ServerId) {
        let mut table = TransactionTable::with_capacity(1, 16, now);
        let r = req(branch, "MESSAGE");
        let src = target(TransportKind::Udp);
        let RequestDisposition::New(id) = table.handle_request(&r, src, now).unwrap() else {
            panic!("not new")
        };
        (table, r, src, id)
    }

    /// A new request of `method` with a fresh branch, sent in a client transaction.
    fn send_new(
        table: &mut TransactionTable,
        method: &str,
        transport: TransportKind,
        now: Instant,
    ) -> (Request, TransactionId, WireBytes) {
        let r = req(&table.new_branch(), method);
        let (id, sent) = table.send_request(&r, target(transport), now).unwrap();
        (r, id, sent)
    }

    fn response_with_via(via: &str) -> Response {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:b@example.com>;tag=1\r\n\
             To: <sip:a@example.com>;tag=2\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => panic!(),
        }
    }

    #[test]
    fn the_plain_reading_of_a_response_key_is_the_parsers() {
        let plain = [
            "SIP/2.0/UDP 127.0.0.1:35060;branch=z9hG4bK1a.2;rport",
            "SIP/2.0/UDP 127.0.0.1:35060;branch=z9hG4bK1a.2;rport=35060;received=127.0.0.1",
            "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx",
            "SIP/2.0/TCP 10.0.0.1:5070;rport;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa, SIP/2.0/UDP p;branch=z9hG4bKb",
        ];
        for via in plain {
            let resp = response_with_via(via);
            let quick = TransactionId::for_plain_response(&resp);
            assert_eq!(quick, TransactionId::for_response(&resp).ok(), "{via}");
            assert!(quick.is_some(), "{via}");
        }
        let for_the_parser = [
            "SIP/2.0/UDP Host.Example.com:5060;branch=z9hG4bKx",
            "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.000.0.1:5060;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:05060;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:5060 ;branch=z9hG4bKx",
            "SIP/2.0/UDP  127.0.0.1:5060;branch=z9hG4bKx",
            "SIP / 2.0 / UDP 127.0.0.1:5060;branch=z9hG4bKx",
            "sip/2.0/udp 127.0.0.1:5060;branch=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:5060;BRANCH=z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;Branch=z9hG4bKy",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;branch=z9hG4bKy",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK",
            "SIP/2.0/UDP 127.0.0.1:5060;branch",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;;rport",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;x=\"a b\"",
            "SIP/2.0/UDP 127.0.0.1:5060;branch = z9hG4bKx",
            "SIP/2.0/UDP 127.0.0.1:5060",
        ];
        for via in for_the_parser {
            let resp = response_with_via(via);
            assert_eq!(TransactionId::for_plain_response(&resp), None, "{via}");
        }
    }

    #[test]
    fn the_plain_reading_never_disagrees_with_the_parser() {
        // Vias assembled from pieces, plain and odd: wherever the plain reading gives a
        // key, it must be the parser's (a different key could match another transaction).
        let mut rng = fastrand::Rng::with_seed(3261);
        // Half the time one of the first `plain` pieces, which the plain reading takes.
        let pick = |rng: &mut fastrand::Rng, (plain, from): (usize, &[&'static str])| {
            let end = if rng.bool() { plain } else { from.len() };
            from[rng.usize(..end)]
        };
        let protocols = (1, &["SIP/2.0/", "sip/2.0/", "SIP / 2.0 /", "SIP/2.0/ "][..]);
        let transports = (3, &["UDP", "TCP", "X-Y", "udp", "U\"DP"][..]);
        let gaps = (1, &[" ", "  ", "\t", ""][..]);
        let hosts = (
            2,
            &[
                "127.0.0.1",
                "192.0.2.10",
                "127.000.0.1",
                "1.2.3",
                "Host.Example.COM",
                "h",
                "[::1]",
                "[2001:DB8::1]",
                "256.1.1.1",
            ][..],
        );
        let ports = (
            3,
            &["", ":5060", ":65535", ":05060", ":65536", ":", ":x"][..],
        );
        let params = (
            6,
            &[
                ";branch=z9hG4bKa1",
                ";branch=z9hG4bKa1.2",
                ";rport",
                ";rport=5060",
                ";received=127.0.0.1",
                ";ttl=1",
                ";BRANCH=z9hG4bKa1",
                ";Branch=z9hG4bKb",
                ";branch=z9hG4bK",
                ";branch=abc",
                ";branch",
                ";branch=",
                ";branch = z9hG4bKc",
                ";received=[::1]",
                ";;",
                ";x=\"a b\"",
                " ;branch=z9hG4bKd",
                ";branch=z9hG4bKe ",
            ][..],
        );
        let mut plain = 0;
        for _ in 0..20_000 {
            let mut via = String::new();
            via.push_str(pick(&mut rng, protocols));
            via.push_str(pick(&mut rng, transports));
            via.push_str(pick(&mut rng, gaps));
            via.push_str(pick(&mut rng, hosts));
            via.push_str(pick(&mut rng, ports));
            for _ in 0..rng.usize(0..4) {
                via.push_str(pick(&mut rng, params));
            }
            if rng.bool() {
                via.push_str(", SIP/2.0/UDP p;branch=z9hG4bKz");
            }
            let resp = response_with_via(&via);
            if let Some(quick) = TransactionId::for_plain_response(&resp) {
                plain += 1;
                assert_eq!(
                    Some(quick),
                    TransactionId::for_response(&resp).ok(),
                    "{via}"
                );
            }
        }
        assert!(plain > 200, "only {plain} plain Vias");
    }

    #[test]
    fn a_response_the_plain_reading_misses_still_finds_its_transaction() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(1);
        let (_, id, _) = send_new(&mut table, "MESSAGE", TransportKind::Udp, t0);
        // Two spaces before the sent-by: the parser's to read, and it does.
        let via = format!("SIP/2.0/UDP  192.0.2.1:5060;branch={}", id.branch);
        let resp = response_with_via(&via);
        assert_eq!(TransactionId::for_plain_response(&resp), None);
        let (matched, _) = table.handle_response(resp, t0).unwrap();
        assert_eq!(matched, id);
    }

    #[test]
    fn responses_go_where_rfc_3261_18_2_2_says() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(1);
        let r = req("z9hG4bKnat", "MESSAGE");
        // Over UDP from another port, without rport: to the sent-by port.
        let src = Target {
            addr: "192.0.2.1:40000".parse().unwrap(),
            transport: TransportKind::Udp,
        };
        let RequestDisposition::New(id) = table.handle_request(&r, src, t0).unwrap() else {
            panic!()
        };
        let ok = Response::for_request(&r, StatusCode::OK, "OK");
        let (to, _) = table.send_response(id, &r, &ok, t0).unwrap();
        assert_eq!(to.addr, "192.0.2.1:5060".parse().unwrap());
        let RequestDisposition::Retransmission(Some((again, _))) =
            table.handle_request(&r, src, t0).unwrap()
        else {
            panic!()
        };
        assert_eq!(again, to);
    }

    #[test]
    fn server_resends_latest_response_bytes() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(1);
        let r = req("z9hG4bKprov", "SUBSCRIBE");
        let src = target(TransportKind::Udp);
        let RequestDisposition::New(id) = table.handle_request(&r, src, t0).unwrap() else {
            panic!()
        };
        let trying = Response::for_request(&r, StatusCode::TRYING, "Trying");
        let (_, first) = table.send_response(id, &r, &trying, t0).unwrap();
        assert_eq!(
            table.handle_request(&r, src, t0).unwrap(),
            RequestDisposition::Retransmission(Some((src, first.clone())))
        );
        let mut ok = Response::for_request(&r, StatusCode::ACCEPTED, "Accepted");
        ok.headers.push("Expires", "600");
        let (_, last) = table.send_response(id, &r, &ok, t0).unwrap();
        assert_ne!(first, last);
        assert_eq!(
            table.handle_request(&r, src, t0).unwrap(),
            RequestDisposition::Retransmission(Some((src, last)))
        );
    }

    #[test]
    fn server_over_tcp_ends_at_once() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(1);
        let r = req("z9hG4bKtcp", "MESSAGE");
        let RequestDisposition::New(id) = table
            .handle_request(&r, target(TransportKind::Tcp), t0)
            .unwrap()
        else {
            panic!()
        };
        let trying = Response::for_request(&r, StatusCode::TRYING, "Trying");
        table.send_response(id, &r, &trying, t0).unwrap();
        table
            .send_response(id, &r, &Response::for_request(&r, StatusCode::OK, "OK"), t0)
            .unwrap();
        assert_eq!(table.len().0, 0);
    }

    #[test]
    fn request_keys_match_as_transaction_ids_do() {
        let with_via = |via: &str, method: &str| {
            let mut r = req("z9hG4bK1", method);
            r.headers.set("Via", via);
            r
        };
        let requests = [
            with_via(
                "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK1",
                "MESSAGE",
            ),
            with_via(
                "SIP/2.0/UDP HOST.example.COM:5060;branch=z9hG4bK1",
                "MESSAGE",
            ),
            with_via("SIP/2.0/UDP host.example.com;branch=z9hG4bK1", "MESSAGE"),
            with_via(
                "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK2",
                "MESSAGE",
            ),
            with_via(
                "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK1",
                "OPTIONS",
            ),
            with_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "MESSAGE"),
            with_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1", "MESSAGE"),
            with_via("SIP/2.0/UDP [2001:DB8::1]:5060;branch=z9hG4bK1", "MESSAGE"),
            with_via("SIP/2.0/UDP host.example.com:5060;branch=other", "MESSAGE"),
            with_via("SIP/2.0/UDP HOST.example.com:5060;branch=other", "MESSAGE"),
        ];
        let keys = ServerKeys::default();
        for a in &requests {
            for b in &requests {
                let same_id = TransactionId::for_request(a).unwrap()
                    == TransactionId::for_request(b).unwrap();
                let same_key = keys.request_key(a).unwrap() == keys.request_key(b).unwrap();
                assert_eq!(
                    same_key,
                    same_id,
                    "{:?}\n{:?}",
                    a.headers.get("Via"),
                    b.headers.get("Via")
                );
            }
        }
    }

    #[test]
    fn rfc2543_requests_match_by_fields() {
        let a = req("", "MESSAGE");
        let mut a2 = req("", "MESSAGE");
        a2.headers.set("Max-Forwards", "69");
        let id1 = TransactionId::for_request(&a).unwrap();
        assert_eq!(id1, TransactionId::for_request(&a2).unwrap());
        assert!(id1.branch.starts_with("rfc2543-"));
        let mut b = req("", "MESSAGE");
        b.headers.set("CSeq", "2 MESSAGE");
        assert_ne!(id1, TransactionId::for_request(&b).unwrap());
    }

    #[test]
    fn client_retransmits_with_backoff_then_times_out() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(7);
        let (r, id, sent) = send_new(&mut table, "MESSAGE", TransportKind::Udp, t0);
        assert_eq!(&*sent, &r.to_bytes()[..]);
        let mut now;
        let mut intervals = Vec::new();
        let mut last = t0;
        loop {
            now = table.poll_timeout().unwrap();
            let out = table.handle_timeout(now);
            match out.as_slice() {
                [TableOutput::Retransmit { request, .. }] => {
                    assert_eq!(request, &sent);
                    intervals.push((now - last).as_millis());
                    last = now;
                }
                [TableOutput::Timeout { id: tid }] => {
                    assert_eq!(tid, &id);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(now - t0, 64 * T1);
        assert_eq!(&intervals[..5], &[500, 1000, 2000, 4000, 4000]);
        assert_eq!(table.len().1, 0);
    }

    #[test]
    fn client_provisional_then_final_then_timer_k() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(7);
        let (r, ..) = send_new(&mut table, "SUBSCRIBE", TransportKind::Udp, t0);
        let trying = Response::for_request(&r, StatusCode::TRYING, "Trying");
        assert!(table.handle_response(trying, t0).is_some());
        // After a provisional, Timer E uses T2.
        let e = table.poll_timeout().unwrap();
        assert_eq!(e, t0 + T1);
        assert_eq!(table.handle_timeout(e).len(), 1);
        assert_eq!(table.poll_timeout().unwrap(), e + T2);
        let ok = Response::for_request(&r, StatusCode::ACCEPTED, "Accepted");
        let (_, up) = table.handle_response(ok.clone(), e).unwrap();
        assert_eq!(up.status, StatusCode::ACCEPTED);
        // A retransmitted final is absorbed; K = T4 ends the transaction.
        assert!(table.handle_response(ok.clone(), e).is_none());
        assert_eq!(table.poll_timeout().unwrap(), e + T4 + CLEANUP_DELAY);
        assert!(table.handle_timeout(e + T4).is_empty());
        assert_eq!(table.len().1, 0);
        // Stray responses are ignored.
        assert!(table.handle_response(ok, e + T4).is_none());
    }

    #[test]
    fn next_client_deadline_follows_the_transactions_that_change() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let mut table = TransactionTable::new(7);
        let a = req(&table.new_branch(), "MESSAGE");
        let b = req(&table.new_branch(), "MESSAGE");
        let c = req(&table.new_branch(), "MESSAGE");
        let udp = target(TransportKind::Udp);
        table.send_request(&a, udp, t0).unwrap();
        assert_eq!(table.poll_timeout(), Some(t0 + T1));
        table.send_request(&b, udp, t1).unwrap();
        table.send_request(&c, udp, t1).unwrap();
        // Found current once, then answered from the cache; still A's Timer E.
        assert_eq!(table.poll_timeout(), Some(t0 + T1));
        assert_eq!(table.poll_timeout(), Some(t0 + T1));
        // A's final moves its deadline to Timer K: B and C (same deadline) come first.
        let ok = |r: &Request| Response::for_request(r, StatusCode::OK, "OK");
        assert!(table.handle_response(ok(&a), t1).is_some());
        assert_eq!(table.poll_timeout(), Some(t1 + T1));
        assert!(table.handle_response(ok(&b), t1).is_some());
        assert_eq!(table.poll_timeout(), Some(t1 + T1));
        assert!(table.fail_client(&TransactionId::for_request(&c).unwrap()));
        assert_eq!(table.poll_timeout(), Some(t1 + T4 + CLEANUP_DELAY));
        assert!(table.handle_timeout(t1 + T4).is_empty());
        assert_eq!(table.poll_timeout(), None);
        assert_eq!(table.len().1, 0);
    }

    #[test]
    fn cleanup_timers_share_a_late_wake_up() {
        let t0 = Instant::now();
        let mut table = TransactionTable::with_capacity(1, 16, t0);
        let src = target(TransportKind::Udp);
        let ok = |r: &Request| Response::for_request(r, StatusCode::OK, "OK");
        // Three server transactions answered within one CLEANUP_DELAY.
        for i in 0..3u32 {
            let at = t0 + CLEANUP_DELAY / 3 * i;
            let r = req(&format!("z9hG4bKbatch{i}"), "MESSAGE");
            let RequestDisposition::New(id) = table.handle_request(&r, src, at).unwrap() else {
                panic!("not new")
            };
            table.send_response(id, &r, &ok(&r), at).unwrap();
        }
        // The first Timer J is reported CLEANUP_DELAY late, and that one wake-up ends
        // every transaction due by then.
        let wake = table.poll_timeout().unwrap();
        assert_eq!(wake, t0 + 64 * T1 + CLEANUP_DELAY);
        table.handle_timeout(wake);
        assert_eq!(table.len().0, 0);
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn client_over_tcp_does_not_retransmit() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(7);
        let (r, ..) = send_new(&mut table, "MESSAGE", TransportKind::Tcp, t0);
        assert_eq!(table.poll_timeout(), Some(t0 + 64 * T1));
        let ok = Response::for_request(&r, StatusCode::OK, "OK");
        assert!(table.handle_response(ok, t0).is_some());
        assert_eq!(table.len().1, 0);
    }
}

/// Memory per live server transaction in Completed (Timer J) state: run with
/// `cargo test -p sipjab-sip --release -- --ignored --nocapture server_transaction_memory`.
#[cfg(test)]
mod memory {
    use super::*;
    use crate::route::TransportKind;
    use crate::{Message, StatusCode, parse_datagram};

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    #[ignore = "measurement: reports VmRSS"]
    fn server_transaction_memory() {
        const N: usize = 100_000;
        let body = "Hello there, are you coming to the meeting at three?";
        // Parse all requests first so only the table's growth is measured.
        let reqs: Vec<Request> = (0..N)
            .map(|i| {
                let text = format!(
                    "MESSAGE sip:alice@xmpp.example.com SIP/2.0\r\n\
                     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.{i:08x}a7c3e1;rport=5060;received=192.0.2.10\r\n\
                     Max-Forwards: 70\r\n\
                     From: \"Bob\" <sip:bob@sip.example.com>;tag=4fa3c{i:x}\r\n\
                     To: <sip:alice@xmpp.example.com>\r\n\
                     Call-ID: {i:x}-8d2e6f0c1b@192.0.2.10\r\n\
                     CSeq: 1 MESSAGE\r\n\
                     User-Agent: bench/1.0\r\n\
                     Content-Type: text/plain\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                match parse_datagram(text.as_bytes()).unwrap() {
                    Message::Request(r) => r,
                    Message::Response(_) => panic!(),
                }
            })
            .collect();
        let src = Target {
            addr: "192.0.2.10:5060".parse().unwrap(),
            transport: TransportKind::Udp,
        };
        let now = Instant::now();
        let mut table = TransactionTable::new(1);
        let before = rss_kib();
        for r in &reqs {
            let RequestDisposition::New(id) = table.handle_request(r, src, now).unwrap() else {
                panic!("not new")
            };
            let resp = Response::for_request(r, StatusCode::ACCEPTED, "Accepted");
            let _ = table.send_response(id, r, &resp, now).unwrap();
        }
        let after = rss_kib();
        assert_eq!(table.len().0, N);
        println!(
            "{N} server transactions: VmRSS {before} KiB -> {after} KiB, {:.0} B each",
            (after - before) as f64 * 1024.0 / N as f64
        );
    }
}
