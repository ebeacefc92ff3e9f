//! sipjab: a SIP/SIMPLE <-> XMPP gateway.
