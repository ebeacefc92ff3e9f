//! The chat message a SIP MESSAGE becomes, written straight to bytes.
//!
//! Every SIP MESSAGE the gateway relays becomes a `<message/>` of one shape: `from`, `to`,
//! `id` and `type`, a body, perhaps a subject, perhaps the MUC private-message mark. As a
//! minidom tree it cost about 8,000 instructions a message to build, check, write and drop
//! (an ordered map of attributes, a string per name and namespace, rxml's name checks);
//! written from its parts it costs the escaping of its texts. [`ChatMessage::to_element`]
//! gives the same stanza as a tree, where one is wanted.
//!
//! The other way, [`IncomingChat`] is the chat message most servers pass on, read by the
//! stream reader without a tree for the same reason: the tree cost about 10,000
//! instructions of an XMPP → SIP message.

use jid::Jid;
use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use xmpp_parsers::ns;

use crate::Error;
use crate::envelope::Envelope;
use crate::stanza::escape_into;

/// How a chat message is typed (RFC 6121 §5.2.2, XEP-0045 §7.4 and §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// One-to-one chat.
    Chat,
    /// To a MUC room: `type='groupchat'`.
    Groupchat,
    /// To one occupant of a room: chat marked with
    /// `<x xmlns='http://jabber.org/protocol/muc#user'/>`.
    Private,
}

/// A chat message from a gateway user, ready for [`StanzaSender::send_chat`].
///
/// [`StanzaSender::send_chat`]: crate::StanzaSender::send_chat
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The gateway user's JID, in the component's domain.
    pub from: Jid,
    /// The XMPP peer, or the room or occupant.
    pub to: Jid,
    /// The stanza id, which an error reply carries back.
    pub id: String,
    /// Chat, groupchat or private.
    pub kind: ChatKind,
    /// The text.
    pub body: String,
    /// `<subject/>`, from SIP's Subject.
    pub subject: Option<String>,
}

impl ChatMessage {
    /// The stanza as a tree: the same stanza the link writes for it.
    pub fn to_element(&self) -> Element {
        let child = |name: &str, text: &str| Element::builder(name, ns::DEFAULT_NS).append(text);
        let mut msg = Element::builder("message", ns::DEFAULT_NS)
            .attr(attr("from"), self.from.as_str())
            .attr(attr("to"), self.to.as_str())
            .attr(attr("id"), self.id.as_str())
            .attr(attr("type"), self.type_value())
            .append(child("body", &self.body));
        if let Some(subject) = &self.subject {
            msg = msg.append(child("subject", subject));
        }
        if self.kind == ChatKind::Private {
            msg = msg.append(Element::builder("x", ns::MUC_USER));
        }
        msg.build()
    }

    /// The stanza's bytes, as the link's writer writes the tree: `from` must be in the
    /// component's `domain`, and the texts must hold only XML characters.
    pub(crate) fn encode(&self, domain: &str) -> Result<Vec<u8>, Error> {
        if !self.from.domain().as_str().eq_ignore_ascii_case(domain) {
            return Err(Error::ForeignFrom {
                domain: domain.to_owned(),
            });
        }
        let mut out = Vec::with_capacity(160 + self.body.len());
        self.write(&mut out).ok_or_else(|| {
            Error::Serialize(
                "a character XML cannot carry (a control character, U+FFFE or U+FFFF)".into(),
            )
        })?;
        Ok(out)
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(b"<message xmlns='");
        out.extend_from_slice(ns::DEFAULT_NS.as_bytes());
        // Attributes in the order minidom writes them: by name.
        out.extend_from_slice(b"' from='");
        escape_into(self.from.as_str(), true, out)?;
        out.extend_from_slice(b"' id='");
        escape_into(&self.id, true, out)?;
        out.extend_from_slice(b"' to='");
        escape_into(self.to.as_str(), true, out)?;
        out.extend_from_slice(b"' type='");
        out.extend_from_slice(self.type_value().as_bytes());
        out.extend_from_slice(b"'><body>");
        escape_into(&self.body, false, out)?;
        out.extend_from_slice(b"</body>");
        if let Some(subject) = &self.subject {
            out.extend_from_slice(b"<subject>");
            escape_into(subject, false, out)?;
            out.extend_from_slice(b"</subject>");
        }
        if self.kind == ChatKind::Private {
            out.extend_from_slice(b"<x xmlns='");
            out.extend_from_slice(ns::MUC_USER.as_bytes());
            out.extend_from_slice(b"'/>");
        }
        out.extend_from_slice(b"</message>");
        Some(())
    }

    fn type_value(&self) -> &'static str {
        match self.kind {
            ChatKind::Groupchat => "groupchat",
            ChatKind::Chat | ChatKind::Private => "chat",
        }
    }
}

impl From<ChatMessage> for Element {
    fn from(chat: ChatMessage) -> Self {
        chat.to_element()
    }
}

/// A `<message/>` of the shape most chats arrive in: no attributes but `from`, `to`, `id`,
/// `type` and `xml:lang`, and one `<body/>` without attributes holding text and nothing
/// else. The stream reader gives any other stanza, and any it cannot read whole at once, as
/// a tree; [`IncomingChat::into_element`] is the tree it would have given for this one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingChat {
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `type`.
    pub kind: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The body's text.
    pub body: String,
}

impl IncomingChat {
    /// The addressing attributes, as [`Envelope::of`] reads them from the tree.
    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            kind: self.kind.as_deref(),
            id: self.id.as_deref(),
        }
    }

    /// The stanza as the tree the reader builds for it when it reads it as a tree.
    pub fn into_element(self) -> Element {
        let mut message = Element::bare("message", ns::DEFAULT_NS);
        let attrs = message.attrs_mut();
        for (name, value) in [
            ("from", self.from),
            ("to", self.to),
            ("id", self.id),
            ("type", self.kind),
        ] {
            if let Some(value) = value {
                attrs.insert(Namespace::NONE, attr(name), value);
            }
        }
        if let Some(lang) = self.lang {
            attrs.insert(Namespace::XML, attr("lang"), lang);
        }
        let mut body = Element::bare("body", ns::DEFAULT_NS);
        if !self.body.is_empty() {
            body.append_text(self.body);
        }
        message.append_child(body);
        message
    }
}

/// An attribute name of this module's own: a literal, so always valid.
fn attr(name: &'static str) -> NcName {
    #[allow(clippy::expect_used, reason = "only called with literal, valid names")]
    NcName::try_from(name).expect("a valid attribute name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::encode_outgoing;

    fn chat(kind: ChatKind, body: &str, subject: Option<&str>) -> ChatMessage {
        ChatMessage {
            from: Jid::new("al.ice@sip.x.com").unwrap(),
            to: Jid::new("room@conference.x.com/n<&>'\"ick").unwrap(),
            id: "sipjab-1-2".into(),
            kind,
            body: body.into(),
            subject: subject.map(str::to_owned),
        }
    }

    #[test]
    fn writes_what_the_tree_writer_writes() {
        for kind in [ChatKind::Chat, ChatKind::Groupchat, ChatKind::Private] {
            for subject in [None, Some("s <&> \"q\"\r\n")] {
                let chat = chat(kind, "b <&> 'q'\r\n\ttab \u{e9}", subject);
                let tree = encode_outgoing(&chat.to_element(), "sip.x.com").unwrap();
                let direct = chat.encode("SIP.x.com").unwrap();
                assert_eq!(
                    String::from_utf8(direct).unwrap(),
                    String::from_utf8(tree).unwrap()
                );
            }
        }
    }

    #[test]
    fn xmpp_parsers_reads_it_back() {
        use xmpp_parsers::message::{Message, MessageType};
        let chat = chat(ChatKind::Groupchat, "hi", Some("s"));
        let bytes = chat.encode("sip.x.com").unwrap();
        let el: Element = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
        assert_eq!(el, chat.to_element());
        let msg = Message::try_from(el).unwrap();
        assert_eq!(msg.type_, MessageType::Groupchat);
        assert_eq!(msg.from, Some(chat.from.clone()));
        assert_eq!(msg.to, Some(chat.to.clone()));
    }

    #[test]
    fn the_tree_is_what_xmpp_parsers_would_build() {
        use xmpp_parsers::message::{Id, Lang, Message};
        for subject in [None, Some("s <&>")] {
            let chat = chat(ChatKind::Chat, "b <&> 'q'", subject);
            let mut msg = Message::chat(Some(chat.to.clone()));
            msg.from = Some(chat.from.clone());
            msg.id = Some(Id(chat.id.clone()));
            msg.bodies.insert(Lang::new(), chat.body.clone());
            if let Some(subject) = subject {
                msg.subjects.insert(Lang::new(), subject.to_owned());
            }
            assert_eq!(chat.to_element(), Element::from(msg));
        }
    }

    #[test]
    fn refuses_a_foreign_from_and_characters_xml_cannot_carry() {
        let chat = chat(ChatKind::Chat, "hi", None);
        assert!(matches!(
            chat.encode("other.x.com"),
            Err(Error::ForeignFrom { .. })
        ));
        for bad in ["a\u{1}b", "a\u{fffe}", "\u{ffff}"] {
            let mut c = chat.clone();
            c.body = bad.into();
            assert!(matches!(c.encode("sip.x.com"), Err(Error::Serialize(_))));
            let mut c = chat.clone();
            c.subject = Some(bad.into());
            assert!(matches!(c.encode("sip.x.com"), Err(Error::Serialize(_))));
        }
    }
}
