//! RFC 3263 server location through `hickory-resolver`, against a small authoritative
//! DNS responder on 127.0.0.1 (written here with `hickory-proto`): no other network.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NAPTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record};
use sipjab_sip::{Destination, DnsLookup, Error, Host, Target, TransportKind, Uri};
use tokio::net::UdpSocket;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn naptr(owner: &str, order: u16, services: &str, replacement: &str) -> Record {
    let rdata = NAPTR::new(
        order,
        50,
        b"s".to_vec().into(),
        services.as_bytes().to_vec().into(),
        Vec::new().into(),
        name(replacement),
    );
    Record::from_rdata(name(owner), 300, RData::NAPTR(rdata))
}

fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    let rdata = SRV::new(priority, weight, port, name(target));
    Record::from_rdata(name(owner), 300, RData::SRV(rdata))
}

fn ip(owner: &str, addr: &str) -> Record {
    let rdata = match addr.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(name(owner), 300, rdata)
}

/// The test zone. Addresses are documentation ones: nothing is sent to them.
fn zone() -> Vec<Record> {
    vec![
        // NAPTR: TCP (order 10) before UDP (order 20); the SIPS one is skipped.
        naptr("example.test.", 20, "SIP+D2U", "_sip._udp.example.test."),
        naptr("example.test.", 10, "SIP+D2T", "_sip._tcp.example.test."),
        naptr("example.test.", 5, "SIPS+D2T", "_sips._tcp.example.test."),
        srv("_sip._tcp.example.test.", 20, 0, 5071, "b.example.test."),
        srv("_sip._tcp.example.test.", 10, 5, 5070, "a.example.test."),
        srv("_sip._udp.example.test.", 10, 5, 5080, "a.example.test."),
        srv("_sips._tcp.example.test.", 10, 5, 5061, "a.example.test."),
        ip("a.example.test.", "192.0.2.1"),
        ip("b.example.test.", "192.0.2.2"),
        ip("example.test.", "192.0.2.9"),
        // No NAPTR: SRV for UDP and TCP.
        srv("_sip._udp.srv.test.", 0, 0, 5090, "b.example.test."),
        srv("_sip._tcp.srv.test.", 0, 0, 5091, "a.example.test."),
        // Neither: A/AAAA.
        ip("plain.test.", "192.0.2.7"),
        ip("v6.test.", "2001:db8::7"),
    ]
}

/// The SOA that goes with negative answers, so that resolvers cache them (RFC 2308).
fn soa() -> Record {
    let rdata = SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        300,
    );
    Record::from_rdata(name("test."), 300, RData::SOA(rdata))
}

/// Answers UDP queries from `zone`, authoritatively: NXDOMAIN for unknown names,
/// SERVFAIL for `broken.test.`. Logs "TYPE name" per query.
async fn serve(sock: UdpSocket, zone: Vec<Record>, log: Arc<Mutex<Vec<String>>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(q) = query.queries.first().cloned() else {
            continue;
        };
        log.lock()
            .unwrap()
            .push(format!("{} {}", q.query_type(), q.name().to_lowercase()));
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.add_query(q.clone());
        if q.name().to_lowercase() == name("broken.test.") {
            reply.metadata.response_code = ResponseCode::ServFail;
        } else if zone.iter().any(|r| r.name == *q.name()) {
            reply.add_answers(
                zone.iter()
                    .filter(|r| r.name == *q.name() && r.record_type() == q.query_type())
                    .cloned(),
            );
        } else {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        if reply.answers.is_empty() {
            reply.add_authority(soa());
        }
        let Ok(bytes) = reply.to_vec() else {
            continue;
        };
        let _ = sock.send_to(&bytes, peer).await;
    }
}

struct Dns {
    lookup: DnsLookup,
    log: Arc<Mutex<Vec<String>>>,
}

impl Dns {
    async fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve(sock, zone(), log.clone()));
        Self {
            lookup: DnsLookup::with_nameserver(addr).unwrap(),
            log,
        }
    }

    async fn locate(&self, uri: &str) -> Result<Vec<String>, Error> {
        let Uri::Sip(uri) = Uri::parse(uri).unwrap() else {
            panic!("not a SIP URI");
        };
        let targets = self.lookup.locate(&Destination::from_uri(&uri)?).await?;
        Ok(targets.iter().map(show).collect())
    }

    fn take_log(&self) -> Vec<String> {
        let mut log = std::mem::take(&mut *self.log.lock().unwrap());
        log.sort();
        log
    }
}

fn show(t: &Target) -> String {
    format!("{}:{}", t.transport.via_token(), t.addr)
}

#[tokio::test]
async fn naptr_srv_a_in_rfc3263_order() {
    let dns = Dns::start().await;
    let want = [
        "TCP:192.0.2.1:5070",
        "TCP:192.0.2.2:5071",
        "UDP:192.0.2.1:5080",
    ];
    assert_eq!(dns.locate("sip:alice@example.test").await.unwrap(), want);
    let log = dns.take_log();
    assert!(log.contains(&"NAPTR example.test.".to_owned()), "{log:?}");
    assert!(
        log.contains(&"SRV _sip._tcp.example.test.".to_owned()),
        "{log:?}"
    );
    assert!(
        log.contains(&"SRV _sip._udp.example.test.".to_owned()),
        "{log:?}"
    );
    assert!(!log.iter().any(|q| q.contains("_sips")), "{log:?}");

    // Answers are cached: the same search again asks nothing.
    assert_eq!(dns.locate("sip:bob@example.test").await.unwrap(), want);
    assert_eq!(dns.take_log(), Vec::<String>::new());
}

#[tokio::test]
async fn srv_without_naptr_then_a() {
    let dns = Dns::start().await;
    assert_eq!(
        dns.locate("sip:u@srv.test").await.unwrap(),
        ["UDP:192.0.2.2:5090", "TCP:192.0.2.1:5091"]
    );
    assert_eq!(
        dns.locate("sip:u@plain.test").await.unwrap(),
        ["UDP:192.0.2.7:5060"]
    );
    assert_eq!(
        dns.locate("sip:u@v6.test;transport=tcp").await.unwrap(),
        ["TCP:[2001:db8::7]:5060"]
    );
}

#[tokio::test]
async fn explicit_port_and_transport_skip_lookups() {
    let dns = Dns::start().await;
    // A port: addresses only, no NAPTR or SRV.
    assert_eq!(
        dns.locate("sip:u@example.test:5099").await.unwrap(),
        ["UDP:192.0.2.9:5099"]
    );
    let log = dns.take_log();
    assert!(log.iter().all(|q| q.ends_with(" example.test.")), "{log:?}");
    assert!(
        log.iter()
            .all(|q| q.starts_with("A ") || q.starts_with("AAAA ")),
        "{log:?}"
    );
    // A transport: that SRV only.
    assert_eq!(
        dns.locate("sip:u@example.test;transport=udp")
            .await
            .unwrap(),
        ["UDP:192.0.2.1:5080"]
    );
    let log = dns.take_log();
    assert!(!log.iter().any(|q| q.starts_with("NAPTR")), "{log:?}");
    assert!(!log.iter().any(|q| q.contains("_tcp")), "{log:?}");
    // A numeric host: nothing asked.
    let dest = Destination {
        host: Host::Ipv4([192, 0, 2, 50].into()),
        port: None,
        transport: Some(TransportKind::Tcp),
    };
    let targets = dns.lookup.locate(&dest).await.unwrap();
    assert_eq!(
        targets,
        [Target {
            addr: SocketAddr::from(([192, 0, 2, 50], 5060)),
            transport: TransportKind::Tcp
        }]
    );
    assert_eq!(dns.take_log(), Vec::<String>::new());
}

#[tokio::test]
async fn searches_can_be_spawned() {
    let dns = Dns::start().await;
    let dest = Destination::from_host("example.test", None, None).unwrap();
    let lookup = dns.lookup.clone();
    let task = tokio::spawn(async move { lookup.locate(&dest).await });
    assert_eq!(
        task.await.unwrap().unwrap()[0].transport,
        TransportKind::Tcp
    );
}

#[tokio::test]
async fn missing_and_failing_names() {
    let dns = Dns::start().await;
    let e = dns.locate("sip:u@nowhere.test").await.unwrap_err();
    assert!(matches!(e, Error::NoAddress(_)), "{e}");
    let e = dns.locate("sip:u@broken.test").await.unwrap_err();
    assert!(matches!(e, Error::Dns(_)), "{e}");
    let e = dns.locate("sips:u@example.test").await.unwrap_err();
    assert!(matches!(e, Error::UnsupportedDestination(_)), "{e}");
}

#[tokio::test]
async fn system_configuration_builds() {
    // Reads /etc/resolv.conf (or falls back to 127.0.0.1); asks nothing.
    let lookup = DnsLookup::from_system_conf().unwrap();
    let dest = Destination {
        host: Host::Ipv4([127, 0, 0, 1].into()),
        port: Some(5070),
        transport: None,
    };
    assert_eq!(
        lookup.locate(&dest).await.unwrap()[0].addr,
        SocketAddr::from(([127, 0, 0, 1], 5070))
    );
}
