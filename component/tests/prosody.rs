//! The component link against a real Prosody 0.12 (XEP-0114). Start one with
//! `scripts/prosody start DIR` and run, with the variables `scripts/prosody env DIR`
//! prints:
//!
//! ```text
//! SIPJAB_TEST_COMPONENT=127.0.0.1:15347 SIPJAB_TEST_DOMAIN=sip.xmpp.test \
//!   SIPJAB_TEST_SECRET=sipjab-test-secret cargo test -p sipjab-component --test prosody -- --ignored
//! ```
//!
//! `SIPJAB_TEST_SERVER` (the server's own domain) defaults to the component domain's
//! parent; `SIPJAB_TEST_C2S` (host:port of client connections, 127.0.0.1:15222 by default)
//! serves the round trip with a user, who registers in-band. The tests share one
//! component domain, so they take turns.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use sipjab_component::{
    ComponentConfig, ComponentLink, DefinedCondition, Element, Error, LinkEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout};

/// One component connection at a time: Prosody kicks a second one with `conflict`.
static SERIAL: Mutex<()> = Mutex::const_new(());

const NS: &str = "jabber:component:accept";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

struct Env {
    host: String,
    port: u16,
    domain: String,
    secret: String,
    server: String,
}

fn env() -> Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run `scripts/prosody start DIR` and export what `scripts/prosody env DIR` prints")
        })
    };
    let component = var("SIPJAB_TEST_COMPONENT");
    let (host, port) = component
        .rsplit_once(':')
        .expect("SIPJAB_TEST_COMPONENT is host:port");
    let domain = var("SIPJAB_TEST_DOMAIN");
    let server = std::env::var("SIPJAB_TEST_SERVER").unwrap_or_else(|_| {
        domain
            .split_once('.')
            .map_or(domain.clone(), |(_, parent)| parent.to_owned())
    });
    Env {
        host: host.to_owned(),
        port: port.parse().expect("port number"),
        secret: var("SIPJAB_TEST_SECRET"),
        domain,
        server,
    }
}

fn config(env: &Env) -> ComponentConfig {
    let mut cfg = ComponentConfig::new(&env.host, env.port, &env.domain, &env.secret);
    cfg.keepalive = Duration::from_secs(5);
    cfg.features = vec!["urn:xmpp:receipts".into()];
    cfg
}

async fn event(link: &mut ComponentLink) -> LinkEvent {
    timeout(Duration::from_secs(15), link.next_event())
        .await
        .expect("no event from the link within 15 s")
        .expect("link task ended")
}

async fn connected(link: &mut ComponentLink) {
    match event(link).await {
        LinkEvent::Connected => {}
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// The next stanza with this id, skipping others.
async fn reply_to(link: &mut ComponentLink, id: &str) -> Element {
    loop {
        match event(link).await {
            LinkEvent::Stanza(el) if el.attr("id") == Some(id) => return el,
            LinkEvent::Chat(chat) if chat.id.as_deref() == Some(id) => return chat.into_element(),
            LinkEvent::Stanza(_) | LinkEvent::Chat(_) => {}
            other => panic!("expected a stanza, got {other:?}"),
        }
    }
}

fn iq_get(id: &str, from: &str, to: &str, payload: &str) -> Element {
    format!("<iq xmlns='{NS}' type='get' id='{id}' from='{from}' to='{to}'>{payload}</iq>")
        .parse()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn connects_and_exchanges_stanzas() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let mut link = ComponentLink::spawn(config(&env));
    connected(&mut link).await;
    let sender = link.sender();

    // disco#info to the server itself.
    let query = format!("<query xmlns='{DISCO_INFO}'/>");
    sender
        .send(iq_get("disco-server", &env.domain, &env.server, &query))
        .unwrap();
    let reply = reply_to(&mut link, "disco-server").await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let info = reply
        .get_child("query", DISCO_INFO)
        .expect("disco#info payload");
    assert!(
        info.children()
            .any(|c| c.name() == "identity" && c.attr("category") == Some("server")),
        "{info:?}"
    );

    // disco#info to our own domain: Prosody routes it back, the link answers it itself,
    // and the answer comes back to us through the server.
    sender
        .send(iq_get("disco-self", &env.domain, &env.domain, &query))
        .unwrap();
    let reply = reply_to(&mut link, "disco-self").await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let info = reply
        .get_child("query", DISCO_INFO)
        .expect("disco#info payload");
    let identity = info.get_child("identity", DISCO_INFO).expect("identity");
    assert_eq!(identity.attr("category"), Some("gateway"));
    assert_eq!(identity.attr("type"), Some("simple"));
    let features: Vec<_> = info.children().filter_map(|c| c.attr("var")).collect();
    for f in [DISCO_INFO, "urn:xmpp:ping", "urn:xmpp:receipts"] {
        assert!(features.contains(&f), "{features:?}");
    }

    // Same for XEP-0199 ping.
    sender
        .send(iq_get(
            "ping-self",
            &env.domain,
            &env.domain,
            "<ping xmlns='urn:xmpp:ping'/>",
        ))
        .unwrap();
    assert_eq!(
        reply_to(&mut link, "ping-self").await.attr("type"),
        Some("result")
    );

    // A message to an account that does not exist bounces back to its sender.
    let msg: Element = format!(
        "<message xmlns='{NS}' type='chat' id='m1' from='alice@{}' to='nobody@{}'><body>hi</body></message>",
        env.domain, env.server
    )
    .parse()
    .unwrap();
    sender.send(msg).unwrap();
    let bounce = reply_to(&mut link, "m1").await;
    assert_eq!(bounce.attr("type"), Some("error"), "{bounce:?}");
    assert_eq!(
        bounce.attr("to"),
        Some(format!("alice@{}", env.domain).as_str())
    );

    link.shutdown().await;
    assert!(!sender.is_connected());
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn bad_secret_is_not_authorized_without_spinning() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let mut cfg = config(&env);
    cfg.secret = "not-the-secret".into();
    let mut link = ComponentLink::spawn(cfg);
    let LinkEvent::Disconnected { reason, retry_in } = event(&mut link).await else {
        panic!("expected Disconnected")
    };
    assert_eq!(
        reason.stream_condition(),
        Some(&DefinedCondition::NotAuthorized),
        "{reason}"
    );
    assert!(retry_in >= Duration::from_secs(30), "{retry_in:?}");
    // Nothing more for a while: the link waits instead of retrying in a loop.
    let quiet = Instant::now();
    assert!(
        timeout(Duration::from_secs(3), link.next_event())
            .await
            .is_err()
    );
    assert!(quiet.elapsed() >= Duration::from_secs(3));
    link.shutdown().await;
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn unknown_domain_is_host_unknown() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let mut cfg = config(&env);
    cfg.domain = format!("not-a-component.{}", env.server);
    let mut link = ComponentLink::spawn(cfg);
    let LinkEvent::Disconnected { reason, .. } = event(&mut link).await else {
        panic!("expected Disconnected")
    };
    assert_eq!(
        reason.stream_condition(),
        Some(&DefinedCondition::HostUnknown),
        "{reason}"
    );
    link.shutdown().await;
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn second_instance_gets_conflict() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let mut first = ComponentLink::spawn(config(&env));
    connected(&mut first).await;
    let mut second = ComponentLink::spawn(config(&env));
    let LinkEvent::Disconnected { reason, .. } = event(&mut second).await else {
        panic!("expected Disconnected")
    };
    assert_eq!(
        reason.stream_condition(),
        Some(&DefinedCondition::Conflict),
        "{reason}"
    );
    assert!(!matches!(reason, Error::StreamClosed));
    second.shutdown().await;
    // The first one is still fine.
    assert!(first.sender().is_connected());
    first.shutdown().await;
}

/// Just enough of a c2s client (RFC 6120 with SASL PLAIN, XEP-0077 registration) to
/// exchange messages with the gateway through the server.
struct Client {
    tcp: TcpStream,
    seen: String,
}

impl Client {
    async fn send(&mut self, xml: &str) {
        self.tcp.write_all(xml.as_bytes()).await.unwrap();
    }

    /// Reads until `needle` shows up; returns everything up to and including it.
    async fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = self.seen.find(needle) {
                let rest = self.seen.split_off(at + needle.len());
                return std::mem::replace(&mut self.seen, rest);
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} from the server; got {:?}", self.seen))
                .unwrap();
            assert!(n > 0, "server closed; got {:?}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// The start tag of the reply with this id (and whatever came before it).
    async fn reply(&mut self, id: &str) -> String {
        let head = self.until(&format!("id='{id}'")).await;
        head + &self.until(">").await
    }

    async fn open(&mut self, server: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{server}' version='1.0'>"
        ))
        .await;
        self.until("</stream:features>").await;
    }

    /// Registers `user`, logs in and binds resource `r`.
    async fn login(addr: &str, server: &str, user: &str, pass: &str) -> Self {
        let mut c = Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            seen: String::new(),
        };
        c.open(server).await;
        c.send(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>{user}</username><password>{pass}</password></query></iq>"
        ))
        .await;
        let reg = c.reply("reg").await;
        assert!(reg.contains("type='result'"), "registration failed: {reg}");
        let plain = format!("\0{user}\0{pass}");
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            base64(plain.as_bytes())
        ))
        .await;
        c.until("<success").await;
        c.seen.clear();
        c.open(server).await;
        c.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
            .await;
        let bound = c.reply("bind").await;
        assert!(bound.contains("type='result'"), "bind failed: {bound}");
        c
    }
}

/// RFC 4648 base64, enough for a SASL PLAIN token.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"\0alice\0wonderland"), "AGFsaWNlAHdvbmRlcmxhbmQ=");
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn round_trip_with_a_user() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let c2s = std::env::var("SIPJAB_TEST_C2S").unwrap_or_else(|_| "127.0.0.1:15222".into());
    let mut link = ComponentLink::spawn(config(&env));
    connected(&mut link).await;

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let user = format!("u{nanos}");
    let mut client = Client::login(&c2s, &env.server, &user, "pw").await;
    let bob = format!("bob@{}", env.domain);
    client
        .send(&format!(
            "<message to='{bob}' type='chat' id='c1'><body>hello gateway</body></message>"
        ))
        .await;
    let msg = reply_to(&mut link, "c1").await;
    let full = format!("{user}@{}/r", env.server);
    assert_eq!(msg.attr("from"), Some(full.as_str()));
    assert_eq!(msg.attr("to"), Some(bob.as_str()));
    assert_eq!(
        msg.get_child("body", NS).map(|b| b.text()).as_deref(),
        Some("hello gateway")
    );

    let answer: Element = format!(
        "<message xmlns='{NS}' type='chat' id='g1' from='{bob}/sip' to='{full}'><body>hello back</body></message>"
    )
    .parse()
    .unwrap();
    link.sender().send(answer).unwrap();
    let got = client.until("hello back").await;
    assert!(got.contains(&format!("from='{bob}/sip'")), "{got}");
    link.shutdown().await;
}

#[tokio::test]
#[ignore = "needs Prosody"]
async fn keepalive_pings_keep_the_link_up() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let mut cfg = config(&env);
    // Dead after 2 s of silence unless Prosody answers the pings.
    cfg.keepalive = Duration::from_secs(1);
    let mut link = ComponentLink::spawn(cfg);
    connected(&mut link).await;
    // Answers to the keepalives are swallowed: no event at all for a while.
    assert!(
        timeout(Duration::from_millis(4500), link.next_event())
            .await
            .is_err()
    );
    assert!(link.sender().is_connected());
    link.shutdown().await;
}
