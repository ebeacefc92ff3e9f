//! Link settings.

use std::fmt;
use std::time::Duration;

/// Everything the link needs to reach and log in to the server (XEP-0114), answer
/// XEP-0030 disco#info for the domain, and keep the stream alive (XEP-0199).
///
/// Build it with [`ComponentConfig::new`] and change the public fields: new fields may be
/// added, so struct literals are not allowed outside this crate.
#[derive(Clone)]
#[non_exhaustive]
pub struct ComponentConfig {
    /// Server host name or address for the component port.
    pub host: String,
    /// Component port (Prosody's `component_ports`, 5347 by default).
    pub port: u16,
    /// Component domain, e.g. `sip.example.org`; every stanza sent must be from it.
    pub domain: String,
    /// Shared secret (`component_secret`); never logged.
    pub secret: String,
    /// XEP-0030 identity name shown to users.
    pub name: String,
    /// XEP-0030 features the gateway really supports; disco#info and ping are added.
    pub features: Vec<String>,
    /// Interval of XEP-0199 pings to the server; nothing received for twice this long
    /// means the peer is dead. At least one second.
    pub keepalive: Duration,
    /// Where the keepalive pings go; `None` means the domain's parent
    /// (`sip.example.org` pings `example.org`). Any answer, even an error, proves the
    /// stream alive.
    pub ping_to: Option<String>,
    /// Longest stanza accepted from the server, in bytes; a longer one closes the stream
    /// with `policy-violation`.
    pub max_stanza: usize,
    /// Time allowed for TCP connect, stream header and handshake together.
    pub connect_timeout: Duration,
    /// First reconnect delay; it doubles on each failure.
    pub backoff_min: Duration,
    /// Cap of the reconnect delay, also used straight away after `not-authorized` and
    /// `host-unknown`.
    pub backoff_max: Duration,
    /// Stanzas that may wait for the socket before `send` reports `QueueFull`.
    pub send_queue: usize,
}

impl ComponentConfig {
    /// Settings with defaults: keepalive 30 s, 256 KiB stanzas, 10 s connect timeout,
    /// backoff 1 s doubling to 60 s, identity name "SIP gateway".
    pub fn new(
        host: impl Into<String>,
        port: u16,
        domain: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            domain: domain.into(),
            secret: secret.into(),
            name: "SIP gateway".to_owned(),
            features: Vec::new(),
            keepalive: Duration::from_secs(30),
            ping_to: None,
            max_stanza: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            send_queue: 1024,
        }
    }

    /// The keepalive ping target: `ping_to`, else the domain's parent, else the domain.
    pub fn ping_target(&self) -> &str {
        if let Some(to) = &self.ping_to {
            return to;
        }
        match self.domain.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => parent,
            _ => &self.domain,
        }
    }

    /// A copy with values that would spin or stall replaced by sane floors, so that
    /// `spawn` cannot fail.
    pub(crate) fn sanitized(&self) -> Self {
        let mut cfg = self.clone();
        cfg.keepalive = cfg.keepalive.max(Duration::from_secs(1));
        cfg.connect_timeout = cfg.connect_timeout.max(Duration::from_millis(100));
        cfg.backoff_min = cfg.backoff_min.max(Duration::from_millis(100));
        cfg.backoff_max = cfg.backoff_max.max(cfg.backoff_min);
        cfg.max_stanza = cfg.max_stanza.max(4096);
        cfg.send_queue = cfg.send_queue.max(1);
        cfg
    }
}

impl fmt::Debug for ComponentConfig {
    /// Everything but the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("domain", &self.domain)
            .field("secret", &"<redacted>")
            .field("name", &self.name)
            .field("features", &self.features)
            .field("keepalive", &self.keepalive)
            .field("ping_to", &self.ping_to)
            .field("max_stanza", &self.max_stanza)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("send_queue", &self.send_queue)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn ping_target_defaults_to_parent_domain() {
        let cfg = ComponentConfig::new("127.0.0.1", 5347, "sip.xmpp.test", "s");
        assert_eq!(cfg.ping_target(), "xmpp.test");
        let cfg = ComponentConfig::new("127.0.0.1", 5347, "localhost", "s");
        assert_eq!(cfg.ping_target(), "localhost");
        let mut cfg = ComponentConfig::new("127.0.0.1", 5347, "sip.xmpp.test", "s");
        cfg.ping_to = Some("other.test".into());
        assert_eq!(cfg.ping_target(), "other.test");
    }

    #[test]
    fn debug_hides_secret() {
        let cfg = ComponentConfig::new("h", 1, "d.test", "hunter2");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn sanitized_floors_zero_values() {
        let mut cfg = ComponentConfig::new("h", 1, "d.test", "s");
        cfg.keepalive = Duration::ZERO;
        cfg.backoff_min = Duration::ZERO;
        cfg.backoff_max = Duration::ZERO;
        cfg.send_queue = 0;
        let cfg = cfg.sanitized();
        assert_eq!(cfg.keepalive, Duration::from_secs(1));
        assert!(cfg.backoff_max >= cfg.backoff_min);
        assert_eq!(cfg.send_queue, 1);
    }
}
