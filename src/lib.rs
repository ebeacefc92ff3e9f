//! sipjab: a SIP/SIMPLE <-> XMPP gateway.
//!
//! The gateway keeps the user-facing behaviour of the SER `jabber` module (FhG FOKUS, 2003) and
//! replaces its design: instead of logging every SIP user into the Jabber server with a client
//! connection of its own, it holds one XEP-0114 component connection and impersonates each
//! SIP user's JID `<jab_id>@<component domain>`.
//!
//! - [`config`]: the typed configuration (TOML file plus `SIPJAB_` environment variables).
//! - [`address`]: the SER address rules, SIP URI <-> JID, pure.
//! - `sipjab-db`: the account store, SER schema, SQLite or MySQL.
//! - `sipjab-sip`, `sipjab-component`: the SIP front end and the XEP-0114 link.

pub mod accounts;
pub mod address;
pub mod config;
pub mod error_map;
pub mod gateway;
pub mod run;
pub mod sip_to_xmpp;
pub mod xmpp_to_sip;
