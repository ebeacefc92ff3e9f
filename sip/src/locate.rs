//! Locating SIP servers (RFC 3263 section 4) for the requests the gateway sends: from a
//! [`Destination`] (the Request-URI or the outbound proxy) to an ordered list of
//! [`Target`]s, tried in turn.
//!
//! The decision procedure, [`locate`], is pure code over the small [`Lookup`] trait, so
//! it is tested with a fake zone; `DnsLookup` (feature `tokio`) answers the queries
//! with `hickory-resolver`, which caches answers for their TTL.
//!
//! # The procedure
//! 1. The target is the URI's `maddr` when present, else its host.
//! 2. A numeric host is used as it is: no DNS. Transport from `;transport=`, else UDP;
//!    port from the URI, else 5060.
//! 3. A name with a port: A/AAAA only (no NAPTR or SRV). Transport from `;transport=`,
//!    else UDP.
//! 4. A name with `;transport=` but no port: SRV `_sip._udp` or `_sip._tcp` for that
//!    transport; without SRV records, A/AAAA at 5060.
//! 5. A name alone: NAPTR (RFC 3403). Records with flag `S`, an empty regexp and the
//!    service `SIP+D2U` or `SIP+D2T` are kept, ordered by order then preference, and
//!    each one's replacement is looked up as SRV with that transport. Without usable
//!    NAPTR records, SRV `_sip._udp` then `_sip._tcp`. Without SRV records either,
//!    A/AAAA at 5060 over the first NAPTR transport, or UDP.
//!
//! SRV records are ordered as RFC 2782 asks: by priority, and within a priority by
//! weighted random selection as the RFC writes it (zero weights first, a random number
//! in `0..=sum of weights`, the first record whose running sum reaches it; so a zero
//! weight still has a small chance to come first). Each SRV target's addresses follow
//! one another in the list. A target of `.` means "no such service here": no fallback
//! to A/AAAA, and no target from it.
//!
//! A lookup that fails (timeout, SERVFAIL) counts as no records, so the procedure goes
//! on to the next step; if nothing is found at all, the first such failure is the
//! error ([`Error::Dns`]), else [`Error::NoAddress`].
//!
//! # Not supported
//! - TLS and SCTP: `sips:` URIs and other transports are [`Error::UnsupportedDestination`];
//!   `SIPS+D2T` and `SIP+D2S` NAPTR records are skipped.
//! - Non-terminal NAPTR records (empty flags) and regexp rewriting: skipped.
//! - Failover is the caller's job; this module only orders the list (RFC 3263 4.3).
//! - RFC 3263 section 5 (sending responses to a backup client): responses follow the
//!   Via (see [`response_target`](crate::response_target)).
//!
//! Each search is bounded: at most 8 NAPTR records and 16 address lookups are followed.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use crate::Error;
use crate::route::{Target, TransportKind};
use crate::uri::{Host, SipUri};

#[cfg(feature = "tokio")]
mod dns;

#[cfg(feature = "tokio")]
pub use dns::DnsLookup;

/// The SIP port for UDP and TCP (RFC 3261 19.1.2).
pub const DEFAULT_PORT: u16 = 5060;

/// NAPTR records followed in one search.
const MAX_NAPTR: usize = 8;
/// Address (A/AAAA) lookups in one search: bounds what a hostile zone can make us do.
const MAX_ADDRESS_LOOKUPS: usize = 16;

/// Where a request goes, before DNS: a SIP URI's host, port and transport, or the
/// outbound proxy's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// A name or a numeric address.
    pub host: Host,
    /// An explicit port: no NAPTR or SRV lookups.
    pub port: Option<u16>,
    /// An explicit transport: no NAPTR lookup.
    pub transport: Option<TransportKind>,
}

impl Destination {
    /// The destination of a Request-URI (RFC 3263 4): `maddr` if present, else the
    /// host; its port; its `transport` parameter.
    ///
    /// `sips:` URIs and transports other than UDP and TCP are
    /// [`Error::UnsupportedDestination`]; a bad `maddr` is [`Error::Uri`].
    pub fn from_uri(uri: &SipUri) -> Result<Self, Error> {
        if uri.secure {
            return Err(Error::UnsupportedDestination(format!(
                "{uri}: sips is not supported"
            )));
        }
        let transport = match uri.params.get("transport") {
            None => None,
            Some(Some(t)) if t.eq_ignore_ascii_case("udp") => Some(TransportKind::Udp),
            Some(Some(t)) if t.eq_ignore_ascii_case("tcp") => Some(TransportKind::Tcp),
            Some(_) => {
                return Err(Error::UnsupportedDestination(format!(
                    "{uri}: only UDP and TCP are supported"
                )));
            }
        };
        let host = match uri.params.get("maddr") {
            Some(Some(maddr)) => Host::parse(maddr)?,
            Some(None) => return Err(Error::Uri(format!("{uri}: maddr without a value"))),
            None => uri.host.clone(),
        };
        Ok(Self {
            host,
            port: uri.port,
            transport,
        })
    }
}

impl Destination {
    /// A configured host such as an outbound proxy's: a name, an IPv4 address, or an
    /// IPv6 address with or without brackets. Leave `port` and `transport` `None`
    /// when the configuration did not give them, so that NAPTR and SRV are used.
    pub fn from_host(
        host: &str,
        port: Option<u16>,
        transport: Option<TransportKind>,
    ) -> Result<Self, Error> {
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::from(ip),
            Err(_) => Host::parse(host)?,
        };
        Ok(Self {
            host,
            port,
            transport,
        })
    }
}

/// A NAPTR record (RFC 3403), as [`Lookup::naptr`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Naptr {
    /// Lower first, strictly.
    pub order: u16,
    /// Lower first among equal orders.
    pub preference: u16,
    /// `S` for a terminal record whose replacement is an SRV name.
    pub flags: String,
    /// For example `SIP+D2U`.
    pub services: String,
    /// Empty for the records RFC 3263 uses.
    pub regexp: String,
    /// The SRV name to look up next.
    pub replacement: String,
}

/// An SRV record (RFC 2782), as [`Lookup::srv`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Srv {
    /// Lower first, strictly.
    pub priority: u16,
    /// Relative chance among equal priorities.
    pub weight: u16,
    /// The server's port.
    pub port: u16,
    /// The server's name; `.` means the service is not offered.
    pub target: String,
}

/// The DNS queries RFC 3263 needs.
///
/// A name with no records of the type (NXDOMAIN or an empty answer) is `Ok` with an
/// empty list; `Err` is kept for failures such as timeouts.
pub trait Lookup {
    /// NAPTR records of `name`.
    fn naptr(&self, name: &str) -> impl Future<Output = Result<Vec<Naptr>, Error>> + Send;
    /// SRV records of `name`.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<Srv>, Error>> + Send;
    /// A and AAAA records of `name`, in the order they should be tried.
    fn ip(&self, name: &str) -> impl Future<Output = Result<Vec<IpAddr>, Error>> + Send;
}

/// Runs RFC 3263 server location for `dest`: the targets in the order to try them.
///
/// Never empty when `Ok`. Uses a fresh random generator for the SRV weights.
pub async fn locate<L: Lookup>(lookup: &L, dest: &Destination) -> Result<Vec<Target>, Error> {
    locate_with_rng(lookup, dest, &mut fastrand::Rng::new()).await
}

/// [`locate`] with a given random generator (seed it for repeatable SRV ordering).
pub async fn locate_with_rng<L: Lookup>(
    lookup: &L,
    dest: &Destination,
    rng: &mut fastrand::Rng,
) -> Result<Vec<Target>, Error> {
    let numeric = |ip: IpAddr| {
        Ok(vec![Target {
            addr: SocketAddr::new(ip, dest.port.unwrap_or(DEFAULT_PORT)),
            transport: dest.transport.unwrap_or(TransportKind::Udp),
        }])
    };
    let name = match &dest.host {
        Host::Domain(name) => name.as_str(),
        Host::Ipv4(ip) => return numeric((*ip).into()),
        Host::Ipv6(ip) => return numeric((*ip).into()),
    };
    let mut search = Search {
        lookup,
        rng,
        targets: Vec::new(),
        error: None,
        address_lookups: 0,
    };
    match (dest.port, dest.transport) {
        (Some(port), transport) => {
            search
                .addresses(name, port, transport.unwrap_or(TransportKind::Udp))
                .await;
        }
        (None, Some(transport)) => {
            if !search.srv(&srv_name(transport, name), transport).await {
                search.addresses(name, DEFAULT_PORT, transport).await;
            }
        }
        (None, None) => {
            let naptrs = search.naptr(name).await;
            let mut found = false;
            let fallback = match naptrs.first() {
                Some(&(first, _)) => {
                    for (transport, replacement) in &naptrs {
                        found |= search.srv(replacement, *transport).await;
                    }
                    first
                }
                None => {
                    for transport in [TransportKind::Udp, TransportKind::Tcp] {
                        found |= search.srv(&srv_name(transport, name), transport).await;
                    }
                    TransportKind::Udp
                }
            };
            if !found {
                search.addresses(name, DEFAULT_PORT, fallback).await;
            }
        }
    }
    search.finish(name)
}

/// `_sip._udp.name` or `_sip._tcp.name`.
fn srv_name(transport: TransportKind, name: &str) -> String {
    let proto = match transport {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
    };
    format!("_sip._{proto}.{name}")
}

/// The transport of a NAPTR service field we can use.
fn naptr_transport(services: &str) -> Option<TransportKind> {
    if services.eq_ignore_ascii_case("SIP+D2U") {
        Some(TransportKind::Udp)
    } else if services.eq_ignore_ascii_case("SIP+D2T") {
        Some(TransportKind::Tcp)
    } else {
        None
    }
}

/// The usable NAPTR records (RFC 3263 4.1) as (transport, SRV name), best first.
fn order_naptr(mut records: Vec<Naptr>) -> Vec<(TransportKind, String)> {
    records.sort_by_key(|r| (r.order, r.preference));
    records
        .into_iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s") && r.regexp.is_empty())
        .filter(|r| !r.replacement.is_empty() && r.replacement != ".")
        .filter_map(|r| naptr_transport(&r.services).map(|t| (t, r.replacement)))
        .take(MAX_NAPTR)
        .collect()
}

/// Orders SRV records as RFC 2782 asks, dropping `.` targets.
fn order_srv(mut records: Vec<Srv>, rng: &mut fastrand::Rng) -> Vec<Srv> {
    records.retain(|r| !r.target.is_empty() && r.target != ".");
    // Zero weights first within a priority: sort_by_key is stable.
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    for group in records.chunk_by(|a, b| a.priority == b.priority) {
        let mut group = group.to_vec();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.u32(0..=total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                // The last running sum is `total`, which is >= `pick`.
                .unwrap_or(group.len() - 1);
            out.push(group.remove(index));
        }
    }
    out
}

/// One run of the procedure: the targets found so far and the first failure.
struct Search<'a, L> {
    lookup: &'a L,
    rng: &'a mut fastrand::Rng,
    targets: Vec<Target>,
    error: Option<Error>,
    address_lookups: usize,
}

impl<L: Lookup> Search<'_, L> {
    fn failed(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    async fn naptr(&mut self, name: &str) -> Vec<(TransportKind, String)> {
        match self.lookup.naptr(name).await {
            Ok(records) => order_naptr(records),
            Err(e) => {
                self.failed(e);
                Vec::new()
            }
        }
    }

    /// Looks up SRV records and the addresses of their targets; `true` when the name
    /// has SRV records (even only `.`), so A/AAAA of the domain is not tried.
    async fn srv(&mut self, name: &str, transport: TransportKind) -> bool {
        if self.address_lookups >= MAX_ADDRESS_LOOKUPS {
            // Nothing found here could be used: as good as found.
            return true;
        }
        let records = match self.lookup.srv(name).await {
            Ok(records) if records.is_empty() => return false,
            Ok(records) => records,
            Err(e) => {
                self.failed(e);
                return false;
            }
        };
        for record in order_srv(records, self.rng) {
            self.addresses(&record.target, record.port, transport).await;
        }
        true
    }

    async fn addresses(&mut self, name: &str, port: u16, transport: TransportKind) {
        if self.address_lookups >= MAX_ADDRESS_LOOKUPS {
            return;
        }
        self.address_lookups += 1;
        match self.lookup.ip(name).await {
            Ok(ips) => {
                for ip in ips {
                    let target = Target {
                        addr: SocketAddr::new(ip, port),
                        transport,
                    };
                    if !self.targets.contains(&target) {
                        self.targets.push(target);
                    }
                }
            }
            Err(e) => self.failed(e),
        }
    }

    fn finish(self, name: &str) -> Result<Vec<Target>, Error> {
        if !self.targets.is_empty() {
            return Ok(self.targets);
        }
        Err(self
            .error
            .unwrap_or_else(|| Error::NoAddress(name.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::Uri;

    use TransportKind::{Tcp, Udp};

    /// A zone written as text lines, logging the queries made.
    #[derive(Default)]
    struct Fake {
        naptr: HashMap<String, Vec<Naptr>>,
        srv: HashMap<String, Vec<Srv>>,
        ip: HashMap<String, Vec<IpAddr>>,
        failing: Vec<String>,
        queries: Mutex<Vec<String>>,
    }

    impl Fake {
        /// Lines such as `NAPTR example.test 10 50 s SIP+D2U _sip._udp.example.test`,
        /// `SRV _sip._udp.example.test 0 5 5060 a.example.test`, `A a.example.test 192.0.2.1`
        /// and `FAIL name` (every query of that name fails).
        fn zone(text: &str) -> Self {
            let mut z = Self::default();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f[0] {
                    "NAPTR" => z.naptr.entry(f[1].into()).or_default().push(Naptr {
                        order: f[2].parse().unwrap(),
                        preference: f[3].parse().unwrap(),
                        flags: f[4].replace('-', ""),
                        services: f[5].into(),
                        regexp: String::new(),
                        replacement: f[6].into(),
                    }),
                    "SRV" => z.srv.entry(f[1].into()).or_default().push(Srv {
                        priority: f[2].parse().unwrap(),
                        weight: f[3].parse().unwrap(),
                        port: f[4].parse().unwrap(),
                        target: f[5].into(),
                    }),
                    "A" => {
                        z.ip.entry(f[1].into())
                            .or_default()
                            .extend(f[2..].iter().map(|a| a.parse::<IpAddr>().unwrap()))
                    }
                    "FAIL" => z.failing.push(f[1].into()),
                    other => panic!("bad zone line {other}"),
                }
            }
            z
        }

        fn answer<T: Clone>(
            &self,
            kind: &str,
            map: &HashMap<String, Vec<T>>,
            name: &str,
        ) -> Result<Vec<T>, Error> {
            self.queries.lock().unwrap().push(format!("{kind} {name}"));
            if self.failing.iter().any(|f| f == name) {
                return Err(Error::Dns(format!("{kind} {name}: timed out")));
            }
            Ok(map.get(name).cloned().unwrap_or_default())
        }

        fn queries(&self) -> Vec<String> {
            self.queries.lock().unwrap().clone()
        }
    }

    impl Lookup for Fake {
        async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, Error> {
            self.answer("NAPTR", &self.naptr, name)
        }
        async fn srv(&self, name: &str) -> Result<Vec<Srv>, Error> {
            self.answer("SRV", &self.srv, name)
        }
        async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
            self.answer("A", &self.ip, name)
        }
    }

    /// The fake never waits, so one poll finishes.
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake lookup never waits"),
        }
    }

    fn dest(uri: &str) -> Destination {
        match Uri::parse(uri).unwrap() {
            Uri::Sip(u) => Destination::from_uri(&u).unwrap(),
            Uri::Other { .. } => panic!("not a SIP URI"),
        }
    }

    fn run(zone: &Fake, uri: &str) -> Result<Vec<String>, Error> {
        let mut rng = fastrand::Rng::with_seed(7);
        let targets = block_on(locate_with_rng(zone, &dest(uri), &mut rng))?;
        Ok(targets
            .iter()
            .map(|t| format!("{}:{}", t.transport.via_token(), t.addr))
            .collect())
    }

    const ZONE: &str = "
        NAPTR example.test 20 10 s SIP+D2U _sip._udp.example.test
        NAPTR example.test 10 10 s SIP+D2T _sip._tcp.example.test
        NAPTR example.test 5 10 s SIPS+D2T _sips._tcp.example.test
        SRV _sip._tcp.example.test 10 0 5070 tcp1.example.test
        SRV _sip._tcp.example.test 20 0 5071 tcp2.example.test
        SRV _sip._udp.example.test 0 0 5080 udp1.example.test
        SRV _sip._udp.other.test 0 0 5090 udp1.example.test
        SRV _sip._tcp.other.test 0 0 5091 tcp1.example.test
        A tcp1.example.test 192.0.2.1 2001:db8::1
        A tcp2.example.test 192.0.2.2
        A udp1.example.test 192.0.2.3
        A example.test 192.0.2.9
        A other.test 192.0.2.8
        A plain.test 192.0.2.7
        A dead.test 192.0.2.6
        SRV _sip._udp.dead.test 0 0 5060 .
        NAPTR weird.test 10 10 - SIP+D2U _sip._udp.example.test
        NAPTR weird.test 10 20 s SIPS+D2T _sips._tcp.example.test
        A weird.test 192.0.2.5
        NAPTR noservice.test 10 10 s SIP+D2T _sip._tcp.noservice.test
        A noservice.test 192.0.2.4
    ";

    #[test]
    fn procedure_table() {
        let zone = Fake::zone(ZONE);
        let table: &[(&str, &[&str], &[&str])] = &[
            // Numeric hosts: no DNS at all.
            ("sip:u@192.0.2.50", &["UDP:192.0.2.50:5060"], &[]),
            (
                "sip:u@[2001:db8::5]:5070;transport=TCP",
                &["TCP:[2001:db8::5]:5070"],
                &[],
            ),
            // maddr replaces the host.
            (
                "sip:u@example.test;maddr=192.0.2.51",
                &["UDP:192.0.2.51:5060"],
                &[],
            ),
            // A name with a port: A/AAAA only.
            (
                "sip:u@example.test:5062",
                &["UDP:192.0.2.9:5062"],
                &["A example.test"],
            ),
            (
                "sip:u@example.test:5062;transport=tcp",
                &["TCP:192.0.2.9:5062"],
                &["A example.test"],
            ),
            // A transport without a port: that transport's SRV, no NAPTR.
            (
                "sip:u@example.test;transport=tcp",
                &[
                    "TCP:192.0.2.1:5070",
                    "TCP:[2001:db8::1]:5070",
                    "TCP:192.0.2.2:5071",
                ],
                &[
                    "SRV _sip._tcp.example.test",
                    "A tcp1.example.test",
                    "A tcp2.example.test",
                ],
            ),
            // ... falling back to A/AAAA at 5060.
            (
                "sip:u@plain.test;transport=tcp",
                &["TCP:192.0.2.7:5060"],
                &["SRV _sip._tcp.plain.test", "A plain.test"],
            ),
            // NAPTR by order (TCP 10 before UDP 20), SIPS skipped.
            (
                "sip:u@example.test",
                &[
                    "TCP:192.0.2.1:5070",
                    "TCP:[2001:db8::1]:5070",
                    "TCP:192.0.2.2:5071",
                    "UDP:192.0.2.3:5080",
                ],
                &[
                    "NAPTR example.test",
                    "SRV _sip._tcp.example.test",
                    "A tcp1.example.test",
                    "A tcp2.example.test",
                    "SRV _sip._udp.example.test",
                    "A udp1.example.test",
                ],
            ),
            // No NAPTR: SRV UDP then TCP.
            (
                "sip:u@other.test",
                &[
                    "UDP:192.0.2.3:5090",
                    "TCP:192.0.2.1:5091",
                    "TCP:[2001:db8::1]:5091",
                ],
                &[
                    "NAPTR other.test",
                    "SRV _sip._udp.other.test",
                    "A udp1.example.test",
                    "SRV _sip._tcp.other.test",
                    "A tcp1.example.test",
                ],
            ),
            // No NAPTR, no SRV: A/AAAA, UDP, 5060.
            (
                "sip:u@plain.test",
                &["UDP:192.0.2.7:5060"],
                &[
                    "NAPTR plain.test",
                    "SRV _sip._udp.plain.test",
                    "SRV _sip._tcp.plain.test",
                    "A plain.test",
                ],
            ),
            // Only unusable NAPTR records (non-terminal, SIPS): as if there were none.
            (
                "sip:u@weird.test",
                &["UDP:192.0.2.5:5060"],
                &[
                    "NAPTR weird.test",
                    "SRV _sip._udp.weird.test",
                    "SRV _sip._tcp.weird.test",
                    "A weird.test",
                ],
            ),
            // A NAPTR whose SRV name has no records: A/AAAA with the NAPTR's transport.
            (
                "sip:u@noservice.test",
                &["TCP:192.0.2.4:5060"],
                &[
                    "NAPTR noservice.test",
                    "SRV _sip._tcp.noservice.test",
                    "A noservice.test",
                ],
            ),
        ];
        for (uri, want, queries) in table {
            zone.queries.lock().unwrap().clear();
            assert_eq!(run(&zone, uri).unwrap(), *want, "{uri}");
            assert_eq!(zone.queries(), *queries, "{uri}");
        }
    }

    #[test]
    fn failures() {
        let zone = Fake::zone(ZONE);
        // SRV "." only: the service is not offered, and A/AAAA is not tried.
        let e = run(&zone, "sip:u@dead.test;transport=udp").unwrap_err();
        assert!(
            matches!(e, Error::NoAddress(ref n) if n == "dead.test"),
            "{e}"
        );
        assert_eq!(zone.queries().last().unwrap(), "SRV _sip._udp.dead.test");
        // Unknown name.
        let e = run(&zone, "sip:u@nowhere.test").unwrap_err();
        assert!(matches!(e, Error::NoAddress(_)), "{e}");

        // A failing NAPTR lookup is skipped over...
        let zone = Fake::zone(&format!("{ZONE}\nFAIL other.test"));
        assert_eq!(
            run(&zone, "sip:u@other.test").unwrap()[0],
            "UDP:192.0.2.3:5090"
        );
        // ...and reported when nothing else answers.
        let zone = Fake::zone("FAIL down.test");
        let e = run(&zone, "sip:u@down.test").unwrap_err();
        assert!(matches!(e, Error::Dns(ref m) if m.contains("NAPTR")), "{e}");
    }

    #[test]
    fn unsupported_uris() {
        for uri in [
            "sips:u@example.test",
            "sip:u@example.test;transport=tls",
            "sip:u@example.test;transport=sctp",
            "sip:u@example.test;transport",
        ] {
            let Uri::Sip(u) = Uri::parse(uri).unwrap() else {
                panic!()
            };
            assert!(
                matches!(
                    Destination::from_uri(&u),
                    Err(Error::UnsupportedDestination(_))
                ),
                "{uri}"
            );
        }
        let Uri::Sip(u) = Uri::parse("sip:u@example.test;maddr=bad%20host").unwrap() else {
            panic!()
        };
        assert!(Destination::from_uri(&u).is_err());
    }

    #[test]
    fn configured_hosts() {
        let d = Destination::from_host("2001:db8::1", Some(5070), None).unwrap();
        assert_eq!(d.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        let d = Destination::from_host("[2001:db8::1]", None, Some(Tcp)).unwrap();
        assert_eq!(d.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        let d = Destination::from_host("proxy.example.test", None, None).unwrap();
        assert_eq!(d.host, Host::Domain("proxy.example.test".into()));
        assert!(Destination::from_host("bad host", None, None).is_err());
    }

    #[test]
    fn hostile_zone_is_bounded() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "NAPTR big.test {i} 0 s SIP+D2U _sip._udp.n{i}.test\n"
            ));
            for j in 0..40 {
                text.push_str(&format!("SRV _sip._udp.n{i}.test 0 1 5060 h{i}-{j}.test\n"));
                text.push_str(&format!("A h{i}-{j}.test 192.0.2.{}\n", j + 1));
            }
        }
        let zone = Fake::zone(&text);
        let targets = run(&zone, "sip:u@big.test").unwrap();
        assert_eq!(targets.len(), MAX_ADDRESS_LOOKUPS);
        let queries = zone.queries();
        // The first NAPTR's SRV set uses up the address lookups: no more SRV queries.
        assert_eq!(queries.iter().filter(|q| q.starts_with("SRV")).count(), 1);
        assert_eq!(
            queries.iter().filter(|q| q.starts_with("A ")).count(),
            MAX_ADDRESS_LOOKUPS
        );
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn srv_priority_and_weight() {
        let mut rng = fastrand::Rng::with_seed(1);
        // Priority is strict, whatever the weights.
        let records = vec![
            srv(2, 100, "c"),
            srv(1, 0, "a"),
            srv(1, 0, "b"),
            srv(3, 1, "."),
        ];
        for _ in 0..50 {
            let order: Vec<_> = order_srv(records.clone(), &mut rng)
                .into_iter()
                .map(|r| r.target)
                .collect();
            assert_eq!(order[2], "c");
            assert_eq!(order.len(), 3, "the . target is dropped");
        }
        // Weight 3 against weight 1: RFC 2782 draws from 0..=4 and the light record
        // takes 0 and 1, so the heavy one is first three times in five.
        let records = vec![srv(0, 1, "light"), srv(0, 3, "heavy")];
        let heavy_first = (0..4000)
            .filter(|_| order_srv(records.clone(), &mut rng)[0].target == "heavy")
            .count();
        assert!((2200..2600).contains(&heavy_first), "{heavy_first}");
        // Weight 0 against 10: first only when the random number is 0 (1 in 11).
        let records = vec![srv(0, 10, "weighted"), srv(0, 0, "zero")];
        let zero_first = (0..4000)
            .filter(|_| order_srv(records.clone(), &mut rng)[0].target == "zero")
            .count();
        assert!((200..550).contains(&zero_first), "{zero_first}");
        // All weights 0: each gets picked.
        let records = vec![srv(0, 0, "x"), srv(0, 0, "y")];
        assert_eq!(order_srv(records, &mut rng).len(), 2);
    }

    #[test]
    fn naptr_order_and_filter() {
        let n = |order, preference, flags: &str, services: &str, regexp: &str, repl: &str| Naptr {
            order,
            preference,
            flags: flags.into(),
            services: services.into(),
            regexp: regexp.into(),
            replacement: repl.into(),
        };
        let got = order_naptr(vec![
            n(10, 20, "S", "sip+d2u", "", "b"),
            n(10, 10, "s", "SIP+D2T", "", "a"),
            n(5, 0, "u", "SIP+D2U", "!^.*$!sip:x@y!", "."),
            n(5, 0, "s", "SIP+D2S", "", "sctp"),
            n(30, 0, "s", "SIP+D2U", "", "."),
            n(20, 0, "s", "SIP+D2U", "", "c"),
        ]);
        assert_eq!(
            got,
            vec![(Tcp, "a".into()), (Udp, "b".into()), (Udp, "c".into())]
        );
    }
}
