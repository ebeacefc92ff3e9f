//! SIP requests and responses (RFC 3261 section 7) and their serialization.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use crate::Error;
use crate::header::{Header, Headers, Name, NameAddr};
use crate::uri::{Uri, is_token_char};

/// A request method: the ones a SIP stack commonly meets, plus any extension token.
///
/// Methods are case-sensitive (RFC 3261 7.1): `invite` is an extension method.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// RFC 3261.
    Invite,
    /// RFC 3261.
    Ack,
    /// RFC 3261.
    Bye,
    /// RFC 3261.
    Cancel,
    /// RFC 3261.
    Register,
    /// RFC 3261.
    Options,
    /// RFC 3428.
    Message,
    /// RFC 6665.
    Subscribe,
    /// RFC 6665.
    Notify,
    /// RFC 3903.
    Publish,
    /// RFC 6086.
    Info,
    /// RFC 3262.
    Prack,
    /// RFC 3311.
    Update,
    /// RFC 3515.
    Refer,
    /// Any other token (answered with 501 by [`check_request`](crate::check_request)).
    Extension(String),
}

impl Method {
    /// Maps a token to a method (the caller has checked it is a token).
    pub fn from_token(s: &str) -> Self {
        match s {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "REGISTER" => Self::Register,
            "OPTIONS" => Self::Options,
            "MESSAGE" => Self::Message,
            "SUBSCRIBE" => Self::Subscribe,
            "NOTIFY" => Self::Notify,
            "PUBLISH" => Self::Publish,
            "INFO" => Self::Info,
            "PRACK" => Self::Prack,
            "UPDATE" => Self::Update,
            "REFER" => Self::Refer,
            other => Self::Extension(other.to_owned()),
        }
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Register => "REGISTER",
            Self::Options => "OPTIONS",
            Self::Message => "MESSAGE",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Publish => "PUBLISH",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Refer => "REFER",
            Self::Extension(s) => s,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.is_empty() && s.bytes().all(is_token_char) {
            Ok(Self::from_token(s))
        } else {
            Err(Error::Invalid(format!("bad method {s:?}")))
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SIP-Version: 2.0, or another well-formed version kept so it can be answered with 505.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// `SIP/2.0`.
    #[default]
    Sip20,
    /// `SIP/x.y` other than 2.0, as written (RFC 4475 3.1.2.16).
    Other(String),
}

impl Version {
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        // Nearly every message says exactly this.
        if s == "SIP/2.0" {
            return Ok(Self::Sip20);
        }
        let bad = || Error::Invalid(format!("bad SIP version {s:?}"));
        let rest = s
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("SIP/"))
            .map(|_| &s[4..])
            .ok_or_else(bad)?;
        let (maj, min) = rest.split_once('.').ok_or_else(bad)?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(maj) || !digits(min) {
            return Err(bad());
        }
        Ok(if rest == "2.0" {
            Self::Sip20
        } else {
            Self::Other(s.to_owned())
        })
    }
}

impl Version {
    /// The version as written on the start line, for writers that skip the formatter.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sip20 => "SIP/2.0",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status code, 100 to 699 (a larger code makes the response unparseable, RFC 4475
/// 3.1.2.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 100 Trying.
    pub const TRYING: Self = Self(100);
    /// 200 OK.
    pub const OK: Self = Self(200);
    /// 202 Accepted.
    pub const ACCEPTED: Self = Self(202);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Self = Self(400);
    /// 404 Not Found.
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 408 Request Timeout (also what a client transaction timeout means).
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(415);
    /// 416 Unsupported URI Scheme.
    pub const UNSUPPORTED_URI_SCHEME: Self = Self(416);
    /// 420 Bad Extension.
    pub const BAD_EXTENSION: Self = Self(420);
    /// 483 Too Many Hops.
    pub const TOO_MANY_HOPS: Self = Self(483);
    /// 500 Server Internal Error.
    pub const SERVER_ERROR: Self = Self(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 505 Version Not Supported.
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);

    /// Checks the range 100..=699.
    pub fn new(code: u16) -> Result<Self, Error> {
        if (100..=699).contains(&code) {
            Ok(Self(code))
        } else {
            Err(Error::Invalid(format!("status code {code} out of range")))
        }
    }

    /// The number.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx to 6xx.
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Version from the request line.
    pub version: Version,
    /// Header lines in order.
    pub headers: Headers,
    /// Body octets, exactly as framed.
    pub body: Vec<u8>,
}

impl Request {
    /// An empty SIP/2.0 request; the caller adds headers.
    pub fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            version: Version::Sip20,
            // Room for what the gateway's requests carry (Via, Max-Forwards, From, To,
            // Call-ID, CSeq, Content-Type, Content-Length and a few more) without growing.
            headers: Headers::with_capacity(12),
            body: Vec::new(),
        }
    }

    /// Sets the body with its Content-Type and Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }

    /// The wire form: request line, headers in order, empty line, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut line = String::with_capacity(96);
        line.push_str(self.method.as_str());
        line.push(' ');
        let _ = self.uri.write_into(&mut line);
        line.push(' ');
        line.push_str(self.version.as_str());
        serialize(&[line.as_bytes()], &self.headers, &self.body)
    }
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Version from the status line.
    pub version: Version,
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase (UTF-8, may be empty).
    pub reason: String,
    /// Header lines in order.
    pub headers: Headers,
    /// Body octets.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty SIP/2.0 response; see [`for_request`](Self::for_request) for replies.
    pub fn new(status: StatusCode, reason: &str) -> Self {
        Self {
            version: Version::Sip20,
            status,
            reason: reason.to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A reply to `req` (RFC 3261 8.2.6): copies Via (all, in order), From, To, Call-ID
    /// and CSeq, and adds a To-tag to any response above 100 when the request had none.
    ///
    /// The tag is derived from the request (Call-ID, From-tag, CSeq, branch), so a
    /// retransmitted request gets the same tag without shared state. Replace the To
    /// header afterwards for a dialog tag of your own.
    pub fn for_request(req: &Request, status: StatusCode, reason: &str) -> Self {
        let mut resp = Self::new(status, reason);
        for (h, tag) in answer_headers(req, status) {
            let mut value = String::with_capacity(h.value.len() + tag.map_or(0, |t| t.len() + 5));
            value.push_str(&h.value);
            if let Some(tag) = tag {
                value.push_str(";tag=");
                value.push_str(tag);
            }
            resp.headers.push(h.name.clone(), value);
        }
        resp.headers.push("Content-Length", "0");
        resp.headers.share_top_via(&req.headers);
        resp
    }

    /// Whether this is exactly what [`for_request`](Self::for_request) makes of `req` with
    /// this status and reason. A retransmission of `req` then rebuilds it byte for byte,
    /// so a server transaction can keep the status and reason instead of the wire form.
    pub fn is_plain_answer_to(&self, req: &Request) -> bool {
        if self.version != Version::Sip20 || !self.body.is_empty() {
            return false;
        }
        let mut mine = self.headers.iter();
        for (h, tag) in answer_headers(req, self.status) {
            let Some(m) = mine.next() else { return false };
            let same_value = match &tag {
                None => m.value == h.value,
                Some(tag) => m
                    .value
                    .strip_prefix(h.value.as_str())
                    .and_then(|rest| rest.strip_prefix(";tag="))
                    .is_some_and(|t| t == *tag),
            };
            if m.name != h.name || !same_value {
                return false;
            }
        }
        matches!(mine.next(), Some(m) if m.name == "Content-Length" && m.value == "0")
            && mine.next().is_none()
    }

    /// Sets the body with its Content-Type and Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }

    /// The wire form: status line, headers in order, empty line, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Written piece by piece: every request gets one, and the formatter costs more
        // than the rest of the line.
        let digits = status_digits(self.status);
        let line: [&[u8]; 5] = [
            self.version.as_str().as_bytes(),
            b" ",
            &digits,
            b" ",
            self.reason.as_bytes(),
        ];
        serialize(&line, &self.headers, &self.body)
    }

    /// The wire form of [`Response::for_request`]`(req, status, reason)`, written straight
    /// from the request: every MESSAGE gets such an answer (its 202), and building the
    /// response first cost seven allocations and as many instructions as parsing a header.
    pub fn plain_answer_bytes(req: &Request, status: StatusCode, reason: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(req.headers.wire_len() + reason.len() + 64);
        out.extend_from_slice(Version::Sip20.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&status_digits(status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (h, tag) in answer_headers(req, status) {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            if let Some(tag) = tag {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(tag.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        out
    }
}

/// The three digits of a status line.
fn status_digits(status: StatusCode) -> [u8; 3] {
    let code = status.as_u16();
    [100, 10, 1].map(|d| b'0' + (code / d % 10) as u8)
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The headers of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    /// Mutable headers of either kind.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Self::Request(r) => &mut r.headers,
            Self::Response(r) => &mut r.headers,
        }
    }

    /// The body of either kind.
    pub fn body(&self) -> &[u8] {
        match self {
            Self::Request(r) => &r.body,
            Self::Response(r) => &r.body,
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Request(r) => r.to_bytes(),
            Self::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Self::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Self::Response(r)
    }
}

fn set_body(headers: &mut Headers, slot: &mut Vec<u8>, content_type: &str, body: Vec<u8>) {
    if body.is_empty() {
        headers.remove("Content-Type");
    } else {
        headers.set("Content-Type", content_type);
    }
    headers.set("Content-Length", body.len().to_string());
    *slot = body;
}

fn serialize(start: &[&[u8]], headers: &Headers, body: &[u8]) -> Vec<u8> {
    let size = start.iter().map(|p| p.len()).sum::<usize>() + headers.wire_len() + body.len() + 4;
    let mut out = Vec::with_capacity(size);
    for part in start {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The request's headers a reply copies (RFC 3261 8.2.6), each with the To-tag to add.
fn answer_headers(
    req: &Request,
    status: StatusCode,
) -> impl Iterator<Item = (&Header, Option<&str>)> {
    const COPIED: [Name<'static>; 4] = [Name::VIA, Name::FROM, Name::CALL_ID, Name::CSEQ];
    req.headers.iter().filter_map(move |h| {
        if COPIED.iter().any(|n| h.is(n)) {
            Some((h, None))
        } else if h.is(&Name::TO) {
            let untagged = match req.headers.to() {
                Ok(Some(to)) => to.tag().is_none(),
                // Several To lines: each is judged on its own.
                _ => NameAddr::parse(&h.value, "To").is_ok_and(|to| to.tag().is_none()),
            };
            let tag = (status.as_u16() > 100 && untagged)
                .then(|| req.headers.answer_tag(|| local_tag(req)));
            Some((h, tag))
        } else {
            None
        }
    })
}

/// A To-tag that is the same for retransmissions of one request: a fixed-seed hash of
/// Call-ID, From, CSeq and the first Via line (foldhash; SipHash cost more than the rest of
/// the answer, and the tag needs to be distinct, not secret).
fn local_tag(req: &Request) -> String {
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    for name in [Name::CALL_ID, Name::FROM, Name::CSEQ, Name::VIA] {
        req.headers.get(name).hash(&mut h);
    }
    let mut tag = String::with_capacity(18);
    tag.push_str("sj");
    push_hex(&mut tag, h.finish(), 16);
    tag
}

/// Appends `n` in lowercase hex, zero-padded to `min_digits`, as `{:0width$x}` writes it,
/// without the formatter: tags and branches are made for every request. At most 20 digits.
pub(crate) fn push_hex(out: &mut String, n: u64, min_digits: u32) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(min_digits);
    let mut text = [b'0'; 20];
    let width = (digits as usize).min(text.len());
    for (place, byte) in text[..width].iter_mut().rev().enumerate() {
        let digit = n.checked_shr(place as u32 * 4).unwrap_or(0) & 0xf;
        *byte = b"0123456789abcdef"[digit as usize];
    }
    out.push_str(std::str::from_utf8(&text[..width]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_as_the_formatter_writes_it() {
        for n in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            for width in [1, 16, 20] {
                let mut out = String::new();
                push_hex(&mut out, n, width);
                assert_eq!(out, format!("{n:0w$x}", w = width as usize));
            }
        }
    }

    fn request() -> Request {
        let mut r = Request::new(Method::Message, Uri::parse("sip:bob@example.com").unwrap());
        r.headers.push(
            "Via",
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa, SIP/2.0/UDP p",
        );
        r.headers.push("Via", "SIP/2.0/TCP q;branch=z9hG4bKb");
        r.headers.push("From", "<sip:alice@example.com>;tag=f");
        r.headers.push("To", "Bob <sip:bob@example.com>");
        r.headers.push("Call-ID", "c1");
        r.headers.push("CSeq", "1 MESSAGE");
        r.headers.push("Max-Forwards", "70");
        r.set_body("text/plain", b"hi".to_vec());
        r
    }

    #[test]
    fn serializes_in_order() {
        let bytes = request().to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("MESSAGE sip:bob@example.com SIP/2.0\r\nVia: "));
        assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"));
    }

    #[test]
    fn for_request_copies_and_tags() {
        let req = request();
        let resp = Response::for_request(&req, StatusCode::OK, "OK");
        assert_eq!(resp.headers.vias().unwrap().len(), 3);
        assert_eq!(resp.headers.get("CSeq"), Some("1 MESSAGE"));
        let to = resp.headers.to().unwrap().unwrap();
        let tag = to.tag().unwrap().to_owned();
        assert!(tag.starts_with("sj"));
        let again = Response::for_request(&req, StatusCode::OK, "OK");
        assert_eq!(
            again.headers.to().unwrap().unwrap().tag(),
            Some(tag.as_str())
        );
        let trying = Response::for_request(&req, StatusCode::TRYING, "Trying");
        assert_eq!(trying.headers.to().unwrap().unwrap().tag(), None);
        assert!(resp.headers.get("Max-Forwards").is_none());
        assert_eq!(resp.headers.get("Content-Length"), Some("0"));
    }

    #[test]
    fn plain_answers_are_recognised() {
        let req = request();
        for (status, reason) in [(StatusCode::OK, "OK"), (StatusCode::TRYING, "Trying")] {
            assert!(Response::for_request(&req, status, reason).is_plain_answer_to(&req));
        }
        let mut extra = Response::for_request(&req, StatusCode::ACCEPTED, "Accepted");
        extra.headers.push("Expires", "600");
        assert!(!extra.is_plain_answer_to(&req));
        let mut body = Response::for_request(&req, StatusCode::OK, "OK");
        body.set_body("text/plain", b"x".to_vec());
        assert!(!body.is_plain_answer_to(&req));
        let mut dialog = Response::for_request(&req, StatusCode::OK, "OK");
        dialog
            .headers
            .set("To", "Bob <sip:bob@example.com>;tag=mine");
        assert!(!dialog.is_plain_answer_to(&req));
        let mut other = req.clone();
        other.headers.set("Call-ID", "c2");
        assert!(!Response::for_request(&req, StatusCode::OK, "OK").is_plain_answer_to(&other));
    }

    #[test]
    fn plain_answers_are_written_as_built() {
        let mut requests = vec![request()];
        let mut tagged = request();
        tagged.headers.set("To", "<sip:bob@example.com>;tag=t");
        requests.push(tagged);
        // The RFC 4475 messages and the gateway's fixtures: compact names, folded lines,
        // several To lines, odd spacing.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        for dir in ["sip", "rfc4475"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
                if let Ok(Message::Request(r)) = crate::parse_datagram(&bytes) {
                    requests.push(r);
                }
            }
        }
        assert!(requests.len() > 20, "{} requests", requests.len());
        for req in &requests {
            // As the transport hands it over, its common fields read up front.
            let mut ready = req.clone();
            ready.headers.read_common();
            for (status, reason) in [
                (StatusCode::TRYING, "Trying"),
                (StatusCode::ACCEPTED, "Accepted"),
                (StatusCode::NOT_FOUND, "Not Found"),
            ] {
                let built = Response::for_request(req, status, reason);
                assert_eq!(
                    Response::plain_answer_bytes(req, status, reason),
                    built.to_bytes(),
                    "{req:?}"
                );
                assert_eq!(
                    Response::plain_answer_bytes(&ready, status, reason),
                    built.to_bytes(),
                    "{req:?}"
                );
                assert!(built.is_plain_answer_to(&ready));
            }
        }
    }

    #[test]
    fn status_code_range() {
        assert!(StatusCode::new(99).is_err());
        assert!(StatusCode::new(700).is_err());
        assert!(StatusCode::new(699).unwrap().is_final());
    }
}
