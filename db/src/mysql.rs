//! The MySQL/MariaDB backend through `mysql_async`, reading SER's own
//! `sip_jab` database (MySQL reference manual, "SQL Statements").
//!
//! Writes run in a transaction and lock what they check with
//! `SELECT ... FOR UPDATE`, so two gateways or a gateway and the CLI cannot
//! both add `sip:alice@x`. COMPAT: SER's scripts often created the tables as
//! MyISAM, which ignores transactions; there a multi-statement write is not
//! atomic against a crash, though every check still runs before any change.
//!
//! The state tables are always InnoDB. An expiry sweep runs in one
//! transaction: `SELECT ... ORDER BY expires_at LIMIT n FOR UPDATE` locks
//! the due rows (a second sweeper waits, then skips rows the first deleted),
//! and `DELETE ... WHERE pk IN (...)` removes exactly those. This works on
//! MySQL, which has no `DELETE ... RETURNING` (MariaDB has); deadlock victims
//! are retried. Upserts and compare-and-set updates are one autocommitted
//! statement each, followed by a read of the stored row: two round trips on
//! the presence path instead of four.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, Row, TxOpts, Value};

use crate::aor::SipAor;
use crate::error::{Error, bad, required};
use crate::model::{Account, Network, NetworkAccount};
use crate::schema::{self, ACCOUNT_COLUMNS, SCHEMA_VERSION};
use crate::state::{Due, Publication, RosterItem, STATE_TABLES, Session, StateRow, Val, q, sql};
use crate::store::{Backend, matching};
use crate::url::redact;

/// Connections kept open (at least, at most) unless the URL says otherwise.
const POOL: Option<PoolConstraints> = PoolConstraints::new(2, 16);

/// A connection pool to one database.
#[derive(Clone)]
pub(crate) struct Mysql {
    pool: Pool,
}

impl std::fmt::Debug for Mysql {
    /// Without the pool: its options hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql").finish_non_exhaustive()
    }
}

impl Mysql {
    /// Connects and checks that SER's tables are there.
    pub(crate) async fn open(url: &str) -> Result<Self, Error> {
        let me = Self::connect(url)?;
        let mut conn = me.pool.get_conn().await?;
        if !table_exists(&mut conn, "jusers").await? {
            return Err(Error::NotInitialised { db: redact(url) });
        }
        check_version(version(&mut conn).await?)?;
        Ok(me)
    }

    /// Creates whatever of the schema is missing; the database must exist.
    pub(crate) async fn init(url: &str) -> Result<Self, Error> {
        let me = Self::connect(url)?;
        let mut conn = me.pool.get_conn().await?;
        // DDL commits implicitly in MySQL, so it runs outside the transaction.
        for ddl in schema::MYSQL_DDL {
            conn.query_drop(*ddl).await?;
        }
        drop(conn);
        retry(|| record_version_once(&me.pool)).await?;
        Ok(me)
    }

    fn connect(url: &str) -> Result<Self, Error> {
        let mut opts = Opts::from_url(url).map_err(|_| Error::Url {
            url: redact(url),
            reason: "not a valid mysql:// URL",
        })?;
        // mysql_async resets a connection (COM_RESET_CONNECTION) whenever it
        // goes back to the pool, which also drops its prepared statements, so
        // every call would prepare again: a third of the presence path's
        // round trips. We keep no session state between calls (transactions
        // end or roll back on drop; LAST_INSERT_ID is read from the OK
        // packet), so skip it unless the URL asks for it.
        let mut pool = opts.pool_opts().clone();
        if !url.contains("reset_connection=") {
            pool = pool.with_reset_connection(false);
        }
        // mysql_async opens up to 100 connections by default: one busy gateway could take
        // most of a MariaDB's default 151, and two of the store's tests side by side took
        // them all. The gateway's calls are short; `pool_min=`/`pool_max=` in the URL say
        // otherwise.
        if !url.contains("pool_min=")
            && !url.contains("pool_max=")
            && let Some(constraints) = POOL
        {
            pool = pool.with_constraints(constraints);
        }
        opts = OptsBuilder::from_opts(opts).pool_opts(pool).into();
        Ok(Self {
            pool: Pool::new(opts),
        })
    }

    /// Closes the pool's connections.
    pub(crate) async fn close(self) -> Result<(), Error> {
        Ok(self.pool.disconnect().await?)
    }
}

impl Backend for Mysql {
    async fn schema_version(&self) -> Result<Option<i64>, Error> {
        let mut conn = self.pool.get_conn().await?;
        version(&mut conn).await
    }

    async fn add_account(
        &self,
        sip: &SipAor,
        jab_id: &str,
        passwd: Option<&str>,
    ) -> Result<Account, Error> {
        retry(|| add_account_once(&self.pool, sip, jab_id, passwd)).await
    }

    async fn accounts(&self) -> Result<Vec<Account>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM jusers ORDER BY juid"
            ))
            .await?;
        rows.into_iter().map(account).collect()
    }

    async fn account_by_sip(&self, sip: &SipAor) -> Result<Option<Account>, Error> {
        let mut conn = self.pool.get_conn().await?;
        Ok(matching(candidates(&mut conn, sip, false).await?, sip)
            .into_iter()
            .next())
    }

    async fn account_by_jab_id(&self, jab_id: &str) -> Result<Option<Account>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM jusers WHERE jab_id = ? ORDER BY juid LIMIT 1"
                ),
                (jab_id,),
            )
            .await?;
        row.map(account).transpose()
    }

    async fn account_by_juid(&self, juid: i64) -> Result<Option<Account>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                format!("SELECT {ACCOUNT_COLUMNS} FROM jusers WHERE juid = ?"),
                (juid,),
            )
            .await?;
        row.map(account).transpose()
    }

    async fn remove_account(&self, sip: &SipAor, state: bool) -> Result<bool, Error> {
        retry(|| remove_account_once(&self.pool, sip, state)).await
    }

    async fn set_network(&self, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error> {
        retry(|| set_network_once(&self.pool, sip, n)).await
    }

    async fn remove_network(&self, sip: &SipAor, n: Network) -> Result<bool, Error> {
        retry(|| remove_network_once(&self.pool, sip, n)).await
    }

    async fn networks(&self, juid: i64) -> Result<Vec<NetworkAccount>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let rows: Vec<Row> = conn
            .exec(schema::NETWORKS_QUERY, (juid, juid, juid, juid))
            .await?;
        rows.into_iter().map(network_account).collect()
    }

    async fn list<R: StateRow>(&self, sql: String, args: Vec<Val>) -> Result<Vec<R>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let rows: Vec<Row> = conn.exec(sql, params(args)).await?;
        rows.into_iter().map(state_row).collect()
    }

    async fn upsert<R: StateRow>(&self, row: R) -> Result<R, Error> {
        retry(|| upsert_once(&self.pool, &row)).await
    }

    async fn upsert_many<R: StateRow>(&self, rows: Vec<R>) -> Result<(), Error> {
        retry(|| upsert_many_once(&self.pool, &rows)).await
    }

    async fn update<R: StateRow>(&self, row: R) -> Result<Option<R>, Error> {
        retry(|| update_once(&self.pool, &row)).await
    }

    async fn row(&self, sql: &'static str, columns: usize) -> Result<Vec<Val>, Error> {
        let mut conn = self.pool.get_conn().await?;
        let row: Option<Row> = conn.query_first(sql).await?;
        let mut out = vec![Val::Null; columns];
        if let Some(row) = row {
            for (o, v) in out.iter_mut().zip(values(row, "?")?) {
                *o = match v {
                    Value::NULL => Val::Null,
                    v => Val::Int(int(v, "?", "?")?),
                };
            }
        }
        Ok(out)
    }

    async fn execute(&self, sql: String, args: Vec<Val>) -> Result<u64, Error> {
        retry(|| async {
            let mut conn = self.pool.get_conn().await?;
            conn.exec_drop(&sql, params(args.clone())).await?;
            Ok(conn.affected_rows())
        })
        .await
    }

    async fn expire<R: StateRow>(&self, due: Vec<Due>, limit: usize) -> Result<Vec<R>, Error> {
        retry(|| expire_once(&self.pool, &due, limit)).await
    }

    async fn replace<R: StateRow>(
        &self,
        rows: Vec<R>,
        delete: String,
        args: Vec<Val>,
    ) -> Result<(), Error> {
        retry(|| async {
            let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
            for chunk in rows.chunks(BULK_ROWS) {
                let values: Vec<Val> = chunk.iter().flat_map(StateRow::write).collect();
                tx.exec_drop(upsert_sql::<R>(chunk.len()), params(values))
                    .await?;
            }
            tx.exec_drop(&delete, params(args.clone())).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn go_online(&self, s: Session) -> Result<(Session, Vec<RosterItem>), Error> {
        retry(|| go_online_once(&self.pool, &s)).await
    }

    async fn touch_session(&self, juid: i64, now: i64) -> Result<bool, Error> {
        let changed = self
            .execute(
                "UPDATE sipjab_sessions SET last_activity = GREATEST(last_activity, ?) WHERE juid = ?"
                    .to_owned(),
                vec![Val::Int(now), Val::Int(juid)],
            )
            .await?;
        if changed > 0 {
            return Ok(true);
        }
        // MySQL counts changed rows only (unless `client_found_rows`): an
        // unchanged session needs a look.
        let mut conn = self.pool.get_conn().await?;
        let found: Option<i64> = conn
            .exec_first("SELECT 1 FROM sipjab_sessions WHERE juid = ?", (juid,))
            .await?;
        Ok(found.is_some())
    }

    async fn next_local_cseq(&self, id: i64) -> Result<Option<i64>, Error> {
        retry(|| async {
            let mut conn = self.pool.get_conn().await?;
            // LAST_INSERT_ID(expr) hands the new value back in the OK packet:
            // one atomic statement (the MySQL manual's sequence idiom).
            conn.exec_drop(
                "UPDATE sipjab_sip_subscriptions
                 SET local_cseq = LAST_INSERT_ID(local_cseq + 1) WHERE id = ?",
                (id,),
            )
            .await?;
            if conn.affected_rows() == 0 {
                return Ok(None);
            }
            let v = conn.last_insert_id().ok_or_else(|| {
                bad(
                    "sipjab_sip_subscriptions",
                    "local_cseq",
                    "no value after increment".to_owned(),
                )
            })?;
            i64::try_from(v).map(Some).map_err(|_| {
                bad(
                    "sipjab_sip_subscriptions",
                    "local_cseq",
                    format!("{v} is out of range"),
                )
            })
        })
        .await
    }

    async fn refresh_publication(
        &self,
        old_etag: &str,
        new: Publication,
        now: i64,
    ) -> Result<Option<Publication>, Error> {
        retry(|| refresh_publication_once(&self.pool, old_etag, &new, now)).await
    }
}

/// `INSERT ... ON DUPLICATE KEY UPDATE` for `n` rows of `R`.
///
/// COMPAT: `VALUES(col)` is deprecated since MySQL 8.0.20 in favour of a row
/// alias (`... AS new ... new.col`), which MariaDB does not accept; both
/// still run `VALUES(col)`.
fn upsert_sql<R: StateRow>(n: usize) -> String {
    format!(
        "{} ON DUPLICATE KEY UPDATE {}",
        sql::insert::<R>(n),
        sql::upsert_set::<R>("GREATEST", |c| format!("VALUES({c})"))
    )
}

/// Rows per multi-row `INSERT` of a bulk write (well under the protocol's
/// 65,535 placeholders).
const BULK_ROWS: usize = 500;

/// Driver parameters; no parameters must be `Params::Empty`.
fn params(args: Vec<Val>) -> Params {
    if args.is_empty() {
        return Params::Empty;
    }
    Params::Positional(args.into_iter().map(Value::from).collect())
}

impl From<Val> for Value {
    fn from(v: Val) -> Self {
        match v {
            Val::Null => Self::NULL,
            Val::Int(i) => Self::Int(i),
            Val::Text(t) => Self::Bytes(t.into_bytes()),
        }
    }
}

/// One attempt of [`Backend::upsert`]: the write (one autocommitted
/// statement), then the stored row (its `version`, its `id`) read back.
///
/// Not one transaction, to save two round trips on a hot path: the row read
/// back may already hold a later writer's change, which is the stored state
/// the caller should cache anyway. Should a remove get in between, the
/// upsert runs again, as if it had come after the remove.
async fn upsert_once<R: StateRow>(pool: &Pool, row: &R) -> Result<R, Error> {
    let mut conn = pool.get_conn().await?;
    for _ in 0..DEADLOCK_RETRIES {
        conn.exec_drop(upsert_sql::<R>(1), params(row.write()))
            .await?;
        let got: Option<Row> = conn
            .exec_first(sql::get_by_conflict::<R>(), params(row.conflict()))
            .await?;
        if let Some(got) = got {
            return state_row(got);
        }
    }
    Err(bad(
        R::TABLE,
        "?",
        "row removed after every upsert".to_owned(),
    ))
}

/// One attempt of [`Backend::go_online`]: the upsert, then the session and
/// its subscribers read back on the same connection (not one transaction,
/// as for [`upsert_once`]).
async fn go_online_once(pool: &Pool, s: &Session) -> Result<(Session, Vec<RosterItem>), Error> {
    let mut conn = pool.get_conn().await?;
    let upsert = format!(
        "{} ON DUPLICATE KEY UPDATE {}",
        sql::insert::<Session>(1),
        sql::upsert_set_of::<Session>(q::ONLINE_SET, "GREATEST", |c| format!("VALUES({c})"))
    );
    conn.exec_drop(upsert, params(s.write())).await?;
    let got: Option<Row> = conn.exec_first(sql::get::<Session>(), (s.juid,)).await?;
    let Some(got) = got else {
        return Err(bad(
            Session::TABLE,
            "?",
            "session removed right after it was written".to_owned(),
        ));
    };
    let subscribers: Vec<Row> = conn
        .exec(sql::select::<RosterItem>(q::SUBSCRIBERS), (s.juid,))
        .await?;
    Ok((
        state_row(got)?,
        subscribers
            .into_iter()
            .map(state_row)
            .collect::<Result<_, _>>()?,
    ))
}

/// One attempt of [`Backend::upsert_many`], in multi-row statements.
async fn upsert_many_once<R: StateRow>(pool: &Pool, rows: &[R]) -> Result<(), Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    for chunk in rows.chunks(BULK_ROWS) {
        let args: Vec<Val> = chunk.iter().flat_map(StateRow::write).collect();
        tx.exec_drop(upsert_sql::<R>(chunk.len()), params(args))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One attempt of [`Backend::update`]: the compare-and-set (one
/// autocommitted statement), then the stored row read back (which, as for
/// [`upsert_once`], may include a later writer's change; `None` if a remove
/// got in between).
async fn update_once<R: StateRow>(pool: &Pool, row: &R) -> Result<Option<R>, Error> {
    let mut conn = pool.get_conn().await?;
    let mut args = row.write();
    args.extend(row.key());
    args.push(Val::Int(row.version()));
    conn.exec_drop(sql::update::<R>("GREATEST"), params(args))
        .await?;
    // `version` always changes, so a matched row is a changed row.
    if conn.affected_rows() == 0 {
        return Ok(None);
    }
    let got: Option<Row> = conn.exec_first(sql::get::<R>(), params(row.key())).await?;
    got.map(state_row).transpose()
}

/// One attempt of [`Backend::expire`]: lock the due rows, delete exactly
/// those, commit.
async fn expire_once<R: StateRow>(pool: &Pool, due: &[Due], limit: usize) -> Result<Vec<R>, Error> {
    let pk = R::KEY[0];
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let mut out: Vec<R> = Vec::new();
    for d in due {
        let left = limit.saturating_sub(out.len());
        if left == 0 {
            break;
        }
        let select = sql::select::<R>(&format!(
            "WHERE {col} {op} ? ORDER BY {col} LIMIT ? FOR UPDATE",
            col = d.column,
            op = d.op
        ));
        let left = i64::try_from(left).unwrap_or(i64::MAX);
        let rows: Vec<Row> = tx.exec(select, (d.bound, left)).await?;
        let got = rows
            .into_iter()
            .map(state_row)
            .collect::<Result<Vec<R>, Error>>()?;
        for chunk in got.chunks(BULK_ROWS) {
            let keys: Vec<Val> = chunk.iter().flat_map(StateRow::key).collect();
            let marks = vec!["?"; keys.len()].join(", ");
            tx.exec_drop(
                format!("DELETE FROM {} WHERE {pk} IN ({marks})", R::TABLE),
                params(keys),
            )
            .await?;
        }
        out.extend(got);
    }
    tx.commit().await?;
    Ok(out)
}

/// One attempt of [`Backend::refresh_publication`].
async fn refresh_publication_once(
    pool: &Pool,
    old_etag: &str,
    new: &Publication,
    now: i64,
) -> Result<Option<Publication>, Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    tx.exec_drop(
        q::REFRESH_PUBLICATION,
        (
            &new.etag,
            new.expires_at,
            &new.body,
            new.updated_at,
            old_etag,
            new.juid,
            now,
        ),
    )
    .await?;
    if tx.affected_rows() == 0 {
        return Ok(None);
    }
    let got: Option<Row> = tx
        .exec_first(sql::get::<Publication>(), (&new.etag,))
        .await?;
    tx.commit().await?;
    got.map(state_row).transpose()
}

/// One row of a state table selected with [`StateRow::SELECT`].
fn state_row<R: StateRow>(row: Row) -> Result<R, Error> {
    let mut v = Vec::with_capacity(R::SELECT.len());
    for (value, column) in values(row, R::TABLE)?.into_iter().zip(R::SELECT) {
        v.push(match value {
            Value::NULL => Val::Null,
            Value::Int(i) => Val::Int(i),
            Value::UInt(u) => Val::Int(
                i64::try_from(u)
                    .map_err(|_| bad(R::TABLE, column, format!("{u} is out of range")))?,
            ),
            Value::Bytes(b) => Val::Text(
                String::from_utf8(b).map_err(|_| bad(R::TABLE, column, "not UTF-8".to_owned()))?,
            ),
            other => return Err(bad(R::TABLE, column, format!("unexpected {other:?}"))),
        });
    }
    R::from_values(v)
}

/// How often a write is retried after InnoDB chose it as a deadlock victim.
const DEADLOCK_RETRIES: u32 = 10;

/// MySQL's `ER_LOCK_DEADLOCK`: typically two writers holding `FOR UPDATE`
/// gap locks on the same empty `sip_id` range, both wanting to insert.
const ER_LOCK_DEADLOCK: u16 = 1213;

/// Runs a write transaction again when the server rolled it back for a
/// deadlock; the rerun sees the winner's row and fails cleanly (e.g. with
/// [`Error::DuplicateSip`]).
async fn retry<T, F, Fut>(mut once: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 0;
    loop {
        match once().await {
            Err(Error::Mysql(mysql_async::Error::Server(e)))
                if e.code == ER_LOCK_DEADLOCK && attempt < DEADLOCK_RETRIES =>
            {
                attempt += 1;
                // Back off with jitter, or the losers retake their gap locks
                // at once and block the winner's insert again.
                let jitter = RandomState::new().build_hasher().finish() % 8;
                let ms = (2u64 << attempt.min(6)) + jitter;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            other => return other,
        }
    }
}

/// Inserts the `sipjab_schema` row unless there is one (one attempt).
async fn record_version_once(pool: &Pool) -> Result<(), Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let current: Option<i64> = tx
        .query_first("SELECT MAX(version) FROM sipjab_schema FOR UPDATE")
        .await?
        .flatten();
    match current {
        None => {
            tx.exec_drop(
                "INSERT INTO sipjab_schema (version) VALUES (?)",
                (SCHEMA_VERSION,),
            )
            .await?;
        }
        // The DDL before created the newer tables; record them.
        Some(v) if v < SCHEMA_VERSION => {
            tx.exec_drop("UPDATE sipjab_schema SET version = ?", (SCHEMA_VERSION,))
                .await?;
        }
        found => check_version(found)?,
    }
    tx.commit().await?;
    Ok(())
}

/// One attempt of [`Backend::add_account`].
async fn add_account_once(
    pool: &Pool,
    sip: &SipAor,
    jab_id: &str,
    passwd: Option<&str>,
) -> Result<Account, Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    if !matching(candidates(&mut tx, sip, true).await?, sip).is_empty() {
        return Err(Error::DuplicateSip {
            sip: sip.to_string(),
        });
    }
    let taken: Option<Row> = tx
        .exec_first(
            "SELECT juid FROM jusers WHERE jab_id = ? LIMIT 1 FOR UPDATE",
            (jab_id,),
        )
        .await?;
    if taken.is_some() {
        return Err(Error::DuplicateJabId {
            jab_id: jab_id.to_owned(),
        });
    }
    let sip_id = sip.to_string();
    tx.exec_drop(
        "INSERT INTO jusers (jab_id, jab_passwd, sip_id, type) VALUES (?, ?, ?, 0)",
        (jab_id, passwd, &sip_id),
    )
    .await?;
    let juid = tx.last_insert_id().ok_or_else(|| {
        bad(
            "jusers",
            "juid",
            "no AUTO_INCREMENT id after INSERT".to_owned(),
        )
    })?;
    tx.commit().await?;
    Ok(Account {
        juid: i64::try_from(juid)
            .map_err(|_| bad("jusers", "juid", format!("{juid} is out of range")))?,
        jab_id: jab_id.to_owned(),
        jab_passwd: passwd.map(str::to_owned),
        sip_id,
        kind: 0,
    })
}

/// One attempt of [`Backend::remove_account`].
async fn remove_account_once(pool: &Pool, sip: &SipAor, state: bool) -> Result<bool, Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let found = matching(candidates(&mut tx, sip, true).await?, sip);
    let state_tables = if state { &STATE_TABLES[..] } else { &[] };
    for a in &found {
        tx.exec_drop("DELETE FROM jusers WHERE juid = ?", (a.juid,))
            .await?;
        for t in Network::ALL.map(Network::table).iter().chain(state_tables) {
            tx.exec_drop(format!("DELETE FROM {t} WHERE juid = ?"), (a.juid,))
                .await?;
        }
    }
    tx.commit().await?;
    Ok(!found.is_empty())
}

/// One attempt of [`Backend::set_network`].
async fn set_network_once(pool: &Pool, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let juid = juid_of(&mut tx, sip).await?;
    let (delete, insert) = schema::network_upsert(n.network);
    tx.exec_drop(delete, (juid,)).await?;
    let id = match n.network {
        Network::Icq => Value::Int(n.id.parse().map_err(|_| Error::InvalidNetworkId {
            network: n.network,
            id: n.id.clone(),
        })?),
        _ => Value::from(n.id.as_str()),
    };
    tx.exec_drop(insert, (juid, id, n.passwd.as_deref(), n.nick.as_deref()))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// One attempt of [`Backend::remove_network`].
async fn remove_network_once(pool: &Pool, sip: &SipAor, n: Network) -> Result<bool, Error> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let juid = juid_of(&mut tx, sip).await?;
    let (delete, _) = schema::network_upsert(n);
    tx.exec_drop(delete, (juid,)).await?;
    let removed = tx.affected_rows() > 0;
    tx.commit().await?;
    Ok(removed)
}

/// Escapes `LIKE` wildcards with `!` (not `\`, which `NO_BACKSLASH_ESCAPES`
/// would change).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Rows whose `sip_id` starts with `sip:user@`, on SER's `KEY(sip_id)`; in
/// the default case-insensitive collations this also finds `SIP:User@`.
/// `lock` takes `FOR UPDATE` locks (index range included) inside a write.
async fn candidates<Q: Queryable>(
    q: &mut Q,
    sip: &SipAor,
    lock: bool,
) -> Result<Vec<Account>, Error> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM jusers WHERE sip_id LIKE ? ESCAPE '!' ORDER BY juid{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let rows: Vec<Row> = q.exec(sql, (like_prefix(&sip.key_prefix()),)).await?;
    rows.into_iter().map(account).collect()
}

/// The `juid` of the account for `sip` (locked), or [`Error::UnknownAccount`].
async fn juid_of<Q: Queryable>(q: &mut Q, sip: &SipAor) -> Result<i64, Error> {
    matching(candidates(q, sip, true).await?, sip)
        .first()
        .map(|a| a.juid)
        .ok_or_else(|| Error::UnknownAccount {
            sip: sip.to_string(),
        })
}

/// Whether `name` is a table of the current database.
async fn table_exists<Q: Queryable>(q: &mut Q, name: &str) -> Result<bool, Error> {
    let n: Option<i64> = q
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            (name,),
        )
        .await?;
    Ok(n.unwrap_or(0) > 0)
}

/// The gateway schema version; `None` for a database only SER has touched.
async fn version<Q: Queryable>(q: &mut Q) -> Result<Option<i64>, Error> {
    if !table_exists(q, "sipjab_schema").await? {
        return Ok(None);
    }
    let v: Option<Option<i64>> = q
        .query_first("SELECT MAX(version) FROM sipjab_schema")
        .await?;
    Ok(v.flatten())
}

/// Refuses a database written by a newer gateway.
fn check_version(found: Option<i64>) -> Result<(), Error> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// The values of a row, failing on a column that was already taken.
fn values(row: Row, table: &'static str) -> Result<Vec<Value>, Error> {
    row.unwrap_raw()
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| Error::BadRow {
                table,
                column: "?",
                reason: "value missing from row".to_owned(),
            })
        })
        .collect()
}

/// A `jusers` row selected with [`ACCOUNT_COLUMNS`].
fn account(row: Row) -> Result<Account, Error> {
    let t = "jusers";
    let mut v = values(row, t)?.into_iter();
    let mut next = || v.next().unwrap_or(Value::NULL);
    let juid = int(next(), t, "juid")?;
    let jab_id = required(text(next(), t, "jab_id")?, t, "jab_id")?;
    let jab_passwd = text(next(), t, "jab_passwd")?;
    let sip_id = required(text(next(), t, "sip_id")?, t, "sip_id")?;
    let kind = int(next(), t, "type")?;
    Ok(Account {
        juid,
        jab_id,
        jab_passwd,
        sip_id,
        kind: i32::try_from(kind)
            .map_err(|_| bad(t, "type", format!("{kind} is out of INT range")))?,
    })
}

/// A row of [`schema::NETWORKS_QUERY`].
fn network_account(row: Row) -> Result<NetworkAccount, Error> {
    let t = "network tables";
    let mut v = values(row, t)?.into_iter();
    let mut next = || v.next().unwrap_or(Value::NULL);
    let network: Network = required(text(next(), t, "network")?, t, "network")?.parse()?;
    let tn = network.table();
    Ok(NetworkAccount {
        network,
        id: required(text(next(), tn, "id")?, tn, "id")?,
        passwd: text(next(), tn, "passwd")?,
        nick: text(next(), tn, "nick")?,
    })
}

/// An integer column, from the binary (typed) or text protocol.
fn int(v: Value, table: &'static str, column: &'static str) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(i),
        Value::UInt(u) => {
            i64::try_from(u).map_err(|_| bad(table, column, format!("{u} is out of range")))
        }
        Value::Bytes(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad(table, column, "not an integer".to_owned())),
        Value::NULL => Err(bad(table, column, "NULL".to_owned())),
        other => Err(bad(table, column, format!("unexpected {other:?}"))),
    }
}

/// A text column; `None` for NULL, integers (ICQ ids) as decimal text.
fn text(v: Value, table: &'static str, column: &'static str) -> Result<Option<String>, Error> {
    match v {
        Value::NULL => Ok(None),
        Value::Bytes(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| bad(table, column, "not UTF-8".to_owned())),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::UInt(u) => Ok(Some(u.to_string())),
        other => Err(bad(table, column, format!("unexpected {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("sip:a_b%20c!@"), "sip:a!_b!%20c!!@%");
    }

    #[test]
    fn odd_values_are_errors_not_panics() {
        assert!(int(Value::NULL, "t", "c").is_err());
        assert!(int(Value::Bytes(b"x".to_vec()), "t", "c").is_err());
        assert_eq!(int(Value::Bytes(b"42".to_vec()), "t", "c").ok(), Some(42));
        assert!(int(Value::UInt(u64::MAX), "t", "c").is_err());
        assert!(text(Value::Bytes(vec![0xff]), "t", "c").is_err());
        assert_eq!(
            text(Value::Int(7), "t", "c").ok(),
            Some(Some("7".to_owned()))
        );
        assert!(text(Value::Double(1.5), "t", "c").is_err());
    }
}
