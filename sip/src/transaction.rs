//! Non-INVITE transactions (RFC 3261 section 17) as sans-IO state machines.

/// The RFC 3261 branch prefix (section 8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";
