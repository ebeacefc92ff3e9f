//! The addressing attributes of a stanza, read in one pass.
//!
//! minidom keeps attributes in an ordered map of ordered maps, so each `Element::attr` is
//! a tree search with a string comparison at every step. The gateway reads `from`, `to`,
//! `type` and `id` of every stanza it receives, seven lookups a chat message in all, which
//! showed as the top `memcmp` caller in perf; one walk over the attributes finds all four.

use minidom::Element;

/// `from`, `to`, `type` and `id` of a stanza (attributes without a namespace).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `from`.
    pub from: Option<&'a str>,
    /// `to`.
    pub to: Option<&'a str>,
    /// `type`.
    pub kind: Option<&'a str>,
    /// `id`.
    pub id: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// The four attributes of `stanza` (the top element only).
    pub fn of(stanza: &'a Element) -> Self {
        let mut envelope = Self::default();
        for ((ns, name), value) in stanza.attrs() {
            if !ns.is_none() {
                continue;
            }
            let slot = match name.as_str() {
                "from" => &mut envelope.from,
                "to" => &mut envelope.to,
                "type" => &mut envelope.kind,
                "id" => &mut envelope.id,
                _ => continue,
            };
            *slot = Some(value.as_str());
        }
        envelope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_attr_finds() {
        let xml = "<message xmlns='jabber:component:accept' xmlns:x='urn:x' x:to='no' \
                   from='a@b/c' to='d@e' type='chat' id='i1' lang='en'><body to='no'/></message>";
        let el: Element = xml.parse().unwrap();
        let envelope = Envelope::of(&el);
        assert_eq!(envelope.from, el.attr("from"));
        assert_eq!(envelope.to, Some("d@e"));
        assert_eq!(envelope.kind, Some("chat"));
        assert_eq!(envelope.id, Some("i1"));
        let bare: Element = "<presence xmlns='jabber:component:accept'/>"
            .parse()
            .unwrap();
        assert_eq!(Envelope::of(&bare), Envelope::default());
    }
}
