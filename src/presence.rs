//! Sessions and presence authorisation: the SER module's online/offline behaviour on the
//! component model, with RFC 6121 roster states.
//!
//! The SER module made a SIP user "online in the Jabber network" by logging it in. sipjab sends
//! presence from the user's impersonated JID instead, and keeps the roster state that a server
//! would otherwise keep.
//!
//! - **Sessions.** `:online`/`:on`, a REGISTER with a non-zero expiry, or any MESSAGE from the
//!   user (the SER module logged users in on their first message) puts the user online. The
//!   user's subscribers get available presence. `:offline`/`:off`, a REGISTER with expiry 0,
//!   the end of the registration, or `cache_time` without traffic either way takes the user
//!   offline, and the subscribers get unavailable presence. After `cache_time` the user also
//!   gets an INFO notice.
//! - **Published state** (RFC 3903). A PUBLISH of a PIDF document sets the user's show,
//!   status and priority (RFC 8048 §6.3 mapping), and `closed` takes the user offline. Entity
//!   tags and expiry follow RFC 3903; the end of the publication leaves the session plain
//!   available, or ends it if the publication had opened it.
//! - **Authorisation.** An XMPP user's `subscribe` is not approved by itself (the SER module
//!   approved every request, which let anyone watch anyone). `[presence] authorize` decides.
//!   With `ask`, the request goes to the SIP side as RFC 8048 §5.2 has it: a SUBSCRIBE to the
//!   SIP user from the contact's SIP address, which the user's phone or presence server
//!   authorises. `active` NOTIFYs approve (`subscribed`) and carry the user's presence.
//!   403, 603 or `terminated;reason=rejected` refuse (`unsubscribed`). Where the SIP side
//!   cannot decide (489 from a phone without presence, 405, 501, 480, a timeout...), the
//!   user gets a notice and answers
//!   `:allow ADDRESS` or `:deny ADDRESS`. `accept` and `reject` answer at once. Probes get the
//!   current state, but only from subscribers.
//!
//! The store is the source of truth for every piece of this state. Several instances behind
//! one component domain can therefore serve the same users, and timers are compare-and-set
//! sweeps (`Store::expire_sessions`) that hand each expired session to exactly one instance.
//! Times are Unix seconds, passed in by the caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jid::{BareJid, Jid};
use sipjab_db::{
    Account, Direction, Publication, RosterItem, Session, SessionSource, Show, SipSubscription,
    Store, Subscription, SubscriptionState,
};
use sipjab_sip::{Method, NameAddr, Rejection, Request, Response, Uri};
use xmpp_parsers::message::Lang;
use xmpp_parsers::presence::{Presence, Priority, Show as XmppShow, Type};

use crate::address::{AddressRules, XmppTarget};
use crate::commands::Command;
use crate::config::Authorize;
use crate::gateway::{Output, Token};
use crate::pidf;
use crate::sip_to_xmpp::reject;
use crate::watchers::dialog_headers;
use crate::xmpp_to_sip::message_request;

/// How many expired sessions one sweep takes.
const SWEEP: usize = 500;
/// How long the gateway subscribes to a SIP user for a contact (RFC 8048 §5.2.1 example).
const WATCH_EXPIRES: u32 = 3600;
/// How long before its end such a subscription is refreshed (RFC 8048 §5.2.2: the gateway
/// owns the expiry and the refresh).
const WATCH_REFRESH: i64 = 300;
/// The longest publication granted, and the default (RFC 3903 §5, presence: 3600 s).
const PUBLISH_MAX: u32 = 3600;
/// The shortest publication accepted (RFC 3903 §6: 423 with Min-Expires below it).
const PUBLISH_MIN: u32 = 60;

/// An accepted PUBLISH: the entity tag and expiry for the 200, and what to send.
#[derive(Debug)]
pub struct Published {
    /// `SIP-ETag` of the response.
    pub etag: String,
    /// `Expires` of the response.
    pub expires: u32,
    /// Presence to send.
    pub outputs: Vec<Output>,
}

/// Why a presence operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The account store failed.
    #[error("account store: {0}")]
    Store(#[from] sipjab_db::Error),
    /// An address the user typed does not name an XMPP user.
    #[error("{0}")]
    BadAddress(String),
}

impl PresenceError {
    /// The SIP status for the request that caused it.
    pub fn sip_status(&self) -> u16 {
        match self {
            Self::Store(_) => 500,
            Self::BadAddress(_) => 400,
        }
    }
}

/// The presence settings.
#[derive(Debug, Clone)]
pub struct PresenceSettings {
    /// Address rules and the component domain.
    pub rules: AddressRules,
    /// From of INFO notices.
    pub registrar: Uri,
    /// What to do with subscription requests.
    pub authorize: Authorize,
    /// Idle time after which a session ends; zero for never.
    pub cache_time: Duration,
    /// The gateway's Contact URI for dialogs it opens.
    pub local_contact: String,
}

/// Sessions and roster state, kept in the store.
#[derive(Debug, Clone)]
pub struct Presences {
    store: Store,
    settings: Arc<PresenceSettings>,
    online: Online,
    /// When this instance last wrote each user's activity to the store. Messages in between
    /// do not touch the store: `cache_time` is measured in whole sweeps anyway.
    touched: HashMap<i64, i64, foldhash::fast::RandomState>,
}

/// Users whose last activity write is remembered at most; past this the memory is dropped.
const TOUCHED_MAX: usize = 200_000;

type Outputs = Vec<Output>;

impl Presences {
    /// Presence on top of `store`.
    pub fn new(store: Store, settings: PresenceSettings) -> Self {
        let settings = Arc::new(settings);
        Self {
            online: Online {
                store: store.clone(),
                settings: Arc::clone(&settings),
            },
            store,
            settings,
            touched: HashMap::default(),
        }
    }

    /// How long an activity write stands for: a quarter of `cache_time`, at most 30 s.
    fn touch_every(&self) -> i64 {
        let quarter = self.settings.cache_time.as_secs() / 4;
        i64::try_from(quarter.clamp(1, 30)).unwrap_or(30)
    }

    /// Whether this instance wrote the user's activity recently enough to skip a write.
    fn recently_touched(&self, juid: i64, now: i64) -> bool {
        self.touched
            .get(&juid)
            .is_some_and(|at| now.saturating_sub(*at) < self.touch_every())
    }

    fn remember_touch(&mut self, juid: i64, now: i64) {
        if self.touched.len() >= TOUCHED_MAX {
            self.touched.clear();
        }
        self.touched.insert(juid, now);
    }

    /// A command from a SIP user, other than `:join` and `:exit`.
    pub async fn handle_command(
        &mut self,
        now: i64,
        account: &Account,
        command: &Command,
    ) -> Result<Outputs, PresenceError> {
        match command {
            Command::Online => {
                self.online
                    .go_online(now, account, SessionSource::Command, None)
                    .await
            }
            Command::Offline => self.go_offline(account).await,
            Command::Allow(who) => self.answer_request(now, account, who, true).await,
            Command::Deny(who) => self.answer_request(now, account, who, false).await,
            Command::Join { .. } | Command::Exit => Ok(Vec::new()),
        }
    }

    /// A REGISTER for the user, as the registrar passed it on: online until `expires`
    /// seconds from now, or offline for 0.
    pub async fn handle_register(
        &mut self,
        now: i64,
        account: &Account,
        expires: u32,
    ) -> Result<Outputs, PresenceError> {
        if expires == 0 {
            self.handle_offline(account.juid);
        }
        self.online.register(now, account, expires).await
    }

    /// A PUBLISH of the user's presence (RFC 3903 §6): initial, refresh, modify or remove.
    /// Bad input is refused and changes nothing.
    pub async fn handle_publish(
        &mut self,
        now: i64,
        req: &Request,
        account: &Account,
    ) -> Result<Published, Rejection> {
        let expires = presence_expiry(req, PUBLISH_MIN, PUBLISH_MAX)?;
        let document = if req.body.is_empty() {
            None
        } else {
            match req.headers.content_type() {
                Ok(Some(t)) if t.essence() == pidf::CONTENT_TYPE => {}
                _ => {
                    let mut r = reject(415, "Unsupported Media Type");
                    r.headers.push(("Accept".into(), pidf::CONTENT_TYPE.into()));
                    return Err(r);
                }
            }
            pidf::parse(&req.body).map_err(|e| e.rejection())?;
            Some(String::from_utf8_lossy(&req.body).into_owned())
        };
        let store_err = store_failure("publication");
        let if_match = req.headers.get("SIP-If-Match").map(str::trim);
        let expires_at = now.saturating_add(i64::from(expires));
        let Some(old_etag) = if_match else {
            let Some(body) = document else {
                return Err(reject(400, "Bad Request (initial PUBLISH without a body)"));
            };
            if expires == 0 {
                return Err(reject(400, "Bad Request (initial PUBLISH with Expires: 0)"));
            }
            let etag = new_etag();
            let publication = Publication::new(account.juid, &etag, &body, expires_at, now);
            self.store
                .set_publication(&publication)
                .await
                .map_err(store_err)?;
            let outputs = self.apply(now, account, Some(&body)).await.map_err(|e| {
                tracing::warn!(error = %e, "presence update failed");
                reject(500, "Server Internal Error (presence)")
            })?;
            return Ok(Published {
                etag,
                expires,
                outputs,
            });
        };
        let stale = || reject(412, "Conditional Request Failed");
        let old = self
            .store
            .publication_by_etag(old_etag)
            .await
            .map_err(store_err)?
            .filter(|p| p.juid == account.juid && p.expires_at > now)
            .ok_or_else(stale)?;
        let applied = |r: Result<Outputs, PresenceError>| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "presence update failed");
                reject(500, "Server Internal Error (presence)")
            })
        };
        if expires == 0 {
            if !self
                .store
                .remove_publication(old_etag)
                .await
                .map_err(store_err)?
            {
                return Err(stale());
            }
            let outputs = applied(self.apply(now, account, None).await)?;
            return Ok(Published {
                etag: old_etag.to_owned(),
                expires: 0,
                outputs,
            });
        }
        let etag = new_etag();
        let body = document.clone().unwrap_or(old.body);
        let new = Publication::new(account.juid, &etag, &body, expires_at, now);
        self.store
            .refresh_publication(old_etag, &new, now)
            .await
            .map_err(store_err)?
            .ok_or_else(stale)?;
        let outputs = match document {
            Some(body) => applied(self.apply(now, account, Some(&body)).await)?,
            None => Vec::new(),
        };
        Ok(Published {
            etag,
            expires,
            outputs,
        })
    }

    /// Makes published state the user's presence: an open document sets show, status and
    /// priority; a closed one, or `None` (the publication ended), takes them back.
    async fn apply(
        &mut self,
        now: i64,
        account: &Account,
        document: Option<&str>,
    ) -> Result<Outputs, PresenceError> {
        let presence = document
            .and_then(|body| pidf::parse(body.as_bytes()).ok())
            .map(|doc| doc.to_presence(None));
        let stored = self.store.session(account.juid).await?;
        match presence {
            Some(p) if p.type_ == Type::None => {
                let mut session = stored
                    .unwrap_or_else(|| Session::new(account.juid, SessionSource::Publish, now));
                session.show = p.show.map(|show| match show {
                    XmppShow::Away => Show::Away,
                    XmppShow::Chat => Show::Chat,
                    XmppShow::Dnd => Show::Dnd,
                    XmppShow::Xa => Show::Xa,
                });
                session.status = p.statuses.values().next().cloned();
                session.priority = p.priority.0;
                session.last_activity = now;
                session.updated_at = now;
                let session = self.store.set_session(&session).await?;
                self.broadcast(account, Some(&session)).await
            }
            Some(_) => self.go_offline(account).await,
            None => match stored {
                Some(s) if s.source == SessionSource::Publish => self.go_offline(account).await,
                Some(mut s) => {
                    s.show = None;
                    s.status = None;
                    s.priority = 0;
                    s.updated_at = now;
                    let s = self.store.set_session(&s).await?;
                    self.broadcast(account, Some(&s)).await
                }
                None => Ok(Vec::new()),
            },
        }
    }

    /// Traffic from or to the user: the session lives on, or starts again (SER logged users
    /// in on their first message).
    pub async fn handle_activity(
        &mut self,
        now: i64,
        account: &Account,
    ) -> Result<Outputs, PresenceError> {
        if self.recently_touched(account.juid, now) {
            return Ok(Vec::new());
        }
        self.remember_touch(account.juid, now);
        if self.store.touch_session(account.juid, now).await? {
            return Ok(Vec::new());
        }
        self.online
            .go_online(now, account, SessionSource::Command, None)
            .await
    }

    /// Traffic to the user from XMPP: keeps an open session alive, opens none.
    pub async fn handle_incoming_traffic(
        &mut self,
        now: i64,
        account: &Account,
    ) -> Result<(), PresenceError> {
        if !self.recently_touched(account.juid, now) {
            self.remember_touch(account.juid, now);
            self.store.touch_session(account.juid, now).await?;
        }
        Ok(())
    }

    /// A presence stanza addressed to the user's JID.
    pub async fn handle_presence(
        &mut self,
        now: i64,
        presence: Presence,
        account: &Account,
    ) -> Result<Outputs, PresenceError> {
        let Some(from) = presence.from.as_ref().map(Jid::to_bare) else {
            return Ok(Vec::new());
        };
        let contact = from.to_string();
        let user = self.user_jid(account)?;
        let stored = self.store.roster_item(account.juid, &contact).await?;
        let mut item = stored
            .clone()
            .unwrap_or_else(|| RosterItem::new(account.juid, &contact, Subscription::None, now));
        let mut out = Vec::new();
        match presence.type_ {
            Type::Probe => {
                out.push(if sees_user(item.subscription) {
                    self.current_presence(account, &user, &from).await?
                } else {
                    // RFC 6121 §4.3.2: no subscription, no presence.
                    subscription(&user, &from, Type::Unsubscribed)
                });
                return Ok(out);
            }
            Type::Subscribe => {
                if sees_user(item.subscription) {
                    // RFC 6121 §3.1.3: already approved, so approve again.
                    out.push(subscription(&user, &from, Type::Subscribed));
                    out.push(self.current_presence(account, &user, &from).await?);
                    return Ok(out);
                }
                match self.settings.authorize {
                    Authorize::Accept => {
                        item.subscription = with_from(item.subscription, true);
                        item.pending_in = false;
                        out.push(subscription(&user, &from, Type::Subscribed));
                        out.push(self.current_presence(account, &user, &from).await?);
                    }
                    Authorize::Reject => {
                        out.push(subscription(&user, &from, Type::Unsubscribed));
                        return Ok(out);
                    }
                    Authorize::Ask => {
                        if !item.pending_in {
                            item.pending_in = true;
                            out.push(self.ask_sip_side(now, account, &from).await?);
                        }
                    }
                }
            }
            Type::Unsubscribe => {
                item.subscription = with_from(item.subscription, false);
                item.pending_in = false;
                out.push(subscription(&user, &from, Type::Unavailable));
                out.extend(self.end_sip_side(account, &contact).await?);
            }
            Type::Subscribed => {
                item.subscription = with_to(item.subscription, true);
                item.pending_out = false;
            }
            Type::Unsubscribed => {
                item.subscription = with_to(item.subscription, false);
                item.pending_out = false;
            }
            // The contact's own availability matters to SIP watchers, not to the roster.
            Type::None | Type::Unavailable | Type::Error => return Ok(out),
        }
        item.updated_at = now;
        self.save_roster_item(stored.is_some(), item).await?;
        Ok(out)
    }

    /// RFC 8048 §5.2.1: the contact's request goes to the SIP user as a SUBSCRIBE from the
    /// contact's SIP address; the answer comes back to [`Presences::handle_watch_result`]
    /// and [`Presences::handle_notify`].
    async fn ask_sip_side(
        &mut self,
        now: i64,
        account: &Account,
        contact: &BareJid,
    ) -> Result<Output, PresenceError> {
        let call_id = format!("{:016x}@sipjab", fastrand::u64(..));
        let local_tag = format!("{:08x}", fastrand::u32(..));
        let mut sub = SipSubscription::new(
            account.juid,
            Direction::XmppWatchesSip,
            &contact.to_string(),
            &call_id,
            &local_tag,
            "presence",
            now.saturating_add(i64::from(WATCH_EXPIRES)),
            now,
        );
        sub.remote_target = account.sip_id.clone();
        sub.local_cseq = 1;
        let sub = self.store.upsert_sip_subscription(&sub).await?;
        let request = self.subscribe_request(account, contact, &sub, WATCH_EXPIRES);
        Ok(Output::Sip {
            request,
            token: Some(Token::Watch(sub.id)),
        })
    }

    /// The SUBSCRIBE of dialog `sub`, from the contact's SIP address to the user.
    fn subscribe_request(
        &self,
        account: &Account,
        contact: &BareJid,
        sub: &SipSubscription,
        expires: u32,
    ) -> Request {
        let from = self
            .settings
            .rules
            .contact_to_sip(contact)
            .map(Uri::Sip)
            .unwrap_or_else(|_| self.settings.registrar.clone());
        let to = Uri::parse(&account.sip_id).unwrap_or_else(|_| self.settings.registrar.clone());
        let target = Uri::parse(&sub.remote_target).unwrap_or_else(|_| to.clone());
        let mut req = Request::new(Method::Subscribe, target);
        let mut from = NameAddr::new(from);
        from.params.set("tag", Some(sub.local_tag.clone()));
        let mut to = NameAddr::new(to);
        if !sub.remote_tag.is_empty() {
            to.params.set("tag", Some(sub.remote_tag.clone()));
        }
        let h = &mut req.headers;
        h.push("Max-Forwards", "70");
        if !sub.route_set.is_empty() {
            h.push("Route", sub.route_set.clone());
        }
        h.push("From", from.to_string());
        h.push("To", to.to_string());
        h.push("Call-ID", sub.call_id.clone());
        h.push("CSeq", format!("{} SUBSCRIBE", sub.local_cseq));
        h.push("Event", "presence");
        h.push("Accept", pidf::CONTENT_TYPE);
        h.push("Expires", expires.to_string());
        h.push("Contact", format!("<{}>", self.settings.local_contact));
        h.push("Content-Length", "0");
        req
    }

    /// The contact no longer wants the user's presence: the SIP dialog ends with
    /// `Expires: 0` (RFC 8048 §5.2.3).
    async fn end_sip_side(
        &mut self,
        account: &Account,
        contact: &str,
    ) -> Result<Outputs, PresenceError> {
        let mut out = Vec::new();
        let dialogs = self
            .store
            .sip_subscriptions_with(account.juid, contact, Direction::XmppWatchesSip)
            .await?;
        let Ok(jid) = BareJid::new(contact) else {
            return Ok(out);
        };
        for mut sub in dialogs {
            self.store.remove_sip_subscription(sub.id).await?;
            if sub.remote_tag.is_empty() {
                continue;
            }
            sub.local_cseq += 1;
            out.push(Output::Sip {
                request: self.subscribe_request(account, &jid, &sub, 0),
                token: None,
            });
        }
        Ok(out)
    }

    /// SUBSCRIBEs the gateway holds for contacts are renewed before they end. Each renewal
    /// is claimed by writing the new expiry first (compare-and-set), so one instance sends it.
    async fn refresh_sip_side(&mut self, now: i64) -> Result<Outputs, PresenceError> {
        let due = self
            .store
            .sip_subscriptions_expiring(now.saturating_add(WATCH_REFRESH), SWEEP)
            .await?;
        let mut out = Vec::new();
        for mut sub in due {
            if sub.direction != Direction::XmppWatchesSip || sub.remote_tag.is_empty() {
                continue;
            }
            sub.expires_at = now.saturating_add(i64::from(WATCH_EXPIRES));
            sub.updated_at = now;
            let Some(mut claimed) = self.store.update_sip_subscription(&sub).await? else {
                continue;
            };
            let (Some(cseq), Some(account), Ok(contact)) = (
                self.store.next_local_cseq(claimed.id).await?,
                self.store.account_by_juid(claimed.juid).await?,
                BareJid::new(&claimed.contact),
            ) else {
                continue;
            };
            claimed.local_cseq = cseq;
            out.push(Output::Sip {
                request: self.subscribe_request(&account, &contact, &claimed, WATCH_EXPIRES),
                token: Some(Token::Watch(claimed.id)),
            });
        }
        Ok(out)
    }

    /// The final answer to a SUBSCRIBE sent for a contact (dialog `id`).
    pub async fn handle_watch_result(
        &mut self,
        now: i64,
        id: i64,
        code: u16,
        resp: Option<&Response>,
    ) -> Result<Outputs, PresenceError> {
        let Some(mut sub) = self.store.sip_subscription(id).await? else {
            return Ok(Vec::new());
        };
        if (200..300).contains(&code) {
            // The dialog is set up; the NOTIFYs say what the user decided.
            if let Some(tag) = resp
                .and_then(|r| r.headers.to().ok().flatten())
                .and_then(|to| to.tag().map(str::to_owned))
                && sub.remote_tag.is_empty()
            {
                sub.remote_tag = tag;
                sub.updated_at = now;
                self.store.update_sip_subscription(&sub).await?;
            }
            return Ok(Vec::new());
        }
        self.store.remove_sip_subscription(id).await?;
        if sub.state == SubscriptionState::Active {
            // A failed refresh ends the dialog; the user's answer stands (RFC 8048 §5.2.2:
            // 423 and 481 are transient, the XMPP authorisation is kept).
            return Ok(Vec::new());
        }
        let Some(account) = self.store.account_by_juid(sub.juid).await? else {
            return Ok(Vec::new());
        };
        let Ok(contact) = BareJid::new(&sub.contact) else {
            return Ok(Vec::new());
        };
        // RFC 8048 §5.2.2 counts 403, 489 and 603 as a refusal. COMPAT: 489 (Bad Event) is
        // what a phone without presence support answers (RFC 6665 §4.2.1.1), so it means the
        // SIP side cannot decide rather than that the user said no; the user is asked.
        if matches!(code, 403 | 603) {
            return self.decide(now, &account, &contact, false).await;
        }
        // The SIP side cannot decide: the user answers by command.
        Ok(vec![self.notice(
            &account,
            &format!(
                "INFO: {contact} asks to see your presence. \
                 Answer :allow {contact} or :deny {contact}"
            ),
        )])
    }

    /// A NOTIFY in a dialog opened for a contact: `active` approves and carries the user's
    /// presence, `terminated;reason=rejected` refuses (RFC 8048 §5.2.1, §5.2.2).
    pub async fn handle_notify(&mut self, now: i64, req: &Request) -> Result<Outputs, Rejection> {
        let gone = || reject(481, "Subscription Does Not Exist");
        let store_err = store_failure("subscription");
        let (from, to, call_id, cseq) = dialog_headers(req, &req.headers)?;
        let (Some(local_tag), Some(remote_tag)) = (to.tag(), from.tag()) else {
            return Err(gone());
        };
        let mut sub = match self
            .store
            .sip_subscription_by_dialog(call_id, local_tag, remote_tag)
            .await
            .map_err(store_err)?
        {
            Some(sub) => sub,
            // A NOTIFY may come before the 200 that names the remote tag (RFC 6665 §4.1.2.4).
            None => self
                .store
                .sip_subscription_by_dialog(call_id, local_tag, "")
                .await
                .map_err(store_err)?
                .ok_or_else(gone)?,
        };
        if sub.direction != Direction::XmppWatchesSip {
            return Err(gone());
        }
        if !self
            .store
            .advance_remote_cseq(sub.id, i64::from(cseq.seq))
            .await
            .map_err(store_err)?
        {
            return Err(reject(500, "Server Internal Error (CSeq out of order)"));
        }
        let state = req.headers.get("Subscription-State").unwrap_or("");
        let word = state
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let account = self
            .store
            .account_by_juid(sub.juid)
            .await
            .map_err(store_err)?
            .ok_or_else(gone)?;
        let contact = BareJid::new(&sub.contact).map_err(|_| gone())?;
        let failed = |e: PresenceError| {
            tracing::warn!(error = %e, "presence update failed");
            reject(500, "Server Internal Error (presence)")
        };
        let mut out = Vec::new();
        match word.as_str() {
            "active" => {
                if sub.state != SubscriptionState::Active || sub.remote_tag.is_empty() {
                    sub.state = SubscriptionState::Active;
                    sub.remote_tag = remote_tag.to_owned();
                    sub.updated_at = now;
                    self.store
                        .update_sip_subscription(&sub)
                        .await
                        .map_err(store_err)?;
                    out.extend(
                        self.decide(now, &account, &contact, true)
                            .await
                            .map_err(failed)?,
                    );
                }
                if !req.body.is_empty() {
                    let doc = pidf::parse(&req.body).map_err(|e| e.rejection())?;
                    let user = self.user_jid(&account).map_err(failed)?;
                    let mut presence = doc.to_presence(None);
                    presence.from = Some(user.into());
                    presence.to = Some(contact.clone().into());
                    out.push(Output::Stanza(presence.into()));
                }
            }
            "terminated" => {
                self.store
                    .remove_sip_subscription(sub.id)
                    .await
                    .map_err(store_err)?;
                if state.contains("rejected") {
                    out.extend(
                        self.decide(now, &account, &contact, false)
                            .await
                            .map_err(failed)?,
                    );
                }
            }
            // pending: RFC 8048 §5.2.1, nothing to tell the XMPP side yet.
            _ => {}
        }
        Ok(out)
    }

    /// The user's answer, however it came: `subscribed` and the current presence, or
    /// `unsubscribed`; the roster item follows.
    async fn decide(
        &mut self,
        now: i64,
        account: &Account,
        contact: &BareJid,
        allow: bool,
    ) -> Result<Outputs, PresenceError> {
        let key = contact.to_string();
        let user = self.user_jid(account)?;
        let stored = self.store.roster_item(account.juid, &key).await?;
        let mut item = stored
            .clone()
            .unwrap_or_else(|| RosterItem::new(account.juid, &key, Subscription::None, now));
        item.pending_in = false;
        item.subscription = with_from(item.subscription, allow);
        item.updated_at = now;
        let mut out = vec![subscription(
            &user,
            contact,
            if allow {
                Type::Subscribed
            } else {
                Type::Unsubscribed
            },
        )];
        if allow {
            out.push(self.current_presence(account, &user, contact).await?);
        }
        self.save_roster_item(stored.is_some(), item).await?;
        Ok(out)
    }

    /// Timers: SUBSCRIBEs held for contacts that are due for renewal, sessions past their
    /// registration or idle past `cache_time`, publications past their expiry. Each expired
    /// row is handled by exactly one instance.
    pub async fn handle_timeout(&mut self, now: i64) -> Result<Outputs, PresenceError> {
        let mut out = self.refresh_sip_side(now).await?;
        let idle_before = (!self.settings.cache_time.is_zero()).then(|| {
            now.saturating_sub(
                i64::try_from(self.settings.cache_time.as_secs()).unwrap_or(i64::MAX),
            )
        });
        loop {
            let expired = self.store.expire_sessions(now, idle_before, SWEEP).await?;
            let swept = expired.len();
            let juids: Vec<i64> = expired.iter().map(|s| s.juid).collect();
            let accounts = accounts_by_juid(&self.store, &juids).await?;
            for session in expired {
                // The next message must find the session gone and open it again.
                self.touched.remove(&session.juid);
                let Some(account) = accounts.get(&session.juid) else {
                    continue;
                };
                let account = account.clone();
                out.extend(self.broadcast(&account, None).await?);
                let registration_over = session.expires_at.is_some_and(|at| at <= now);
                if !registration_over {
                    out.push(self.notice(
                        &account,
                        &format!(
                            "INFO: you are offline in the Jabber network after {} s without \
                             messages; any message brings you back",
                            self.settings.cache_time.as_secs()
                        ),
                    ));
                }
            }
            if swept < SWEEP {
                break;
            }
        }
        loop {
            let ended = self.store.expire_publications(now, SWEEP).await?;
            let swept = ended.len();
            let juids: Vec<i64> = ended.iter().map(|p| p.juid).collect();
            let accounts = accounts_by_juid(&self.store, &juids).await?;
            for publication in ended {
                if let Some(account) = accounts.get(&publication.juid) {
                    out.extend(self.apply(now, account, None).await?);
                }
            }
            if swept < SWEEP {
                return Ok(out);
            }
        }
    }

    async fn go_offline(&mut self, account: &Account) -> Result<Outputs, PresenceError> {
        self.touched.remove(&account.juid);
        self.online.go_offline(account).await
    }

    /// Forgets this instance's activity write for the user, whose session ended elsewhere
    /// (so the next message opens it again).
    pub fn handle_offline(&mut self, juid: i64) {
        self.touched.remove(&juid);
    }

    /// The handle that brings users online and offline from tasks of their own.
    pub fn online(&self) -> Online {
        self.online.clone()
    }

    async fn broadcast(
        &self,
        account: &Account,
        session: Option<&Session>,
    ) -> Result<Outputs, PresenceError> {
        self.online.broadcast(account, session).await
    }

    async fn current_presence(
        &self,
        account: &Account,
        user: &BareJid,
        to: &BareJid,
    ) -> Result<Output, PresenceError> {
        let session = self.store.session(account.juid).await?;
        Ok(Output::Stanza(
            user_presence(user, to, session.as_ref()).into(),
        ))
    }

    /// `:allow` / `:deny`: the user's answer to a subscription request.
    async fn answer_request(
        &mut self,
        now: i64,
        account: &Account,
        who: &str,
        allow: bool,
    ) -> Result<Outputs, PresenceError> {
        let contact = self.typed_address(who)?;
        self.decide(now, account, &contact, allow).await
    }

    /// Writes a roster item that was read before: compare-and-set, so a concurrent change by
    /// another instance is not overwritten blindly (the last one is then simply stored).
    async fn save_roster_item(&self, existed: bool, item: RosterItem) -> Result<(), PresenceError> {
        if existed && self.store.update_roster_item(&item).await?.is_some() {
            return Ok(());
        }
        self.store.set_roster_item(&item).await?;
        Ok(())
    }

    /// An address typed in `:allow`/`:deny`: a JID, or its SIP form.
    fn typed_address(&self, who: &str) -> Result<BareJid, PresenceError> {
        let lower = who.to_ascii_lowercase();
        if lower.starts_with("sip:") {
            let aor = sipjab_db::SipAor::parse(who)
                .map_err(|e| PresenceError::BadAddress(format!("{who}: {e}")))?;
            return match self.settings.rules.sip_to_xmpp(aor.user(), aor.host()) {
                Ok(XmppTarget::Contact(jid)) => Ok(jid),
                Ok(XmppTarget::Conference { .. }) => Err(PresenceError::BadAddress(format!(
                    "{who} is a conference, not a user"
                ))),
                Err(e) => Err(PresenceError::BadAddress(e.to_string())),
            };
        }
        BareJid::new(who).map_err(|e| PresenceError::BadAddress(format!("{who}: {e}")))
    }

    fn user_jid(&self, account: &Account) -> Result<BareJid, PresenceError> {
        self.online.user_jid(account)
    }

    fn notice(&self, account: &Account, text: &str) -> Output {
        let to = Uri::parse(&account.sip_id).unwrap_or_else(|_| self.settings.registrar.clone());
        Output::Sip {
            request: message_request(&self.settings.registrar, &to, text, None),
            token: None,
        }
    }
}

/// Sessions going up and down, with what the subscribers get: the part of [`Presences`]
/// that needs nothing but the store, so REGISTERs can run it in tasks of their own
/// ([`crate::registrations`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Online {
    store: Store,
    settings: Arc<PresenceSettings>,
}

impl Online {
    /// A REGISTER for the user, as the registrar passed it on: online until `expires`
    /// seconds from now, or offline for 0. The caller forgets its activity writes for an
    /// expiry of 0 ([`Presences::handle_offline`]).
    pub async fn register(
        &self,
        now: i64,
        account: &Account,
        expires: u32,
    ) -> Result<Outputs, PresenceError> {
        if expires == 0 {
            return self.go_offline(account).await;
        }
        let until = now.saturating_add(i64::from(expires));
        self.go_online(now, account, SessionSource::Register, Some(until))
            .await
    }

    /// Puts the user online (a session already there keeps its show, status and priority)
    /// and tells the subscribers: one store call.
    async fn go_online(
        &self,
        now: i64,
        account: &Account,
        source: SessionSource,
        expires_at: Option<i64>,
    ) -> Result<Outputs, PresenceError> {
        let mut session = Session::new(account.juid, source, now);
        session.expires_at = expires_at;
        let (session, subscribers) = self.store.go_online(&session).await?;
        self.fan_out(account, &subscribers, Some(&session))
    }

    /// Ends the user's session, if it had one, and tells the subscribers.
    async fn go_offline(&self, account: &Account) -> Result<Outputs, PresenceError> {
        if !self.store.remove_session(account.juid).await? {
            return Ok(Vec::new());
        }
        self.broadcast(account, None).await
    }

    /// The user's presence to every subscriber: available with `session`, else unavailable.
    async fn broadcast(
        &self,
        account: &Account,
        session: Option<&Session>,
    ) -> Result<Outputs, PresenceError> {
        let subscribers = self.store.subscribers(account.juid).await?;
        self.fan_out(account, &subscribers, session)
    }

    /// The user's presence to each of `subscribers` (and [`Output::Offline`] without a
    /// session).
    fn fan_out(
        &self,
        account: &Account,
        subscribers: &[RosterItem],
        session: Option<&Session>,
    ) -> Result<Outputs, PresenceError> {
        let user = self.user_jid(account)?;
        let mut out: Outputs = subscribers
            .iter()
            .filter_map(|item| BareJid::new(&item.contact).ok())
            .map(|contact| Output::Stanza(user_presence(&user, &contact, session).into()))
            .collect();
        if session.is_none() {
            // Going offline also leaves the user's conferences.
            out.push(Output::Offline(account.clone()));
        }
        Ok(out)
    }

    fn user_jid(&self, account: &Account) -> Result<BareJid, PresenceError> {
        self.settings
            .rules
            .user_jid(&account.jab_id)
            .map_err(|e| PresenceError::BadAddress(e.to_string()))
    }
}

/// The accounts behind `juids`, for timers that only have the ids.
pub(crate) async fn accounts_by_juid(
    store: &Store,
    juids: &[i64],
) -> Result<HashMap<i64, Account>, PresenceError> {
    let mut accounts = HashMap::with_capacity(juids.len());
    for &juid in juids {
        if let Some(account) = store.account_by_juid(juid).await? {
            accounts.insert(juid, account);
        }
    }
    Ok(accounts)
}

/// What a failed store call becomes for a SIP request: a warning naming `what` was being
/// stored, and 500.
pub(crate) fn store_failure(what: &'static str) -> impl Fn(sipjab_db::Error) -> Rejection + Copy {
    move |e| {
        tracing::warn!(error = %e, "{what} store failed");
        reject(500, "Server Internal Error (account store)")
    }
}

/// The expiry a SUBSCRIBE or PUBLISH for the presence event asks for, within `min..=max`
/// (`max` when it names none, 0 to end). Another event gets 489 with `Allow-Events`
/// (RFC 6665 §4.2.1.1); a non-zero expiry below `min` gets 423 with `Min-Expires` (RFC 6665
/// §4.2.1.1, RFC 3903 §6); one above `max` is shortened.
pub(crate) fn presence_expiry(req: &Request, min: u32, max: u32) -> Result<u32, Rejection> {
    let event = req.headers.event().ok().flatten();
    if !event.is_some_and(|e| e.package.eq_ignore_ascii_case("presence")) {
        let mut r = reject(489, "Bad Event");
        r.headers.push(("Allow-Events".into(), "presence".into()));
        return Err(r);
    }
    let expires = req.headers.expires().ok().flatten().unwrap_or(max);
    if expires > 0 && expires < min {
        let mut r = reject(423, "Interval Too Brief");
        r.headers.push(("Min-Expires".into(), min.to_string()));
        return Err(r);
    }
    Ok(expires.min(max))
}

/// A fresh entity tag (RFC 3903 §4.1: unique for the publication; 128 random bits).
fn new_etag() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Whether the contact receives the user's presence.
fn sees_user(s: Subscription) -> bool {
    matches!(s, Subscription::From | Subscription::Both)
}

/// The subscription with the contact's view of the user (`from`) set or cleared.
fn with_from(s: Subscription, on: bool) -> Subscription {
    use Subscription as S;
    match (s, on) {
        (S::None | S::From, true) => S::From,
        (S::To | S::Both, true) => S::Both,
        (S::None | S::From, false) => S::None,
        (S::To | S::Both, false) => S::To,
        // A state added to the store later keeps its value until this code knows it.
        (other, _) => other,
    }
}

/// The subscription with the user's view of the contact (`to`) set or cleared.
fn with_to(s: Subscription, on: bool) -> Subscription {
    use Subscription as S;
    match (s, on) {
        (S::None | S::To, true) => S::To,
        (S::From | S::Both, true) => S::Both,
        (S::None | S::To, false) => S::None,
        (S::From | S::Both, false) => S::From,
        (other, _) => other,
    }
}

/// A subscription-management presence (`subscribed`, `unsubscribed`, ...).
fn subscription(from: &BareJid, to: &BareJid, type_: Type) -> Output {
    let mut p = Presence::new(type_);
    p.from = Some(from.clone().into());
    p.to = Some(to.clone().into());
    Output::Stanza(p.into())
}

/// The user's presence: available with the session's show, status and priority, or
/// unavailable without a session.
pub fn user_presence(user: &BareJid, to: &BareJid, session: Option<&Session>) -> Presence {
    let mut p = match session {
        Some(s) => {
            let mut p = Presence::new(Type::None);
            p.show = s.show.and_then(|show| match show {
                Show::Away => Some(XmppShow::Away),
                Show::Chat => Some(XmppShow::Chat),
                Show::Dnd => Some(XmppShow::Dnd),
                Show::Xa => Some(XmppShow::Xa),
                _ => None,
            });
            p.priority = Priority(s.priority);
            if let Some(status) = &s.status {
                p.statuses.insert(Lang::new(), status.clone());
            }
            p
        }
        None => Presence::new(Type::Unavailable),
    };
    p.from = Some(user.clone().into());
    p.to = Some(to.clone().into());
    p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::address::JDomain;
    use sipjab_db::{DbUrl, SipAor};
    use sipjab_sip::StatusCode;

    pub(crate) fn settings() -> PresenceSettings {
        PresenceSettings {
            rules: AddressRules {
                jdomain: JDomain::new("jabber.x.com", '*').unwrap(),
                aliases: Vec::new(),
                component_domain: "sip.x.com".into(),
            },
            registrar: Uri::parse("sip:jabber_gateway@127.0.0.1").unwrap(),
            authorize: Authorize::Ask,
            cache_time: Duration::from_secs(600),
            local_contact: "sip:127.0.0.1:5060".into(),
        }
    }

    fn types(out: &[Output]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Output::Stanza(el) => {
                    format!("presence:{}", el.attr("type").unwrap_or("available"))
                }
                Output::Sip { request, .. } => request.method.to_string(),
                Output::Offline(_) => "offline".to_owned(),
                Output::Chat(_) => "chat".to_owned(),
            })
            .collect()
    }

    /// RFC 8048 §5.2: a contact's request becomes a SUBSCRIBE to the SIP user; the 200 and
    /// an active NOTIFY approve it; the SUBSCRIBE is renewed before it ends, once.
    /// A fresh SQLite store (in the directory returned with it) with the account
    /// `sip:alice@example.com` / `alice`.
    pub(crate) async fn store_with_alice() -> (tempfile::TempDir, Store, Account) {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::parse(&format!("sqlite://{}/t.db", dir.path().display())).unwrap();
        let store = Store::init(&url).await.unwrap();
        let alice = store
            .add_account(
                &SipAor::parse("sip:alice@example.com").unwrap(),
                "alice",
                None,
            )
            .await
            .unwrap();
        (dir, store, alice)
    }

    #[tokio::test]
    async fn a_contact_request_is_decided_on_the_sip_side_and_renewed() {
        let (_dir, store, alice) = store_with_alice().await;
        let mut p = Presences::new(store, settings());
        let t0 = 1_000_000;
        let mut ask = Presence::new(Type::Subscribe);
        ask.from = Some(Jid::new("romeo@montague.lit/phone").unwrap());
        ask.to = Some(Jid::new("alice@sip.x.com").unwrap());
        let out = p.handle_presence(t0, ask, &alice).await.unwrap();
        let [
            Output::Sip {
                request,
                token: Some(Token::Watch(id)),
            },
        ] = out.as_slice()
        else {
            panic!("expected one SUBSCRIBE: {:?}", types(&out))
        };
        assert_eq!(request.method, Method::Subscribe);
        assert_eq!(request.uri.to_string(), "sip:alice@example.com");
        assert_eq!(request.headers.get("Event"), Some("presence"));
        let from = request.headers.from().unwrap().unwrap();
        assert_eq!(from.uri.to_string(), "sip:romeo*montague.lit@jabber.x.com");
        let ok = Response::for_request(request, StatusCode::OK, "OK");
        assert!(
            p.handle_watch_result(t0, *id, 200, Some(&ok))
                .await
                .unwrap()
                .is_empty()
        );

        let their_tag = ok.headers.to().unwrap().unwrap().tag().unwrap().to_owned();
        let our_tag = from.tag().unwrap().to_owned();
        let call_id = request.headers.call_id().unwrap().unwrap().to_owned();
        let body = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:alice@example.com'>\
                    <tuple id='t'><status><basic>open</basic></status><note>Reading</note></tuple></presence>";
        let notify = format!(
            "NOTIFY sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKn1\r\n\
             From: <sip:alice@example.com>;tag={their_tag}\r\n\
             To: <sip:romeo*montague.lit@jabber.x.com>;tag={our_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=3600\r\n\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sipjab_sip::Message::Request(notify) =
            sipjab_sip::parse_datagram(notify.as_bytes()).unwrap()
        else {
            panic!("not a request")
        };
        let out = p.handle_notify(t0 + 1, &notify).await.unwrap();
        assert_eq!(
            types(&out),
            [
                "presence:subscribed",
                "presence:unavailable",
                "presence:available"
            ]
        );

        // Renewed once, in the same dialog, shortly before the end.
        assert!(types(&p.handle_timeout(t0 + 60).await.unwrap()).is_empty());
        let out = p.handle_timeout(t0 + 3600 - 200).await.unwrap();
        let [Output::Sip { request: again, .. }] = out.as_slice() else {
            panic!("expected one renewal: {:?}", types(&out))
        };
        assert_eq!(again.headers.call_id().unwrap(), Some(call_id.as_str()));
        assert_eq!(again.headers.cseq().unwrap().unwrap().seq, 2);
        assert_eq!(
            again.headers.to().unwrap().unwrap().tag(),
            Some(their_tag.as_str())
        );
        assert!(types(&p.handle_timeout(t0 + 3600 - 199).await.unwrap()).is_empty());
    }

    #[test]
    fn presence_expiry_bounds() {
        let req = |event: &str, expires: Option<u32>| {
            let mut r = Request::new(
                Method::Publish,
                Uri::parse("sip:alice@example.com").unwrap(),
            );
            r.headers.push("Event", event);
            if let Some(e) = expires {
                r.headers.push("Expires", e.to_string());
            }
            r
        };
        let code = |r: Result<u32, Rejection>| r.map_err(|e| e.code.as_u16());
        assert_eq!(
            code(presence_expiry(&req("presence", None), 60, 3600)),
            Ok(3600)
        );
        assert_eq!(
            code(presence_expiry(&req("presence", Some(0)), 60, 3600)),
            Ok(0)
        );
        assert_eq!(
            code(presence_expiry(&req("presence", Some(99999)), 60, 3600)),
            Ok(3600)
        );
        assert_eq!(
            code(presence_expiry(&req("presence", Some(59)), 60, 3600)),
            Err(423)
        );
        let low = presence_expiry(&req("presence", Some(30)), 60, 3600).unwrap_err();
        assert!(
            low.headers
                .contains(&("Min-Expires".to_owned(), "60".to_owned()))
        );
        let other = presence_expiry(&req("dialog", Some(600)), 60, 3600).unwrap_err();
        assert_eq!(other.code.as_u16(), 489);
        assert!(
            other
                .headers
                .contains(&("Allow-Events".to_owned(), "presence".to_owned()))
        );
    }

    #[test]
    fn subscription_transitions() {
        use Subscription as S;
        assert_eq!(with_from(S::None, true), S::From);
        assert_eq!(with_from(S::To, true), S::Both);
        assert_eq!(with_from(S::Both, false), S::To);
        assert_eq!(with_to(S::From, true), S::Both);
        assert_eq!(with_to(S::Both, false), S::From);
        assert_eq!(with_to(S::To, false), S::None);
        assert!(sees_user(S::From) && sees_user(S::Both));
        assert!(!sees_user(S::To) && !sees_user(S::None));
    }

    #[test]
    fn presence_of_a_session() {
        let user = BareJid::new("alice@sip.x.com").unwrap();
        let to = BareJid::new("romeo@montague.lit").unwrap();
        let mut session = Session::new(1, SessionSource::Command, 0);
        session.show = Some(Show::Dnd);
        session.status = Some("in a meeting".into());
        session.priority = 5;
        let p = user_presence(&user, &to, Some(&session));
        assert_eq!(p.type_, Type::None);
        assert_eq!(p.show, Some(XmppShow::Dnd));
        assert_eq!(p.priority, Priority(5));
        assert_eq!(
            p.statuses.get(&Lang::new()),
            Some(&"in a meeting".to_owned())
        );
        assert_eq!(p.from, Some(Jid::from(user.clone())));
        let off = user_presence(&user, &to, None);
        assert_eq!(off.type_, Type::Unavailable);
        assert_eq!(off.to, Some(Jid::from(to)));
    }
}
