//! DDL for both dialects: SER's `sip_jab` tables, our `sipjab_schema`, and
//! (versions 2 and 3) the gateway's per-user state tables `sipjab_*`.
//!
//! The MySQL statements are the SER jabber module's database script (see
//! `fixtures/db/ser_sip_jab.sql`) with `IF NOT EXISTS` added, so `init` on a
//! database SER created changes nothing. The SQLite statements translate them:
//! `INTEGER PRIMARY KEY AUTOINCREMENT` for `juid`, and SER's `KEY(...)` as
//! `CREATE INDEX`.

/// The version of the gateway's own tables this build writes and understands.
///
/// 1: `sipjab_schema` only. 2: the state tables (sessions, roster, SIP
/// subscriptions, publications, rooms). 3: `sipjab_contact_presence`.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// The version whose state tables this build uses: an older store answers
/// the state methods with "run `sipjab db init`", which upgrades it.
pub(crate) const STATE_VERSION: i64 = 3;

/// MySQL/MariaDB: SER's tables, column for column and key for key.
///
/// No extra indexes: SER already has `KEY(jab_id)` and `KEY(sip_id)`, and
/// MySQL (unlike MariaDB) has no `CREATE INDEX IF NOT EXISTS`.
pub(crate) const MYSQL_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS jusers(
        juid INT NOT NULL AUTO_INCREMENT,
        jab_id VARCHAR(128) NOT NULL,
        jab_passwd VARCHAR(50),
        sip_id VARCHAR(128) NOT NULL,
        type INT NOT NULL DEFAULT 0,
        PRIMARY KEY(juid),
        KEY(jab_id),
        KEY(sip_id)
    )",
    "CREATE TABLE IF NOT EXISTS icq(
        juid INT NOT NULL,
        icq_id INT NOT NULL,
        icq_passwd VARCHAR(50),
        icq_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0,
        PRIMARY KEY(juid),
        KEY(icq_id)
    )",
    "CREATE TABLE IF NOT EXISTS msn(
        juid INT NOT NULL,
        msn_id VARCHAR(128) NOT NULL,
        msn_passwd VARCHAR(50),
        msn_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0,
        PRIMARY KEY(juid),
        KEY(msn_id)
    )",
    "CREATE TABLE IF NOT EXISTS aim(
        juid INT NOT NULL,
        aim_id VARCHAR(128) NOT NULL,
        aim_passwd VARCHAR(50),
        aim_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0,
        PRIMARY KEY(juid),
        KEY(aim_id)
    )",
    "CREATE TABLE IF NOT EXISTS yahoo(
        juid INT NOT NULL,
        yahoo_id VARCHAR(128) NOT NULL,
        yahoo_passwd VARCHAR(50),
        yahoo_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0,
        PRIMARY KEY(juid),
        KEY(yahoo_id)
    )",
    "CREATE TABLE IF NOT EXISTS sipjab_schema(version INT NOT NULL)",
    // Version 2. Our tables are InnoDB whatever the server's default (SER's
    // may be MyISAM): the expiry and compare-and-set rules need row locks and
    // transactions. Binary collation: JIDs arrive normalised, and Call-IDs,
    // tags and entity tags are case-sensitive (RFC 3261 §19.3, RFC 3903).
    // Indexes live in CREATE TABLE, since MySQL has no CREATE INDEX IF NOT
    // EXISTS. Key lengths stay under InnoDB's 3072 bytes in utf8mb4.
    "CREATE TABLE IF NOT EXISTS sipjab_sessions(
        juid INT NOT NULL,
        show_state VARCHAR(4) NOT NULL,
        status TEXT NULL,
        priority INT NOT NULL,
        source VARCHAR(8) NOT NULL,
        last_activity BIGINT NOT NULL,
        expires_at BIGINT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(juid),
        KEY sipjab_sessions_expires(expires_at),
        KEY sipjab_sessions_activity(last_activity)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS sipjab_roster(
        juid INT NOT NULL,
        contact VARCHAR(512) NOT NULL,
        subscription VARCHAR(4) NOT NULL,
        pending_in TINYINT NOT NULL,
        pending_out TINYINT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(juid, contact)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS sipjab_sip_subscriptions(
        id BIGINT NOT NULL AUTO_INCREMENT,
        juid INT NOT NULL,
        direction VARCHAR(16) NOT NULL,
        contact VARCHAR(512) NOT NULL,
        call_id VARCHAR(255) NOT NULL,
        local_tag VARCHAR(128) NOT NULL,
        remote_tag VARCHAR(128) NOT NULL,
        remote_target TEXT NOT NULL,
        route_set TEXT NOT NULL,
        local_cseq BIGINT NOT NULL,
        remote_cseq BIGINT NOT NULL,
        event VARCHAR(128) NOT NULL,
        expires_at BIGINT NOT NULL,
        state VARCHAR(10) NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(id),
        UNIQUE KEY sipjab_sip_subscriptions_dialog(call_id, local_tag, remote_tag),
        KEY sipjab_sip_subscriptions_owner(juid, contact, direction),
        KEY sipjab_sip_subscriptions_expires(expires_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS sipjab_publications(
        etag VARCHAR(128) NOT NULL,
        juid INT NOT NULL,
        expires_at BIGINT NOT NULL,
        body MEDIUMTEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(etag),
        KEY sipjab_publications_juid(juid),
        KEY sipjab_publications_expires(expires_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS sipjab_rooms(
        juid INT NOT NULL,
        room VARCHAR(512) NOT NULL,
        nick VARCHAR(1023) NOT NULL,
        state VARCHAR(8) NOT NULL,
        password VARCHAR(255) NULL,
        joined_at BIGINT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(juid, room)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // Version 3.
    "CREATE TABLE IF NOT EXISTS sipjab_contact_presence(
        juid INT NOT NULL,
        contact VARCHAR(512) NOT NULL,
        resource VARCHAR(191) NOT NULL,
        available TINYINT NOT NULL,
        stanza TEXT NOT NULL,
        seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(juid, contact, resource)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
];

/// SQLite: the same tables.
///
/// `jab_id` and `sip_id` are indexed `COLLATE NOCASE`, standing in for
/// MySQL's default case-insensitive collation: lookups compare the `sip:user@`
/// prefix case-insensitively on the index and then exactly in Rust.
pub(crate) const SQLITE_DDL: &str = "
    CREATE TABLE IF NOT EXISTS jusers(
        juid INTEGER PRIMARY KEY AUTOINCREMENT,
        jab_id VARCHAR(128) NOT NULL,
        jab_passwd VARCHAR(50),
        sip_id VARCHAR(128) NOT NULL,
        type INT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS sipjab_jusers_jab_id ON jusers(jab_id COLLATE NOCASE);
    CREATE INDEX IF NOT EXISTS sipjab_jusers_sip_id ON jusers(sip_id COLLATE NOCASE);
    CREATE TABLE IF NOT EXISTS icq(
        juid INT NOT NULL PRIMARY KEY,
        icq_id INT NOT NULL,
        icq_passwd VARCHAR(50),
        icq_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS icq_icq_id ON icq(icq_id);
    CREATE TABLE IF NOT EXISTS msn(
        juid INT NOT NULL PRIMARY KEY,
        msn_id VARCHAR(128) NOT NULL,
        msn_passwd VARCHAR(50),
        msn_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS msn_msn_id ON msn(msn_id);
    CREATE TABLE IF NOT EXISTS aim(
        juid INT NOT NULL PRIMARY KEY,
        aim_id VARCHAR(128) NOT NULL,
        aim_passwd VARCHAR(50),
        aim_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS aim_aim_id ON aim(aim_id);
    CREATE TABLE IF NOT EXISTS yahoo(
        juid INT NOT NULL PRIMARY KEY,
        yahoo_id VARCHAR(128) NOT NULL,
        yahoo_passwd VARCHAR(50),
        yahoo_nick VARCHAR(50),
        type INT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS yahoo_yahoo_id ON yahoo(yahoo_id);
    CREATE TABLE IF NOT EXISTS sipjab_schema(version INT NOT NULL);

    CREATE TABLE IF NOT EXISTS sipjab_sessions(
        juid INTEGER NOT NULL PRIMARY KEY,
        show_state TEXT NOT NULL,
        status TEXT,
        priority INTEGER NOT NULL,
        source TEXT NOT NULL,
        last_activity INTEGER NOT NULL,
        expires_at INTEGER,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sipjab_sessions_expires ON sipjab_sessions(expires_at);
    CREATE INDEX IF NOT EXISTS sipjab_sessions_activity ON sipjab_sessions(last_activity);
    CREATE TABLE IF NOT EXISTS sipjab_roster(
        juid INTEGER NOT NULL,
        contact TEXT NOT NULL,
        subscription TEXT NOT NULL,
        pending_in INTEGER NOT NULL,
        pending_out INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY(juid, contact)
    );
    CREATE TABLE IF NOT EXISTS sipjab_sip_subscriptions(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        juid INTEGER NOT NULL,
        direction TEXT NOT NULL,
        contact TEXT NOT NULL,
        call_id TEXT NOT NULL,
        local_tag TEXT NOT NULL,
        remote_tag TEXT NOT NULL,
        remote_target TEXT NOT NULL,
        route_set TEXT NOT NULL,
        local_cseq INTEGER NOT NULL,
        remote_cseq INTEGER NOT NULL,
        event TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS sipjab_sip_subscriptions_dialog
        ON sipjab_sip_subscriptions(call_id, local_tag, remote_tag);
    CREATE INDEX IF NOT EXISTS sipjab_sip_subscriptions_owner
        ON sipjab_sip_subscriptions(juid, contact, direction);
    CREATE INDEX IF NOT EXISTS sipjab_sip_subscriptions_expires
        ON sipjab_sip_subscriptions(expires_at);
    CREATE TABLE IF NOT EXISTS sipjab_publications(
        etag TEXT NOT NULL PRIMARY KEY,
        juid INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sipjab_publications_juid ON sipjab_publications(juid);
    CREATE INDEX IF NOT EXISTS sipjab_publications_expires ON sipjab_publications(expires_at);
    CREATE TABLE IF NOT EXISTS sipjab_rooms(
        juid INTEGER NOT NULL,
        room TEXT NOT NULL,
        nick TEXT NOT NULL,
        state TEXT NOT NULL,
        password TEXT,
        joined_at INTEGER,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY(juid, room)
    );
    CREATE TABLE IF NOT EXISTS sipjab_contact_presence(
        juid INTEGER NOT NULL,
        contact TEXT NOT NULL,
        resource TEXT NOT NULL,
        available INTEGER NOT NULL,
        stanza TEXT NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY(juid, contact, resource)
    );
";

/// One query for all of an account's network rows, in [`Network::ALL`]
/// order; `?` is the `juid`, bound four times.
///
/// [`Network::ALL`]: crate::Network::ALL
pub(crate) const NETWORKS_QUERY: &str = "
    SELECT 'aim', aim_id, aim_passwd, aim_nick FROM aim WHERE juid = ?
    UNION ALL SELECT 'icq', icq_id, icq_passwd, icq_nick FROM icq WHERE juid = ?
    UNION ALL SELECT 'msn', msn_id, msn_passwd, msn_nick FROM msn WHERE juid = ?
    UNION ALL SELECT 'yahoo', yahoo_id, yahoo_passwd, yahoo_nick FROM yahoo WHERE juid = ?";

/// The SELECT list of [`crate::Account`], in field order.
pub(crate) const ACCOUNT_COLUMNS: &str = "juid, jab_id, jab_passwd, sip_id, type";

/// Returns the `DELETE` and `INSERT` statements for one network's row.
pub(crate) fn network_upsert(network: crate::Network) -> (String, String) {
    let t = network.table();
    (
        format!("DELETE FROM {t} WHERE juid = ?"),
        format!(
            "INSERT INTO {t} (juid, {t}_id, {t}_passwd, {t}_nick, type) VALUES (?, ?, ?, ?, 0)"
        ),
    )
}
