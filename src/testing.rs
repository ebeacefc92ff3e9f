//! What the store-backed unit tests share: a fresh SQLite store with one account.

use sipjab_db::{Account, DbUrl, SipAor, Store};

/// A store in a temporary directory (kept while the returned guard lives) with the account
/// `sip:alice@example.com` <-> `alice`.
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
