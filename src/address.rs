//! SIP URI <-> JID address rules of the SER `jabber` module, with RFC 7247 §6 escaping.
//!
//! The SER module gave SIP users two ways to name an XMPP address:
//!
//! - the **jdomain** (`jabber.x.com=*`): `alpha*jabber.org@jabber.x.com` names `alpha@jabber.org`;
//!   with two delimiters the user part names a conference occupant,
//!   `nick*room*conference.jabber.org@jabber.x.com` is `room@conference.jabber.org/nick`, and an
//!   empty nick (`*room*server@…`) means "my own SIP user name";
//! - **aliases**, the domains of IM transports (`aim.x.com`, `msn.x.com=%`): the address keeps
//!   its domain, and where the alias has a delimiter the first jdomain delimiter in the user part
//!   becomes it, `username*hotmail.com@msn.x.com` is `username%hotmail.com@msn.x.com`.
//!
//! XMPP to SIP is the inverse. SIP user parts arrive percent-decoded (RFC 3986) and are
//! percent-encoded again when a [`SipUri`] is written; characters that a JID localpart may not hold are
//! XEP-0106 escaped (`o'malley` <-> `o\27malley`), as RFC 7247 §6.4 and §6.5 ask. The escape
//! code is written here because `jid` 0.12 has no escape function and its unescape panics on a
//! trailing backslash. A JID localpart that holds the jdomain delimiter cannot be told apart from
//! a conference address once mapped, so it does not map (SER mapped it wrongly).
//!
//! Everything here is pure: no store, no I/O. An address that does not map is an
//! [`AddressError`], never a panic.

use std::fmt;

use jid::{BareJid, FullJid};
use sipjab_sip::{Host, SipUri};

/// The domain SIP users address the Jabber network through, and the delimiter that stands for
/// `@` in their user parts (SER `jdomain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JDomain {
    /// Lower-case host name, e.g. `jabber.x.com`.
    pub domain: String,
    /// The SIP-side delimiter, e.g. `*`.
    pub delimiter: char,
}

/// An IM transport domain reached under its own name (SER `aliases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Lower-case host name, the same on the SIP and the XMPP side, e.g. `msn.x.com`.
    pub domain: String,
    /// The XMPP-side delimiter that replaces the jdomain delimiter, e.g. `%` for MSN's
    /// `user%hotmail.com@msn.x.com`; `None` keeps the user part as it is.
    pub delimiter: Option<char>,
}

/// Why a delimiter was refused in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelimiterError {
    /// The character would be read as part of names or of URI syntax.
    #[error(
        "delimiter {0:?} is reserved (letters, digits, whitespace and @ . - _ : ; = ? & / \\ % \" < > are not allowed)"
    )]
    Reserved(char),
    /// The character may not appear in an XMPP localpart (RFC 7622), so it cannot join the
    /// parts on the XMPP side.
    #[error("delimiter {0:?} is not allowed in a JID localpart (\" & ' / : < > @ and \\ are not)")]
    NotInLocalpart(char),
}

impl JDomain {
    /// Checks that `delimiter` can stand for `@` in a SIP user part: it must be a printable
    /// ASCII character that is neither part of ordinary names nor URI syntax. `%` is refused
    /// because user parts are percent-decoded before mapping.
    pub fn new(domain: &str, delimiter: char) -> Result<Self, DelimiterError> {
        const RESERVED: &str = "@.-_:;=?&/\\%\"<>";
        if !delimiter.is_ascii_graphic()
            || delimiter.is_ascii_alphanumeric()
            || RESERVED.contains(delimiter)
        {
            return Err(DelimiterError::Reserved(delimiter));
        }
        Ok(Self {
            domain: domain.to_ascii_lowercase(),
            delimiter,
        })
    }
}

impl Alias {
    /// Checks that `delimiter`, when given, can join a transport address inside a JID
    /// localpart.
    pub fn new(domain: &str, delimiter: Option<char>) -> Result<Self, DelimiterError> {
        if let Some(d) = delimiter {
            if !d.is_ascii_graphic() || d.is_ascii_alphanumeric() || ".-_".contains(d) {
                return Err(DelimiterError::Reserved(d));
            }
            if "\"&'/:<>@\\".contains(d) {
                return Err(DelimiterError::NotInLocalpart(d));
            }
        }
        Ok(Self {
            domain: domain.to_ascii_lowercase(),
            delimiter,
        })
    }
}

/// Why an address did not map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The SIP host is neither the jdomain nor an alias.
    #[error("{0} is not a gateway domain (neither the jdomain nor an alias)")]
    NotGatewayHost(String),
    /// A jdomain address without a delimiter names no XMPP server.
    #[error("user part {0:?} has no {1:?} delimiter; write user{1}server@<jdomain>")]
    NoDelimiter(String, char),
    /// More than two delimiters, which the SER rules leave undefined.
    #[error("user part {0:?} has more than two {1:?} delimiters")]
    TooManyDelimiters(String, char),
    /// One of the delimited parts is empty.
    #[error("user part {0:?} has an empty {1}")]
    EmptyPart(String, &'static str),
    /// The result is not a valid JID (RFC 7622 / PRECIS).
    #[error("{0:?} is not a valid JID: {1}")]
    InvalidJid(String, String),
    /// A JID without a localpart names a server, not a user.
    #[error("{0} has no localpart; only user and occupant JIDs map to SIP")]
    NoLocalpart(String),
    /// A JID part holds the jdomain delimiter, which would be read back as a separator.
    #[error("{0:?} contains the delimiter {1:?}, so its SIP form would be ambiguous")]
    HoldsDelimiter(String, char),
    /// A gateway domain is not a valid SIP host.
    #[error("{0:?} is not a valid SIP host: {1}")]
    InvalidHost(String, String),
    /// The JID is in the component's own domain: a gateway user, whose SIP URI only the
    /// account store knows.
    #[error("{0} is a gateway user in the component domain; its SIP URI is in the account store")]
    GatewayUser(String),
}

/// Where a SIP address points on the XMPP side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppTarget {
    /// A user or transport JID, for one-to-one messages and presence.
    Contact(BareJid),
    /// A MUC room and the nickname to use in it (XEP-0045).
    Conference {
        /// The room, `room@conference.server`.
        room: BareJid,
        /// The nickname; `None` when the SIP user left it empty (`*room*server@…`), meaning
        /// the sender's own SIP user name.
        nick: Option<String>,
    },
}

impl XmppTarget {
    /// The JID to address, with an empty nickname filled in from the sender's user name.
    pub fn to_jid(&self, sender_user: &str) -> Result<jid::Jid, AddressError> {
        match self {
            Self::Contact(jid) => Ok(jid.clone().into()),
            Self::Conference { room, nick } => {
                let nick = nick.as_deref().unwrap_or(sender_user);
                room.with_resource_str(nick)
                    .map(Into::into)
                    .map_err(|e| AddressError::InvalidJid(format!("{room}/{nick}"), e.to_string()))
            }
        }
    }
}

impl fmt::Display for XmppTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contact(jid) => write!(f, "{jid}"),
            Self::Conference {
                room,
                nick: Some(nick),
            } => write!(f, "{room}/{nick}"),
            Self::Conference { room, nick: None } => write!(f, "{room}/<sender's user name>"),
        }
    }
}

/// The mapping rules: jdomain, aliases and the component's own domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRules {
    /// The Jabber network's SIP domain and delimiter.
    pub jdomain: JDomain,
    /// IM transport domains.
    pub aliases: Vec<Alias>,
    /// The component domain, whose JIDs are gateway users.
    pub component_domain: String,
}

impl AddressRules {
    /// True when a SIP host (without port or parameters) is served by the gateway, so a
    /// Request-URI or To URI with it is a destination to map.
    pub fn is_gateway_host(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case(&self.jdomain.domain) || self.alias(host).is_some()
    }

    fn alias(&self, host: &str) -> Option<&Alias> {
        self.aliases
            .iter()
            .find(|a| a.domain.eq_ignore_ascii_case(host))
    }

    /// Maps a SIP address, given as its percent-decoded user part and its host, to the XMPP
    /// entity it names.
    pub fn sip_to_xmpp(&self, user: &str, host: &str) -> Result<XmppTarget, AddressError> {
        let delim = self.jdomain.delimiter;
        if host.eq_ignore_ascii_case(&self.jdomain.domain) {
            let mut split = user.split(delim);
            let parts = [split.next(), split.next(), split.next(), split.next()];
            return match parts {
                [_, None, ..] => Err(AddressError::NoDelimiter(user.into(), delim)),
                [Some(local), Some(server), None, _] => {
                    non_empty(user, local, "user")?;
                    non_empty(user, server, "server")?;
                    Ok(XmppTarget::Contact(bare_jid(Some(local), server)?))
                }
                [Some(nick), Some(room), Some(server), None] => {
                    non_empty(user, room, "room")?;
                    non_empty(user, server, "conference server")?;
                    let room = bare_jid(Some(room), server)?;
                    let nick = (!nick.is_empty()).then(|| nick.to_owned());
                    if let Some(nick) = &nick {
                        room.with_resource_str(nick).map_err(|e| {
                            AddressError::InvalidJid(format!("{room}/{nick}"), e.to_string())
                        })?;
                    }
                    Ok(XmppTarget::Conference { room, nick })
                }
                _ => Err(AddressError::TooManyDelimiters(user.into(), delim)),
            };
        }
        let alias = self
            .alias(host)
            .ok_or_else(|| AddressError::NotGatewayHost(host.into()))?;
        non_empty(user, user, "user")?;
        let local = match alias.delimiter {
            Some(d) => user.replacen(delim, &d.to_string(), 1),
            None => user.to_owned(),
        };
        Ok(XmppTarget::Contact(bare_jid(Some(&local), &alias.domain)?))
    }

    /// `<jab_id>@<component domain>`: the JID the gateway speaks as for a SIP user, with the
    /// `jab_id` XEP-0106 escaped.
    pub fn user_jid(&self, jab_id: &str) -> Result<BareJid, AddressError> {
        bare_jid(Some(jab_id), &self.component_domain)
    }

    /// Maps a contact's JID (its resource already dropped) to the SIP address it is seen
    /// under: `sip:user*server@<jdomain>`, or `sip:user@<alias>` for a transport JID.
    pub fn contact_to_sip(&self, jid: &BareJid) -> Result<SipUri, AddressError> {
        self.contact_parts_to_sip(jid.node().map(|n| n.as_str()), jid.domain().as_str())
    }

    /// [`AddressRules::contact_to_sip`] from a bare JID's parts, for a caller that read
    /// them without the JID parser (see `sipjab_component::PlainJid`).
    pub fn contact_parts_to_sip(
        &self,
        node: Option<&str>,
        domain: &str,
    ) -> Result<SipUri, AddressError> {
        let bare = || match node {
            Some(node) => format!("{node}@{domain}"),
            None => domain.to_owned(),
        };
        if domain.eq_ignore_ascii_case(&self.component_domain) {
            return Err(AddressError::GatewayUser(bare()));
        }
        let node = node.ok_or_else(|| AddressError::NoLocalpart(bare()))?;
        let local = xep0106_unescape(node);
        let delim = self.jdomain.delimiter;
        if let Some(alias) = self.alias(domain) {
            let user = match alias.delimiter {
                Some(d) if !local.contains(delim) => local.replacen(d, &delim.to_string(), 1),
                Some(_) => return Err(AddressError::HoldsDelimiter(local, delim)),
                None => local,
            };
            return sip_uri(&user, &alias.domain);
        }
        self.jdomain_address(&[&local, domain])
    }

    /// Maps a MUC occupant (`room@server/nick`) to `sip:nick*room*server@<jdomain>`, the
    /// address SIP clients show as the speaker and reply to for a private message.
    pub fn occupant_to_sip(&self, jid: &FullJid) -> Result<SipUri, AddressError> {
        let node = jid
            .node()
            .ok_or_else(|| AddressError::NoLocalpart(jid.to_string()))?;
        let room = xep0106_unescape(node.as_str());
        self.jdomain_address(&[jid.resource().as_str(), &room, jid.domain().as_str()])
    }

    /// Maps a MUC room (`room@server`) to `sip:*room*server@<jdomain>`: the conference address
    /// with an empty nick, which notices about the room come from and which a SIP user can
    /// answer to talk in the room.
    pub fn room_to_sip(&self, room: &BareJid) -> Result<SipUri, AddressError> {
        let node = room
            .node()
            .ok_or_else(|| AddressError::NoLocalpart(room.to_string()))?;
        let local = xep0106_unescape(node.as_str());
        self.jdomain_address(&["", &local, room.domain().as_str()])
    }

    fn jdomain_address(&self, parts: &[&str]) -> Result<SipUri, AddressError> {
        let delim = self.jdomain.delimiter;
        if let Some(part) = parts.iter().find(|p| p.contains(delim)) {
            return Err(AddressError::HoldsDelimiter((*part).to_owned(), delim));
        }
        sip_uri(&parts.join(&delim.to_string()), &self.jdomain.domain)
    }
}

/// `sip:user@host`; the user part is percent-encoded when the URI is written.
fn sip_uri(user: &str, host: &str) -> Result<SipUri, AddressError> {
    let host =
        Host::parse(host).map_err(|e| AddressError::InvalidHost(host.into(), e.to_string()))?;
    Ok(SipUri::new(Some(user), host, None))
}

fn non_empty(user: &str, part: &str, what: &'static str) -> Result<(), AddressError> {
    if part.is_empty() {
        Err(AddressError::EmptyPart(user.into(), what))
    } else {
        Ok(())
    }
}

/// Builds and validates a bare JID, XEP-0106 escaping the localpart.
fn bare_jid(local: Option<&str>, domain: &str) -> Result<BareJid, AddressError> {
    // Joined without `format!`, which cost a third of this on every MESSAGE.
    let text = match local {
        Some(local) => {
            let mut text = String::with_capacity(local.len() + 1 + domain.len());
            xep0106_escape_into(local, &mut text);
            text.push('@');
            text.push_str(domain);
            text
        }
        None => domain.to_owned(),
    };
    BareJid::new(&text).map_err(|e| AddressError::InvalidJid(text.clone(), e.to_string()))
}

/// The characters XEP-0106 escapes, with their escape codes.
const XEP0106: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

fn escape_code(code: &str) -> Option<char> {
    XEP0106
        .iter()
        .find(|(_, c)| c.eq_ignore_ascii_case(code))
        .map(|(ch, _)| *ch)
}

/// XEP-0106 §4.2: escapes the characters a localpart may not hold; a backslash is escaped only
/// where it would otherwise start an escape sequence.
pub fn xep0106_escape(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    xep0106_escape_into(local, &mut out);
    out
}

/// [`xep0106_escape`] appended to `out`.
fn xep0106_escape_into(local: &str, out: &mut String) {
    // Most localparts hold none of the ten characters: copied whole, not char by char.
    if !local
        .bytes()
        .any(|b| XEP0106.iter().any(|(c, _)| *c as u32 == u32::from(b)))
    {
        return out.push_str(local);
    }
    for (i, ch) in local.char_indices() {
        let escapes_next = ch == '\\'
            && local
                .get(i + 1..i + 3)
                .is_some_and(|code| escape_code(code).is_some());
        match XEP0106.iter().find(|(c, _)| *c == ch) {
            Some((_, code)) if ch != '\\' || escapes_next => {
                out.push('\\');
                out.push_str(code);
            }
            _ => out.push(ch),
        }
    }
}

/// XEP-0106 §4.3: turns `\hh` sequences back into their characters; anything else, including
/// a trailing backslash, is kept as it is.
pub fn xep0106_unescape(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    let mut rest = local;
    // A byte loop: localparts are short, and the `char` pattern search costs more to set up.
    while let Some(pos) = rest.bytes().position(|b| b == b'\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.get(..2).and_then(escape_code) {
            Some(ch) => {
                out.push(ch);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AddressRules {
        AddressRules {
            jdomain: JDomain::new("jabber.x.com", '*').unwrap(),
            aliases: vec![
                Alias::new("aim.x.com", None).unwrap(),
                Alias::new("icq.x.com", None).unwrap(),
                Alias::new("msn.x.com", Some('%')).unwrap(),
            ],
            component_domain: "sip.x.com".into(),
        }
    }

    fn map(addr: &str) -> Result<String, AddressError> {
        let (user, host) = addr.split_once('@').unwrap();
        rules().sip_to_xmpp(user, host).map(|t| t.to_string())
    }

    #[test]
    fn sip_to_xmpp_examples() {
        let cases = [
            ("alpha*jabber.org@jabber.x.com", "alpha@jabber.org"),
            ("alpha*jabber.org@JABBER.X.com", "alpha@jabber.org"),
            (
                "nick*room*conference.jabber.org@jabber.x.com",
                "room@conference.jabber.org/nick",
            ),
            ("room*server@jabber.x.com", "room@server"),
            (
                "*room*conference.jabber.org@jabber.x.com",
                "room@conference.jabber.org/<sender's user name>",
            ),
            ("alpha@aim.x.com", "alpha@aim.x.com"),
            ("12345@icq.x.com", "12345@icq.x.com"),
            (
                "username*hotmail.com@msn.x.com",
                "username%hotmail.com@msn.x.com",
            ),
            ("o'malley*jabber.org@jabber.x.com", "o\\27malley@jabber.org"),
            ("f\u{fc}*jabber.org@jabber.x.com", "f\u{fc}@jabber.org"),
            ("a b*jabber.org@jabber.x.com", "a\\20b@jabber.org"),
        ];
        for (sip, jid) in cases {
            assert_eq!(map(sip).as_deref(), Ok(jid), "{sip}");
        }
    }

    #[test]
    fn empty_nick_takes_the_sender_name() {
        let target = rules()
            .sip_to_xmpp("*room*conf.jabber.org", "jabber.x.com")
            .unwrap();
        assert_eq!(
            target.to_jid("alice").unwrap().to_string(),
            "room@conf.jabber.org/alice"
        );
    }

    #[test]
    fn malformed_sip_addresses() {
        let cases = [
            "alpha@jabber.x.com",
            "a*b*c*d@jabber.x.com",
            "*jabber.org@jabber.x.com",
            "alpha*@jabber.x.com",
            "nick**server@jabber.x.com",
            "nick*room*@jabber.x.com",
            "alpha*jabber.org@elsewhere.com",
            "alpha*jabber.org@sip.x.com",
            "@aim.x.com",
            "alpha*bad..domain@jabber.x.com",
            "alpha*in valid@jabber.x.com",
            "ctl\u{7}*jabber.org@jabber.x.com",
            "alpha*jabber.org/x@jabber.x.com",
            "nick*room*server/x@jabber.x.com",
        ];
        for sip in cases {
            assert!(map(sip).is_err(), "{sip} mapped to {:?}", map(sip));
        }
    }

    #[test]
    fn xmpp_to_sip_examples() {
        let r = rules();
        let contact = |j: &str| {
            r.contact_to_sip(&BareJid::new(j).unwrap())
                .map(|a| a.to_string())
        };
        assert_eq!(
            contact("alpha@jabber.org").as_deref(),
            Ok("sip:alpha*jabber.org@jabber.x.com")
        );
        assert_eq!(
            contact("alpha@aim.x.com").as_deref(),
            Ok("sip:alpha@aim.x.com")
        );
        assert_eq!(
            contact("username%hotmail.com@msn.x.com").as_deref(),
            Ok("sip:username*hotmail.com@msn.x.com")
        );
        assert_eq!(
            contact("o\\27malley@jabber.org").as_deref(),
            Ok("sip:o'malley*jabber.org@jabber.x.com")
        );
        assert_eq!(
            contact("f\u{fc}@jabber.org").as_deref(),
            Ok("sip:f%C3%BC*jabber.org@jabber.x.com")
        );
        assert_eq!(
            contact("a\\20b@jabber.org").as_deref(),
            Ok("sip:a%20b*jabber.org@jabber.x.com")
        );
        let occupant = r
            .occupant_to_sip(&FullJid::new("room@conference.jabber.org/nick").unwrap())
            .unwrap();
        assert_eq!(
            occupant.to_string(),
            "sip:nick*room*conference.jabber.org@jabber.x.com"
        );
        let room = r
            .room_to_sip(&BareJid::new("room@conference.jabber.org").unwrap())
            .unwrap();
        assert_eq!(
            room.to_string(),
            "sip:*room*conference.jabber.org@jabber.x.com"
        );
        let back = r
            .sip_to_xmpp(room.user.as_deref().unwrap(), "jabber.x.com")
            .unwrap();
        assert!(
            matches!(&back, XmppTarget::Conference { room, nick: None } if room.to_string() == "room@conference.jabber.org"),
            "{back:?}"
        );
    }

    #[test]
    fn unmappable_jids() {
        let r = rules();
        for j in ["a*b@jabber.org", "jabber.org", "bob@sip.x.com"] {
            assert!(r.contact_to_sip(&BareJid::new(j).unwrap()).is_err(), "{j}");
        }
        assert!(
            r.occupant_to_sip(&FullJid::new("room@conf.org/a*b").unwrap())
                .is_err()
        );
    }

    #[test]
    fn round_trips() {
        let r = rules();
        for sip in [
            "alpha*jabber.org@jabber.x.com",
            "o'malley*jabber.org@jabber.x.com",
            "a b&c*jabber.org@jabber.x.com",
            "f\u{fc}*jabber.org@jabber.x.com",
            "alpha@aim.x.com",
            "username*hotmail.com@msn.x.com",
        ] {
            let (user, host) = sip.split_once('@').unwrap();
            let XmppTarget::Contact(jid) = r.sip_to_xmpp(user, host).unwrap() else {
                panic!("{sip} is not a contact")
            };
            let back = r.contact_to_sip(&jid).unwrap();
            assert_eq!(back.user.as_deref(), Some(user));
            assert_eq!(back.host.to_string(), host);
        }
        let sip = "nick*room*conf.jabber.org";
        let target = r.sip_to_xmpp(sip, "jabber.x.com").unwrap();
        let jid = FullJid::try_from(target.to_jid("me").unwrap()).unwrap();
        assert_eq!(r.occupant_to_sip(&jid).unwrap().user.as_deref(), Some(sip));
    }

    #[test]
    fn xep0106_escaping() {
        assert_eq!(xep0106_escape("d'artagnan"), "d\\27artagnan");
        assert_eq!(xep0106_escape("c:\\net"), "c\\3a\\net");
        assert_eq!(xep0106_escape("c:\\5cnet"), "c\\3a\\5c5cnet");
        assert_eq!(xep0106_unescape("c\\3a\\5c5cnet"), "c:\\5cnet");
        assert_eq!(xep0106_unescape("trailing\\"), "trailing\\");
        assert_eq!(xep0106_unescape("\\zz\\2F"), "\\zz/");
        for s in ["a b", "\\", "x\\20", "@:/<>&'\""] {
            assert_eq!(xep0106_unescape(&xep0106_escape(s)), s);
        }
    }

    #[test]
    fn delimiters() {
        assert!(JDomain::new("j", '*').is_ok());
        for bad in ['@', '%', '.', 'a', '5', ' ', ':', ';'] {
            assert!(JDomain::new("j", bad).is_err(), "{bad}");
        }
        assert!(Alias::new("m", Some('%')).is_ok());
        for bad in ['@', '/', '\'', 'x', '.'] {
            assert!(Alias::new("m", Some(bad)).is_err(), "{bad}");
        }
    }
}
