//! XMPP `<message/>` to SIP MESSAGE (RFC 7572 §4, RFC 3428), pure.
//!
//! The request goes to the gateway user's SIP URI. Its From is the XMPP sender's mapped address
//! with the resource dropped, and its body is `text/plain;charset=UTF-8`. `<subject/>` becomes
//! `Subject`. The Via is stamped by the transport, which knows the local address. The
//! gateway's INFO and ERROR notices are MESSAGEs built the same way, from `[sip] registrar`.

use sipjab_sip::{Method, Request, Uri};

/// The Content-Type of every MESSAGE the gateway sends.
pub const TEXT_PLAIN_UTF8: &str = "text/plain;charset=UTF-8";

/// A MESSAGE request from `from` to `to`, ready for a Via.
pub fn message_request(from: &Uri, to: &Uri, body: &str, subject: Option<&str>) -> Request {
    let mut req = Request::new(Method::Message, to.clone());
    // `<uri>;tag=…` and `<uri>` written straight into the values (this runs per message).
    let h = &mut req.headers;
    h.push("Max-Forwards", "70");
    h.push("From", name_addr(from, true));
    h.push("To", name_addr(to, false));
    let mut call_id = String::with_capacity(27);
    push_token(&mut call_id, 20);
    call_id.push_str("@sipjab");
    h.push("Call-ID", call_id);
    h.push("CSeq", "1 MESSAGE");
    if let Some(subject) = subject {
        // A header value cannot hold line breaks.
        h.push("Subject", subject.replace(['\r', '\n'], " "));
    }
    req.set_body(TEXT_PLAIN_UTF8, body.as_bytes().to_vec());
    req
}

/// `<uri>`, with a fresh `;tag=…` when `tagged`: a From or To value, written without
/// the formatter.
fn name_addr(uri: &Uri, tagged: bool) -> String {
    let mut value = String::with_capacity(64);
    value.push('<');
    let _ = uri.write_into(&mut value);
    value.push('>');
    if tagged {
        value.push_str(";tag=");
        push_token(&mut value, 10);
    }
    value
}

/// Appends `len` random characters, for tags and Call-IDs (RFC 3261 §19.3: at least 32
/// bits of randomness). Sixty-four symbols, each a `token` and a `word` character, so each
/// is six bits of a random u64 taken by shift and mask, ten to the u64, written as bytes
/// and appended ten at a time (dividing by 62 for alphanumerics and pushing each `char`
/// cost about 1,000 instructions a MESSAGE).
fn push_token(out: &mut String, len: usize) {
    const SYMBOLS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-.";
    out.reserve(len);
    let mut left = len;
    while left > 0 {
        let n = left.min(10);
        let mut chunk = [0u8; 10];
        let mut bits = fastrand::u64(..);
        for b in &mut chunk[..n] {
            *b = SYMBOLS[(bits & 63) as usize];
            bits >>= 6;
        }
        // Only ASCII symbols were written.
        out.push_str(std::str::from_utf8(&chunk[..n]).unwrap_or_default());
        left -= n;
    }
}

/// The first line of a text, shortened for a notice.
pub fn first_line(text: &str) -> String {
    const MAX: usize = 80;
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_request_carries_the_text() {
        let from = Uri::parse("sip:alpha*jabber.org@jabber.x.com").unwrap();
        let to = Uri::parse("sip:alice@example.com").unwrap();
        let req = message_request(&from, &to, "h\u{e9}llo", Some("a\r\nb"));
        assert_eq!(req.method, Method::Message);
        assert_eq!(req.uri, to);
        let h = &req.headers;
        let from_hdr = h.from().unwrap().unwrap();
        assert_eq!(from_hdr.uri, from);
        assert!(from_hdr.tag().is_some());
        assert_eq!(h.to().unwrap().unwrap().uri, to);
        assert_eq!(h.subject().unwrap(), Some("a  b"));
        assert_eq!(h.cseq().unwrap().unwrap().seq, 1);
        assert_eq!(h.content_type().unwrap().unwrap().charset(), Some("UTF-8"));
        assert_eq!(req.body, "h\u{e9}llo".as_bytes());
        // What we build parses back as the same request.
        let mut wire = req.to_bytes();
        let via = b"MESSAGE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n";
        wire.splice(
            ..wire.iter().position(|b| *b == b'\n').unwrap() + 1,
            via.iter().copied(),
        );
        let back = sipjab_sip::parse_datagram(&wire).unwrap();
        assert!(matches!(back, sipjab_sip::Message::Request(r) if r.body == req.body));
    }

    #[test]
    fn tokens_use_every_symbol_and_only_token_characters() {
        let mut seen = std::collections::HashSet::new();
        for len in (0..1000).map(|i| i % 25) {
            let mut token = String::new();
            push_token(&mut token, len);
            assert_eq!(token.len(), len);
            // RFC 3261 §25.1: tokens (tags) and words (Call-IDs) both take these.
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "{token}"
            );
            seen.extend(token.bytes());
        }
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn first_line_is_short() {
        assert_eq!(first_line("one\ntwo"), "one");
        assert_eq!(first_line(""), "");
        let long = "x".repeat(100);
        assert_eq!(first_line(&long).len(), 83);
    }
}
