//! The store test suite, written once and run against both backends:
//! SQLite in a temporary directory, and MySQL/MariaDB in a throw-away
//! database on the server named by `SIPJAB_TEST_MYSQL`
//! (e.g. `mysql://root@127.0.0.1:3306`); without it the MySQL half says it
//! was skipped and passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mysql_async::prelude::Queryable;
use sipjab_db::{DbUrl, Error, Network, NetworkAccount, SipAor, Store};

/// SER's script, as an operator ran it on MySQL.
const SER_MYSQL: &str = include_str!("../../fixtures/db/ser_sip_jab.sql");
/// The same tables translated to SQLite.
const SER_SQLITE: &str = include_str!("../../fixtures/db/ser_sip_jab.sqlite.sql");
/// SER's tables, which `init` must leave exactly as they are.
const SER_TABLES: [&str; 5] = ["jusers", "icq", "msn", "aim", "yahoo"];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn aor(s: &str) -> SipAor {
    SipAor::parse(s).expect("test URI parses")
}

/// A throw-away MySQL database, dropped (best effort) when the test ends,
/// whether it passed or panicked.
struct MysqlDb {
    server: String,
    name: String,
}

impl MysqlDb {
    async fn create() -> Option<Self> {
        let Ok(server) = std::env::var("SIPJAB_TEST_MYSQL") else {
            println!("skipped: SIPJAB_TEST_MYSQL is not set (e.g. mysql://root@127.0.0.1:3306)");
            return None;
        };
        let server = server.trim_end_matches('/').to_owned();
        let name = format!(
            "sipjab_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = mysql_async::Conn::from_url(&server)
            .await
            .expect("connect to SIPJAB_TEST_MYSQL");
        conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .expect("drop old db");
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .expect("create db");
        conn.disconnect().await.expect("disconnect");
        Some(Self { server, name })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop can't await, and may run while the test's runtime unwinds.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = mysql_async::Conn::from_url(&server).await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                        .await;
                    let _ = conn.disconnect().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Direct access to the database under a store, to set up and inspect rows
/// the way SER or an operator would.
enum Raw {
    Sqlite(PathBuf),
    Mysql(String),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Self::Sqlite(path) => {
                let (path, sql) = (path.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).expect("mkdir");
                    }
                    let c = rusqlite::Connection::open(&path).expect("open sqlite");
                    c.execute_batch(&sql).expect("raw sqlite");
                })
                .await
                .expect("join");
            }
            Self::Mysql(url) => {
                let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
                conn.query_drop(sql).await.expect("raw mysql");
                conn.disconnect().await.expect("disconnect");
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(path) => {
                let (path, sql) = (path.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(&path).expect("open sqlite");
                    c.query_row(&sql, [], |r| r.get(0)).expect("count")
                })
                .await
                .expect("join")
            }
            Self::Mysql(url) => {
                let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
                let n: Option<i64> = conn.query_first(sql).await.expect("count");
                conn.disconnect().await.expect("disconnect");
                n.expect("a row")
            }
        }
    }

    /// The definitions of SER's tables (and, for SQLite, their indexes).
    async fn ser_ddl(&self) -> Vec<String> {
        match self {
            Self::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(&path).expect("open sqlite");
                    let mut stmt = c
                        .prepare(
                            "SELECT type || ' ' || name || ': ' || sql FROM sqlite_master
                             WHERE tbl_name IN ('jusers', 'icq', 'msn', 'aim', 'yahoo')
                               AND name NOT LIKE 'sipjab_%' AND sql IS NOT NULL
                             ORDER BY name",
                        )
                        .expect("prepare");
                    stmt.query_map([], |r| r.get(0))
                        .expect("query")
                        .collect::<Result<Vec<String>, _>>()
                        .expect("rows")
                })
                .await
                .expect("join")
            }
            Self::Mysql(url) => {
                let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
                let mut out = Vec::new();
                for t in SER_TABLES {
                    let row: Option<(String, String)> = conn
                        .query_first(format!("SHOW CREATE TABLE {t}"))
                        .await
                        .expect("show create table");
                    let ddl = row.expect("table exists").1;
                    // The AUTO_INCREMENT counter moves with every insert.
                    let ddl = match ddl.find(" AUTO_INCREMENT=") {
                        Some(i) => {
                            let rest = &ddl[i + 1..];
                            let end = rest.find(' ').unwrap_or(rest.len());
                            format!("{}{}", &ddl[..i], &rest[end..])
                        }
                        None => ddl,
                    };
                    out.push(ddl);
                }
                conn.disconnect().await.expect("disconnect");
                out
            }
        }
    }

    /// Creates SER's tables the way SER's operator did, without `init`.
    async fn load_ser_fixture(&self) {
        match self {
            Self::Sqlite(_) => self.exec(SER_SQLITE).await,
            Self::Mysql(url) => {
                let name = url.rsplit('/').next().expect("db name");
                self.exec(&SER_MYSQL.replace("sip_jab", name)).await;
            }
        }
    }

    fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }
}

/// One backend's fresh, empty database.
struct Env {
    url: DbUrl,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    _mysql: Option<MysqlDb>,
}

impl Env {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // A subdirectory that doesn't exist yet: init creates it.
        let path = dir.path().join("var").join("sipjab.db");
        Self {
            url: DbUrl::parse(&format!("sqlite://{}", path.display())).expect("url"),
            raw: Raw::Sqlite(path),
            _dir: Some(dir),
            _mysql: None,
        }
    }

    async fn mysql() -> Option<Self> {
        let db = MysqlDb::create().await?;
        Some(Self {
            url: DbUrl::parse(&db.url()).expect("url"),
            raw: Raw::Mysql(db.url()),
            _dir: None,
            _mysql: Some(db),
        })
    }

    fn sqlite_path(&self) -> Option<&Path> {
        match &self.raw {
            Raw::Sqlite(p) => Some(p),
            Raw::Mysql(_) => None,
        }
    }
}

/// Runs each suite function once per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Env::sqlite()).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(env) = super::Env::mysql().await else { return };
                    super::$name(&env).await;
                }
            )*
        }
    };
}

suite!(
    open_needs_init,
    init_is_idempotent,
    concurrent_inits_record_one_version,
    add_list_show_remove,
    duplicates_change_nothing,
    concurrent_adds_make_one_account,
    network_rows,
    lookups_by_odd_stored_forms,
    ser_created_database,
    bad_rows_are_errors,
    input_checked_against_ser_columns,
);

async fn open_needs_init(env: &Env) {
    let err = Store::open(&env.url)
        .await
        .expect_err("nothing to open yet");
    match (&err, env.sqlite_path()) {
        (Error::Missing { path }, Some(p)) => {
            assert_eq!(path, p);
            assert!(err.to_string().contains("sipjab db init"), "{err}");
            assert!(!p.exists(), "open must not create the file");
        }
        (Error::NotInitialised { .. }, None) => {
            assert!(err.to_string().contains("sipjab db init"), "{err}");
        }
        _ => panic!("unexpected {err:?}"),
    }
    Store::init(&env.url).await.expect("init");
    let store = Store::open(&env.url).await.expect("open after init");
    assert!(store.accounts().await.expect("accounts").is_empty());
}

async fn init_is_idempotent(env: &Env) {
    let store = Store::init(&env.url).await.expect("first init");
    assert_eq!(store.schema_version().await.expect("version"), Some(1));
    store
        .add_account(&aor("sip:alice@example.com"), "alice", Some("pw"))
        .await
        .expect("add");
    let before = env.raw.ser_ddl().await;
    let again = Store::init(&env.url).await.expect("second init");
    assert_eq!(again.schema_version().await.expect("version"), Some(1));
    assert_eq!(
        env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await,
        1,
        "version row inserted once"
    );
    assert_eq!(env.raw.ser_ddl().await, before);
    assert_eq!(again.accounts().await.expect("accounts").len(), 1);
}

async fn concurrent_inits_record_one_version(env: &Env) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = env.url.clone();
        tasks.push(tokio::spawn(async move { Store::init(&url).await }));
    }
    for t in tasks {
        t.await.expect("join").expect("init");
    }
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await, 1);
}

async fn add_list_show_remove(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    let alice = store
        .add_account(
            &aor("sip:alice@Example.COM;transport=udp"),
            "alice",
            Some("pw"),
        )
        .await
        .expect("add alice");
    assert_eq!(alice.sip_id, "sip:alice@example.com", "stored normalised");
    assert_eq!(alice.jab_id, "alice");
    assert_eq!(alice.jab_passwd.as_deref(), Some("pw"));
    assert_eq!(alice.kind, 0);
    let bob = store
        .add_account(&aor("sip:bob@example.com"), "bob", None)
        .await
        .expect("add bob");
    assert!(bob.juid > alice.juid);
    assert_eq!(
        store.accounts().await.expect("list"),
        vec![alice.clone(), bob.clone()]
    );

    let found = store
        .account_by_sip(&aor("sip:alice@example.com:5060"))
        .await
        .expect("show");
    assert_eq!(found.as_ref(), Some(&alice));
    assert_eq!(
        store.account_by_jab_id("bob").await.expect("by jab id"),
        Some(bob.clone())
    );
    assert_eq!(
        store.account_by_jab_id("carol").await.expect("by jab id"),
        None
    );

    // A second handle (e.g. the CLI) sees the same data.
    let other = Store::open(&env.url).await.expect("open");
    assert_eq!(other.accounts().await.expect("list").len(), 2);

    assert!(
        store
            .remove_account(&aor("SIP:alice@EXAMPLE.com"))
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_account(&aor("sip:alice@example.com"))
            .await
            .expect("again")
    );
    assert_eq!(store.accounts().await.expect("list"), vec![bob]);
    assert_eq!(
        store
            .account_by_sip(&aor("sip:alice@example.com"))
            .await
            .expect("show"),
        None
    );
}

async fn duplicates_change_nothing(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    store
        .add_account(&aor("sip:alice@example.com"), "alice", Some("pw"))
        .await
        .expect("add");
    let before = store.accounts().await.expect("list");

    let dup_sip = store
        .add_account(
            &aor("sip:alice@EXAMPLE.com:5070;transport=tcp"),
            "alice2",
            None,
        )
        .await;
    assert!(
        matches!(&dup_sip, Err(Error::DuplicateSip { sip }) if sip == "sip:alice@example.com"),
        "{dup_sip:?}"
    );
    let dup_jab = store
        .add_account(&aor("sip:other@example.com"), "alice", None)
        .await;
    assert!(
        matches!(dup_jab, Err(Error::DuplicateJabId { .. })),
        "{dup_jab:?}"
    );
    let dup_jab_case = store
        .add_account(&aor("sip:other@example.com"), "ALICE", None)
        .await;
    assert!(
        matches!(dup_jab_case, Err(Error::DuplicateJabId { .. })),
        "{dup_jab_case:?}"
    );
    assert_eq!(store.accounts().await.expect("list"), before);

    // Different user case, or sips:, is a different address.
    store
        .add_account(&aor("sip:Alice@example.com"), "alice-upper", None)
        .await
        .expect("user part is case-sensitive");
    store
        .add_account(&aor("sips:alice@example.com"), "alice-tls", None)
        .await
        .expect("sips is another scheme");
    assert_eq!(store.accounts().await.expect("list").len(), 3);
}

async fn concurrent_adds_make_one_account(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .add_account(&aor("sip:race@example.com"), &format!("race{i}"), None)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(Error::DuplicateSip { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.accounts().await.expect("list").len(), 1);
}

async fn network_rows(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    let alice = aor("sip:alice@example.com");
    let a = store.add_account(&alice, "alice", None).await.expect("add");
    let b = store
        .add_account(&aor("sip:bob@example.com"), "bob", None)
        .await
        .expect("add");

    let icq = NetworkAccount::new(Network::Icq, "123456", Some("icqpw"), Some("ally"));
    let msn = NetworkAccount::new(Network::Msn, "alice@hotmail.com", None, None);
    store.set_network(&alice, &icq).await.expect("set icq");
    store
        .set_network(&aor("sip:ALICE@example.com"), &msn)
        .await
        .expect_err("user part is case-sensitive");
    store
        .set_network(&aor("sip:alice@EXAMPLE.COM;lr"), &msn)
        .await
        .expect("set msn");
    assert_eq!(
        store.networks(a.juid).await.expect("networks"),
        vec![icq.clone(), msn.clone()]
    );

    // Replace: still one row per network.
    let icq2 = NetworkAccount::new(Network::Icq, "654321", None, Some("al"));
    store.set_network(&alice, &icq2).await.expect("replace icq");
    assert_eq!(
        store.networks(a.juid).await.expect("networks"),
        vec![icq2, msn.clone()]
    );
    assert!(store.networks(b.juid).await.expect("networks").is_empty());

    assert!(
        store
            .remove_network(&alice, Network::Icq)
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_network(&alice, Network::Icq)
            .await
            .expect("again")
    );
    assert!(
        !store
            .remove_network(&alice, Network::Yahoo)
            .await
            .expect("none")
    );
    assert_eq!(store.networks(a.juid).await.expect("networks"), vec![msn]);

    // Unknown SIP user: an error, nothing written.
    let nobody = aor("sip:nobody@example.com");
    let err = store.set_network(&nobody, &icq).await;
    assert!(matches!(err, Err(Error::UnknownAccount { .. })), "{err:?}");
    let err = store.remove_network(&nobody, Network::Icq).await;
    assert!(matches!(err, Err(Error::UnknownAccount { .. })), "{err:?}");
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM icq").await, 0);

    // Removing the account removes its network rows.
    let aim = NetworkAccount::new(Network::Aim, "alice_aim", Some("x"), None);
    let yahoo = NetworkAccount::new(Network::Yahoo, "alice_y", None, Some("A"));
    store.set_network(&alice, &aim).await.expect("aim");
    store.set_network(&alice, &yahoo).await.expect("yahoo");
    store
        .set_network(&aor("sip:bob@example.com"), &icq)
        .await
        .expect("bob icq");
    assert!(store.remove_account(&alice).await.expect("remove"));
    assert!(store.networks(a.juid).await.expect("networks").is_empty());
    for t in ["aim", "msn", "yahoo"] {
        assert_eq!(
            env.raw.count(&format!("SELECT COUNT(*) FROM {t}")).await,
            0,
            "{t}"
        );
    }
    assert_eq!(store.networks(b.juid).await.expect("networks"), vec![icq]);
}

async fn lookups_by_odd_stored_forms(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    // Rows as SER's tools wrote them: the From URI as the client sent it.
    env.raw
        .exec(
            "INSERT INTO jusers (jab_id, jab_passwd, sip_id) VALUES
               ('carol', 'pw', 'sip:carol@Example.COM;transport=udp'),
               ('dave', NULL, 'SIP:dave@example.com:5060'),
               ('eve', 'pw', 'sip:eve@example.com?subject=x'),
               ('junk', NULL, 'not a uri')",
        )
        .await;
    let carol = store
        .account_by_sip(&aor("sip:carol@example.com"))
        .await
        .expect("lookup")
        .expect("carol found");
    assert_eq!(carol.jab_id, "carol");
    assert_eq!(
        carol.sip_id, "sip:carol@Example.COM;transport=udp",
        "kept as stored"
    );
    for (query, jab) in [
        ("sip:c%61rol@EXAMPLE.com:5060", "carol"),
        ("sip:dave@example.com", "dave"),
        ("sip:eve@example.com;x=y", "eve"),
    ] {
        let found = store.account_by_sip(&aor(query)).await.expect("lookup");
        assert_eq!(found.map(|a| a.jab_id).as_deref(), Some(jab), "{query}");
    }
    for miss in [
        "sip:caro@example.com",
        "sip:carol2@example.com",
        "sip:Carol@example.com",
        "sips:carol@example.com",
        "sip:carol@example.org",
    ] {
        assert_eq!(
            store.account_by_sip(&aor(miss)).await.expect("lookup"),
            None,
            "{miss}"
        );
    }
    // The odd row still counts as taken, and a junk row breaks nothing.
    let dup = store
        .add_account(&aor("sip:dave@EXAMPLE.COM"), "dave2", None)
        .await;
    assert!(matches!(dup, Err(Error::DuplicateSip { .. })), "{dup:?}");
    assert_eq!(store.accounts().await.expect("list").len(), 4);
    assert!(
        store
            .remove_account(&aor("sip:carol@example.com"))
            .await
            .expect("remove")
    );
    assert_eq!(store.accounts().await.expect("list").len(), 3);
}

async fn ser_created_database(env: &Env) {
    env.raw.load_ser_fixture().await;
    // What SER's regjab.pl / web subscribe page would have inserted.
    env.raw
        .exec(
            "INSERT INTO jusers (jab_id, jab_passwd, sip_id) VALUES
               ('alice', 'secret', 'sip:alice@iptel.org'),
               ('bob', NULL, 'sip:bob@IPTEL.ORG;transport=udp');
             INSERT INTO icq (juid, icq_id, icq_passwd, icq_nick) VALUES (1, 123456, 'icqpw', 'ally');
             INSERT INTO msn (juid, msn_id, msn_passwd, msn_nick) VALUES (1, 'alice@hotmail.com', NULL, NULL);",
        )
        .await;
    let ddl = env.raw.ser_ddl().await;

    // Opened as SER left it: no migration, no schema table needed.
    let store = Store::open(&env.url).await.expect("open SER db");
    assert_eq!(store.schema_version().await.expect("version"), None);
    let accounts = store.accounts().await.expect("list");
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].jab_id, "alice");
    assert_eq!(accounts[0].jab_passwd.as_deref(), Some("secret"));
    assert_eq!(accounts[1].jab_passwd, None);
    let bob = store
        .account_by_sip(&aor("sip:bob@iptel.org"))
        .await
        .expect("lookup")
        .expect("bob");
    assert_eq!(bob.juid, 2);
    let alice = aor("sip:alice@iptel.org");
    assert_eq!(
        store.networks(1).await.expect("networks"),
        vec![
            NetworkAccount::new(Network::Icq, "123456", Some("icqpw"), Some("ally")),
            NetworkAccount::new(Network::Msn, "alice@hotmail.com", None, None),
        ]
    );
    // Writes work on SER's tables as they are.
    let carol = store
        .add_account(&aor("sip:carol@iptel.org"), "carol", Some("pw"))
        .await
        .expect("add");
    assert_eq!(carol.juid, 3);
    store
        .set_network(
            &alice,
            &NetworkAccount::new(Network::Yahoo, "ally_y", None, None),
        )
        .await
        .expect("set yahoo");
    assert_eq!(
        env.raw.ser_ddl().await,
        ddl,
        "open and writes altered nothing"
    );

    // init on SER's database only adds our own table (and, on SQLite, indexes).
    let store = Store::init(&env.url).await.expect("init on SER db");
    assert_eq!(store.schema_version().await.expect("version"), Some(1));
    assert_eq!(env.raw.ser_ddl().await, ddl, "init altered SER's tables");
    assert_eq!(store.accounts().await.expect("list").len(), 3);
    Store::init(&env.url).await.expect("init again");
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await, 1);
}

async fn bad_rows_are_errors(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    if env.raw.is_sqlite() {
        // SQLite's loose typing lets an old or hand-edited file hold text in INT.
        env.raw
            .exec("INSERT INTO jusers (jab_id, sip_id, type) VALUES ('x', 'sip:x@h', 'oops')")
            .await;
    } else {
        // A schema someone loosened by hand.
        env.raw
            .exec(
                "ALTER TABLE jusers MODIFY jab_id VARCHAR(128) NULL;
                 INSERT INTO jusers (jab_id, sip_id) VALUES (NULL, 'sip:x@h')",
            )
            .await;
    }
    let err = store.accounts().await;
    assert!(
        matches!(
            err,
            Err(Error::BadRow {
                table: "jusers",
                ..
            })
        ),
        "{err:?}"
    );
    let err = store.account_by_sip(&aor("sip:x@h")).await;
    assert!(matches!(err, Err(Error::BadRow { .. })), "{err:?}");
}

async fn input_checked_against_ser_columns(env: &Env) {
    let store = Store::init(&env.url).await.expect("init");
    let alice = aor("sip:alice@example.com");
    let long = "x".repeat(129);
    let err = store.add_account(&alice, &long, None).await;
    assert!(
        matches!(
            err,
            Err(Error::TooLong {
                field: "jab_id",
                max: 128
            })
        ),
        "{err:?}"
    );
    let err = store
        .add_account(&alice, "alice", Some(&"p".repeat(51)))
        .await;
    assert!(matches!(err, Err(Error::TooLong { .. })), "{err:?}");
    let err = store.add_account(&alice, "", None).await;
    assert!(matches!(err, Err(Error::Empty { .. })), "{err:?}");
    store.add_account(&alice, "alice", None).await.expect("add");
    let err = store
        .set_network(
            &alice,
            &NetworkAccount::new(Network::Icq, "not-a-number", None, None),
        )
        .await;
    assert!(
        matches!(err, Err(Error::InvalidNetworkId { .. })),
        "{err:?}"
    );
    // Non-ASCII within limits round-trips.
    let n = NetworkAccount::new(Network::Msn, "jürgen@hotmail.com", None, Some("Jürgen ☺"));
    store.set_network(&alice, &n).await.expect("set");
    let a = store
        .account_by_sip(&alice)
        .await
        .expect("lookup")
        .expect("alice");
    assert_eq!(store.networks(a.juid).await.expect("networks"), vec![n]);
    let names: BTreeSet<String> = store
        .accounts()
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.jab_id)
        .collect();
    assert_eq!(names, BTreeSet::from(["alice".to_owned()]));
}

/// MySQL only: the two hot lookups run on SER's `KEY(sip_id)` and
/// `KEY(jab_id)`, not a table scan (the benchmark stores 100,000 accounts).
/// The statements mirror those in `src/mysql.rs`. SQLite's plan is checked
/// by a unit test in `src/sqlite.rs`.
#[tokio::test]
async fn mysql_lookups_use_ser_indexes() {
    let Some(env) = Env::mysql().await else {
        return;
    };
    env.raw.load_ser_fixture().await;
    let values: Vec<String> = (0..300)
        .map(|i| format!("('u{i}', 'sip:u{i}@example.com')"))
        .collect();
    env.raw
        .exec(&format!(
            "INSERT INTO jusers (jab_id, sip_id) VALUES {}; ANALYZE TABLE jusers;",
            values.join(", ")
        ))
        .await;
    let Raw::Mysql(url) = &env.raw else {
        unreachable!("Env::mysql gives Raw::Mysql")
    };
    let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
    for (sql, key) in [
        (
            "EXPLAIN SELECT juid, jab_id, jab_passwd, sip_id, type FROM jusers
             WHERE sip_id LIKE 'sip:u17@%' ESCAPE '!' ORDER BY juid FOR UPDATE",
            "sip_id",
        ),
        (
            "EXPLAIN SELECT juid, jab_id, jab_passwd, sip_id, type FROM jusers
             WHERE jab_id = 'u17' ORDER BY juid LIMIT 1",
            "jab_id",
        ),
    ] {
        let row: mysql_async::Row = conn
            .query_first(sql)
            .await
            .expect("explain")
            .expect("a plan row");
        let used: Option<String> = row.get("key").expect("key column");
        assert_eq!(used.as_deref(), Some(key), "{sql}");
    }
    conn.disconnect().await.expect("disconnect");
    // And the store finds the row through them.
    let store = Store::open(&env.url).await.expect("open");
    let u17 = store
        .account_by_sip(&aor("sip:u17@EXAMPLE.com"))
        .await
        .expect("lookup")
        .expect("u17");
    assert_eq!(u17.jab_id, "u17");
}
