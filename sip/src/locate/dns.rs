//! [`Lookup`] over `hickory-resolver` on tokio (UDP and TCP to the nameservers only: no
//! DNS over TLS or HTTPS, no DNSSEC). Answers are cached for their TTL by hickory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use super::{Destination, Lookup, Naptr, Srv, locate};
use crate::{Error, Target};

/// DNS answers for [`locate`](super::locate) from the system's resolvers. Cheap to clone
/// (clones share the cache).
#[derive(Clone, Debug)]
pub struct DnsLookup {
    resolver: TokioResolver,
}

impl DnsLookup {
    /// Uses the nameservers, search list and options of `/etc/resolv.conf`.
    ///
    /// When the file is missing or names no nameserver, asks `127.0.0.1:53`, as the C
    /// library does, and logs a warning.
    pub fn from_system_conf() -> Result<Self, Error> {
        let builder = match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no usable system DNS configuration, asking 127.0.0.1");
                let local = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![local]),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let resolver = builder
            .build()
            .map_err(|e| Error::Dns(format!("resolver setup: {e}")))?;
        Ok(Self { resolver })
    }

    /// Asks only the nameserver at `addr` (UDP, and TCP for truncated answers), with
    /// default options and no search list: for tests and fixed setups.
    pub fn with_nameserver(addr: SocketAddr) -> Result<Self, Error> {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
        let mut options = ResolverOpts::default();
        // COMPAT: hickory's default reads /etc/hosts too, which would mix the host's
        // names into a fixed setup's answers.
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| Error::Dns(format!("resolver setup: {e}")))?;
        Ok(Self { resolver })
    }

    /// [`locate`](super::locate) with this resolver: the targets for `dest`, best first.
    pub async fn locate(&self, dest: &Destination) -> Result<Vec<Target>, Error> {
        locate(self, dest).await
    }

    async fn records(&self, name: &str, kind: RecordType) -> Result<Vec<RData>, Error> {
        match self.resolver.lookup(name, kind).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) => no_records(e, kind, name),
        }
    }
}

/// NXDOMAIN and empty answers are no records; anything else is a failure.
fn no_records<T>(e: NetError, kind: RecordType, name: &str) -> Result<Vec<T>, Error> {
    if e.is_no_records_found() {
        Ok(Vec::new())
    } else {
        Err(Error::Dns(format!("{kind} {name}: {e}")))
    }
}

impl Lookup for DnsLookup {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, Error> {
        let records = self.records(name, RecordType::NAPTR).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    services: String::from_utf8_lossy(&n.services).into_owned(),
                    regexp: String::from_utf8_lossy(&n.regexp).into_owned(),
                    replacement: n.replacement.to_string(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, Error> {
        let records = self.records(name, RecordType::SRV).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_string(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
        match self.resolver.lookup_ip(name).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) => no_records(e, RecordType::AAAA, name),
        }
    }
}
