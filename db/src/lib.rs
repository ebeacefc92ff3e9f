//! The account store of the sipjab gateway: which SIP user logs in to Jabber
//! (and, through Jabber transports, to AIM, ICQ, MSN and Yahoo) as whom.
//!
//! # The SER schema
//!
//! sipjab replaces the `jabber` module of SER (FhG FOKUS, 2003) and reads its
//! MySQL database `sip_jab` unchanged. The tables, as created by the module's
//! database script (kept in `fixtures/db/ser_sip_jab.sql`), are:
//!
//! - `jusers(juid, jab_id, jab_passwd, sip_id, type)`: `juid INT
//!   AUTO_INCREMENT` primary key, `KEY(jab_id)`, `KEY(sip_id)` and no unique
//!   keys. SER looks a user up with `sip_id = <From URI> AND type = 0`.
//! - `icq`, `msn`, `aim`, `yahoo`: `(juid, <net>_id, <net>_passwd,
//!   <net>_nick, type)` with `PRIMARY KEY(juid)`, so at most one row per
//!   account and network. `icq_id` is an `INT`, the other ids `VARCHAR(128)`.
//!
//! We add tables of our own, all named `sipjab_*`, and never add columns to
//! SER's. `sipjab_schema(version INT)` holds one row with the version of our
//! tables. [`Store::init`] creates what is missing (`CREATE TABLE IF NOT
//! EXISTS`), raises the version (none, 1 or 2 to 3), and is idempotent;
//! [`Store::open`] touches no schema. SQLite gets a translation of the same
//! DDL (`INTEGER PRIMARY KEY AUTOINCREMENT` for `juid`).
//!
//! # The gateway's state (schema versions 2 and 3)
//!
//! Several gateways may serve one component domain behind one XMPP server,
//! which spreads stanzas among them, so every piece of per-user state lives
//! in the store and memory only caches it:
//!
//! | table | row | key, indexes |
//! |---|---|---|
//! | `sipjab_sessions` | [`Session`]: a SIP user online in XMPP | `juid`; `expires_at`, `last_activity` |
//! | `sipjab_roster` | [`RosterItem`]: RFC 6121 subscription with a contact | `(juid, contact)` |
//! | `sipjab_sip_subscriptions` | [`SipSubscription`]: an RFC 6665 dialog, either way | `id`; unique `(call_id, local_tag, remote_tag)`; `(juid, contact, direction)`; `expires_at` |
//! | `sipjab_publications` | [`Publication`]: RFC 3903 state | `etag`; `juid`; `expires_at` |
//! | `sipjab_rooms` | [`Room`]: a MUC membership | `(juid, room)` |
//! | `sipjab_contact_presence` (version 3) | [`ContactResource`]: a contact's last presence per resource, as sent to a SIP user | `(juid, contact, resource)` |
//!
//! Rows are keyed by `juid`, not `jab_id`: it is SER's primary key, which
//! its network tables use too. It stays the same when an operator rewrites
//! an account's `jab_id` or `sip_id`, and a 4-byte key keeps the indexes
//! small at 100,000 accounts. The core already has the account (and its
//! `juid`) from looking it up by SIP address or Jabber ID. There are no
//! foreign keys, because SER's tables may be MyISAM:
//! [`Store::remove_account`] deletes the account's state rows in its own
//! transaction.
//!
//! Times are Unix seconds chosen by the caller; the store never reads the
//! clock. JIDs, Call-IDs, tags and entity tags are compared exactly (binary
//! collation on MySQL), so callers pass JIDs normalised. Our MySQL tables
//! are InnoDB whatever the server's default.
//!
//! A database without these tables (SER's own, or version 1) still opens,
//! and the account methods work; the state methods answer
//! [`Error::SchemaTooOld`] ("run `sipjab db init`") until `init` has run,
//! which a running gateway notices without restarting. A gateway checks
//! [`Store::has_state_tables`] at start to refuse early.
//!
//! # Concurrency rule
//!
//! Two gateways may hold the same row in their caches and run the same
//! timers. The rule:
//!
//! 1. **Every write raises the row's `version`.** A writer that read the row
//!    first writes with `update_*` (compare-and-set on `version`). It gets
//!    `None` if anyone wrote in between, and then re-reads and decides again.
//!    `set_*` and `upsert_*` overwrite whatever is there (last writer wins)
//!    and are for authoritative input such as a new REGISTER. Both return
//!    the stored row with its new `version` for the cache.
//! 2. **Counters and clocks only move forward.** `last_activity`,
//!    `local_cseq` and `remote_cseq` are written as the larger of the stored
//!    and the new value, so a stale copy cannot move them back. Their own
//!    operations ([`Store::touch_session`], [`Store::next_local_cseq`],
//!    [`Store::advance_remote_cseq`]) are single atomic statements and do not
//!    raise `version`, so frequent touches do not fail other writers'
//!    compare-and-set.
//! 3. **Expiry deletes, then acts.** `expire_sessions`,
//!    `expire_sip_subscriptions` and `expire_publications` delete the due
//!    rows and return exactly the rows this call deleted, each to one caller
//!    across all gateways. The caller then sends the unavailable presence or
//!    the final NOTIFY. The condition is checked when the row is deleted, so
//!    a row refreshed or touched just before is not expired. SQLite does
//!    this in one `DELETE ... RETURNING` under its write lock. MySQL has no
//!    `DELETE ... RETURNING` (MariaDB does), so it uses one transaction:
//!    `SELECT ... FOR UPDATE` on the `expires_at` index, then `DELETE` of
//!    exactly those keys. A second sweeper blocks on the row locks and then
//!    skips the deleted rows. Deadlock victims are retried. Sweeps take a
//!    `limit` so that one timer tick does bounded work, and
//!    [`Store::deadlines`] tells each gateway when the next row is due,
//!    whoever wrote it.
//! 4. **Refresh: claim, then send.** A timer that refreshes a dialog first
//!    wins [`Store::update_sip_subscription`] with the new `expires_at`,
//!    which moves the dialog out of [`Store::sip_subscriptions_expiring`]
//!    for every other gateway, and only then sends the SUBSCRIBE. A PUBLISH
//!    refresh swaps the entity tag in one conditional statement
//!    ([`Store::refresh_publication`]), so of two gateways given the same
//!    `SIP-If-Match` one succeeds and the other answers 412.
//!
//! # Backends
//!
//! [`Store`] is an enum over two backends behind one async API:
//!
//! - SQLite through `rusqlite` with bundled SQLite, the embedded default.
//!   rusqlite blocks, so calls run on tokio's blocking pool over one
//!   mutex-guarded connection in WAL mode with a busy timeout.
//! - MySQL/MariaDB through `mysql_async`, natively async, built without TLS
//!   (the server is on loopback) and with a pure-Rust zlib.
//!
//! `sqlx` was ruled out: its SQLite driver links a second `libsqlite3-sys`
//! that clashes with rusqlite's bundled one.
//!
//! # Matching SIP addresses
//!
//! An account is keyed by its SIP address of record ([`SipAor`], RFC 3261
//! §19.1): scheme, percent-decoded user and host compared, the host
//! case-insensitively; port, parameters and headers ignored on both sides.
//! Rows written by SER may hold `SIP:alice@Example.COM;transport=udp`, so a
//! lookup cannot be `sip_id = ?`. Instead it asks the index for every row
//! whose `sip_id` starts with the normalised `sip:alice@` (case-insensitive:
//! `LIKE 'sip:alice@%'` on MySQL's case-insensitive collations, a range on a
//! `COLLATE NOCASE` index on SQLite) and compares the parsed candidates in
//! Rust. That stays an index range scan with 100,000 accounts.
//!
//! COMPAT: a row whose user part percent-escapes characters that need no
//! escaping (`sip:al%69ce@x`) is not found by the prefix; we write the
//! normalised form, SER wrote what clients sent, which in practice is the
//! same.
//!
//! Since SER's schema has no unique keys, [`Store::add_account`] checks the
//! SIP address and the Jabber ID inside the inserting transaction.

#![forbid(unsafe_code)]

mod aor;
mod error;
mod model;
mod mysql;
mod schema;
mod sqlite;
mod state;
mod store;
mod url;

pub use aor::{Scheme, SipAor};
pub use error::Error;
pub use model::{Account, Network, NetworkAccount};
pub use state::{
    ContactResource, Deadlines, Direction, Publication, RESOURCE_MAX, Room, RoomState, RosterItem,
    Session, SessionSource, Show, SipSubscription, Subscription, SubscriptionState,
};
pub use store::Store;
pub use url::DbUrl;
