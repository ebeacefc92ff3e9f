//! Where messages come from and go to: the Via rules of RFC 3261 18.2.1/18.2.2 and
//! RFC 3581 (`received`, `rport`), kept pure so they are tested without sockets.

use std::net::{IpAddr, SocketAddr};

use crate::header::Headers;
use crate::message::{Request, Response};
use crate::uri::DottedQuad;

/// The transports the gateway listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP: unreliable, so transactions retransmit.
    Udp,
    /// TCP: reliable, messages framed by Content-Length.
    Tcp,
}

impl TransportKind {
    /// Reliable transports switch off retransmissions and the waiting timers.
    pub fn is_reliable(self) -> bool {
        matches!(self, Self::Tcp)
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
}

/// A peer address with its transport: where a request came from or a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The transport to use.
    pub transport: TransportKind,
}

/// Stamps the top Via of a received request (RFC 3261 18.2.1, RFC 3581 4): `received`
/// when the sent-by host is not the source IP (or rport was asked for), and `rport`
/// filled with the source port when the request asked for it.
pub fn stamp_via(req: &mut Request, source: SocketAddr) {
    let Ok(Some(top)) = req.headers.top_via() else {
        return;
    };
    let wants_rport = top.rport().is_some();
    if !wants_rport && top.host.ip() == Some(source.ip()) {
        return; // Nothing to add: the line stays as it came.
    }
    let Ok(Some(mut via)) = req.headers.take_top_via() else {
        return;
    };
    if wants_rport {
        via.params.set("rport", Some(source.port().to_string()));
    }
    let received = match source.ip() {
        IpAddr::V4(v4) => DottedQuad::new(v4).as_str().to_owned(),
        v6 => v6.to_string(),
    };
    via.params.set("received", Some(received));
    req.headers.set_top_via(via);
}

/// Where a response goes (RFC 3261 18.2.2, RFC 3581 5): over TCP back on the connection
/// the request came in on; over UDP to `received` (or the source) at `rport` when
/// filled, else at the sent-by port (5060 by default).
pub fn response_target(resp: &Response, source: Target) -> Target {
    via_target(&resp.headers, source)
}

/// Where a plain answer to `req` goes ([`Response::plain_answer_bytes`]): as
/// [`response_target`], from the request's top Via, which the answer copies.
pub(crate) fn answer_target(req: &Request, source: Target) -> Target {
    via_target(&req.headers, source)
}

fn via_target(headers: &Headers, source: Target) -> Target {
    if source.transport.is_reliable() {
        return source;
    }
    let Ok(Some(via)) = headers.top_via() else {
        return source;
    };
    let ip = via
        .received()
        .or_else(|| via.host.ip())
        .unwrap_or(source.addr.ip());
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    Target {
        addr: SocketAddr::new(ip, port),
        transport: TransportKind::Udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, StatusCode, parse_datagram};

    fn req(via: &str) -> Request {
        let text = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP x\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        }
    }

    #[test]
    fn received_and_rport() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut r = req("SIP/2.0/UDP host.example.com;branch=z9hG4bK1;rport");
        stamp_via(&mut r, src);
        let via = r.headers.top_via().unwrap().unwrap();
        assert_eq!(via.rport(), Some(Some(40000)));
        assert_eq!(via.received(), Some(src.ip()));
        assert_eq!(r.headers.vias().unwrap().len(), 2);
        let resp = Response::for_request(&r, StatusCode::OK, "OK");
        let udp = Target {
            addr: src,
            transport: TransportKind::Udp,
        };
        assert_eq!(response_target(&resp, udp).addr, src);

        let mut same = req("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1");
        stamp_via(&mut same, src);
        let via = same.headers.top_via().unwrap().unwrap();
        assert_eq!(via.received(), None);
        let resp = Response::for_request(&same, StatusCode::OK, "OK");
        assert_eq!(
            response_target(&resp, udp).addr,
            "192.0.2.7:5062".parse().unwrap()
        );

        let mut v6 = req("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1");
        stamp_via(&mut v6, src);
        let resp = Response::for_request(&v6, StatusCode::OK, "OK");
        assert_eq!(
            response_target(&resp, udp).addr,
            "192.0.2.7:5060".parse().unwrap()
        );
        let tcp = Target {
            addr: src,
            transport: TransportKind::Tcp,
        };
        assert_eq!(response_target(&resp, tcp), tcp);
    }
}
