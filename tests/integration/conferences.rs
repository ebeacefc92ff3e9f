//! Conferences through a real Prosody and its MUC component: two slixmpp users in a room, SIP
//! users sending with sipp and raw requests, and a [`SipInbox`] as their phones behind the
//! gateway's outbound proxy.

use std::time::Duration;

use crate::peers::{Gateway, RawSip, SipInbox, XmppPeer, env, prosody, serial, sipp_uac};

const ALICE: (&str, &str) = ("sip:alice@127.0.0.1", "alice");
const BOB: (&str, &str) = ("sip:bob@127.0.0.1", "bob");
const WAIT: Duration = Duration::from_secs(10);

/// A room of its own for each run: Prosody keeps rooms while occupants are in them.
fn fresh_room(name: &str) -> String {
    format!("{name}-{}@conference.{}", fastrand::u32(..), env().server)
}

/// `nick*room*conference.xmpp.test@jabber.sip.test`: a conference address.
fn address(nick: &str, room: &str) -> String {
    let (local, server) = room.split_once('@').unwrap();
    format!("{nick}*{local}*{server}@jabber.sip.test")
}

#[test]
#[ignore = "needs Prosody"]
fn sip_users_join_talk_and_leave_a_room() {
    let _serial = serial();
    let room = fresh_room("talk");
    let mut romeo = XmppPeer::login("romeo");
    romeo.join(&room, "romeo");
    let mut juliet = XmppPeer::login("juliet");
    juliet.join(&room, "juliet");
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE, BOB], inbox.port);
    let sip = RawSip::new(gw.udp);
    let (local, server) = room.split_once('@').unwrap();
    let room_sip = format!("sip:*{local}*{server}@jabber.sip.test");

    // Not joined yet: 404 and a notice saying to join first.
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("", &room), "too early"),
        404
    );
    inbox.expect("first", WAIT);

    // Join with an empty nick: the SIP user name is the nick.
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("", &room), ":join"),
        200
    );
    let joined = inbox.expect("you joined the conference", WAIT);
    assert!(joined.contains(&format!("From: <{room_sip}>")), "{joined}");
    assert!(joined.contains(&format!("{room} as alice")), "{joined}");
    assert!(
        joined.contains("romeo") && joined.contains("juliet"),
        "{joined}"
    );
    romeo.expect_presence(&format!("{room}/alice"), "available", WAIT);

    // SIP -> room, sent by sipp: both XMPP users get it from alice's occupant JID.
    assert!(sipp_uac(
        gw.udp,
        "message_uac.xml",
        &[
            ("from", "alice@127.0.0.1"),
            ("to", &address("alice", &room)),
            ("body", "e2e-muc-1 hello room")
        ]
    ));
    for peer in [&romeo, &juliet] {
        let msg = peer.expect_message("e2e-muc-1", WAIT);
        assert_eq!(msg["type"], "groupchat");
        assert_eq!(msg["from"], format!("{room}/alice"));
    }

    // Room -> SIP: from the speaker's address, and alice's own message is not echoed back.
    romeo.groupchat(&room, "e2e-muc-2 hello alice");
    let seen = inbox.until("e2e-muc-2", WAIT);
    let got = seen.last().unwrap();
    assert!(
        got.contains(&format!(
            "From: <sip:romeo*{local}*{server}@jabber.sip.test>"
        )),
        "{got}"
    );
    assert!(got.contains("To: <sip:alice@127.0.0.1>"), "{got}");
    assert!(!seen.iter().any(|r| r.contains("e2e-muc-1")), "{seen:?}");

    // Private messages both ways.
    juliet.send("pm-1", &format!("{room}/alice"), "e2e-muc-3 psst");
    let pm = inbox.expect("e2e-muc-3", WAIT);
    assert!(
        pm.contains(&format!(
            "From: <sip:juliet*{local}*{server}@jabber.sip.test>"
        )),
        "{pm}"
    );
    assert_eq!(
        sip.send_message(
            "alice@127.0.0.1",
            &address("juliet", &room),
            "e2e-muc-4 psst back"
        ),
        202
    );
    let pm = juliet.expect_message("e2e-muc-4", WAIT);
    assert_eq!(pm["type"], "chat");
    assert_eq!(pm["from"], format!("{room}/alice"));
    assert!(
        romeo
            .try_message("e2e-muc-4", Duration::from_secs(1))
            .is_none()
    );

    // A nick in use: the second SIP user gets an ERROR notice.
    assert_eq!(
        sip.send_message("bob@127.0.0.1", &address("romeo", &room), ":join"),
        200
    );
    let conflict = inbox.expect("cannot join", WAIT);
    assert!(conflict.contains("To: <sip:bob@127.0.0.1>"), "{conflict}");
    assert!(conflict.contains("nick romeo is in use"), "{conflict}");
    assert_eq!(
        sip.send_message("bob@127.0.0.1", &address("romeo", &room), "e2e-muc-5"),
        404
    );

    // Kicked by the room's owner.
    romeo.kick(&room, "alice");
    let kicked = inbox.expect("kicked from the conference", WAIT);
    assert!(kicked.contains("To: <sip:alice@127.0.0.1>"), "{kicked}");
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("", &room), "e2e-muc-6"),
        404
    );

    // Back in, then out with :exit.
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("alice", &room), ":join"),
        200
    );
    inbox.expect("you joined the conference", WAIT);
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("alice", &room), ":exit"),
        200
    );
    inbox.expect("you left the conference", WAIT);
    romeo.expect_presence(&format!("{room}/alice"), "unavailable", WAIT);

    // The SER sample's way: SUBSCRIBE joins, and Expires: 0 in its dialog leaves.
    let bobby = address("bobby", &room);
    let resp = inbox.subscribe(gw.udp, "bob@127.0.0.1", &bobby, 600, None);
    assert_eq!(resp.status.as_u16(), 200);
    let notify = inbox.expect("Subscription-State: active", WAIT);
    assert!(notify.starts_with("NOTIFY sip:watcher@"), "{notify}");
    inbox.expect(&format!("{room} as bobby"), WAIT);
    romeo.expect_presence(&format!("{room}/bobby"), "available", WAIT);
    let call_id = resp.headers.call_id().unwrap().unwrap().to_owned();
    let to = resp.headers.to().unwrap().unwrap();
    let dialog = (call_id.as_str(), to.tag().unwrap(), 2);
    let resp = inbox.subscribe(gw.udp, "bob@127.0.0.1", &bobby, 0, Some(dialog));
    assert_eq!(resp.status.as_u16(), 200);
    inbox.expect("Subscription-State: terminated", WAIT);
    inbox.expect("you left the conference", WAIT);
    romeo.expect_presence(&format!("{room}/bobby"), "unavailable", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn rooms_are_rejoined_after_prosody_restarts() {
    let _serial = serial();
    let room = fresh_room("rejoin");
    let inbox = SipInbox::start();
    let gw = Gateway::start(&[ALICE], inbox.port);
    let sip = RawSip::new(gw.udp);
    // Alice makes the room (accepted as an instant room, so others can come in).
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("alice", &room), ":join"),
        200
    );
    let joined = inbox.expect("you joined the conference", WAIT);
    assert!(joined.contains("nobody else is there"), "{joined}");

    prosody("stop");
    gw.expect_log("component link down", WAIT);
    prosody("start");
    gw.expect_log("component link up", Duration::from_secs(40));
    inbox.expect("you joined the conference", WAIT);

    let mut romeo = XmppPeer::login("romeo");
    romeo.join(&room, "romeo");
    romeo.expect_presence(&format!("{room}/alice"), "available", WAIT);
    romeo.groupchat(&room, "e2e-muc-7 welcome back");
    let (local, server) = room.split_once('@').unwrap();
    let got = inbox.expect("e2e-muc-7", WAIT);
    assert!(
        got.contains(&format!(
            "From: <sip:romeo*{local}*{server}@jabber.sip.test>"
        )),
        "{got}"
    );

    // Going offline leaves the room.
    assert_eq!(
        sip.send_message("alice@127.0.0.1", "jabber.sip.test", ":offline"),
        200
    );
    inbox.expect("you left the conference", WAIT);
    romeo.expect_presence(&format!("{room}/alice"), "unavailable", WAIT);
}

#[test]
#[ignore = "needs Prosody"]
fn an_idle_session_leaves_its_rooms_after_cache_time() {
    let _serial = serial();
    let room = fresh_room("idle");
    let inbox = SipInbox::start();
    let gw = Gateway::start_with(&[ALICE], inbox.port, "", "cache_time = 2");
    let sip = RawSip::new(gw.udp);
    assert_eq!(
        sip.send_message("alice@127.0.0.1", &address("alice", &room), ":join"),
        200
    );
    inbox.expect("you joined the conference", WAIT);
    // The session sweep runs every 5 s; the session is idle after 2.
    let seen = inbox.until("you left the conference", Duration::from_secs(15));
    assert!(
        seen.iter().any(|r| r.contains("you are offline")),
        "{seen:?}"
    );
}
