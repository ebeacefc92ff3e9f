//! Request and response validation after parsing (RFC 3261 8.2 and 16.3, RFC 4475
//! sections 3.1.2, 3.2 and 3.3): which status a parseable but unacceptable request gets.
//!
//! The order follows RFC 3261 8.2: version, then what makes the request malformed
//! (400), then method (501), Max-Forwards (483, the gateway routes like a proxy),
//! URI scheme (416), extensions (420) and content (415). Whether a known method such as
//! INVITE is *allowed* (405) is left to the gateway core.

use crate::Error;
use crate::header::{Headers, Name, Via};
use crate::message::{Method, Request, Response, StatusCode, Version};
use crate::uri::Uri;

/// Option tags we implement; any other in Require/Proxy-Require gets a 420.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[];

/// Body types the gateway accepts: the SIMPLE and IM types it translates, plus SDP and
/// multipart, which parse but are left to the core to refuse or ignore.
pub const SUPPORTED_CONTENT_TYPES: &[&str] = &[
    "text/*",
    "message/cpim",
    "application/pidf+xml",
    "application/xpidf+xml",
    "application/cpim-pidf+xml",
    "application/im-iscomposing+xml",
    "application/simple-message-summary",
    "application/watcherinfo+xml",
    "application/sdp",
    "multipart/*",
];

/// Longest header value accepted (octets). RFC 3261 sets no limit; the gateway copies
/// some values into XMPP stanzas, and a 60 KB header is an attack, not a message.
pub const MAX_HEADER_VALUE: usize = 8192;

/// Fields every request and response must have (RFC 3261 8.1.1).
const REQUIRED: [Name<'static>; 5] = [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ];

/// Methods the gateway handles; sent in Allow with 405/501.
pub const ALLOWED_METHODS: &str = "MESSAGE, SUBSCRIBE, NOTIFY, REGISTER, PUBLISH, OPTIONS";

/// Why a request is refused, ready to become a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status code.
    pub code: StatusCode,
    /// Reason phrase naming the problem (e.g. "Missing Call-ID header").
    pub reason: String,
    /// Extra headers the status requires (Unsupported for 420, Allow for 501...).
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    fn new(code: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    fn bad(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The response to send ([`Response::for_request`] plus the extra headers).
    pub fn to_response(&self, req: &Request) -> Response {
        let mut resp = Response::for_request(req, self.code, &self.reason);
        for (n, v) in &self.headers {
            resp.headers.push(n.clone(), v.clone());
        }
        resp
    }
}

fn from_header_error(e: Error) -> Rejection {
    match e {
        Error::Multiple(name) => Rejection::bad(format!("Multiple {name} headers")),
        Error::Header { name, .. } => Rejection::bad(format!("Malformed {name} header")),
        other => Rejection::bad(format!("Bad request: {other}")),
    }
}

/// Checks a parsed request; `Err` carries the response status to send.
pub fn check_request(req: &Request) -> Result<(), Rejection> {
    if let Version::Other(v) = &req.version {
        return Err(Rejection::new(
            StatusCode::VERSION_NOT_SUPPORTED,
            format!("Version {v} Not Supported"),
        ));
    }
    let h = &req.headers;
    if let Some(long) = h.iter().find(|x| x.value.len() > MAX_HEADER_VALUE) {
        return Err(Rejection::bad(format!("{} header too long", long.name)));
    }
    check_headers(h).map_err(from_header_error)?;
    for name in REQUIRED {
        if !h.contains(name) {
            return Err(Rejection::bad(format!("Missing {} header", name.text())));
        }
    }
    let top_via = h.top_via().map_err(from_header_error)?;
    if top_via.and_then(Via::branch) == Some(crate::transaction::MAGIC_COOKIE) {
        // RFC 4475 3.2.1: a branch of just the cookie identifies nothing.
        return Err(Rejection::bad("Via branch is only the magic cookie"));
    }
    if let Uri::Sip(u) = &req.uri
        && !u.headers.is_empty()
    {
        // RFC 3261 19.1.1: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11).
        return Err(Rejection::bad("Headers in Request-URI"));
    }
    let is_extension = matches!(req.method, Method::Extension(_));
    if let Ok(Some(cseq)) = h.cseq()
        && cseq.method != req.method
    {
        return Err(if is_extension {
            not_implemented(&req.method)
        } else {
            Rejection::bad("CSeq method does not match the request method")
        });
    }
    if is_extension {
        return Err(not_implemented(&req.method));
    }
    if h.max_forwards().ok().flatten() == Some(0) {
        return Err(Rejection::new(StatusCode::TOO_MANY_HOPS, "Too Many Hops"));
    }
    if !matches!(req.uri, Uri::Sip(_)) {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_URI_SCHEME,
            "Unsupported URI Scheme",
        ));
    }
    if req.method == Method::Register
        && let Ok(Some(to)) = h.to()
        && !matches!(to.uri, Uri::Sip(_))
    {
        // RFC 3261 10.3 step 5, RFC 4475 3.3.4: the AOR must be SIP or SIPS.
        return Err(Rejection::bad("To must be a SIP or SIPS URI"));
    }
    let mut unsupported: Vec<String> = Vec::new();
    for tag in h
        .require()
        .map_err(from_header_error)?
        .into_iter()
        .chain(h.proxy_require().map_err(from_header_error)?)
    {
        if !SUPPORTED_EXTENSIONS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&tag))
        {
            unsupported.push(tag);
        }
    }
    if !unsupported.is_empty() {
        let mut r = Rejection::new(StatusCode::BAD_EXTENSION, "Bad Extension");
        r.headers
            .push(("Unsupported".into(), unsupported.join(", ")));
        return Err(r);
    }
    if !req.body.is_empty()
        && let Ok(Some(ct)) = h.content_type()
        && !SUPPORTED_CONTENT_TYPES
            .iter()
            .any(|s| media_matches(s, &ct.mtype, &ct.subtype))
    {
        let mut r = Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
        r.headers
            .push(("Accept".into(), SUPPORTED_CONTENT_TYPES.join(", ")));
        return Err(r);
    }
    Ok(())
}

/// Checks a parsed response before it is matched to a transaction. An `Err` means the
/// response is discarded (RFC 4475 3.1.2.5): responses are never answered.
pub fn check_response(resp: &Response) -> Result<(), Error> {
    if let Version::Other(v) = &resp.version {
        return Err(Error::Invalid(format!("version {v}")));
    }
    check_headers(&resp.headers)?;
    for name in REQUIRED {
        if !resp.headers.contains(name) {
            return Err(Error::Invalid(format!("missing {}", name.text())));
        }
    }
    Ok(())
}

/// Parses every header the gateway reads, so that a bad one is found up front.
fn check_headers(h: &Headers) -> Result<(), Error> {
    h.check_vias()?;
    h.from()?;
    h.to()?;
    h.call_id()?;
    h.cseq()?;
    h.max_forwards()?;
    h.content_length()?;
    h.content_type()?;
    h.expires()?;
    h.contact()?;
    h.event()?;
    h.require()?;
    h.proxy_require()?;
    Ok(())
}

fn not_implemented(m: &Method) -> Rejection {
    let mut r = Rejection::new(StatusCode::NOT_IMPLEMENTED, format!("{m} Not Implemented"));
    r.headers.push(("Allow".into(), ALLOWED_METHODS.into()));
    r
}

fn media_matches(pattern: &str, t: &str, s: &str) -> bool {
    match pattern.split_once('/') {
        Some((pt, "*")) => pt == t,
        Some((pt, ps)) => pt == t && ps == s,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, parse_datagram};

    fn req(extra: &str) -> Request {
        let text = format!(
            "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
             From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn good_and_bad() {
        assert_eq!(check_request(&req("")), Ok(()));
        let r = check_request(&req("Call-ID: d\r\n")).unwrap_err();
        assert_eq!(
            (r.code.as_u16(), r.reason.as_str()),
            (400, "Multiple Call-ID headers")
        );
        let r = check_request(&req("Require: foo\r\n")).unwrap_err();
        assert_eq!(r.code.as_u16(), 420);
        assert_eq!(r.headers[0], ("Unsupported".into(), "foo".into()));
        let resp = r.to_response(&req("Require: foo\r\n"));
        assert_eq!(resp.headers.get("Unsupported"), Some("foo"));
        let long = format!("X-Huge: {}\r\n", "a".repeat(MAX_HEADER_VALUE + 1));
        let r = check_request(&req(&long)).unwrap_err();
        assert_eq!(
            (r.code.as_u16(), r.reason.as_str()),
            (400, "X-Huge header too long")
        );
        let mut no_to = req("");
        no_to.headers.remove("To");
        assert_eq!(
            check_request(&no_to).unwrap_err().reason,
            "Missing To header"
        );
    }
}
