//! The parts of an end-to-end run against the Prosody that `scripts/test` starts:
//!
//! - [`Gateway`]: a `sipjab run` process on ephemeral SIP ports, with a SQLite store of its own;
//! - [`XmppPeer`]: an XMPP user on slixmpp (`tests/xmpp/peer.py`);
//! - [`sipp`] and [`SippUas`]: SIP users from `fixtures/sipp/`;
//! - [`RawSip`]: a UDP socket for byte-exact requests (retransmissions, malformed input).
//!
//! There is one component domain, so one gateway at a time: tests take [`serial`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::harness::{fixture, root, sipjab_ok};

/// What `scripts/prosody env` exported.
pub(crate) struct Env {
    pub(crate) component: SocketAddr,
    pub(crate) domain: String,
    pub(crate) secret: String,
    pub(crate) server: String,
    pub(crate) c2s: String,
    pub(crate) prosody_dir: Option<String>,
}

/// The Prosody settings, or a panic that says how to run these tests.
pub(crate) fn env() -> Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run these tests with scripts/test (it starts Prosody)")
        })
    };
    Env {
        component: var("SIPJAB_TEST_COMPONENT")
            .parse()
            .expect("SIPJAB_TEST_COMPONENT is host:port"),
        domain: var("SIPJAB_TEST_DOMAIN"),
        secret: var("SIPJAB_TEST_SECRET"),
        server: var("SIPJAB_TEST_SERVER"),
        c2s: var("SIPJAB_TEST_C2S"),
        prosody_dir: std::env::var("SIPJAB_TEST_PROSODY_DIR").ok(),
    }
}

/// Runs `scripts/prosody VERB` (stop, start) on the test Prosody.
pub(crate) fn prosody(verb: &str) {
    let Some(dir) = env().prosody_dir else {
        panic!("SIPJAB_TEST_PROSODY_DIR is not set: run with scripts/test");
    };
    let ok = Command::new(root().join("scripts/prosody"))
        .args([verb, &dir])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "scripts/prosody {verb} failed");
}

/// One end-to-end test at a time: they share the component domain and the Prosody.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A free UDP port on loopback (free when asked; good enough for tests run one at a time).
pub(crate) fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Lines a child process printed, collected by a thread. A line is consumed only by the
/// `expect` that matches it; the others stay for later.
struct Lines {
    rx: Receiver<String>,
    pending: Mutex<VecDeque<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn follow(stream: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            pending: Mutex::new(VecDeque::new()),
            seen,
        }
    }

    /// The first unconsumed line for which `wanted` holds, within `timeout`.
    fn expect_with(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let mut pending = self.pending.lock().unwrap();
        if let Some(at) = pending.iter().position(|l| wanted(l)) {
            return pending.remove(at);
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(line) => pending.push_back(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The first unconsumed line containing `needle`, within `timeout`.
    fn expect(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.expect_with(|l| l.contains(needle), timeout)
    }

    fn all(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

/// Gives a child process `grace` to exit by itself, then kills it.
fn wait_or_kill(child: &mut Child, grace: Duration) {
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `sipjab run`.
pub(crate) struct Gateway {
    child: Child,
    log: Lines,
    dir: tempfile::TempDir,
    pub(crate) udp: SocketAddr,
    pub(crate) tcp: SocketAddr,
}

impl Gateway {
    /// Starts sipjab with `accounts` (SIP URI, jab_id) and `proxy_port` as its outbound proxy,
    /// and waits for its component link.
    pub(crate) fn start(accounts: &[(&str, &str)], proxy_port: u16) -> Self {
        Self::start_with(accounts, proxy_port, "", "")
    }

    /// [`Gateway::start`] with extra TOML lines for `[sip]` and `[gateway]`.
    pub(crate) fn start_with(
        accounts: &[(&str, &str)],
        proxy_port: u16,
        sip_extra: &str,
        gateway_extra: &str,
    ) -> Self {
        let env = env();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[xmpp]\nhost = \"{}\"\nport = {}\ndomain = \"{}\"\nsecret = \"{}\"\nkeepalive = 5\n\n\
             [sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\nproxy = \"127.0.0.1:{proxy_port}\"\n{sip_extra}\n\n\
             [gateway]\njdomain = \"jabber.sip.test=*\"\n{gateway_extra}\n\n[db]\nurl = \"sqlite://sipjab.db\"\n",
            env.component.ip(),
            env.component.port(),
            env.domain,
            env.secret,
        );
        std::fs::write(dir.path().join("sipjab.toml"), config).unwrap();
        sipjab_ok(dir.path(), &["db", "init"]);
        for (sip, jab_id) in accounts {
            sipjab_ok(dir.path(), &["account", "add", sip, jab_id]);
        }
        Self::spawn(dir)
    }

    /// Stops this gateway and starts another on the same configuration and store.
    pub(crate) fn restart(mut self) -> Self {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::spawn(dir)
    }

    fn spawn(dir: tempfile::TempDir) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipjab"))
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("SIPJAB_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipjab starts");
        let log = Lines::follow(child.stderr.take().unwrap());
        let port = |transport: &str| -> SocketAddr {
            let needle = format!("addr={transport}:");
            let line = log
                .expect(&needle, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("sipjab did not listen on {transport}:\n{}", log.all()));
            let at = line.find(&needle).unwrap() + needle.len();
            line[at..].trim().parse().unwrap()
        };
        let udp = port("udp");
        let tcp = port("tcp");
        let gw = Self {
            child,
            log,
            dir,
            udp,
            tcp,
        };
        gw.expect_log("component link up", Duration::from_secs(15));
        gw
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first, for the clean </stream:stream> path.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        wait_or_kill(&mut self.child, Duration::from_secs(5));
    }

    /// Waits for a log line; panics with the whole log if it does not come.
    pub(crate) fn expect_log(&self, needle: &str, timeout: Duration) -> String {
        self.log
            .expect(needle, timeout)
            .unwrap_or_else(|| panic!("no {needle:?} in sipjab's log:\n{}", self.log.all()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- sipjab's log ---\n{}", self.log.all());
        }
    }
}

/// An XMPP user on slixmpp.
pub(crate) struct XmppPeer {
    child: Child,
    stdin: ChildStdin,
    out: Lines,
    pub(crate) jid: String,
}

impl XmppPeer {
    /// Logs `user` (password `pw`, created by scripts/test) in and waits until it is online.
    pub(crate) fn login(user: &str) -> Self {
        let env = env();
        let jid = format!("{user}@{}", env.server);
        let script = root().join("tests/xmpp/peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&jid, "pw", &env.c2s])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs tests/xmpp/peer.py");
        let stdin = child.stdin.take().unwrap();
        let out = Lines::follow(child.stdout.take().unwrap());
        let peer = Self {
            child,
            stdin,
            out,
            jid,
        };
        assert!(
            peer.out.expect("ready", Duration::from_secs(15)).is_some(),
            "{} did not log in:\n{}",
            peer.jid,
            peer.out.all()
        );
        peer
    }

    /// Sends a chat message with a chosen stanza id.
    pub(crate) fn send(&mut self, id: &str, to: &str, body: &str) {
        writeln!(self.stdin, "send-id {id} {to} {body}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Joins a MUC room as `nick` (a new room is accepted as an instant room) and waits until
    /// the room has confirmed it.
    pub(crate) fn join(&mut self, room: &str, nick: &str) {
        writeln!(self.stdin, "join {room} {nick}").unwrap();
        self.stdin.flush().unwrap();
        let joined = self.out.expect_with(
            |l| {
                l.starts_with(&format!("joined {room}"))
                    || l.starts_with(&format!("join-error {room}"))
            },
            Duration::from_secs(15),
        );
        assert!(
            joined.as_deref().is_some_and(|l| l.starts_with("joined")),
            "{} could not join {room}: {joined:?}\n{}",
            self.jid,
            self.out.all()
        );
    }

    /// Sends a groupchat message to a room.
    pub(crate) fn groupchat(&mut self, room: &str, body: &str) {
        writeln!(self.stdin, "groupchat {room} {body}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Kicks `nick` from `room` (the peer must be a moderator there) and waits for the result.
    pub(crate) fn kick(&mut self, room: &str, nick: &str) {
        writeln!(self.stdin, "kick {room} {nick}").unwrap();
        self.stdin.flush().unwrap();
        assert!(
            self.out
                .expect(&format!("kicked {nick}"), Duration::from_secs(10))
                .is_some(),
            "{} could not kick {nick}:\n{}",
            self.jid,
            self.out.all()
        );
    }

    /// Removes `jid` from the roster on the server, cancelling both subscriptions, and waits
    /// until that is done: a clean start for a test, whatever earlier runs left.
    pub(crate) fn forget(&mut self, jid: &str) {
        writeln!(self.stdin, "forget {jid}").unwrap();
        self.stdin.flush().unwrap();
        assert!(
            self.out
                .expect(&format!("forgot {jid}"), Duration::from_secs(10))
                .is_some(),
            "{} could not remove {jid} from its roster",
            self.jid
        );
    }

    /// Broadcasts available presence with `show` (away, dnd, xa, chat) and `status`.
    pub(crate) fn show(&mut self, show: &str, status: &str) {
        writeln!(self.stdin, "show {show} {status}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a presence of `type_` (subscribe, unsubscribe, probe...) to `to`.
    pub(crate) fn presence(&mut self, to: &str, type_: &str) {
        writeln!(self.stdin, "presence {to} {type_}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next presence from a JID starting with `from`, of `type_` ("available",
    /// "unavailable", "subscribed", ...).
    pub(crate) fn expect_presence(
        &self,
        from: &str,
        type_: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        self.try_presence(from, type_, timeout).unwrap_or_else(|| {
            panic!(
                "{} got no {type_} presence from {from}:\n{}",
                self.jid,
                self.out.all()
            )
        })
    }

    /// [`XmppPeer::expect_presence`], if one comes in time.
    pub(crate) fn try_presence(
        &self,
        from: &str,
        type_: &str,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let parse = |line: &str| -> Option<serde_json::Value> {
            serde_json::from_str(line.strip_prefix("presence ")?).ok()
        };
        let matches = |line: &str| {
            parse(line).is_some_and(|json| {
                json["from"].as_str().unwrap_or("").starts_with(from) && json["type"] == type_
            })
        };
        self.out
            .expect_with(matches, timeout)
            .and_then(|l| parse(&l))
    }

    /// The next message whose body or id contains `needle`.
    pub(crate) fn expect_message(&self, needle: &str, timeout: Duration) -> serde_json::Value {
        self.try_message(needle, timeout).unwrap_or_else(|| {
            panic!(
                "{} got no message with {needle:?}:\n{}",
                self.jid,
                self.out.all()
            )
        })
    }

    /// The next message whose body or id contains `needle`, if one comes in time.
    pub(crate) fn try_message(&self, needle: &str, timeout: Duration) -> Option<serde_json::Value> {
        let parse = |line: &str| -> Option<serde_json::Value> {
            serde_json::from_str(line.strip_prefix("message ")?).ok()
        };
        let matches = |line: &str| {
            parse(line).is_some_and(|json| {
                let field = |name: &str| json[name].as_str().unwrap_or("").contains(needle);
                field("body") || field("id")
            })
        };
        self.out
            .expect_with(matches, timeout)
            .and_then(|l| parse(&l))
    }
}

impl Drop for XmppPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        wait_or_kill(&mut self.child, Duration::from_secs(3));
    }
}

/// Runs one sipp UAC scenario from `fixtures/sipp/` against the gateway and says whether it
/// ended as the scenario expects.
pub(crate) fn sipp_uac(gateway: SocketAddr, scenario: &str, keys: &[(&str, &str)]) -> bool {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(fixture(&format!("sipp/{scenario}")))
        .args(["-m", "1", "-i", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args(["-nostdin", "-timeout", "10s", "-timeout_error"]);
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    let dir = tempfile::tempdir().unwrap();
    cmd.arg(gateway.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp runs")
        .success()
}

/// A sipp UAS waiting for one MESSAGE on a port: the gateway's outbound proxy.
pub(crate) struct SippUas {
    child: Child,
    trace: PathBuf,
    _dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl SippUas {
    /// Starts `scenario` on a free port and gives sipp a moment to bind it.
    pub(crate) fn start(scenario: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("messages.log");
        let port = free_port();
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(fixture(&format!("sipp/{scenario}")))
            .args(["-m", "1", "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-nostdin", "-timeout", "30s", "-trace_msg", "-message_file"])
            .arg(&trace)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp runs");
        std::thread::sleep(Duration::from_millis(300));
        Self {
            child,
            trace,
            _dir: dir,
            port,
        }
    }

    /// Waits for the scenario to end and returns what sipp traced.
    pub(crate) fn finish(mut self, timeout: Duration) -> String {
        wait_or_kill(&mut self.child, timeout);
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP socket for requests written byte by byte.
pub(crate) struct RawSip {
    socket: UdpSocket,
    gateway: SocketAddr,
}

impl RawSip {
    pub(crate) fn new(gateway: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self { socket, gateway }
    }

    /// This socket's address, for Via and Contact.
    pub(crate) fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends a datagram and returns the response with its Call-ID, if one comes within 3 s.
    pub(crate) fn request(&self, bytes: &[u8]) -> Option<sipjab_sip::Response> {
        self.request_within(bytes, Duration::from_secs(3))
    }

    /// Sends a datagram and returns the response with its Call-ID (any response, for bytes
    /// that do not parse), if one comes within `timeout`.
    pub(crate) fn request_within(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Option<sipjab_sip::Response> {
        let call_id = match sipjab_sip::parse_datagram(bytes) {
            Ok(m) => m.headers().call_id().ok().flatten().map(str::to_owned),
            Err(_) => None,
        };
        self.socket.send_to(bytes, self.gateway).unwrap();
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            self.socket.set_read_timeout(Some(left)).unwrap();
            let n = self.socket.recv(&mut buf).ok()?;
            let Ok(sipjab_sip::Message::Response(r)) = sipjab_sip::parse_datagram(&buf[..n]) else {
                continue;
            };
            let theirs = r.headers.call_id().ok().flatten();
            if call_id.is_none() || theirs == call_id.as_deref() {
                return Some(r);
            }
        }
    }

    /// Sends a MESSAGE from `from` to `to` and returns the status of its answer.
    pub(crate) fn send_message(&self, from: &str, to: &str, body: &str) -> u16 {
        let req = self.message(from, to, body);
        self.request(&req).expect("an answer").status.as_u16()
    }

    /// A MESSAGE from `from` to `to` with a fresh branch and Call-ID.
    pub(crate) fn message(&self, from: &str, to: &str, body: &str) -> Vec<u8> {
        let tag = free_port();
        format!(
            "MESSAGE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-raw-{tag}-{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=raw{tag}\r\nTo: <sip:{to}>\r\n\
             Call-ID: raw-{tag}-{n}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len}\r\n\r\n{body}",
            local = self.local(),
            n = fastrand::u32(..),
            len = body.len(),
        )
        .into_bytes()
    }
}

/// A SIP endpoint that answers 200 OK to every request (489 to SUBSCRIBE: it does no
/// presence) and keeps what came: the SIP user's phone behind the gateway's outbound proxy,
/// for flows with several requests. It also sends
/// requests of its own (a SUBSCRIBE, whose NOTIFYs then come back to it).
pub(crate) struct SipInbox {
    socket: UdpSocket,
    requests: Receiver<String>,
    responses: Receiver<sipjab_sip::Response>,
    pub(crate) port: u16,
}

impl SipInbox {
    pub(crate) fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let (req_tx, requests) = channel();
        let (resp_tx, responses) = channel();
        let reader = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = reader.recv_from(&mut buf) {
                match sipjab_sip::parse_datagram(&buf[..n]) {
                    Ok(sipjab_sip::Message::Request(req)) => {
                        // A phone without presence: SUBSCRIBE gets 489, the rest 200.
                        let ok = if req.method == sipjab_sip::Method::Subscribe {
                            let code = sipjab_sip::StatusCode::new(489).unwrap();
                            sipjab_sip::Response::for_request(&req, code, "Bad Event")
                        } else {
                            sipjab_sip::Response::for_request(
                                &req,
                                sipjab_sip::StatusCode::OK,
                                "OK",
                            )
                        };
                        let _ = reader.send_to(&ok.to_bytes(), from);
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if req_tx.send(text).is_err() {
                            return;
                        }
                    }
                    Ok(sipjab_sip::Message::Response(resp)) => {
                        if resp_tx.send(resp).is_err() {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        });
        Self {
            socket,
            requests,
            responses,
            port,
        }
    }

    /// The next request containing `needle`, within `timeout`.
    pub(crate) fn expect(&self, needle: &str, timeout: Duration) -> String {
        self.until(needle, timeout).pop().unwrap_or_default()
    }

    /// The requests that came up to and including the next one containing `needle`, within
    /// `timeout`.
    pub(crate) fn until(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = end
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            match self.requests.recv_timeout(left) {
                Ok(text) => {
                    let found = text.contains(needle);
                    seen.push(text);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "no SIP request with {needle:?}; got:\n{}",
                    seen.join("\n---\n")
                ),
            }
        }
    }

    /// Sends a SUBSCRIBE for presence from `from` to `to` and returns the final response.
    /// `dialog` is the To tag and CSeq of a refresh in an existing dialog, with its Call-ID.
    pub(crate) fn subscribe(
        &self,
        gateway: SocketAddr,
        from: &str,
        to: &str,
        expires: u32,
        dialog: Option<(&str, &str, u32)>,
    ) -> sipjab_sip::Response {
        let local = self.socket.local_addr().unwrap();
        let (call_id, to_tag, cseq) = match dialog {
            Some((call_id, tag, cseq)) => (call_id.to_owned(), format!(";tag={tag}"), cseq),
            None => (
                format!("sub-{}@127.0.0.1", fastrand::u32(..)),
                String::new(),
                1,
            ),
        };
        let req = format!(
            "SUBSCRIBE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-sub-{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=watcher\r\nTo: <sip:{to}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:watcher@{local}>\r\n\
             Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n\
             Content-Length: 0\r\n\r\n",
            n = fastrand::u32(..),
        );
        self.socket.send_to(req.as_bytes(), gateway).unwrap();
        self.responses
            .recv_timeout(Duration::from_secs(5))
            .expect("an answer to SUBSCRIBE")
    }
}
