//! Stanza rules of the link: what the component may send (XEP-0114 §3: stanzas carry
//! `from` in the component's domain and `to`), what it answers itself (XEP-0030
//! disco#info and XEP-0199 ping addressed to the bare domain), and how the server's
//! `<handshake/>` and `<stream:error/>` (RFC 6120 §4.9) are read.

use std::borrow::Cow;
use std::collections::BTreeSet;

use jid::Jid;
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::DefinedCondition;

use crate::Error;
use crate::plain_jid::PlainJid;

/// Checks a stanza the gateway wants to send and serialises it.
pub(crate) fn encode_outgoing(stanza: &Element, domain: &str) -> Result<Vec<u8>, Error> {
    if !matches!(stanza.name(), "message" | "presence" | "iq") || !stanza.has_ns(ns::COMPONENT) {
        return Err(Error::NotAStanza {
            name: stanza.name().to_owned(),
            ns: stanza.ns(),
        });
    }
    let from = jid_domain(stanza, "from")?.ok_or(Error::MissingFrom)?;
    if !from.eq_ignore_ascii_case(domain) {
        return Err(Error::ForeignFrom {
            domain: domain.to_owned(),
        });
    }
    jid_domain(stanza, "to")?.ok_or(Error::MissingTo)?;
    let mut out = Vec::with_capacity(256);
    if write_plain(stanza, None, &mut out).is_none() {
        // minidom's writer panics on a character XML cannot carry: refused here first.
        if !xml_chars_only(stanza) {
            return Err(Error::Serialize(
                "a character XML cannot carry (a control character, U+FFFE or U+FFFF)".into(),
            ));
        }
        out.clear();
        stanza
            .write_to(&mut out)
            .map_err(|e| Error::Serialize(e.to_string()))?;
    }
    Ok(out)
}

/// Whether every text and attribute value of the tree holds only XML characters.
fn xml_chars_only(el: &Element) -> bool {
    el.attrs().into_iter().all(|(_, value)| is_xml_text(value))
        && el.nodes().all(|node| match node {
            minidom::Node::Element(child) => xml_chars_only(child),
            minidom::Node::Text(text) => is_xml_text(text),
        })
}

/// The `xml:` prefix's namespace, the one attribute namespace [`write_plain`] writes.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Writes an element tree of the plain shape the gateway builds: names of ASCII letters,
/// digits, `-`, `_` and `.`, attributes without a namespace (or in `xml:`), text of XML
/// characters; each namespace declared as the default where it changes. `None` for any
/// other tree (what was written is then to be thrown away): minidom writes those.
///
/// By hand because minidom's writer goes through rxml's namespace-tracking encoder, which
/// cost about 13,000 instructions per chat stanza, a tenth of a message's whole way
/// through the gateway; this costs a small part of that.
fn write_plain(el: &Element, parent_ns: Option<&str>, out: &mut Vec<u8>) -> Option<()> {
    let name = el.name();
    if !plain_name(name) {
        return None;
    }
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    let ns = el.ns();
    if parent_ns != Some(ns.as_str()) {
        out.extend_from_slice(b" xmlns='");
        escape_into(&ns, true, out)?;
        out.push(b'\'');
    }
    for ((attr_ns, attr), value) in el.attrs() {
        out.push(b' ');
        if !attr_ns.is_none() {
            if attr_ns.as_str() != XML_NS {
                return None;
            }
            out.extend_from_slice(b"xml:");
        }
        out.extend_from_slice(attr.as_bytes());
        out.extend_from_slice(b"='");
        escape_into(value, true, out)?;
        out.push(b'\'');
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return Some(());
    }
    out.push(b'>');
    for node in nodes {
        match node {
            minidom::Node::Element(child) => write_plain(child, Some(&ns), out)?,
            minidom::Node::Text(text) => escape_into(text, false, out)?,
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    Some(())
}

/// A name of the common ASCII form (letters, digits, `-`, `_` and `.`, not starting with
/// a digit, `-` or `.`): a valid NCName, known without rxml's character tables.
pub(crate) fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Bytes [`escape_into`] copies as they are, looked up rather than matched: it runs over
/// every byte of every stanza the gateway writes.
const PLAIN_IN_TEXT: [bool; 256] = plain_bytes(false);
/// The same in an attribute value.
const PLAIN_IN_ATTRIBUTE: [bool; 256] = plain_bytes(true);

const fn plain_bytes(attribute: bool) -> [bool; 256] {
    let mut plain = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        plain[b] = false;
        b += 1;
    }
    plain[b'<' as usize] = false;
    plain[b'>' as usize] = false;
    plain[b'&' as usize] = false;
    // The last byte of U+FFFE and U+FFFF, checked in context.
    plain[0xbe] = false;
    plain[0xbf] = false;
    if attribute {
        plain[b'\'' as usize] = false;
        plain[b'"' as usize] = false;
    } else {
        plain[b'\t' as usize] = true;
        plain[b'\n' as usize] = true;
    }
    plain
}

/// Whether `text` holds only XML characters (XML 1.0 §2.2): no control character but tab,
/// line feed and carriage return, and neither U+FFFE nor U+FFFF. [`escape_into`] refuses
/// the same as it writes; the stream reader checks what it reads with this.
pub(crate) fn is_xml_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Most text has neither a control byte nor 0xEF, the lead byte of U+FFFE and U+FFFF.
    if bytes.iter().all(|&b| b >= 0x20 && b != 0xef) {
        return true;
    }
    !bytes
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        && !text.contains(['\u{fffe}', '\u{ffff}'])
}

/// Escapes text or an attribute value (quoted with `'`) as rxml does; `None` for a
/// character XML cannot carry.
pub(crate) fn escape_into(text: &str, attribute: bool, out: &mut Vec<u8>) -> Option<()> {
    let bytes = text.as_bytes();
    let plain = if attribute {
        &PLAIN_IN_ATTRIBUTE
    } else {
        &PLAIN_IN_TEXT
    };
    let mut done = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if plain[usize::from(b)] {
            continue;
        }
        let with: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#xd;",
            b'\'' if attribute => b"&#39;",
            b'"' if attribute => b"&#34;",
            b'\n' if attribute => b"&#xa;",
            b'\t' if attribute => b"&#x9;",
            0..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f => return None,
            // U+FFFE and U+FFFF are not XML characters either.
            0xbe | 0xbf if i >= 2 && bytes.get(i - 2..i) == Some(&[0xef, 0xbf][..]) => {
                return None;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[done..i]);
        out.extend_from_slice(with);
        done = i + 1;
    }
    out.extend_from_slice(&bytes[done..]);
    Some(())
}

/// The domain of the JID in attribute `attr`, which must be a valid JID.
fn jid_domain<'a>(stanza: &'a Element, attr: &'static str) -> Result<Option<Cow<'a, str>>, Error> {
    let Some(value) = stanza.attr(attr) else {
        return Ok(None);
    };
    if let Some(plain) = PlainJid::parse(value) {
        return Ok(Some(Cow::Borrowed(plain.domain)));
    }
    let jid = Jid::new(value).map_err(|e| Error::InvalidJid {
        attr,
        reason: e.to_string(),
    })?;
    Ok(Some(Cow::Owned(jid.domain().as_str().to_owned())))
}

/// What the link does with an element that arrived after the handshake.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Hand it to the gateway core.
    Deliver(Element),
    /// Answer it ourselves with this stanza.
    Reply(Element),
    /// An answer to one of our keepalive pings, or something not worth passing on.
    Drop(&'static str),
    /// The server ends the stream with an error.
    StreamError(Error),
}

/// Prefix of keepalive ping ids, so their answers are recognised and swallowed.
pub(crate) const PING_ID_PREFIX: &str = "sipjab-keepalive-";

/// The disco#info and ping answers need these.
#[derive(Debug)]
pub(crate) struct LocalInfo {
    pub(crate) domain: String,
    pub(crate) name: String,
    pub(crate) features: BTreeSet<String>,
}

impl LocalInfo {
    /// Features from the caller plus the two this crate implements.
    pub(crate) fn new(domain: &str, name: &str, features: &[String]) -> Self {
        let mut set: BTreeSet<String> = features.iter().cloned().collect();
        set.insert(ns::DISCO_INFO.to_owned());
        set.insert(ns::PING.to_owned());
        Self {
            domain: domain.to_owned(),
            name: name.to_owned(),
            features: set,
        }
    }

    /// Sorts an incoming element.
    pub(crate) fn classify(&self, el: Element) -> Incoming {
        if el.is("error", ns::STREAM) {
            return Incoming::StreamError(parse_stream_error(&el));
        }
        if !el.has_ns(ns::COMPONENT) || !matches!(el.name(), "message" | "presence" | "iq") {
            return Incoming::Drop("not a stanza");
        }
        if el.name() != "iq" {
            return Incoming::Deliver(el);
        }
        let to_domain = el
            .attr("to")
            .and_then(|to| Jid::new(to).ok())
            .is_some_and(|to| {
                to.node().is_none() && to.resource().is_none() && self.is_domain(&to)
            });
        match el.attr("type") {
            Some("result" | "error")
                if to_domain
                    && el
                        .attr("id")
                        .is_some_and(|id| id.starts_with(PING_ID_PREFIX)) =>
            {
                Incoming::Drop("keepalive answer")
            }
            Some("get") if to_domain => {
                let disco = el
                    .get_child("query", ns::DISCO_INFO)
                    .is_some_and(|q| q.attr("node").is_none());
                if disco || el.has_child("ping", ns::PING) {
                    match self.answer(&el, disco) {
                        Some(reply) => Incoming::Reply(reply),
                        None => Incoming::Drop("request without from or id"),
                    }
                } else {
                    Incoming::Deliver(el)
                }
            }
            _ => Incoming::Deliver(el),
        }
    }

    fn is_domain(&self, jid: &Jid) -> bool {
        jid.domain().as_str().eq_ignore_ascii_case(&self.domain)
    }

    fn answer(&self, request: &Element, disco: bool) -> Option<Element> {
        let from = Jid::new(request.attr("from")?).ok()?;
        let id = request.attr("id")?;
        let me = Jid::new(&self.domain).ok()?;
        let iq = if disco {
            let result = DiscoInfoResult {
                node: None,
                identities: vec![Identity {
                    category: "gateway".into(),
                    type_: "simple".into(),
                    lang: None,
                    name: Some(self.name.clone()),
                }],
                features: self.features.clone(),
                extensions: Vec::new(),
            };
            Iq::from_result(id, Some(result))
        } else {
            Iq::empty_result(from.clone(), id)
        };
        Some(iq.with_from(me).with_to(from).into())
    }

    /// A keepalive ping to the server.
    pub(crate) fn keepalive_ping(&self, target: &str, seq: u64) -> Vec<u8> {
        format!(
            "<iq type='get' id='{PING_ID_PREFIX}{seq}' from='{}' to='{}'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            escape(&self.domain),
            escape(target)
        )
        .into_bytes()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// True for the server's handshake success: `<handshake/>` or `<handshake></handshake>`
/// (jabberd2 sends the latter).
pub(crate) fn is_handshake_ok(el: &Element) -> bool {
    el.is("handshake", ns::COMPONENT)
        && el.children().next().is_none()
        && el.text().trim().is_empty()
}

/// Reads `<stream:error>`, keeping unknown conditions as `undefined-condition`.
pub(crate) fn parse_stream_error(el: &Element) -> Error {
    let mut condition = DefinedCondition::UndefinedCondition;
    let mut text = None;
    for child in el.children() {
        if !child.has_ns(ns::XMPP_STREAMS) {
            continue;
        }
        if child.name() == "text" {
            text = Some(child.text());
        } else if let Ok(c) = DefinedCondition::try_from(child.clone()) {
            condition = c;
        }
    }
    Error::Stream { condition, text }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn info() -> LocalInfo {
        LocalInfo::new(
            "sip.xmpp.test",
            "SIP gateway",
            &["urn:xmpp:receipts".to_owned()],
        )
    }

    #[test]
    fn plain_trees_are_written_by_hand_and_read_back_the_same() {
        let d = "sip.xmpp.test";
        for xml in [
            "<message xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='b@x.test' type='chat' id='1'><body>a &lt;b&gt; &amp; 'c' \"d\"\r\n\te</body><subject>s</subject><request xmlns='urn:xmpp:receipts'/></message>",
            "<message xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='b@x.test' xml:lang='en'><x xmlns='jabber:x:oob'><url>http://x.test/?a=1&amp;b='2'</url></x></message>",
            "<presence xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='b@x.test' type='unavailable'/>",
        ] {
            let stanza = el(xml);
            let mut mine = Vec::new();
            assert!(write_plain(&stanza, None, &mut mine).is_some(), "{xml}");
            let back: Element = std::str::from_utf8(&mine).unwrap().parse().unwrap();
            assert_eq!(back, stanza, "{xml}");
            assert_eq!(encode_outgoing(&stanza, d).unwrap(), mine);
        }
        // A character XML cannot carry: the hand writer gives up, and the stanza is refused
        // before minidom's writer (which panics on one) sees it.
        let mut bad =
            el("<message xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='b@x.test'/>");
        bad.append_text_node("bell \u{7}");
        assert!(write_plain(&bad, None, &mut Vec::new()).is_none());
        assert!(matches!(encode_outgoing(&bad, d), Err(Error::Serialize(_))));
        let mut out = Vec::new();
        assert!(escape_into("bell \u{7}", false, &mut out).is_none());
        assert!(escape_into("\u{fffe}", false, &mut out).is_none());
        assert!(escape_into("\u{fffd}", false, &mut out).is_some());
        // The check and the writer refuse the same characters.
        for text in [
            "plain",
            "tab\t lf\n cr\r",
            "bell \u{7}",
            "nul \0",
            "esc \u{1b}",
            "\u{fffe}",
            "\u{ffff}",
            "\u{fffd} \u{efbf}",
            "caf\u{e9}",
        ] {
            let written = escape_into(text, false, &mut out).is_some();
            assert_eq!(is_xml_text(text), written, "{text:?}");
        }
    }

    #[test]
    fn outgoing_needs_from_in_domain_and_to() {
        let d = "sip.xmpp.test";
        let ok = el(
            "<message xmlns='jabber:component:accept' from='alice@sip.xmpp.test' to='bob@xmpp.test'><body>hi</body></message>",
        );
        let bytes = encode_outgoing(&ok, d).unwrap();
        let back: Element = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
        assert_eq!(back, ok);
        let no_from = el("<message xmlns='jabber:component:accept' to='bob@xmpp.test'/>");
        assert!(matches!(
            encode_outgoing(&no_from, d),
            Err(Error::MissingFrom)
        ));
        let no_to = el("<presence xmlns='jabber:component:accept' from='sip.xmpp.test'/>");
        assert!(matches!(encode_outgoing(&no_to, d), Err(Error::MissingTo)));
        let foreign = el(
            "<iq xmlns='jabber:component:accept' type='get' id='1' from='alice@xmpp.test' to='bob@xmpp.test'/>",
        );
        assert!(matches!(
            encode_outgoing(&foreign, d),
            Err(Error::ForeignFrom { .. })
        ));
        let sub = el(
            "<message xmlns='jabber:component:accept' from='a@x.sip.xmpp.test' to='b@xmpp.test'/>",
        );
        assert!(matches!(
            encode_outgoing(&sub, d),
            Err(Error::ForeignFrom { .. })
        ));
        let bad = el("<message xmlns='jabber:component:accept' from='a@sip.xmpp.test' to='@@'/>");
        assert!(matches!(
            encode_outgoing(&bad, d),
            Err(Error::InvalidJid { attr: "to", .. })
        ));
        let client = el("<message xmlns='jabber:client' from='a@sip.xmpp.test' to='b@xmpp.test'/>");
        assert!(matches!(
            encode_outgoing(&client, d),
            Err(Error::NotAStanza { .. })
        ));
        let upper = el(
            "<message xmlns='jabber:component:accept' from='a@SIP.xmpp.test' to='b@xmpp.test'/>",
        );
        assert!(encode_outgoing(&upper, d).is_ok());
    }

    #[test]
    fn typed_stanzas_use_component_namespace() {
        let mut msg = xmpp_parsers::message::Message::new(Some(Jid::new("b@xmpp.test").unwrap()));
        msg.from = Some(Jid::new("a@sip.xmpp.test").unwrap());
        assert!(encode_outgoing(&msg.into(), "sip.xmpp.test").is_ok());
    }

    #[test]
    fn answers_disco_info_for_domain() {
        let golden = include_str!("../../fixtures/xmpp/component-disco-info-result.xml").trim();
        let req = el(include_str!("../../fixtures/xmpp/component-disco-info-get.xml").trim());
        let Incoming::Reply(reply) = info().classify(req) else {
            panic!()
        };
        assert_eq!(reply, el(golden));
    }

    #[test]
    fn answers_ping_for_domain() {
        let req = el(
            "<iq xmlns='jabber:component:accept' type='get' id='p1' from='xmpp.test' to='sip.xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        let Incoming::Reply(reply) = info().classify(req) else {
            panic!()
        };
        assert_eq!(
            reply,
            el(
                "<iq xmlns='jabber:component:accept' type='result' id='p1' from='sip.xmpp.test' to='xmpp.test'/>"
            )
        );
    }

    #[test]
    fn user_addressed_iqs_go_to_the_core() {
        let req = el(
            "<iq xmlns='jabber:component:accept' type='get' id='p1' from='a@xmpp.test/r' to='bob@sip.xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert!(matches!(info().classify(req), Incoming::Deliver(_)));
        let node = el(
            "<iq xmlns='jabber:component:accept' type='get' id='d' from='a@xmpp.test/r' to='sip.xmpp.test'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
        );
        assert!(matches!(info().classify(node), Incoming::Deliver(_)));
        let msg = el(
            "<message xmlns='jabber:component:accept' from='a@xmpp.test/r' to='bob@sip.xmpp.test'/>",
        );
        assert!(matches!(info().classify(msg), Incoming::Deliver(_)));
    }

    #[test]
    fn keepalive_answers_are_swallowed() {
        let ans = el(
            "<iq xmlns='jabber:component:accept' type='result' id='sipjab-keepalive-3' from='xmpp.test' to='sip.xmpp.test'/>",
        );
        assert!(matches!(info().classify(ans), Incoming::Drop(_)));
        let ping: Element = String::from_utf8(info().keepalive_ping("xmpp.test", 3))
            .unwrap()
            .replace("<iq ", "<iq xmlns='jabber:component:accept' ")
            .parse()
            .unwrap();
        assert_eq!(ping.attr("id"), Some("sipjab-keepalive-3"));
        assert!(ping.has_child("ping", ns::PING));
    }

    #[test]
    fn handshake_forms() {
        assert!(is_handshake_ok(&el(
            "<handshake xmlns='jabber:component:accept'/>"
        )));
        assert!(is_handshake_ok(&el(
            "<handshake xmlns='jabber:component:accept'></handshake>"
        )));
        assert!(!is_handshake_ok(&el(
            "<handshake xmlns='jabber:component:accept'>abc</handshake>"
        )));
        assert!(!is_handshake_ok(&el("<handshake xmlns='jabber:client'/>")));
    }

    #[test]
    fn stream_errors() {
        let e = parse_stream_error(&el(
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
             <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Invalid secret</text></stream:error>",
        ));
        assert_eq!(e.stream_condition(), Some(&DefinedCondition::NotAuthorized));
        assert!(e.needs_admin());
        assert!(e.to_string().contains("Invalid secret"), "{e}");
        let e = parse_stream_error(&el(
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><x-custom xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        ));
        assert_eq!(
            e.stream_condition(),
            Some(&DefinedCondition::UndefinedCondition)
        );
    }
}
