//! The gateway's message state machine, sans-IO.
//!
//! Inputs are `handle_*` calls that each take `now`. Outputs are drained with
//! [`Gateway::poll_output`], and [`Gateway::poll_timeout`] says when to call
//! [`Gateway::handle_timeout`]. The driver (`run.rs`) looks accounts up in the store and passes
//! them in. It owns the sockets, the component link and the SIP transactions.
//!
//! The state kept here:
//!
//! - **the delay queue** (SER `delay_time`). While the component link is down, SIP MESSAGEs are
//!   still accepted and queued in order. On reconnect they are sent, and those older than
//!   `delay_time` are dropped with an ERROR notice to their sender. The queue is bounded; past
//!   the bound, MESSAGEs get 503 with Retry-After.
//! - **stanzas sent for SIP users**, by stanza id, so that an XMPP error reply becomes an ERROR
//!   notice naming the destination, the condition and the first line of the text
//!   ([`crate::sent_log`]).
//! - **MESSAGEs sent for XMPP users**, by token, so that a SIP error answer becomes an error
//!   stanza to the XMPP sender, mapped by RFC 7247 §7.2.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::Jid;
use minidom::Element;
use sipjab_component::{ChatKind, ChatMessage, Envelope, IncomingChat, PlainJid};
use sipjab_db::{Account, Room};
use sipjab_sip::{Rejection, Request, Uri};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::address::{AddressRules, XmppTarget};
use crate::error_map::{condition_for_status, condition_name, error_type};
use crate::sent_log::{SentForSip, SentLog};
use crate::sip_to_xmpp::{destination, message_text, reject};
use crate::xmpp_to_sip::{first_line, message_request};

/// Where a SIP MESSAGE goes: the destination as the user wrote it, and what it names.
#[derive(Debug, Clone)]
pub struct Route {
    destination: String,
    /// The contact or conference it names.
    pub target: XmppTarget,
}

/// Who waits for the final answer to a SIP request the gateway sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// A MESSAGE sent for an XMPP user: [`Gateway::handle_sip_result`].
    Message(u64),
    /// A SUBSCRIBE sent for an XMPP user in store dialog `id`: the presence module.
    Watch(i64),
    /// A NOTIFY sent to a SIP watcher in store dialog `id`: the watchers module.
    Notify(i64),
}

/// What the gateway needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address rules, including the component domain.
    pub rules: AddressRules,
    /// From of INFO and ERROR notices.
    pub registrar: Uri,
    /// How long a MESSAGE may wait for the link.
    pub delay_time: Duration,
    /// How many MESSAGEs may wait.
    pub queue_limit: usize,
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a stanza on the component link.
    Stanza(Element),
    /// Send the chat message a SIP MESSAGE became ([`ChatMessage`]: written without a tree).
    Chat(ChatMessage),
    /// Send a SIP request in a new client transaction; report its final status with
    /// [`Gateway::handle_sip_result`] when `token` is set.
    Sip {
        /// The request, without Via.
        request: Request,
        /// Where its answer goes.
        token: Option<Token>,
    },
    /// The user went offline: leave the user's conferences ([`crate::conference`]).
    Offline(Account),
}

/// A stanza waiting for the component link, with what its sender is told if it fails.
#[derive(Debug)]
struct Queued {
    at: Instant,
    stanza: Stanza,
    sent: Option<(u64, SentForSip)>,
}

/// A stanza for the component link: a chat message from SIP, or any other as a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Stanza {
    /// Any stanza.
    Tree(Element),
    /// A chat message from a SIP user.
    Chat(ChatMessage),
}

impl Stanza {
    fn id(&self) -> Option<&str> {
        match self {
            Self::Tree(el) => el.attr("id"),
            Self::Chat(chat) => Some(&chat.id),
        }
    }

    /// What the driver does to send it.
    fn into_output(self) -> Output {
        match self {
            Self::Tree(el) => Output::Stanza(el),
            Self::Chat(chat) => Output::Chat(chat),
        }
    }
}

/// A MESSAGE sent for an XMPP user, awaiting its final answer.
#[derive(Debug)]
struct SentForXmpp {
    /// The XMPP sender, who gets the error (a valid JID, parsed only then).
    sender: String,
    /// The gateway user it was for (the same).
    recipient: String,
    id: Option<Id>,
    body: String,
}

/// A chat message for a SIP user: what goes into its MESSAGE and what an error reply needs.
/// The JIDs are checked but kept as text: most are plain and need no JID parser, and the
/// parsed form is only needed for an error reply.
#[derive(Debug)]
struct PlainChat {
    sender: String,
    to: String,
    id: Option<Id>,
    body: String,
    subject: Option<String>,
}

impl PlainChat {
    /// The message as most arrive: type chat or normal (or none), a `from` (checked as a
    /// JID where `forward_chat` maps it, its one use here) and a valid `to`, one body and
    /// at most one subject, neither with attributes (so no `xml:lang` to choose between).
    /// Read straight from the element, because `Message::try_from` goes through XML
    /// events and cost 17,000 instructions a message; any other message (errors,
    /// groupchat, several languages, no body) is left to it.
    fn read(stanza: &Element) -> Option<Self> {
        let envelope = Envelope::of(stanza);
        if !stanza.is("message", xmpp_parsers::ns::DEFAULT_NS) || !Self::takes(envelope) {
            return None;
        }
        let (mut body, mut subject) = (None, None);
        for child in stanza.children() {
            let slot = if child.is("body", xmpp_parsers::ns::DEFAULT_NS) {
                &mut body
            } else if child.is("subject", xmpp_parsers::ns::DEFAULT_NS) {
                &mut subject
            } else {
                continue;
            };
            if slot.is_some() || child.attrs().into_iter().next().is_some() {
                return None;
            }
            *slot = Some(child.text());
        }
        Some(Self {
            sender: envelope.from?.to_owned(),
            to: envelope.to?.to_owned(),
            id: envelope.id.map(|id| Id(id.to_owned())),
            body: body?,
            subject,
        })
    }

    /// The same from a message the link read without a tree, which [`takes`](Self::takes).
    fn from_incoming(chat: IncomingChat) -> Self {
        Self {
            sender: chat.from.unwrap_or_default(),
            to: chat.to.unwrap_or_default(),
            id: chat.id.map(Id),
            body: chat.body,
            subject: None,
        }
    }

    /// Whether the addressing fits: typed chat or normal (or not typed), with a sender
    /// and a valid `to`.
    fn takes(envelope: Envelope<'_>) -> bool {
        matches!(envelope.kind, None | Some("chat" | "normal"))
            && envelope.from.is_some()
            && envelope
                .to
                .is_some_and(|to| PlainJid::parse(to).is_some() || Jid::new(to).is_ok())
    }
}

/// The message gateway's state.
#[derive(Debug)]
pub struct Gateway {
    settings: Settings,
    link_up: bool,
    queue: VecDeque<Queued>,
    /// Keyed by the number in the stanza id (see `next_id`).
    sent_for_sip: SentLog,
    sent_for_xmpp: HashMap<u64, SentForXmpp>,
    outputs: VecDeque<Output>,
    counter: u64,
    nonce: u32,
    /// `sipjab-<nonce>-`, the start of every stanza id (see `next_id`).
    id_prefix: String,
    /// Users' JIDs already made from their `jab_id` (escaped and checked, which costs about
    /// as much as parsing a MESSAGE's From): the same users send message after message.
    user_jids: UserCache<Jid>,
    /// Users' SIP URIs already parsed from their `sip_id` (`None`: not a valid URI), for the
    /// same reason.
    user_uris: UserCache<Uri>,
}

/// Users' addresses kept at most per cache; a cache is emptied when it is full.
const USER_CACHE_MAX: usize = 4096;

/// A cache of what a user's store column makes (`None`: the value makes nothing valid),
/// keyed by the column. The keys are store values, so a fast hash will do.
type UserCache<V> = HashMap<String, Option<V>, foldhash::fast::RandomState>;

/// What `cache` holds for `key`, made by `make` the first time; a full cache is emptied
/// first. The key is copied only when it is new.
fn remember<'c, V>(
    cache: &'c mut UserCache<V>,
    key: &str,
    make: impl FnOnce() -> Option<V>,
) -> Option<&'c V> {
    if !cache.contains_key(key) {
        if cache.len() >= USER_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_owned(), make());
    }
    cache.get(key)?.as_ref()
}

impl Gateway {
    /// A gateway whose link is down until [`Gateway::handle_link_up`]. It takes the memory
    /// of its sent-stanza log ([`crate::sent_log::LOG_BYTES`]) at once.
    pub fn new(now: Instant, settings: Settings) -> Self {
        let nonce = fastrand::u32(..);
        Self {
            settings,
            link_up: false,
            queue: VecDeque::new(),
            sent_for_sip: SentLog::new(now),
            sent_for_xmpp: HashMap::new(),
            outputs: VecDeque::new(),
            counter: 0,
            nonce,
            id_prefix: format!("sipjab-{nonce:08x}-"),
            user_jids: UserCache::default(),
            user_uris: UserCache::default(),
        }
    }

    /// The address rules.
    pub fn rules(&self) -> &AddressRules {
        &self.settings.rules
    }

    /// The component domain.
    pub fn domain(&self) -> &str {
        &self.settings.rules.component_domain
    }

    /// How many MESSAGEs wait for the link.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Gateway::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|q| q.at + self.settings.delay_time)
    }

    /// The gateway user a stanza is for: the localpart of a `to` in the component domain, the
    /// account's `jab_id`.
    pub fn recipient_of(&self, to: &str) -> Option<String> {
        // A plain JID needs no JID parser: this runs for every stanza.
        if let Some(plain) = PlainJid::parse(to) {
            return plain
                .node
                .filter(|_| plain.domain.eq_ignore_ascii_case(self.domain()))
                .map(str::to_owned);
        }
        // Any resource is the user's device, as in the plain case: only node and domain count.
        let to = Jid::new(to).ok()?;
        if !to.domain().as_str().eq_ignore_ascii_case(self.domain()) {
            return None;
        }
        to.node().map(|n| n.to_string())
    }

    /// Where a SIP MESSAGE goes. Worked out before [`Gateway::handle_message`] so that the
    /// driver can look up the sender's membership when it is a conference.
    pub fn route(&self, req: &Request) -> Result<Route, Rejection> {
        let to = req.headers.to().ok().flatten().map(|t| &t.uri);
        let (dest, target) = destination(&self.settings.rules, req, to)?;
        Ok(Route {
            destination: dest.to_string(),
            target,
        })
    }

    /// A SIP MESSAGE that passed the transport checks, with where it goes, its sender's
    /// account and, for a conference, the sender's membership of the room. `Ok` means the text
    /// was handed to the link or queued: answer 202 Accepted.
    pub fn handle_message(
        &mut self,
        now: Instant,
        req: &Request,
        route: Route,
        sender: Option<&Account>,
        membership: Option<&Room>,
    ) -> Result<(), Rejection> {
        let Route {
            destination: dest,
            target,
        } = route;
        let Some(account) = sender else {
            return Err(reject(403, "Forbidden (no gateway account for the sender)"));
        };
        let (to_jid, kind) = match target {
            XmppTarget::Contact(jid) => (Jid::from(jid), ChatKind::Chat),
            XmppTarget::Conference { room, nick } => {
                let Some(member) = membership else {
                    if let Ok(user) = Uri::parse(&account.sip_id) {
                        let text = format!(
                            "ERROR: you are not in the conference {room}; send :join to {dest} first"
                        );
                        self.notice(user, text);
                    }
                    return Err(reject(404, "Not Found (join the conference first)"));
                };
                match nick {
                    // Another occupant: a private message (XEP-0045 §7.5).
                    Some(nick) if nick != member.nick => {
                        let occupant = room.with_resource_str(&nick).map_err(|_| {
                            reject(400, "Bad Request (not a valid nick for the room)")
                        })?;
                        (Jid::from(occupant), ChatKind::Private)
                    }
                    _ => (Jid::from(room), ChatKind::Groupchat),
                }
            }
        };
        let from_jid = self.user_jid(account)?;
        let text = message_text(req)?;
        if !self.link_up && self.queue.len() >= self.settings.queue_limit {
            let mut r = reject(503, "Service Unavailable (XMPP link down, queue full)");
            r.headers.push(("Retry-After".into(), "30".into()));
            return Err(r);
        }
        let user = if self.user_uri(account).is_some() {
            account.sip_id.clone()
        } else {
            req.uri.to_string()
        };
        let sent = SentForSip {
            user,
            destination: dest,
            first_line: first_line(&text.body),
        };
        let (key, id) = self.next_id();
        let chat = ChatMessage {
            from: from_jid,
            to: to_jid,
            id,
            kind,
            body: text.body,
            subject: text.subject,
        };
        if self.link_up {
            self.sent_for_sip.remember(now, key, &sent);
            self.outputs.push_back(Output::Chat(chat));
        } else {
            self.queue.push_back(Queued {
                at: now,
                stanza: Stanza::Chat(chat),
                sent: Some((key, sent)),
            });
        }
        Ok(())
    }

    /// A stanza from the component link, with the account of the gateway user it is for
    /// (`None`: no such user, or not addressed to a user).
    pub fn handle_stanza(&mut self, now: Instant, stanza: Element, recipient: Option<&Account>) {
        if let Some(account) = recipient
            && let Some(chat) = PlainChat::read(&stanza)
            && self.forward_chat(chat, account).is_ok()
        {
            return;
        }
        match stanza.name() {
            "message" => match Message::try_from(stanza) {
                Ok(msg) => self.handle_xmpp_message(now, msg, recipient),
                Err(e) => tracing::debug!(error = %e, "ignoring a malformed message stanza"),
            },
            // No IQ namespace is served for users yet (RFC 6120 §8.4).
            "iq" => self.reply_iq_error(stanza, DefinedCondition::ServiceUnavailable),
            _ => {}
        }
    }

    fn handle_xmpp_message(&mut self, now: Instant, msg: Message, recipient: Option<&Account>) {
        match msg.type_ {
            MessageType::Error => return self.handle_xmpp_error(now, msg),
            // MUC traffic is not routed yet.
            MessageType::Groupchat => return,
            _ => {}
        }
        let Some((_, body)) = msg.get_best_body_cloned(vec![]) else {
            // Chat states, receipts and other bodiless messages stay on the XMPP side.
            return;
        };
        let (Some(sender), Some(to)) = (msg.from.clone(), msg.to.clone()) else {
            return;
        };
        let Some(account) = recipient else {
            return self.reply_message_error(&msg, DefinedCondition::ServiceUnavailable, None);
        };
        let chat = PlainChat {
            sender: sender.to_string(),
            to: to.to_string(),
            id: msg.id.clone(),
            body,
            subject: msg.get_best_subject_cloned(vec![]).map(|(_, s)| s),
        };
        if let Err((condition, text)) = self.forward_chat(chat, account) {
            self.reply_message_error(&msg, condition, Some(text));
        }
    }

    /// A chat message the link read without a tree, for `account`'s user: sent on as
    /// [`handle_stanza`](Self::handle_stanza) would send its tree. `Err` gives back, with
    /// nothing done, one that is not a plain chat or cannot be sent on, for
    /// `handle_stanza` to judge and answer.
    #[allow(
        clippy::result_large_err,
        reason = "the chat handed back as it came, once, on the rare path"
    )]
    pub fn handle_plain_chat(
        &mut self,
        chat: IncomingChat,
        account: &Account,
    ) -> Result<(), IncomingChat> {
        let uris = match &chat.from {
            Some(sender) if PlainChat::takes(chat.envelope()) => {
                self.chat_uris(sender, account).ok()
            }
            _ => None,
        };
        let Some((from_uri, to_uri)) = uris else {
            return Err(chat);
        };
        self.send_chat(PlainChat::from_incoming(chat), &from_uri, &to_uri);
        Ok(())
    }

    /// Sends a chat message to the SIP user it is for; `Err` is the error to answer with.
    fn forward_chat(
        &mut self,
        chat: PlainChat,
        account: &Account,
    ) -> Result<(), (DefinedCondition, String)> {
        let (from_uri, to_uri) = self.chat_uris(&chat.sender, account)?;
        self.send_chat(chat, &from_uri, &to_uri);
        Ok(())
    }

    /// The From and To of the MESSAGE a chat from `sender` to `account`'s user becomes.
    fn chat_uris(
        &mut self,
        sender: &str,
        account: &Account,
    ) -> Result<(Uri, Uri), (DefinedCondition, String)> {
        let from_uri = self
            .contact_uri(sender)
            .map_err(|e| (DefinedCondition::JidMalformed, e))?;
        let Some(to_uri) = self.user_uri(account).cloned() else {
            let text = format!(
                "the gateway user's SIP address {} is invalid",
                account.sip_id
            );
            return Err((DefinedCondition::InternalServerError, text));
        };
        Ok((from_uri, to_uri))
    }

    /// Queues the MESSAGE a chat becomes, remembered under a token for its answer.
    fn send_chat(&mut self, chat: PlainChat, from_uri: &Uri, to_uri: &Uri) {
        let request = message_request(from_uri, to_uri, &chat.body, chat.subject.as_deref());
        let token = self.counter;
        self.counter += 1;
        self.sent_for_xmpp.insert(
            token,
            SentForXmpp {
                sender: chat.sender,
                recipient: chat.to,
                id: chat.id,
                body: chat.body,
            },
        );
        self.outputs.push_back(Output::Sip {
            request,
            token: Some(Token::Message(token)),
        });
    }

    /// The SIP address an XMPP sender is seen under (`Err`: the reason it has none). This
    /// is also where the sender's JID is checked: the JID parser runs only for one that is
    /// not plain.
    fn contact_uri(&self, sender: &str) -> Result<Uri, String> {
        let rules = &self.settings.rules;
        let uri = match PlainJid::parse(sender) {
            Some(plain) => rules.contact_parts_to_sip(plain.node, plain.domain),
            None => {
                let jid = Jid::new(sender).map_err(|e| e.to_string())?;
                rules.contact_to_sip(&jid.to_bare())
            }
        };
        uri.map(Uri::Sip).map_err(|e| e.to_string())
    }

    /// An XMPP error reply to a stanza sent for a SIP user: an ERROR notice to that user.
    fn handle_xmpp_error(&mut self, now: Instant, msg: Message) {
        let Some(sent) = msg
            .id
            .as_ref()
            .and_then(|id| self.sent_key(&id.0))
            .and_then(|key| self.sent_for_sip.take(now, key))
        else {
            return;
        };
        let error = msg
            .payloads
            .iter()
            .find(|p| p.name() == "error")
            .and_then(|p| StanzaError::try_from(p.clone()).ok());
        let condition = match &error {
            Some(e) => {
                let name = condition_name(&e.defined_condition);
                match e.texts.values().next() {
                    Some(text) => format!("{name}: {text}"),
                    None => name.to_owned(),
                }
            }
            None => "undefined-condition".to_owned(),
        };
        let text = format!(
            "ERROR: your message to {} was not delivered ({condition})\n> {}",
            sent.destination, sent.first_line
        );
        match Uri::parse(&sent.user) {
            Ok(user) => self.notice(user, text),
            Err(e) => tracing::debug!(error = %e, "no notice: the sender's URI is invalid"),
        }
    }

    /// The final status of a request sent with a token; a failure becomes an error stanza to
    /// the XMPP sender (RFC 7247 §7.2).
    pub fn handle_sip_result(&mut self, _now: Instant, token: u64, code: u16, reason: &str) {
        let Some(sent) = self.sent_for_xmpp.remove(&token) else {
            return;
        };
        if code < 300 {
            return;
        }
        let (Ok(sender), Ok(recipient)) = (Jid::new(&sent.sender), Jid::new(&sent.recipient))
        else {
            return;
        };
        let condition = condition_for_status(code);
        let mut reply = Message::error(Some(sender));
        reply.from = Some(recipient);
        reply.id = sent.id;
        reply.bodies.insert(Lang::new(), sent.body);
        reply.payloads.push(
            StanzaError::new(
                error_type(&condition),
                condition,
                "en",
                format!("SIP {code} {reason}"),
            )
            .into(),
        );
        self.outputs.push_back(Output::Stanza(reply.into()));
    }

    /// The component link is up: send what waited, drop what waited too long.
    pub fn handle_link_up(&mut self, now: Instant) {
        self.link_up = true;
        self.expire_queue(now);
        while let Some(q) = self.queue.pop_front() {
            if let Some((key, sent)) = q.sent {
                self.sent_for_sip.remember(now, key, &sent);
            }
            self.outputs.push_back(q.stanza.into_output());
        }
    }

    /// The component link is down: queue from now on.
    pub fn handle_link_down(&mut self) {
        self.link_up = false;
    }

    /// The link refused a stanza the gateway had handed out: it is down, and the stanza
    /// goes to the head of the queue (it is older than anything queued after it).
    pub fn handle_send_failed(&mut self, now: Instant, stanza: Stanza) {
        self.link_up = false;
        let sent = stanza
            .id()
            .and_then(|id| self.sent_key(id))
            .and_then(|key| Some((key, self.sent_for_sip.take(now, key)?)));
        self.queue.push_front(Queued {
            at: now,
            stanza,
            sent,
        });
    }

    /// Timers: queued MESSAGEs past `delay_time`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_queue(now);
    }

    fn expire_queue(&mut self, now: Instant) {
        let delay = self.settings.delay_time;
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for q in std::mem::take(&mut self.queue) {
            if now.saturating_duration_since(q.at) < delay {
                kept.push_back(q);
                continue;
            }
            if let Some((_, sent)) = q.sent
                && let Ok(user) = Uri::parse(&sent.user)
            {
                let text = format!(
                    "ERROR: your message to {} was not delivered: the Jabber server could not be reached within {} s\n> {}",
                    sent.destination,
                    delay.as_secs(),
                    sent.first_line
                );
                self.outputs.push_back(Output::Sip {
                    request: self.notice_request(&user, &text),
                    token: None,
                });
            }
        }
        self.queue = kept;
    }

    fn notice(&mut self, to: Uri, text: String) {
        let request = self.notice_request(&to, &text);
        self.outputs.push_back(Output::Sip {
            request,
            token: None,
        });
    }

    fn notice_request(&self, to: &Uri, text: &str) -> Request {
        message_request(&self.settings.registrar, to, text, None)
    }

    /// `<jab_id>@<component domain>`, the JID the gateway speaks as for a SIP user.
    fn user_jid(&mut self, account: &Account) -> Result<Jid, Rejection> {
        let rules = &self.settings.rules;
        remember(&mut self.user_jids, &account.jab_id, || {
            rules.user_jid(&account.jab_id).map(Jid::from).ok()
        })
        .cloned()
        .ok_or_else(|| reject(500, "Server Internal Error (invalid jab_id)"))
    }

    /// The user's SIP URI (`sip_id`), or `None` when the store holds one that does not parse.
    fn user_uri(&mut self, account: &Account) -> Option<&Uri> {
        remember(&mut self.user_uris, &account.sip_id, || {
            Uri::parse(&account.sip_id).ok()
        })
    }

    /// A fresh stanza id, `sipjab-<nonce>-<n>`, with its number `n`.
    fn next_id(&mut self) -> (u64, String) {
        self.counter += 1;
        // The prefix copied and the number written by itoa: `format!` cost about 1,700
        // instructions, on every message.
        let mut id = String::with_capacity(self.id_prefix.len() + 20);
        id.push_str(&self.id_prefix);
        id.push_str(itoa::Buffer::new().format(self.counter));
        (self.counter, id)
    }

    /// The number of an id from [`Gateway::next_id`]; `None` for anyone else's id.
    fn sent_key(&self, id: &str) -> Option<u64> {
        let (nonce, n) = id.strip_prefix("sipjab-")?.split_once('-')?;
        (u32::from_str_radix(nonce, 16).ok()? == self.nonce && !n.starts_with('+'))
            .then(|| n.parse().ok())
            .flatten()
    }

    fn reply_message_error(
        &mut self,
        msg: &Message,
        condition: DefinedCondition,
        text: Option<String>,
    ) {
        let (Some(from), Some(to)) = (msg.from.clone(), msg.to.clone()) else {
            return;
        };
        let mut reply = Message::error(Some(from));
        reply.from = Some(to);
        reply.id = msg.id.clone();
        reply
            .payloads
            .push(stanza_error(condition, text.unwrap_or_default()).into());
        self.outputs.push_back(Output::Stanza(reply.into()));
    }

    /// An error reply to an IQ get or set (RFC 6120 §8.2), addressed back to its sender.
    fn reply_iq_error(&mut self, stanza: Element, condition: DefinedCondition) {
        let Ok(iq) = Iq::try_from(stanza) else {
            return;
        };
        let (Iq::Get { from, to, id, .. } | Iq::Set { from, to, id, .. }) = iq else {
            return;
        };
        let Some(from) = from else {
            return;
        };
        let mut reply = Iq::from_error(id, stanza_error(condition, String::new()));
        if let Iq::Error {
            from: reply_from,
            to: reply_to,
            ..
        } = &mut reply
        {
            *reply_from = to;
            *reply_to = Some(from);
        }
        self.outputs.push_back(Output::Stanza(reply.into()));
    }
}

fn stanza_error(condition: DefinedCondition, text: String) -> StanzaError {
    let type_ = match condition {
        DefinedCondition::ServiceUnavailable => ErrorType::Cancel,
        ref c => error_type(c),
    };
    let mut error = StanzaError::new(type_, condition, "en", text);
    error.texts.retain(|_, t| !t.is_empty());
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Alias, JDomain};

    fn settings() -> Settings {
        Settings {
            rules: AddressRules {
                jdomain: JDomain::new("jabber.x.com", '*').unwrap(),
                aliases: vec![Alias::new("msn.x.com", Some('%')).unwrap()],
                component_domain: "sip.x.com".into(),
            },
            registrar: Uri::parse("sip:jabber_gateway@127.0.0.1").unwrap(),
            delay_time: Duration::from_secs(90),
            queue_limit: 2,
        }
    }

    fn alice() -> Account {
        Account::new(1, "alice", None, "sip:alice@example.com")
    }

    fn sip_fixture(name: &str) -> Request {
        let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        match sipjab_sip::parse_datagram(&bytes).unwrap() {
            sipjab_sip::Message::Request(r) => r,
            other => panic!("{path} is not a request: {other:?}"),
        }
    }

    fn xmpp_fixture(name: &str) -> Element {
        let path = format!("{}/fixtures/xmpp/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap().parse().unwrap()
    }

    /// A MESSAGE from `sender`, not to a conference.
    fn send(
        gw: &mut Gateway,
        now: Instant,
        req: &Request,
        sender: Option<&Account>,
    ) -> Result<(), Rejection> {
        let route = gw.route(req)?;
        gw.handle_message(now, req, route, sender, None)
    }

    fn drain(gw: &mut Gateway) -> Vec<Output> {
        std::iter::from_fn(|| gw.poll_output()).collect()
    }

    #[test]
    fn stanza_ids_carry_their_number_back() {
        let mut gw = Gateway::new(Instant::now(), settings());
        for counter in [0, 8, 9, 99, u64::MAX - 1] {
            gw.counter = counter;
            let (n, id) = gw.next_id();
            assert_eq!(id, format!("sipjab-{:08x}-{n}", gw.nonce));
            assert_eq!(gw.sent_key(&id), Some(n));
        }
        assert_eq!(gw.sent_key("sipjab-0-1"), None);
    }

    fn up(now: Instant) -> Gateway {
        let mut gw = Gateway::new(now, settings());
        gw.handle_link_up(now);
        gw
    }

    fn stanzas(outputs: Vec<Output>) -> Vec<Message> {
        outputs
            .into_iter()
            .map(|o| match o {
                Output::Stanza(el) => Message::try_from(el).unwrap(),
                Output::Chat(chat) => Message::try_from(chat.to_element()).unwrap(),
                other => panic!("expected a stanza, got {other:?}"),
            })
            .collect()
    }

    fn sip_requests(outputs: Vec<Output>) -> Vec<(Request, Option<Token>)> {
        outputs
            .into_iter()
            .map(|o| match o {
                Output::Sip { request, token } => (request, token),
                other => panic!("expected a SIP request, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn plain_chats_are_read_from_the_element_and_others_left_to_xmpp_parsers() {
        let read = |attrs: &str, children: &str| {
            let xml = format!(
                "<message xmlns='jabber:component:accept' from='romeo@x.test/r' to='alice@sip.x.com' {attrs}>{children}</message>"
            );
            PlainChat::read(&xml.parse::<Element>().unwrap())
        };
        let chat = read("type='chat' id='m1'", "<body>hi &amp; bye</body><subject>s</subject><active xmlns='http://jabber.org/protocol/chatstates'/>").unwrap();
        assert_eq!(chat.sender.to_string(), "romeo@x.test/r");
        assert_eq!(chat.to.to_string(), "alice@sip.x.com");
        assert_eq!(chat.id, Some(Id("m1".into())));
        assert_eq!(
            (chat.body.as_str(), chat.subject.as_deref()),
            ("hi & bye", Some("s"))
        );
        assert!(read("", "<body>no type is normal</body>").is_some());
        for (attrs, children) in [
            ("type='error'", "<body>x</body>"),
            ("type='groupchat'", "<body>x</body>"),
            ("", "<body xml:lang='en'>x</body>"),
            ("", "<body>x</body><body>y</body>"),
            (
                "",
                "<active xmlns='http://jabber.org/protocol/chatstates'/>",
            ),
        ] {
            assert!(read(attrs, children).is_none(), "{attrs} {children}");
        }
    }

    #[test]
    fn recipients_are_read_with_and_without_the_jid_parser() {
        let gw = Gateway::new(Instant::now(), settings());
        let to = |to: &str| gw.recipient_of(to);
        assert_eq!(to("alice@sip.x.com").as_deref(), Some("alice"));
        assert_eq!(
            to("al.ice_1-2@SIP.x.com/phone").as_deref(),
            Some("al.ice_1-2")
        );
        // Through the JID parser: an escaped node, a node nodeprep changes, a bad JID.
        assert_eq!(to("a\\20b@sip.x.com").as_deref(), Some("a\\20b"));
        assert_eq!(to("Alice@sip.x.com").as_deref(), Some("alice"));
        assert_eq!(to("alice@other.x.com"), None);
        assert_eq!(to("sip.x.com"), None);
        assert_eq!(to("@sip.x.com"), None);
    }

    #[test]
    fn sip_message_becomes_chat_stanza() {
        let now = Instant::now();
        let mut gw = up(now);
        let req = sip_fixture("message-latin1.sip");
        send(&mut gw, now, &req, Some(&alice())).unwrap();
        let [msg] = stanzas(drain(&mut gw)).try_into().unwrap();
        let expected = Message::try_from(xmpp_fixture("message-latin1.xml")).unwrap();
        assert_eq!(msg.from, expected.from);
        assert_eq!(msg.to, expected.to);
        assert_eq!(msg.type_, expected.type_);
        assert_eq!(msg.bodies, expected.bodies);
        assert_eq!(msg.subjects, expected.subjects);
    }

    #[test]
    fn unknown_sender_gets_403_and_nothing_is_sent() {
        let now = Instant::now();
        let mut gw = up(now);
        let r = send(&mut gw, now, &sip_fixture("message-latin1.sip"), None).unwrap_err();
        assert_eq!(r.code.as_u16(), 403);
        assert!(drain(&mut gw).is_empty());
    }

    #[test]
    fn conference_without_join_is_404() {
        let now = Instant::now();
        let mut gw = up(now);
        let mut req = sip_fixture("message-latin1.sip");
        req.uri = Uri::parse("sip:nick*room*conf.jabber.org@jabber.x.com").unwrap();
        let r = send(&mut gw, now, &req, Some(&alice())).unwrap_err();
        assert_eq!(r.code.as_u16(), 404);
        assert!(r.reason.contains("join"));
        let [(notice, _)] = sip_requests(drain(&mut gw)).try_into().unwrap();
        let body = String::from_utf8(notice.body).unwrap();
        assert!(body.contains(":join"), "{body}");
    }

    #[test]
    fn member_talks_to_the_room_or_privately_to_an_occupant() {
        let now = Instant::now();
        let mut gw = up(now);
        let member = Room::new(1, "room@conf.jabber.org", "al", 0);
        let mut req = sip_fixture("message-latin1.sip");
        for (uri, to, type_) in [
            (
                "sip:al*room*conf.jabber.org@jabber.x.com",
                "room@conf.jabber.org",
                MessageType::Groupchat,
            ),
            (
                "sip:*room*conf.jabber.org@jabber.x.com",
                "room@conf.jabber.org",
                MessageType::Groupchat,
            ),
            (
                "sip:bo*room*conf.jabber.org@jabber.x.com",
                "room@conf.jabber.org/bo",
                MessageType::Chat,
            ),
        ] {
            req.uri = Uri::parse(uri).unwrap();
            let route = gw.route(&req).unwrap();
            gw.handle_message(now, &req, route, Some(&alice()), Some(&member))
                .unwrap();
            let [msg] = stanzas(drain(&mut gw)).try_into().unwrap();
            assert_eq!(msg.to.unwrap().to_string(), to, "{uri}");
            assert_eq!(msg.type_, type_, "{uri}");
            assert_eq!(msg.from.unwrap().to_string(), "alice@sip.x.com");
            let private = msg
                .payloads
                .iter()
                .any(|p| p.is("x", xmpp_parsers::ns::MUC_USER));
            assert_eq!(private, type_ == MessageType::Chat, "{uri}");
        }
    }

    #[test]
    fn destination_falls_back_to_to() {
        let now = Instant::now();
        let mut gw = up(now);
        let mut req = sip_fixture("message-latin1.sip");
        req.uri = Uri::parse("sip:gw@127.0.0.1:5060").unwrap();
        send(&mut gw, now, &req, Some(&alice())).unwrap();
        let [msg] = stanzas(drain(&mut gw)).try_into().unwrap();
        assert_eq!(msg.to.unwrap().to_string(), "beta@jabber.org");
    }

    /// A SIP MESSAGE goes out as a stanza, and an item-not-found error to it comes back
    /// `after` later; the outputs that follow.
    fn error_reply_after(after: Duration) -> Vec<Output> {
        let now = Instant::now();
        let mut gw = up(now);
        send(
            &mut gw,
            now,
            &sip_fixture("message-latin1.sip"),
            Some(&alice()),
        )
        .unwrap();
        let [sent] = stanzas(drain(&mut gw)).try_into().unwrap();
        let mut error = Message::error(sent.from.clone());
        error.from = sent.to.clone();
        error.id = sent.id.clone();
        error.payloads.push(
            StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "en",
                "no such user",
            )
            .into(),
        );
        gw.handle_stanza(now + after, error.into(), None);
        drain(&mut gw)
    }

    #[test]
    fn xmpp_error_becomes_error_notice() {
        let outputs = error_reply_after(Duration::from_secs(1));
        let [(notice, token)] = sip_requests(outputs).try_into().unwrap();
        assert_eq!(token, None);
        assert_eq!(notice.uri.to_string(), "sip:alice@example.com");
        let from = notice.headers.from().unwrap().unwrap();
        assert_eq!(from.uri.to_string(), "sip:jabber_gateway@127.0.0.1");
        let body = String::from_utf8(notice.body).unwrap();
        assert!(body.contains("sip:beta*jabber.org@jabber.x.com"), "{body}");
        assert!(body.contains("item-not-found: no such user"), "{body}");
        assert!(body.contains("> gr\u{fc}\u{df} dich"), "{body}");
    }

    #[test]
    fn xmpp_message_becomes_sip_message() {
        let now = Instant::now();
        let mut gw = up(now);
        gw.handle_stanza(now, xmpp_fixture("chat-to-alice.xml"), Some(&alice()));
        let [(req, token)] = sip_requests(drain(&mut gw)).try_into().unwrap();
        assert!(token.is_some());
        assert_eq!(req.uri.to_string(), "sip:alice@example.com");
        let from = req.headers.from().unwrap().unwrap();
        assert_eq!(from.uri.to_string(), "sip:romeo*montague.lit@jabber.x.com");
        assert_eq!(req.headers.to().unwrap().unwrap().uri, req.uri);
        assert_eq!(
            req.headers.get("Content-Type"),
            Some("text/plain;charset=UTF-8")
        );
        assert_eq!(req.headers.subject().unwrap(), Some("Balcony"));
        assert_eq!(req.body, "Art thou not Romeo?".as_bytes());
    }

    #[test]
    fn sip_failure_becomes_error_stanza() {
        let now = Instant::now();
        let mut gw = up(now);
        gw.handle_stanza(now, xmpp_fixture("chat-to-alice.xml"), Some(&alice()));
        let [(_, token)] = sip_requests(drain(&mut gw)).try_into().unwrap();
        let Some(Token::Message(token)) = token else {
            panic!("not a message token: {token:?}")
        };
        gw.handle_sip_result(now, token, 404, "Not Found");
        let [reply] = stanzas(drain(&mut gw)).try_into().unwrap();
        assert_eq!(reply.type_, MessageType::Error);
        assert_eq!(reply.to.unwrap().to_string(), "romeo@montague.lit/orchard");
        assert_eq!(reply.from.unwrap().to_string(), "alice@sip.x.com");
        assert_eq!(reply.id.unwrap().0, "m1");
        let error = StanzaError::try_from(reply.payloads[0].clone()).unwrap();
        assert_eq!(error.defined_condition, DefinedCondition::ItemNotFound);
        // A success changes nothing, and a token is answered once.
        gw.handle_sip_result(now, token, 404, "Not Found");
        assert!(drain(&mut gw).is_empty());
    }

    /// A chat the link read without a tree is sent on as its tree would be, and one the
    /// shortcut does not take comes back untouched, with nothing sent.
    #[test]
    fn plain_chats_without_a_tree_go_as_their_trees_go() {
        let now = Instant::now();
        let chat = |from: Option<&str>, to: &str, kind: Option<&str>| IncomingChat {
            from: from.map(str::to_owned),
            to: Some(to.to_owned()),
            id: Some("m1".into()),
            kind: kind.map(str::to_owned),
            lang: Some("en".into()),
            body: "Art thou not Romeo?".into(),
        };
        let sent = |outputs: Vec<Output>| {
            sip_requests(outputs)
                .into_iter()
                .map(|(req, token)| {
                    let from = req.headers.from().unwrap().unwrap().uri.to_string();
                    (req.uri.to_string(), from, req.body, token.is_some())
                })
                .collect::<Vec<_>>()
        };
        let from = Some("romeo@montague.lit/orchard");
        for kind in [None, Some("chat"), Some("normal")] {
            let (mut plain, mut tree) = (up(now), up(now));
            let c = chat(from, "alice@sip.x.com", kind);
            tree.handle_stanza(now, c.clone().into_element(), Some(&alice()));
            assert!(plain.handle_plain_chat(c, &alice()).is_ok());
            let (plain, tree) = (sent(drain(&mut plain)), sent(drain(&mut tree)));
            assert_eq!(plain.len(), 1);
            assert_eq!(plain, tree);
        }
        for c in [
            chat(from, "alice@sip.x.com", Some("groupchat")),
            chat(from, "alice@sip.x.com", Some("error")),
            chat(None, "alice@sip.x.com", None),
            chat(Some("@x.test"), "alice@sip.x.com", None),
            chat(from, "@sip.x.com", None),
        ] {
            let mut gw = up(now);
            assert_eq!(gw.handle_plain_chat(c.clone(), &alice()), Err(c));
            assert!(drain(&mut gw).is_empty());
        }
    }

    #[test]
    fn bodiless_messages_stay_on_the_xmpp_side() {
        let now = Instant::now();
        let mut gw = up(now);
        let mut chat_state = Message::try_from(xmpp_fixture("chat-to-alice.xml")).unwrap();
        chat_state.bodies.clear();
        gw.handle_stanza(now, chat_state.into(), Some(&alice()));
        assert!(drain(&mut gw).is_empty());
    }

    #[test]
    fn a_chat_from_no_jid_is_dropped() {
        let now = Instant::now();
        let mut gw = up(now);
        let xml = "<message xmlns='jabber:component:accept' from='@x.test' \
                   to='alice@sip.x.com' type='chat'><body>hi</body></message>";
        gw.handle_stanza(now, xml.parse().unwrap(), Some(&alice()));
        assert!(drain(&mut gw).is_empty());
    }

    #[test]
    fn unknown_gateway_user_gets_service_unavailable() {
        let now = Instant::now();
        let mut gw = up(now);
        let stanza = xmpp_fixture("chat-to-alice.xml");
        assert_eq!(
            gw.recipient_of(stanza.attr("to").unwrap()).as_deref(),
            Some("alice")
        );
        gw.handle_stanza(now, stanza, None);
        let [reply] = stanzas(drain(&mut gw)).try_into().unwrap();
        let error = StanzaError::try_from(reply.payloads[0].clone()).unwrap();
        assert_eq!(
            error.defined_condition,
            DefinedCondition::ServiceUnavailable
        );
    }

    #[test]
    fn queued_while_down_sent_in_order_after_reconnect() {
        let t0 = Instant::now();
        let mut gw = Gateway::new(Instant::now(), settings());
        let req = sip_fixture("message-latin1.sip");
        send(&mut gw, t0, &req, Some(&alice())).unwrap();
        send(&mut gw, t0 + Duration::from_secs(1), &req, Some(&alice())).unwrap();
        let full = send(&mut gw, t0 + Duration::from_secs(2), &req, Some(&alice())).unwrap_err();
        assert_eq!(full.code.as_u16(), 503);
        assert!(full.headers.iter().any(|(n, _)| n == "Retry-After"));
        assert!(drain(&mut gw).is_empty());
        gw.handle_link_up(t0 + Duration::from_secs(10));
        let sent = stanzas(drain(&mut gw));
        let ids: Vec<_> = sent.iter().map(|m| m.id.clone().unwrap().0).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids[0] < ids[1], "{ids:?}");
    }

    #[test]
    fn queued_too_long_is_dropped_with_a_notice() {
        let t0 = Instant::now();
        let mut gw = Gateway::new(Instant::now(), settings());
        send(
            &mut gw,
            t0,
            &sip_fixture("message-latin1.sip"),
            Some(&alice()),
        )
        .unwrap();
        assert_eq!(gw.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        // The record of who to tell outlives the sent-stanza window while queued.
        gw.handle_timeout(t0 + crate::sent_log::TTL + Duration::from_secs(1));
        assert!(drain(&mut gw).is_empty());
        gw.handle_timeout(t0 + Duration::from_secs(91));
        let [(notice, _)] = sip_requests(drain(&mut gw)).try_into().unwrap();
        assert!(String::from_utf8(notice.body).unwrap().contains("90 s"));
        gw.handle_link_up(t0 + Duration::from_secs(92));
        assert!(drain(&mut gw).is_empty());
    }

    #[test]
    fn late_xmpp_error_is_not_matched() {
        assert!(error_reply_after(crate::sent_log::TTL).is_empty());
    }

    #[test]
    fn iq_to_a_user_is_answered_not_dropped() {
        let now = Instant::now();
        let mut gw = up(now);
        let iq: Element = "<iq xmlns='jabber:component:accept' type='get' id='p1' from='romeo@montague.lit/x' to='alice@sip.x.com'><ping xmlns='urn:xmpp:ping'/></iq>".parse().unwrap();
        gw.handle_stanza(now, iq, Some(&alice()));
        let outputs: [Output; 1] = drain(&mut gw).try_into().unwrap();
        let [Output::Stanza(reply)] = outputs else {
            panic!("no stanza")
        };
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("p1"));
        assert_eq!(reply.attr("to"), Some("romeo@montague.lit/x"));
    }
}
