//! The XML stream of RFC 6120 §4 as XEP-0114 uses it: an incremental reader that turns
//! bytes into the stream header, stanzas and the stream end, and the few fixed strings
//! the component writes itself.
//!
//! Bytes go through rxml's push `RawParser` into minidom's `TreeBuilder` once each: the
//! reader never re-parses a growing buffer. Whitespace between stanzas (keepalives) is
//! dropped rather than piling up as text under the stream root.

use std::collections::VecDeque;

use minidom::Element;
use minidom::rxml::error::EndOrError;
use minidom::rxml::{Options, Parse, RawEvent, RawParser, WithOptions};
use minidom::tree_builder::TreeBuilder;
use xmpp_parsers::ns;

use crate::Error;

/// What the reader found in the byte stream.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// The server's `<stream:stream>` header (without children).
    Opened(Element),
    /// One complete top-level element: a stanza, `<handshake/>` or `<stream:error>`.
    Stanza(Element),
    /// The server's `</stream:stream>`.
    Closed,
}

/// Incremental stream reader with a per-stanza size limit.
pub(crate) struct StreamReader {
    parser: RawParser,
    tree: TreeBuilder,
    max_stanza: usize,
    /// Bytes consumed since the last stanza boundary: the size of the stanza in progress.
    pending: usize,
    opened: bool,
    closed: bool,
}

impl StreamReader {
    /// A reader for one connection.
    pub(crate) fn new(max_stanza: usize) -> Self {
        // A single token may be as long as a whole stanza, so the stanza limit is the one
        // that fires rather than rxml's 8 KiB default (long attribute values are legal).
        let options = Options {
            max_token_length: max_stanza.saturating_add(1),
            ..Options::default()
        };
        let mut parser = RawParser::with_options(options);
        // Unbuffered text, so whitespace keepalives between stanzas come out as events
        // (and reset the size count) instead of collecting in the lexer.
        parser.set_text_buffering(false);
        Self {
            parser,
            tree: TreeBuilder::new(),
            max_stanza,
            pending: 0,
            opened: false,
            closed: false,
        }
    }

    /// Parses `data` and appends what it completed to `out`. After an error the stream
    /// is unusable: XML offers no way to resynchronise.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), Error> {
        while !self.closed {
            let before = data.len();
            let result = self.parser.parse(&mut data, false);
            let consumed = before - data.len();
            self.pending = self.pending.saturating_add(consumed);
            if self.pending > self.max_stanza {
                return Err(Error::StanzaTooLarge {
                    limit: self.max_stanza,
                });
            }
            match result {
                Ok(Some(event)) => self.process(event, out)?,
                // The document ended: only happens after the root closed.
                Ok(None) => self.closed = true,
                Err(EndOrError::NeedMoreData) => {
                    if data.is_empty() || consumed == 0 {
                        return Ok(());
                    }
                }
                Err(EndOrError::Error(e)) => return Err(Error::Malformed(e.to_string())),
            }
        }
        Ok(())
    }

    fn process(&mut self, event: RawEvent, out: &mut VecDeque<StreamEvent>) -> Result<(), Error> {
        let depth = self.tree.depth();
        match event {
            // Whitespace keepalives between stanzas; anything else there is junk too.
            RawEvent::Text(..) if depth <= 1 => {
                self.pending = 0;
                Ok(())
            }
            RawEvent::ElementFoot(_) if depth == 1 => {
                self.closed = true;
                out.push_back(StreamEvent::Closed);
                Ok(())
            }
            RawEvent::ElementFoot(_) if depth == 2 => {
                self.build(event)?;
                self.pending = 0;
                match self.tree.unshift_child() {
                    Some(mut stanza) => {
                        forget_prefixes(&mut stanza);
                        out.push_back(StreamEvent::Stanza(stanza));
                    }
                    None => return Err(Error::Malformed("lost a stanza".into())),
                }
                Ok(())
            }
            RawEvent::ElementHeadClose(_) if depth == 0 => {
                self.build(event)?;
                let Some(root) = self.tree.top() else {
                    return Err(Error::Malformed("no stream root".into()));
                };
                if !root.is("stream", ns::STREAM) {
                    return Err(Error::Protocol(format!(
                        "root element is <{} xmlns='{}'>, not <stream:stream>",
                        root.name(),
                        root.ns()
                    )));
                }
                let header = root.clone();
                self.opened = true;
                self.pending = 0;
                out.push_back(StreamEvent::Opened(header));
                Ok(())
            }
            other => self.build(other),
        }
    }

    fn build(&mut self, event: RawEvent) -> Result<(), Error> {
        self.tree
            .process_event(event)
            .map_err(|e| Error::Malformed(e.to_string()))
    }

    /// True once the server's stream header arrived.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.opened
    }
}

/// Drops the prefix declarations the parser recorded; namespaces stay resolved on every
/// element and attribute.
///
/// minidom re-emits recorded declarations verbatim when serialising, and rxml's writer
/// panics on some legal ones (a prefix redeclared in a child, `xmlns:xml`), so a stanza
/// the core echoes back could otherwise crash `send`. Without them the writer declares
/// what it needs itself.
fn forget_prefixes(el: &mut Element) {
    el.prefixes = Default::default();
    for child in el.children_mut() {
        forget_prefixes(child);
    }
}

/// The stream header a component sends (XEP-0114 §3).
pub(crate) fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        escape_attr(domain)
    )
}

/// The stream end tag.
pub(crate) const CLOSE: &str = "</stream:stream>";

/// A stream error of ours followed by the stream end (RFC 6120 §4.9.1.1).
pub(crate) fn error_and_close(condition: &str, text: Option<&str>) -> String {
    let text = text
        .map(|t| {
            format!(
                "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{}</text>",
                escape_attr(t)
            )
        })
        .unwrap_or_default();
    format!(
        "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>{text}\
         </stream:error>{CLOSE}"
    )
}

/// Escapes text for an XML attribute value in single quotes (also fine for text nodes).
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:component:accept' id='abc' from='sip.xmpp.test'>";

    fn feed_all(reader: &mut StreamReader, data: &[u8]) -> Result<Vec<StreamEvent>, Error> {
        let mut out = VecDeque::new();
        reader.feed(data, &mut out)?;
        Ok(out.into())
    }

    #[test]
    fn header_stanzas_and_close() {
        let mut r = StreamReader::new(4096);
        let mut events = feed_all(&mut r, HEADER.as_bytes()).unwrap();
        assert!(r.is_open());
        let StreamEvent::Opened(h) = events.remove(0) else {
            panic!("{events:?}")
        };
        assert_eq!(h.attr("id"), Some("abc"));
        let events = feed_all(
            &mut r,
            b" \n<handshake/> <message from='a@xmpp.test' to='b@sip.xmpp.test'><body>hi</body></message></stream:stream>",
        )
        .unwrap();
        assert_eq!(events.len(), 3, "{events:?}");
        let StreamEvent::Stanza(hs) = &events[0] else {
            panic!()
        };
        assert!(hs.is("handshake", ns::COMPONENT));
        let StreamEvent::Stanza(msg) = &events[1] else {
            panic!()
        };
        assert!(msg.is("message", ns::COMPONENT));
        assert_eq!(msg.get_child("body", ns::COMPONENT).unwrap().text(), "hi");
        assert!(matches!(events[2], StreamEvent::Closed));
    }

    #[test]
    fn byte_at_a_time() {
        let doc = format!(
            "{HEADER}<iq type='get' id='1' from='x' to='y'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        let mut r = StreamReader::new(4096);
        let mut all = Vec::new();
        for b in doc.as_bytes() {
            all.extend(feed_all(&mut r, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(all.len(), 2);
        let StreamEvent::Stanza(iq) = &all[1] else {
            panic!()
        };
        assert!(iq.has_child("ping", ns::PING));
    }

    #[test]
    fn whitespace_keepalives_do_not_accumulate() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        for _ in 0..10_000 {
            assert!(feed_all(&mut r, b" ").unwrap().is_empty());
        }
        let events = feed_all(&mut r, b"<presence from='a' to='b'/>").unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn malformed_is_not_a_close() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        let err = feed_all(&mut r, b"<message><body>x</bod></message>").unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    }

    #[test]
    fn undeclared_prefix_is_malformed() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        let err = feed_all(&mut r, b"<foo:message/>").unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    }

    #[test]
    fn oversize_stanza_detected_while_streaming() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        feed_all(&mut r, b"<message from='a' to='b'><body>").unwrap();
        let chunk = [b'x'; 1000];
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = feed_all(&mut r, &chunk) {
                err = Some(e);
                break;
            }
        }
        assert!(
            matches!(err, Some(Error::StanzaTooLarge { limit: 4096 })),
            "{err:?}"
        );
    }

    #[test]
    fn limit_is_per_stanza() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        let stanza = format!(
            "<message from='a' to='b'><body>{}</body></message>",
            "x".repeat(3000)
        );
        for _ in 0..10 {
            assert_eq!(feed_all(&mut r, stanza.as_bytes()).unwrap().len(), 1);
        }
    }

    #[test]
    fn odd_but_legal_prefixes_reserialise() {
        let mut r = StreamReader::new(4096);
        feed_all(&mut r, HEADER.as_bytes()).unwrap();
        let stanza = "<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xmlns:a='urn:a' \
            xml:lang='en' from='a@b' to='c@d'><a:x xmlns:a='urn:b' a:attr='1'/><a:y/>\
            <body xmlns='jabber:component:accept' xmlns:a='urn:a'>x</body></message>";
        let mut events = feed_all(&mut r, stanza.as_bytes()).unwrap();
        let Some(StreamEvent::Stanza(el)) = events.pop() else {
            panic!()
        };
        let mut bytes = Vec::new();
        el.write_to(&mut bytes).unwrap();
        let back: Element = String::from_utf8(bytes).unwrap().parse().unwrap();
        assert_eq!(
            back.attr_ns(minidom::rxml::Namespace::xml(), "lang"),
            Some("en")
        );
        let x = back.get_child("x", "urn:b").unwrap();
        assert_eq!(x.attr_ns("urn:b", "attr"), Some("1"));
        assert!(back.has_child("y", "urn:a"));
        assert_eq!(back.get_child("body", ns::COMPONENT).unwrap().text(), "x");
    }

    #[test]
    fn wrong_root_is_protocol_error() {
        let mut r = StreamReader::new(4096);
        let err = feed_all(&mut r, b"<html xmlns='x'>").unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    }

    #[test]
    fn header_escapes_domain() {
        assert!(header("a'b").contains("to='a&apos;b'"));
        assert_eq!(
            error_and_close("policy-violation", None),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             </stream:error></stream:stream>"
        );
    }
}
