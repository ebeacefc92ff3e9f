//! The gateway's own per-user state (schema versions 2 and 3): presence
//! sessions, roster subscriptions (RFC 6121), SIP subscription dialogs
//! (RFC 6665), PUBLISH state (RFC 3903), room memberships (XEP-0045) and
//! (version 3) the contacts' last presence per resource.
//!
//! Each row type knows its table through [`StateRow`], so both backends run
//! the same generic statements (get, upsert, compare-and-set update, delete,
//! expire) and decode rows with the same code.

use crate::error::Error;
use crate::model::check_len;

/// A column value, neutral between the two drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

impl<T: Into<Self>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Reads one row's values in [`StateRow::SELECT`] order, failing with
/// [`Error::BadRow`] where a value has the wrong type.
pub(crate) struct Reader {
    table: &'static str,
    columns: &'static [&'static str],
    values: std::vec::IntoIter<Val>,
    at: usize,
}

impl Reader {
    pub(crate) fn new(table: &'static str, columns: &'static [&'static str], v: Vec<Val>) -> Self {
        Self {
            table,
            columns,
            values: v.into_iter(),
            at: 0,
        }
    }

    fn next(&mut self) -> (Val, &'static str) {
        let column = self.columns.get(self.at).copied().unwrap_or("?");
        self.at += 1;
        (self.values.next().unwrap_or(Val::Null), column)
    }

    fn bad(&self, column: &'static str, reason: impl Into<String>) -> Error {
        Error::BadRow {
            table: self.table,
            column,
            reason: reason.into(),
        }
    }

    pub(crate) fn opt_int(&mut self) -> Result<Option<i64>, Error> {
        match self.next() {
            (Val::Null, _) => Ok(None),
            (Val::Int(i), _) => Ok(Some(i)),
            // SQLite's loose typing may hand us text holding an integer.
            (Val::Text(t), c) => t
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.bad(c, "text that is not an integer")),
        }
    }

    pub(crate) fn int(&mut self) -> Result<i64, Error> {
        let c = self.columns.get(self.at).copied().unwrap_or("?");
        self.opt_int()?
            .ok_or_else(|| self.bad(c, "NULL in a NOT NULL column"))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        let c = self.columns.get(self.at).copied().unwrap_or("?");
        match self.int()? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(self.bad(c, format!("{n} is not 0 or 1"))),
        }
    }

    pub(crate) fn opt_text(&mut self) -> Result<Option<String>, Error> {
        match self.next() {
            (Val::Null, _) => Ok(None),
            (Val::Text(t), _) => Ok(Some(t)),
            (Val::Int(i), _) => Ok(Some(i.to_string())),
        }
    }

    pub(crate) fn text(&mut self) -> Result<String, Error> {
        let c = self.columns.get(self.at).copied().unwrap_or("?");
        self.opt_text()?
            .ok_or_else(|| self.bad(c, "NULL in a NOT NULL column"))
    }

    /// A closed set of values stored as lowercase text.
    fn keyword<T>(&mut self, parse: fn(&str) -> Option<T>) -> Result<T, Error> {
        let c = self.columns.get(self.at).copied().unwrap_or("?");
        let t = self.text()?;
        parse(&t).ok_or_else(|| self.bad(c, format!("unknown value {t:?}")))
    }
}

/// A row type of one of the state tables.
pub(crate) trait StateRow: Clone + Send + Sync + 'static {
    /// The table.
    const TABLE: &'static str;
    /// The columns read back, in the order [`StateRow::read`] takes them;
    /// the last is `version`.
    const SELECT: &'static [&'static str];
    /// The columns written by an upsert or update, in the order of
    /// [`StateRow::write`] (no surrogate id, no `version`).
    const WRITE: &'static [&'static str];
    /// The columns naming one row for get, update and delete.
    const KEY: &'static [&'static str];
    /// The unique columns an upsert replaces on.
    const CONFLICT: &'static [&'static str];
    /// Columns that only move forward: a write keeps the larger of the stored
    /// and the written value, so a writer holding an old copy cannot move
    /// them back. Their own writes (e.g. `touch_session`) leave `version`.
    const MONOTONE: &'static [&'static str] = &[];

    /// The values of [`StateRow::WRITE`].
    fn write(&self) -> Vec<Val>;
    /// The values of [`StateRow::KEY`].
    fn key(&self) -> Vec<Val>;
    /// The values of [`StateRow::CONFLICT`].
    fn conflict(&self) -> Vec<Val> {
        self.key()
    }
    /// A row from the values of [`StateRow::SELECT`].
    fn read(r: &mut Reader) -> Result<Self, Error>;
    /// The row's `version`, the compare-and-set token.
    fn version(&self) -> i64;
    /// Checks values against the column sizes before writing (MySQL outside
    /// strict mode would truncate).
    fn check(&self) -> Result<(), Error>;

    /// Decodes a row.
    fn from_values(v: Vec<Val>) -> Result<Self, Error> {
        Self::read(&mut Reader::new(Self::TABLE, Self::SELECT, v))
    }
}

/// Length of JID columns (bare JIDs of contacts and rooms). JIDs may be
/// longer in theory (3071 bytes); this keeps the keys indexable on InnoDB.
pub(crate) const JID_MAX: usize = 512;
/// Length of SIP tokens stored in indexed columns (tags, event, etag).
pub(crate) const TOKEN_MAX: usize = 128;
/// Length of the Call-ID column.
pub(crate) const CALL_ID_MAX: usize = 255;
/// Length of a stored resourcepart. RFC 7622 §3.4 allows 1023 bytes; the
/// key (juid, contact, resource) must stay under InnoDB's 3072 bytes in
/// utf8mb4, so callers shorten longer ones.
pub const RESOURCE_MAX: usize = 191;
/// Length of a MUC nick (XEP-0045 allows up to 1023 bytes).
pub(crate) const NICK_MAX: usize = 1023;
/// Length of a room password.
pub(crate) const PASSWORD_MAX: usize = 255;
/// Characters that always fit a MySQL `TEXT` (65,535 bytes of up to 4-byte
/// characters): status texts, Contact URIs, route sets.
pub(crate) const TEXT_MAX: usize = 16_383;
/// Characters that always fit a MySQL `MEDIUMTEXT` (PIDF bodies).
pub(crate) const BODY_MAX: usize = 4_194_303;

/// Fails with [`Error::Empty`] or [`Error::TooLong`].
fn check_key(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::Empty { field });
    }
    check_len(field, value, max)
}

/// Defines a closed set of values stored as lowercase text.
macro_rules! keywords {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// The value stored as `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keywords! {
    /// An XMPP `<show/>` value (RFC 6121 §4.7.2.1); "no `<show/>`" is
    /// `Option::None` and stored as `none`.
    pub enum Show {
        /// `away`.
        Away = "away",
        /// `chat`.
        Chat = "chat",
        /// `dnd`.
        Dnd = "dnd",
        /// `xa`.
        Xa = "xa",
    }
}

keywords! {
    /// What put a SIP user online.
    pub enum SessionSource {
        /// A SIP REGISTER (ends with the registration).
        Register = "register",
        /// A command (e.g. a MESSAGE to the gateway, SER's `*online`).
        Command = "command",
        /// A SIP PUBLISH (RFC 3903).
        Publish = "publish",
    }
}

keywords! {
    /// The RFC 6121 §2.1.2.5 subscription state of a roster item (the
    /// pending flags are on [`RosterItem`]).
    pub enum Subscription {
        /// Neither side sees the other.
        None = "none",
        /// The SIP user sees the contact's presence.
        To = "to",
        /// The contact sees the SIP user's presence.
        From = "from",
        /// Both ways.
        Both = "both",
    }
}

keywords! {
    /// Which side of a SIP subscription dialog (RFC 6665) the gateway is.
    pub enum Direction {
        /// The SIP user SUBSCRIBEd to a Jabber contact; the gateway is the
        /// notifier.
        SipWatchesXmpp = "sip_watches_xmpp",
        /// The gateway SUBSCRIBEd to the SIP user on behalf of an XMPP
        /// contact; the gateway is the subscriber.
        XmppWatchesSip = "xmpp_watches_sip",
    }
}

keywords! {
    /// The RFC 6665 `Subscription-State` of a dialog.
    pub enum SubscriptionState {
        /// Not yet authorised.
        Pending = "pending",
        /// Authorised.
        Active = "active",
        /// Ended; kept until removed (e.g. to answer a late NOTIFY).
        Terminated = "terminated",
    }
}

keywords! {
    /// Where a MUC membership stands.
    pub enum RoomState {
        /// Presence sent to the room, no self-presence back yet.
        Joining = "joining",
        /// In the room.
        Joined = "joined",
        /// Unavailable presence sent, not yet confirmed.
        Leaving = "leaving",
    }
}

/// `sipjab_sessions`: a SIP user who is online in XMPP.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The account (`jusers.juid`).
    pub juid: i64,
    /// `<show/>`; `None` is plain available.
    pub show: Option<Show>,
    /// `<status/>` text.
    pub status: Option<String>,
    /// `<priority/>`.
    pub priority: i8,
    /// What put the user online.
    pub source: SessionSource,
    /// Unix seconds of the user's last activity (SER's `cache_time`).
    pub last_activity: i64,
    /// Unix seconds when the registration ends; `None` for no end.
    pub expires_at: Option<i64>,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token: 0 for a row never stored, then set by the
    /// store and raised on every write.
    pub version: i64,
}

impl Session {
    /// An available session put up by `source` at `now`, with no status,
    /// priority 0 and no expiry.
    pub fn new(juid: i64, source: SessionSource, now: i64) -> Self {
        Self {
            juid,
            show: None,
            status: None,
            priority: 0,
            source,
            last_activity: now,
            expires_at: None,
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for Session {
    const TABLE: &'static str = "sipjab_sessions";
    const SELECT: &'static [&'static str] = &[
        "juid",
        "show_state",
        "status",
        "priority",
        "source",
        "last_activity",
        "expires_at",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &[
        "juid",
        "show_state",
        "status",
        "priority",
        "source",
        "last_activity",
        "expires_at",
        "updated_at",
    ];
    const KEY: &'static [&'static str] = &["juid"];
    const CONFLICT: &'static [&'static str] = &["juid"];
    const MONOTONE: &'static [&'static str] = &["last_activity"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.show.map_or("none", Show::as_str).into(),
            self.status.clone().into(),
            i64::from(self.priority).into(),
            self.source.as_str().into(),
            self.last_activity.into(),
            self.expires_at.into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![self.juid.into()]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        let juid = r.int()?;
        let show = r.keyword(|s| match s {
            "none" => Some(None),
            s => Show::parse(s).map(Some),
        })?;
        let status = r.opt_text()?;
        let priority = r.int()?;
        let priority = i8::try_from(priority)
            .map_err(|_| r.bad("priority", format!("{priority} is not in -128..=127")))?;
        Ok(Self {
            juid,
            show,
            status,
            priority,
            source: r.keyword(SessionSource::parse)?,
            last_activity: r.int()?,
            expires_at: r.opt_int()?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        if let Some(s) = &self.status {
            check_len("status", s, TEXT_MAX)?;
        }
        Ok(())
    }
}

/// `sipjab_roster`: a SIP user's Jabber contact and the RFC 6121
/// subscription state between them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RosterItem {
    /// The account (`jusers.juid`).
    pub juid: i64,
    /// The contact's bare JID, normalised by the caller (compared exactly).
    pub contact: String,
    /// The subscription state.
    pub subscription: Subscription,
    /// The contact asked to see the SIP user's presence and has no answer
    /// yet ("Pending In").
    pub pending_in: bool,
    /// The SIP user asked to see the contact's presence and has no answer
    /// yet ("Pending Out", the `ask` attribute).
    pub pending_out: bool,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token (see `version` of [`Session`]).
    pub version: i64,
}

impl RosterItem {
    /// An item with `subscription` and nothing pending.
    pub fn new(juid: i64, contact: &str, subscription: Subscription, now: i64) -> Self {
        Self {
            juid,
            contact: contact.to_owned(),
            subscription,
            pending_in: false,
            pending_out: false,
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for RosterItem {
    const TABLE: &'static str = "sipjab_roster";
    const SELECT: &'static [&'static str] = &[
        "juid",
        "contact",
        "subscription",
        "pending_in",
        "pending_out",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &[
        "juid",
        "contact",
        "subscription",
        "pending_in",
        "pending_out",
        "updated_at",
    ];
    const KEY: &'static [&'static str] = &["juid", "contact"];
    const CONFLICT: &'static [&'static str] = &["juid", "contact"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.contact.as_str().into(),
            self.subscription.as_str().into(),
            self.pending_in.into(),
            self.pending_out.into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![self.juid.into(), self.contact.as_str().into()]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        Ok(Self {
            juid: r.int()?,
            contact: r.text()?,
            subscription: r.keyword(Subscription::parse)?,
            pending_in: r.bool()?,
            pending_out: r.bool()?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        check_key("contact", &self.contact, JID_MAX)
    }
}

/// `sipjab_sip_subscriptions`: one SIP subscription dialog (RFC 6665) in
/// either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SipSubscription {
    /// The store's id of the dialog: 0 until stored, then set by the store.
    pub id: i64,
    /// The account (`jusers.juid`) of the SIP user.
    pub juid: i64,
    /// Who watches whom.
    pub direction: Direction,
    /// The Jabber contact's bare JID, normalised by the caller.
    pub contact: String,
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The gateway's tag.
    pub local_tag: String,
    /// The peer's tag; empty until the dialog is established.
    pub remote_tag: String,
    /// The peer's Contact URI (remote target); empty until known.
    pub remote_target: String,
    /// The route set as one `Route` header value (`<uri>, <uri>`), in the
    /// order requests use it; empty for none.
    pub route_set: String,
    /// The CSeq number of the last request the gateway sent in the dialog.
    pub local_cseq: i64,
    /// The CSeq number of the last request the peer sent; 0 for none.
    pub remote_cseq: i64,
    /// The event package, e.g. `presence`.
    pub event: String,
    /// Unix seconds when the subscription ends.
    pub expires_at: i64,
    /// The subscription state.
    pub state: SubscriptionState,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token (see `version` of [`Session`]).
    pub version: i64,
}

impl SipSubscription {
    /// A pending dialog with no remote tag, target or route set yet and both
    /// CSeqs 0.
    #[allow(clippy::too_many_arguments)] // one per NOT NULL column without a default
    pub fn new(
        juid: i64,
        direction: Direction,
        contact: &str,
        call_id: &str,
        local_tag: &str,
        event: &str,
        expires_at: i64,
        now: i64,
    ) -> Self {
        Self {
            id: 0,
            juid,
            direction,
            contact: contact.to_owned(),
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: String::new(),
            remote_target: String::new(),
            route_set: String::new(),
            local_cseq: 0,
            remote_cseq: 0,
            event: event.to_owned(),
            expires_at,
            state: SubscriptionState::Pending,
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for SipSubscription {
    const TABLE: &'static str = "sipjab_sip_subscriptions";
    const SELECT: &'static [&'static str] = &[
        "id",
        "juid",
        "direction",
        "contact",
        "call_id",
        "local_tag",
        "remote_tag",
        "remote_target",
        "route_set",
        "local_cseq",
        "remote_cseq",
        "event",
        "expires_at",
        "state",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &[
        "juid",
        "direction",
        "contact",
        "call_id",
        "local_tag",
        "remote_tag",
        "remote_target",
        "route_set",
        "local_cseq",
        "remote_cseq",
        "event",
        "expires_at",
        "state",
        "updated_at",
    ];
    const KEY: &'static [&'static str] = &["id"];
    const CONFLICT: &'static [&'static str] = &["call_id", "local_tag", "remote_tag"];
    const MONOTONE: &'static [&'static str] = &["local_cseq", "remote_cseq"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.direction.as_str().into(),
            self.contact.as_str().into(),
            self.call_id.as_str().into(),
            self.local_tag.as_str().into(),
            self.remote_tag.as_str().into(),
            self.remote_target.as_str().into(),
            self.route_set.as_str().into(),
            self.local_cseq.into(),
            self.remote_cseq.into(),
            self.event.as_str().into(),
            self.expires_at.into(),
            self.state.as_str().into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![self.id.into()]
    }

    fn conflict(&self) -> Vec<Val> {
        vec![
            self.call_id.as_str().into(),
            self.local_tag.as_str().into(),
            self.remote_tag.as_str().into(),
        ]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        Ok(Self {
            id: r.int()?,
            juid: r.int()?,
            direction: r.keyword(Direction::parse)?,
            contact: r.text()?,
            call_id: r.text()?,
            local_tag: r.text()?,
            remote_tag: r.text()?,
            remote_target: r.text()?,
            route_set: r.text()?,
            local_cseq: r.int()?,
            remote_cseq: r.int()?,
            event: r.text()?,
            expires_at: r.int()?,
            state: r.keyword(SubscriptionState::parse)?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        check_key("contact", &self.contact, JID_MAX)?;
        check_key("call_id", &self.call_id, CALL_ID_MAX)?;
        check_key("local_tag", &self.local_tag, TOKEN_MAX)?;
        check_len("remote_tag", &self.remote_tag, TOKEN_MAX)?;
        check_len("remote_target", &self.remote_target, TEXT_MAX)?;
        check_len("route_set", &self.route_set, TEXT_MAX)?;
        check_key("event", &self.event, TOKEN_MAX)
    }
}

/// `sipjab_publications`: one RFC 3903 publication (a PUBLISH and its
/// refreshes), named by its entity tag.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Publication {
    /// The account (`jusers.juid`) of the publishing SIP user.
    pub juid: i64,
    /// The entity tag the gateway handed out (`SIP-ETag`), unique.
    pub etag: String,
    /// Unix seconds when the publication ends.
    pub expires_at: i64,
    /// The published state: the PIDF document (or its mapped fields).
    pub body: String,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token (see `version` of [`Session`]).
    pub version: i64,
}

impl Publication {
    /// A publication of `body` under `etag`.
    pub fn new(juid: i64, etag: &str, body: &str, expires_at: i64, now: i64) -> Self {
        Self {
            juid,
            etag: etag.to_owned(),
            expires_at,
            body: body.to_owned(),
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for Publication {
    const TABLE: &'static str = "sipjab_publications";
    const SELECT: &'static [&'static str] = &[
        "etag",
        "juid",
        "expires_at",
        "body",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &["etag", "juid", "expires_at", "body", "updated_at"];
    const KEY: &'static [&'static str] = &["etag"];
    const CONFLICT: &'static [&'static str] = &["etag"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.etag.as_str().into(),
            self.juid.into(),
            self.expires_at.into(),
            self.body.as_str().into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![self.etag.as_str().into()]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        Ok(Self {
            etag: r.text()?,
            juid: r.int()?,
            expires_at: r.int()?,
            body: r.text()?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        check_key("etag", &self.etag, TOKEN_MAX)?;
        check_len("body", &self.body, BODY_MAX)
    }
}

/// `sipjab_rooms`: a SIP user's membership in a MUC room (XEP-0045).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Room {
    /// The account (`jusers.juid`).
    pub juid: i64,
    /// The room's bare JID, normalised by the caller.
    pub room: String,
    /// The user's nick in the room.
    pub nick: String,
    /// Where the membership stands.
    pub state: RoomState,
    /// The room password, if it has one. Stored in clear, like SER's
    /// `jab_passwd`: it has to be sent again on rejoin.
    pub password: Option<String>,
    /// Unix seconds when the join was confirmed.
    pub joined_at: Option<i64>,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token (see `version` of [`Session`]).
    pub version: i64,
}

impl Room {
    /// A membership being joined, without password.
    pub fn new(juid: i64, room: &str, nick: &str, now: i64) -> Self {
        Self {
            juid,
            room: room.to_owned(),
            nick: nick.to_owned(),
            state: RoomState::Joining,
            password: None,
            joined_at: None,
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for Room {
    const TABLE: &'static str = "sipjab_rooms";
    const SELECT: &'static [&'static str] = &[
        "juid",
        "room",
        "nick",
        "state",
        "password",
        "joined_at",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &[
        "juid",
        "room",
        "nick",
        "state",
        "password",
        "joined_at",
        "updated_at",
    ];
    const KEY: &'static [&'static str] = &["juid", "room"];
    const CONFLICT: &'static [&'static str] = &["juid", "room"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.room.as_str().into(),
            self.nick.as_str().into(),
            self.state.as_str().into(),
            self.password.clone().into(),
            self.joined_at.into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![self.juid.into(), self.room.as_str().into()]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        Ok(Self {
            juid: r.int()?,
            room: r.text()?,
            nick: r.text()?,
            state: r.keyword(RoomState::parse)?,
            password: r.opt_text()?,
            joined_at: r.opt_int()?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        check_key("room", &self.room, JID_MAX)?;
        check_key("nick", &self.nick, NICK_MAX)?;
        if let Some(p) = &self.password {
            check_len("password", p, PASSWORD_MAX)?;
        }
        Ok(())
    }
}

/// `sipjab_contact_presence`: the last presence one resource of a Jabber
/// contact sent to a SIP user, for the PIDF of the NOTIFYs to the user's
/// watching dialogs (RFC 8048 §6.2). A contact's rows are written together
/// ([`crate::Store::set_contact_presence`]): its available resources, and
/// the last one to leave (for the note of the closed document).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContactResource {
    /// The account (`jusers.juid`) the presence was sent to.
    pub juid: i64,
    /// The contact's bare JID, normalised by the caller.
    pub contact: String,
    /// The resourcepart; empty for presence from the bare JID.
    pub resource: String,
    /// Whether the resource is available (`false`: the last to leave).
    pub available: bool,
    /// The `<presence/>` as XML: show, statuses and priority.
    pub stanza: String,
    /// Order of the contact's rows, oldest update first.
    pub seq: i64,
    /// Unix seconds of the last write.
    pub updated_at: i64,
    /// The compare-and-set token (see `version` of [`Session`]).
    pub version: i64,
}

impl ContactResource {
    /// A resource's presence, `seq`-th of its contact.
    pub fn new(
        juid: i64,
        contact: &str,
        resource: &str,
        available: bool,
        stanza: &str,
        seq: i64,
        now: i64,
    ) -> Self {
        Self {
            juid,
            contact: contact.to_owned(),
            resource: resource.to_owned(),
            available,
            stanza: stanza.to_owned(),
            seq,
            updated_at: now,
            version: 0,
        }
    }
}

impl StateRow for ContactResource {
    const TABLE: &'static str = "sipjab_contact_presence";
    const SELECT: &'static [&'static str] = &[
        "juid",
        "contact",
        "resource",
        "available",
        "stanza",
        "seq",
        "updated_at",
        "version",
    ];
    const WRITE: &'static [&'static str] = &[
        "juid",
        "contact",
        "resource",
        "available",
        "stanza",
        "seq",
        "updated_at",
    ];
    const KEY: &'static [&'static str] = &["juid", "contact", "resource"];
    const CONFLICT: &'static [&'static str] = &["juid", "contact", "resource"];

    fn write(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.contact.as_str().into(),
            self.resource.as_str().into(),
            self.available.into(),
            self.stanza.as_str().into(),
            self.seq.into(),
            self.updated_at.into(),
        ]
    }

    fn key(&self) -> Vec<Val> {
        vec![
            self.juid.into(),
            self.contact.as_str().into(),
            self.resource.as_str().into(),
        ]
    }

    fn read(r: &mut Reader) -> Result<Self, Error> {
        Ok(Self {
            juid: r.int()?,
            contact: r.text()?,
            resource: r.text()?,
            available: r.bool()?,
            stanza: r.text()?,
            seq: r.int()?,
            updated_at: r.int()?,
            version: r.int()?,
        })
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn check(&self) -> Result<(), Error> {
        check_key("contact", &self.contact, JID_MAX)?;
        check_len("resource", &self.resource, RESOURCE_MAX)?;
        check_len("stanza", &self.stanza, TEXT_MAX)
    }
}

/// One condition of an expiry sweep: rows whose `column op bound`, oldest
/// first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Due {
    pub(crate) column: &'static str,
    pub(crate) op: &'static str,
    pub(crate) bound: i64,
}

impl Due {
    /// Rows whose `expires_at` has come by `now`: the sweep of every table that expires.
    pub(crate) fn expired(now: i64) -> Self {
        Self {
            column: "expires_at",
            op: "<=",
            bound: now,
        }
    }
}

/// When the next timer-driven transitions are due: the earliest times in the
/// store, whichever gateway wrote them. `None` where a table has nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deadlines {
    /// The earliest session `expires_at`.
    pub session_expires: Option<i64>,
    /// The oldest session `last_activity` (idle expiry is this plus the
    /// configured cache time).
    pub oldest_activity: Option<i64>,
    /// The earliest SIP subscription `expires_at` (refresh or expiry).
    pub sip_subscription_expires: Option<i64>,
    /// The earliest publication `expires_at`.
    pub publication_expires: Option<i64>,
}

impl Deadlines {
    /// One row, four `MIN`s, each answered from the end of an index.
    pub(crate) const SQL: &str = "SELECT
        (SELECT MIN(expires_at) FROM sipjab_sessions),
        (SELECT MIN(last_activity) FROM sipjab_sessions),
        (SELECT MIN(expires_at) FROM sipjab_sip_subscriptions),
        (SELECT MIN(expires_at) FROM sipjab_publications)";

    /// The answer to [`Deadlines::SQL`].
    pub(crate) fn from_values(v: Vec<Val>) -> Result<Self, Error> {
        const COLUMNS: &[&str] = &["expires_at", "last_activity", "expires_at", "expires_at"];
        let mut r = Reader::new("sipjab_sessions", COLUMNS, v);
        Ok(Self {
            session_expires: r.opt_int()?,
            oldest_activity: r.opt_int()?,
            sip_subscription_expires: r.opt_int()?,
            publication_expires: r.opt_int()?,
        })
    }
}

/// The state tables, in the order `remove_account` clears them.
pub(crate) const STATE_TABLES: [&str; 6] = [
    Session::TABLE,
    RosterItem::TABLE,
    SipSubscription::TABLE,
    Publication::TABLE,
    Room::TABLE,
    ContactResource::TABLE,
];

/// The `WHERE` tails of the hot queries, named so that the query-plan tests
/// check exactly what runs.
pub(crate) mod q {
    /// Roster items of a `juid` that receive its presence: a range of the
    /// primary key (juid, contact).
    pub(crate) const SUBSCRIBERS: &str =
        "WHERE juid = ? AND subscription IN ('from', 'both') ORDER BY contact";
    /// The SIP dialog with a Call-ID and tags.
    pub(crate) const DIALOG: &str = "WHERE call_id = ? AND local_tag = ? AND remote_tag = ?";
    /// A `juid`'s dialogs with one contact in one direction.
    pub(crate) const WITH_CONTACT: &str =
        "WHERE juid = ? AND contact = ? AND direction = ? ORDER BY id";
    /// Dialogs due for a refresh.
    pub(crate) const EXPIRING: &str = "WHERE expires_at <= ? ORDER BY expires_at, id LIMIT ?";
    /// A contact's presence rows for one account, oldest first: a range of
    /// the primary key (juid, contact, resource).
    pub(crate) const CONTACT_PRESENCE: &str = "WHERE juid = ? AND contact = ? ORDER BY seq";
    /// A contact's presence rows older than a `seq`: those a new state replaces.
    pub(crate) const CONTACT_PRESENCE_BEFORE: &str = "WHERE juid = ? AND contact = ? AND seq < ?";
    /// What a new REGISTER changes of a session that is already there: the
    /// published show, status and priority stay.
    pub(crate) const ONLINE_SET: &[&str] = &["source", "last_activity", "expires_at", "updated_at"];
    /// The RFC 3903 refresh: new entity tag, expiry and body, if the old
    /// entity tag is still there, the publisher's, and unexpired.
    pub(crate) const REFRESH_PUBLICATION: &str = "UPDATE sipjab_publications
        SET etag = ?, expires_at = ?, body = ?, updated_at = ?, version = version + 1
        WHERE etag = ? AND juid = ? AND expires_at > ?";
}

/// Generic statements on a [`StateRow`] table, in the SQL both dialects
/// accept (`?` placeholders).
pub(crate) mod sql {
    use super::StateRow;

    /// `a = ? AND b = ?`.
    fn eq_all(cols: &[&str]) -> String {
        cols.iter()
            .map(|c| format!("{c} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `SELECT <columns> FROM <table> <tail>`.
    pub(crate) fn select<R: StateRow>(tail: &str) -> String {
        format!("SELECT {} FROM {} {tail}", R::SELECT.join(", "), R::TABLE)
    }

    /// The row named by [`StateRow::KEY`].
    pub(crate) fn get<R: StateRow>() -> String {
        select::<R>(&format!("WHERE {}", eq_all(R::KEY)))
    }

    /// The row named by [`StateRow::CONFLICT`].
    pub(crate) fn get_by_conflict<R: StateRow>() -> String {
        select::<R>(&format!("WHERE {}", eq_all(R::CONFLICT)))
    }

    /// `INSERT` of `rows` rows with version 1, without the upsert clause.
    pub(crate) fn insert<R: StateRow>(rows: usize) -> String {
        let one = format!("({}, 1)", vec!["?"; R::WRITE.len()].join(", "));
        format!(
            "INSERT INTO {} ({}, version) VALUES {}",
            R::TABLE,
            R::WRITE.join(", "),
            vec![one; rows].join(", ")
        )
    }

    /// The compare-and-set update: every written column, by key and version.
    /// `greatest` is the dialect's two-argument maximum, for
    /// [`StateRow::MONOTONE`] columns.
    pub(crate) fn update<R: StateRow>(greatest: &str) -> String {
        let set: Vec<String> = R::WRITE
            .iter()
            .map(|c| {
                if R::MONOTONE.contains(c) {
                    format!("{c} = {greatest}({c}, ?)")
                } else {
                    format!("{c} = ?")
                }
            })
            .collect();
        format!(
            "UPDATE {} SET {}, version = version + 1 WHERE {} AND version = ?",
            R::TABLE,
            set.join(", "),
            eq_all(R::KEY)
        )
    }

    /// The `SET` list of an upsert's update half: every written column but
    /// the conflict ones from `new(c)`, monotone ones through `greatest`, and
    /// `version` raised.
    pub(crate) fn upsert_set<R: StateRow>(greatest: &str, new: impl Fn(&str) -> String) -> String {
        let columns: Vec<&str> = R::WRITE
            .iter()
            .copied()
            .filter(|c| !R::CONFLICT.contains(c))
            .collect();
        upsert_set_of::<R>(&columns, greatest, new)
    }

    /// [`upsert_set`] of `columns` only: an upsert that leaves the others of
    /// an existing row as they are.
    pub(crate) fn upsert_set_of<R: StateRow>(
        columns: &[&str],
        greatest: &str,
        new: impl Fn(&str) -> String,
    ) -> String {
        let mut set: Vec<String> = columns
            .iter()
            .map(|c| {
                if R::MONOTONE.contains(c) {
                    format!("{c} = {greatest}({}.{c}, {})", R::TABLE, new(c))
                } else {
                    format!("{c} = {}", new(c))
                }
            })
            .collect();
        set.push(format!("version = {}.version + 1", R::TABLE));
        set.join(", ")
    }

    /// `DELETE` of the row named by [`StateRow::KEY`].
    pub(crate) fn delete<R: StateRow>() -> String {
        format!("DELETE FROM {} WHERE {}", R::TABLE, eq_all(R::KEY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for s in [
            Subscription::None,
            Subscription::To,
            Subscription::From,
            Subscription::Both,
        ] {
            assert_eq!(Subscription::parse(s.as_str()), Some(s));
        }
        assert_eq!(Show::parse("none"), None, "no <show/> is Option::None");
        assert_eq!(
            Direction::parse("xmpp_watches_sip"),
            Some(Direction::XmppWatchesSip)
        );
        assert_eq!(RoomState::parse("JOINED"), None, "stored lowercase");
    }

    #[test]
    fn rows_decode_strictly() {
        let s = Session::new(7, SessionSource::Register, 100);
        let mut v = s.write();
        v.push(Val::Int(3));
        let back = Session::from_values(v).expect("decodes");
        assert_eq!(back.version, 3);
        assert_eq!(Session { version: 0, ..back }, s);

        let mut v = s.write();
        v[1] = Val::Text("busy".to_owned());
        v.push(Val::Int(1));
        assert!(matches!(
            Session::from_values(v),
            Err(Error::BadRow {
                column: "show_state",
                ..
            })
        ));
        let mut v = s.write();
        v[3] = Val::Int(300);
        v.push(Val::Int(1));
        assert!(matches!(
            Session::from_values(v),
            Err(Error::BadRow {
                column: "priority",
                ..
            })
        ));
        let mut r = RosterItem::new(1, "a@b", Subscription::Both, 0).write();
        r[3] = Val::Int(2);
        r.push(Val::Int(1));
        assert!(RosterItem::from_values(r).is_err());
        // Too short a row is NULLs, which NOT NULL columns refuse.
        assert!(Room::from_values(vec![Val::Int(1)]).is_err());
    }

    #[test]
    fn generated_statements() {
        assert_eq!(
            sql::update::<RosterItem>("max"),
            "UPDATE sipjab_roster SET juid = ?, contact = ?, subscription = ?, pending_in = ?, \
             pending_out = ?, updated_at = ?, version = version + 1 \
             WHERE juid = ? AND contact = ? AND version = ?"
        );
        assert_eq!(
            sql::insert::<Publication>(2),
            "INSERT INTO sipjab_publications (etag, juid, expires_at, body, updated_at, version) \
             VALUES (?, ?, ?, ?, ?, 1), (?, ?, ?, ?, ?, 1)"
        );
        assert!(
            sql::update::<Session>("GREATEST")
                .contains("last_activity = GREATEST(last_activity, ?)")
        );
        assert_eq!(
            sql::upsert_set::<Session>("max", |c| format!("excluded.{c}")),
            "show_state = excluded.show_state, status = excluded.status, \
             priority = excluded.priority, source = excluded.source, \
             last_activity = max(sipjab_sessions.last_activity, excluded.last_activity), \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
             version = sipjab_sessions.version + 1"
        );
        for (write, select, n) in [
            (
                Session::WRITE,
                Session::SELECT,
                Session::new(1, SessionSource::Command, 0).write().len(),
            ),
            (
                RosterItem::WRITE,
                RosterItem::SELECT,
                RosterItem::new(1, "c", Subscription::None, 0).write().len(),
            ),
            (
                Room::WRITE,
                Room::SELECT,
                Room::new(1, "r", "n", 0).write().len(),
            ),
            (
                Publication::WRITE,
                Publication::SELECT,
                Publication::new(1, "e", "b", 0, 0).write().len(),
            ),
        ] {
            assert_eq!(write.len(), n);
            assert_eq!(select.len(), write.len() + 1, "{select:?}");
        }
        let sub = SipSubscription::new(
            1,
            Direction::SipWatchesXmpp,
            "c",
            "id",
            "t",
            "presence",
            0,
            0,
        );
        assert_eq!(SipSubscription::WRITE.len(), sub.write().len());
        assert_eq!(SipSubscription::SELECT.len(), sub.write().len() + 2);
    }
}
