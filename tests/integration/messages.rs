//! SIP MESSAGE <-> XMPP message through a real Prosody, with slixmpp and sipp as the users.
//! Each scenario reads "send X, expect Y".

use std::time::Duration;

use crate::peers::{Gateway, RawSip, SippUas, XmppPeer, env, free_port, prosody, serial, sipp_uac};

const ALICE: (&str, &str) = ("sip:alice@127.0.0.1", "alice");
const WAIT: Duration = Duration::from_secs(10);

fn romeo_sip(env_server: &str) -> String {
    format!("romeo*{env_server}@jabber.sip.test")
}

#[test]
#[ignore = "needs Prosody"]
fn sip_message_reaches_the_xmpp_user() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start(&[ALICE], free_port());
    let romeo = XmppPeer::login("romeo");
    let to = romeo_sip(&env.server);
    assert!(sipp_uac(
        gw.udp,
        "message_uac.xml",
        &[
            ("from", "alice@127.0.0.1"),
            ("to", &to),
            ("body", "e2e-1 hello")
        ]
    ));
    let msg = romeo.expect_message("e2e-1", WAIT);
    assert_eq!(msg["from"], format!("alice@{}", env.domain));
    assert_eq!(msg["type"], "chat");
    assert_eq!(msg["body"].as_str().unwrap().trim_end(), "e2e-1 hello");
}

#[test]
#[ignore = "needs Prosody"]
fn xmpp_message_reaches_the_sip_user() {
    let _serial = serial();
    let env = env();
    let uas = SippUas::start("message_uas.xml");
    let gw = Gateway::start(&[ALICE], uas.port);
    let mut romeo = XmppPeer::login("romeo");
    romeo.send(
        "e2e2",
        &format!("alice@{}", env.domain),
        "e2e-2 h\u{e9}llo w\u{f6}rld",
    );
    let trace = uas.finish(WAIT);
    for needle in [
        "MESSAGE sip:alice@127.0.0.1 SIP/2.0",
        &format!("From: <sip:romeo*{}@jabber.sip.test>;tag=", env.server),
        "To: <sip:alice@127.0.0.1>",
        "Content-Type: text/plain;charset=UTF-8",
        "e2e-2 h\u{e9}llo w\u{f6}rld",
    ] {
        assert!(trace.contains(needle), "{needle:?} not in:\n{trace}");
    }
    drop(gw);
}

#[test]
#[ignore = "needs Prosody"]
fn unknown_sip_sender_is_refused_and_nothing_is_sent() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start(&[ALICE], free_port());
    let romeo = XmppPeer::login("romeo");
    let sip = RawSip::new(gw.udp);
    let req = sip.message("mallory@127.0.0.1", &romeo_sip(&env.server), "e2e-3 sneaky");
    let resp = sip.request(&req).expect("an answer");
    assert_eq!(resp.status.as_u16(), 403);
    assert!(romeo.try_message("e2e-3", Duration::from_secs(2)).is_none());
}

#[test]
#[ignore = "needs Prosody"]
fn xmpp_error_reply_becomes_an_error_notice() {
    let _serial = serial();
    let env = env();
    let uas = SippUas::start("message_uas.xml");
    let gw = Gateway::start(&[ALICE], uas.port);
    let sip = RawSip::new(gw.udp);
    let to = format!("nobody*{}@jabber.sip.test", env.server);
    let resp = sip
        .request(&sip.message("alice@127.0.0.1", &to, "e2e-4 lost words\nsecond line"))
        .expect("an answer");
    assert_eq!(resp.status.as_u16(), 202);
    let trace = uas.finish(WAIT);
    for needle in [
        "MESSAGE sip:alice@127.0.0.1 SIP/2.0",
        "From: <sip:jabber_gateway@127.0.0.1>",
        &to,
        "service-unavailable",
        "> e2e-4 lost words",
    ] {
        assert!(trace.contains(needle), "{needle:?} not in:\n{trace}");
    }
    assert!(!trace.contains("second line"), "{trace}");
    drop(gw);
}

#[test]
#[ignore = "needs Prosody"]
fn sip_404_becomes_an_xmpp_error() {
    let _serial = serial();
    let env = env();
    let uas = SippUas::start("message_uas_404.xml");
    let _gw = Gateway::start(&[ALICE], uas.port);
    let mut romeo = XmppPeer::login("romeo");
    romeo.send(
        "e2e5",
        &format!("alice@{}", env.domain),
        "e2e-5 are you there",
    );
    let error = romeo.expect_message("e2e5", WAIT);
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"], "item-not-found");
    assert_eq!(error["from"], format!("alice@{}", env.domain));
    uas.finish(WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn a_retransmitted_message_is_delivered_once() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start(&[ALICE], free_port());
    let romeo = XmppPeer::login("romeo");
    let sip = RawSip::new(gw.udp);
    let req = sip.message("alice@127.0.0.1", &romeo_sip(&env.server), "e2e-6 once");
    let first = sip.request(&req).expect("an answer");
    let again = sip.request(&req).expect("the same answer again");
    assert_eq!(first.status.as_u16(), 202);
    assert_eq!(again.status, first.status);
    assert_eq!(again.headers.get("To"), first.headers.get("To"));
    romeo.expect_message("e2e-6", WAIT);
    assert!(romeo.try_message("e2e-6", Duration::from_secs(2)).is_none());
}

#[test]
#[ignore = "needs Prosody"]
fn messages_sent_while_prosody_restarts_arrive_in_order() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start(&[ALICE], free_port());
    prosody("stop");
    gw.expect_log("component link down", WAIT);
    let sip = RawSip::new(gw.udp);
    let to = romeo_sip(&env.server);
    for i in 1..=5 {
        let req = sip.message("alice@127.0.0.1", &to, &format!("e2e-7 number {i}"));
        let resp = sip.request(&req).expect("an answer while XMPP is down");
        assert_eq!(resp.status.as_u16(), 202, "message {i}");
    }
    prosody("start");
    gw.expect_log("component link up", Duration::from_secs(40));
    // Romeo was offline: Prosody's offline storage hands the messages over at login.
    let romeo = XmppPeer::login("romeo");
    for i in 1..=5 {
        let msg = romeo.expect_message("e2e-7", WAIT);
        assert_eq!(msg["body"], format!("e2e-7 number {i}"));
    }
}

#[test]
#[ignore = "needs Prosody"]
fn malformed_sip_is_answered_or_dropped_and_the_next_message_works() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start(&[ALICE], free_port());
    let romeo = XmppPeer::login("romeo");
    let sip = RawSip::new(gw.udp);
    let dir = crate::harness::fixture("sip/malformed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "the malformed set is in {}",
        dir.display()
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        match sip.request(&bytes) {
            Some(resp) => assert!(
                (400..500).contains(&resp.status.as_u16()) || resp.status.as_u16() == 505,
                "{name}: {} {}",
                resp.status,
                resp.reason
            ),
            None => assert!(
                name.starts_with("drop-"),
                "{name} got no answer but is not expected to be dropped"
            ),
        }
    }
    let req = sip.message(
        "alice@127.0.0.1",
        &romeo_sip(&env.server),
        "e2e-8 still here",
    );
    assert_eq!(sip.request(&req).expect("an answer").status.as_u16(), 202);
    romeo.expect_message("e2e-8", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn rfc4475_torture_over_udp_and_tcp_leaves_the_gateway_serving() {
    use std::io::{Read, Write};
    let _serial = serial();
    let gw = Gateway::start(&[ALICE], free_port());
    let dir = crate::harness::fixture("rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 49);
    let udp = RawSip::new(gw.udp);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        udp.request_within(&bytes, Duration::from_millis(300));
        let mut tcp = std::net::TcpStream::connect(gw.tcp).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        tcp.write_all(&bytes).unwrap();
        let mut sink = [0u8; 4096];
        let _ = tcp.read(&mut sink);
    }
    // Still serving both transports.
    let options = |via_transport: &str, local: std::net::SocketAddr| {
        format!(
            "OPTIONS sip:jabber.sip.test SIP/2.0\r\nVia: SIP/2.0/{via_transport} {local};branch=z9hG4bK-opt-{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=o1\r\nTo: <sip:jabber.sip.test>\r\n\
             Call-ID: opt-{}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            fastrand::u32(..),
            fastrand::u32(..)
        )
    };
    let resp = udp
        .request(options("UDP", udp.local()).as_bytes())
        .expect("OPTIONS answered over UDP");
    assert_eq!(resp.status.as_u16(), 200);
    let mut tcp = std::net::TcpStream::connect(gw.tcp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(options("TCP", local).as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
#[ignore = "needs Prosody"]
fn requests_from_untrusted_networks_are_refused() {
    let _serial = serial();
    let env = env();
    let gw = Gateway::start_with(&[ALICE], free_port(), "trusted = [\"192.0.2.0/24\"]", "");
    let romeo = XmppPeer::login("romeo");
    let sip = RawSip::new(gw.udp);
    let req = sip.message("alice@127.0.0.1", &romeo_sip(&env.server), "e2e-9 outsider");
    let resp = sip.request(&req).expect("an answer");
    assert_eq!(resp.status.as_u16(), 403);
    assert!(romeo.try_message("e2e-9", Duration::from_secs(2)).is_none());
}
