//! The embedded backend: one SQLite file through `rusqlite` (SQLite 3,
//! <https://sqlite.org/lang.html>).
//!
//! rusqlite is blocking, so the connection lives on a thread of its own and
//! every call is a job sent to it, answered through a oneshot channel: one
//! connection means no `SQLITE_BUSY` between our own calls, and jobs queued
//! by concurrent callers run back to back without a thread hand-off each (a
//! `spawn_blocking` per call woke a pool thread and took a mutex every time,
//! which cost more than most statements). [`Store::go_online`] jobs queued
//! together share one transaction (group commit): each commit costs a WAL
//! write and a round of `fcntl` locks, the largest part of a REGISTER's
//! store time once the hand-offs were gone. WAL mode and a busy timeout let
//! the CLI write while the gateway runs.
//!
//! [`Store::go_online`]: crate::Store::go_online
//!
//! Several gateways on one file serialise their writes on SQLite's database
//! lock: every multi-statement write is a `BEGIN IMMEDIATE` transaction, and
//! an expiry is one `DELETE ... RETURNING` (SQLite 3.35+), so the rows it
//! returns are exactly the rows it deleted.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::aor::SipAor;
use crate::error::{Error, bad, required};
use crate::model::{Account, Network, NetworkAccount};
use crate::schema::{self, ACCOUNT_COLUMNS, SCHEMA_VERSION};
use crate::state::{Due, Publication, RosterItem, STATE_TABLES, Session, StateRow, Val, q, sql};
use crate::store::{Backend, matching};

/// How long a writer waits for another process's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A job for the connection's thread: it runs on the connection and returns how to hand
/// its result over once its transaction is settled (`None`: committed; `Some(why)`: the
/// group it ran in was rolled back).
type Job = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Option<String>) + Send>;

/// A queued job, and whether it may share a transaction with others queued next to it.
struct Queued {
    job: Job,
    group: bool,
}

/// Jobs committed together at most (group commit).
const GROUP_MAX: usize = 64;

/// A shared SQLite connection: the sending end of its thread's job queue.
/// The thread ends, closing the file, when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Sqlite {
    jobs: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens an existing file; [`Error::Missing`] if there is none.
    pub(crate) async fn open(path: &Path) -> Result<Self, Error> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, Error> {
            if !path.exists() {
                return Err(Error::Missing { path });
            }
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&conn)?;
            if !table_exists(&conn, "jusers")? {
                return Err(Error::NotInitialised {
                    db: format!("sqlite://{}", path.display()),
                });
            }
            check_version(&conn)?;
            Ok(conn)
        })
        .await??;
        Self::spawn(conn)
    }

    /// Creates the file, its directory and the schema as needed.
    ///
    /// Several gateways (or `db init` beside a gateway) may do this at once. Switching a new
    /// file to WAL can then fail with `SQLITE_BUSY` without SQLite waiting in the busy
    /// handler, so a busy failure is tried again, for up to the busy timeout.
    pub(crate) async fn init(path: &Path) -> Result<Self, Error> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, Error> {
            let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
            loop {
                match init_once(&path) {
                    Err(Error::Sqlite(e))
                        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    other => return other,
                }
            }
        })
        .await??;
        Self::spawn(conn)
    }

    /// Starts the thread that owns `conn`.
    fn spawn(mut conn: Connection) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("sipjab-sqlite".to_owned())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    if !first.group {
                        (first.job)(&mut conn)(None);
                        continue;
                    }
                    let mut group = vec![first.job];
                    let mut after = None;
                    while group.len() < GROUP_MAX {
                        match queue.try_recv() {
                            Ok(q) if q.group => group.push(q.job),
                            Ok(q) => {
                                after = Some(q.job);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    run_group(&mut conn, group);
                    if let Some(job) = after {
                        job(&mut conn)(None);
                    }
                }
            })
            .map_err(|source| Error::Io {
                path: PathBuf::from("<sqlite thread>"),
                source,
            })?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the connection's thread. A panic in `f` ends the thread
    /// (and the connection, rolling back its transaction); later calls then
    /// fail with [`Error::WorkerGone`].
    async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        self.queue(false, f).await
    }

    /// [`Sqlite::call`] for a job of single statements, without a
    /// transaction of its own: jobs like it queued together run in one
    /// transaction, so one commit (one WAL append, one round of file locks)
    /// serves them all. Its answer waits for that commit.
    async fn call_grouped<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        self.queue(true, f).await
    }

    async fn queue<T, F>(&self, group: bool, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |rolled_back: Option<String>| {
                let result = match rolled_back {
                    Some(reason) => result.and(Err(Error::RolledBack { reason })),
                    None => result,
                };
                // The caller may have gone (a cancelled future): nobody to tell.
                let _ = tx.send(result);
            })
        });
        self.jobs
            .send(Queued { job, group })
            .map_err(|_| Error::WorkerGone)?;
        rx.await.map_err(|_| Error::WorkerGone)?
    }
}

/// Runs grouped jobs in one `BEGIN IMMEDIATE` ... `COMMIT` and then hands
/// their results over; a single job, or a group whose transaction cannot
/// start, runs in autocommit mode. If the commit fails, every job of the
/// group is told so (a job whose statement failed alone keeps its error, and
/// the others' writes commit).
fn run_group(conn: &mut Connection, group: Vec<Job>) {
    if group.len() == 1 || conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        for job in group {
            job(conn)(None);
        }
        return;
    }
    let replies: Vec<Reply> = group.into_iter().map(|job| job(conn)).collect();
    let rolled_back = match conn.execute_batch("COMMIT") {
        Ok(()) => None,
        Err(e) => {
            // The transaction may already be gone (SQLite rolls back by
            // itself on some errors); then this fails too, harmlessly.
            let _ = conn.execute_batch("ROLLBACK");
            Some(e.to_string())
        }
    };
    for reply in replies {
        reply(rolled_back.clone());
    }
}

impl Backend for Sqlite {
    async fn schema_version(&self) -> Result<Option<i64>, Error> {
        self.call(|c| version(c)).await
    }

    async fn add_account(
        &self,
        sip: &SipAor,
        jab_id: &str,
        passwd: Option<&str>,
    ) -> Result<Account, Error> {
        let (sip, jab_id, passwd) = (sip.clone(), jab_id.to_owned(), passwd.map(str::to_owned));
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !matching(candidates(&tx, &sip)?, &sip).is_empty() {
                return Err(Error::DuplicateSip {
                    sip: sip.to_string(),
                });
            }
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT juid FROM jusers WHERE jab_id = ?1 COLLATE NOCASE LIMIT 1",
                    [&jab_id],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(Error::DuplicateJabId { jab_id });
            }
            let sip_id = sip.to_string();
            tx.execute(
                "INSERT INTO jusers (jab_id, jab_passwd, sip_id, type) VALUES (?1, ?2, ?3, 0)",
                params![jab_id, passwd, sip_id],
            )?;
            let juid = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Account {
                juid,
                jab_id,
                jab_passwd: passwd,
                sip_id,
                kind: 0,
            })
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<Account>, Error> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM jusers ORDER BY juid"
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(account(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn account_by_sip(&self, sip: &SipAor) -> Result<Option<Account>, Error> {
        let sip = sip.clone();
        self.call(move |c| Ok(matching(candidates(c, &sip)?, &sip).into_iter().next()))
            .await
    }

    async fn account_by_jab_id(&self, jab_id: &str) -> Result<Option<Account>, Error> {
        let jab_id = jab_id.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(BY_JAB_ID)?;
            let mut rows = stmt.query([&jab_id])?;
            rows.next()?.map(account).transpose()
        })
        .await
    }

    async fn account_by_juid(&self, juid: i64) -> Result<Option<Account>, Error> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(BY_JUID)?;
            let mut rows = stmt.query([juid])?;
            rows.next()?.map(account).transpose()
        })
        .await
    }

    async fn remove_account(&self, sip: &SipAor, state: bool) -> Result<bool, Error> {
        let sip = sip.clone();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = matching(candidates(&tx, &sip)?, &sip);
            for a in &found {
                tx.execute("DELETE FROM jusers WHERE juid = ?1", [a.juid])?;
                let state_tables = if state { &STATE_TABLES[..] } else { &[] };
                for t in Network::ALL.map(Network::table).iter().chain(state_tables) {
                    tx.execute(&format!("DELETE FROM {t} WHERE juid = ?1"), [a.juid])?;
                }
            }
            tx.commit()?;
            Ok(!found.is_empty())
        })
        .await
    }

    async fn set_network(&self, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error> {
        let (sip, n) = (sip.clone(), n.clone());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let juid = juid_of(&tx, &sip)?;
            let (delete, insert) = schema::network_upsert(n.network);
            tx.execute(&delete, [juid])?;
            let id = match n.network {
                Network::Icq => rusqlite::types::Value::Integer(parse_icq(&n)?),
                _ => rusqlite::types::Value::Text(n.id.clone()),
            };
            tx.execute(&insert, params![juid, id, n.passwd, n.nick])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn remove_network(&self, sip: &SipAor, n: Network) -> Result<bool, Error> {
        let sip = sip.clone();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let juid = juid_of(&tx, &sip)?;
            let (delete, _) = schema::network_upsert(n);
            let removed = tx.execute(&delete, [juid])?;
            tx.commit()?;
            Ok(removed > 0)
        })
        .await
    }

    async fn networks(&self, juid: i64) -> Result<Vec<NetworkAccount>, Error> {
        self.call(move |c| {
            let mut stmt = c.prepare(schema::NETWORKS_QUERY)?;
            let mut rows = stmt.query([juid, juid, juid, juid])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(network_account(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list<R: StateRow>(&self, sql: String, args: Vec<Val>) -> Result<Vec<R>, Error> {
        self.call(move |c| rows::<R>(c, &sql, &args)).await
    }

    async fn upsert<R: StateRow>(&self, row: R) -> Result<R, Error> {
        self.call(move |c| {
            let sql = format!("{} RETURNING {}", upsert_sql::<R>(), R::SELECT.join(", "));
            rows::<R>(c, &sql, &row.write())?
                .into_iter()
                .next()
                .ok_or_else(|| bad(R::TABLE, "?", "upsert returned no row".to_owned()))
        })
        .await
    }

    async fn upsert_many<R: StateRow>(&self, rows: Vec<R>) -> Result<(), Error> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(&upsert_sql::<R>())?;
                for r in &rows {
                    stmt.execute(rusqlite::params_from_iter(r.write()))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn update<R: StateRow>(&self, row: R) -> Result<Option<R>, Error> {
        self.call(move |c| {
            let sql = format!(
                "{} RETURNING {}",
                sql::update::<R>("max"),
                R::SELECT.join(", ")
            );
            let mut args = row.write();
            args.extend(row.key());
            args.push(Val::Int(row.version()));
            Ok(rows::<R>(c, &sql, &args)?.into_iter().next())
        })
        .await
    }

    async fn row(&self, sql: &'static str, columns: usize) -> Result<Vec<Val>, Error> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query([])?;
            let mut out = vec![Val::Null; columns];
            if let Some(row) = rows.next()? {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = match row.get_ref(i)? {
                        ValueRef::Integer(n) => Val::Int(n),
                        ValueRef::Null => Val::Null,
                        _ => return Err(bad("?", "?", "not an integer".to_owned())),
                    };
                }
            }
            Ok(out)
        })
        .await
    }

    async fn execute(&self, sql: String, args: Vec<Val>) -> Result<u64, Error> {
        self.call(move |c| {
            let n = c
                .prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(args))?;
            Ok(n as u64)
        })
        .await
    }

    async fn expire<R: StateRow>(&self, due: Vec<Due>, limit: usize) -> Result<Vec<R>, Error> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::new();
            for d in &due {
                let left = limit.saturating_sub(out.len());
                if left == 0 {
                    break;
                }
                let sql = expire_sql::<R>(d);
                let left = i64::try_from(left).unwrap_or(i64::MAX);
                out.extend(rows::<R>(&tx, &sql, &[Val::Int(d.bound), Val::Int(left)])?);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn replace<R: StateRow>(
        &self,
        rows: Vec<R>,
        delete: String,
        args: Vec<Val>,
    ) -> Result<(), Error> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(&upsert_sql::<R>())?;
                for r in &rows {
                    stmt.execute(rusqlite::params_from_iter(r.write()))?;
                }
            }
            tx.prepare_cached(&delete)?
                .execute(rusqlite::params_from_iter(args))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn go_online(&self, s: Session) -> Result<(Session, Vec<RosterItem>), Error> {
        // One upsert and one read: many REGISTERs share a commit.
        self.call_grouped(move |c| {
            let sql = format!(
                "{} ON CONFLICT(juid) DO UPDATE SET {} RETURNING {}",
                sql::insert::<Session>(1),
                sql::upsert_set_of::<Session>(q::ONLINE_SET, "max", |c| format!("excluded.{c}")),
                Session::SELECT.join(", ")
            );
            let session = rows::<Session>(c, &sql, &s.write())?
                .into_iter()
                .next()
                .ok_or_else(|| bad(Session::TABLE, "?", "upsert returned no row".to_owned()))?;
            let subscribers = rows::<RosterItem>(
                c,
                &sql::select::<RosterItem>(q::SUBSCRIBERS),
                &[Val::Int(s.juid)],
            )?;
            Ok((session, subscribers))
        })
        .await
    }

    async fn touch_session(&self, juid: i64, now: i64) -> Result<bool, Error> {
        // SQLite counts matched rows, changed or not.
        let n = self
            .execute(
                "UPDATE sipjab_sessions SET last_activity = max(last_activity, ?1) WHERE juid = ?2"
                    .to_owned(),
                vec![Val::Int(now), Val::Int(juid)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn next_local_cseq(&self, id: i64) -> Result<Option<i64>, Error> {
        self.call(move |c| {
            Ok(c.prepare_cached(
                "UPDATE sipjab_sip_subscriptions SET local_cseq = local_cseq + 1
                 WHERE id = ?1 RETURNING local_cseq",
            )?
            .query_row([id], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn refresh_publication(
        &self,
        old_etag: &str,
        new: Publication,
        now: i64,
    ) -> Result<Option<Publication>, Error> {
        let old_etag = old_etag.to_owned();
        self.call(move |c| {
            let sql = format!(
                "{} RETURNING {}",
                q::REFRESH_PUBLICATION,
                Publication::SELECT.join(", ")
            );
            let args = [
                Val::from(new.etag.as_str()),
                Val::Int(new.expires_at),
                Val::from(new.body.as_str()),
                Val::Int(new.updated_at),
                Val::from(old_etag),
                Val::Int(new.juid),
                Val::Int(now),
            ];
            Ok(rows::<Publication>(c, &sql, &args)?.into_iter().next())
        })
        .await
    }
}

/// `INSERT ... ON CONFLICT DO UPDATE` for one row of `R`.
fn upsert_sql<R: StateRow>() -> String {
    format!(
        "{} ON CONFLICT({}) DO UPDATE SET {}",
        sql::insert::<R>(1),
        R::CONFLICT.join(", "),
        sql::upsert_set::<R>("max", |c| format!("excluded.{c}"))
    )
}

/// Deletes the oldest due rows, at most `?2`, returning them.
fn expire_sql<R: StateRow>(d: &Due) -> String {
    let (t, pk, col, op) = (R::TABLE, R::KEY[0], d.column, d.op);
    format!(
        "DELETE FROM {t} WHERE {pk} IN
           (SELECT {pk} FROM {t} WHERE {col} {op} ?1 ORDER BY {col} LIMIT ?2)
         RETURNING {}",
        R::SELECT.join(", ")
    )
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Self::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Self::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

/// Runs `sql` (a query, or a write with `RETURNING`) and decodes its rows.
fn rows<R: StateRow>(c: &Connection, sql: &str, args: &[Val]) -> Result<Vec<R>, Error> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(state_row(row)?);
    }
    Ok(out)
}

/// One row of a state table selected with [`StateRow::SELECT`].
fn state_row<R: StateRow>(row: &rusqlite::Row<'_>) -> Result<R, Error> {
    let mut v = Vec::with_capacity(R::SELECT.len());
    for (i, column) in R::SELECT.iter().enumerate() {
        v.push(match row.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(n) => Val::Int(n),
            ValueRef::Text(t) => Val::Text(
                String::from_utf8(t.to_vec())
                    .map_err(|_| bad(R::TABLE, column, "not UTF-8".to_owned()))?,
            ),
            ValueRef::Real(_) => return Err(bad(R::TABLE, column, "a real number".to_owned())),
            ValueRef::Blob(_) => return Err(bad(R::TABLE, column, "a blob".to_owned())),
        });
    }
    R::from_values(v)
}

/// The ICQ id as the `INT` SER stores (checked by [`NetworkAccount::check`]).
fn parse_icq(n: &NetworkAccount) -> Result<i64, Error> {
    n.id.parse().map_err(|_| Error::InvalidNetworkId {
        network: n.network,
        id: n.id.clone(),
    })
}

/// The prefix range query on the `COLLATE NOCASE` index of `sip_id`.
const CANDIDATES: &str = "SELECT juid, jab_id, jab_passwd, sip_id, type FROM jusers
    WHERE sip_id COLLATE NOCASE >= ?1 AND sip_id COLLATE NOCASE < ?2 ORDER BY juid";

/// Looks an account up by Jabber ID on the `COLLATE NOCASE` index of `jab_id`.
const BY_JAB_ID: &str = "SELECT juid, jab_id, jab_passwd, sip_id, type FROM jusers
    WHERE jab_id = ?1 COLLATE NOCASE ORDER BY juid LIMIT 1";

const BY_JUID: &str = "SELECT juid, jab_id, jab_passwd, sip_id, type FROM jusers WHERE juid = ?1";

/// Rows whose `sip_id` starts with `sip:user@` in any case, on the NOCASE index.
fn candidates(c: &Connection, sip: &SipAor) -> Result<Vec<Account>, Error> {
    let low = sip.key_prefix();
    // The prefix ends in '@'; every string starting with it sorts below the
    // same prefix ending in the next character.
    let high = format!("{}A", &low[..low.len() - 1]);
    let mut stmt = c.prepare_cached(CANDIDATES)?;
    let mut rows = stmt.query([&low, &high])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(account(row)?);
    }
    Ok(out)
}

/// The `juid` of the account for `sip`, or [`Error::UnknownAccount`].
fn juid_of(c: &Connection, sip: &SipAor) -> Result<i64, Error> {
    matching(candidates(c, sip)?, sip)
        .first()
        .map(|a| a.juid)
        .ok_or_else(|| Error::UnknownAccount {
            sip: sip.to_string(),
        })
}

/// One attempt of [`Sqlite::init`]: the directory, the file in WAL mode, the schema and
/// its version, in one `BEGIN IMMEDIATE` transaction.
fn init_once(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: PathBuf::from(dir),
            source,
        })?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with a row, so it is a query, not a batch.
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    configure(&conn)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(schema::SQLITE_DDL)?;
    match version(&tx)? {
        None => {
            tx.execute(
                "INSERT INTO sipjab_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        // The DDL above created the newer tables; record them.
        Some(v) if v < SCHEMA_VERSION => {
            tx.execute("UPDATE sipjab_schema SET version = ?1", [SCHEMA_VERSION])?;
        }
        Some(_) => {}
    }
    tx.commit()?;
    Ok(conn)
}

/// Per-connection settings: the busy timeout, and `synchronous = NORMAL` if
/// the file is in WAL mode (as `init` leaves it).
///
/// In WAL mode NORMAL syncs at checkpoints instead of at every commit
/// (<https://sqlite.org/pragma.html#pragma_synchronous>): a commit survives
/// a crash of the gateway, and a power loss can undo the last few but never
/// corrupts the file. That doubles the presence write rate (every presence
/// change is a commit), and what a power loss can undo is state that SIP
/// refreshes and XMPP presence rebuild anyway.
/// In a rollback journal it could corrupt the file, so there it stays FULL.
fn configure(conn: &Connection) -> Result<(), Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

/// Whether `name` is a table of this database.
fn table_exists(c: &Connection, name: &str) -> Result<bool, Error> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// The gateway schema version; `None` for a database only SER has touched.
fn version(c: &Connection) -> Result<Option<i64>, Error> {
    if !table_exists(c, "sipjab_schema")? {
        return Ok(None);
    }
    let max: Option<i64> =
        c.query_row("SELECT MAX(version) FROM sipjab_schema", [], |r| r.get(0))?;
    Ok(max)
}

/// Refuses a database written by a newer gateway.
fn check_version(c: &Connection) -> Result<(), Error> {
    match version(c)? {
        Some(found) if found > SCHEMA_VERSION => Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// A `jusers` row selected with [`ACCOUNT_COLUMNS`].
fn account(row: &rusqlite::Row<'_>) -> Result<Account, Error> {
    let t = "jusers";
    let kind = int(row.get_ref(4)?, t, "type")?;
    Ok(Account {
        juid: int(row.get_ref(0)?, t, "juid")?,
        jab_id: required(text(row.get_ref(1)?, t, "jab_id")?, t, "jab_id")?,
        jab_passwd: text(row.get_ref(2)?, t, "jab_passwd")?,
        sip_id: required(text(row.get_ref(3)?, t, "sip_id")?, t, "sip_id")?,
        kind: i32::try_from(kind)
            .map_err(|_| bad(t, "type", format!("{kind} is out of INT range")))?,
    })
}

/// A row of [`schema::NETWORKS_QUERY`].
fn network_account(row: &rusqlite::Row<'_>) -> Result<NetworkAccount, Error> {
    let t = "network tables";
    let name = required(text(row.get_ref(0)?, t, "network")?, t, "network")?;
    let network: Network = name.parse()?;
    Ok(NetworkAccount {
        network,
        id: required(
            text(row.get_ref(1)?, network.table(), "id")?,
            network.table(),
            "id",
        )?,
        passwd: text(row.get_ref(2)?, network.table(), "passwd")?,
        nick: text(row.get_ref(3)?, network.table(), "nick")?,
    })
}

/// An integer column; SQLite's loose typing may hand us text holding one.
fn int(v: ValueRef<'_>, table: &'static str, column: &'static str) -> Result<i64, Error> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad(table, column, "text that is not an integer".to_owned())),
        ValueRef::Null => Err(bad(table, column, "NULL".to_owned())),
        ValueRef::Real(_) => Err(bad(table, column, "a real number".to_owned())),
        ValueRef::Blob(_) => Err(bad(table, column, "a blob".to_owned())),
    }
}

/// A text column; `None` for NULL, integers (ICQ ids) as decimal text.
fn text(
    v: ValueRef<'_>,
    table: &'static str,
    column: &'static str,
) -> Result<Option<String>, Error> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8(t.to_vec())
            .map(Some)
            .map_err(|_| bad(table, column, "not UTF-8".to_owned())),
        ValueRef::Integer(i) => Ok(Some(i.to_string())),
        ValueRef::Real(_) => Err(bad(table, column, "a real number".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str) -> Vec<String> {
        let c = Connection::open_in_memory().expect("in-memory db");
        c.execute_batch(schema::SQLITE_DDL).expect("ddl");
        let mut stmt = c
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let n = stmt.parameter_count();
        let args: Vec<&str> = vec!["x"; n];
        stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// `(statement, index its plan must search)` for the state tables' hot
    /// queries: the benchmark has 100,000 online users with a contact each.
    fn state_queries() -> Vec<(String, &'static str)> {
        use crate::state::{ContactResource, Room, RosterItem, Session, SipSubscription};
        let due = |column| Due {
            column,
            op: "<=",
            bound: 0,
        };
        vec![
            (
                // The key's juid range, already in contact order: a roster is
                // mostly `from`/`both`, so a (juid, subscription) index would
                // not pay for its writes.
                sql::select::<RosterItem>(q::SUBSCRIBERS),
                "sqlite_autoindex_sipjab_roster_1 (juid=?)",
            ),
            (sql::get::<RosterItem>(), "sqlite_autoindex_sipjab_roster_1"),
            (
                sql::select::<ContactResource>(q::CONTACT_PRESENCE),
                "sqlite_autoindex_sipjab_contact_presence_1 (juid=? AND contact=?)",
            ),
            (
                format!(
                    "DELETE FROM {} {}",
                    ContactResource::TABLE,
                    q::CONTACT_PRESENCE_BEFORE
                ),
                "sqlite_autoindex_sipjab_contact_presence_1 (juid=? AND contact=?)",
            ),
            (sql::get::<Session>(), "INTEGER PRIMARY KEY"),
            (
                expire_sql::<Session>(&due("expires_at")),
                "sipjab_sessions_expires",
            ),
            (
                expire_sql::<Session>(&due("last_activity")),
                "sipjab_sessions_activity",
            ),
            (
                sql::select::<SipSubscription>(q::DIALOG),
                "sipjab_sip_subscriptions_dialog",
            ),
            (
                sql::select::<SipSubscription>(q::WITH_CONTACT),
                "sipjab_sip_subscriptions_owner",
            ),
            (
                sql::select::<SipSubscription>(q::EXPIRING),
                "sipjab_sip_subscriptions_expires",
            ),
            (
                expire_sql::<SipSubscription>(&due("expires_at")),
                "sipjab_sip_subscriptions_expires",
            ),
            (
                sql::select::<Publication>("WHERE juid = ? ORDER BY etag"),
                "sipjab_publications_juid",
            ),
            (
                expire_sql::<Publication>(&due("expires_at")),
                "sipjab_publications_expires",
            ),
            (
                sql::select::<Room>("WHERE juid = ? ORDER BY room"),
                "sqlite_autoindex_sipjab_rooms_1",
            ),
            (
                format!("DELETE FROM {} WHERE juid = ?", SipSubscription::TABLE),
                "sipjab_sip_subscriptions_owner",
            ),
            (
                format!("DELETE FROM {} WHERE juid = ?", Publication::TABLE),
                "sipjab_publications_juid",
            ),
        ]
    }

    #[test]
    fn deadlines_read_index_ends() {
        let p = plan(crate::state::Deadlines::SQL);
        for index in [
            "sipjab_sessions_expires",
            "sipjab_sessions_activity",
            "sipjab_sip_subscriptions_expires",
            "sipjab_publications_expires",
        ] {
            assert!(
                p.iter()
                    .any(|l| l.starts_with("SEARCH") && l.contains(index)),
                "{index}: {p:?}"
            );
        }
        // The outer SELECT without FROM is one constant row, not a table.
        assert!(
            !p.iter()
                .any(|l| l.starts_with("SCAN") && l != "SCAN CONSTANT ROW"),
            "{p:?}"
        );
    }

    #[test]
    fn normal_sync_only_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = |c: &Connection| -> i64 {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("pragma")
        };
        let c = Connection::open(dir.path().join("rollback.db")).expect("open");
        configure(&c).expect("configure");
        assert_eq!(sync(&c), 2, "FULL");
        let c = Connection::open(dir.path().join("wal.db")).expect("open");
        let _: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("wal");
        configure(&c).expect("configure");
        assert_eq!(sync(&c), 1, "NORMAL");
    }

    #[test]
    fn state_queries_use_indexes() {
        for (sql, index) in state_queries() {
            let p = plan(&sql);
            assert!(
                p.iter()
                    .any(|l| l.starts_with("SEARCH") && l.contains(index)),
                "{sql}: {p:?}"
            );
            assert!(!p.iter().any(|l| l.starts_with("SCAN")), "{sql}: {p:?}");
        }
    }

    #[test]
    fn lookups_use_the_nocase_indexes() {
        // The benchmark puts 100,000 accounts in the store: no table scans.
        let p = plan(CANDIDATES);
        assert!(
            p.iter()
                .any(|l| l.contains("USING INDEX sipjab_jusers_sip_id")),
            "{p:?}"
        );
        let p = plan(BY_JAB_ID);
        assert!(
            p.iter()
                .any(|l| l.contains("USING INDEX sipjab_jusers_jab_id")),
            "{p:?}"
        );
    }
}
