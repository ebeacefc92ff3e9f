//! Integration tests: the `sipjab` binary against real stores (SQLite, MariaDB) and, where
//! marked `#[ignore = "needs Prosody"]`, a real Prosody started by `scripts/test`.

mod cli;
mod harness;
