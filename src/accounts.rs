//! Account lookups for the run loop: the store, with a short-lived cache in front of it.
//!
//! Every SIP MESSAGE needs its sender's account and every XMPP message its recipient's. The
//! cache keeps the store off the hot path, absent accounts included. Its entries live only
//! a short time, so `sipjab account add/remove` on a running gateway, or a second instance
//! sharing the store, takes effect within that time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sipjab_db::{Account, Scheme, SipAor, Store};
use sipjab_sip::Uri;

/// How long a looked-up account (or its absence) is trusted.
const TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 200_000;

/// The address of record of a parsed SIP URI (`None` for another scheme or no user part):
/// the key of the account store, made from the URI's parts rather than written out and
/// parsed again.
pub fn aor_of(uri: &Uri) -> Option<SipAor> {
    let Uri::Sip(uri) = uri else { return None };
    let user = uri.user.as_deref()?;
    let scheme = if uri.secure {
        Scheme::Sips
    } else {
        Scheme::Sip
    };
    SipAor::from_parts(scheme, user, &uri.host.text()).ok()
}

/// The store behind a cache keyed by SIP address of record and by `jab_id`.
#[derive(Debug)]
pub struct Accounts {
    store: Store,
    by_sip: Cache<SipAor>,
    by_jab_id: Cache<String>,
}

/// Looked-up accounts by key, with the time of the lookup. Every message hashes a key, so
/// the hash is foldhash, seeded per process like SipHash but several times cheaper; the
/// cache is emptied at `MAX_ENTRIES`, which bounds what colliding keys could cost.
type Cache<K> = HashMap<K, (Instant, Option<Account>), foldhash::fast::RandomState>;

impl Accounts {
    /// A cache in front of `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            by_sip: Cache::default(),
            by_jab_id: Cache::default(),
        }
    }

    /// The account of a SIP user.
    pub async fn by_sip(
        &mut self,
        now: Instant,
        aor: &SipAor,
    ) -> Result<Option<Account>, sipjab_db::Error> {
        if let Some(account) = self.cached_by_sip(now, aor) {
            return Ok(account);
        }
        let account = self.store.account_by_sip(aor).await?;
        self.remember_sip(now, aor, account.clone());
        Ok(account)
    }

    /// The cache's answer for a SIP user, if it has a fresh one (`Some(None)`: no account).
    pub fn cached_by_sip(&self, now: Instant, aor: &SipAor) -> Option<Option<Account>> {
        self.by_sip
            .get(aor)
            .filter(|(at, _)| now.saturating_duration_since(*at) < TTL)
            .map(|(_, account)| account.clone())
    }

    /// Caches what the store answered for a SIP user, looked up elsewhere.
    pub fn remember_sip(&mut self, now: Instant, aor: &SipAor, account: Option<Account>) {
        trim(&mut self.by_sip);
        self.by_sip.insert(aor.clone(), (now, account));
    }

    /// The account behind `<jab_id>@<component domain>`. Jabber IDs are compared without
    /// regard to case, as in the store.
    pub async fn by_jab_id(
        &mut self,
        now: Instant,
        jab_id: &str,
    ) -> Result<Option<Account>, sipjab_db::Error> {
        let key = jab_id.to_lowercase();
        if let Some((at, account)) = self.by_jab_id.get(&key)
            && now.saturating_duration_since(*at) < TTL
        {
            return Ok(account.clone());
        }
        let account = self.store.account_by_jab_id(jab_id).await?;
        trim(&mut self.by_jab_id);
        self.by_jab_id.insert(key, (now, account.clone()));
        Ok(account)
    }
}

fn trim<K>(map: &mut Cache<K>) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
}
