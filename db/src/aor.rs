//! SIP addresses of record as the account store keys them (RFC 3261 §19.1).
//!
//! SER's jabber module stores the `From` URI of the user, `sip:user@host`, in
//! `jusers.sip_id` and looks it up with `sip_id = ?`. We compare more
//! leniently, per RFC 3261 §19.1.4 where it matters for an account key: the
//! scheme, the percent-decoded user and the case-folded host are compared; the
//! port, URI parameters, headers and any password are ignored (a user keeps the
//! same gateway account whichever port or transport the client uses).

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::Error;

/// Characters kept unescaped in the user part: RFC 3261 `unreserved` and
/// `user-unreserved`; everything else is written `%XX`.
const USER_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',')
    .remove(b';')
    .remove(b'?')
    .remove(b'/');

/// The URI scheme of an address of record: a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`, a different address from `sip:` (RFC 3261 §19.1.4).
    Sips,
}

impl Scheme {
    /// The scheme as written in a URI, without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sip => "sip",
            Self::Sips => "sips",
        }
    }
}

/// A parsed SIP address of record: scheme, user and host, nothing else.
///
/// Equality is the account-key equality described in the module docs, and
/// `Display` gives the normalised form stored in new rows, e.g.
/// `sip:alice@example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipAor {
    scheme: Scheme,
    /// Percent-decoded.
    user: String,
    /// Lowercase, without port or brackets' contents changed.
    host: String,
}

impl SipAor {
    /// Parses `sip:user@host[:port][;params][?headers]` (also `sips:`, and a
    /// `<...>` name-addr wrapper), lowercasing the host and dropping the rest.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let err = |reason| Error::Aor {
            uri: s.to_owned(),
            reason,
        };
        let t = s.trim();
        let t = t
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(t);
        let (scheme, rest) = t.split_once(':').ok_or_else(|| err("missing scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            _ => return Err(err("not a sip: or sips: URI")),
        };
        // The user part may hold ';' and '?' (user-unreserved), so split at
        // the '@' first and only then cut parameters and headers.
        let (userinfo, hostpart) = rest
            .split_once('@')
            .ok_or_else(|| err("missing user part (sip:user@host)"))?;
        let user = userinfo
            .split_once(':')
            .map_or(userinfo, |(user, _password)| user);
        if user.is_empty() {
            return Err(err("empty user part"));
        }
        if !escapes_well_formed(user) {
            return Err(err("bad %-escape in user part"));
        }
        let user = percent_decode_str(user)
            .decode_utf8()
            .map_err(|_| err("user part is not UTF-8"))?;
        let hostport = hostpart
            .find([';', '?'])
            .map_or(hostpart, |end| &hostpart[..end]);
        let host = strip_port(hostport).ok_or_else(|| err("bad port"))?;
        Self::checked(scheme, &user, host).map_err(err)
    }

    /// The address of record of a URI another parser has read: its decoded user part
    /// and its host as written (without port), checked as [`SipAor::parse`] checks them.
    /// Spares the gateway writing a parsed From URI out only to parse it again.
    pub fn from_parts(scheme: Scheme, user: &str, host: &str) -> Result<Self, Error> {
        Self::checked(scheme, user, host).map_err(|reason| Error::Aor {
            uri: format!("{}:{user}@{host}", scheme.as_str()),
            reason,
        })
    }

    fn checked(scheme: Scheme, user: &str, host: &str) -> Result<Self, &'static str> {
        if user.is_empty() {
            return Err("empty user part");
        }
        if user.chars().any(char::is_control) {
            return Err("control character in user part");
        }
        if host.is_empty() {
            return Err("missing host");
        }
        if !host_chars_ok(host) {
            return Err("bad character in host");
        }
        Ok(Self {
            scheme,
            user: user.to_owned(),
            host: host.to_ascii_lowercase(),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user part, percent-decoded.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host, lowercase, without port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What every stored form of this address starts with, in normalised
    /// form: `sip:alice@`. Lookups narrow by this prefix on an index and then
    /// compare parsed values.
    pub(crate) fn key_prefix(&self) -> String {
        format!(
            "{}:{}@",
            self.scheme.as_str(),
            utf8_percent_encode(&self.user, USER_ESCAPE)
        )
    }
}

/// True if every `%` is followed by two hex digits.
fn escapes_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `host[:port]` or `[v6][:port]` to the host; `None` if the port is not a number.
fn strip_port(hostport: &str) -> Option<&str> {
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let (host, after) = hostport.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

/// Hostnames, IPv4 addresses and bracketed IPv6 references (RFC 3261 `host`).
fn host_chars_ok(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        }
        None => host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'),
    }
}

impl FromStr for SipAor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SipAor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.key_prefix(), self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(s: &str) -> SipAor {
        SipAor::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parts_make_the_same_address_as_the_uri() {
        let parts = SipAor::from_parts(Scheme::Sip, "al ice", "Example.COM").unwrap();
        assert_eq!(parts, aor("sip:al%20ice@example.com:5060;transport=tcp"));
        assert_eq!(parts.to_string(), "sip:al%20ice@example.com");
        assert!(SipAor::from_parts(Scheme::Sip, "", "example.com").is_err());
        assert!(SipAor::from_parts(Scheme::Sip, "a\u{7}", "example.com").is_err());
        assert!(SipAor::from_parts(Scheme::Sips, "a", "exa mple.com").is_err());
    }

    #[test]
    fn normalises_case_params_and_headers() {
        let a = aor("sip:alice@Example.COM;transport=udp?x=y");
        assert_eq!(a.to_string(), "sip:alice@example.com");
        assert_eq!(a.scheme(), Scheme::Sip);
        assert_eq!(a.user(), "alice");
        assert_eq!(a.host(), "example.com");
        assert_eq!(a, aor("SIP:alice@example.com"));
        assert_eq!(a, aor("<sip:alice@EXAMPLE.com>"));
    }

    #[test]
    fn user_is_case_sensitive() {
        assert_ne!(aor("sip:Alice@example.com"), aor("sip:alice@example.com"));
    }

    #[test]
    fn port_and_password_ignored() {
        let a = aor("sip:alice@example.com");
        assert_eq!(aor("sip:alice@example.com:5060"), a);
        assert_eq!(aor("sip:alice:secret@example.com:5070;lr"), a);
        assert_eq!(aor("sip:bob@[2001:DB8::1]:5060").host(), "[2001:db8::1]");
        assert_eq!(aor("sip:bob@[::1]").to_string(), "sip:bob@[::1]");
    }

    #[test]
    fn sips_differs_from_sip() {
        assert_ne!(aor("sips:alice@example.com"), aor("sip:alice@example.com"));
        assert_eq!(
            aor("sips:alice@example.com").to_string(),
            "sips:alice@example.com"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(aor("sip:al%69ce@x"), aor("sip:alice@x"));
        assert_eq!(aor("sip:al%69ce@x").to_string(), "sip:alice@x");
        // Characters that must stay escaped are written in one canonical form.
        let spaced = aor("sip:john%20doe@x");
        assert_eq!(spaced.user(), "john doe");
        assert_eq!(spaced.to_string(), "sip:john%20doe@x");
        assert_eq!(aor("sip:%6a%6f%68%6e%20doe@x"), spaced);
        // user-unreserved characters, including ';' and '?', belong to the user.
        let phone = aor("sip:+1-212;isub=5@gw.example;user=phone");
        assert_eq!(phone.user(), "+1-212;isub=5");
        assert_eq!(phone.to_string(), "sip:+1-212;isub=5@gw.example");
        assert_eq!(aor("sip:j%C3%BCrgen@x").user(), "jürgen");
        assert_eq!(aor("sip:jürgen@x").to_string(), "sip:j%C3%BCrgen@x");
    }

    #[test]
    fn bad_uris() {
        for bad in [
            "sip:example.com",
            "sip:@example.com",
            "sip:alice@",
            "sip:alice@;transport=udp",
            "sip:alice@:5060",
            "sip:alice@host:port",
            "sip:alice@ho st",
            "tel:+12125551212",
            "mailto:alice@example.com",
            "alice@example.com",
            "sip:al%6@x",
            "sip:al%ff@x",
            "sip:al%0aice@x",
            "",
        ] {
            assert!(
                matches!(SipAor::parse(bad), Err(Error::Aor { .. })),
                "{bad:?} should be rejected"
            );
        }
    }
}
