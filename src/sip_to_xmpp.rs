//! SIP MESSAGE (RFC 3428) to XMPP `<message/>` (RFC 7572 §5), pure.
//!
//! - The destination is the Request-URI, else the To URI: the first whose host is the jdomain or
//!   an alias, whatever its port or parameters.
//! - `text/plain` in any charset becomes UTF-8. `message/cpim` (RFC 3862) is unwrapped, and its
//!   inner `text/plain` is sent. Other types get 415 with an `Accept` header.
//! - Characters that XML 1.0 cannot carry become U+FFFD. One NUL in a body must not cost the
//!   whole component stream: the server would close it.
//! - The stanza is `type='chat'`, as the SER module sent it. The `Subject` header maps to
//!   `<subject/>`.

use encoding_rs::Encoding;
use sipjab_sip::{MediaType, Rejection, Request, SipUri, StatusCode, Uri};

use crate::address::{AddressRules, XmppTarget};

/// What a SIP MESSAGE carries, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The message body, UTF-8, XML-safe.
    pub body: String,
    /// The `Subject` header, if any.
    pub subject: Option<String>,
}

/// The media types the gateway converts, for `Accept` in a 415.
pub const ACCEPTED_TYPES: &str = "text/plain, message/cpim";

/// A refusal with a status and a reason phrase.
pub fn reject(code: u16, reason: impl Into<String>) -> Rejection {
    Rejection {
        code: StatusCode::new(code).unwrap_or(StatusCode::SERVER_ERROR),
        reason: reason.into(),
        headers: Vec::new(),
    }
}

/// The gateway address a MESSAGE is for and what it maps to: the Request-URI if its host is a
/// gateway domain, else the To URI.
pub fn destination<'a>(
    rules: &AddressRules,
    req: &'a Request,
    to: Option<&'a Uri>,
) -> Result<(&'a SipUri, XmppTarget), Rejection> {
    let candidates = [Some(&req.uri), to];
    let uri = candidates
        .into_iter()
        .flatten()
        .filter_map(Uri::as_sip)
        .find(|u| rules.is_gateway_host(&u.host.text()))
        .ok_or_else(|| reject(404, "Not Found (not a gateway address)"))?;
    if uri.secure {
        // RFC 7247 §8: a SIPS request must not be carried on into XMPP.
        return Err(reject(403, "Forbidden (SIPS is not translated to XMPP)"));
    }
    let user = uri.user.as_deref().unwrap_or("");
    let target = rules
        .sip_to_xmpp(user, &uri.host.text())
        .map_err(|e| reject(404, format!("Not Found ({e})")))?;
    Ok((uri, target))
}

/// The text of a MESSAGE: its body converted to UTF-8, and its subject.
pub fn message_text(req: &Request) -> Result<Text, Rejection> {
    let content_type = req
        .headers
        .content_type()
        .map_err(|e| reject(400, format!("Bad Request ({e})")))?;
    if req.body.is_empty() {
        return Err(reject(400, "Bad Request (MESSAGE without a body)"));
    }
    let body = match content_type {
        // RFC 3428 §7 requires a Content-Type; a body without one is read as text/plain.
        None => decode_text(&req.body, None)?,
        Some(t) => decode(t, &req.body)?,
    };
    let subject = req
        .headers
        .subject()
        .map_err(|e| reject(400, format!("Bad Request ({e})")))?
        .map(xml_safe);
    Ok(Text { body, subject })
}

fn decode(content_type: &MediaType, body: &[u8]) -> Result<String, Rejection> {
    match (content_type.mtype.as_str(), content_type.subtype.as_str()) {
        ("text", "plain") => decode_text(body, content_type.charset()),
        ("message", "cpim") => unwrap_cpim(body),
        _ => Err(unsupported(&content_type.essence())),
    }
}

fn unsupported(what: &str) -> Rejection {
    let mut r = reject(415, format!("Unsupported Media Type ({what})"));
    r.headers.push(("Accept".into(), ACCEPTED_TYPES.into()));
    r
}

/// Decodes text in its charset (UTF-8 when none is named, as RFC 3261 §7.4.1 has it).
fn decode_text(body: &[u8], charset: Option<&str>) -> Result<String, Rejection> {
    let label = charset.unwrap_or("utf-8").trim_matches('"');
    // UTF-8 is nearly every MESSAGE's charset: no search of the label table for it.
    let encoding = if label.eq_ignore_ascii_case("utf-8") {
        encoding_rs::UTF_8
    } else {
        Encoding::for_label(label.as_bytes())
            .ok_or_else(|| unsupported(&format!("charset {label}")))?
    };
    let text = encoding
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or_else(|| reject(400, format!("Bad Request (body is not valid {label})")))?;
    Ok(xml_safe(&text))
}

/// RFC 3862: CPIM message headers, an empty line, then a MIME entity (its headers, an empty
/// line, its content). Only `text/plain` content is taken.
fn unwrap_cpim(body: &[u8]) -> Result<String, Rejection> {
    let bad = || reject(400, "Bad Request (malformed message/cpim body)");
    let (_cpim_headers, entity) = split_headers(body).ok_or_else(bad)?;
    let (mime_headers, content) = split_headers(entity).ok_or_else(bad)?;
    let mime_headers = std::str::from_utf8(mime_headers).map_err(|_| bad())?;
    let content_type = mime_headers
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("Content-Type"))
        .map(|(_, value)| MediaType::parse(value.trim(), "Content-Type"))
        .transpose()
        .map_err(|_| bad())?;
    match content_type {
        Some(t) if t.mtype == "text" && t.subtype == "plain" => decode_text(content, t.charset()),
        Some(t) => Err(unsupported(&format!("message/cpim with {}", t.essence()))),
        None => decode_text(content, None),
    }
}

/// Splits at the first empty line (CRLF CRLF, or LF LF from lax senders).
fn split_headers(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = find(data, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(data, b"\n\n").map(|i| (i, 2));
    let (at, len) = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }?;
    Some((&data[..at], &data[at + len..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces the characters XML 1.0 cannot carry (controls other than tab, LF and CR, U+FFFE,
/// U+FFFF) with U+FFFD.
pub fn xml_safe(text: &str) -> String {
    // Nearly every text is safe as it is: only a control byte or the lead byte of U+FFFE
    // and U+FFFF (0xEF) sends it through the character-by-character copy.
    if text
        .bytes()
        .all(|b| (b >= b' ' && b != 0xef) || matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>, body: &[u8]) -> Request {
        let uri = Uri::parse("sip:alpha*jabber.org@jabber.x.com").unwrap();
        let mut req = Request::new(sipjab_sip::Method::Message, uri);
        if let Some(t) = content_type {
            req.set_body(t, body.to_vec());
        } else {
            req.body = body.to_vec();
        }
        req
    }

    fn text(content_type: Option<&str>, body: &[u8]) -> Result<String, u16> {
        message_text(&request(content_type, body))
            .map(|t| t.body)
            .map_err(|r| r.code.as_u16())
    }

    #[test]
    fn charsets_become_utf8() {
        assert_eq!(text(Some("text/plain"), b"hi").as_deref(), Ok("hi"));
        assert_eq!(
            text(Some("text/plain;charset=ISO-8859-1"), b"gr\xfc\xdf").as_deref(),
            Ok("gr\u{fc}\u{df}")
        );
        assert_eq!(
            text(Some("text/plain; charset=\"utf-8\""), "f\u{fc}r".as_bytes()).as_deref(),
            Ok("f\u{fc}r")
        );
        assert_eq!(text(None, b"no type").as_deref(), Ok("no type"));
        assert_eq!(text(Some("text/plain"), b"\xff\xfe bad"), Err(400));
        assert_eq!(text(Some("text/plain;charset=klingon"), b"x"), Err(415));
        assert_eq!(text(Some("text/plain"), b""), Err(400));
    }

    #[test]
    fn other_types_get_415_with_accept() {
        let r =
            message_text(&request(Some("application/im-iscomposing+xml"), b"<x/>")).unwrap_err();
        assert_eq!(r.code.as_u16(), 415);
        assert_eq!(r.headers, [("Accept".into(), ACCEPTED_TYPES.into())]);
        assert_eq!(text(Some("text/html"), b"<b>x</b>"), Err(415));
    }

    #[test]
    fn cpim_is_unwrapped() {
        let body = b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\nDateTime: 2026-11-28T01:00:00Z\r\n\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\n\r\nh\xe9llo";
        assert_eq!(
            text(Some("message/cpim"), body).as_deref(),
            Ok("h\u{e9}llo")
        );
        let html = b"From: <sip:a@b>\r\n\r\nContent-Type: text/html\r\n\r\n<p>x</p>";
        assert_eq!(text(Some("message/cpim"), html), Err(415));
        assert_eq!(text(Some("message/cpim"), b"no blank line"), Err(400));
    }

    #[test]
    fn xml_unsafe_characters_are_replaced() {
        assert_eq!(
            text(Some("text/plain"), b"a\x00b\x07c\td").as_deref(),
            Ok("a\u{fffd}b\u{fffd}c\td")
        );
    }

    #[test]
    fn subject_maps() {
        let mut req = request(Some("text/plain"), b"body");
        req.headers.push("Subject", "Lunch?");
        assert_eq!(
            message_text(&req).unwrap().subject.as_deref(),
            Some("Lunch?")
        );
    }
}
