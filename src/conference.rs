//! Conferences: SIP users in XMPP MUC rooms (XEP-0045), addressed as the SER module did,
//! `nick*room*server@<jdomain>`.
//!
//! - **Join.** `:join [password]` to a conference address, or a SUBSCRIBE to it, sends the
//!   user's presence to `room@server/nick` with `<x xmlns='http://jabber.org/protocol/muc'/>`
//!   (history limited by `[conference] history`). The room answers with its occupants, then
//!   the user's own presence (status 110): the user gets an INFO notice from the room address
//!   listing the occupants. An error presence instead (nick in use, password, members only,
//!   banned, full, no such room) becomes a short ERROR notice. A room the join created (201)
//!   is accepted as an instant room (XEP-0045 §10.1.2), so it does not stay locked.
//! - **Leave.** `:exit`, a SUBSCRIBE with `Expires: 0`, going offline (any way, including
//!   `cache_time`) sends unavailable presence to the occupant JID; the room's answer gives
//!   "left the conference". Kicks (307), bans (301), removals (321, 322, 332, 333) and a
//!   destroyed room end the membership with a notice that says so; a nick the service
//!   changed (210, 303) is kept.
//! - **Talk.** Groupchat from the room becomes a SIP MESSAGE from the speaker's address
//!   `sip:nick*room*server@<jdomain>`; the echo of the user's own messages is dropped; history
//!   (delayed messages) only when `[conference] history` asks for it; the subject on join only
//!   with `[conference] subject`, a later subject change always, as INFO notices. Private
//!   messages from an occupant come from that occupant's address. (SIP to the room is in
//!   [`crate::gateway`], which needs only the membership from here.)
//!
//! Memberships live in the store (`sipjab_rooms`), so any instance behind the component domain
//! can serve a user's room traffic, and every instance rejoins the stored rooms when its link
//! comes back (a second join from the same real JID is only a presence update for the room).
//! Memory holds caches only: the occupants seen while a join is in progress (for the INFO
//! notice), whether the join's subject is still to come, and which room JIDs have local
//! members (so plain chat messages are not looked up in the store).

use std::collections::{HashMap, HashSet};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use sipjab_component::Envelope;
use sipjab_db::{Account, Direction, Room, RoomState, SipSubscription, Store};
use sipjab_sip::{Rejection, Request, Response, Uri};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::muc::Muc;
use xmpp_parsers::muc::muc::History;
use xmpp_parsers::ns;
use xmpp_parsers::presence::{Presence, Type};
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::address::AddressRules;
use crate::error_map::condition_name;
use crate::gateway::Output;
use crate::presence::{PresenceError, accounts_by_juid};
use crate::sip_to_xmpp::reject;
use crate::watchers::{EVENT, dialog_headers, notify_request};
use crate::xmpp_to_sip::message_request;

/// The MUC owner namespace, for accepting a new room as an instant room.
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// What the conference module needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct ConferenceSettings {
    /// Address rules: the jdomain the room addresses are written in, and the component domain.
    pub rules: AddressRules,
    /// How many past messages a room sends on join.
    pub history: u32,
    /// Whether the subject a room sends on join reaches the SIP user.
    pub subject: bool,
}

/// Why a conference operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConferenceError {
    /// The account store failed.
    #[error("account store: {0}")]
    Store(#[from] sipjab_db::Error),
    /// `:exit` (or a message) for a room the user is not in.
    #[error("not in the conference {0}")]
    NotJoined(String),
    /// The room or nick does not make a valid occupant JID.
    #[error("{0}")]
    BadAddress(String),
}

impl ConferenceError {
    /// The SIP answer to the request that caused it.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Store(_) => reject(500, "Server Internal Error (account store)"),
            Self::NotJoined(room) => {
                reject(404, format!("Not Found (not in the conference {room})"))
            }
            Self::BadAddress(why) => reject(400, format!("Bad Request ({why})")),
        }
    }
}

impl From<PresenceError> for ConferenceError {
    fn from(e: PresenceError) -> Self {
        match e {
            PresenceError::Store(e) => Self::Store(e),
            PresenceError::BadAddress(why) => Self::BadAddress(why),
        }
    }
}

type Outputs = Vec<Output>;

/// MUC memberships of SIP users, kept in the store.
#[derive(Debug)]
pub struct Conferences {
    store: Store,
    settings: ConferenceSettings,
    /// Occupants seen while a join is under way, by account and room.
    joining: HashMap<(i64, BareJid), Vec<String>>,
    /// Joins whose subject message has not come yet.
    awaiting_subject: HashSet<(i64, BareJid)>,
    /// Rooms with members served by this instance.
    known: HashSet<BareJid>,
    /// The MUC services of those rooms: a private message from a room on one of them is
    /// looked up in the store even when another instance made the membership.
    services: HashSet<String>,
}

impl Conferences {
    /// Conferences on top of `store`.
    pub fn new(store: Store, settings: ConferenceSettings) -> Self {
        Self {
            store,
            settings,
            joining: HashMap::new(),
            awaiting_subject: HashSet::new(),
            known: HashSet::new(),
            services: HashSet::new(),
        }
    }

    /// The user's membership of `room`, if any (not one being left).
    pub async fn membership(
        &self,
        account: &Account,
        room: &BareJid,
    ) -> Result<Option<Room>, ConferenceError> {
        let row = self.store.room(account.juid, room.as_str()).await?;
        Ok(row.filter(|r| r.state != RoomState::Leaving))
    }

    /// Joins `room` as `nick`, or changes the user's nick there. The answer to the request is
    /// 200: the outcome comes later as a notice (a refused nick change only as a notice: the
    /// user stays in with the old nick).
    pub async fn join(
        &mut self,
        now: i64,
        account: &Account,
        room: &BareJid,
        nick: &str,
        password: Option<&str>,
    ) -> Result<Outputs, ConferenceError> {
        let user = self.user_jid(account)?;
        let occupant = occupant(room, nick)?;
        let mut row = match self.store.room(account.juid, room.as_str()).await? {
            Some(row) if row.state == RoomState::Joined => {
                // Already in: another nick is a nick change (XEP-0045 §7.6), which the room
                // confirms with 303; the same nick only repeats the presence. The membership
                // stays as it is until then, so a refused change keeps the old nick.
                let mut p = Presence::new(Type::None);
                p.from = Some(Jid::from(user));
                p.to = Some(Jid::from(occupant));
                return Ok(vec![Output::Stanza(p.into())]);
            }
            Some(mut row) => {
                row.nick = nick.to_owned();
                row.state = RoomState::Joining;
                row.updated_at = now;
                row
            }
            None => Room::new(account.juid, room.as_str(), nick, now),
        };
        if let Some(password) = password {
            row.password = Some(password.to_owned());
        }
        let row = self.store.set_room(&row).await?;
        self.joining
            .insert((account.juid, room.clone()), Vec::new());
        self.remember(room);
        Ok(vec![join_presence(
            &user,
            &occupant,
            self.settings.history,
            row.password.as_deref(),
        )])
    }

    /// Leaves `room`: unavailable presence to the occupant JID; the room's answer ends the
    /// membership.
    pub async fn exit(
        &mut self,
        now: i64,
        account: &Account,
        room: &BareJid,
    ) -> Result<Outputs, ConferenceError> {
        let Some(row) = self.store.room(account.juid, room.as_str()).await? else {
            return Err(ConferenceError::NotJoined(room.to_string()));
        };
        let user = self.user_jid(account)?;
        Ok(self.leave(now, &user, row).await?.into_iter().collect())
    }

    /// The user went offline: leave every room.
    pub async fn leave_all(
        &mut self,
        now: i64,
        account: &Account,
    ) -> Result<Outputs, ConferenceError> {
        let rows = self.store.rooms(account.juid).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let user = self.user_jid(account)?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(self.leave(now, &user, row).await?);
        }
        Ok(out)
    }

    async fn leave(
        &mut self,
        now: i64,
        user: &BareJid,
        mut row: Room,
    ) -> Result<Option<Output>, ConferenceError> {
        let Ok(room) = BareJid::new(&row.room) else {
            // A row no JID can be made of cannot be left; drop it.
            self.store.remove_room(row.juid, &row.room).await?;
            return Ok(None);
        };
        self.joining.remove(&(row.juid, room.clone()));
        self.awaiting_subject.remove(&(row.juid, room.clone()));
        let occupant = occupant(&room, &row.nick)?;
        row.state = RoomState::Leaving;
        row.updated_at = now;
        self.store.set_room(&row).await?;
        let mut p = Presence::new(Type::Unavailable);
        p.from = Some(Jid::from(user.clone()));
        p.to = Some(Jid::from(occupant));
        Ok(Some(Output::Stanza(p.into())))
    }

    /// The component link is up again: rejoin every stored room (the server dropped the
    /// occupants with the link), and forget those that were being left.
    pub async fn handle_link_up(&mut self, now: i64) -> Result<Outputs, ConferenceError> {
        let rows = self.store.all_rooms().await?;
        let mut juids: Vec<i64> = rows.iter().map(|r| r.juid).collect();
        juids.dedup();
        let accounts = accounts_by_juid(&self.store, &juids).await?;
        let mut out = Vec::new();
        for mut row in rows {
            let (Some(account), Ok(room)) = (accounts.get(&row.juid), BareJid::new(&row.room))
            else {
                self.store.remove_room(row.juid, &row.room).await?;
                continue;
            };
            if row.state == RoomState::Leaving {
                self.store.remove_room(row.juid, &row.room).await?;
                continue;
            }
            let (Ok(user), Ok(occupant)) = (self.user_jid(account), occupant(&room, &row.nick))
            else {
                continue;
            };
            row.state = RoomState::Joining;
            row.updated_at = now;
            if self.store.update_room(&row).await?.is_none() {
                continue; // another instance changed it meanwhile
            }
            self.joining.insert((row.juid, room.clone()), Vec::new());
            self.remember(&room);
            out.push(join_presence(
                &user,
                &occupant,
                self.settings.history,
                row.password.as_deref(),
            ));
        }
        Ok(out)
    }

    /// A presence stanza to `account`'s JID. `None`: it is not about one of the user's rooms,
    /// and the presence modules should have it.
    pub async fn handle_presence(
        &mut self,
        now: i64,
        account: &Account,
        presence: &Presence,
    ) -> Result<Option<Outputs>, ConferenceError> {
        let Some(from) = presence.from.as_ref() else {
            return Ok(None);
        };
        let room = from.to_bare();
        let info = MucUserInfo::of(&presence.payloads);
        if info.is_none() && presence.type_ != Type::Error && !self.known.contains(&room) {
            return Ok(None);
        }
        let Some(mut row) = self.store.room(account.juid, room.as_str()).await? else {
            // MUC presence for a room the user has left: nothing to do with it.
            return Ok(info.is_some().then(Vec::new));
        };
        let info = info.unwrap_or_default();
        let nick = from.resource().map(|r| r.as_str().to_owned());
        let is_self = info.has(110) || nick.as_deref() == Some(row.nick.as_str());
        let key = (account.juid, room.clone());
        let mut out = Vec::new();
        match presence.type_ {
            Type::Error => {
                let condition = presence
                    .payloads
                    .iter()
                    .find(|p| p.name() == "error")
                    .and_then(|p| StanzaError::try_from(p.clone()).ok())
                    .map(|e| e.defined_condition);
                self.joining.remove(&key);
                self.awaiting_subject.remove(&key);
                if row.state != RoomState::Joined {
                    self.store.remove_room(account.juid, &row.room).await?;
                }
                let refused = nick.as_deref().unwrap_or(&row.nick);
                let text = join_error_text(&room, refused, condition.as_ref());
                out.extend(self.notice(account, &room, &text));
            }
            Type::Unavailable if !is_self => {
                if let (Some(list), Some(nick)) = (self.joining.get_mut(&key), nick) {
                    list.retain(|n| *n != nick);
                }
            }
            Type::Unavailable => {
                if info.has(303)
                    && let Some(new_nick) = info.nick.clone()
                {
                    row.nick = new_nick;
                    row.updated_at = now;
                    self.store.set_room(&row).await?;
                    return Ok(Some(out));
                }
                self.joining.remove(&key);
                self.awaiting_subject.remove(&key);
                self.store.remove_room(account.juid, &row.room).await?;
                let text = leave_text(&room, &info);
                out.extend(self.notice(account, &room, &text));
            }
            Type::None if !is_self => {
                if let (Some(list), Some(nick)) = (self.joining.get_mut(&key), nick)
                    && !list.contains(&nick)
                {
                    list.push(nick);
                }
            }
            Type::None => {
                let nick = nick.unwrap_or_else(|| row.nick.clone());
                if row.state == RoomState::Joined {
                    if nick != row.nick {
                        row.nick = nick;
                        row.updated_at = now;
                        self.store.set_room(&row).await?;
                    }
                    return Ok(Some(out));
                }
                let renamed = nick != row.nick;
                row.nick = nick;
                row.state = RoomState::Joined;
                row.joined_at = Some(now);
                row.updated_at = now;
                self.store.set_room(&row).await?;
                let occupants = self.joining.remove(&key).unwrap_or_default();
                self.awaiting_subject.insert(key);
                if info.has(201)
                    && let Ok(user) = self.user_jid(account)
                {
                    out.extend(instant_room(&user, &room, now));
                }
                let mut text = format!("INFO: you joined the conference {room} as {}", row.nick);
                if renamed || info.has(210) {
                    text.push_str(" (the nick the room gave you)");
                }
                if occupants.is_empty() {
                    text.push_str("; nobody else is there");
                } else {
                    text.push_str("; also there: ");
                    text.push_str(&occupants.join(", "));
                }
                out.extend(self.notice(account, &room, &text));
            }
            _ => {}
        }
        Ok(Some(out))
    }

    fn remember(&mut self, room: &BareJid) {
        self.services.insert(room.domain().as_str().to_owned());
        self.known.insert(room.clone());
    }

    /// Whether a message stanza may come from a room, before it is parsed: groupchat, or a
    /// message from a full JID that is in a room this instance knows or carries MUC markup (a
    /// private message). Plain chat from contacts goes on to the message gateway untouched.
    /// `muc_markup` says whether the stanza has that markup, asked only when it matters.
    pub fn may_be_from_room(
        &self,
        envelope: Envelope<'_>,
        muc_markup: impl FnOnce() -> bool,
    ) -> bool {
        match envelope.kind {
            Some("groupchat") => return true,
            Some("error" | "headline") => return false,
            _ => {}
        }
        let Some((bare, _)) = envelope.from.and_then(|f| f.split_once('/')) else {
            return false;
        };
        // With no room or service known here, no JID needs parsing (plain chat, every time).
        let nothing_known = self.known.is_empty() && self.services.is_empty();
        muc_markup()
            || (!nothing_known && BareJid::new(bare).is_ok_and(|room| self.is_known(&room)))
    }

    fn is_known(&self, room: &BareJid) -> bool {
        self.known.contains(room) || self.services.contains(room.domain().as_str())
    }

    /// A message stanza to `account`'s JID. `None`: it is not from one of the user's rooms,
    /// and the message gateway should have it.
    pub async fn handle_message(
        &mut self,
        _now: i64,
        account: &Account,
        msg: &Message,
    ) -> Result<Option<Outputs>, ConferenceError> {
        let Some(from) = msg.from.as_ref() else {
            return Ok(None);
        };
        let room = from.to_bare();
        match msg.type_ {
            MessageType::Groupchat => {}
            MessageType::Chat | MessageType::Normal => {
                let hinted = msg
                    .payloads
                    .iter()
                    .any(|p| p.is("x", ns::MUC_USER) || p.is("x", ns::MUC));
                if from.resource().is_none() || !(hinted || self.is_known(&room)) {
                    return Ok(None);
                }
            }
            MessageType::Error | MessageType::Headline => return Ok(None),
        }
        let Some(row) = self.store.room(account.juid, room.as_str()).await? else {
            return Ok((msg.type_ == MessageType::Groupchat).then(Vec::new));
        };
        let key = (account.juid, room.clone());
        let nick = from.resource().map(|r| r.as_str());
        let body = msg.get_best_body_cloned(vec![]).map(|(_, b)| b);
        let subject = msg.get_best_subject_cloned(vec![]).map(|(_, s)| s);
        let mut out = Vec::new();
        if msg.type_ != MessageType::Groupchat {
            // A private message from an occupant.
            if let (Some(body), Ok(full)) = (body, FullJid::try_from(from.clone())) {
                out.extend(self.occupant_message(account, &full, &body));
            }
            return Ok(Some(out));
        }
        match (body, subject) {
            (None, Some(subject)) => {
                let on_join = self.awaiting_subject.remove(&key);
                if on_join && (!self.settings.subject || subject.is_empty()) {
                    return Ok(Some(out));
                }
                let text = match (on_join, nick) {
                    (true, _) => format!("INFO: the subject of {room} is: {subject}"),
                    (false, Some(nick)) => {
                        format!("INFO: {nick} changed the subject of {room} to: {subject}")
                    }
                    (false, None) => format!("INFO: the subject of {room} is now: {subject}"),
                };
                out.extend(self.notice(account, &room, &text));
            }
            (Some(body), _) => {
                let delayed = msg.payloads.iter().any(|p| p.is("delay", ns::DELAY));
                if nick == Some(row.nick.as_str()) || (delayed && self.settings.history == 0) {
                    // The room's echo of the user's own message, or history not asked for.
                    return Ok(Some(out));
                }
                match FullJid::try_from(from.clone()) {
                    Ok(speaker) => out.extend(self.occupant_message(account, &speaker, &body)),
                    // The room itself speaking (announcements, configuration changes).
                    Err(_) => out.extend(self.notice(account, &room, &format!("INFO: {body}"))),
                }
            }
            (None, None) => {}
        }
        Ok(Some(out))
    }

    /// A SIP MESSAGE from an occupant's address to the user. A nick that holds the jdomain
    /// delimiter has no address of its own; it then speaks from the room address, named in
    /// the text.
    fn occupant_message(&self, account: &Account, speaker: &FullJid, body: &str) -> Option<Output> {
        let to = Uri::parse(&account.sip_id).ok()?;
        let rules = &self.settings.rules;
        let (from, body) = match rules.occupant_to_sip(speaker) {
            Ok(uri) => (Uri::Sip(uri), body.to_owned()),
            Err(_) => (
                Uri::Sip(rules.room_to_sip(&speaker.to_bare()).ok()?),
                format!("{}: {body}", speaker.resource()),
            ),
        };
        Some(Output::Sip {
            request: message_request(&from, &to, &body, None),
            token: None,
        })
    }

    /// An INFO or ERROR notice to the user from the room's address.
    fn notice(&self, account: &Account, room: &BareJid, text: &str) -> Option<Output> {
        let to = Uri::parse(&account.sip_id).ok()?;
        let from = Uri::Sip(self.settings.rules.room_to_sip(room).ok()?);
        Some(Output::Sip {
            request: message_request(&from, &to, text, None),
            token: None,
        })
    }

    fn user_jid(&self, account: &Account) -> Result<BareJid, ConferenceError> {
        self.settings
            .rules
            .user_jid(&account.jab_id)
            .map_err(|e| ConferenceError::BadAddress(e.to_string()))
    }
}

/// `room@server/nick`.
fn occupant(room: &BareJid, nick: &str) -> Result<FullJid, ConferenceError> {
    room.with_resource_str(nick)
        .map_err(|e| ConferenceError::BadAddress(format!("{room}/{nick}: {e}")))
}

/// The join presence (XEP-0045 §7.2), with the history limit and password.
fn join_presence(
    user: &BareJid,
    occupant: &FullJid,
    history: u32,
    password: Option<&str>,
) -> Output {
    let mut muc = Muc::new().with_history(History::new().with_maxstanzas(history));
    if let Some(password) = password {
        muc = muc.with_password(password.to_owned());
    }
    let mut p = Presence::new(Type::None);
    p.from = Some(Jid::from(user.clone()));
    p.to = Some(Jid::from(occupant.clone()));
    p.payloads.push(muc.into());
    Output::Stanza(p.into())
}

/// Accepts a room the join created with its default configuration (XEP-0045 §10.1.2).
fn instant_room(user: &BareJid, room: &BareJid, now: i64) -> Option<Output> {
    let query: Element = format!(
        "<query xmlns='{MUC_OWNER}'><x xmlns='{}' type='submit'/></query>",
        ns::DATA_FORMS
    )
    .parse()
    .ok()?;
    let iq = Iq::Set {
        from: Some(Jid::from(user.clone())),
        to: Some(Jid::from(room.clone())),
        id: format!("sipjab-instant-{now}"),
        payload: query,
    };
    Some(Output::Stanza(iq.into()))
}

/// What a `<x xmlns='http://jabber.org/protocol/muc#user'/>` says, read by hand: the
/// xmpp-parsers type refuses children it does not know, and `<destroy/>` is one of them.
#[derive(Debug, Default)]
struct MucUserInfo {
    codes: Vec<u16>,
    /// `<item nick>`: the new nick with 303.
    nick: Option<String>,
    /// `<item><reason/>`, for kicks and bans.
    reason: Option<String>,
    /// `<destroy>`: the room is gone, with its reason if any.
    destroyed: Option<Option<String>>,
}

impl MucUserInfo {
    fn of(payloads: &[Element]) -> Option<Self> {
        let x = payloads.iter().find(|p| p.is("x", ns::MUC_USER))?;
        let mut info = Self::default();
        for child in x.children() {
            match child.name() {
                "status" => info
                    .codes
                    .extend(child.attr("code").and_then(|c| c.parse::<u16>().ok())),
                "item" => {
                    info.nick = child.attr("nick").map(str::to_owned);
                    info.reason = child
                        .get_child("reason", ns::MUC_USER)
                        .map(|r| r.text())
                        .filter(|r| !r.is_empty());
                }
                "destroy" => {
                    info.destroyed = Some(
                        child
                            .get_child("reason", ns::MUC_USER)
                            .map(|r| r.text())
                            .filter(|r| !r.is_empty()),
                    );
                }
                _ => {}
            }
        }
        Some(info)
    }

    fn has(&self, code: u16) -> bool {
        self.codes.contains(&code)
    }
}

/// The notice for a membership that ended.
fn leave_text(room: &BareJid, info: &MucUserInfo) -> String {
    let reason = |r: &Option<String>| r.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
    if let Some(why) = &info.destroyed {
        return format!("INFO: the conference {room} was closed{}", reason(why));
    }
    let what = if info.has(301) {
        "you were banned from"
    } else if info.has(307) {
        "you were kicked from"
    } else if info.has(321) {
        "you were removed (affiliation changed) from"
    } else if info.has(322) {
        "you were removed (members only now) from"
    } else if info.has(332) || info.has(333) {
        "the service removed you from"
    } else {
        return format!("INFO: you left the conference {room}");
    };
    format!("INFO: {what} the conference {room}{}", reason(&info.reason))
}

/// The notice for a refused join (XEP-0045 §7.2.6-§7.2.10 and §7.2.15), short and plain.
fn join_error_text(room: &BareJid, nick: &str, condition: Option<&DefinedCondition>) -> String {
    let why = match condition {
        Some(DefinedCondition::Conflict) => format!("the nick {nick} is in use; join with another"),
        Some(DefinedCondition::NotAuthorized) => {
            "a password is needed: send :join PASSWORD".to_owned()
        }
        Some(DefinedCondition::RegistrationRequired) => "the room is for members only".to_owned(),
        Some(DefinedCondition::Forbidden) => "you are banned from the room".to_owned(),
        Some(DefinedCondition::ServiceUnavailable) => "the room is full".to_owned(),
        Some(DefinedCondition::ItemNotFound) => "the room does not exist or is locked".to_owned(),
        Some(DefinedCondition::NotAllowed) => "new rooms cannot be made here".to_owned(),
        Some(DefinedCondition::JidMalformed) => "the nick is not valid".to_owned(),
        Some(other) => condition_name(other).to_owned(),
        None => "no reason given".to_owned(),
    };
    format!("ERROR: cannot join the conference {room}: {why}")
}

/// The NOTIFY that must follow the 200 to a SUBSCRIBE to a conference address (RFC 6665
/// §4.2.1): `active` for a join, `terminated` for `Expires: 0`, without a body. The dialog is
/// not stored: the SUBSCRIBE only starts or ends the membership, as in the SER sample, and
/// everything the NOTIFY needs is in the request and its response. The CSeq is the time in
/// seconds, which grows between the NOTIFYs of one dialog.
pub fn subscribe_notify(
    req: &Request,
    resp: &Response,
    local_contact: &str,
    state: &str,
    now: i64,
) -> Option<Output> {
    let (from, to, call_id, _) = dialog_headers(req, &resp.headers).ok()?;
    let (remote_tag, local_tag) = (from.tag()?, to.tag()?);
    let mut dialog = SipSubscription::new(
        0,
        Direction::SipWatchesXmpp,
        "",
        call_id,
        local_tag,
        EVENT,
        now,
        now,
    );
    dialog.remote_tag = remote_tag.to_owned();
    dialog.remote_target = match req.headers.contact() {
        Ok(Some(sipjab_sip::Contact::List(list))) if !list.is_empty() => list[0].uri.to_string(),
        _ => from.uri.to_string(),
    };
    dialog.route_set = req.headers.values("Record-Route").join(", ");
    dialog.local_cseq = now;
    let request = notify_request(
        &dialog,
        &to.uri.to_string(),
        &from.uri.to_string(),
        local_contact,
        state,
        None,
    );
    Some(Output::Sip {
        request,
        token: None,
    })
}

/// Whether a stanza carries MUC user markup (`<x xmlns='http://jabber.org/protocol/muc#user'/>`),
/// as a room's private messages do ([`Conferences::may_be_from_room`]).
pub fn has_muc_markup(stanza: &Element) -> bool {
    stanza.has_child("x", ns::MUC_USER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::JDomain;

    const ROOM: &str = "room@conf.x.org";

    /// Conferences for alice; `configured` asks for 5 history messages and the join subject.
    async fn setup(configured: bool) -> (tempfile::TempDir, Conferences, Account) {
        let (dir, store, alice) = crate::presence::tests::store_with_alice().await;
        let settings = ConferenceSettings {
            rules: AddressRules {
                jdomain: JDomain::new("jabber.x.com", '*').unwrap(),
                aliases: Vec::new(),
                component_domain: "sip.x.com".into(),
            },
            history: if configured { 5 } else { 0 },
            subject: configured,
        };
        (dir, Conferences::new(store, settings), alice)
    }

    fn room() -> BareJid {
        BareJid::new(ROOM).unwrap()
    }

    /// A stanza from the room, parsed from XML (the component's namespace).
    fn from_room<T: TryFrom<Element>>(xml: &str) -> T
    where
        T::Error: std::fmt::Debug,
    {
        let el: Element = xml
            .replacen('>', " xmlns='jabber:component:accept'>", 1)
            .replace("/ xmlns=", " xmlns=")
            .parse()
            .unwrap();
        T::try_from(el).unwrap()
    }

    fn self_presence(nick: &str, codes: &[u16], type_: &str) -> Presence {
        let status: String = codes
            .iter()
            .map(|c| format!("<status code='{c}'/>"))
            .collect();
        from_room(&format!(
            "<presence from='{ROOM}/{nick}' to='alice@sip.x.com' {type_}><x xmlns='{}'><item affiliation='none' role='participant'/>{status}</x></presence>",
            ns::MUC_USER
        ))
    }

    /// The SIP MESSAGEs among `out`: (From, body).
    fn messages(out: &[Output]) -> Vec<(String, String)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Sip { request, .. } => Some((
                    request.headers.from().unwrap().unwrap().uri.to_string(),
                    String::from_utf8(request.body.clone()).unwrap(),
                )),
                _ => None,
            })
            .collect()
    }

    async fn joined(c: &mut Conferences, alice: &Account) {
        c.join(10, alice, &room(), "al", None).await.unwrap();
        let p = self_presence("al", &[110], "");
        c.handle_presence(11, alice, &p).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn join_lists_occupants_and_accepts_a_new_room() {
        let (_dir, mut c, alice) = setup(false).await;
        let out = c.join(10, &alice, &room(), "al", Some("pw")).await.unwrap();
        let [Output::Stanza(join)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(join.attr("to"), Some("room@conf.x.org/al"));
        assert_eq!(join.attr("from"), Some("alice@sip.x.com"));
        let x = join.get_child("x", ns::MUC).unwrap();
        let history = x.get_child("history", ns::MUC).unwrap();
        assert_eq!(history.attr("maxstanzas"), Some("0"));
        assert_eq!(x.get_child("password", ns::MUC).unwrap().text(), "pw");
        let stored = c.store.room(alice.juid, ROOM).await.unwrap().unwrap();
        assert_eq!(stored.state, RoomState::Joining);

        let bob = self_presence("bob", &[], "");
        let out = c.handle_presence(11, &alice, &bob).await.unwrap().unwrap();
        assert!(out.is_empty());
        let me = self_presence("al", &[110, 201], "");
        let out = c.handle_presence(12, &alice, &me).await.unwrap().unwrap();
        let iq = out
            .iter()
            .find_map(|o| match o {
                Output::Stanza(el) if el.name() == "iq" => Some(el),
                _ => None,
            })
            .expect("the instant-room form");
        assert!(iq.has_child("query", MUC_OWNER));
        let [(from, body)] = messages(&out).try_into().unwrap();
        assert_eq!(from, "sip:*room*conf.x.org@jabber.x.com");
        assert!(
            body.contains("joined the conference room@conf.x.org as al"),
            "{body}"
        );
        assert!(body.contains("also there: bob"), "{body}");
        let stored = c.store.room(alice.juid, ROOM).await.unwrap().unwrap();
        assert_eq!(stored.state, RoomState::Joined);
    }

    #[tokio::test]
    async fn groupchat_comes_from_the_speaker_without_echo_history_or_join_subject() {
        let (_dir, mut c, alice) = setup(false).await;
        joined(&mut c, &alice).await;
        let subject: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='groupchat'><subject>old</subject></message>"
        ));
        let history: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='groupchat'><body>then</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>"
        ));
        let echo: Message = from_room(&format!(
            "<message from='{ROOM}/al' to='alice@sip.x.com' type='groupchat'><body>mine</body></message>"
        ));
        let live: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='groupchat'><body>hello</body></message>"
        ));
        let private: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='chat'><body>psst</body><x xmlns='{}'/></message>",
            ns::MUC_USER
        ));
        let mut got = Vec::new();
        for msg in [&history, &subject, &echo, &live, &private, &subject] {
            let el = Element::from(msg.clone());
            assert!(c.may_be_from_room(Envelope::of(&el), || has_muc_markup(&el)));
            let out = c.handle_message(12, &alice, msg).await.unwrap().unwrap();
            got.extend(messages(&out));
        }
        let bob = "sip:bob*room*conf.x.org@jabber.x.com".to_owned();
        assert_eq!(
            got,
            [
                (bob.clone(), "hello".to_owned()),
                (bob, "psst".to_owned()),
                (
                    "sip:*room*conf.x.org@jabber.x.com".to_owned(),
                    "INFO: bob changed the subject of room@conf.x.org to: old".to_owned()
                ),
            ]
        );
        // Plain chat from a contact is not the room's.
        let chat: Message = from_room(
            "<message from='romeo@montague.lit/x' to='alice@sip.x.com' type='chat'><body>hi</body></message>",
        );
        let el = Element::from(chat.clone());
        assert!(!c.may_be_from_room(Envelope::of(&el), || has_muc_markup(&el)));
        assert!(c.handle_message(12, &alice, &chat).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn history_and_the_join_subject_are_delivered_when_configured() {
        let (_dir, mut c, alice) = setup(true).await;
        let out = c.join(10, &alice, &room(), "al", None).await.unwrap();
        let [Output::Stanza(join)] = out.as_slice() else {
            panic!("{out:?}")
        };
        let x = join.get_child("x", ns::MUC).unwrap();
        let history = x.get_child("history", ns::MUC).unwrap();
        assert_eq!(history.attr("maxstanzas"), Some("5"));
        let me = self_presence("al", &[110], "");
        c.handle_presence(11, &alice, &me).await.unwrap().unwrap();
        let history: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='groupchat'><body>then</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>"
        ));
        let subject: Message = from_room(&format!(
            "<message from='{ROOM}/bob' to='alice@sip.x.com' type='groupchat'><subject>plans</subject></message>"
        ));
        let mut got = Vec::new();
        for msg in [&history, &subject] {
            let out = c.handle_message(12, &alice, msg).await.unwrap().unwrap();
            got.extend(messages(&out).into_iter().map(|(_, body)| body));
        }
        let [then, body] = got.try_into().unwrap();
        assert_eq!(then, "then");
        assert_eq!(body, "INFO: the subject of room@conf.x.org is: plans");
    }

    #[tokio::test]
    async fn a_refused_join_is_an_error_notice_and_forgotten() {
        let (_dir, mut c, alice) = setup(false).await;
        c.join(10, &alice, &room(), "al", None).await.unwrap();
        let conflict: Presence = from_room(&format!(
            "<presence from='{ROOM}/al' to='alice@sip.x.com' type='error'><x xmlns='{}'/><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
            ns::MUC
        ));
        let out = c
            .handle_presence(11, &alice, &conflict)
            .await
            .unwrap()
            .unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert!(body.starts_with("ERROR: cannot join"), "{body}");
        assert!(body.contains("nick al is in use"), "{body}");
        assert!(c.store.room(alice.juid, ROOM).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn kicks_exits_and_offline_end_the_membership() {
        let (_dir, mut c, alice) = setup(false).await;
        joined(&mut c, &alice).await;
        let kick = self_presence("al", &[110, 307], "type='unavailable'");
        let out = c.handle_presence(12, &alice, &kick).await.unwrap().unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert!(body.contains("kicked from the conference"), "{body}");
        assert!(c.store.room(alice.juid, ROOM).await.unwrap().is_none());
        assert!(matches!(
            c.exit(13, &alice, &room()).await,
            Err(ConferenceError::NotJoined(_))
        ));

        joined(&mut c, &alice).await;
        let out = c.exit(14, &alice, &room()).await.unwrap();
        let [Output::Stanza(leave)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(leave.attr("type"), Some("unavailable"));
        assert_eq!(leave.attr("to"), Some("room@conf.x.org/al"));
        let gone = self_presence("al", &[110], "type='unavailable'");
        let out = c.handle_presence(15, &alice, &gone).await.unwrap().unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert_eq!(body, "INFO: you left the conference room@conf.x.org");

        joined(&mut c, &alice).await;
        assert_eq!(c.leave_all(16, &alice).await.unwrap().len(), 1);
        let stored = c.store.room(alice.juid, ROOM).await.unwrap().unwrap();
        assert_eq!(stored.state, RoomState::Leaving);
        assert!(c.membership(&alice, &room()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bans_closed_rooms_and_service_nicks_are_told() {
        let (_dir, mut c, alice) = setup(false).await;
        joined(&mut c, &alice).await;
        let ban = self_presence("al", &[110, 301], "type='unavailable'");
        let out = c.handle_presence(12, &alice, &ban).await.unwrap().unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert!(body.contains("banned from the conference"), "{body}");

        joined(&mut c, &alice).await;
        let closed: Presence = from_room(&format!(
            "<presence from='{ROOM}/al' to='alice@sip.x.com' type='unavailable'><x xmlns='{}'><item affiliation='none' role='none'/><destroy><reason>moved</reason></destroy><status code='110'/></x></presence>",
            ns::MUC_USER
        ));
        let out = c
            .handle_presence(13, &alice, &closed)
            .await
            .unwrap()
            .unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert_eq!(
            body,
            "INFO: the conference room@conf.x.org was closed (moved)"
        );
        assert!(c.store.room(alice.juid, ROOM).await.unwrap().is_none());

        c.join(14, &alice, &room(), "al", None).await.unwrap();
        let renamed = self_presence("al-1", &[110, 210], "");
        let out = c
            .handle_presence(15, &alice, &renamed)
            .await
            .unwrap()
            .unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert!(
            body.contains("as al-1 (the nick the room gave you)"),
            "{body}"
        );
        let stored = c.membership(&alice, &room()).await.unwrap().unwrap();
        assert_eq!(stored.nick, "al-1");
    }

    #[tokio::test]
    async fn a_nick_change_is_confirmed_by_the_room_and_a_refusal_keeps_the_old_nick() {
        let (_dir, mut c, alice) = setup(false).await;
        joined(&mut c, &alice).await;
        let out = c.join(12, &alice, &room(), "al2", None).await.unwrap();
        let [Output::Stanza(change)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(change.attr("to"), Some("room@conf.x.org/al2"));
        assert!(!change.has_child("x", ns::MUC));
        let conflict: Presence = from_room(&format!(
            "<presence from='{ROOM}/al2' to='alice@sip.x.com' type='error'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        ));
        let out = c
            .handle_presence(13, &alice, &conflict)
            .await
            .unwrap()
            .unwrap();
        let [(_, body)] = messages(&out).try_into().unwrap();
        assert!(body.contains("nick al2 is in use"), "{body}");
        let kept = c.membership(&alice, &room()).await.unwrap().unwrap();
        assert_eq!((kept.nick.as_str(), kept.state), ("al", RoomState::Joined));

        c.join(14, &alice, &room(), "al3", None).await.unwrap();
        let old: Presence = from_room(&format!(
            "<presence from='{ROOM}/al' to='alice@sip.x.com' type='unavailable'><x xmlns='{}'><item affiliation='none' role='participant' nick='al3'/><status code='303'/><status code='110'/></x></presence>",
            ns::MUC_USER
        ));
        let out = c.handle_presence(15, &alice, &old).await.unwrap().unwrap();
        assert!(messages(&out).is_empty());
        let new = self_presence("al3", &[110], "");
        c.handle_presence(16, &alice, &new).await.unwrap().unwrap();
        let changed = c.membership(&alice, &room()).await.unwrap().unwrap();
        assert_eq!(
            (changed.nick.as_str(), changed.state),
            ("al3", RoomState::Joined)
        );
    }

    #[tokio::test]
    async fn rooms_are_rejoined_when_the_link_comes_back() {
        let (_dir, mut c, alice) = setup(false).await;
        joined(&mut c, &alice).await;
        let other = BareJid::new("gone@conf.x.org").unwrap();
        c.join(12, &alice, &other, "al", None).await.unwrap();
        c.leave_all(13, &alice).await.unwrap();
        joined(&mut c, &alice).await;
        let out = c.handle_link_up(20).await.unwrap();
        let [Output::Stanza(join)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(join.attr("to"), Some("room@conf.x.org/al"));
        assert!(join.has_child("x", ns::MUC));
        assert!(
            c.store
                .room(alice.juid, "gone@conf.x.org")
                .await
                .unwrap()
                .is_none()
        );
    }
}
