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
//! The dialogs live in the store, and so does the contacts' last presence per resource, as
//! the server sent it to the watching user (`sipjab_contact_presence`): several instances
//! behind one domain each see part of that presence traffic, and whichever gets a SUBSCRIBE
//! refresh builds its PIDF from what all of them stored. It is read from the store at each
//! change and each NOTIFY, not cached, so no instance works from a stale copy.
//!
//! A NOTIFY that gets 481, or another answer RFC 6665 §4.2.2 says ends the subscription, or
//! no answer at all (Timer F), removes its dialog; the XMPP subscription stays.

use jid::{BareJid, Jid};
use minidom::Element;
use sipjab_db::{
    Account, ContactResource, Direction, RESOURCE_MAX, RosterItem, SipSubscription, Store,
    Subscription, SubscriptionState,
};
use sipjab_sip::{CSeq, Headers, NameAddr, Rejection, Request, Response, StatusCode, Uri};
use xmpp_parsers::presence::{Presence, Type};

use crate::address::AddressRules;
use crate::gateway::{Output, Token};
use crate::pidf::{CONTENT_TYPE, ContactPresence, closed_document};
use crate::presence::{PresenceError, accounts_by_juid, presence_expiry, store_failure};
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
}

/// A contact's presence as stored for one user, and the `seq` to write its next state from.
struct Known {
    presence: ContactPresence,
    next_seq: i64,
    /// Whether the store had anything of the contact.
    any: bool,
}

type Outputs = Vec<Output>;

impl Watchers {
    /// Watchers on top of `store`.
    pub fn new(store: Store, rules: AddressRules) -> Self {
        Self { store, rules }
    }

    /// What `contact` last sent the user, from the store. A row whose stanza no longer
    /// parses is left out.
    async fn known(&self, juid: i64, contact: &str) -> Result<Known, sipjab_db::Error> {
        let rows = self.store.contact_presence(juid, contact).await?;
        let next_seq = rows
            .iter()
            .map(|r| r.seq)
            .max()
            .map_or(1, |s| s.saturating_add(1));
        let parsed: Vec<(String, Presence)> = rows
            .iter()
            .filter_map(|r| {
                let p = r
                    .stanza
                    .parse::<Element>()
                    .ok()
                    .and_then(|el| Presence::try_from(el).ok());
                if p.is_none() {
                    tracing::warn!(%contact, resource = %r.resource, "unreadable stored presence");
                }
                Some((r.resource.clone(), p?))
            })
            .collect();
        Ok(Known {
            presence: ContactPresence::replay(parsed.iter().map(|(r, p)| (r.as_str(), p))),
            next_seq,
            any: !rows.is_empty(),
        })
    }

    /// Stores `presence` as all the user knows of `contact`.
    async fn save(
        &self,
        now: i64,
        juid: i64,
        contact: &str,
        known: &Known,
    ) -> Result<(), sipjab_db::Error> {
        let rows: Vec<ContactResource> = known
            .presence
            .snapshot()
            .into_iter()
            .map(|(resource, p)| {
                let available = p.type_ == Type::None;
                let resource: String = resource.chars().take(RESOURCE_MAX).collect();
                let stanza = String::from(&Element::from(p));
                ContactResource::new(juid, contact, &resource, available, &stanza, 0, now)
            })
            .collect();
        self.store
            .set_contact_presence(juid, contact, known.next_seq, &rows)
            .await
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
        let (from, to, call_id, cseq) = dialog_headers(req, &resp.headers)?;
        let (Some(remote_tag), Some(local_tag)) = (from.tag(), to.tag()) else {
            return Err(reject(400, "Bad Request (From without a tag)"));
        };
        let in_dialog = req
            .headers
            .to()
            .ok()
            .flatten()
            .is_some_and(|t| t.tag().is_some());
        let store_err = store_failure("subscription");
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
            out.push(self.notify(account, &sub, local_contact, Ending::Timeout, None));
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
        let known = self
            .known(account.juid, &contact.to_string())
            .await
            .map_err(store_err)?;
        out.push(self.notify(
            account,
            &sub,
            local_contact,
            Ending::No,
            Some(&known.presence),
        ));
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
        } else if !known.any {
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
        let mut known = None;
        let ending = match presence.type_ {
            Type::None | Type::Unavailable | Type::Error => {
                let mut k = self.known(account.juid, &contact).await?;
                if !k.presence.handle_presence(presence) {
                    return Ok(Vec::new());
                }
                self.save(now, account.juid, &contact, &k).await?;
                known = Some(k);
                Ending::No
            }
            Type::Subscribed => {
                known = Some(self.known(account.juid, &contact).await?);
                Ending::No
            }
            Type::Unsubscribed => {
                // Nothing of the contact is stored past the end of the subscription.
                self.store
                    .set_contact_presence(account.juid, &contact, i64::MAX, &[])
                    .await?;
                Ending::Rejected
            }
            _ => return Ok(Vec::new()),
        };
        let known = known.as_ref().map(|k| &k.presence);
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
                out.push(self.notify(account, &sub, local_contact, ending, known));
                continue;
            };
            sub.local_cseq = cseq;
            out.push(self.notify(account, &sub, local_contact, ending, known));
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
                out.push(self.notify(account, &sub, local_contact, Ending::Timeout, None));
            }
            if swept < SWEEP {
                return Ok(out);
            }
        }
    }

    /// The final answer to a NOTIFY sent in dialog `id` (`resp` is `None` when no answer
    /// came: Timer F, or the request could not be sent). RFC 6665 §4.2.2: the answers
    /// `ends_subscription` lists remove the dialog, and so does the lack of one; the XMPP
    /// subscription stays, as RFC 8048 keeps the two apart.
    pub async fn handle_notify_result(
        &mut self,
        id: i64,
        code: u16,
        resp: Option<&Response>,
    ) -> Result<(), PresenceError> {
        let no_answer = resp.is_none() && !(200..300).contains(&code);
        if (no_answer || ends_subscription(code)) && self.store.remove_sip_subscription(id).await? {
            tracing::debug!(id, code, "NOTIFY failed: subscription removed");
        }
        Ok(())
    }

    /// A NOTIFY in `sub`'s dialog with the state and body RFC 6665 and RFC 8048 call for;
    /// `presence` is the contact's, as stored. Its answer comes back to
    /// [`Watchers::handle_notify_result`], unless the NOTIFY ends the dialog anyway.
    fn notify(
        &self,
        account: &Account,
        sub: &SipSubscription,
        local_contact: &str,
        ending: Ending,
        presence: Option<&ContactPresence>,
    ) -> Output {
        let entity = BareJid::new(&sub.contact)
            .ok()
            .and_then(|jid| self.rules.contact_to_sip(&jid).ok())
            .map_or_else(|| format!("xmpp:{}", sub.contact), |uri| uri.to_string());
        let (state, body) = match (ending, sub.state) {
            (Ending::Timeout, _) => (
                "terminated;reason=timeout".to_owned(),
                Some(closed_document(&entity)),
            ),
            (Ending::Rejected, _) => ("terminated;reason=rejected".to_owned(), None),
            (Ending::No, SubscriptionState::Active) => (
                format!("active;expires={}", remaining(sub)),
                Some(presence.map_or_else(|| closed_document(&entity), |p| p.to_pidf(&entity))),
            ),
            (Ending::No, _) => (format!("pending;expires={}", remaining(sub)), None),
        };
        let token = (ending == Ending::No && sub.id != 0).then_some(Token::Notify(sub.id));
        Output::Sip {
            request: notify_request(sub, &entity, &account.sip_id, local_contact, &state, body),
            token,
        }
    }
}

/// Whether a final response to a NOTIFY ends its subscription (RFC 6665 §4.2.2: 404, 405,
/// 410, 416, 480-485, 489, 501 and 604; 481 among them).
fn ends_subscription(code: u16) -> bool {
    matches!(code, 404 | 405 | 410 | 416 | 480..=485 | 489 | 501 | 604)
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

/// The headers that identify a request's dialog (RFC 3261 §12): From, To, Call-ID and CSeq,
/// with To taken from `to`: the request's own headers, or those of the response that adds
/// our tag to it. 400 when one is missing or malformed.
pub(crate) fn dialog_headers<'a>(
    req: &'a Request,
    to: &Headers,
) -> Result<(NameAddr, NameAddr, &'a str, CSeq), Rejection> {
    match (
        req.headers.from(),
        to.to(),
        req.headers.call_id(),
        req.headers.cseq(),
    ) {
        (Ok(Some(from)), Ok(Some(to)), Ok(Some(call_id)), Ok(Some(cseq))) => {
            Ok((from.clone(), to.clone(), call_id, cseq))
        }
        _ => Err(reject(400, "Bad Request (From, To, Call-ID or CSeq)")),
    }
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
    use crate::address::JDomain;

    const LOCAL: &str = "sip:127.0.0.1:5060";

    fn rules() -> AddressRules {
        AddressRules {
            jdomain: JDomain::new("jabber.x.com", '*').unwrap(),
            aliases: Vec::new(),
            component_domain: "sip.x.com".into(),
        }
    }

    fn request(text: &str) -> Request {
        let sipjab_sip::Message::Request(req) =
            sipjab_sip::parse_datagram(text.as_bytes()).unwrap()
        else {
            panic!("not a request")
        };
        req
    }

    fn subscribe(to_tag: Option<&str>, cseq: u32) -> Request {
        let to_tag = to_tag.map_or_else(String::new, |t| format!(";tag={t}"));
        request(&format!(
            "SUBSCRIBE sip:romeo*montague.lit@jabber.x.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs{cseq}\r\n\
             From: <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:romeo*montague.lit@jabber.x.com>{to_tag}\r\n\
             Call-ID: watch-1\r\nCSeq: {cseq} SUBSCRIBE\r\n\
             Contact: <sip:alice@192.0.2.1:5070>\r\nEvent: presence\r\nExpires: 600\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    fn notifies(out: &[Output]) -> Vec<(&Request, Option<Token>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Sip { request, token } => Some((request, *token)),
                Output::Stanza(_) | Output::Chat(_) | Output::Offline(_) => None,
            })
            .collect()
    }

    /// The contact's presence lives in the store: a second instance builds the refresh
    /// NOTIFY from what the first stored. A 481 to a NOTIFY ends the dialog, not the XMPP
    /// subscription (RFC 6665 §4.2.2, RFC 8048).
    #[tokio::test]
    async fn stored_presence_and_a_failed_notify() {
        let (_dir, store, alice) = crate::presence::tests::store_with_alice().await;
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let approved = RosterItem::new(alice.juid, "romeo@montague.lit", Subscription::To, 0);
        store.set_roster_item(&approved).await.unwrap();
        let mut a = Watchers::new(store.clone(), rules());
        let mut b = Watchers::new(store.clone(), rules());
        let t0 = 1_000_000;

        // Nothing known yet: an active NOTIFY with a closed document, and a probe.
        let (resp, out) = a
            .handle_subscribe(t0, &subscribe(None, 1), &alice, &romeo, LOCAL)
            .await
            .unwrap();
        assert_eq!(out.len(), 2, "NOTIFY and probe");
        let [(first, Some(Token::Notify(id)))] = notifies(&out)[..] else {
            panic!("one NOTIFY with a token")
        };
        assert!(String::from_utf8_lossy(&first.body).contains("closed"));
        let our_tag = resp
            .headers
            .to()
            .unwrap()
            .unwrap()
            .tag()
            .unwrap()
            .to_owned();

        // The contact comes online; instance a sees it, and stores it.
        let mut p = Presence::new(Type::None);
        p.from = Some(Jid::new("romeo@montague.lit/balcony").unwrap());
        p.to = Some(Jid::new("alice@sip.x.com").unwrap());
        p.statuses
            .insert(xmpp_parsers::message::Lang::new(), "Wherefore".into());
        let out = a.handle_presence(t0 + 1, &p, &alice, LOCAL).await.unwrap();
        let [(notify, _)] = notifies(&out)[..] else {
            panic!("one NOTIFY")
        };
        assert!(String::from_utf8_lossy(&notify.body).contains("Wherefore"));
        // The same presence again changes nothing.
        assert!(
            a.handle_presence(t0 + 2, &p, &alice, LOCAL)
                .await
                .unwrap()
                .is_empty()
        );

        // The refresh reaches instance b: the PIDF comes from the store, and no probe.
        let (_, out) = b
            .handle_subscribe(t0 + 3, &subscribe(Some(&our_tag), 2), &alice, &romeo, LOCAL)
            .await
            .unwrap();
        let [(refresh, _)] = notifies(&out)[..] else {
            panic!("one NOTIFY")
        };
        assert_eq!(out.len(), 1, "no probe: the presence is known");
        let body = String::from_utf8_lossy(&refresh.body);
        assert!(
            body.contains("open") && body.contains("Wherefore"),
            "{body}"
        );

        // A 2xx keeps the dialog; 481 removes it, and the XMPP subscription stays.
        b.handle_notify_result(id, 200, None).await.unwrap();
        assert_eq!(store.sip_subscriptions(alice.juid).await.unwrap().len(), 1);
        let gone = Response::for_request(refresh, StatusCode::new(481).unwrap(), "Gone");
        b.handle_notify_result(id, 481, Some(&gone)).await.unwrap();
        assert!(
            store
                .sip_subscriptions(alice.juid)
                .await
                .unwrap()
                .is_empty()
        );
        let item = store
            .roster_item(alice.juid, "romeo@montague.lit")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.subscription, Subscription::To);
    }

    #[test]
    fn failures_that_end_a_subscription() {
        for code in [404, 405, 410, 416, 480, 481, 485, 489, 501, 604] {
            assert!(ends_subscription(code), "{code}");
        }
        for code in [200, 302, 400, 403, 486, 500, 503, 603] {
            assert!(!ends_subscription(code), "{code}");
        }
    }

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
