//! sipjab: a SIP/SIMPLE <-> XMPP gateway.
//!
//! The gateway keeps the user-facing behaviour of the SER `jabber` module (FhG FOKUS, 2003) and
//! replaces its design: instead of logging every SIP user into the Jabber server with a client
//! connection of its own, it holds one XEP-0114 component connection and impersonates each
//! SIP user's JID `<jab_id>@<component domain>`.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration (TOML file plus `SIPJAB_` environment variables).
//! - [`address`]: the SER address rules, SIP URI <-> JID, with XEP-0106 escaping. Pure.
//! - [`sip_to_xmpp`] and [`xmpp_to_sip`]: one file per direction of the message translation
//!   (RFC 3428, RFC 7572). Pure.
//! - [`commands`]: the `:online`, `:offline`, `:join`, `:exit`, `:allow`, `:deny` commands
//!   typed in MESSAGE bodies. Pure.
//! - [`error_map`]: SIP status <-> stanza error condition (RFC 7247 §7). Pure.
//! - [`pidf`]: PIDF <-> XMPP presence (RFC 3863, RFC 8048 §6). Pure.
//! - [`presence`]: sessions (`:online`, REGISTER, `cache_time`) and presence authorisation,
//!   on the store's per-user state tables.
//! - [`gateway`]: the message state machine: the delay queue, and the tables that route an
//!   error back to whoever sent the failed message. Sans-IO: inputs take `now`, outputs are
//!   polled.
//! - [`sent_log`]: stanzas sent for SIP users, kept in a fixed block of memory for the error
//!   replies that may follow.
//! - [`conference`]: SIP users in MUC rooms (XEP-0045): join, leave, groupchat and private
//!   messages from rooms, memberships in the store.
//! - [`registrations`]: REGISTERs handled side by side, in order per user.
//! - [`watchers`]: SIP users watching Jabber contacts: SUBSCRIBE/NOTIFY with PIDF on one side,
//!   an XMPP subscription on the other (RFC 6665, RFC 8048 §5.3).
//! - [`accounts`]: the account store with a short-lived cache in front of it.
//! - [`run`]: the only async code: the loop that drives everything above.
//! - `sipjab-sip` (`sip/`): SIP messages, parser, transactions, UDP/TCP transport.
//! - `sipjab-component` (`component/`): the XEP-0114 link, with keepalive and reconnect.
//! - `sipjab-db` (`db/`): the account store, SER schema, SQLite or MySQL.
//!
//! # The run loop
//!
//! `run` selects over four sources: SIP messages from the transport, events from the
//! component link, the next timer (gateway or SIP transactions), and the shutdown signal. Each
//! event goes into the sans-IO parts with the current time. Anything that needs the account
//! store is looked up before the event is handed to the gateway. Afterwards, the loop drains
//! the gateway's outputs: stanzas go to the link, and SIP requests go into new client
//! transactions.

pub mod accounts;
pub mod address;
pub mod commands;
pub mod conference;
pub mod config;
pub mod error_map;
pub mod gateway;
pub mod pidf;
pub mod presence;
pub mod registrations;
pub mod run;
pub mod sent_log;
pub mod sip_to_xmpp;
pub mod watchers;
pub mod xmpp_to_sip;
