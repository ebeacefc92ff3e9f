//! The crate's one error type.

/// Everything that can go wrong in `sipjab-sip`.
///
/// Parsing errors keep [`Error::Incomplete`] apart from the others so that one parser
/// serves datagrams (where incomplete means invalid) and streams (where it means "wait").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// More octets are needed before the message can be parsed (stream transports).
    #[error("incomplete SIP message")]
    Incomplete,
    /// The octets are not a SIP message; the receiver drops them (and logs).
    #[error("invalid SIP message: {0}")]
    Invalid(String),
    /// Message boundaries cannot be found (bad or repeated Content-Length, garbage):
    /// on a stream the connection has to be closed.
    #[error("SIP framing error: {0}")]
    Framing(String),
    /// A message (or its unfinished head) is larger than the configured limit.
    #[error("SIP message larger than {limit} octets")]
    TooLarge {
        /// The limit in octets.
        limit: usize,
    },
    /// A header field is present but its value does not parse; requests get a 400.
    #[error("malformed {name} header: {reason}")]
    Header {
        /// Header name, in its long form.
        name: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// A single-valued header field appears more than once; requests get a 400.
    #[error("multiple {0} headers")]
    Multiple(&'static str),
    /// A URI does not parse.
    #[error("invalid URI: {0}")]
    Uri(String),
    /// A listen address such as `udp:127.0.0.1:5060` does not parse.
    #[error("invalid listen address {0:?}")]
    ListenAddr(String),
    /// A transaction operation does not fit the transaction's state or kind.
    #[error("transaction error: {0}")]
    Transaction(String),
    /// Socket I/O failed (transport only).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The transport has shut down or has too many connections.
    #[error("transport unavailable: {0}")]
    Transport(String),
    /// A destination the gateway cannot send to: a `sips:` URI, or a `transport`
    /// parameter other than UDP or TCP (server location covers UDP and TCP only).
    #[error("unsupported destination: {0}")]
    UnsupportedDestination(String),
    /// A DNS query failed (timeout, server failure, unusable name), as opposed to the
    /// name having no records of that type.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// Server location (RFC 3263) found no address for the destination.
    #[error("no address found for {0}")]
    NoAddress(String),
}

impl Error {
    /// The status code a request that failed this way should get, if it gets one.
    ///
    /// `None` means the message is dropped (unparseable) or the error is local.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            Self::Header { .. } | Self::Multiple(_) | Self::Uri(_) => Some(400),
            Self::TooLarge { .. } => Some(513),
            _ => None,
        }
    }
}
