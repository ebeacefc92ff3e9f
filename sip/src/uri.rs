//! SIP and SIPS URIs (RFC 3261 section 19.1) and other absolute URIs (RFC 3986), kept
//! opaque so that a request for an unknown scheme still parses and can get a 416.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::Error;

/// `unreserved` marks of RFC 3261 25.1, which never need escaping.
const MARKS: AsciiSet = NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What may stay unescaped in a user part: unreserved and `user-unreserved`.
const USER: AsciiSet = MARKS
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',')
    .remove(b';')
    .remove(b'?')
    .remove(b'/');

/// What may stay unescaped in a password: unreserved, `&=+$,`.
const PASSWORD: AsciiSet = MARKS
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',');

/// A host: a name (resolved by [`locate`](crate::locate())) or a numeric address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written (compare case-insensitively).
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses `host` of RFC 3261 25.1: hostname, IPv4address or `[` IPv6address `]`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| Error::Uri(format!("unterminated IPv6 reference {s:?}")))?;
            return inner
                .parse()
                .map(Self::Ipv6)
                .map_err(|_| Error::Uri(format!("bad IPv6 address {s:?}")));
        }
        if s.is_empty() {
            return Err(Error::Uri("empty host".into()));
        }
        if let Some(v4) = parse_ipv4(s) {
            return Ok(Self::Ipv4(v4));
        }
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            Ok(Self::Domain(s.to_owned()))
        } else {
            Err(Error::Uri(format!("bad host {s:?}")))
        }
    }

    /// The host as written back (`Display`), borrowed for a name: the gateway compares
    /// and keys by the host of every MESSAGE, and writing a name out through the
    /// formatter cost an allocation and a few hundred instructions each time.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Domain(d) => Cow::Borrowed(d),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// The address, when the host is numeric (no DNS is done here).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Self::Domain(_) => None,
            Self::Ipv4(a) => Some((*a).into()),
            Self::Ipv6(a) => Some((*a).into()),
        }
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(a) => Self::Ipv4(a),
            std::net::IpAddr::V6(a) => Self::Ipv6(a),
        }
    }
}

impl Host {
    /// Writes the host as `Display` does, into any writer (see [`SipUri::write_into`]).
    pub fn write_into(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Self::Domain(d) => out.write_str(d),
            Self::Ipv4(a) => out.write_str(DottedQuad::new(*a).as_str()),
            Self::Ipv6(a) => write!(out, "[{a}]"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// Dotted decimal as `Ipv4Addr::from_str` reads it (four octets of one to three digits, no
/// leading zero, at most 255), in one pass: every Via and URI host goes through here, and
/// the standard parser cost more than the rest of the host's parse.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.as_bytes().split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// An IPv4 address in dotted decimal, written without the formatter, which costs more
/// than the rest of a Via line: each request's Via, transaction key and `received` need one.
pub(crate) struct DottedQuad {
    text: [u8; 15],
    len: usize,
}

impl DottedQuad {
    pub(crate) fn new(addr: Ipv4Addr) -> Self {
        let mut text = [0; 15];
        let mut len = 0;
        for (i, octet) in addr.octets().into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            for (place, shown) in [(100, octet >= 100), (10, octet >= 10), (1, true)] {
                if shown {
                    text[len] = b'0' + octet / place % 10;
                    len += 1;
                }
            }
        }
        Self { text, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only digits and dots were written.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// `str::split_once` for an ASCII byte, found by memchr: the parsers split every URI and
/// header value this way, and the `char` pattern search costs several times as much.
pub(crate) fn split_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    // An ASCII byte is always a character boundary.
    find_byte(s, byte).map(|i| (&s[..i], &s[i + 1..]))
}

/// `str::find` for an ASCII byte, by memchr.
pub(crate) fn find_byte(s: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    memchr::memchr(byte, s.as_bytes())
}

/// Splits `host[:port]`, minding IPv6 brackets.
pub(crate) fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), Error> {
    let (host, port) = if s.starts_with('[') {
        match find_byte(s, b']') {
            Some(end) => {
                let (h, rest) = s.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None if rest.is_empty() => (h, None),
                    None => return Err(Error::Uri(format!("junk after IPv6 reference {s:?}"))),
                }
            }
            None => return Err(Error::Uri(format!("unterminated IPv6 reference {s:?}"))),
        }
    } else {
        match split_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse()
                .map_err(|_| Error::Uri(format!("port out of range {p:?}")))?,
        ),
        Some(p) => return Err(Error::Uri(format!("bad port {p:?}"))),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

/// A `;name[=value]` list; names compare case-insensitively, values are kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Params(Vec<(Cow<'static, str>, Option<String>)>);

/// A parameter name as written, borrowed when it is one of those most requests carry
/// (each request has four to seven): one allocation fewer each.
fn param_name(name: &str) -> Cow<'static, str> {
    Cow::Borrowed(match name {
        "branch" => "branch",
        "rport" => "rport",
        "received" => "received",
        "tag" => "tag",
        "transport" => "transport",
        "lr" => "lr",
        "maddr" => "maddr",
        "user" => "user",
        "charset" => "charset",
        "expires" => "expires",
        "q" => "q",
        _ => return Cow::Owned(name.to_owned()),
    })
}

impl Params {
    /// Parses parameters after the first `;` (the input does not start with `;`).
    ///
    /// Empty names (`;;`) are errors: RFC 4475 3.1.2.1 calls them invalid.
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        // Room for a Via's branch, rport and received without growing.
        let mut out = Vec::with_capacity(4);
        for part in split_quoted(s, b';') {
            let (name, value) = match split_byte(part, b'=') {
                Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
                None => (trim_lws(part), None),
            };
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(Error::Uri(format!("bad parameter {part:?}")));
            }
            if let Some(v) = value {
                let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
                if v.is_empty() || (!quoted && v.bytes().any(|b| b <= b' ' || b == b'"')) {
                    return Err(Error::Uri(format!("bad parameter value {part:?}")));
                }
            }
            out.push((param_name(name), value.map(str::to_owned)));
        }
        Ok(Self(out))
    }

    /// `Some(value)` when the parameter is present (`Some(None)` for a bare name).
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Whether the parameter is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (replacing) or adds a parameter.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((param_name(name), value)),
        }
    }

    /// Removes a parameter.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Params {
    /// Writes `;name=value` for each parameter (nothing for none), into any writer (see
    /// [`SipUri::write_into`]).
    pub fn write_into(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for (n, v) in &self.0 {
            out.write_str(";")?;
            out.write_str(n)?;
            if let Some(v) = v {
                out.write_str("=")?;
                out.write_str(v)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// A `sip:` or `sips:` URI (RFC 3261 19.1.1). The user part is percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// Decoded user part (`%00` stays a NUL character, RFC 4475 3.1.1.4).
    pub user: Option<String>,
    /// Decoded password (deprecated by RFC 3261, still parsed).
    pub password: Option<String>,
    /// Host.
    pub host: Host,
    /// Port, when written.
    pub port: Option<u16>,
    /// `uri-parameters`, values as written.
    pub params: Params,
    /// `headers` after `?`, names and values as written (still escaped).
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// A URI for `user@host`, for building requests.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> Self {
        Self {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    /// Parses the part after `sip:` / `sips:`.
    fn parse_rest(secure: bool, s: &str) -> Result<Self, Error> {
        if s.bytes()
            .any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"' || b == 0x7f)
        {
            return Err(Error::Uri(format!("forbidden character in SIP URI {s:?}")));
        }
        // A literal '@' can only end the userinfo: params and headers must escape it.
        let (userinfo, rest) = match find_byte(s, b'@') {
            Some(at) => (Some(&s[..at]), &s[at + 1..]),
            None => (None, s),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match split_byte(ui, b':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(Error::Uri("empty user part".into()));
                }
                (Some(decode(u)?), p.map(decode).transpose()?)
            }
        };
        let (before_headers, headers) = match split_byte(rest, b'?') {
            Some((b, h)) => (b, Some(h)),
            None => (rest, None),
        };
        let (hostport, params) = match split_byte(before_headers, b';') {
            Some((hp, p)) => (hp, Params::parse(p)?),
            None => (before_headers, Params::default()),
        };
        let (host, port) = parse_host_port(hostport)?;
        let headers = match headers {
            None => Vec::new(),
            Some(h) => h
                .split('&')
                .map(|kv| match split_byte(kv, b'=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                    _ => Err(Error::Uri(format!("bad URI header {kv:?}"))),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

impl SipUri {
    /// Writes the URI as `Display` does, into any writer. Into a `String` the calls are
    /// direct, without the formatter's indirection: every request the gateway sends
    /// writes two or three URIs.
    pub fn write_into(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            for part in utf8_percent_encode(u, &USER) {
                out.write_str(part)?;
            }
            if let Some(p) = &self.password {
                out.write_str(":")?;
                for part in utf8_percent_encode(p, &PASSWORD) {
                    out.write_str(part)?;
                }
            }
            out.write_str("@")?;
        }
        self.host.write_into(out)?;
        if let Some(p) = self.port {
            write_port(out, p)?;
        }
        self.params.write_into(out)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            out.write_str(if i == 0 { "?" } else { "&" })?;
            out.write_str(k)?;
            out.write_str("=")?;
            out.write_str(v)?;
        }
        Ok(())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// Writes `:port` without the formatter's integer machinery.
pub(crate) fn write_port(f: &mut impl fmt::Write, port: u16) -> fmt::Result {
    f.write_str(":")?;
    f.write_str(itoa::Buffer::new().format(port))
}

/// Any URI: SIP/SIPS parsed, other schemes kept whole (RFC 4475 3.3.2 `unkscm.dat`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Another scheme (`tel:`, `im:`, `pres:` ...): scheme and the rest, as written.
    Other {
        /// The scheme, as written.
        scheme: String,
        /// Everything after the colon.
        rest: String,
    },
}

impl Uri {
    /// Parses an absolute URI.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (scheme, rest) =
            split_byte(s, b':').ok_or_else(|| Error::Uri(format!("no scheme in {s:?}")))?;
        let mut sb = scheme.bytes();
        let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(Error::Uri(format!("bad scheme in {s:?}")));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(false, rest).map(Self::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(true, rest).map(Self::Sip)
        } else if rest.is_empty()
            || rest
                .bytes()
                .any(|b| b <= b' ' || matches!(b, b'<' | b'>' | b'"' | 0x7f))
        {
            Err(Error::Uri(format!("bad absolute URI {s:?}")))
        } else {
            Ok(Self::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Self::Sip(u) => Some(u),
            Self::Other { .. } => None,
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Uri {
    /// Writes the URI as `Display` does, into any writer (see [`SipUri::write_into`]).
    pub fn write_into(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Self::Sip(u) => u.write_into(out),
            Self::Other { scheme, rest } => {
                out.write_str(scheme)?;
                out.write_str(":")?;
                out.write_str(rest)
            }
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Self::Sip(u)
    }
}

/// Percent-decodes a user or password; a bad escape or non-UTF-8 result is an error.
fn decode(s: &str) -> Result<String, Error> {
    // Most user parts have no escapes: nothing to check or decode.
    if find_byte(s, b'%').is_none() {
        return Ok(s.to_owned());
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(Error::Uri(format!("bad escape in {s:?}")));
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::Uri(format!("escaped user part is not UTF-8 {s:?}")))
}

/// `token` characters of RFC 3261 25.1, looked up in a table: every header name, parameter
/// name and method is checked a byte at a time.
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

/// Trims linear white space, SP and HTAB (RFC 3261 25.1), from both ends. Header values
/// arrive unfolded and cut at their CRLF, so no other white space is part of the syntax;
/// `str::trim` looks for every Unicode space, at about three times the cost, and the
/// parsers trim each name and value they read.
pub(crate) fn trim_lws(s: &str) -> &str {
    let lws = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|b| !lws(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !lws(b)).map_or(start, |i| i + 1);
    // Both ends are next to ASCII bytes, or at the ends: character boundaries.
    s.get(start..end).unwrap_or_default()
}

/// Splits on `sep` outside double quotes (with `\` escapes) and angle brackets.
///
/// An iterator, as header values are split on every read of Via, From and To; a value
/// without quotes or brackets (most of them) is split by a plain byte search.
pub(crate) fn split_quoted(s: &str, sep: u8) -> SplitQuoted<'_> {
    SplitQuoted {
        rest: Some(s),
        sep,
        plain: memchr::memchr2(b'"', b'<', s.as_bytes()).is_none(),
    }
}

/// The parts [`split_quoted`] yields.
pub(crate) struct SplitQuoted<'a> {
    /// What is left to split; `None` once the last part is out.
    rest: Option<&'a str>,
    sep: u8,
    /// No quotes or brackets: every `sep` splits.
    plain: bool,
}

impl<'a> Iterator for SplitQuoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let end = if self.plain {
            memchr::memchr(self.sep, s.as_bytes())
        } else {
            separator_outside_quotes(s, self.sep)
        };
        match end {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// The first `sep` outside double quotes and angle brackets. Quotes count inside brackets
/// too (a `>` in a quoted string does not close them). Each step jumps with memchr to the
/// next byte that matters in the current state.
fn separator_outside_quotes(s: &str, sep: u8) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut angle) = (0, false);
    loop {
        let at = if angle {
            i + memchr::memchr2(b'"', b'>', &b[i..])?
        } else {
            i + memchr::memchr3(sep, b'"', b'<', &b[i..])?
        };
        match b[at] {
            b'"' => {
                // To the closing quote, a backslash escaping the byte after it; an
                // unterminated string holds no separator.
                let mut j = at + 1;
                loop {
                    let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
                    if b[k] == b'"' {
                        i = k + 1;
                        break;
                    }
                    j = k + 2;
                }
            }
            b'<' => {
                angle = true;
                i = at + 1;
            }
            b'>' => {
                angle = false;
                i = at + 1;
            }
            _ => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_trimmed_and_nothing_else() {
        for (text, trimmed) in [
            ("", ""),
            (" \t ", ""),
            ("a", "a"),
            (" \ta b\t ", "a b"),
            ("\u{a0}x\u{a0}", "\u{a0}x\u{a0}"),
            ("\u{b}x\u{c}", "\u{b}x\u{c}"),
            (" é ", "é"),
        ] {
            assert_eq!(trim_lws(text), trimmed, "{text:?}");
        }
    }

    #[test]
    fn token_table_as_the_grammar() {
        for b in 0..=255u8 {
            let grammar = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_char(b), grammar, "{b:#x}");
        }
    }

    #[test]
    fn separators_outside_quotes_and_brackets() {
        fn split(s: &str, sep: u8) -> Vec<&str> {
            split_quoted(s, sep).collect()
        }
        assert_eq!(split("a,b,,c", b','), ["a", "b", "", "c"]);
        assert_eq!(split("<sip:a@b;x=1,2>,c", b','), ["<sip:a@b;x=1,2>", "c"]);
        assert_eq!(
            split(r#""a,\"b,>" <sip:x>,y"#, b','),
            [r#""a,\"b,>" <sip:x>"#, "y"]
        );
        assert_eq!(
            split(r#"<sip:a;q=">,">,b"#, b','),
            [r#"<sip:a;q=">,">"#, "b"]
        );
        assert_eq!(split(r#""unterminated, x"#, b','), [r#""unterminated, x"#]);
        assert_eq!(split(r#""ends in \"#, b','), [r#""ends in \"#]);
        assert_eq!(split("x>y,z", b','), ["x>y", "z"]);
        assert_eq!(split("<a,b", b','), ["<a,b"]);
        assert_eq!(split("", b','), [""]);
    }

    /// The byte-by-byte state machine the memchr version replaced, as an oracle.
    fn separator_by_bytes(s: &str, sep: u8) -> Option<usize> {
        let (mut quoted, mut escaped, mut angle) = (false, false, false);
        for (i, b) in s.bytes().enumerate() {
            if quoted {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => quoted = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => quoted = true,
                b'<' => angle = true,
                b'>' => angle = false,
                _ if b == sep && !angle => return Some(i),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn separator_search_agrees_with_the_byte_state_machine() {
        let alphabet = [b'a', b',', b'"', b'\\', b'<', b'>'];
        let mut rng = fastrand::Rng::with_seed(4475);
        for _ in 0..20_000 {
            let len = rng.usize(0..12);
            let text: String = (0..len)
                .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
                .collect();
            assert_eq!(
                separator_outside_quotes(&text, b','),
                separator_by_bytes(&text, b','),
                "{text:?}"
            );
        }
    }

    #[test]
    fn uris_write_back_as_parsed() {
        for text in [
            "sip:host",
            "sip:a@h:0",
            "sip:a@h:9",
            "sip:a%20b:pw@h:10",
            "sips:alice@[2001:db8::1]:5061;transport=tcp",
            "sip:bob@192.0.2.4:65535;lr?subject=hi&priority=urgent",
            "tel:+1-555-0100",
        ] {
            assert_eq!(Uri::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn dotted_quads_read_as_std_reads_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.200.9.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4a",
            "a.b.c.d",
            "1234.1.1.1",
            "+1.2.3.4",
            "",
            "example.com",
        ] {
            assert_eq!(parse_ipv4(text), text.parse().ok(), "{text:?}");
        }
    }

    #[test]
    fn dotted_quads_as_std_writes_them() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.9.255",
            "255.255.255.255",
            "192.0.2.100",
        ] {
            let addr: Ipv4Addr = a.parse().unwrap();
            assert_eq!(DottedQuad::new(addr).as_str(), addr.to_string());
        }
    }

    #[test]
    fn sip_uri_round_trip_and_decode() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net;lr?Subject=hi").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(s.host, Host::Domain("example.net".into()));
        assert!(s.params.contains("lr"));
        assert_eq!(s.headers, vec![("Subject".into(), "hi".into())]);
        assert_eq!(
            u.to_string(),
            "sip:sips%3Auser%40example.com@example.net;lr?Subject=hi"
        );
    }

    #[test]
    fn ipv6_and_port() {
        let u = Uri::parse("sips:alice:pw@[2001:db8::10]:5061;transport=tcp").unwrap();
        let s = u.as_sip().unwrap();
        assert!(s.secure);
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(s.port, Some(5061));
        assert_eq!(
            u.to_string(),
            "sips:alice:pw@[2001:db8::10]:5061;transport=tcp"
        );
    }

    #[test]
    fn ports_are_written_as_the_formatter_writes_them() {
        for port in [0, 9, 10, 99, 100, 5060, 9999, 10000, 65535] {
            let mut out = String::new();
            write_port(&mut out, port).unwrap();
            assert_eq!(out, format!(":{port}"));
        }
    }

    #[test]
    fn escaped_null_keeps_length() {
        let u = Uri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.as_sip().unwrap().user.as_deref(), Some("null-\0-null"));
        assert_eq!(u.to_string(), "sip:null-%00-null@example.com");
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert!(matches!(u, Uri::Other { .. }));
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("sip:a@b c").is_err());
        assert!(Uri::parse("sip:a@").is_err());
        assert!(Uri::parse("sip:a%zz@b").is_err());
    }

    #[test]
    fn user_is_encoded_on_build() {
        let u = SipUri::new(Some("a b@c"), Host::Domain("example.com".into()), None);
        assert_eq!(u.to_string(), "sip:a%20b%40c@example.com");
    }
}
