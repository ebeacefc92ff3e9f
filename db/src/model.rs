//! The rows of SER's `sip_jab` database as Rust values.

use std::fmt;
use std::str::FromStr;

use crate::aor::SipAor;
use crate::error::Error;

/// Column lengths of SER's schema: `VARCHAR(128)` ids, `VARCHAR(50)` secrets
/// and nicks. Checked before writing because MySQL outside strict mode
/// silently truncates.
pub(crate) const ID_MAX: usize = 128;
/// See [`ID_MAX`].
pub(crate) const SECRET_MAX: usize = 50;

/// Fails with [`Error::TooLong`] if `value` does not fit a `VARCHAR(max)`.
pub(crate) fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.chars().count() > max {
        return Err(Error::TooLong { field, max });
    }
    Ok(())
}

/// One `jusers` row: a SIP user and the Jabber account the gateway logs in
/// as on their behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Account {
    /// `juid`, the key of the network tables.
    pub juid: i64,
    /// `jab_id`, the Jabber user name.
    pub jab_id: String,
    /// `jab_passwd`; NULL in SER means none set.
    pub jab_passwd: Option<String>,
    /// `sip_id` exactly as stored (old SER rows may be in any case or carry
    /// parameters); see [`Account::sip_aor`] for the parsed form.
    pub sip_id: String,
    /// SER's `type` column, kept as is. SER only loads rows with `type = 0`
    /// and we write 0.
    pub kind: i32,
}

impl Account {
    /// An account value, e.g. a fake db answer in the gateway's tests;
    /// `#[non_exhaustive]` keeps struct literals out of other crates.
    pub fn new(juid: i64, jab_id: &str, jab_passwd: Option<&str>, sip_id: &str) -> Self {
        Self {
            juid,
            jab_id: jab_id.to_owned(),
            jab_passwd: jab_passwd.map(str::to_owned),
            sip_id: sip_id.to_owned(),
            kind: 0,
        }
    }

    /// `sip_id` parsed, for comparison with other addresses.
    pub fn sip_aor(&self) -> Result<SipAor, Error> {
        SipAor::parse(&self.sip_id)
    }
}

/// The IM networks SER reached through Jabber transports; each has its own
/// table named after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Network {
    /// AOL Instant Messenger, table `aim`.
    Aim,
    /// ICQ, table `icq` (numeric ids).
    Icq,
    /// MSN Messenger, table `msn`.
    Msn,
    /// Yahoo! Messenger, table `yahoo`.
    Yahoo,
}

impl Network {
    /// All networks, in table-name order.
    pub const ALL: [Self; 4] = [Self::Aim, Self::Icq, Self::Msn, Self::Yahoo];

    /// The lowercase name, which is also the SER table name and the prefix of
    /// its columns (`icq_id`, `icq_passwd`, `icq_nick`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aim => "aim",
            Self::Icq => "icq",
            Self::Msn => "msn",
            Self::Yahoo => "yahoo",
        }
    }

    /// The SER table holding this network's accounts.
    pub fn table(self) -> &'static str {
        self.as_str()
    }

    /// Checks that `id` fits the SER column: `icq_id` is `INT`, the others
    /// `VARCHAR(128)`.
    pub(crate) fn check_id(self, id: &str) -> Result<(), Error> {
        let bad = || Error::InvalidNetworkId {
            network: self,
            id: id.to_owned(),
        };
        match self {
            Self::Icq => match id.parse::<u32>() {
                Ok(n) if i32::try_from(n).is_ok() && !id.starts_with('+') => Ok(()),
                _ => Err(bad()),
            },
            _ if id.is_empty() => Err(bad()),
            _ => check_len("network id", id, ID_MAX),
        }
    }
}

impl FromStr for Network {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownNetwork { name: s.to_owned() })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of one of the network tables (`icq`, `msn`, `aim`, `yahoo`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkAccount {
    /// Which table.
    pub network: Network,
    /// `<net>_id`, the user's id on that network (a decimal number for ICQ).
    pub id: String,
    /// `<net>_passwd`.
    pub passwd: Option<String>,
    /// `<net>_nick`.
    pub nick: Option<String>,
}

impl NetworkAccount {
    /// A row for `network`; `#[non_exhaustive]` keeps struct literals out of
    /// other crates, so this is how they build one.
    pub fn new(
        network: Network,
        id: impl Into<String>,
        passwd: Option<&str>,
        nick: Option<&str>,
    ) -> Self {
        Self {
            network,
            id: id.into(),
            passwd: passwd.map(str::to_owned),
            nick: nick.map(str::to_owned),
        }
    }

    /// Checks every field against its SER column before writing.
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.network.check_id(&self.id)?;
        if let Some(p) = &self.passwd {
            check_len("network password", p, SECRET_MAX)?;
        }
        if let Some(n) = &self.nick {
            check_len("network nick", n, SECRET_MAX)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names() {
        for n in Network::ALL {
            assert_eq!(n.as_str().parse::<Network>().ok(), Some(n));
            assert_eq!(n.to_string(), n.table());
        }
        assert_eq!("ICQ".parse::<Network>().ok(), Some(Network::Icq));
        assert!(matches!(
            "jabber".parse::<Network>(),
            Err(Error::UnknownNetwork { .. })
        ));
    }

    #[test]
    fn network_ids() {
        assert!(Network::Icq.check_id("123456789").is_ok());
        for bad in ["", "12a", "-5", "+5", "4294967295", "2147483648"] {
            assert!(Network::Icq.check_id(bad).is_err(), "{bad:?}");
        }
        assert!(Network::Msn.check_id("bob@hotmail.com").is_ok());
        assert!(Network::Aim.check_id("").is_err());
        assert!(matches!(
            Network::Yahoo.check_id(&"y".repeat(129)),
            Err(Error::TooLong { .. })
        ));
    }
}
