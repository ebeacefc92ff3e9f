//! [`Store`]: one async interface over the SQLite and MySQL backends.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::aor::SipAor;
use crate::error::Error;
use crate::model::{Account, ID_MAX, Network, NetworkAccount, SECRET_MAX, check_len};
use crate::mysql::Mysql;
use crate::schema::STATE_VERSION;
use crate::sqlite::Sqlite;
use crate::state::{
    ContactResource, Deadlines, Direction, Due, Publication, Room, RosterItem, Session,
    SipSubscription, StateRow, TOKEN_MAX, Val, q, sql,
};
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
    async fn account_by_juid(&self, juid: i64) -> Result<Option<Account>, Error>;
    /// `state`: the state tables exist and lose the account's rows too.
    async fn remove_account(&self, sip: &SipAor, state: bool) -> Result<bool, Error>;
    async fn set_network(&self, sip: &SipAor, n: &NetworkAccount) -> Result<(), Error>;
    async fn remove_network(&self, sip: &SipAor, n: Network) -> Result<bool, Error>;
    async fn networks(&self, juid: i64) -> Result<Vec<NetworkAccount>, Error>;

    // The state tables (schema version 2), generic over the row type.

    /// The rows `sql` (a [`sql::select`]) finds.
    async fn list<R: StateRow>(&self, sql: String, args: Vec<Val>) -> Result<Vec<R>, Error>;
    /// Inserts or replaces `row` on [`StateRow::CONFLICT`]; the stored row.
    async fn upsert<R: StateRow>(&self, row: R) -> Result<R, Error>;
    /// [`Backend::upsert`] of every row, in one transaction.
    async fn upsert_many<R: StateRow>(&self, rows: Vec<R>) -> Result<(), Error>;
    /// Writes `row` if the stored one still has `row.version()`; the stored
    /// row, or `None` if it changed or is gone.
    async fn update<R: StateRow>(&self, row: R) -> Result<Option<R>, Error>;
    /// The values of the first row `sql` returns (NULL-filled if none).
    async fn row(&self, sql: &'static str, columns: usize) -> Result<Vec<Val>, Error>;
    /// Runs one write; the number of rows it changed.
    async fn execute(&self, sql: String, args: Vec<Val>) -> Result<u64, Error>;
    /// Atomically deletes and returns at most `limit` rows matching any of
    /// `due` (in turn). `R::KEY` must be one column.
    async fn expire<R: StateRow>(&self, due: Vec<Due>, limit: usize) -> Result<Vec<R>, Error>;
    /// Moves a session's `last_activity` forward; whether it exists.
    async fn touch_session(&self, juid: i64, now: i64) -> Result<bool, Error>;
    /// Upserts every row of `rows`, then runs `delete` (which must spare
    /// them), in one transaction.
    async fn replace<R: StateRow>(
        &self,
        rows: Vec<R>,
        delete: String,
        args: Vec<Val>,
    ) -> Result<(), Error>;
    /// Upserts `s` keeping the presence fields of a stored session
    /// ([`q::ONLINE_SET`]); the stored session and its subscribers.
    async fn go_online(&self, s: Session) -> Result<(Session, Vec<RosterItem>), Error>;
    /// Raises a dialog's `local_cseq` by one; the new value.
    async fn next_local_cseq(&self, id: i64) -> Result<Option<i64>, Error>;
    /// Replaces the unexpired publication `old_etag` of `new.juid` by `new`.
    async fn refresh_publication(
        &self,
        old_etag: &str,
        new: Publication,
        now: i64,
    ) -> Result<Option<Publication>, Error>;
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
    /// Whether the state tables (schema version 2) are known to exist. Only
    /// ever goes from false to true; shared by clones.
    state_ready: Arc<AtomicBool>,
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
    ///
    /// A database without the state tables (SER's own, or schema version 1)
    /// opens, and the account methods work on it; the state methods then fail
    /// with [`Error::SchemaTooOld`], which also says to run `sipjab db init`.
    /// A gateway that needs them checks [`Store::has_state_tables`] at start.
    pub async fn open(url: &DbUrl) -> Result<Self, Error> {
        let inner = match url {
            DbUrl::Sqlite { path } => Inner::Sqlite(Sqlite::open(path).await?),
            DbUrl::Mysql { url } => Inner::Mysql(Mysql::open(url).await?),
        };
        Ok(Self {
            inner,
            url: url.clone(),
            state_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Creates the SQLite file and whatever tables are missing, and records
    /// the schema version once (raising 1 to 2). Idempotent: on an
    /// initialised database, or one SER created, it changes nothing of SER's.
    pub async fn init(url: &DbUrl) -> Result<Self, Error> {
        let inner = match url {
            DbUrl::Sqlite { path } => Inner::Sqlite(Sqlite::init(path).await?),
            DbUrl::Mysql { url } => Inner::Mysql(Mysql::init(url).await?),
        };
        Ok(Self {
            inner,
            url: url.clone(),
            state_ready: Arc::new(AtomicBool::new(true)),
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

    /// The account with this `juid`, the key the state tables use (timers have only it).
    pub async fn account_by_juid(&self, juid: i64) -> Result<Option<Account>, Error> {
        dispatch!(self.account_by_juid(juid))
    }

    /// Removes the account for `sip` and its network rows in one transaction;
    /// `false` if there was none.
    ///
    /// With the state tables, the account's sessions, roster, SIP
    /// subscriptions, publications and rooms go in the same transaction.
    pub async fn remove_account(&self, sip: &SipAor) -> Result<bool, Error> {
        let state = self.has_state_tables().await?;
        dispatch!(self.remove_account(sip, state))
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

    /// Whether the database has the state tables (schema version 2 or
    /// newer). Asks the database until the answer is yes, so a gateway that
    /// runs while an operator runs `sipjab db init` notices.
    pub async fn has_state_tables(&self) -> Result<bool, Error> {
        if self.state_ready.load(Ordering::Acquire) {
            return Ok(true);
        }
        let ready = self.schema_version().await?.unwrap_or(0) >= STATE_VERSION;
        if ready {
            self.state_ready.store(true, Ordering::Release);
        }
        Ok(ready)
    }

    /// [`Error::SchemaTooOld`] unless the state tables exist.
    async fn need_state(&self) -> Result<(), Error> {
        if self.has_state_tables().await? {
            return Ok(());
        }
        Err(Error::SchemaTooOld {
            found: self.schema_version().await?,
            needed: STATE_VERSION,
        })
    }

    /// The rows of `R` that `tail` (`WHERE ...`) selects.
    async fn select<R: StateRow>(&self, tail: &str, args: Vec<Val>) -> Result<Vec<R>, Error> {
        self.need_state().await?;
        dispatch!(self.list::<R>(sql::select::<R>(tail), args))
    }

    /// The one row of `R` with key `key`.
    async fn get<R: StateRow>(&self, key: Vec<Val>) -> Result<Option<R>, Error> {
        self.need_state().await?;
        Ok(dispatch!(self.list::<R>(sql::get::<R>(), key))?
            .into_iter()
            .next())
    }

    /// Inserts or replaces `row`; the row as stored.
    async fn put<R: StateRow>(&self, row: &R) -> Result<R, Error> {
        row.check()?;
        self.need_state().await?;
        dispatch!(self.upsert(row.clone()))
    }

    /// Inserts or replaces every row in one transaction.
    async fn put_many<R: StateRow>(&self, rows: &[R]) -> Result<(), Error> {
        for r in rows {
            r.check()?;
        }
        self.need_state().await?;
        if rows.is_empty() {
            return Ok(());
        }
        dispatch!(self.upsert_many(rows.to_vec()))
    }

    /// The compare-and-set write of `row`.
    async fn cas<R: StateRow>(&self, row: &R) -> Result<Option<R>, Error> {
        row.check()?;
        self.need_state().await?;
        dispatch!(self.update(row.clone()))
    }

    /// Deletes the row of `R` with key `key`; whether there was one.
    async fn delete<R: StateRow>(&self, key: Vec<Val>) -> Result<bool, Error> {
        self.need_state().await?;
        Ok(dispatch!(self.execute(sql::delete::<R>(), key))? > 0)
    }

    /// Atomically deletes and returns rows of `R` that are due.
    async fn sweep<R: StateRow>(&self, due: Vec<Due>, limit: usize) -> Result<Vec<R>, Error> {
        self.need_state().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self.expire::<R>(due, limit))
    }

    /// The earliest expiry times in the store, to set the next timer: with
    /// several gateways a cache cannot know what the others wrote. One cheap
    /// query (each `MIN` reads one end of an index).
    pub async fn deadlines(&self) -> Result<Deadlines, Error> {
        self.need_state().await?;
        Deadlines::from_values(dispatch!(self.row(Deadlines::SQL, 4))?)
    }

    // -- sipjab_sessions -------------------------------------------------

    /// The online session of account `juid`.
    pub async fn session(&self, juid: i64) -> Result<Option<Session>, Error> {
        self.get::<Session>(vec![juid.into()]).await
    }

    /// Puts account `s.juid` online, replacing any session it had
    /// (last writer wins, except that `last_activity` never moves back); the
    /// session as stored, with its new `version`.
    pub async fn set_session(&self, s: &Session) -> Result<Session, Error> {
        self.put(s).await
    }

    /// [`Store::set_session`] for many sessions in one transaction (bulk
    /// loads, benchmarks).
    pub async fn set_sessions(&self, s: &[Session]) -> Result<(), Error> {
        self.put_many(s).await
    }

    /// Writes `s` only if the stored session still has `s.version`
    /// (compare-and-set); the session as stored, or `None` if another writer
    /// changed or removed it since `s` was read: read it again and redo.
    pub async fn update_session(&self, s: &Session) -> Result<Option<Session>, Error> {
        self.cas(s).await
    }

    /// What a REGISTER does, in one call: puts account `s.juid` online as
    /// [`Store::set_session`] does, except that a session already there
    /// keeps its show, status and priority (a registration refresh does not
    /// undo a PUBLISH), and returns the stored session with the account's
    /// [`Store::subscribers`], who get its presence. One write and one read
    /// on one connection, instead of four calls.
    pub async fn go_online(&self, s: &Session) -> Result<(Session, Vec<RosterItem>), Error> {
        s.check()?;
        self.need_state().await?;
        dispatch!(self.go_online(s.clone()))
    }

    /// Takes account `juid` offline; whether it was online.
    pub async fn remove_session(&self, juid: i64) -> Result<bool, Error> {
        self.delete::<Session>(vec![juid.into()]).await
    }

    /// Moves the session's `last_activity` forward to `now` (never back),
    /// without changing its `version`; whether the session exists.
    pub async fn touch_session(&self, juid: i64, now: i64) -> Result<bool, Error> {
        self.need_state().await?;
        dispatch!(self.touch_session(juid, now))
    }

    /// Removes and returns at most `limit` sessions whose registration ended
    /// (`expires_at <= now`) or, if `idle_before` is given, whose last
    /// activity is older (`last_activity < idle_before`).
    ///
    /// Safe with several gateways: each expired session is returned to
    /// exactly one caller, which then sends its unavailable presence. A
    /// session refreshed or touched before the sweep is not expired. Call
    /// again while it returns `limit` sessions.
    pub async fn expire_sessions(
        &self,
        now: i64,
        idle_before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Session>, Error> {
        let mut due = vec![Due::expired(now)];
        if let Some(idle) = idle_before {
            due.push(Due {
                column: "last_activity",
                op: "<",
                bound: idle,
            });
        }
        self.sweep(due, limit).await
    }

    /// Every online session, by `juid` (to fill a cache at start).
    pub async fn online_sessions(&self) -> Result<Vec<Session>, Error> {
        self.select("ORDER BY juid", vec![]).await
    }

    // -- sipjab_roster ---------------------------------------------------

    /// Account `juid`'s roster item for `contact` (a normalised bare JID).
    pub async fn roster_item(&self, juid: i64, contact: &str) -> Result<Option<RosterItem>, Error> {
        self.get::<RosterItem>(vec![juid.into(), contact.into()])
            .await
    }

    /// Inserts or replaces the item (last writer wins); the item as stored.
    pub async fn set_roster_item(&self, item: &RosterItem) -> Result<RosterItem, Error> {
        self.put(item).await
    }

    /// [`Store::set_roster_item`] for many items in one transaction.
    pub async fn set_roster_items(&self, items: &[RosterItem]) -> Result<(), Error> {
        self.put_many(items).await
    }

    /// Writes `item` only if the stored one still has `item.version`; `None`
    /// if it changed or is gone (see [`Store::update_session`]). Use this for
    /// subscription state transitions, which read the old state.
    pub async fn update_roster_item(&self, item: &RosterItem) -> Result<Option<RosterItem>, Error> {
        self.cas(item).await
    }

    /// Removes the item; whether there was one.
    pub async fn remove_roster_item(&self, juid: i64, contact: &str) -> Result<bool, Error> {
        self.delete::<RosterItem>(vec![juid.into(), contact.into()])
            .await
    }

    /// The contacts that receive account `juid`'s presence (subscription
    /// `from` or `both`), by contact: the presence fan-out, on an index.
    pub async fn subscribers(&self, juid: i64) -> Result<Vec<RosterItem>, Error> {
        self.select(q::SUBSCRIBERS, vec![juid.into()]).await
    }

    /// Account `juid`'s whole roster, by contact.
    pub async fn roster(&self, juid: i64) -> Result<Vec<RosterItem>, Error> {
        self.select("WHERE juid = ? ORDER BY contact", vec![juid.into()])
            .await
    }

    // -- sipjab_contact_presence ----------------------------------------

    /// What `contact` last sent account `juid`, per resource, oldest first.
    pub async fn contact_presence(
        &self,
        juid: i64,
        contact: &str,
    ) -> Result<Vec<ContactResource>, Error> {
        self.select(q::CONTACT_PRESENCE, vec![juid.into(), contact.into()])
            .await
    }

    /// Replaces what account `juid` knows of `contact`'s presence by `rows`,
    /// oldest first, in one transaction. The store numbers them from
    /// `first_seq`, which must be above every `seq` stored for the contact
    /// (one more than the last [`Store::contact_presence`] read): stored
    /// rows below it are the ones removed. Last writer wins, since a
    /// presence stanza is the contact's authoritative state.
    pub async fn set_contact_presence(
        &self,
        juid: i64,
        contact: &str,
        first_seq: i64,
        rows: &[ContactResource],
    ) -> Result<(), Error> {
        let mut numbered = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let mut r = r.clone();
            r.juid = juid;
            contact.clone_into(&mut r.contact);
            r.seq = first_seq.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            r.check()?;
            numbered.push(r);
        }
        self.need_state().await?;
        let delete = format!(
            "DELETE FROM {} {}",
            ContactResource::TABLE,
            q::CONTACT_PRESENCE_BEFORE
        );
        let args = vec![juid.into(), contact.into(), first_seq.into()];
        dispatch!(self.replace(numbered, delete, args))
    }

    // -- sipjab_sip_subscriptions ----------------------------------------

    /// The dialog with store id `id`.
    pub async fn sip_subscription(&self, id: i64) -> Result<Option<SipSubscription>, Error> {
        self.get::<SipSubscription>(vec![id.into()]).await
    }

    /// The dialog with this Call-ID and tags (RFC 3261 §12); `remote_tag` is
    /// empty for a dialog the peer has not answered yet.
    pub async fn sip_subscription_by_dialog(
        &self,
        call_id: &str,
        local_tag: &str,
        remote_tag: &str,
    ) -> Result<Option<SipSubscription>, Error> {
        self.select(
            q::DIALOG,
            vec![call_id.into(), local_tag.into(), remote_tag.into()],
        )
        .await
        .map(|v| v.into_iter().next())
    }

    /// Account `juid`'s dialogs with `contact` in `direction`, by id (more
    /// than one if a SUBSCRIBE forked).
    pub async fn sip_subscriptions_with(
        &self,
        juid: i64,
        contact: &str,
        direction: Direction,
    ) -> Result<Vec<SipSubscription>, Error> {
        self.select(
            q::WITH_CONTACT,
            vec![juid.into(), contact.into(), direction.as_str().into()],
        )
        .await
    }

    /// All of account `juid`'s dialogs, by id.
    pub async fn sip_subscriptions(&self, juid: i64) -> Result<Vec<SipSubscription>, Error> {
        self.select("WHERE juid = ? ORDER BY id", vec![juid.into()])
            .await
    }

    /// At most `limit` dialogs ending at or before `before`, soonest first,
    /// without changing them: the candidates for a refresh. To refresh one,
    /// first win [`Store::update_sip_subscription`] with its new `expires_at`
    /// (so another gateway's timer no longer finds it), then send.
    pub async fn sip_subscriptions_expiring(
        &self,
        before: i64,
        limit: usize,
    ) -> Result<Vec<SipSubscription>, Error> {
        self.select(q::EXPIRING, vec![before.into(), limit_val(limit)])
            .await
    }

    /// Inserts the dialog, or replaces the one with the same Call-ID and tags
    /// (`sub.id` is ignored); the dialog as stored, with its `id`.
    /// `local_cseq` and `remote_cseq` never move back.
    pub async fn upsert_sip_subscription(
        &self,
        sub: &SipSubscription,
    ) -> Result<SipSubscription, Error> {
        self.put(sub).await
    }

    /// Writes `sub` (found by `sub.id`, tags included, so this also records
    /// the remote tag once known) only if the stored dialog still has
    /// `sub.version`; `None` if it changed or is gone. CSeqs never move back.
    pub async fn update_sip_subscription(
        &self,
        sub: &SipSubscription,
    ) -> Result<Option<SipSubscription>, Error> {
        self.cas(sub).await
    }

    /// Takes the next CSeq number for a request the gateway sends in dialog
    /// `id`: each caller, on any gateway, gets a different one. `None` if the
    /// dialog is gone. Leaves `version` alone.
    pub async fn next_local_cseq(&self, id: i64) -> Result<Option<i64>, Error> {
        self.need_state().await?;
        dispatch!(self.next_local_cseq(id))
    }

    /// Records `cseq` of a request the peer sent in dialog `id` if it is
    /// higher than any before (RFC 3261 §12.2.2); `false` for a retransmitted
    /// or out-of-order request, or a dialog that is gone. Leaves `version`
    /// alone.
    pub async fn advance_remote_cseq(&self, id: i64, cseq: i64) -> Result<bool, Error> {
        self.need_state().await?;
        let n = dispatch!(self.execute(
            "UPDATE sipjab_sip_subscriptions SET remote_cseq = ? WHERE id = ? AND remote_cseq < ?"
                .to_owned(),
            vec![cseq.into(), id.into(), cseq.into()]
        ))?;
        Ok(n > 0)
    }

    /// Removes dialog `id`; whether there was one.
    pub async fn remove_sip_subscription(&self, id: i64) -> Result<bool, Error> {
        self.delete::<SipSubscription>(vec![id.into()]).await
    }

    /// Removes and returns at most `limit` dialogs with `expires_at <= now`,
    /// each to exactly one caller across gateways (see
    /// [`Store::expire_sessions`]).
    pub async fn expire_sip_subscriptions(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<SipSubscription>, Error> {
        self.sweep(vec![Due::expired(now)], limit).await
    }

    // -- sipjab_publications ---------------------------------------------

    /// The publication with entity tag `etag`.
    pub async fn publication_by_etag(&self, etag: &str) -> Result<Option<Publication>, Error> {
        self.get::<Publication>(vec![etag.into()]).await
    }

    /// Account `juid`'s publications, by entity tag.
    pub async fn publications(&self, juid: i64) -> Result<Vec<Publication>, Error> {
        self.select("WHERE juid = ? ORDER BY etag", vec![juid.into()])
            .await
    }

    /// Stores a new publication, or replaces the one with the same `etag`;
    /// the publication as stored.
    pub async fn set_publication(&self, p: &Publication) -> Result<Publication, Error> {
        self.put(p).await
    }

    /// RFC 3903 §6 refresh or modify: replaces publication `old_etag` of
    /// `new.juid` by `new` (its new entity tag, expiry and body) if it is still
    /// there and unexpired at `now`. The entity tag is the compare-and-set
    /// token: of two gateways handling the same `SIP-If-Match`, one gets the
    /// stored publication and the other `None` (answer 412).
    pub async fn refresh_publication(
        &self,
        old_etag: &str,
        new: &Publication,
        now: i64,
    ) -> Result<Option<Publication>, Error> {
        new.check()?;
        check_len("etag", old_etag, TOKEN_MAX)?;
        self.need_state().await?;
        dispatch!(self.refresh_publication(old_etag, new.clone(), now))
    }

    /// Removes the publication (a PUBLISH with `Expires: 0`); whether there
    /// was one.
    pub async fn remove_publication(&self, etag: &str) -> Result<bool, Error> {
        self.delete::<Publication>(vec![etag.into()]).await
    }

    /// Removes and returns at most `limit` publications with
    /// `expires_at <= now`, each to exactly one caller across gateways (see
    /// [`Store::expire_sessions`]).
    pub async fn expire_publications(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Publication>, Error> {
        self.sweep(vec![Due::expired(now)], limit).await
    }

    // -- sipjab_rooms ----------------------------------------------------

    /// Account `juid`'s room memberships, by room.
    pub async fn rooms(&self, juid: i64) -> Result<Vec<Room>, Error> {
        self.select("WHERE juid = ? ORDER BY room", vec![juid.into()])
            .await
    }

    /// Account `juid`'s membership of `room`.
    pub async fn room(&self, juid: i64, room: &str) -> Result<Option<Room>, Error> {
        self.get::<Room>(vec![juid.into(), room.into()]).await
    }

    /// Inserts or replaces the membership (last writer wins); as stored.
    pub async fn set_room(&self, r: &Room) -> Result<Room, Error> {
        self.put(r).await
    }

    /// Writes `r` only if the stored membership still has `r.version`;
    /// `None` if it changed or is gone (see [`Store::update_session`]).
    pub async fn update_room(&self, r: &Room) -> Result<Option<Room>, Error> {
        self.cas(r).await
    }

    /// Removes the membership; whether there was one.
    pub async fn remove_room(&self, juid: i64, room: &str) -> Result<bool, Error> {
        self.delete::<Room>(vec![juid.into(), room.into()]).await
    }

    /// Every membership of every account, by account and room: what to
    /// rejoin after the component link comes back.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, Error> {
        self.select("ORDER BY juid, room", vec![]).await
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

/// `limit` as a bound parameter (`LIMIT ?`).
fn limit_val(limit: usize) -> Val {
    Val::Int(i64::try_from(limit).unwrap_or(i64::MAX))
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
            assert_send(&s.set_session(&Session::new(1, crate::SessionSource::Register, 0)));
            assert_send(&s.update_session(&Session::new(1, crate::SessionSource::Register, 0)));
            assert_send(&s.expire_sessions(0, None, 1));
            assert_send(&s.subscribers(1));
            assert_send(&s.go_online(&Session::new(1, crate::SessionSource::Register, 0)));
            assert_send(&s.set_contact_presence(1, "c", 1, &[]));
            assert_send(&s.set_roster_items(&[]));
            assert_send(&s.next_local_cseq(1));
            assert_send(&s.expire_sip_subscriptions(0, 1));
            let p = Publication::new(1, "e", "b", 0, 0);
            assert_send(&s.refresh_publication("e", &p, 0));
            assert_send(&s.all_rooms());
            assert_send(&s.deadlines());
        }
        let _ = calls;
    }
}
