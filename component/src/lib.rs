//! XEP-0114 (Jabber Component Protocol) link between sipjab and the local XMPP server.
//!
//! The gateway is one external component: a single TCP stream to the server's component
//! port (Prosody, ejabberd or jabberd2), authenticated with the lowercase hex SHA-1 of
//! stream id + shared secret, over which it sends and receives stanzas for every
//! `<user>@<component domain>`.
//!
//! - [`ComponentLink::spawn`] starts a background task that connects, handshakes, and
//!   reconnects forever with capped exponential backoff and jitter (1 s doubling to
//!   60 s by default). `not-authorized` (bad secret) and `host-unknown` (domain not a
//!   component) wait at the cap, `conflict` (another instance holds the domain) backs
//!   off normally; each gets one clear `tracing` error line per attempt.
//! - [`ComponentLink::next_event`] yields [`LinkEvent`]s: `Connected`, `Disconnected`
//!   with the reason, and incoming stanzas: most chat messages as an [`IncomingChat`],
//!   read without a tree, the rest as trees. It fits a `select!` loop.
//! - [`StanzaSender::send`] refuses stanzas without `to`, or without a `from` in the
//!   component domain (Prosody drops components that omit `from`), and fails fast with
//!   [`Error::NotConnected`] while the link is down, so the core can queue and resend
//!   after `Connected`. [`StanzaSender::send_chat`] does the same for the chat message a
//!   SIP MESSAGE becomes ([`ChatMessage`]), written straight to bytes without a tree.
//! - Keepalive is an XEP-0199 ping to the server every `keepalive` (30 s); no byte at
//!   all for twice that means a dead peer, and the link reconnects.
//! - XEP-0030 disco#info (identity `gateway`/`simple` plus the caller's features, always
//!   with disco#info and `urn:xmpp:ping`) and XEP-0199 pings addressed to the bare
//!   domain are answered here; everything else goes up to the core.
//! - A stanza over `max_stanza` bytes (256 KiB) ends the stream with `policy-violation`,
//!   XML that is not well-formed with `not-well-formed`; both reconnect and are reported
//!   as such, never as a server close ([`Error::StreamClosed`]).
//! - [`ComponentLink::shutdown`] sends `</stream:stream>` and waits up to 2 s for the
//!   server's.
//!
//! XEP-0106 JID escaping is the core's business (address rules); this crate only checks
//! that `from`/`to` parse as JIDs.
//!
//! # Why no tokio-xmpp
//!
//! `tokio-xmpp` 6's `Component` ends its stream on one malformed stanza or 60 s of
//! silence as if the server had closed, does not reconnect, and pulls in `sasl`, `rand`,
//! `futures` and `xso` stream machinery we would wrap anyway. The stream loop here is
//! small: the reader finds where each token ends as bytes arrive, quick-xml parses the
//! tags' attributes and decodes entities, and the elements are minidom's (see the
//! `stream` module for why not rxml's parser), with the stanza size counted as bytes
//! arrive. Stanza types come from
//! `xmpp-parsers` 0.23 with its `component` feature, so they carry the
//! `jabber:component:accept` namespace. Outgoing stanzas of the plain shape the gateway
//! builds are written by a small writer of our own (minidom's goes through rxml's
//! namespace-tracking encoder, a tenth of a chat message's cost); minidom writes the rest.
//!
//! # Testing against a real Prosody
//!
//! Unit tests run the link over `tokio::io::duplex` against a scripted server. The
//! integration tests in `tests/prosody.rs` need Prosody 0.12, which `scripts/prosody`
//! installs (Debian package) and runs from a directory of your choice, on loopback only
//! (c2s 15222, component 15347; `PROSODY_C2S_PORT` and `PROSODY_COMPONENT_PORT` change
//! them). One command starts it, runs the tests and stops it:
//!
//! ```text
//! scripts/prosody run /tmp/sipjab-prosody cargo test -p sipjab-component --test prosody -- --ignored
//! ```
//!
//! or step by step:
//!
//! ```text
//! scripts/prosody start /tmp/sipjab-prosody
//! eval "$(scripts/prosody env /tmp/sipjab-prosody)"   # SIPJAB_TEST_COMPONENT=127.0.0.1:15347,
//! # SIPJAB_TEST_DOMAIN=sip.xmpp.test, SIPJAB_TEST_SECRET=sipjab-test-secret,
//! # SIPJAB_TEST_SERVER=xmpp.test, SIPJAB_TEST_C2S=127.0.0.1:15222
//! cargo test -p sipjab-component --test prosody -- --ignored
//! scripts/prosody stop /tmp/sipjab-prosody
//! ```

mod backoff;
mod chat;
mod config;
mod envelope;
mod error;
mod link;
mod plain_jid;
mod stanza;
mod stream;

pub use chat::{ChatKind, ChatMessage, IncomingChat};
pub use config::ComponentConfig;
pub use envelope::Envelope;
pub use error::Error;
pub use link::{ComponentLink, Connect, LinkEvent, StanzaSender, TcpConnector};
/// The stanza tree type of [`LinkEvent::Stanza`] and [`StanzaSender::send`].
pub use minidom::Element;
pub use plain_jid::PlainJid;
/// Stream error conditions found in [`Error::Stream`].
pub use xmpp_parsers::stream_error::DefinedCondition;

/// The stream reader for the fuzz targets in `component/fuzz`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::VecDeque;

    pub use crate::stream::against_minidom::{has_lone_cr, is_stricter, read_by_minidom};
    use crate::stream::{StreamEvent, StreamReader};
    use crate::{Element, Error};

    /// Where the reader stopped when the bytes ran out.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Ending {
        /// Inside the stream between stanzas, nothing buffered.
        Idle,
        /// Inside a stanza, or in a token not complete yet.
        MidStanza,
        /// After `</stream:stream>`; nothing after it is read.
        Closed,
    }

    /// Feeds `header`, then each chunk, to a fresh reader (64 KiB stanza limit): the
    /// stanzas it read and where it stopped, or its first error.
    pub fn read_in_chunks(
        header: &[u8],
        chunks: &[&[u8]],
    ) -> Result<(Vec<Element>, Ending), Error> {
        let mut reader = StreamReader::new(1 << 16);
        let mut out = VecDeque::new();
        for chunk in std::iter::once(header).chain(chunks.iter().copied()) {
            reader.feed(chunk, &mut out)?;
        }
        let mut ending = if reader.is_idle() {
            Ending::Idle
        } else {
            Ending::MidStanza
        };
        let mut stanzas = Vec::new();
        for event in out {
            match event {
                StreamEvent::Opened(_) => {}
                StreamEvent::Stanza(element) => stanzas.push(element),
                StreamEvent::Chat(chat) => stanzas.push(chat.into_element()),
                StreamEvent::Closed => ending = Ending::Closed,
            }
        }
        Ok((stanzas, ending))
    }
}
