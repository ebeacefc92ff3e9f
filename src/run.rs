//! The gateway's run loop: the only async code of the core.
//!
//! One `select!` loop owns the SIP transport, the component link, the account store, the SIP
//! transaction table and the [`Gateway`] state machine. It feeds them events with `now` and
//! carries out what they return. It also owns shutdown: on Ctrl-C or SIGTERM it closes the
//! component stream cleanly and stops the SIP listeners.
//!
//! The SIP side runs here, in order:
//!
//! 1. Requests from outside `[sip] trusted` get 403 and nothing else.
//! 2. The transaction table absorbs retransmissions: the same final response goes out again,
//!    and the request is not processed twice.
//! 3. RFC 4475 checks give 400/416/420/483/505/501.
//! 4. MESSAGE goes to the gateway (after the commands, and with the sender's membership when
//!    it is for a conference); PUBLISH, NOTIFY and SUBSCRIBE to the presence and conference
//!    modules; OPTIONS gets 200, and any other method gets 405 with `Allow`. A REGISTER goes
//!    to [`Registrations`], whose store work runs beside the loop; its answer comes back as
//!    an event of its own.
//!
//! Stanzas from the component go to the conference module first (MUC presence and messages
//! from rooms), then to the presence modules or the message gateway.
//!
//! Requests the gateway sends go to `[sip] proxy` when it is set, otherwise to the
//! Request-URI's host, located per RFC 3263 (NAPTR, SRV, A/AAAA). A numeric address is used
//! at once. A name is looked up in a task of its own, and the request comes back into the
//! loop when its target is known, so a slow DNS server never stalls the loop. A request over
//! 1300 bytes goes over TCP even where UDP was chosen (RFC 3261 §18.1.1).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sipjab_component::{
    ComponentConfig, ComponentLink, Element, Envelope, LinkEvent, StanzaSender,
};
use sipjab_db::{Account, DbUrl, Store};
use sipjab_sip::locate::{DEFAULT_PORT, Destination, DnsLookup};
use sipjab_sip::transport::{Incoming, SipTransport, TransportConfig};
use sipjab_sip::{
    Host, Message, Method, Request, RequestDisposition, Response, StatusCode, TableOutput, Target,
    TransactionMap, TransactionTable, TransportKind, Uri, Via, WireBytes, check_request,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::accounts::{Accounts, aor_of};
use crate::address::XmppTarget;
use crate::commands::{self, Command};
use crate::conference::{ConferenceSettings, Conferences, has_muc_markup, subscribe_notify};
use crate::config::{Config, Proxy};
use crate::gateway::{Gateway, Output, Settings, Stanza, Token};
use crate::presence::{PresenceSettings, Presences, presence_expiry};
use crate::registrations::{Register, Registered, Registrations, addressee};
use crate::sip_to_xmpp::{ACCEPTED_TYPES, destination, reject};
use crate::watchers::Watchers;

/// Methods answered here; others get 405 with this list.
const ALLOW: &str = "MESSAGE, OPTIONS, REGISTER, SUBSCRIBE, PUBLISH";
/// How often sessions are checked for `cache_time` and registration expiry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Largest MESSAGE body read for a command.
const COMMAND_MAX: usize = 1024;
/// Largest request sent over UDP (RFC 3261 §18.1.1: path MTU 1500 less 200).
const UDP_MAX: usize = 1300;
/// Server transactions made room for (and the room written) at start: Timer J (32 s) and
/// its [`CLEANUP_DELAY`](sipjab_sip::CLEANUP_DELAY) at 1,000 requests/s.
const SERVER_TRANSACTIONS: usize = 32_768;
/// How long a DNS search for a request's target may take.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How late the loop may wake for a timer. Timers due close together then share one
/// wake-up, and any event runs the due ones first. Timer E (500 ms and up) is the tightest
/// it delays; Timer J and K are reported later still
/// ([`CLEANUP_DELAY`](sipjab_sip::CLEANUP_DELAY)).
const TIMER_SLACK: Duration = Duration::from_millis(20);

/// MESSAGE answers waiting for their task ([`spawn_answerer`]); more are sent from the loop.
const ANSWER_QUEUE: usize = 1024;
/// SIP messages, or link events, handled in a row once one is: each turn of the loop's
/// `select!` polls all its branches again and registers their wakers, a few thousand
/// instructions, and at thousands of messages a second the transport and the link hand
/// over several at a time. Bounded, so that a flood on one side leaves the other side
/// and the timers waiting for a few milliseconds at most.
const BATCH: usize = 16;

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(config: Config, db: DbUrl) -> Result<()> {
    let store = Store::open(&db)
        .await
        .with_context(|| format!("opening the account store {}", db.redacted()))?;
    if !store.has_state_tables().await? {
        anyhow::bail!(
            "the account store {} has no session tables yet: run `sipjab db init` (it keeps the SER tables as they are)",
            db.redacted()
        );
    }
    let (transport, incoming) = SipTransport::bind(&config.sip.listen, TransportConfig::default())
        .await
        .context("binding the SIP listeners")?;
    for addr in transport.local_addrs() {
        info!(%addr, "SIP listening");
    }
    let mut component = ComponentConfig::new(
        config.xmpp.host.clone(),
        config.xmpp.port,
        config.xmpp.domain.clone(),
        config.xmpp.secret.expose(),
    );
    component.keepalive = config.xmpp.keepalive;
    // What the gateway really does for users' JIDs: XEP-0106 escaping of SIP user parts.
    component.features = vec!["jid\\20escaping".to_owned()];
    let link = ComponentLink::spawn(component);
    info!(
        domain = %config.xmpp.domain,
        server = %format!("{}:{}", config.xmpp.host, config.xmpp.port),
        store = %db.redacted(),
        "sipjab started"
    );
    let registrar = Uri::parse(&config.sip.registrar.to_string())
        .map_err(|e| anyhow::anyhow!("sip.registrar: {e}"))?;
    let settings = Settings {
        rules: config.gateway.rules.clone(),
        registrar: registrar.clone(),
        delay_time: config.gateway.delay_time,
        queue_limit: config.gateway.queue_limit,
    };
    let watchers = Watchers::new(store.clone(), config.gateway.rules.clone());
    let local_contact = match transport
        .local_addr(TransportKind::Udp)
        .map(|a| (a, ""))
        .or_else(|| {
            transport
                .local_addr(TransportKind::Tcp)
                .map(|a| (a, ";transport=tcp"))
        }) {
        Some((addr, param)) => format!("sip:{}{param}", sent_by(addr)),
        None => anyhow::bail!("sip.listen: no address to put in Contact"),
    };
    let presences = Presences::new(
        store.clone(),
        PresenceSettings {
            rules: config.gateway.rules.clone(),
            registrar,
            authorize: config.presence.authorize,
            cache_time: config.gateway.cache_time,
            local_contact: local_contact.clone(),
        },
    );
    let conferences = Conferences::new(
        store.clone(),
        ConferenceSettings {
            rules: config.gateway.rules.clone(),
            history: config.conference.history,
            subject: config.conference.subject,
        },
    );
    let registrations = Registrations::new(store.clone(), presences.online());
    let dns = DnsLookup::from_system_conf().context("reading the DNS configuration")?;
    let (located_tx, mut located) = mpsc::channel(1024);
    let mut driver = Driver {
        dns,
        located_tx,
        sender: link.sender(),
        gateway: Gateway::new(now(), settings),
        presences,
        registrations,
        watchers,
        conferences,
        local_contact,
        pending: VecDeque::new(),
        table: TransactionTable::with_capacity(fastrand::u64(..), SERVER_TRANSACTIONS, now()),
        tokens: TransactionMap::default(),
        accounts: Accounts::new(store),
        answers: spawn_answerer(transport.clone()),
        transport,
        trusted: config.sip.trusted.clone(),
        proxy: config.sip.proxy.clone(),
    };
    // The loop runs as a task, not as the `block_on` future: the runtime polls a woken
    // task from its queue, but a woken `block_on` future only after polling the driver for
    // events once more (an `epoll_wait` that finds none, and the timer wheel, on every
    // wake-up: about half of the loop's system calls besides the sends and receives).
    let result = tokio::spawn(async move {
        let result = driver.run(incoming, &mut located, link).await;
        driver.transport.shutdown();
        result
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the gateway loop failed: {e}")));
    info!("sipjab stopped");
    result
}

/// A request whose target a DNS search has found (or not).
struct Located {
    request: Request,
    token: Option<Token>,
    targets: Result<Vec<Target>, String>,
}

/// Everything the loop owns.
struct Driver {
    dns: DnsLookup,
    located_tx: mpsc::Sender<Located>,
    sender: StanzaSender,
    gateway: Gateway,
    presences: Presences,
    registrations: Registrations,
    watchers: Watchers,
    conferences: Conferences,
    /// The gateway's Contact URI for dialogs.
    local_contact: String,
    /// Outputs waiting to be carried out once the current event is handled (so a NOTIFY
    /// goes after the 200 that its SUBSCRIBE gets).
    pending: VecDeque<Output>,
    table: TransactionTable,
    tokens: TransactionMap<Token>,
    accounts: Accounts,
    /// The answers to MESSAGEs, for [`spawn_answerer`]'s task.
    answers: mpsc::Sender<(Target, WireBytes)>,
    transport: SipTransport,
    trusted: Vec<ipnet::IpNet>,
    proxy: Option<Proxy>,
}

impl Driver {
    async fn run(
        &mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        located: &mut mpsc::Receiver<Located>,
        mut link: ComponentLink,
    ) -> Result<()> {
        // Signals are awaited in a task of their own: their futures, polled in the select!
        // below, cost more than all the other branches together on every event.
        let (signal_tx, mut shutdown) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = signal_tx.send(shutdown_signal().await);
        });
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer, moved only to an earlier time: a wake-up for a deadline that has
        // since moved later finds nothing due and sets the timer again.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = [self.gateway.poll_timeout(), self.table.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            if deadline.is_some_and(|at| at <= now()) {
                self.handle_timeout().await;
                self.drain().await;
                continue;
            }
            if let Some(at) = deadline.map(|at| at + TIMER_SLACK)
                && armed.is_none_or(|armed| at < armed)
            {
                timer.as_mut().reset(at.into());
                armed = Some(at);
            }
            tokio::select! {
                signal = &mut shutdown => {
                    // The task cannot end without sending: a lost sender also means stop.
                    signal.unwrap_or(Ok(()))?;
                    info!("shutting down");
                    break;
                }
                msg = incoming.recv() => match msg {
                    Some(msg) => {
                        self.handle_sip(msg).await;
                        for _ in 1..BATCH {
                            let Ok(msg) = incoming.try_recv() else { break };
                            self.drain().await;
                            self.handle_sip(msg).await;
                        }
                    }
                    None => anyhow::bail!("the SIP transport stopped"),
                },
                event = link.next_event() => match event {
                    Some(event) => {
                        self.handle_link(event).await;
                        for _ in 1..BATCH {
                            let Some(event) = link.try_next_event() else { break };
                            self.drain().await;
                            self.handle_link(event).await;
                        }
                    }
                    None => anyhow::bail!("the component link stopped"),
                },
                Some(l) = located.recv() => self.handle_located(l).await,
                Some(done) = self.registrations.next_done() => self.handle_registered(done).await,
                _ = sweep.tick() => self.sweep_sessions().await,
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.handle_timeout().await;
                }
            }
            self.drain().await;
        }
        link.shutdown().await;
        Ok(())
    }

    async fn handle_link(&mut self, event: LinkEvent) {
        let now = now();
        match event {
            LinkEvent::Connected => {
                info!(queued = self.gateway.queued(), "component link up");
                self.gateway.handle_link_up(now);
                let result = self.conferences.handle_link_up(unix_now()).await;
                self.carry_out_conference(result);
            }
            LinkEvent::Disconnected { reason, retry_in } => {
                warn!(%reason, ?retry_in, "component link down");
                self.gateway.handle_link_down();
            }
            LinkEvent::Stanza(stanza) => {
                if let Some(account) = self.recipient_account(now, stanza.attr("to")).await {
                    self.handle_stanza(now, stanza, account).await;
                }
            }
            LinkEvent::Chat(chat) => {
                let Some(account) = self.recipient_account(now, chat.to.as_deref()).await else {
                    return;
                };
                // Read without a tree: sent on from its parts when it is a plain chat for a
                // user that no room has a say in (it carries no MUC markup, only a body),
                // else made a tree and handled like any stanza.
                let chat = match &account {
                    Some(user) if !self.conferences.may_be_from_room(chat.envelope(), || false) => {
                        match self.gateway.handle_plain_chat(chat, user) {
                            Ok(()) => return self.note_traffic(user).await,
                            Err(chat) => chat,
                        }
                    }
                    _ => chat,
                };
                self.handle_stanza(now, chat.into_element(), account).await;
            }
            _ => {}
        }
    }

    /// The account of the gateway user a stanza is addressed to: `Some(None)` when there is
    /// none, `None` when the store could not say.
    async fn recipient_account(
        &mut self,
        now: Instant,
        to: Option<&str>,
    ) -> Option<Option<Account>> {
        let Some(jab_id) = to.and_then(|to| self.gateway.recipient_of(to)) else {
            return Some(None);
        };
        match self.accounts.by_jab_id(now, &jab_id).await {
            Ok(account) => Some(account),
            Err(e) => {
                warn!(error = %e, "account store lookup failed");
                None
            }
        }
    }

    /// A message from XMPP counts as the user's traffic (`Presences::handle_incoming_traffic`).
    async fn note_traffic(&mut self, account: &Account) {
        if let Err(e) = self
            .presences
            .handle_incoming_traffic(unix_now(), account)
            .await
        {
            warn!(error = %e, "session update failed");
        }
    }

    async fn handle_stanza(&mut self, now: Instant, stanza: Element, account: Option<Account>) {
        let unix = unix_now();
        if stanza.name() == "presence" {
            // Presence for an unknown user is dropped, as RFC 6121 §4.3 has it.
            let Some(account) = account else { return };
            let presence = match xmpp_parsers::presence::Presence::try_from(stanza) {
                Ok(presence) => presence,
                Err(e) => return debug!(error = %e, "ignoring a malformed presence"),
            };
            match self
                .conferences
                .handle_presence(unix, &account, &presence)
                .await
            {
                Ok(None) => {}
                result => {
                    return self.carry_out_conference(result.map(Option::unwrap_or_default));
                }
            }
            let result = self
                .presences
                .handle_presence(unix, presence.clone(), &account)
                .await;
            self.carry_out_presence(result);
            let result = self
                .watchers
                .handle_presence(unix, &presence, &account, &self.local_contact)
                .await;
            return self.carry_out_presence(result);
        }
        if stanza.name() == "message"
            && let Some(account) = &account
        {
            self.note_traffic(account).await;
        }
        if let Some(account) = &account
            && self
                .conferences
                .may_be_from_room(Envelope::of(&stanza), || has_muc_markup(&stanza))
            && let Ok(msg) = xmpp_parsers::message::Message::try_from(stanza.clone())
        {
            match self.conferences.handle_message(unix, account, &msg).await {
                Ok(None) => {}
                result => {
                    return self.carry_out_conference(result.map(Option::unwrap_or_default));
                }
            }
        }
        self.gateway.handle_stanza(now, stanza, account.as_ref());
    }

    async fn handle_sip(&mut self, msg: Incoming) {
        let source = msg.source_target();
        match msg.message {
            Message::Response(resp) => self.handle_response(resp).await,
            Message::Request(req) => self.handle_request(req, source).await,
        }
    }

    async fn handle_response(&mut self, resp: Response) {
        let now = now();
        if let Some((id, resp)) = self.table.handle_response(resp, now)
            && resp.status.is_final()
            && let Some(token) = self.tokens.remove(&id)
        {
            self.sip_result(token, resp.status.as_u16(), &resp.reason, Some(&resp))
                .await;
        }
    }

    async fn handle_request(&mut self, req: Request, source: Target) {
        let now = now();
        if req.method == Method::Ack {
            return;
        }
        if !self
            .trusted
            .iter()
            .any(|net| net.contains(&source.addr.ip()))
        {
            debug!(source = %source.addr, method = %req.method, "untrusted source");
            let resp = reject(403, "Forbidden (untrusted source)").to_response(&req);
            return self.send_stateless(&resp, source).await;
        }
        if req.method == Method::Invite {
            let mut resp = reject(405, "Method Not Allowed").to_response(&req);
            resp.headers.push("Allow", ALLOW);
            return self.send_stateless(&resp, source).await;
        }
        let id = match self.table.handle_request(&req, source, now) {
            Ok(RequestDisposition::New(id)) => id,
            Ok(RequestDisposition::Retransmission(resend)) => {
                if let Some((target, bytes)) = resend {
                    self.send_bytes(&bytes, target).await;
                }
                return;
            }
            Err(e) => {
                debug!(error = %e, "request without a transaction key");
                let resp = reject(400, format!("Bad Request ({e})")).to_response(&req);
                return self.send_stateless(&resp, source).await;
            }
        };
        if req.method == Method::Register
            && check_request(&req).is_ok()
            && let Some(aor) = addressee(&req)
        {
            let cached = self.accounts.cached_by_sip(now, &aor);
            let reg = Register {
                id,
                req,
                aor,
                cached,
            };
            return self.registrations.handle_register(unix_now(), reg);
        }
        let reply = self.respond(now, &req).await;
        // The stanza a MESSAGE became goes to the link before the 202 goes out: the answer
        // can wait a few microseconds, the message should not wait for a send. (NOTIFYs stay
        // queued until after their 200.)
        while let Some(out) = self.gateway.poll_output() {
            self.carry_out_one(out).await;
        }
        let sent = match &reply {
            Answer::Plain(status, reason) => {
                self.table.send_plain_answer(id, &req, *status, reason, now)
            }
            Answer::Full(resp) => self.table.send_response(id, &req, resp, now),
        };
        match sent {
            Ok(answer) if req.method == Method::Message && self.pending.is_empty() => {
                if let Err(full) = self.answers.try_send(answer) {
                    let (target, bytes) = full.into_inner();
                    self.send_bytes(&bytes, target).await;
                }
            }
            Ok((target, bytes)) => self.send_bytes(&bytes, target).await,
            Err(e) => warn!(error = %e, "cannot answer a request"),
        }
    }

    /// The final response to a new, trusted request.
    async fn respond(&mut self, now: Instant, req: &Request) -> Answer {
        if let Err(rejection) = check_request(req) {
            return rejection.to_response(req).into();
        }
        match req.method {
            Method::Message => {
                let sender = match self.sender_account(now, req).await {
                    Ok(sender) => sender,
                    Err(resp) => return resp.into(),
                };
                if let Some(command) = self.command_in(req) {
                    return self.command(req, sender.as_ref(), &command).await.into();
                }
                let route = match self.gateway.route(req) {
                    Ok(route) => route,
                    Err(rejection) => return rejection.to_response(req).into(),
                };
                let membership = match (&route.target, &sender) {
                    (XmppTarget::Conference { room, .. }, Some(account)) => {
                        match self.conferences.membership(account, room).await {
                            Ok(membership) => membership,
                            Err(e) => return e.rejection().to_response(req).into(),
                        }
                    }
                    _ => None,
                };
                match self.gateway.handle_message(
                    now,
                    req,
                    route,
                    sender.as_ref(),
                    membership.as_ref(),
                ) {
                    Ok(()) => {
                        if let Some(account) = &sender {
                            let result = self.presences.handle_activity(unix_now(), account).await;
                            self.carry_out_presence(result);
                        }
                        Answer::Plain(StatusCode::ACCEPTED, "Accepted")
                    }
                    Err(rejection) => rejection.to_response(req).into(),
                }
            }
            // Without a To address of record; the others go to `registrations`.
            Method::Register => reject(400, "Bad Request (To is not a SIP address of record)")
                .to_response(req)
                .into(),
            Method::Subscribe => self.subscribe(now, req).await.into(),
            Method::Publish => self.publish(now, req).await.into(),
            // The gateway subscribes to nobody yet, so no NOTIFY matches (RFC 6665 §4.1.3).
            Method::Notify => self.notify(req).await.into(),
            Method::Options => {
                let mut resp = Response::for_request(req, StatusCode::OK, "OK");
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", ACCEPTED_TYPES);
                resp.into()
            }
            _ => {
                let mut resp = reject(405, "Method Not Allowed").to_response(req);
                resp.headers.push("Allow", ALLOW);
                resp.into()
            }
        }
    }

    /// A command in a MESSAGE to a gateway address (`:online` to `sip:jabber.x.com`, or to any
    /// user there): a short text/plain body that is one command and nothing else.
    fn command_in(&self, req: &Request) -> Option<Command> {
        // Most bodies are not commands: the cheap test first, before any header is parsed.
        if req.body.len() > COMMAND_MAX
            || !std::str::from_utf8(&req.body).is_ok_and(|body| body.trim_start().starts_with(':'))
        {
            return None;
        }
        if let Ok(Some(t)) = req.headers.content_type()
            && !(t.mtype == "text" && t.subtype == "plain")
        {
            return None;
        }
        let to = req.headers.to().ok().flatten().map(|t| &t.uri);
        let for_gateway = [Some(&req.uri), to]
            .into_iter()
            .flatten()
            .filter_map(Uri::as_sip)
            .any(|u| self.gateway.rules().is_gateway_host(&u.host.text()));
        if !for_gateway {
            return None;
        }
        commands::parse(std::str::from_utf8(&req.body).ok()?)
    }

    /// Carries out a command, answering as the SER sample script did: 200 when done, 404
    /// without an account.
    async fn command(
        &mut self,
        req: &Request,
        sender: Option<&sipjab_db::Account>,
        command: &Command,
    ) -> Response {
        let Some(account) = sender else {
            return reject(404, "Not Found (no gateway account for the sender)").to_response(req);
        };
        if matches!(command, Command::Join { .. } | Command::Exit) {
            return self.conference_command(req, account, command).await;
        }
        let result = self
            .presences
            .handle_command(unix_now(), account, command)
            .await;
        match result {
            Ok(outputs) => {
                self.carry_out(outputs);
                Response::for_request(req, StatusCode::OK, "OK")
            }
            Err(e) => reject(e.sip_status(), format!("Command failed ({e})")).to_response(req),
        }
    }

    /// `:join [password]` or `:exit` to a conference address.
    async fn conference_command(
        &mut self,
        req: &Request,
        account: &sipjab_db::Account,
        command: &Command,
    ) -> Response {
        let (room, nick) = match self.gateway.route(req).map(|r| r.target) {
            Ok(XmppTarget::Conference { room, nick }) => (room, nick),
            Ok(XmppTarget::Contact(_)) | Err(_) => {
                return reject(404, "Not Found (not a conference address)").to_response(req);
            }
        };
        let unix = unix_now();
        let result = match command {
            Command::Join { password } => {
                let nick = nick.unwrap_or_else(|| sender_user(req));
                self.conferences
                    .join(unix, account, &room, &nick, password.as_deref())
                    .await
            }
            _ => self.conferences.exit(unix, account, &room).await,
        };
        match result {
            Ok(outputs) => {
                self.carry_out(outputs);
                if matches!(command, Command::Join { .. }) {
                    // A join is traffic from the user, like any MESSAGE (SER).
                    let result = self.presences.handle_activity(unix, account).await;
                    self.carry_out_presence(result);
                }
                Response::for_request(req, StatusCode::OK, "OK")
            }
            Err(e) => e.rejection().to_response(req),
        }
    }

    /// A SUBSCRIBE to a conference address, as the SER sample used it: a non-zero Expires
    /// joins, `Expires: 0` leaves. Answered 200 and, as RFC 6665 wants, a NOTIFY.
    async fn subscribe_conference(
        &mut self,
        now: Instant,
        req: &Request,
        room: jid::BareJid,
        nick: Option<String>,
    ) -> Response {
        let expires = match presence_expiry(req, 60, 3600) {
            Ok(expires) => expires,
            Err(rejection) => return rejection.to_response(req),
        };
        let account = match self.known_sender(now, req, 404, "Not Found").await {
            Ok(account) => account,
            Err(resp) => return resp,
        };
        let unix = unix_now();
        let (result, state) = if expires > 0 {
            let nick = nick.unwrap_or_else(|| sender_user(req));
            let result = self
                .conferences
                .join(unix, &account, &room, &nick, None)
                .await;
            (result, format!("active;expires={expires}"))
        } else {
            let result = match self.conferences.exit(unix, &account, &room).await {
                Err(crate::conference::ConferenceError::NotJoined(_)) => Ok(Vec::new()),
                other => other,
            };
            (result, "terminated;reason=timeout".to_owned())
        };
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(e) => return e.rejection().to_response(req),
        };
        let mut resp = Response::for_request(req, StatusCode::OK, "OK");
        resp.headers.push("Expires", expires.to_string());
        resp.headers
            .push("Contact", format!("<{}>", self.local_contact));
        // The NOTIFY goes after the 200; the loop sends the response first.
        self.pending.extend(subscribe_notify(
            req,
            &resp,
            &self.local_contact,
            &state,
            unix,
        ));
        self.pending.extend(outputs);
        resp
    }

    /// The account of the To address of record (the user a REGISTER or PUBLISH is about);
    /// `Err` is the response to give instead.
    async fn addressee_account(
        &mut self,
        now: Instant,
        req: &Request,
    ) -> Result<sipjab_db::Account, Response> {
        let Some(aor) = addressee(req) else {
            return Err(
                reject(400, "Bad Request (To is not a SIP address of record)").to_response(req),
            );
        };
        match self.accounts.by_sip(now, &aor).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(reject(404, "Not Found (no gateway account)").to_response(req)),
            Err(e) => {
                warn!(error = %e, "account store lookup failed");
                Err(reject(500, "Server Internal Error (account store)").to_response(req))
            }
        }
    }

    /// A PUBLISH of the user's presence (RFC 3903): 200 with `SIP-ETag` and `Expires`.
    async fn publish(&mut self, now: Instant, req: &Request) -> Response {
        let account = match self.addressee_account(now, req).await {
            Ok(account) => account,
            Err(resp) => return resp,
        };
        match self
            .presences
            .handle_publish(unix_now(), req, &account)
            .await
        {
            Ok(published) => {
                self.pending.extend(published.outputs);
                let mut resp = Response::for_request(req, StatusCode::OK, "OK");
                resp.headers.push("SIP-ETag", published.etag);
                resp.headers.push("Expires", published.expires.to_string());
                resp
            }
            Err(rejection) => rejection.to_response(req),
        }
    }

    /// A REGISTER passed on by the registrar (`t_replicate`) whose store work is done: the
    /// presence goes out, then the answer (200 with the expiry, or 404 without an account).
    async fn handle_registered(&mut self, done: Registered) {
        let now = now();
        self.registrations.handle_done(unix_now(), &done);
        if let Some(account) = done.looked_up {
            self.accounts.remember_sip(now, &done.aor, account);
        }
        if let Some(juid) = done.offline {
            self.presences.handle_offline(juid);
        }
        for out in done.outputs {
            self.carry_out_one(out).await;
        }
        match self
            .table
            .send_response(done.id, &done.req, &done.response, now)
        {
            Ok((target, bytes)) => self.send_bytes(&bytes, target).await,
            Err(e) => warn!(error = %e, "cannot answer a REGISTER"),
        }
    }

    /// A NOTIFY in a dialog the gateway opened for an XMPP contact (RFC 8048 §5.2).
    async fn notify(&mut self, req: &Request) -> Response {
        match self.presences.handle_notify(unix_now(), req).await {
            Ok(outputs) => {
                self.carry_out(outputs);
                Response::for_request(req, StatusCode::OK, "OK")
            }
            Err(rejection) => rejection.to_response(req),
        }
    }

    /// A SUBSCRIBE from a SIP user to a Jabber contact's address.
    async fn subscribe(&mut self, now: Instant, req: &Request) -> Response {
        let to = req.headers.to().ok().flatten().map(|t| &t.uri);
        let contact = match destination(self.gateway.rules(), req, to) {
            Ok((_, XmppTarget::Contact(jid))) => jid,
            Ok((_, XmppTarget::Conference { room, nick })) => {
                return self.subscribe_conference(now, req, room, nick).await;
            }
            Err(rejection) => return rejection.to_response(req),
        };
        let account = match self.known_sender(now, req, 403, "Forbidden").await {
            Ok(account) => account,
            Err(resp) => return resp,
        };
        let result = self
            .watchers
            .handle_subscribe(unix_now(), req, &account, &contact, &self.local_contact)
            .await;
        match result {
            Ok((resp, outputs)) => {
                // The NOTIFY goes after the 200; the loop sends the response first.
                self.pending.extend(outputs);
                resp
            }
            Err(rejection) => rejection.to_response(req),
        }
    }

    /// The account of a request's From URI, which must have one: without, the answer is
    /// `code` with `reason`.
    async fn known_sender(
        &mut self,
        now: Instant,
        req: &Request,
        code: u16,
        reason: &str,
    ) -> Result<sipjab_db::Account, Response> {
        match self.sender_account(now, req).await? {
            Some(account) => Ok(account),
            None => Err(reject(
                code,
                format!("{reason} (no gateway account for the sender)"),
            )
            .to_response(req)),
        }
    }

    /// The account of a request's From URI; `Err` is the response to give instead.
    async fn sender_account(
        &mut self,
        now: Instant,
        req: &Request,
    ) -> Result<Option<sipjab_db::Account>, Response> {
        let from = match req.headers.from() {
            Ok(Some(from)) => from,
            _ => return Err(reject(400, "Bad Request (From)").to_response(req)),
        };
        let Some(aor) = aor_of(&from.uri) else {
            return Ok(None);
        };
        self.accounts.by_sip(now, &aor).await.map_err(|e| {
            warn!(error = %e, "account store lookup failed");
            let mut resp = reject(500, "Server Internal Error (account store)").to_response(req);
            resp.headers.push("Retry-After", "10");
            resp
        })
    }

    async fn handle_timeout(&mut self) {
        let now = now();
        self.gateway.handle_timeout(now);
        for out in self.table.handle_timeout(now) {
            match out {
                TableOutput::Retransmit {
                    target, request, ..
                } => self.send_bytes(&request, target).await,
                TableOutput::Timeout { id } => {
                    if let Some(token) = self.tokens.remove(&id) {
                        self.sip_result(token, 408, "Request Timeout", None).await;
                    }
                }
            }
        }
    }

    /// Carries out what the gateway and the presence modules asked for. Handlers only queue
    /// outputs; carrying one out may queue more (a failed request's answer), so this runs
    /// until both queues are empty.
    async fn drain(&mut self) {
        loop {
            let out = match self.gateway.poll_output() {
                Some(out) => out,
                None => match self.pending.pop_front() {
                    Some(out) => out,
                    None => return,
                },
            };
            self.carry_out_one(out).await;
        }
    }

    async fn carry_out_one(&mut self, out: Output) {
        match out {
            Output::Stanza(stanza) => self.send_stanza(Stanza::Tree(stanza)),
            Output::Chat(chat) => self.send_stanza(Stanza::Chat(chat)),
            Output::Sip { request, token } => self.send_request(request, token).await,
            Output::Offline(account) => {
                let result = self.conferences.leave_all(unix_now(), &account).await;
                self.carry_out_conference(result);
            }
        }
    }

    fn carry_out(&mut self, outputs: Vec<Output>) {
        self.pending.extend(outputs);
    }

    fn carry_out_presence(&mut self, result: Result<Vec<Output>, crate::presence::PresenceError>) {
        match result {
            Ok(outputs) => self.carry_out(outputs),
            Err(e) => warn!(error = %e, "presence update failed"),
        }
    }

    fn carry_out_conference(
        &mut self,
        result: Result<Vec<Output>, crate::conference::ConferenceError>,
    ) {
        match result {
            Ok(outputs) => self.carry_out(outputs),
            Err(e) => warn!(error = %e, "conference update failed"),
        }
    }

    /// Sessions past `cache_time` or their registration go offline, and subscriptions past
    /// their expiry end.
    async fn sweep_sessions(&mut self) {
        let unix = unix_now();
        let result = self.presences.handle_timeout(unix).await;
        self.carry_out_presence(result);
        let result = self
            .watchers
            .handle_timeout(unix, &self.local_contact)
            .await;
        self.carry_out_presence(result);
    }

    fn send_stanza(&mut self, stanza: Stanza) {
        let sent = match &stanza {
            Stanza::Tree(el) => self.sender.send_element(el),
            Stanza::Chat(chat) => self.sender.send_chat(chat),
        };
        if let Err(e) = sent {
            if e.is_bad_stanza() {
                warn!(error = %e, "dropping a stanza the link refused");
            } else {
                self.gateway.handle_send_failed(now(), stanza);
            }
        }
    }

    /// Sends a new request in a client transaction, once its target is known.
    async fn send_request(&mut self, request: Request, token: Option<Token>) {
        let dest = match self.destination(&request) {
            Ok(dest) => dest,
            Err(e) => return self.unroutable(&request, token, &e.to_string()).await,
        };
        if let Some(ip) = dest.host.ip() {
            let target = Target {
                addr: SocketAddr::new(ip, dest.port.unwrap_or(DEFAULT_PORT)),
                transport: dest.transport.unwrap_or(TransportKind::Udp),
            };
            return self.start_transaction(request, token, target).await;
        }
        let dns = self.dns.clone();
        let tx = self.located_tx.clone();
        tokio::spawn(async move {
            let targets = match tokio::time::timeout(LOCATE_TIMEOUT, dns.locate(&dest)).await {
                Ok(Ok(targets)) => Ok(targets),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("DNS search timed out".to_owned()),
            };
            let _ = tx
                .send(Located {
                    request,
                    token,
                    targets,
                })
                .await;
        });
    }

    /// A DNS search finished: send the request to the first target this transport can reach.
    async fn handle_located(&mut self, located: Located) {
        let Located {
            request,
            token,
            targets,
        } = located;
        let target = targets.and_then(|targets| {
            targets
                .into_iter()
                .find(|t| self.transport.can_send(*t))
                .ok_or_else(|| "no target this transport can reach".to_owned())
        });
        match target {
            Ok(target) => self.start_transaction(request, token, target).await,
            Err(e) => self.unroutable(&request, token, &e).await,
        }
    }

    /// The outbound proxy, else the Request-URI (RFC 3263 §4).
    fn destination(&self, request: &Request) -> Result<Destination> {
        match &self.proxy {
            Some(proxy) => Destination::from_host(&proxy.host, proxy.port, proxy.transport)
                .context("sip.proxy"),
            None => {
                let uri = request.uri.as_sip().context("not a SIP URI")?;
                Ok(Destination::from_uri(uri)?)
            }
        }
    }

    async fn unroutable(&mut self, request: &Request, token: Option<Token>, why: &str) {
        warn!(uri = %request.uri, error = %why, "no route for a request");
        if let Some(token) = token {
            self.sip_result(token, 503, "Service Unavailable", None)
                .await;
        }
    }

    /// The final answer to a request sent with a token, to whoever waits for it.
    async fn sip_result(&mut self, token: Token, code: u16, reason: &str, resp: Option<&Response>) {
        match token {
            Token::Message(n) => self.gateway.handle_sip_result(now(), n, code, reason),
            Token::Watch(id) => {
                let result = self
                    .presences
                    .handle_watch_result(unix_now(), id, code, resp)
                    .await;
                self.carry_out_presence(result);
            }
            Token::Notify(id) => {
                let result = self.watchers.handle_notify_result(id, code, resp).await;
                self.carry_out_presence(result.map(|()| Vec::new()));
            }
        }
    }

    /// Adds the Via and starts the client transaction.
    async fn start_transaction(
        &mut self,
        mut request: Request,
        token: Option<Token>,
        mut target: Target,
    ) {
        let now = now();
        // RFC 3261 §18.1.1: too large for UDP means TCP. The body dominates the size, so the
        // whole request is measured only when the body is large.
        if target.transport == TransportKind::Udp
            && request.body.len() > UDP_MAX / 2
            && request.to_bytes().len() + 100 > UDP_MAX
        {
            target.transport = TransportKind::Tcp;
        }
        let local = self
            .transport
            .local_addr(target.transport)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)));
        let mut via = Via::new(
            target.transport.via_token(),
            Host::from(local.ip()),
            Some(local.port()),
            &self.table.new_branch(),
        );
        via.params.set("rport", None);
        request.headers.push_top_via(via);
        let (id, bytes) = match self.table.send_request(&request, target, now) {
            Ok(sent) => sent,
            Err(e) => return warn!(error = %e, "cannot start a client transaction"),
        };
        if let Err(e) = self.transport.send_bytes(&bytes, target).await {
            // RFC 3261 §17.1.4: a transport error ends the transaction as a 503.
            warn!(peer = %target.addr, error = %e, "SIP send failed");
            self.table.fail_client(&id);
            if let Some(token) = token {
                self.sip_result(token, 503, "Service Unavailable", None)
                    .await;
            }
            return;
        }
        if let Some(token) = token {
            self.tokens.insert(id, token);
        }
    }

    /// Sends a message the transaction table serialized (a response, or a retransmission).
    async fn send_bytes(&self, bytes: &[u8], target: Target) {
        send_logged(&self.transport, bytes, target).await;
    }

    async fn send_stateless(&self, resp: &Response, source: Target) {
        if let Err(e) = self.transport.send_response(resp, source).await {
            warn!(peer = %source.addr, error = %e, "SIP send failed");
        }
    }
}

/// The final answer to a new request. The 202 to a MESSAGE, nearly every answer the
/// gateway sends, is plain: the transaction table writes it straight from the request
/// ([`TransactionTable::send_plain_answer`]).
enum Answer {
    /// `Response::for_request` and nothing more.
    Plain(StatusCode, &'static str),
    /// Any other response.
    Full(Response),
}

impl From<Response> for Answer {
    fn from(resp: Response) -> Self {
        Self::Full(resp)
    }
}

/// Starts the task that sends the answers to MESSAGEs, so that a MESSAGE's stanza leaves
/// before its 202. The link's writer task is woken first (the stanza is queued before the
/// answer) and the runtime runs woken tasks in order, so the stanza is written first. Sent
/// from the loop, the 202 went first and the peer it woke (sipp, or the proxy) often took
/// the core before the stanza was written: at 1,000 MESSAGEs/s on loopback the stanza left
/// about 150 µs after its 202 at the median. Nothing else the loop sends waits here, and a
/// MESSAGE that queued more than its stanza is answered from the loop as before.
fn spawn_answerer(transport: SipTransport) -> mpsc::Sender<(Target, WireBytes)> {
    let (tx, mut rx) = mpsc::channel::<(Target, WireBytes)>(ANSWER_QUEUE);
    tokio::spawn(async move {
        while let Some((target, bytes)) = rx.recv().await {
            send_logged(&transport, &bytes, target).await;
        }
    });
    tx
}

/// Sends serialized SIP; a failure is only logged (the peer retransmits, or the
/// transaction's timer reports it).
async fn send_logged(transport: &SipTransport, bytes: &[u8], target: Target) {
    if let Err(e) = transport.send_bytes(bytes, target).await {
        warn!(peer = %target.addr, error = %e, "SIP send failed");
    }
}

/// The user part of the From URI: the nick of a conference address with an empty one.
fn sender_user(req: &Request) -> String {
    req.headers
        .from()
        .ok()
        .flatten()
        .and_then(|from| from.uri.as_sip().and_then(|u| u.user.clone()))
        .unwrap_or_default()
}

/// Unix seconds, for the store's timestamps.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Via sent-by: `host:port`, IPv6 in brackets.
fn sent_by(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    }
}

/// The clock, read here only: the core takes `now` as input.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place that reads the clock"
)]
fn now() -> Instant {
    Instant::now()
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
