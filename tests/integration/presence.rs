//! Sessions and presence authorisation through a real Prosody: slixmpp as the Jabber contact,
//! SIP requests from the test as the SIP user, and a [`SipInbox`] as the user's phone.

use std::time::Duration;

use crate::peers::{Gateway, RawSip, SipInbox, XmppPeer, env, serial};

const ALICE: (&str, &str) = ("sip:alice@127.0.0.1", "alice");
const WAIT: Duration = Duration::from_secs(10);

/// A MESSAGE with a command to the gateway's own domain, answered with `status`.
fn command(sip: &RawSip, body: &str) -> u16 {
    sip.send_message("alice@127.0.0.1", "jabber.sip.test", body)
}

/// Lets the probes a login sends settle. Prosody keeps rosters from earlier tests, and a
/// fresh gateway store answers a probe for an old subscription with `unsubscribed` (RFC 6121
/// §4.3.2.1). That would cancel a request sent at the same moment.
fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

/// Logs `user` in with a roster that holds nothing of `alice`'s, whatever earlier runs left.
fn clean_login(user: &str, alice: &str) -> XmppPeer {
    let mut peer = XmppPeer::login(user);
    peer.forget(alice);
    settle();
    peer
}

/// Romeo asks to see alice's presence, and alice allows it.
fn romeo_subscribes(romeo: &mut XmppPeer, inbox: &SipInbox, sip: &RawSip, alice: &str) {
    romeo.presence(alice, "subscribe");
    let notice = inbox.expect("asks to see your presence", WAIT);
    assert!(notice.contains(":allow romeo@"), "{notice}");
    assert!(
        notice.contains("From: <sip:jabber_gateway@127.0.0.1>"),
        "{notice}"
    );
    assert_eq!(command(sip, &format!(":allow {}", romeo.jid)), 200);
    romeo.expect_presence(alice, "subscribed", WAIT);
}

fn register(sip: &RawSip, expires: u32) -> u16 {
    let local = sip.local();
    let n = fastrand::u32(..);
    let req = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg-{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=r{n}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: reg-{n}@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{local}>\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    );
    sip.request(req.as_bytes())
        .expect("an answer")
        .status
        .as_u16()
}

#[test]
#[ignore = "needs Prosody"]
fn online_and_offline_commands_flip_what_the_contact_sees() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE], inbox.port);
    let sip = RawSip::new(gw.udp);
    let mut romeo = clean_login("romeo", &alice);
    romeo_subscribes(&mut romeo, &inbox, &sip, &alice);
    // Nobody is online yet: the answer to :allow carried unavailable presence.
    romeo.expect_presence(&alice, "unavailable", WAIT);
    assert_eq!(command(&sip, ":online"), 200);
    romeo.expect_presence(&alice, "available", WAIT);
    assert_eq!(command(&sip, ":off"), 200);
    romeo.expect_presence(&alice, "unavailable", WAIT);
    // A command from someone without an account: 404, as the SER sample script answered.
    assert_eq!(
        sip.send_message("mallory@127.0.0.1", "jabber.sip.test", ":online"),
        404
    );
}

#[test]
#[ignore = "needs Prosody"]
fn register_flips_the_contact_view_and_subscriptions_survive_a_restart() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE], inbox.port);
    let mut romeo = clean_login("romeo", &alice);
    {
        let sip = RawSip::new(gw.udp);
        romeo_subscribes(&mut romeo, &inbox, &sip, &alice);
        assert_eq!(register(&sip, 3600), 200);
        romeo.expect_presence(&alice, "available", WAIT);
        assert_eq!(register(&sip, 0), 200);
        romeo.expect_presence(&alice, "unavailable", WAIT);
    }
    // A new gateway process on the same store: romeo's subscription is still there.
    let gw = gw.restart();
    let sip = RawSip::new(gw.udp);
    assert_eq!(register(&sip, 3600), 200);
    romeo.expect_presence(&alice, "available", WAIT);
    // A probe from romeo's server is answered with the current state.
    romeo.presence(&alice, "probe");
    romeo.expect_presence(&alice, "available", WAIT);
    assert_eq!(register(&sip, 0), 200);
    romeo.expect_presence(&alice, "unavailable", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn an_idle_session_ends_after_cache_time_with_a_notice() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    let gw = Gateway::start_with(&[ALICE], inbox.port, "", "cache_time = 2");
    let sip = RawSip::new(gw.udp);
    let mut romeo = clean_login("romeo", &alice);
    romeo_subscribes(&mut romeo, &inbox, &sip, &alice);
    assert_eq!(command(&sip, ":online"), 200);
    romeo.expect_presence(&alice, "available", WAIT);
    // The sweep runs every 5 s: offline within cache_time plus one sweep.
    romeo.expect_presence(&alice, "unavailable", Duration::from_secs(15));
    let notice = inbox.expect("you are offline in the Jabber network", WAIT);
    assert!(notice.contains("MESSAGE sip:alice@127.0.0.1"), "{notice}");
    // Any message brings the user back.
    let to = format!("romeo*{}@jabber.sip.test", env.server);
    assert_eq!(sip.send_message("alice@127.0.0.1", &to, "back again"), 202);
    romeo.expect_presence(&alice, "available", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn deny_and_reject_refuse_the_subscription() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    {
        let gw = Gateway::start(&[ALICE], inbox.port);
        let sip = RawSip::new(gw.udp);
        let mut juliet = clean_login("juliet", &alice);
        juliet.presence(&alice, "subscribe");
        inbox.expect("juliet@", WAIT);
        assert_eq!(command(&sip, &format!(":deny {}", juliet.jid)), 200);
        juliet.expect_presence(&alice, "unsubscribed", WAIT);
        assert_eq!(command(&sip, ":deny a@b@c"), 400);
    }
    let reject = "[presence]\nauthorize = \"reject\"";
    let _gw = Gateway::start_with(&[ALICE], inbox.port, "", &format!("\n{reject}"));
    let mut juliet = clean_login("juliet", &alice);
    juliet.presence(&alice, "subscribe");
    juliet.expect_presence(&alice, "unsubscribed", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn a_sip_user_watches_a_jabber_contact() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE], inbox.port);
    let mut romeo = clean_login("romeo", &alice);
    let romeo_sip = format!("romeo*{}@jabber.sip.test", env.server);
    let ok = inbox.subscribe(gw.udp, "alice@127.0.0.1", &romeo_sip, 600, None);
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.reason);
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let to_tag = ok.headers.to().unwrap().unwrap().tag().unwrap().to_owned();
    let call_id = ok.headers.call_id().unwrap().unwrap().to_owned();
    // RFC 6665 §4.2.1.2: a NOTIFY at once; pending until romeo approves.
    let pending = inbox.expect("NOTIFY", WAIT);
    assert!(
        pending.contains("Subscription-State: pending;expires="),
        "{pending}"
    );
    romeo.expect_presence(&alice, "subscribe", WAIT);
    romeo.presence(&alice, "subscribed");
    let active = inbox.expect("Subscription-State: active", WAIT);
    assert!(
        active.contains("Content-Type: application/pidf+xml"),
        "{active}"
    );
    inbox.expect("<basic>open</basic>", WAIT);
    romeo.show("away", "At lunch");
    let away = inbox.expect("At lunch", WAIT);
    assert!(away.contains(">away</"), "{away}");
    romeo.presence(&alice, "unavailable");
    inbox.expect("<basic>closed</basic>", WAIT);
    // Expires: 0 in the dialog ends it.
    let bye = inbox.subscribe(
        gw.udp,
        "alice@127.0.0.1",
        &romeo_sip,
        0,
        Some((&call_id, &to_tag, 2)),
    );
    assert_eq!(bye.status.as_u16(), 200);
    inbox.expect("Subscription-State: terminated;reason=timeout", WAIT);
    // A refresh of the ended dialog is unknown.
    let gone = inbox.subscribe(
        gw.udp,
        "alice@127.0.0.1",
        &romeo_sip,
        600,
        Some((&call_id, &to_tag, 3)),
    );
    assert_eq!(gone.status.as_u16(), 481);
    // The XMPP subscription stays: a new SUBSCRIBE is active at once.
    let again = inbox.subscribe(gw.udp, "alice@127.0.0.1", &romeo_sip, 600, None);
    assert_eq!(again.status.as_u16(), 200);
    inbox.expect("Subscription-State: active", WAIT);
}

/// A PUBLISH from alice of `body` (a PIDF document, or none), with `SIP-If-Match`.
fn publish(sip: &RawSip, body: &str, expires: u32, if_match: Option<&str>) -> sipjab_sip::Response {
    let local = sip.local();
    let n = fastrand::u32(..);
    let if_match = if_match.map_or_else(String::new, |e| format!("SIP-If-Match: {e}\r\n"));
    let content_type = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/pidf+xml\r\n".to_owned()
    };
    let req = format!(
        "PUBLISH sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-pub-{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=p{n}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: pub-{n}@127.0.0.1\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n\
         {if_match}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sip.request(req.as_bytes()).expect("an answer to PUBLISH")
}

const AWAY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@127.0.0.1">
  <tuple id="phone"><status><basic>open</basic></status><note>Gone fishing</note></tuple>
  <dm:person xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" id="p1">
    <rpid:activities><rpid:away/></rpid:activities>
  </dm:person>
</presence>"#;

#[test]
#[ignore = "needs Prosody"]
fn publish_sets_what_the_contact_sees_and_bad_pidf_changes_nothing() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE], inbox.port);
    let sip = RawSip::new(gw.udp);
    let mut romeo = clean_login("romeo", &alice);
    romeo_subscribes(&mut romeo, &inbox, &sip, &alice);
    let ok = publish(&sip, AWAY, 600, None);
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.reason);
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let etag = ok
        .headers
        .get("SIP-ETag")
        .expect("an entity tag")
        .to_owned();
    let seen = romeo.expect_presence(&alice, "available", WAIT);
    assert_eq!(seen["show"], "away");
    assert_eq!(seen["status"], "Gone fishing");
    // Malformed PIDF: 400, and romeo sees nothing new.
    let bad = publish(&sip, "<presence><tuple>", 600, None);
    assert_eq!(bad.status.as_u16(), 400);
    assert!(
        romeo
            .try_presence(&alice, "available", Duration::from_secs(2))
            .is_none()
    );
    // A refresh naming an unknown entity tag: 412.
    assert_eq!(
        publish(&sip, "", 600, Some("no-such-etag")).status.as_u16(),
        412
    );
    // A refresh without a body keeps the state and changes the tag.
    let refreshed = publish(&sip, "", 600, Some(&etag));
    assert_eq!(refreshed.status.as_u16(), 200);
    let etag2 = refreshed.headers.get("SIP-ETag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    // Removing the publication that opened the session takes alice offline.
    assert_eq!(publish(&sip, "", 0, Some(&etag2)).status.as_u16(), 200);
    romeo.expect_presence(&alice, "unavailable", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn the_sip_side_authorises_a_contact_by_notify() {
    let _serial = serial();
    let env = env();
    let alice = format!("alice@{}", env.domain);
    // A clean roster before the one-shot phone exists: a pending request left by an earlier
    // run would be sent again at login and use the phone up.
    let mut romeo = clean_login("romeo", &alice);
    let phone = crate::peers::SippUas::start("presence_uas.xml");
    let _gw = Gateway::start(&[ALICE], phone.port);
    romeo.presence(&alice, "subscribe");
    let trace = phone.finish(WAIT);
    assert!(
        trace.contains("SIP/2.0 200 OK"),
        "the NOTIFY was not answered:\n{trace}"
    );
    // RFC 8048 §5.2.1: an active NOTIFY approves, and its PIDF is alice's presence.
    romeo.expect_presence(&alice, "subscribed", WAIT);
    let seen = romeo.expect_presence(&alice, "available", WAIT);
    assert_eq!(seen["status"], "Reading");
    assert!(
        trace.contains("SUBSCRIBE sip:alice@127.0.0.1 SIP/2.0"),
        "{trace}"
    );
    assert!(trace.contains("Event: presence"), "{trace}");
    assert!(
        trace.contains(&format!("From: <sip:romeo*{}@jabber.sip.test>", env.server)),
        "{trace}"
    );
}
