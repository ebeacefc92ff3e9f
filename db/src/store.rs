//! [`Store`]: one async interface over the SQLite and MySQL backends.

use std::fmt;

use crate::aor::SipAor;
use crate::error::Error;
use crate::model::{Account, ID_MAX, Network, NetworkAccount, SECRET_MAX, check_len};
use crate::mysql::Mysql;
use crate::sqlite::Sqlite;
use crate::url::DbUrl;

/// What each backend implements; [`Store`] checks arguments and dispatches.
pub(crate) trait Backend {
    async fn schema_version(&self) -> Result<Option<i64>, Error>;
    async fn add_account(
        &self,
        sip: &SipAor,
        jab_id: &str,
        passwd: Option<&str>,
    ) -> Result<Account, Error>;
    async fn accounts(&self) -> Result<Vec<Account>, Error>;
    async fn account_by_sip(&self, sip: &SipAor) -> Result<Option<Account>, Error>;
    async fn account_by_jab_id(&self, jab_id: &str) -> Result<Option<Account>, Error>;
    async fn remove_account(&self, sip: &SipAor) -> Result<bool, Error>;
    async fn set_network(&self, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error>;
    async fn remove_network(&self, sip: &SipAor, n: Network) -> Result<bool, Error>;
    async fn networks(&self, juid: i64) -> Result<Vec<NetworkAccount>, Error>;
}

/// The candidates (found on the index by `sip:user@` prefix) that really are
/// `sip`: same scheme, decoded user and host. Rows whose `sip_id` does not
/// parse cannot be anyone's and are skipped.
pub(crate) fn matching(candidates: Vec<Account>, sip: &SipAor) -> Vec<Account> {
    candidates
        .into_iter()
        .filter(|a| a.sip_aor().is_ok_and(|aor| aor == *sip))
        .collect()
}

#[derive(Clone, Debug)]
enum Inner {
    Sqlite(Sqlite),
    Mysql(Mysql),
}

/// The gateway's account store: SER's `jusers` and network tables on SQLite
/// or MySQL.
///
/// Cheap to clone (the connection or pool is shared), so each task can hold
/// one. Every method is async and never blocks the runtime.
#[derive(Clone)]
pub struct Store {
    inner: Inner,
    url: DbUrl,
}

/// Dispatches `$call` to whichever backend `$self` holds.
macro_rules! dispatch {
    ($self:ident . $($call:tt)*) => {
        match &$self.inner {
            Inner::Sqlite(b) => b.$($call)*.await,
            Inner::Mysql(b) => b.$($call)*.await,
        }
    };
}

impl Store {
    /// Opens an existing store without touching its schema.
    ///
    /// A missing SQLite file is [`Error::Missing`], a database without SER's
    /// tables [`Error::NotInitialised`]: both mean "run `sipjab db init`".
    pub async fn open(url: &DbUrl) -> Result<Self, Error> {
        let inner = match url {
            DbUrl::Sqlite { path } => Inner::Sqlite(Sqlite::open(path).await?),
            DbUrl::Mysql { url } => Inner::Mysql(Mysql::open(url).await?),
        };
        Ok(Self {
            inner,
            url: url.clone(),
        })
    }

    /// Creates the SQLite file and whatever tables are missing, and records
    /// the schema version once. Idempotent: on an initialised database, or
    /// one SER created, it changes nothing of SER's.
    pub async fn init(url: &DbUrl) -> Result<Self, Error> {
        let inner = match url {
            DbUrl::Sqlite { path } => Inner::Sqlite(Sqlite::init(path).await?),
            DbUrl::Mysql { url } => Inner::Mysql(Mysql::init(url).await?),
        };
        Ok(Self {
            inner,
            url: url.clone(),
        })
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// The version in `sipjab_schema`; `None` for a database only SER has
    /// touched (it works as is; `init` adds the table).
    pub async fn schema_version(&self) -> Result<Option<i64>, Error> {
        dispatch!(self.schema_version())
    }

    /// Adds an account for `sip` with `type = 0`, storing `sip` in its
    /// normalised form.
    ///
    /// [`Error::DuplicateSip`] or [`Error::DuplicateJabId`] if either is
    /// taken (SER's schema has no unique keys, so this checks in the same
    /// transaction); nothing is changed then.
    pub async fn add_account(
        &self,
        sip: &SipAor,
        jab_id: &str,
        passwd: Option<&str>,
    ) -> Result<Account, Error> {
        check_len("sip_id", &sip.to_string(), ID_MAX)?;
        if jab_id.is_empty() {
            return Err(Error::Empty { field: "jab_id" });
        }
        check_len("jab_id", jab_id, ID_MAX)?;
        if let Some(p) = passwd {
            check_len("jab_passwd", p, SECRET_MAX)?;
        }
        dispatch!(self.add_account(sip, jab_id, passwd))
    }

    /// Every account, by `juid`.
    pub async fn accounts(&self) -> Result<Vec<Account>, Error> {
        dispatch!(self.accounts())
    }

    /// The account for `sip`, comparing scheme, decoded user and host (any
    /// case) and ignoring port and parameters of both sides. Should an old
    /// database hold several, the one with the lowest `juid`.
    pub async fn account_by_sip(&self, sip: &SipAor) -> Result<Option<Account>, Error> {
        dispatch!(self.account_by_sip(sip))
    }

    /// The account using `jab_id` (compared case-insensitively, as MySQL's
    /// default collations do).
    pub async fn account_by_jab_id(&self, jab_id: &str) -> Result<Option<Account>, Error> {
        dispatch!(self.account_by_jab_id(jab_id))
    }

    /// Removes the account for `sip` and its network rows in one transaction;
    /// `false` if there was none.
    pub async fn remove_account(&self, sip: &SipAor) -> Result<bool, Error> {
        dispatch!(self.remove_account(sip))
    }

    /// Inserts or replaces the account's row in `n.network`'s table.
    ///
    /// [`Error::UnknownAccount`] if no account has `sip`, and
    /// [`Error::InvalidNetworkId`] or [`Error::TooLong`] if SER's columns
    /// cannot hold `n`; nothing is changed then.
    pub async fn set_network(&self, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error> {
        n.check()?;
        dispatch!(self.set_network(sip, n))
    }

    /// Removes the account's row in `n`'s table; `false` if it had none,
    /// [`Error::UnknownAccount`] if no account has `sip`.
    pub async fn remove_network(&self, sip: &SipAor, n: Network) -> Result<bool, Error> {
        dispatch!(self.remove_network(sip, n))
    }

    /// The network rows of account `juid`, in [`Network::ALL`] order.
    pub async fn networks(&self, juid: i64) -> Result<Vec<NetworkAccount>, Error> {
        dispatch!(self.networks(juid))
    }

    /// Closes the MySQL pool (of every clone of this store) and waits for its
    /// connections to end; for SQLite the file closes with the last clone.
    pub async fn close(self) -> Result<(), Error> {
        match self.inner {
            Inner::Sqlite(_) => Ok(()),
            Inner::Mysql(m) => m.close().await,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        // The gateway spawns store calls on a multi-threaded runtime.
        let url = DbUrl::Sqlite {
            path: "/nonexistent/x.db".into(),
        };
        let open = Store::open(&url);
        assert_send(&open);
        fn calls(s: &Store, sip: &SipAor) {
            assert_send(&s.add_account(sip, "a", None));
            assert_send(&s.account_by_sip(sip));
            assert_send(&s.set_network(sip, &NetworkAccount::new(Network::Icq, "1", None, None)));
            assert_send(&s.remove_account(sip));
        }
        let _ = calls;
    }
}
