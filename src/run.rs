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
//! 4. MESSAGE goes to the gateway, OPTIONS gets 200, and any other method gets 405 with
//!    `Allow`.
//!
//! Requests the gateway sends go to `[sip] proxy` when it is set, otherwise to the
//! Request-URI's host: an IP literal, or a name resolved by the system resolver. TODO: RFC
//! 3263 NAPTR/SRV lookups.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, Result};
use sipjab_component::{ComponentConfig, ComponentLink, Element, LinkEvent, StanzaSender};
use sipjab_db::{DbUrl, SipAor, Store};
use sipjab_sip::transport::{Incoming, SipTransport, TransportConfig};
use sipjab_sip::{
    Message, Method, Request, RequestDisposition, Response, StatusCode, TableOutput, Target,
    TransactionId, TransactionTable, TransportKind, Uri, check_request,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::accounts::Accounts;
use crate::config::{Config, Proxy};
use crate::gateway::{Gateway, Output, Settings, Token};
use crate::sip_to_xmpp::{ACCEPTED_TYPES, reject};

/// Methods answered here; others get 405 with this list.
const ALLOW: &str = "MESSAGE, OPTIONS";

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(config: Config, db: DbUrl) -> Result<()> {
    let store = Store::open(&db)
        .await
        .with_context(|| format!("opening the account store {}", db.redacted()))?;
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
    let settings = Settings {
        rules: config.gateway.rules.clone(),
        registrar: Uri::parse(&config.sip.registrar.to_string())
            .map_err(|e| anyhow::anyhow!("sip.registrar: {e}"))?,
        delay_time: config.gateway.delay_time,
        queue_limit: config.gateway.queue_limit,
    };
    let mut driver = Driver {
        sender: link.sender(),
        gateway: Gateway::new(settings),
        table: TransactionTable::new(fastrand::u64(..)),
        tokens: HashMap::new(),
        accounts: Accounts::new(store),
        transport,
        trusted: config.sip.trusted.clone(),
        proxy: config.sip.proxy.clone(),
    };
    let result = driver.run(incoming, link).await;
    driver.transport.shutdown();
    info!("sipjab stopped");
    result
}

/// Everything the loop owns.
struct Driver {
    sender: StanzaSender,
    gateway: Gateway,
    table: TransactionTable,
    tokens: HashMap<TransactionId, Token>,
    accounts: Accounts,
    transport: SipTransport,
    trusted: Vec<ipnet::IpNet>,
    proxy: Option<Proxy>,
}

impl Driver {
    async fn run(
        &mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut link: ComponentLink,
    ) -> Result<()> {
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let deadline = [self.gateway.poll_timeout(), self.table.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = &mut shutdown => {
                    signal?;
                    info!("shutting down");
                    break;
                }
                msg = incoming.recv() => match msg {
                    Some(msg) => self.handle_sip(msg).await,
                    None => anyhow::bail!("the SIP transport stopped"),
                },
                event = link.next_event() => match event {
                    Some(event) => self.handle_link(event).await,
                    None => anyhow::bail!("the component link stopped"),
                },
                () = sleep => self.handle_timeout().await,
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
            }
            LinkEvent::Disconnected { reason, retry_in } => {
                warn!(%reason, ?retry_in, "component link down");
                self.gateway.handle_link_down();
            }
            LinkEvent::Stanza(stanza) => {
                let account = match self.gateway.recipient_of(&stanza) {
                    Some(jab_id) => match self.accounts.by_jab_id(now, &jab_id).await {
                        Ok(account) => account,
                        Err(e) => {
                            warn!(error = %e, "account store lookup failed");
                            return;
                        }
                    },
                    None => None,
                };
                self.gateway.handle_stanza(now, stanza, account.as_ref());
            }
            _ => {}
        }
    }

    async fn handle_sip(&mut self, msg: Incoming) {
        let source = msg.source_target();
        match msg.message {
            Message::Response(resp) => self.handle_response(resp),
            Message::Request(req) => self.handle_request(req, source).await,
        }
    }

    fn handle_response(&mut self, resp: Response) {
        let now = now();
        if let Some((id, resp)) = self.table.handle_response(resp, now)
            && resp.status.is_final()
            && let Some(token) = self.tokens.remove(&id)
        {
            self.gateway
                .handle_sip_result(now, token, resp.status.as_u16(), &resp.reason);
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
                if let Some((target, resp)) = resend {
                    self.send(Message::Response(resp), target).await;
                }
                return;
            }
            Err(e) => {
                debug!(error = %e, "request without a transaction key");
                let resp = reject(400, format!("Bad Request ({e})")).to_response(&req);
                return self.send_stateless(&resp, source).await;
            }
        };
        let resp = self.respond(now, &req).await;
        match self.table.send_response(&id, &resp, now) {
            Ok(target) => self.send(Message::Response(resp), target).await,
            Err(e) => warn!(error = %e, "cannot answer a request"),
        }
    }

    /// The final response to a new, trusted request.
    async fn respond(&mut self, now: Instant, req: &Request) -> Response {
        if let Err(rejection) = check_request(req) {
            return rejection.to_response(req);
        }
        match req.method {
            Method::Message => {
                let sender = match self.sender_account(now, req).await {
                    Ok(sender) => sender,
                    Err(resp) => return resp,
                };
                match self.gateway.handle_message(now, req, sender.as_ref()) {
                    Ok(()) => Response::for_request(req, StatusCode::ACCEPTED, "Accepted"),
                    Err(rejection) => rejection.to_response(req),
                }
            }
            Method::Options => {
                let mut resp = Response::for_request(req, StatusCode::OK, "OK");
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", ACCEPTED_TYPES);
                resp
            }
            _ => {
                let mut resp = reject(405, "Method Not Allowed").to_response(req);
                resp.headers.push("Allow", ALLOW);
                resp
            }
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
        let Ok(aor) = SipAor::parse(&from.uri.to_string()) else {
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
                } => self.send(Message::Request(*request), target).await,
                TableOutput::Timeout { id } => {
                    if let Some(token) = self.tokens.remove(&id) {
                        self.gateway
                            .handle_sip_result(now, token, 408, "Request Timeout");
                    }
                }
            }
        }
    }

    /// Carries out what the gateway asked for.
    async fn drain(&mut self) {
        while let Some(out) = self.gateway.poll_output() {
            match out {
                Output::Stanza(stanza) => self.send_stanza(stanza),
                Output::Sip { request, token } => self.send_request(request, token).await,
            }
        }
    }

    fn send_stanza(&mut self, stanza: Element) {
        if let Err(e) = self.sender.send(stanza.clone()) {
            if e.is_bad_stanza() {
                warn!(error = %e, "dropping a stanza the link refused");
            } else {
                self.gateway.handle_send_failed(now(), stanza);
            }
        }
    }

    /// Sends a new request in a client transaction.
    async fn send_request(&mut self, mut request: Request, token: Option<Token>) {
        let now = now();
        let target = match self.target_for(&request).await {
            Ok(target) => target,
            Err(e) => {
                warn!(uri = %request.uri, error = %e, "no route for a request");
                if let Some(token) = token {
                    self.gateway
                        .handle_sip_result(now, token, 503, "Service Unavailable");
                }
                return;
            }
        };
        let local = self
            .transport
            .local_addr(target.transport)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)));
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            target.transport.via_token(),
            sent_by(local),
            self.table.new_branch()
        );
        request.headers.push_front("Via", via);
        match self.table.send_request(request.clone(), target, now) {
            Ok(id) => {
                if let Some(token) = token {
                    self.tokens.insert(id, token);
                }
                self.send(Message::Request(request), target).await;
            }
            Err(e) => warn!(error = %e, "cannot start a client transaction"),
        }
    }

    /// Where a request goes: the outbound proxy, else the Request-URI's host.
    async fn target_for(&self, request: &Request) -> Result<Target> {
        let (host, port, transport) = match &self.proxy {
            Some(proxy) => (proxy.host.clone(), proxy.port, proxy.transport),
            None => {
                let uri = request.uri.as_sip().context("not a SIP URI")?;
                let transport = match uri.params.get("transport") {
                    Some(Some(t)) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
                    _ => TransportKind::Udp,
                };
                (uri.host.to_string(), uri.port.unwrap_or(5060), transport)
            }
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .with_context(|| format!("{host} has no address"))?,
        };
        Ok(Target { addr, transport })
    }

    async fn send(&self, message: Message, target: Target) {
        if let Err(e) = self.transport.send(&message, target).await {
            warn!(peer = %target.addr, error = %e, "SIP send failed");
        }
    }

    async fn send_stateless(&self, resp: &Response, source: Target) {
        if let Err(e) = self.transport.send_response(resp, source).await {
            warn!(peer = %source.addr, error = %e, "SIP send failed");
        }
    }
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
