//! DDL for both dialects: SER's `sip_jab` tables plus our `sipjab_schema`.
//!
//! The MySQL statements are the SER jabber module's database script (see
//! `fixtures/db/ser_sip_jab.sql`) with `IF NOT EXISTS` added, so `init` on a
//! database SER created changes nothing. The SQLite statements translate them:
//! `INTEGER PRIMARY KEY AUTOINCREMENT` for `juid`, and SER's `KEY(...)` as
//! `CREATE INDEX`.

/// The version of the gateway's own tables this build writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = 1;

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
