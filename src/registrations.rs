//! REGISTERs handled side by side, for the throughput of bringing many users online
//! (`bench/presence/run`).
//!
//! A REGISTER's work is all in the store: the account lookup (when the cache misses), then
//! [`crate::presence::Online::register`]. Done in the run loop, each REGISTER waited for
//! those round trips before the loop read the next request. Here each runs in a task of its
//! own, so the loop keeps reading and answering while the store works, and the store gets a
//! queue of calls (run back to back on the SQLite thread, or spread over the MySQL pool).
//!
//! Order is kept per user: a REGISTER for a user whose earlier REGISTER is still running
//! waits for it, so the last one to arrive is the last one written, as before. Different
//! users' REGISTERs may finish in any order; the store's rules for several gateways (last
//! writer wins for a REGISTER, compare-and-set for the rest) already allow for that. At most
//! [`MAX_RUNNING`] run at once; the others wait in arrival order.

use std::collections::{HashMap, VecDeque};

use sipjab_db::{Account, SipAor, Store};
use sipjab_sip::{Contact, Request, Response, ServerId, StatusCode};
use tokio::sync::mpsc;

use crate::accounts::aor_of;
use crate::gateway::Output;
use crate::presence::Online;
use crate::sip_to_xmpp::reject;

/// REGISTERs whose store work runs at once, at most: enough to keep the store busy, few
/// enough that a flood of REGISTERs queues here rather than in the store's connections.
pub const MAX_RUNNING: usize = 64;

/// A REGISTER to handle: its server transaction, the request and its user.
#[derive(Debug)]
pub struct Register {
    /// The server transaction to answer in.
    pub id: ServerId,
    /// The REGISTER.
    pub req: Request,
    /// Its To address of record.
    pub aor: SipAor,
    /// The account, if the cache had the answer (`Some(None)`: no account).
    pub cached: Option<Option<Account>>,
}

/// A REGISTER whose store work is done.
#[derive(Debug)]
pub struct Registered {
    /// The server transaction to answer in.
    pub id: ServerId,
    /// The REGISTER: the transaction table keeps or rebuilds its answer from it.
    pub req: Request,
    /// The user.
    pub aor: SipAor,
    /// The account the store gave, to cache (`None` if the cache had answered).
    pub looked_up: Option<Option<Account>>,
    /// The account whose session ended (a REGISTER with expiry 0).
    pub offline: Option<i64>,
    /// The final response.
    pub response: Response,
    /// The presence to send before it.
    pub outputs: Vec<Output>,
}

/// The REGISTERs running and waiting.
#[derive(Debug)]
pub struct Registrations {
    store: Store,
    online: Online,
    done_tx: mpsc::UnboundedSender<Registered>,
    done: mpsc::UnboundedReceiver<Registered>,
    /// Users with a REGISTER running, and their REGISTERs waiting behind it.
    busy: HashMap<SipAor, VecDeque<Register>>,
    /// REGISTERs of users not busy, waiting for a free slot.
    backlog: VecDeque<Register>,
    running: usize,
}

impl Registrations {
    /// REGISTERs handled on `store` with `online`.
    pub fn new(store: Store, online: Online) -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        Self {
            store,
            online,
            done_tx,
            done,
            busy: HashMap::new(),
            backlog: VecDeque::new(),
            running: 0,
        }
    }

    /// Starts `reg`, or queues it behind its user's running REGISTER or for a free slot.
    pub fn handle_register(&mut self, unix: i64, reg: Register) {
        if let Some(waiting) = self.busy.get_mut(&reg.aor) {
            return waiting.push_back(reg);
        }
        if self.running >= MAX_RUNNING {
            return self.backlog.push_back(reg);
        }
        self.start(unix, reg);
    }

    /// The next REGISTER whose store work is done. Never resolves while none runs.
    pub async fn next_done(&mut self) -> Option<Registered> {
        self.done.recv().await
    }

    /// Frees `done`'s slot and starts what waited for it: the user's next REGISTER, then the
    /// backlog.
    pub fn handle_done(&mut self, unix: i64, done: &Registered) {
        self.running = self.running.saturating_sub(1);
        let next = match self.busy.get_mut(&done.aor) {
            Some(waiting) => waiting.pop_front(),
            None => None,
        };
        match next {
            Some(reg) => {
                // The user stays busy: its next REGISTER takes the slot.
                self.running += 1;
                self.spawn(unix, reg);
            }
            None => {
                self.busy.remove(&done.aor);
            }
        }
        while self.running < MAX_RUNNING {
            let Some(reg) = self.backlog.pop_front() else {
                break;
            };
            self.handle_register(unix, reg);
        }
    }

    fn start(&mut self, unix: i64, reg: Register) {
        self.busy.insert(reg.aor.clone(), VecDeque::new());
        self.running += 1;
        self.spawn(unix, reg);
    }

    fn spawn(&self, unix: i64, reg: Register) {
        let store = self.store.clone();
        let online = self.online.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let registered = register(&store, &online, unix, reg).await;
            // The receiver lives as long as the loop: nobody to answer otherwise.
            let _ = done.send(registered);
        });
    }
}

/// One REGISTER's store work and its answer: 200 with the expiry, 404 without an account,
/// 500 when the store fails.
async fn register(store: &Store, online: &Online, unix: i64, reg: Register) -> Registered {
    let Register {
        id,
        req,
        aor,
        cached,
    } = reg;
    let response = reject(500, "Server Internal Error (account store)").to_response(&req);
    let mut done = Registered {
        id,
        req,
        aor,
        looked_up: None,
        offline: None,
        response,
        outputs: Vec::new(),
    };
    let account = match cached {
        Some(account) => account,
        None => match store.account_by_sip(&done.aor).await {
            Ok(account) => {
                done.looked_up = Some(account.clone());
                account
            }
            Err(e) => {
                tracing::warn!(error = %e, "account store lookup failed");
                return done;
            }
        },
    };
    let Some(account) = account else {
        done.response = reject(404, "Not Found (no gateway account)").to_response(&done.req);
        return done;
    };
    let expires = register_expiry(&done.req);
    if expires == 0 {
        done.offline = Some(account.juid);
    }
    match online.register(unix, &account, expires).await {
        Ok(outputs) => {
            done.outputs = outputs;
            let mut resp = Response::for_request(&done.req, StatusCode::OK, "OK");
            resp.headers.push("Expires", expires.to_string());
            done.response = resp;
        }
        Err(e) => {
            done.response =
                reject(e.sip_status(), format!("Register failed ({e})")).to_response(&done.req);
        }
    }
    done
}

/// The To address of record of a request (the user a REGISTER or PUBLISH is about).
pub fn addressee(req: &Request) -> Option<SipAor> {
    req.headers
        .to()
        .ok()
        .flatten()
        .and_then(|to| aor_of(&to.uri))
}

/// How long a REGISTER binds (RFC 3261 §10.2.1.1): `Contact: *` or `Expires: 0` is 0, else the
/// first Contact's `expires` parameter, else `Expires`, else 3600.
pub fn register_expiry(req: &Request) -> u32 {
    let header = req.headers.expires().ok().flatten();
    match req.headers.contact() {
        Ok(Some(Contact::Star)) => 0,
        Ok(Some(Contact::List(list))) => list
            .first()
            .and_then(|c| c.params.get("expires").flatten())
            .and_then(|e| e.parse().ok())
            .or(header)
            .unwrap_or(3600),
        _ => header.unwrap_or(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Presences;
    use crate::presence::tests::{settings, store_with_alice};
    use sipjab_db::{RosterItem, Subscription};
    use sipjab_sip::{RequestDisposition, TransactionTable};

    fn register(expires: u32, n: u32) -> Register {
        let text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr{n}\r\n\
             From: <sip:alice@example.com>;tag=r{n}\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: reg\r\nCSeq: {n} REGISTER\r\nContact: <sip:alice@192.0.2.1>\r\n\
             Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
        );
        let sipjab_sip::Message::Request(req) =
            sipjab_sip::parse_datagram(text.as_bytes()).unwrap()
        else {
            panic!("not a request")
        };
        let source = sipjab_sip::Target {
            addr: ([192, 0, 2, 1], 5060).into(),
            transport: sipjab_sip::TransportKind::Udp,
        };
        let now = std::time::Instant::now();
        let Ok(RequestDisposition::New(id)) =
            TransactionTable::new(0).handle_request(&req, source, now)
        else {
            panic!("not a new transaction")
        };
        Register {
            id,
            aor: addressee(&req).unwrap(),
            req,
            cached: None,
        }
    }

    /// Two REGISTERs of one user run one after the other, in arrival order: the user ends
    /// offline, as the second (expiry 0) says. An unknown user gets 404.
    #[tokio::test]
    async fn one_user_in_order() {
        let (_dir, store, alice) = store_with_alice().await;
        let watcher = RosterItem::new(alice.juid, "w@x.org", Subscription::From, 0);
        store.set_roster_item(&watcher).await.unwrap();
        let presences = Presences::new(store.clone(), settings());
        let mut regs = Registrations::new(store.clone(), presences.online());
        regs.handle_register(1000, register(3600, 1));
        regs.handle_register(1000, register(0, 2));
        assert_eq!(regs.running, 1, "the second waits for the first");

        let first = regs.next_done().await.unwrap();
        assert_eq!(first.response.status.as_u16(), 200);
        assert_eq!(first.response.headers.get("Expires"), Some("3600"));
        assert_eq!(first.outputs.len(), 1, "available presence to the watcher");
        assert!(first.looked_up.is_some(), "looked up, to cache");
        regs.handle_done(1000, &first);
        let second = regs.next_done().await.unwrap();
        assert_eq!(second.offline, Some(alice.juid));
        assert_eq!(
            second.outputs.len(),
            2,
            "unavailable presence to the watcher, and leave the user's rooms"
        );
        assert!(matches!(second.outputs[1], Output::Offline(_)));
        regs.handle_done(1000, &second);
        assert!(regs.busy.is_empty() && regs.running == 0);
        assert!(store.session(alice.juid).await.unwrap().is_none());

        let mut nobody = register(3600, 3);
        nobody.aor = SipAor::parse("sip:nobody@example.com").unwrap();
        nobody.cached = Some(None);
        regs.handle_register(1000, nobody);
        let done = regs.next_done().await.unwrap();
        assert_eq!(done.response.status.as_u16(), 404);
        assert!(done.looked_up.is_none(), "the cache answered");
    }
}
