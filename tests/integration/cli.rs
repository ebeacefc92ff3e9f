//! The command line: `map`, `check-config`, `db init` and `account`, on SQLite and MariaDB.

use crate::harness::{TempMysql, fixture, sipjab, sipjab_ok};

fn example_config() -> String {
    fixture("config/ser-example.toml").display().to_string()
}

#[test]
fn map_prints_every_documented_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config();
    let cases = [
        ("sip:alpha*jabber.org@jabber.x.com", "alpha@jabber.org"),
        (
            "sip:nick*room*conference.jabber.org@jabber.x.com",
            "room@conference.jabber.org/nick",
        ),
        ("sip:room*server@jabber.x.com;transport=tcp", "room@server"),
        ("sip:alpha*jabber.org@JABBER.x.com:5060", "alpha@jabber.org"),
        ("sip:alpha@aim.x.com", "alpha@aim.x.com"),
        (
            "sip:username*hotmail.com@msn.x.com",
            "username%hotmail.com@msn.x.com",
        ),
        ("alpha@jabber.org", "sip:alpha*jabber.org@jabber.x.com"),
        (
            "room@conference.jabber.org/nick",
            "sip:nick*room*conference.jabber.org@jabber.x.com",
        ),
        (
            "username%hotmail.com@msn.x.com",
            "sip:username*hotmail.com@msn.x.com",
        ),
        ("alpha@aim.x.com", "sip:alpha@aim.x.com"),
    ];
    for (input, expected) in cases {
        let out = sipjab_ok(dir.path(), &["--config", &config, "map", input]);
        assert_eq!(out.trim(), expected, "map {input}");
    }
}

#[test]
fn map_refuses_malformed_addresses_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config();
    let cases = [
        ("sip:alpha@jabber.x.com", "delimiter"),
        ("sip:a*b*c*d@jabber.x.com", "more than two"),
        ("sip:alpha*@jabber.x.com", "empty"),
        ("sip:alpha*jabber.org@elsewhere.org", "not a gateway domain"),
        ("sips:alpha*jabber.org@jabber.x.com", "sips"),
        ("bob@sip.x.com", "account store"),
        ("not an address", "not a SIP URI or a JID"),
    ];
    for (input, reason) in cases {
        let run = sipjab(dir.path(), &["--config", &config, "map", input]);
        assert!(!run.ok, "map {input} succeeded: {}", run.stdout);
        assert!(
            run.stderr.contains(reason),
            "map {input}: {reason:?} not in {:?}",
            run.stderr
        );
    }
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fixture("config/bad.toml").display().to_string();
    let run = sipjab(dir.path(), &["check-config", "--config", &bad]);
    assert!(!run.ok);
    for needle in [
        "gateway.aliases: count says 4 aliases but 3 are listed",
        "gateway.jdomain: delimiter '@' is reserved",
        "db.url:",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn check_config_prints_the_effective_config_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = sipjab_ok(dir.path(), &["check-config", "--config", &example_config()]);
    assert!(out.contains("domain = \"sip.x.com\""), "{out}");
    assert!(out.contains("secret = \"***\""), "{out}");
    assert!(!out.contains("example-secret"), "{out}");
}

#[test]
fn the_config_file_comes_from_sipjab_config_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipjab"))
        .current_dir(dir.path())
        .env("SIPJAB_CONFIG", example_config())
        .env("SIPJAB_XMPP__SECRET", "00123")
        .args(["map", "alpha@jabber.org"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The account commands against one store URL.
fn account_lifecycle(dir: &std::path::Path, url: &str) {
    let db = ["--db", url];
    let run = |args: &[&str]| sipjab(dir, &[args, &db[..]].concat());
    let ok = |args: &[&str]| sipjab_ok(dir, &[args, &db[..]].concat());

    assert!(ok(&["db", "init"]).contains("schema ready"));
    ok(&["db", "init"]);
    ok(&[
        "account",
        "add",
        "sip:alice@example.com",
        "alice",
        "--password",
        "pw",
    ]);
    ok(&["account", "add", "sip:bob@example.com", "bob"]);

    let dup_sip = run(&["account", "add", "sip:alice@EXAMPLE.com", "alice2"]);
    assert!(
        !dup_sip.ok && dup_sip.stderr.contains("alice"),
        "{}",
        dup_sip.stderr
    );
    let dup_jab = run(&["account", "add", "sip:carol@example.com", "bob"]);
    assert!(!dup_jab.ok, "duplicate jab_id accepted");

    let list = ok(&["account", "list"]);
    assert!(
        list.contains("sip:alice@example.com") && list.contains("bob"),
        "{list}"
    );
    assert!(list.contains("2 account(s)"), "{list}");

    ok(&[
        "account",
        "network",
        "sip:alice@example.com",
        "msn",
        "alice@hotmail.com",
        "--nick",
        "Al",
    ]);
    ok(&[
        "account",
        "network",
        "sip:alice@example.com",
        "icq",
        "12345",
    ]);
    let orphan = run(&["account", "network", "sip:nobody@example.com", "aim", "x"]);
    assert!(!orphan.ok, "network row for an unknown user accepted");
    let bad_net = run(&[
        "account",
        "network",
        "sip:alice@example.com",
        "gadugadu",
        "x",
    ]);
    assert!(!bad_net.ok);

    let show = ok(&["account", "show", "sip:alice@example.com;transport=udp"]);
    assert!(show.contains("jab_id:   alice"), "{show}");
    assert!(
        show.contains("msn") && show.contains("alice@hotmail.com"),
        "{show}"
    );
    assert!(show.contains("icq") && show.contains("12345"), "{show}");
    assert!(!show.contains("pw"), "password shown: {show}");

    ok(&["account", "network-remove", "sip:alice@example.com", "msn"]);
    assert!(!ok(&["account", "show", "sip:alice@example.com"]).contains("hotmail"));
    assert!(!run(&["account", "network-remove", "sip:alice@example.com", "msn"]).ok);

    ok(&["account", "remove", "sip:alice@example.com"]);
    assert!(!run(&["account", "show", "sip:alice@example.com"]).ok);
    assert!(!run(&["account", "remove", "sip:alice@example.com"]).ok);
    assert!(ok(&["account", "list"]).contains("1 account(s)"));
}

#[test]
fn accounts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    account_lifecycle(dir.path(), "sqlite://var/test.db");
    assert!(dir.path().join("var/test.db").is_file());
}

#[test]
fn accounts_on_mariadb() {
    let Some(db) = TempMysql::create("accounts_on_mariadb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    account_lifecycle(dir.path(), &db.url());
}

#[test]
fn a_ser_database_is_read_without_migration() {
    let Some(db) = TempMysql::create("a_ser_database_is_read_without_migration") else {
        return;
    };
    // The script creates its own `sip_jab` database; point it at the throw-away one.
    let script = std::fs::read_to_string(fixture("db/ser_sip_jab.sql"))
        .unwrap()
        .replace("sip_jab", &db.name);
    db.run_sql(&script);
    db.run_sql(
        "INSERT INTO jusers (jab_id, jab_passwd, sip_id) VALUES ('olduser', 'x', 'sip:olduser@Example.NET');\
         INSERT INTO msn (juid, msn_id, msn_passwd) SELECT juid, 'old@hotmail.com', 'y' FROM jusers;",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let show = sipjab_ok(
        dir.path(),
        &["account", "show", "sip:olduser@example.net", "--db", &url],
    );
    assert!(show.contains("jab_id:   olduser"), "{show}");
    assert!(show.contains("old@hotmail.com"), "{show}");
    sipjab_ok(dir.path(), &["db", "init", "--db", &url]);
    sipjab_ok(
        dir.path(),
        &[
            "account",
            "add",
            "sip:new@example.net",
            "newuser",
            "--db",
            &url,
        ],
    );
}

#[test]
fn store_commands_need_no_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = sipjab(
        dir.path(),
        &["account", "list", "--db", "sqlite://missing.db"],
    );
    assert!(!run.ok);
    assert!(run.stderr.contains("db init"), "{}", run.stderr);
}
