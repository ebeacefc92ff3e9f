//! Loopback tests of the tokio transport.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::*;
use crate::{Request, StatusCode, StreamDecoder};

fn message(call_id: &str, via_host: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via_host};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    .into_bytes()
}

fn options(call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:gw@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn start(config: TransportConfig) -> (SipTransport, mpsc::Receiver<Incoming>) {
    let addrs: Vec<ListenAddr> = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    SipTransport::bind(&addrs, config).await.unwrap()
}

/// Receives until a request with this Call-ID arrives (others are skipped).
async fn expect_call(rx: &mut mpsc::Receiver<Incoming>, call_id: &str) -> Incoming {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let inc = rx.recv().await.expect("channel open");
            if inc.message.headers().call_id().ok().flatten() == Some(call_id) {
                return inc;
            }
        }
    })
    .await
    .expect("message delivered in time")
}

fn request(inc: &Incoming) -> &Request {
    match &inc.message {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

#[test]
fn listen_addr_strings() {
    let a: ListenAddr = "udp:127.0.0.1:5060".parse().unwrap();
    assert_eq!(a.transport, TransportKind::Udp);
    let b: ListenAddr = "tcp:[::1]:5060".parse().unwrap();
    assert_eq!(b.addr, "[::1]:5060".parse().unwrap());
    assert_eq!(b.to_string(), "tcp:[::1]:5060");
    assert!("sctp:127.0.0.1:5060".parse::<ListenAddr>().is_err());
    assert!("udp:localhost:5060".parse::<ListenAddr>().is_err());
    assert!("udp".parse::<ListenAddr>().is_err());
}

#[tokio::test]
async fn udp_message_delivered_stamped_and_answered() {
    let (t, mut rx) = start(TransportConfig::default()).await;
    let server = t.local_addr(TransportKind::Udp).unwrap();
    assert_ne!(server.port(), 0);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"garbage\r\n\r\n", server).await.unwrap();
    client.send_to(b"\r\n\r\n", server).await.unwrap();
    client
        .send_to(&message("udp1", "client.invalid:5099"), server)
        .await
        .unwrap();
    let inc = expect_call(&mut rx, "udp1").await;
    assert_eq!(inc.transport, TransportKind::Udp);
    assert_eq!(inc.source, client.local_addr().unwrap());
    assert_eq!(inc.local, server);
    let req = request(&inc);
    assert_eq!(req.body, b"hello");
    let via = req.headers.top_via().unwrap().unwrap();
    assert_eq!(via.received(), Some(inc.source.ip()));
    assert_eq!(via.rport(), Some(Some(inc.source.port())));
    // The answer goes to received:rport, i.e. back to the client socket.
    let resp = Response::for_request(req, StatusCode::OK, "OK");
    t.send_response(&resp, inc.source_target()).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, server);
    let Message::Response(got) = crate::parse_datagram(&buf[..n]).unwrap() else {
        panic!()
    };
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.headers.to().unwrap().unwrap().tag().is_some());
}

#[tokio::test]
async fn udp_retransmission_gets_the_same_bytes() {
    let (t, mut rx) = start(TransportConfig::default()).await;
    let server = t.local_addr(TransportKind::Udp).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut table = crate::TransactionTable::new(1);
    let now = std::time::Instant::now();
    let msg = message("udprtx", "client.invalid:5099");
    let mut answers = Vec::new();
    for attempt in 0..2 {
        client.send_to(&msg, server).await.unwrap();
        let inc = expect_call(&mut rx, "udprtx").await;
        let (target, bytes) = match table
            .handle_request(request(&inc), inc.source_target(), now)
            .unwrap()
        {
            crate::RequestDisposition::New(id) => {
                assert_eq!(attempt, 0);
                let resp = Response::for_request(request(&inc), StatusCode::ACCEPTED, "Accepted");
                table.send_response(id, request(&inc), &resp, now).unwrap()
            }
            crate::RequestDisposition::Retransmission(resend) => {
                assert_eq!(attempt, 1);
                resend.expect("final response stored")
            }
        };
        t.send_bytes(&bytes, target).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, server);
        answers.push(buf[..n].to_vec());
    }
    assert_eq!(answers[0], answers[1]);
    let Message::Response(got) = crate::parse_datagram(&answers[0]).unwrap() else {
        panic!()
    };
    assert_eq!(got.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn tcp_message_delivered_and_answered_on_same_connection() {
    let (t, mut rx) = start(TransportConfig::default()).await;
    let server = t.local_addr(TransportKind::Tcp).unwrap();
    let mut client = TcpStream::connect(server).await.unwrap();
    // Keep-alive, then a message split in two writes.
    let msg = message("tcp1", "client.invalid");
    client.write_all(b"\r\n\r\n").await.unwrap();
    client.write_all(&msg[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&msg[20..]).await.unwrap();
    let inc = expect_call(&mut rx, "tcp1").await;
    assert_eq!(inc.transport, TransportKind::Tcp);
    assert_eq!(inc.source, client.local_addr().unwrap());
    let resp = Response::for_request(request(&inc), StatusCode::OK, "OK");
    t.send_response(&resp, inc.source_target()).await.unwrap();
    // A request from the gateway to that peer reuses the inbound connection too.
    let mut out = Request::new(
        crate::Method::Message,
        crate::Uri::parse("sip:alice@example.com").unwrap(),
    );
    out.headers
        .push("Via", "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKout");
    out.headers.push("Call-ID", "out1");
    out.set_body("text/plain", b"hey".to_vec());
    t.send(&Message::Request(out), inc.source_target())
        .await
        .unwrap();
    let mut dec = StreamDecoder::default();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        dec.push(&buf[..n]);
        while let Some(m) = dec.next_message().unwrap() {
            got.push(m);
        }
    }
    assert!(matches!(&got[0], Message::Response(r) if r.status == StatusCode::OK));
    assert!(matches!(&got[1], Message::Request(r) if r.body == b"hey"));
}

#[tokio::test]
async fn tcp_garbage_closes_only_that_connection() {
    let (t, mut rx) = start(TransportConfig::default()).await;
    let server = t.local_addr(TransportKind::Tcp).unwrap();
    let mut bad = TcpStream::connect(server).await.unwrap();
    bad.write_all(b"this is not SIP\r\n\r\n").await.unwrap();
    assert_eq!(
        read_within_5s(&mut bad).await,
        0,
        "server closes the connection"
    );
    let mut good = TcpStream::connect(server).await.unwrap();
    good.write_all(&options("after-garbage")).await.unwrap();
    expect_call(&mut rx, "after-garbage").await;
}

/// What one read from `stream` gets within 5 s: 0 when the server closed it (or the read
/// failed); a test fails if nothing happens in that time.
async fn read_within_5s(stream: &mut TcpStream) -> usize {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test]
async fn tcp_connection_limit_and_idle_timeout() {
    let config = TransportConfig {
        max_connections: 1,
        idle_timeout: Duration::from_millis(300),
        ..TransportConfig::default()
    };
    let (t, mut rx) = start(config).await;
    let server = t.local_addr(TransportKind::Tcp).unwrap();
    let mut first = TcpStream::connect(server).await.unwrap();
    first.write_all(&options("first")).await.unwrap();
    expect_call(&mut rx, "first").await;
    let mut second = TcpStream::connect(server).await.unwrap();
    assert_eq!(
        read_within_5s(&mut second).await,
        0,
        "over the limit: closed"
    );
    // The idle timer frees the slot.
    assert_eq!(
        read_within_5s(&mut first).await,
        0,
        "idle connection closed"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(server).await.unwrap();
    third.write_all(&options("third")).await.unwrap();
    expect_call(&mut rx, "third").await;
}

#[tokio::test]
async fn torture_files_do_not_stall_the_listeners() {
    let config = TransportConfig {
        idle_timeout: Duration::from_millis(500),
        ..TransportConfig::default()
    };
    let (t, mut rx) = start(config).await;
    let udp = t.local_addr(TransportKind::Udp).unwrap();
    let tcp = t.local_addr(TransportKind::Tcp).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut streams = Vec::new();
    for data in crate::torture::tests::all_fixtures() {
        client.send_to(&data, udp).await.unwrap();
        let mut s = TcpStream::connect(tcp).await.unwrap();
        s.write_all(&data).await.unwrap();
        // Left open: clerr/baddn stay incomplete until the idle timer closes them.
        streams.push(s);
    }
    client.send_to(&options("udp-after"), udp).await.unwrap();
    expect_call(&mut rx, "udp-after").await;
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(&options("tcp-after")).await.unwrap();
    expect_call(&mut rx, "tcp-after").await;
    // The incomplete ones are closed by the idle timer.
    let mut buf = [0u8; 4096];
    for mut s in streams {
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection left open");
    }
}

#[tokio::test]
async fn can_send_needs_a_udp_socket_of_the_family() {
    let (transport, _rx) = start(TransportConfig::default()).await;
    let target = |addr: &str, transport| Target {
        addr: addr.parse().unwrap(),
        transport,
    };
    assert!(transport.can_send(target("192.0.2.1:5060", TransportKind::Udp)));
    assert!(!transport.can_send(target("[2001:db8::1]:5060", TransportKind::Udp)));
    assert!(transport.can_send(target("[2001:db8::1]:5060", TransportKind::Tcp)));
}

#[tokio::test]
async fn ipv6_loopback_udp_and_tcp() {
    let addrs: Vec<ListenAddr> = ["udp:[::1]:0", "tcp:[::1]:0"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let Ok((t, mut rx)) = SipTransport::bind(&addrs, TransportConfig::default()).await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let udp = t.local_addr(TransportKind::Udp).unwrap();
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    client
        .send_to(&message("v6udp", "[::1]:5060"), udp)
        .await
        .unwrap();
    let inc = expect_call(&mut rx, "v6udp").await;
    assert!(inc.source.is_ipv6());
    let via = request(&inc).headers.top_via().unwrap().unwrap();
    // Same host as the source: no `received` for that, but rport was asked for.
    assert_eq!(via.rport(), Some(Some(inc.source.port())));
    let resp = Response::for_request(request(&inc), StatusCode::OK, "OK");
    t.send_response(&resp, inc.source_target()).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
    let tcp = t.local_addr(TransportKind::Tcp).unwrap();
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(&options("v6tcp")).await.unwrap();
    let inc = expect_call(&mut rx, "v6tcp").await;
    assert_eq!(inc.transport, TransportKind::Tcp);
    assert_eq!(inc.local, tcp);
}
