//! Integration tests: the `sipjab` binary against real stores (SQLite, MariaDB) and, where
//! marked `#[ignore = "needs Prosody"]`, a real Prosody started by `scripts/test`.

#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failed unwrap is a failed test, with its message"
)]

mod cli;
mod conferences;
mod harness;
mod messages;
mod peers;
mod presence;
