//! The one error type of the account store.

use std::path::PathBuf;

use crate::model::Network;

/// Everything that can go wrong in `sipjab-db`.
///
/// Callers match on the variants they can act on (a duplicate, an unknown
/// account, a missing database file) and report the rest; the wrapped driver
/// errors keep their source for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database URL could not be parsed; `url` has its password redacted.
    #[error("bad database URL {url:?}: {reason}")]
    Url {
        /// The URL as given, password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A SIP address of record could not be parsed.
    #[error("bad SIP URI {uri:?}: {reason}")]
    Aor {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A network name other than `aim`, `icq`, `msn` or `yahoo`.
    #[error("unknown IM network {name:?} (expected aim, icq, msn or yahoo)")]
    UnknownNetwork {
        /// The name as given.
        name: String,
    },
    /// The SQLite file to open does not exist (only `init` creates it).
    #[error("database file {} does not exist; create it with `sipjab db init`", path.display())]
    Missing {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// The database exists but has no `jusers` table: `init` was never run.
    #[error("database {db} has no sip_jab tables; create them with `sipjab db init`")]
    NotInitialised {
        /// The database, as a redacted URL.
        db: String,
    },
    /// The database was written by a newer gateway whose schema we don't know.
    #[error("database schema version {found} is newer than this gateway's {supported}")]
    SchemaTooNew {
        /// The version found in `sipjab_schema`.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// The database has no state tables (sessions, roster, SIP subscriptions,
    /// publications, rooms): it is SER's own or was initialised by an older
    /// gateway. Account methods still work; `sipjab db init` adds the tables.
    #[error(
        "database schema version {} is older than {needed}, which the gateway's state tables need; upgrade it with `sipjab db init`",
        found.map_or_else(|| "none".to_owned(), |v| v.to_string())
    )]
    SchemaTooOld {
        /// The version found in `sipjab_schema`, `None` without that table.
        found: Option<i64>,
        /// The version that has the state tables.
        needed: i64,
    },
    /// Creating the SQLite file's directory failed.
    #[error("cannot create directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another account already has this SIP address; nothing was changed.
    #[error("an account for {sip} already exists")]
    DuplicateSip {
        /// The SIP address, normalised.
        sip: String,
    },
    /// Another account already uses this Jabber ID; nothing was changed.
    #[error("the Jabber ID {jab_id} is already used by another account")]
    DuplicateJabId {
        /// The Jabber ID as given.
        jab_id: String,
    },
    /// No account has this SIP address; nothing was changed.
    #[error("no account for {sip}")]
    UnknownAccount {
        /// The SIP address, normalised.
        sip: String,
    },
    /// An id that the network's SER column cannot hold (ICQ ids are `INT`).
    #[error("{id:?} is not a valid {network} id")]
    InvalidNetworkId {
        /// The network.
        network: Network,
        /// The id as given.
        id: String,
    },
    /// A required value was empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The column.
        field: &'static str,
    },
    /// A value longer than SER's `VARCHAR` column; MySQL would truncate it.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The column.
        field: &'static str,
        /// Its `VARCHAR` length.
        max: usize,
    },
    /// A row read from the database has a NULL or a value of the wrong type
    /// where the SER schema says otherwise (an old or hand-edited database).
    #[error("bad value in {table}.{column}: {reason}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What was found.
        reason: String,
    },
    /// An error from SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An error from the MySQL/MariaDB client or server.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// A blocking SQLite task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The SQLite connection's thread is gone (a call panicked on it).
    #[error("the SQLite connection's thread stopped")]
    WorkerGone,
    /// The write was done, but the transaction it shared with others
    /// (SQLite group commit) failed to commit, so it was undone.
    #[error("sqlite: the grouped commit failed: {reason}")]
    RolledBack {
        /// SQLite's error.
        reason: String,
    },
}

/// [`Error::BadRow`] for `table.column`: a stored value neither backend can read.
pub(crate) fn bad(table: &'static str, column: &'static str, reason: String) -> Error {
    Error::BadRow {
        table,
        column,
        reason,
    }
}

/// A NOT NULL column that was NULL is [`Error::BadRow`].
pub(crate) fn required(
    v: Option<String>,
    table: &'static str,
    column: &'static str,
) -> Result<String, Error> {
    v.ok_or_else(|| bad(table, column, "NULL in a NOT NULL column".to_owned()))
}
