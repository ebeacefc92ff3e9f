//! Parsing and framing (RFC 3261 sections 7 and 18.3): [`parse_datagram`] for UDP and
//! [`StreamDecoder`] for TCP share one head parser, which reports
//! [`Error::Incomplete`] apart from [`Error::Invalid`].

use crate::Error;
use crate::header::{Headers, Name};
use crate::message::{Message, Method, Request, Response, StatusCode, Version};
use crate::uri::{Uri, find_byte, is_token_char, split_byte};

/// Default largest message a stream decoder accepts: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Parses one UDP datagram (RFC 3261 18.3).
///
/// The body is Content-Length octets when the header is present (trailing octets are
/// ignored, RFC 4475 3.1.1.8) and the rest of the datagram otherwise. A Content-Length
/// larger than what is left, a negative, non-numeric or repeated one, or a head without
/// its empty line, make the datagram invalid: the caller drops it.
pub fn parse_datagram(data: &[u8]) -> Result<Message, Error> {
    let start = skip_crlf(data);
    let data = &data[start..];
    let head_len = match find_head_end(data, 0) {
        Some(n) => n,
        None => {
            return Err(Error::Invalid(
                "no empty line after the header section".into(),
            ));
        }
    };
    let msg = parse_head(&data[..head_len - 4])?;
    let rest = &data[head_len..];
    let body = match framing_length(msg.headers())? {
        Some(n) if n > rest.len() => {
            return Err(Error::Invalid(format!(
                "Content-Length {n} larger than the {} octets left",
                rest.len()
            )));
        }
        Some(n) => &rest[..n],
        None => rest,
    };
    Ok(with_body(msg, body.to_vec()))
}

/// Parses one message from the front of a stream buffer (RFC 3261 18.3): leading
/// CRLFs are skipped, [`Error::Incomplete`] until the head and a Content-Length body
/// (0 when absent) are there. Returns the message and the octets it used.
///
/// One-shot and stateless; a connection should use [`StreamDecoder`], which does not
/// search the same octets twice. Any error but `Incomplete` is fatal for the stream.
pub fn parse_message(buf: &[u8], max_message: usize) -> Result<(Message, usize), Error> {
    let skip = skip_crlf(buf);
    let data = &buf[skip..];
    let Some(head_len) = find_head_end(data, 0) else {
        return Err(if data.len() > max_message {
            Error::TooLarge { limit: max_message }
        } else {
            Error::Incomplete
        });
    };
    let msg = parse_head(&data[..head_len - 4]).map_err(to_framing)?;
    let body_len = framing_length(msg.headers())?.unwrap_or(0);
    within(head_len, body_len, max_message)?;
    let body = data
        .get(head_len..head_len + body_len)
        .ok_or(Error::Incomplete)?;
    Ok((with_body(msg, body.to_vec()), skip + head_len + body_len))
}

/// Splits a TCP (or other stream) byte stream into messages.
///
/// Feed it with [`push`](Self::push), then call [`next_message`](Self::next_message)
/// until it returns `Ok(None)`. The bytes already searched for the end of the header
/// section are not searched again, and the head is parsed once. Any `Err` is fatal for
/// the connection: there is no way to find the next message boundary.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    max: usize,
    /// Where the search for CRLFCRLF resumes.
    scanned: usize,
    /// The parsed head and the body length, once the head is complete.
    pending: Option<(Message, usize, usize)>,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl StreamDecoder {
    /// A decoder that fails on messages larger than `max_message` octets.
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max_message,
            scanned: 0,
            pending: None,
        }
    }

    /// Appends received octets. The buffer holds at most one unfinished message (up to
    /// the limit) plus what was pushed since the last `next_message`.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Octets buffered and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more octets are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if self.pending.is_none() {
            if self.scanned == 0 {
                // Keep-alive CRLFs between messages (RFC 5626 3.5.1).
                let skip = skip_crlf(&self.buf);
                self.buf.drain(..skip);
                if self.buf.first() == Some(&b'\r') && self.buf.len() == 1 {
                    return Ok(None);
                }
            }
            match find_head_end(&self.buf, self.scanned) {
                None => {
                    if self.buf.len() > self.max {
                        return Err(Error::TooLarge { limit: self.max });
                    }
                    self.scanned = self.buf.len().saturating_sub(3);
                    return Ok(None);
                }
                Some(head_len) => {
                    if head_len > self.max {
                        return Err(Error::TooLarge { limit: self.max });
                    }
                    let msg = parse_head(&self.buf[..head_len - 4]).map_err(to_framing)?;
                    // A stream message must carry Content-Length (RFC 3261 18.3);
                    // without one we take 0 rather than guess.
                    let body_len = framing_length(msg.headers())?.unwrap_or(0);
                    within(head_len, body_len, self.max)?;
                    self.pending = Some((msg, head_len, body_len));
                }
            }
        }
        let Some((_, head_len, body_len)) = &self.pending else {
            return Ok(None);
        };
        let total = head_len + body_len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let Some((msg, head_len, _)) = self.pending.take() else {
            return Ok(None);
        };
        let body = self.buf[head_len..total].to_vec();
        self.buf.drain(..total);
        self.scanned = 0;
        Ok(Some(with_body(msg, body)))
    }
}

/// On a stream, a head that does not parse leaves no way to resynchronise.
fn to_framing(e: Error) -> Error {
    match e {
        Error::Invalid(r) => Error::Framing(r),
        other => other,
    }
}

fn skip_crlf(data: &[u8]) -> usize {
    let mut i = 0;
    while data.get(i) == Some(&b'\r') && data.get(i + 1) == Some(&b'\n') {
        i += 2;
    }
    i
}

/// Length of the head including its CRLFCRLF, searching from `from`.
fn find_head_end(data: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(data.get(from..)?, b"\r\n\r\n").map(|p| from + p + 4)
}

/// A message of this head and body length fits in `limit`. The sum is checked: a
/// Content-Length near usize::MAX must not wrap it (found by fuzzing).
fn within(head_len: usize, body_len: usize, limit: usize) -> Result<(), Error> {
    match head_len.checked_add(body_len) {
        Some(len) if len <= limit => Ok(()),
        _ => Err(Error::TooLarge { limit }),
    }
}

/// Content-Length for framing: absent is `None`; repeated, negative or non-numeric is a
/// framing error (RFC 4475 3.1.2.3 and 3.3.9).
fn framing_length(headers: &Headers) -> Result<Option<usize>, Error> {
    let mut lines = headers.lines(Name::CONTENT_LENGTH);
    let Some(v) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(Error::Framing("multiple Content-Length headers".into()));
    }
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Framing(format!("bad Content-Length {v:?}")));
    }
    v.parse()
        .map(Some)
        .map_err(|_| Error::Framing(format!("Content-Length out of range {v:?}")))
}

fn with_body(msg: Message, body: Vec<u8>) -> Message {
    match msg {
        Message::Request(r) => Message::Request(Request { body, ..r }),
        Message::Response(r) => Message::Response(Response { body, ..r }),
    }
}

/// Parses the start line and header lines (the head without its final CRLFCRLF).
fn parse_head(head: &[u8]) -> Result<Message, Error> {
    let text = std::str::from_utf8(head).map_err(|_| Error::Invalid("head is not UTF-8".into()))?;
    // Lines end in CRLF: every CR must begin a CRLF and every LF end one. One byte search
    // for both checks that; the lines are then cut at the LFs.
    let start_line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let mut line_count = 1;
    for i in memchr::memchr2_iter(b'\r', b'\n', head) {
        let paired = match head[i] {
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            _ => {
                line_count += 1;
                i > 0 && head[i - 1] == b'\r'
            }
        };
        if !paired {
            let place = if i <= start_line_end {
                "start line"
            } else {
                "header"
            };
            return Err(Error::Invalid(format!("bare CR or LF in {place}")));
        }
    }
    let mut lines = memchr::memchr_iter(b'\n', head)
        .chain([head.len() + 1])
        .scan(0, |begin, lf| {
            // `lf - 1` drops the CR (the last line has neither).
            let line = &text[*begin..lf - 1];
            *begin = lf + 1;
            Some(line)
        });
    let start = lines.next().unwrap_or_default();
    let mut headers = Headers::with_capacity(line_count - 1);
    let mut current: Option<(&str, String)> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 7.3.1): joined with one SP.
            let Some((_, value)) = current.as_mut() else {
                return Err(Error::Invalid("continuation line before any header".into()));
            };
            let more = line.trim_matches([' ', '\t']);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        if let Some((n, v)) = current.take() {
            headers.push_parsed(n, v);
        }
        let colon = memchr::memchr(b':', line.as_bytes())
            .ok_or_else(|| Error::Invalid(format!("header line without colon: {line:?}")))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(Error::Invalid(format!("bad header name {name:?}")));
        }
        current = Some((name, value.trim_matches([' ', '\t']).to_owned()));
    }
    if let Some((n, v)) = current.take() {
        headers.push_parsed(n, v);
    }
    parse_start_line(start, headers)
}

fn parse_start_line(line: &str, headers: Headers) -> Result<Message, Error> {
    if line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line: SIP-Version SP Status-Code SP Reason-Phrase; the SP before an
        // empty reason may be missing (liberal).
        let mut parts = line.splitn(3, ' ');
        let version = Version::parse(parts.next().unwrap_or_default())?;
        let code = parts.next().unwrap_or_default();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Invalid(format!("bad status code {code:?}")));
        }
        let status = StatusCode::new(code.parse().unwrap_or_default())?;
        let reason = parts.next().unwrap_or_default();
        if reason.contains(['\r', '\n']) {
            return Err(Error::Invalid("bad reason phrase".into()));
        }
        return Ok(Message::Response(Response {
            version,
            status,
            reason: reason.to_owned(),
            headers,
            body: Vec::new(),
        }));
    }
    // Request-Line: Method SP Request-URI SP SIP-Version, exactly one SP each
    // (RFC 4475 3.1.2.9/3.1.2.10: we take the strict choice).
    let bad = || Error::Invalid(format!("bad request line {line:?}"));
    let (method, rest) = split_byte(line, b' ').ok_or_else(bad)?;
    let (uri, version) = split_byte(rest, b' ').ok_or_else(bad)?;
    if find_byte(version, b' ').is_some() {
        return Err(bad());
    }
    let method: Method = method.parse()?;
    let uri = Uri::parse(uri).map_err(|e| Error::Invalid(format!("bad Request-URI: {e}")))?;
    let version = Version::parse(version)?;
    Ok(Message::Request(Request {
        method,
        uri,
        version,
        headers,
        body: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Subject: folded\r\n  value\r\n\
Call-ID: x\r\nCSeq: 1 MESSAGE\r\nl: 5\r\n\r\nhello";

    #[test]
    fn datagram_round_trip() {
        let m = parse_datagram(MSG).unwrap();
        let Message::Request(r) = &m else { panic!() };
        assert_eq!(r.body, b"hello");
        assert_eq!(r.headers.vias().unwrap().len(), 2);
        assert_eq!(r.headers.subject().unwrap(), Some("folded value"));
        assert_eq!(parse_datagram(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn datagram_framing_errors() {
        let mut long = MSG.to_vec();
        long.truncate(long.len() - 1);
        assert!(parse_datagram(&long).is_err());
        let mut extra = MSG.to_vec();
        extra.extend_from_slice(b"trailing");
        let Message::Request(r) = parse_datagram(&extra).unwrap() else {
            panic!()
        };
        assert_eq!(r.body, b"hello");
        assert!(parse_datagram(b"garbage").is_err());
        // Found by the fuzzer: a multi-byte character across the "SIP/" prefix test.
        assert!(parse_datagram("~:\u{feff}\r\n\r\n".as_bytes()).is_err());
        assert!(parse_datagram(b"").is_err());
    }

    #[test]
    fn stream_byte_by_byte_and_keepalives() {
        let mut d = StreamDecoder::default();
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(MSG);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(MSG);
        let mut got = Vec::new();
        for b in &input {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], got[1]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn one_shot_stream_parse() {
        for cut in 0..MSG.len() {
            assert!(matches!(
                parse_message(&MSG[..cut], DEFAULT_MAX_MESSAGE),
                Err(Error::Incomplete)
            ));
        }
        let mut two = b"\r\n".to_vec();
        two.extend_from_slice(MSG);
        two.extend_from_slice(MSG);
        let (m, used) = parse_message(&two, DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(used, MSG.len() + 2);
        assert_eq!(
            parse_message(&two[used..], DEFAULT_MAX_MESSAGE).unwrap().0,
            m
        );
        assert!(matches!(
            parse_message(MSG, 10),
            Err(Error::TooLarge { limit: 10 })
        ));
    }

    #[test]
    fn stream_fatal_errors() {
        let mut d = StreamDecoder::new(100);
        d.push(&[b'a'; 200]);
        assert!(matches!(d.next_message(), Err(Error::TooLarge { .. })));
        let mut d = StreamDecoder::default();
        d.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(d.next_message(), Err(Error::Framing(_))));
        let mut d = StreamDecoder::default();
        d.push(b"hello\r\n\r\n");
        assert!(matches!(d.next_message(), Err(Error::Framing(_))));
        let mut d = StreamDecoder::new(100);
        d.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(matches!(d.next_message(), Err(Error::TooLarge { .. })));
        // Found by fuzzing: a length near usize::MAX wrapped head + body and the body's
        // slice panicked.
        let huge = format!("OPTIONS sip:a SIP/2.0\r\nl: {}\r\n\r\n", usize::MAX - 10);
        let mut d = StreamDecoder::default();
        d.push(huge.as_bytes());
        assert!(matches!(d.next_message(), Err(Error::TooLarge { .. })));
        assert!(matches!(
            parse_message(huge.as_bytes(), DEFAULT_MAX_MESSAGE),
            Err(Error::TooLarge { .. })
        ));
    }
}
