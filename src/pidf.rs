//! PIDF <-> XMPP presence (RFC 3863, 4480, 8048 §6); being written.
