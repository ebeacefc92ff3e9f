//! SIP for the sipjab gateway (RFC 3261, with RFC 3581 `rport` and the RFC 4475 torture
//! tests): message types, parser, serializer and framing, request checks, non-INVITE
//! transactions, all pure; sockets live in `transport` behind the `tokio` feature.
//!
//! # Why a parser of our own
//!
//! Both working crates were run over the 49 RFC 4475 messages (a throwaway program,
//! outside the workspace). A file counts as handled when the outcome is what the RFC
//! asks of a parser: the 29 "must parse" messages parse (with From/To/Via/CSeq/Call-ID
//! readable where present), the 10 strict invalid ones are rejected or left answerable
//! (505 for `badvers`, 501 for `mismatch02`), and the 10 where the RFC lets a liberal
//! element accept may go either way, without a panic.
//!
//! | candidate | handled | misses |
//! | --- | ---: | --- |
//! | ezk-sip-types 0.6.5 | 42/49 | rejects `unkscm`, `novelsc` (no opaque URIs), `unksm2`, `wsinv` (From); takes `badinv01`; no 505 for `badvers`; no repeated Content-Length check (`mcl01`) |
//! | rsipstack 0.7.14 | 42/49 | rejects extension methods `intmeth`, `esc02`, `mismatch02`; accepts `badinv01`; silently truncates `clerr` and reads a negative Content-Length as 0 (`ncl`); takes `mcl01` |
//! | this crate | 49/49 | see the table in `torture.rs` |
//!
//! Beyond the counts: rsipstack has no incomplete-versus-invalid result (it needs the
//! whole message) and pulls in a whole stack (tokio, rustls, DNS); ezk-sip-types has no
//! message parser (only line parsers glued by the user over `bytes::Bytes`, panicking
//! on slices not taken from the source buffer), and groups header values by name, so
//! the order between different fields is lost. A gateway needs Incomplete-vs-Invalid
//! framing, byte-exact bodies, header order, and liberal-but-safe reading of a few
//! typed fields; that is a few hundred lines, so this crate has its own parser.
//! `sip-codec` was not re-evaluated (2019, tokio 0.1, panics on encoding).
//!
//! # Use
//!
//! ```
//! use sipjab_sip::{Message, Response, StatusCode, check_request, parse_datagram};
//!
//! let datagram = b"MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK776\r\n\
//! Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
//! To: <sip:bob@example.com>\r\nCall-ID: a84b4c76e66710\r\n\
//! CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
//! // Err: not SIP, drop it. Ok: a message, maybe still not an acceptable one.
//! let Ok(Message::Request(req)) = parse_datagram(datagram) else { panic!() };
//! let resp = match check_request(&req) {
//!     Ok(()) => Response::for_request(&req, StatusCode::ACCEPTED, "Accepted"),
//!     Err(rejection) => rejection.to_response(&req), // 400, 416, 420, 483, 501, 505...
//! };
//! assert_eq!(resp.status.as_u16(), 202);
//! assert!(resp.headers.to()?.and_then(|to| to.tag().map(str::to_owned)).is_some());
//! # Ok::<(), sipjab_sip::Error>(())
//! ```
//!
//! # Layout
//! - [`uri`]: `sip:`/`sips:` URIs, other schemes opaque.
//! - [`header`]: ordered header lines, typed accessors.
//! - [`message`]: [`Request`], [`Response`], serializer, [`Response::for_request`].
//! - [`parse`]: [`parse_datagram`] (UDP), [`parse_message`] and [`StreamDecoder`] (TCP).
//! - [`check`]: [`check_request`] maps bad requests to 400/416/420/483/501/505.
//! - [`route`]: Via `received`/`rport` on receive, where responses go.
//! - [`transaction`]: non-INVITE client and server transactions, [`TransactionTable`].
//! - [`locate`](mod@locate): RFC 3263 server location (NAPTR, SRV, A/AAAA) over a [`Lookup`] trait;
//!   `DnsLookup` (feature `tokio`) answers it with `hickory-resolver`.
//! - `transport` (feature `tokio`): UDP and TCP listeners, `ListenAddr`, `SipTransport`.

#![forbid(unsafe_code)]

pub mod check;
mod error;
pub mod header;
pub mod locate;
pub mod message;
pub mod parse;
pub mod route;
pub mod transaction;
pub mod uri;

#[cfg(feature = "tokio")]
pub mod transport;

#[cfg(test)]
mod torture;

pub use check::{Rejection, check_request, check_response};
pub use error::Error;
pub use header::{CSeq, Contact, Event, Header, Headers, MediaType, Name, NameAddr, Via};
pub use locate::{Destination, Lookup, locate};
pub use message::{Message, Method, Request, Response, StatusCode, Version};
pub use parse::{DEFAULT_MAX_MESSAGE, StreamDecoder, parse_datagram, parse_message};
pub use route::{Target, TransportKind, response_target, stamp_via};
pub use transaction::{
    CLEANUP_DELAY, RequestDisposition, ServerId, TableOutput, TransactionId, TransactionMap,
    TransactionTable, WireBytes,
};
pub use uri::{Host, Params, SipUri, Uri};

#[cfg(feature = "tokio")]
pub use locate::DnsLookup;
#[cfg(feature = "tokio")]
pub use transport::{Incoming, ListenAddr, SipTransport, TransportConfig};
