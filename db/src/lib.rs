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
//! We add one table of our own, `sipjab_schema(version INT)`, for the
//! gateway's future tables, and never add columns to SER's. [`Store::init`]
//! creates what is missing (`CREATE TABLE IF NOT EXISTS`) and is idempotent;
//! [`Store::open`] touches no schema. SQLite gets a translation of the same
//! DDL (`INTEGER PRIMARY KEY AUTOINCREMENT` for `juid`).
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
    Direction, Publication, Room, RoomState, RosterItem, Session, SessionSource, Show,
    SipSubscription, Subscription, SubscriptionState,
};
pub use store::Store;
pub use url::DbUrl;
