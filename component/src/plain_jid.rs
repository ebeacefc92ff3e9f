//! JIDs in the plain form that every stringprep profile leaves as it is, recognised by
//! scanning their bytes. The gateway's own JIDs and most it receives are of this form, and
//! the JID parser (nodeprep, IDNA, resourceprep) cost more per stanza than writing it; any
//! other string is left to the parser.

/// A JID of the plain form: an optional node of lowercase ASCII letters, digits, `.`, `_`
/// and `-`; a domain of labels of lowercase letters, digits and inner hyphens; an optional
/// resource of ASCII letters, digits, `.`, `_` and `-`. The JID parser would give the same
/// parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainJid<'a> {
    /// The localpart.
    pub node: Option<&'a str>,
    /// The domainpart.
    pub domain: &'a str,
    /// The resourcepart.
    pub resource: Option<&'a str>,
}

impl<'a> PlainJid<'a> {
    /// The parts of `jid` when it is plain; `None` for any other string, which the JID
    /// parser must judge.
    pub fn parse(jid: &'a str) -> Option<Self> {
        let bytes = jid.as_bytes();
        let slash = memchr::memchr(b'/', bytes).unwrap_or(bytes.len());
        let (node, domain_start) = match memchr::memchr(b'@', &bytes[..slash]) {
            Some(at)
                if (1..=1023).contains(&at)
                    && bytes[..at].iter().all(|&b| NODE[usize::from(b)]) =>
            {
                (Some(&jid[..at]), at + 1)
            }
            Some(_) => return None,
            None => (None, 0),
        };
        let domain = &bytes[domain_start..slash];
        // Labels of letters, digits and inner hyphens. One with `--` in third and fourth
        // place (`xn--`, IDNA) is the parser's to judge.
        let plain_label = |label: &[u8]| {
            matches!(label.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && matches!(label.last(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && label.len() <= 63
                && label.get(2..4) != Some(b"--")
                && label.iter().all(|&b| LABEL[usize::from(b)])
        };
        if domain.len() > 1023 || !domain.split(|&b| b == b'.').all(plain_label) {
            return None;
        }
        let resource = match bytes.get(slash + 1..) {
            None => None,
            Some(r)
                if (1..=1023).contains(&r.len()) && r.iter().all(|&b| RESOURCE[usize::from(b)]) =>
            {
                Some(&jid[slash + 1..])
            }
            Some(_) => return None,
        };
        Some(Self {
            node,
            domain: &jid[domain_start..slash],
            resource,
        })
    }
}

/// Bytes of a plain node: lowercase ASCII letters, digits, `.`, `_` and `-`. Tables
/// rather than matches: every stanza's `from` and `to` are scanned byte by byte.
const NODE: [bool; 256] = byte_set(b"abcdefghijklmnopqrstuvwxyz0123456789._-");
/// Bytes of a plain resource: those of a node and uppercase letters.
const RESOURCE: [bool; 256] =
    byte_set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");
/// Bytes of a plain domain label: lowercase letters, digits and `-`.
const LABEL: [bool; 256] = byte_set(b"abcdefghijklmnopqrstuvwxyz0123456789-");

const fn byte_set(members: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < members.len() {
        set[members[i] as usize] = true;
        i += 1;
    }
    set
}

#[cfg(test)]
mod tests {
    use jid::Jid;

    use super::*;

    #[test]
    fn plain_jids_agree_with_the_jid_parser() {
        for jid in [
            "sip.xmpp.test",
            "alice@sip.xmpp.test",
            "al.ice_1-2@sip.xmpp.test/Phone.1",
            "x@a-b.c/r",
            "x@a--b.c",
            "x@1.2",
            "-x@a.b/-",
        ] {
            let parsed = Jid::new(jid).unwrap();
            let plain = PlainJid::parse(jid).unwrap();
            assert_eq!(plain.domain, parsed.domain().as_str(), "{jid}");
            assert_eq!(plain.node, parsed.node().map(|n| n.as_str()), "{jid}");
            assert_eq!(
                plain.resource,
                parsed.resource().map(|r| r.as_str()),
                "{jid}"
            );
        }
        // Left to the parser: escapes, case nodeprep folds, empty parts, bad dots, others.
        for jid in [
            "a\\20b@sip.xmpp.test",
            "Alice@sip.xmpp.test",
            "alice@SIP.xmpp.test",
            "@sip.xmpp.test",
            "alice@",
            "alice@sip..test",
            "alice@.sip.test",
            "alice@sip.test.",
            "alice@sip.test/",
            "alice@sip.test/a b",
            "x@-a.b",
            "x@a-.b",
            "x@a.b-",
            "x@xn--zz.test",
            "x@ab--c.test",
            "r\u{e9}mi@sip.test",
            "a@b@c",
            "",
        ] {
            assert_eq!(PlainJid::parse(jid), None, "{jid:?}");
        }
    }
}
