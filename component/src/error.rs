//! The component crate's one error type.

use std::io;
use std::time::Duration;

use xmpp_parsers::stream_error::DefinedCondition;

/// Why a link went down, why a connection attempt failed, or why a stanza was not sent.
///
/// Link errors arrive in [`LinkEvent::Disconnected`](crate::LinkEvent::Disconnected); send
/// errors come back from [`StanzaSender::send`](crate::StanzaSender::send).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection to the server could not be made.
    #[error("cannot connect to the XMPP server: {0}")]
    Connect(#[source] io::Error),

    /// Reading from or writing to a live connection failed.
    #[error("I/O error on the component stream: {0}")]
    Io(#[source] io::Error),

    /// Connecting and the XEP-0114 handshake did not finish in time.
    #[error("no stream handshake within {0:?}")]
    HandshakeTimeout(Duration),

    /// The server sent a stream error (RFC 6120 §4.9), e.g. `not-authorized` for a bad
    /// secret, `conflict` when another instance holds the domain, `host-unknown` when the
    /// domain is not configured as a component.
    #[error("server stream error <{condition}/>{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    Stream {
        /// The defined condition.
        condition: DefinedCondition,
        /// The server's human-readable text, if any.
        text: Option<String>,
    },

    /// The server closed the stream with `</stream:stream>`.
    #[error("server closed the stream")]
    StreamClosed,

    /// The TCP connection ended without a stream close.
    #[error("connection closed by the server without closing the stream")]
    ConnectionLost,

    /// Nothing at all arrived for twice the keepalive interval.
    #[error("no data from the server for {0:?}: peer presumed dead")]
    PeerDead(Duration),

    /// The server sent XML that is not well-formed; the stream cannot go on.
    #[error("server sent malformed XML: {0}")]
    Malformed(String),

    /// The server sent a stanza larger than `max_stanza` bytes.
    #[error("server sent a stanza over the {limit} byte limit")]
    StanzaTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The server broke XEP-0114 (wrong root element, no stream id, unexpected element
    /// during the handshake).
    #[error("XEP-0114 protocol violation by the server: {0}")]
    Protocol(String),

    /// The link is not connected: the stanza was not sent; queue it and retry after
    /// [`LinkEvent::Connected`](crate::LinkEvent::Connected).
    #[error("component link is down")]
    NotConnected,

    /// The outgoing queue of the live stream is full: the stanza was not sent.
    #[error("component send queue is full")]
    QueueFull,

    /// A stanza without a `from` attribute: Prosody drops components that send those.
    #[error("stanza has no 'from' attribute")]
    MissingFrom,

    /// A stanza without a `to` attribute.
    #[error("stanza has no 'to' attribute")]
    MissingTo,

    /// A `from` or `to` attribute that is not a valid JID.
    #[error("stanza attribute '{attr}' is not a valid JID: {reason}")]
    InvalidJid {
        /// `from` or `to`.
        attr: &'static str,
        /// What the JID parser said.
        reason: String,
    },

    /// A `from` outside the component's domain: the server would reject it.
    #[error("stanza 'from' is outside the component domain {domain}")]
    ForeignFrom {
        /// The component's domain.
        domain: String,
    },

    /// Not a `message`, `presence` or `iq` in the `jabber:component:accept` namespace.
    #[error("not a component stanza: <{name} xmlns='{ns}'>")]
    NotAStanza {
        /// Element name.
        name: String,
        /// Element namespace.
        ns: String,
    },

    /// A stanza that minidom could not serialise.
    #[error("cannot serialise stanza: {0}")]
    Serialize(String),
}

impl Error {
    /// The stream error condition, if the server sent one; lets callers tell a bad
    /// secret from a network failure.
    pub fn stream_condition(&self) -> Option<&DefinedCondition> {
        match self {
            Self::Stream { condition, .. } => Some(condition),
            _ => None,
        }
    }

    /// True for errors that reconnecting will not fix before an admin acts (bad secret,
    /// unknown component domain): the link then waits the longest backoff between tries.
    pub fn needs_admin(&self) -> bool {
        matches!(
            self.stream_condition(),
            Some(DefinedCondition::NotAuthorized | DefinedCondition::HostUnknown)
        )
    }

    /// True for errors of the stanza handed to `send` rather than of the link.
    pub fn is_bad_stanza(&self) -> bool {
        matches!(
            self,
            Self::MissingFrom
                | Self::MissingTo
                | Self::InvalidJid { .. }
                | Self::ForeignFrom { .. }
                | Self::NotAStanza { .. }
                | Self::Serialize(_)
        )
    }
}
