//! SIP users watching Jabber contacts: SUBSCRIBE/NOTIFY (RFC 6665, RFC 3856) on one side and
//! an XMPP presence subscription (RFC 6121) on the other, as RFC 8048 §5.3 maps them.
//!
//! A SUBSCRIBE (`Event: presence`) from a SIP user to a mapped address gets 200 (RFC 6665
//! deprecates 202) and at once a NOTIFY. The NOTIFY is `pending` until the contact approves
//! the user's XMPP subscription, then `active` with a PIDF body built from the contact's
//! presence. Several resources give one tuple each, as RFC 8048 §6.2 has it. Presence
//! changes bring new NOTIFYs. `unsubscribed` ends the dialog with
//! `terminated;reason=rejected`. `Expires: 0` or the end of the subscription ends it with
//! `terminated;reason=timeout` and a closed document.
//!
//! SIP subscriptions expire and XMPP ones are permanent, and the two are kept apart: the end
//! of a dialog leaves the XMPP subscription, so the next SUBSCRIBE is `active` at once.
//!
//! The dialogs live in the store. The contacts' current presence is held here, per watching
//! user, as the server sent it to this instance; a restarted instance probes for it again.
//! COMPAT: several instances behind one domain each see part of that presence traffic.

use std::collections::HashMap;

use jid::{BareJid, Jid};
use sipjab_db::{
    Account, Direction, RosterItem, SipSubscription, Store, Subscription, SubscriptionState,
};
use sipjab_sip::{NameAddr, Rejection, Request, Response, StatusCode, Uri};
use xmpp_parsers::presence::{Presence, Type};

use crate::address::AddressRules;
use crate::gateway::Output;
use crate::pidf::{CONTENT_TYPE, ContactPresence, closed_document};
use crate::presence::{PresenceError, accounts_by_juid, presence_expiry};
use crate::sip_to_xmpp::reject;

/// The event package the gateway serves.
pub const EVENT: &str = "presence";
/// The longest subscription granted, and the default (RFC 3856 §6.4).
const MAX_EXPIRES: u32 = 3600;
/// The shortest subscription accepted (RFC 6665 §4.2.1.1 allows 423 below this).
const MIN_EXPIRES: u32 = 60;
/// How many ended dialogs one sweep takes.
const SWEEP: usize = 500;

/// Dialogs of SIP users watching Jabber contacts, and what those contacts last showed.
#[derive(Debug)]
pub struct Watchers {
    store: Store,
    rules: AddressRules,
    seen: HashMap<(i64, String), ContactPresence>,
}

type Outputs = Vec<Output>;

impl Watchers {
    /// Watchers on top of `store`.
    pub fn new(store: Store, rules: AddressRules) -> Self {
        Self {
            store,
            rules,
            seen: HashMap::new(),
        }
    }

    /// A SUBSCRIBE from `account` for `contact`; `local_contact` is the gateway's Contact
    /// URI. Returns the response and what to send after it (the NOTIFY first).
    pub async fn handle_subscribe(
        &mut self,
        now: i64,
        req: &Request,
        account: &Account,
        contact: &BareJid,
        local_contact: &str,
    ) -> Result<(Response, Outputs), Rejection> {
        let expires = presence_expiry(req, MIN_EXPIRES, MAX_EXPIRES)?;
        let mut resp = Response::for_request(req, StatusCode::OK, "OK");
        resp.headers.push("Expires", expires.to_string());
        resp.headers.push("Contact", format!("<{local_contact}>"));
        let (Ok(Some(from)), Ok(Some(to)), Ok(Some(call_id)), Ok(Some(cseq))) = (
            req.headers.from(),
            resp.headers.to(),
            req.headers.call_id(),
            req.headers.cseq(),
        ) else {
            return Err(reject(400, "Bad Request (From, To, Call-ID or CSeq)"));
        };
        let (Some(remote_tag), Some(local_tag)) = (from.tag(), to.tag()) else {
            return Err(reject(400, "Bad Request (From without a tag)"));
        };
        let in_dialog = req
            .headers
            .to()
            .ok()
            .flatten()
            .is_some_and(|t| t.tag().is_some());
        let store_err = |e: sipjab_db::Error| {
            tracing::warn!(error = %e, "subscription store failed");
            reject(500, "Server Internal Error (account store)")
        };
        let mut sub = if in_dialog {
            let Some(sub) = self
                .store
                .sip_subscription_by_dialog(call_id, local_tag, remote_tag)
                .await
                .map_err(store_err)?
            else {
                return Err(reject(481, "Call/Transaction Does Not Exist"));
            };
            sub
        } else {
            let remote_target = match req.headers.contact() {
                Ok(Some(sipjab_sip::Contact::List(list))) if !list.is_empty() => {
                    list[0].uri.to_string()
                }
                _ => return Err(reject(400, "Bad Request (SUBSCRIBE without Contact)")),
            };
            let mut sub = SipSubscription::new(
                account.juid,
                Direction::SipWatchesXmpp,
                &contact.to_string(),
                call_id,
                local_tag,
                EVENT,
                now,
                now,
            );
            sub.remote_tag = remote_tag.to_owned();
            sub.remote_target = remote_target;
            sub.route_set = req.headers.values("Record-Route").join(", ");
            sub
        };
        sub.remote_cseq = sub.remote_cseq.max(i64::from(cseq.seq));
        sub.expires_at = now.saturating_add(i64::from(expires));
        sub.updated_at = now;
        let mut out = Vec::new();
        if expires == 0 {
            if sub.id != 0 {
                self.store
                    .remove_sip_subscription(sub.id)
                    .await
                    .map_err(store_err)?;
            }
            sub.local_cseq += 1;
            out.push(self.notify(account, &sub, local_contact, Ending::Timeout));
            return Ok((resp, out));
        }
        let roster = self
            .store
            .roster_item(account.juid, &contact.to_string())
            .await
            .map_err(store_err)?;
        let approved = roster
            .as_ref()
            .is_some_and(|r| matches!(r.subscription, Subscription::To | Subscription::Both));
        sub.state = if approved {
            SubscriptionState::Active
        } else {
            SubscriptionState::Pending
        };
        let mut sub = self
            .store
            .upsert_sip_subscription(&sub)
            .await
            .map_err(store_err)?;
        sub.local_cseq = self
            .store
            .next_local_cseq(sub.id)
            .await
            .map_err(store_err)?
            .unwrap_or(sub.local_cseq + 1);
        out.push(self.notify(account, &sub, local_contact, Ending::No));
        let user = self
            .rules
            .user_jid(&account.jab_id)
            .map_err(|_| reject(500, "Server Internal Error (invalid jab_id)"))?;
        if !approved {
            // RFC 8048 §5.3.1: ask the contact, and remember that the user asked.
            let mut item = roster.unwrap_or_else(|| {
                RosterItem::new(account.juid, &contact.to_string(), Subscription::None, now)
            });
            if !item.pending_out {
                item.pending_out = true;
                item.updated_at = now;
                self.store.set_roster_item(&item).await.map_err(store_err)?;
            }
            out.push(stanza(&user, contact, Type::Subscribe));
        } else if !self.seen.contains_key(&(account.juid, contact.to_string())) {
            out.push(stanza(&user, contact, Type::Probe));
        }
        Ok((resp, out))
    }

    /// A presence stanza from a contact to `account`'s JID: new NOTIFYs for the user's dialogs
    /// with that contact.
    pub async fn handle_presence(
        &mut self,
        now: i64,
        presence: &Presence,
        account: &Account,
        local_contact: &str,
    ) -> Result<Outputs, PresenceError> {
        let Some(from) = presence.from.as_ref() else {
            return Ok(Vec::new());
        };
        let contact = from.to_bare().to_string();
        let key = (account.juid, contact.clone());
        let ending = match presence.type_ {
            Type::None | Type::Unavailable | Type::Error => {
                let changed = self.seen.entry(key).or_default().handle_presence(presence);
                if !changed {
                    return Ok(Vec::new());
                }
                Ending::No
            }
            Type::Subscribed => Ending::No,
            Type::Unsubscribed => {
                self.seen.remove(&key);
                Ending::Rejected
            }
            _ => return Ok(Vec::new()),
        };
        let dialogs = self
            .store
            .sip_subscriptions_with(account.juid, &contact, Direction::SipWatchesXmpp)
            .await?;
        tracing::debug!(%contact, type_ = ?presence.type_, dialogs = dialogs.len(), "contact presence");
        let mut out = Vec::new();
        for mut sub in dialogs {
            match ending {
                Ending::Rejected => {
                    self.store.remove_sip_subscription(sub.id).await?;
                }
                _ if presence.type_ == Type::Subscribed
                    && sub.state != SubscriptionState::Active =>
                {
                    sub.state = SubscriptionState::Active;
                    sub.updated_at = now;
                    match self.store.update_sip_subscription(&sub).await? {
                        Some(stored) => sub = stored,
                        None => continue,
                    }
                }
                _ if sub.state != SubscriptionState::Active => continue,
                _ => {}
            }
            let Some(cseq) = self.store.next_local_cseq(sub.id).await? else {
                if ending != Ending::Rejected {
                    continue;
                }
                sub.local_cseq += 1;
                out.push(self.notify(account, &sub, local_contact, ending));
                continue;
            };
            sub.local_cseq = cseq;
            out.push(self.notify(account, &sub, local_contact, ending));
        }
        Ok(out)
    }

    /// Dialogs past their expiry end with `terminated;reason=timeout`. Each is handled by
    /// exactly one instance.
    pub async fn handle_timeout(
        &mut self,
        now: i64,
        local_contact: &str,
    ) -> Result<Outputs, PresenceError> {
        let mut out = Vec::new();
        loop {
            let ended = self.store.expire_sip_subscriptions(now, SWEEP).await?;
            let swept = ended.len();
            let juids: Vec<i64> = ended.iter().map(|s| s.juid).collect();
            let accounts = accounts_by_juid(&self.store, &juids).await?;
            for mut sub in ended {
                if sub.direction != Direction::SipWatchesXmpp {
                    continue;
                }
                let Some(account) = accounts.get(&sub.juid) else {
                    continue;
                };
                sub.local_cseq += 1;
                out.push(self.notify(account, &sub, local_contact, Ending::Timeout));
            }
            if swept < SWEEP {
                return Ok(out);
            }
        }
    }

    /// A NOTIFY in `sub`'s dialog with the state and body RFC 6665 and RFC 8048 call for.
    fn notify(
        &self,
        account: &Account,
        sub: &SipSubscription,
        local_contact: &str,
        ending: Ending,
    ) -> Output {
        let entity = BareJid::new(&sub.contact)
            .ok()
            .and_then(|jid| self.rules.contact_to_sip(&jid).ok())
            .map_or_else(|| format!("xmpp:{}", sub.contact), |uri| uri.to_string());
        let seen = self.seen.get(&(sub.juid, sub.contact.clone()));
        let (state, body) = match (ending, sub.state) {
            (Ending::Timeout, _) => (
                "terminated;reason=timeout".to_owned(),
                Some(closed_document(&entity)),
            ),
            (Ending::Rejected, _) => ("terminated;reason=rejected".to_owned(), None),
            (Ending::No, SubscriptionState::Active) => (
                format!("active;expires={}", remaining(sub)),
                Some(seen.map_or_else(|| closed_document(&entity), |p| p.to_pidf(&entity))),
            ),
            (Ending::No, _) => (format!("pending;expires={}", remaining(sub)), None),
        };
        Output::Sip {
            request: notify_request(sub, &entity, &account.sip_id, local_contact, &state, body),
            token: None,
        }
    }
}

/// Why a NOTIFY ends its dialog, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    No,
    Timeout,
    Rejected,
}

/// Seconds left in the subscription, as `Subscription-State: ...;expires=` needs them.
fn remaining(sub: &SipSubscription) -> i64 {
    (sub.expires_at - sub.updated_at).max(0)
}

fn stanza(from: &BareJid, to: &BareJid, type_: Type) -> Output {
    let mut p = Presence::new(type_);
    p.from = Some(Jid::from(from.clone()));
    p.to = Some(Jid::from(to.clone()));
    Output::Stanza(p.into())
}

/// A NOTIFY in a dialog (RFC 6665 §4.2.2): to the remote target, through the route set,
/// with From/To reversed from the SUBSCRIBE and the dialog's tags.
pub fn notify_request(
    sub: &SipSubscription,
    entity: &str,
    watcher: &str,
    local_contact: &str,
    state: &str,
    body: Option<String>,
) -> Request {
    let target = Uri::parse(&sub.remote_target)
        .or_else(|_| Uri::parse(watcher))
        .unwrap_or_else(|_| Uri::Other {
            scheme: "sip".into(),
            rest: "invalid".into(),
        });
    let mut req = Request::new(sipjab_sip::Method::Notify, target);
    let h = &mut req.headers;
    h.push("Max-Forwards", "70");
    if !sub.route_set.is_empty() {
        h.push("Route", sub.route_set.clone());
    }
    let mut from = NameAddr::new(Uri::parse(entity).unwrap_or_else(|_| req.uri.clone()));
    from.params.set("tag", Some(sub.local_tag.clone()));
    let mut to = NameAddr::new(Uri::parse(watcher).unwrap_or_else(|_| req.uri.clone()));
    to.params.set("tag", Some(sub.remote_tag.clone()));
    h.push("From", from.to_string());
    h.push("To", to.to_string());
    h.push("Call-ID", sub.call_id.clone());
    h.push("CSeq", format!("{} NOTIFY", sub.local_cseq));
    h.push("Event", EVENT);
    h.push("Subscription-State", state);
    h.push("Contact", format!("<{local_contact}>"));
    match body {
        Some(body) => req.set_body(CONTENT_TYPE, body.into_bytes()),
        None => req.set_body("application/pidf+xml", Vec::new()),
    }
    if req.body.is_empty() {
        req.headers.remove("Content-Type");
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reverses_the_dialog() {
        let mut sub = SipSubscription::new(
            1,
            Direction::SipWatchesXmpp,
            "romeo@montague.lit",
            "call-1",
            "ours",
            EVENT,
            1600,
            1000,
        );
        sub.remote_tag = "theirs".into();
        sub.remote_target = "sip:alice@192.0.2.1:5070".into();
        sub.route_set = "<sip:proxy.example.com;lr>".into();
        sub.local_cseq = 7;
        let req = notify_request(
            &sub,
            "sip:romeo*montague.lit@jabber.x.com",
            "sip:alice@example.com",
            "sip:127.0.0.1:5060",
            "active;expires=600",
            Some(closed_document("sip:romeo*montague.lit@jabber.x.com")),
        );
        assert_eq!(req.uri.to_string(), "sip:alice@192.0.2.1:5070");
        let h = &req.headers;
        assert_eq!(h.from().unwrap().unwrap().tag(), Some("ours"));
        assert_eq!(h.to().unwrap().unwrap().tag(), Some("theirs"));
        assert_eq!(
            h.to().unwrap().unwrap().uri.to_string(),
            "sip:alice@example.com"
        );
        assert_eq!(h.get("Route"), Some("<sip:proxy.example.com;lr>"));
        assert_eq!(h.get("CSeq"), Some("7 NOTIFY"));
        assert_eq!(h.get("Subscription-State"), Some("active;expires=600"));
        assert_eq!(h.get("Content-Type"), Some(CONTENT_TYPE));
        let pending = notify_request(
            &sub,
            "sip:r@x",
            "sip:a@x",
            "sip:g",
            "pending;expires=60",
            None,
        );
        assert!(pending.body.is_empty());
        assert_eq!(pending.headers.get("Content-Type"), None);
        assert_eq!(remaining(&sub), 600);
    }
}
