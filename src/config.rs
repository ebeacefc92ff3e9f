//! The gateway's configuration: a TOML file, then `SIPJAB_` environment variables (`__` for
//! nesting, `SIPJAB_XMPP__SECRET`), merged with figment and checked into typed values.
//!
//! Keys follow the SER `jabber` module's parameters (`jaddress` is `xmpp.host`, `jport` is
//! `xmpp.port`, `jdomain`, `aliases`, `registrar`, `cache_time`, `delay_time`, `db_url` is
//! `db.url`); `jdomain` and `aliases` take SER's string syntax as well as TOML tables.
//!
//! Checking collects every problem it finds, each naming its key, so an operator fixes a bad
//! file in one pass. figment reads environment values as typed values (`00123` becomes the
//! number 123), so the keys that are strings are read from the environment as raw text.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::Deserialize;
use sipjab_db::{DbUrl, SipAor};
use sipjab_sip::TransportKind;
use sipjab_sip::transport::ListenAddr;

use crate::address::{AddressRules, Alias, JDomain};

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "SIPJAB_";

/// The config file read when neither `--config` nor `SIPJAB_CONFIG` names one.
pub const DEFAULT_FILE: &str = "sipjab.toml";

/// Keys whose environment values are taken as text, never as numbers or booleans.
const STRING_KEYS: [&str; 9] = [
    "xmpp.host",
    "xmpp.domain",
    "xmpp.secret",
    "sip.proxy",
    "sip.registrar",
    "gateway.jdomain",
    "gateway.aliases",
    "db.url",
    "presence.authorize",
];

/// The checked configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The component link to the Jabber server.
    pub xmpp: XmppConfig,
    /// The SIP front end.
    pub sip: SipConfig,
    /// Address rules and timers.
    pub gateway: GatewayConfig,
    /// The account store.
    pub db: DbConfig,
    /// Presence authorisation.
    pub presence: PresenceConfig,
    /// MUC conferences.
    pub conference: ConferenceConfig,
}

/// `[conference]`: what a SIP user gets when joining a MUC room. SIP clients have no
/// scroll-back, so both default to off: a join would otherwise flood the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConferenceConfig {
    /// How many past messages the room sends on join (XEP-0045 `maxstanzas`).
    pub history: u32,
    /// Whether the room's subject is sent as an INFO notice on join (later changes always are).
    pub subject: bool,
}

/// `[presence]`: who may see a SIP user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceConfig {
    /// What happens to an XMPP user's request to see a SIP user's presence.
    pub authorize: Authorize,
}

/// The answer to an XMPP presence subscription request (RFC 6121 §3.1) for a SIP user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorize {
    /// The SIP user decides, by answering `:allow ADDRESS` or `:deny ADDRESS`.
    Ask,
    /// Every request is approved (what the SER module did).
    Accept,
    /// Every request is refused.
    Reject,
}

/// `[xmpp]`: where the Jabber server's component port is and who the component is.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// SER `jaddress`: the component port's host.
    pub host: String,
    /// SER `jport`: the component port (5347 by convention, not the client port 5222).
    pub port: u16,
    /// The component domain; impersonated JIDs are `<jab_id>@domain`.
    pub domain: String,
    /// The shared component secret.
    pub secret: Secret,
    /// How often the link sends a keepalive; a silent server is given up after twice this.
    pub keepalive: Duration,
}

/// `[sip]`: listeners, routing and who may talk to the gateway.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Listen addresses, `udp:127.0.0.1:5060` or `tcp:[::1]:5060`.
    pub listen: Vec<ListenAddr>,
    /// Outbound proxy for every request the gateway sends: `[udp:|tcp:]host[:port]`.
    pub proxy: Option<Proxy>,
    /// The From address of the gateway's INFO and ERROR notices (SER `registrar`).
    pub registrar: SipAor,
    /// Networks allowed to send SIP requests.
    pub trusted: Vec<IpNet>,
}

/// An outbound proxy: `[udp:|tcp:]host[:port]`. What is not written is left to RFC 3263
/// (NAPTR and SRV for a name; UDP and 5060 for an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// UDP or TCP, if written.
    pub transport: Option<TransportKind>,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, if written.
    pub port: Option<u16>,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Some(TransportKind::Tcp) => f.write_str("tcp:")?,
            Some(TransportKind::Udp) => f.write_str("udp:")?,
            None => {}
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            _ => f.write_str(&self.host)?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `[gateway]`: the SER address rules and timers.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// jdomain, aliases and component domain.
    pub rules: AddressRules,
    /// SER `cache_time`: an idle session goes offline after this.
    pub cache_time: Duration,
    /// SER `delay_time`: how long a SIP message may wait for the XMPP link.
    pub delay_time: Duration,
    /// How many SIP messages may wait for the XMPP link; more get 503.
    pub queue_limit: usize,
}

/// `[db]`: where the accounts are.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// SQLite file or MySQL server (SER `db_url`).
    pub url: DbUrl,
}

/// A secret that never shows in logs or printed configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, e.g. `gateway.aliases`.
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in key order of discovery.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(key: &str, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                key: key.into(),
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    xmpp: RawXmpp,
    #[serde(default)]
    sip: RawSip,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    db: RawDb,
    #[serde(default)]
    presence: RawPresence,
    #[serde(default)]
    conference: RawConference,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConference {
    history: u32,
    subject: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPresence {
    authorize: String,
}

impl Default for RawPresence {
    fn default() -> Self {
        Self {
            authorize: "ask".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawXmpp {
    host: String,
    port: u16,
    domain: String,
    secret: Option<String>,
    keepalive: u64,
}

impl Default for RawXmpp {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5347,
            domain: "sip.xmpp.test".into(),
            secret: None,
            keepalive: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSip {
    listen: Vec<String>,
    proxy: Option<String>,
    registrar: String,
    trusted: Vec<String>,
}

impl Default for RawSip {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            proxy: None,
            registrar: "sip:jabber_gateway@127.0.0.1".into(),
            trusted: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGateway {
    jdomain: RawJDomain,
    aliases: RawAliases,
    cache_time: u64,
    delay_time: u64,
    queue_limit: usize,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            jdomain: RawJDomain::Ser("jabber.sip.test=*".into()),
            aliases: RawAliases::Ser(String::new()),
            cache_time: 600,
            delay_time: 90,
            queue_limit: 1000,
        }
    }
}

/// `jdomain = "jabber.x.com=*"` or `jdomain = { domain = "jabber.x.com", delimiter = "*" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawJDomain {
    Ser(String),
    Table {
        domain: String,
        #[serde(default = "default_delimiter")]
        delimiter: String,
    },
}

fn default_delimiter() -> String {
    "*".into()
}

/// `aliases = "2;aim.x.com;msn.x.com=%;"` or
/// `aliases = [{ domain = "aim.x.com" }, { domain = "msn.x.com", delimiter = "%" }]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAliases {
    Ser(String),
    Table(Vec<RawAlias>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    domain: String,
    delimiter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDb {
    url: String,
}

impl Default for RawDb {
    fn default() -> Self {
        Self {
            url: "sqlite://var/sipjab.db".into(),
        }
    }
}

impl Config {
    /// Loads the file (the default `sipjab.toml` may be absent; a named file must exist), then
    /// the environment, and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&sources(file)?)
    }

    /// Reads only `[db] url`, for store commands that need no XMPP or SIP settings.
    pub fn load_db_url(file: Option<&Path>) -> Result<DbUrl, ConfigError> {
        let figment = sources(file)?;
        let url = if figment.contains("db.url") {
            figment
                .extract_inner::<String>("db.url")
                .map_err(|e| ConfigError::one("db.url", e.kind.to_string()))?
        } else {
            RawDb::default().url
        };
        DbUrl::parse(&url).map_err(|e| ConfigError::one("db.url", e.to_string()))
    }

    /// Parses a TOML document alone, without the environment (for tests and tools).
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::from(Toml::string(toml)))
    }

    /// Extracts and checks the merged sources.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|err| ConfigError {
            problems: err
                .into_iter()
                .map(|e| Problem {
                    key: if e.path.is_empty() {
                        "config".into()
                    } else {
                        e.path.join(".")
                    },
                    reason: e.kind.to_string(),
                })
                .collect(),
        })?;
        raw.check()
    }

    /// The configuration as TOML, secrets redacted, for `sipjab check-config`.
    pub fn effective_toml(&self) -> String {
        let quoted = |items: &mut dyn Iterator<Item = String>| {
            items
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = &self.gateway.rules;
        let aliases = rules
            .aliases
            .iter()
            .map(|a| match a.delimiter {
                Some(d) => format!("{{ domain = {:?}, delimiter = {:?} }}", a.domain, d),
                None => format!("{{ domain = {:?} }}", a.domain),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let proxy = self.sip.proxy.as_ref().map_or_else(
            || "# proxy: none".to_owned(),
            |p| format!("proxy = \"{p}\""),
        );
        format!(
            "[xmpp]\nhost = {:?}\nport = {}\ndomain = {:?}\nsecret = \"***\"\nkeepalive = {}\n\n\
             [sip]\nlisten = [{}]\n{proxy}\nregistrar = {:?}\ntrusted = [{}]\n\n\
             [gateway]\njdomain = {{ domain = {:?}, delimiter = {:?} }}\naliases = [{aliases}]\n\
             cache_time = {}\ndelay_time = {}\nqueue_limit = {}\n\n[db]\nurl = {:?}\n\n\
             [presence]\nauthorize = {:?}\n\n[conference]\nhistory = {}\nsubject = {}\n",
            self.xmpp.host,
            self.xmpp.port,
            self.xmpp.domain,
            self.xmpp.keepalive.as_secs(),
            quoted(&mut self.sip.listen.iter().map(ToString::to_string)),
            self.sip.registrar.to_string(),
            quoted(&mut self.sip.trusted.iter().map(ToString::to_string)),
            rules.jdomain.domain,
            rules.jdomain.delimiter,
            self.gateway.cache_time.as_secs(),
            self.gateway.delay_time.as_secs(),
            self.gateway.queue_limit,
            self.db.url.redacted(),
            format!("{:?}", self.presence.authorize).to_ascii_lowercase(),
            self.conference.history,
            self.conference.subject,
        )
    }
}

/// The config file (the default one may be absent; a named one must exist) with the
/// environment over it.
fn sources(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let path: PathBuf = match file {
        Some(path) if !path.is_file() => {
            return Err(ConfigError::one(
                "config",
                format!("cannot read config file {}", path.display()),
            ));
        }
        Some(path) => path.to_owned(),
        None => PathBuf::from(DEFAULT_FILE),
    };
    Ok(with_env(Figment::from(Toml::file(path))))
}

/// Merges `SIPJAB_` variables over `figment`: string keys as raw text, the rest typed.
/// Variables without a section (`SIPJAB_CONFIG`, a test's `SIPJAB_TEST_…`) are not config keys.
fn with_env(figment: Figment) -> Figment {
    let typed = Env::prefixed(ENV_PREFIX)
        .split("__")
        .filter(|key| key.as_str().contains('.') && !STRING_KEYS.contains(&key.as_str()));
    let mut figment = figment.merge(typed);
    for (name, value) in std::env::vars() {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        if STRING_KEYS.contains(&key.as_str()) {
            figment = figment.merge(Serialized::default(&key, value));
        }
    }
    figment
}

/// Collects problems while checking, so that all are reported at once.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, reason: impl fmt::Display) {
        self.0.push(Problem {
            key: key.into(),
            reason: reason.to_string(),
        });
    }

    fn check<T, E: fmt::Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(key, e)).ok()
    }
}

impl RawConfig {
    fn check(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let x = self.xmpp;
        if x.host.trim().is_empty() {
            p.add("xmpp.host", "must not be empty");
        }
        if x.port == 0 {
            p.add("xmpp.port", "must be a port number from 1 to 65535");
        }
        if x.keepalive == 0 {
            p.add("xmpp.keepalive", "must be at least 1 second");
        }
        let domain = p.check("xmpp.domain", check_domain(&x.domain));
        let secret = match x.secret {
            Some(s) if !s.is_empty() => Some(Secret(s)),
            Some(_) => {
                p.add("xmpp.secret", "must not be empty");
                None
            }
            None => {
                p.add(
                    "xmpp.secret",
                    "is required: the component secret configured in the Jabber server",
                );
                None
            }
        };

        let s = self.sip;
        if s.listen.is_empty() {
            p.add("sip.listen", "needs at least one address");
        }
        let listen: Vec<ListenAddr> = s
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, addr)| p.check(&format!("sip.listen[{i}]"), parse_listen(addr)))
            .collect();
        let proxy = match &s.proxy {
            Some(proxy) => p.check("sip.proxy", parse_proxy(proxy)),
            None => None,
        };
        let registrar = p.check("sip.registrar", SipAor::parse(&s.registrar));
        let trusted: Vec<IpNet> = s
            .trusted
            .iter()
            .enumerate()
            .filter_map(|(i, net)| p.check(&format!("sip.trusted[{i}]"), parse_net(net)))
            .collect();

        let g = self.gateway;
        let jdomain = p.check("gateway.jdomain", parse_jdomain(g.jdomain));
        let aliases = p.check("gateway.aliases", parse_aliases(g.aliases));
        if let (Some(jd), Some(aliases)) = (&jdomain, &aliases) {
            for (i, a) in aliases.iter().enumerate() {
                if a.domain == jd.domain {
                    p.add(
                        "gateway.aliases",
                        format!("alias {} is the jdomain", a.domain),
                    );
                } else if aliases[..i].iter().any(|b| b.domain == a.domain) {
                    p.add("gateway.aliases", format!("alias {} is repeated", a.domain));
                }
            }
        }
        let url = p.check("db.url", DbUrl::parse(&self.db.url));
        let authorize = match self.presence.authorize.to_ascii_lowercase().as_str() {
            "ask" => Some(Authorize::Ask),
            "accept" => Some(Authorize::Accept),
            "reject" => Some(Authorize::Reject),
            other => {
                p.add(
                    "presence.authorize",
                    format!("{other:?} is not one of ask, accept, reject"),
                );
                None
            }
        };

        match (domain, secret, registrar, jdomain, aliases, url, authorize) {
            (
                Some(domain),
                Some(secret),
                Some(registrar),
                Some(jdomain),
                Some(aliases),
                Some(url),
                Some(authorize),
            ) if p.0.is_empty() => Ok(Config {
                xmpp: XmppConfig {
                    host: x.host,
                    port: x.port,
                    domain: domain.clone(),
                    secret,
                    keepalive: Duration::from_secs(x.keepalive),
                },
                sip: SipConfig {
                    listen,
                    proxy,
                    registrar,
                    trusted,
                },
                gateway: GatewayConfig {
                    rules: AddressRules {
                        jdomain,
                        aliases,
                        component_domain: domain,
                    },
                    cache_time: Duration::from_secs(g.cache_time),
                    delay_time: Duration::from_secs(g.delay_time),
                    queue_limit: g.queue_limit,
                },
                db: DbConfig { url },
                presence: PresenceConfig { authorize },
                conference: ConferenceConfig {
                    history: self.conference.history,
                    subject: self.conference.subject,
                },
            }),
            _ => Err(ConfigError { problems: p.0 }),
        }
    }
}

/// A domain must be a valid JID domainpart, in lower case.
fn check_domain(domain: &str) -> Result<String, String> {
    let domain = domain.trim().to_ascii_lowercase();
    if domain.is_empty() || domain.contains(['@', '/', ' ', ':']) {
        return Err(format!("{domain:?} is not a domain name"));
    }
    jid::BareJid::new(&domain)
        .map(|_| domain.clone())
        .map_err(|e| format!("{domain:?} is not a valid domain: {e}"))
}

/// `udp:IP:PORT` or `tcp:IP:PORT` (`[::1]` for IPv6).
fn parse_listen(addr: &str) -> Result<ListenAddr, String> {
    addr.parse::<ListenAddr>()
        .map_err(|_| format!("{addr:?} is not udp:ip:port or tcp:ip:port (IPv6 as [::1])"))
}

/// `[udp:|tcp:]host[:port]`, as an outbound proxy is written.
fn parse_proxy(text: &str) -> Result<Proxy, String> {
    let (transport, rest) = match text.split_once(':') {
        Some((t, rest)) if t.eq_ignore_ascii_case("udp") => (Some(TransportKind::Udp), rest),
        Some((t, rest)) if t.eq_ignore_ascii_case("tcp") => (Some(TransportKind::Tcp), rest),
        _ => (None, text),
    };
    if let Ok(sock) = rest.parse::<std::net::SocketAddr>() {
        return Ok(Proxy {
            transport,
            host: sock.ip().to_string(),
            port: Some(sock.port()),
        });
    }
    if let Ok(ip) = rest
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(Proxy {
            transport,
            host: ip.to_string(),
            port: None,
        });
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{text:?}: {port:?} is not a port number"))
        })
        .transpose()?;
    check_domain(host)?;
    Ok(Proxy {
        transport,
        host: host.to_owned(),
        port,
    })
}

/// A network `10.0.0.0/8`, or a single address.
fn parse_net(net: &str) -> Result<IpNet, String> {
    net.parse::<IpNet>()
        .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{net:?} is not a network (10.0.0.0/8, ::1/128) or an address"))
}

/// One delimiter character.
fn one_char(text: &str) -> Result<char, String> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("delimiter {text:?} must be exactly one character")),
    }
}

fn parse_jdomain(raw: RawJDomain) -> Result<JDomain, String> {
    let (domain, delimiter) = match raw {
        RawJDomain::Ser(text) => match text.split_once('=') {
            Some((domain, delim)) => (domain.to_owned(), delim.to_owned()),
            None => (text, default_delimiter()),
        },
        RawJDomain::Table { domain, delimiter } => (domain, delimiter),
    };
    let domain = check_domain(&domain)?;
    JDomain::new(&domain, one_char(&delimiter)?).map_err(|e| e.to_string())
}

/// SER syntax: `N;alias1;alias2=<delim>;…;`, where N counts the aliases.
fn parse_aliases(raw: RawAliases) -> Result<Vec<Alias>, String> {
    let entries: Vec<(String, Option<String>)> = match raw {
        RawAliases::Table(list) => list.into_iter().map(|a| (a.domain, a.delimiter)).collect(),
        RawAliases::Ser(text) if text.trim().is_empty() => Vec::new(),
        RawAliases::Ser(text) => {
            let text = text.trim();
            let (count, rest) = text.split_once(';').ok_or_else(|| {
                format!(
                    "{text:?} does not start with the count, as in \"2;aim.x.com;msn.x.com=%;\""
                )
            })?;
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("count {count:?} is not a number"))?;
            let rest = rest.strip_suffix(';').unwrap_or(rest);
            let entries: Vec<_> = if rest.is_empty() {
                Vec::new()
            } else {
                rest.split(';')
                    .map(|e| match e.split_once('=') {
                        Some((d, delim)) => (d.to_owned(), Some(delim.to_owned())),
                        None => (e.to_owned(), None),
                    })
                    .collect()
            };
            if entries.len() != count {
                return Err(format!(
                    "count says {count} aliases but {} are listed",
                    entries.len()
                ));
            }
            entries
        }
    };
    entries
        .into_iter()
        .map(|(domain, delim)| {
            let domain = check_domain(&domain)?;
            let delim = delim.as_deref().map(one_char).transpose()?;
            Alias::new(&domain, delim).map_err(|e| format!("alias {domain}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[xmpp]
host = "127.0.0.1"
port = 5347
domain = "sip.xmpp.test"
secret = "s3cret"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5060"]
proxy = "127.0.0.1:5090"
registrar = "sip:jabber_gateway@127.0.0.1"
trusted = ["127.0.0.0/8", "::1/128"]
[gateway]
jdomain = "jabber.sip.test=*"
aliases = "3;aim.xmpp.test;icq.xmpp.test;msn.xmpp.test=%;"
cache_time = 600
delay_time = 90
[db]
url = "sqlite://var/sipjab.db"
"#;

    fn problems(toml: &str) -> Vec<String> {
        Config::from_toml_str(toml)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn sample_loads() {
        let c = Config::from_toml_str(SAMPLE).unwrap();
        assert_eq!(c.xmpp.secret.expose(), "s3cret");
        assert_eq!(c.gateway.rules.jdomain.domain, "jabber.sip.test");
        assert_eq!(c.gateway.rules.jdomain.delimiter, '*');
        assert_eq!(c.gateway.rules.aliases.len(), 3);
        assert_eq!(c.gateway.rules.aliases[2].delimiter, Some('%'));
        assert_eq!(c.gateway.cache_time, Duration::from_secs(600));
        assert_eq!(c.sip.listen[1].to_string(), "tcp:[::1]:5060");
        assert_eq!(c.sip.proxy.as_ref().unwrap().to_string(), "127.0.0.1:5090");
        let shown = c.effective_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("secret = \"***\""));
        // What check-config prints loads again to the same rules.
        let again = Config::from_toml_str(&shown.replace("\"***\"", "\"x\"")).unwrap();
        assert_eq!(again.gateway.rules, c.gateway.rules);
    }

    #[test]
    fn defaults_need_only_the_secret() {
        let c = Config::from_toml_str("[xmpp]\nsecret = \"x\"\n").unwrap();
        assert_eq!(c.xmpp.port, 5347);
        assert_eq!(c.sip.listen.len(), 2);
        assert!(c.gateway.rules.aliases.is_empty());
        assert_eq!(problems(""), ["xmpp.secret"]);
    }

    #[test]
    fn table_forms_equal_ser_forms() {
        let table = SAMPLE
            .replace(
                "jdomain = \"jabber.sip.test=*\"",
                "jdomain = { domain = \"jabber.sip.test\", delimiter = \"*\" }",
            )
            .replace(
                "aliases = \"3;aim.xmpp.test;icq.xmpp.test;msn.xmpp.test=%;\"",
                "aliases = [{ domain = \"aim.xmpp.test\" }, { domain = \"icq.xmpp.test\" }, \
                 { domain = \"msn.xmpp.test\", delimiter = \"%\" }]",
            );
        let a = Config::from_toml_str(SAMPLE).unwrap();
        let b = Config::from_toml_str(&table).unwrap();
        assert_eq!(a.gateway.rules, b.gateway.rules);
    }

    #[test]
    fn proxy_forms() {
        let show = |s: &str| parse_proxy(s).map(|p| p.to_string());
        assert_eq!(show("127.0.0.1").as_deref(), Ok("127.0.0.1"));
        assert_eq!(show("127.0.0.1:5090").as_deref(), Ok("127.0.0.1:5090"));
        assert_eq!(show("udp:::1").as_deref(), Ok("udp:[::1]"));
        assert_eq!(
            show("tcp:proxy.example.com").as_deref(),
            Ok("tcp:proxy.example.com")
        );
        assert_eq!(show("tcp:[::1]:5070").as_deref(), Ok("tcp:[::1]:5070"));
        assert_eq!(
            show("proxy.example.com:5080").as_deref(),
            Ok("proxy.example.com:5080")
        );
        assert!(parse_proxy("host:0").is_err());
        assert!(parse_proxy("bad host").is_err());
    }

    #[test]
    fn ser_alias_syntax() {
        let parse = |s: &str| parse_aliases(RawAliases::Ser(s.into()));
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("0;").unwrap(), vec![]);
        assert_eq!(parse("1;aim.x.com").unwrap().len(), 1);
        assert_eq!(parse("2;aim.x.com;msn.x.com=%;").unwrap().len(), 2);
        assert!(parse("3;aim.x.com;msn.x.com=%;").is_err());
        assert!(parse("aim.x.com;").is_err());
        assert!(parse("1;msn.x.com=%%;").is_err());
        assert!(parse("1;msn.x.com=@;").is_err());
        assert!(parse("1;bad domain;").is_err());
        let jd = |s: &str| parse_jdomain(RawJDomain::Ser(s.into()));
        assert_eq!(jd("j.x.com").unwrap().delimiter, '*');
        assert_eq!(jd("j.x.com=!").unwrap().delimiter, '!');
        assert!(jd("j.x.com=@").is_err());
        assert!(jd("j.x.com=").is_err());
    }

    #[test]
    fn every_problem_is_named() {
        let bad = SAMPLE
            .replace("\"3;aim", "\"2;aim")
            .replace("jabber.sip.test=*", "jabber.sip.test=@")
            .replace("sqlite://var/sipjab.db", "postgres://x/y")
            .replace("\"::1/128\"", "\"::1/999\"")
            .replace("tcp:[::1]:5060", "sctp:[::1]:5060");
        assert_eq!(
            problems(&bad),
            [
                "sip.listen[1]",
                "sip.trusted[1]",
                "gateway.jdomain",
                "gateway.aliases",
                "db.url"
            ]
        );
        assert_eq!(
            problems(&SAMPLE.replace("3;aim.xmpp.test", "3;jabber.sip.test")),
            ["gateway.aliases"]
        );
        assert_eq!(
            problems(&format!("{SAMPLE}[presence]\nauthorize = \"maybe\"\n")),
            ["presence.authorize"]
        );
        assert_eq!(
            problems(&SAMPLE.replace("port = 5347", "port = \"x\"")),
            ["xmpp.port"]
        );
        assert_eq!(
            problems(&SAMPLE.replace("cache_time", "cache_tme")),
            ["gateway.cache_tme"]
        );
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment::Jail's closure type")]
    fn environment_overrides_and_keeps_strings() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("sipjab.toml", SAMPLE)?;
            jail.set_env("SIPJAB_XMPP__SECRET", "00123");
            jail.set_env("SIPJAB_XMPP__PORT", "15347");
            jail.set_env("SIPJAB_GATEWAY__CACHE_TIME", "5");
            jail.set_env("SIPJAB_CONFIG", "ignored.toml");
            jail.set_env("SIPJAB_TEST_MYSQL", "not a config key");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.xmpp.secret.expose(), "00123");
            assert_eq!(c.xmpp.port, 15347);
            assert_eq!(c.gateway.cache_time, Duration::from_secs(5));
            jail.set_env("SIPJAB_GATEWAY__ALIASES", "1;aim.xmpp.test");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.gateway.rules.aliases.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn named_file_must_exist() {
        let err = Config::load(Some(Path::new("/nonexistent/sipjab.toml"))).unwrap_err();
        assert_eq!(err.problems[0].key, "config");
    }
}
