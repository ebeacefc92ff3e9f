//! The store test suite, written once and run against both backends:
//! SQLite in a temporary directory, and MySQL/MariaDB in a throw-away
//! database on the server named by `SIPJAB_TEST_MYSQL`
//! (e.g. `mysql://root@127.0.0.1:3306`); without it the MySQL half says it
//! was skipped and passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mysql_async::prelude::Queryable;
use sipjab_db::{
    ContactResource, DbUrl, Deadlines, Direction, Error, Network, NetworkAccount, Publication,
    Room, RoomState, RosterItem, Session, SessionSource, Show, SipAor, SipSubscription, Store,
    Subscription, SubscriptionState,
};

/// SER's script, as an operator ran it on MySQL.
const SER_MYSQL: &str = include_str!("../../fixtures/db/ser_sip_jab.sql");
/// The same tables translated to SQLite.
const SER_SQLITE: &str = include_str!("../../fixtures/db/ser_sip_jab.sqlite.sql");
/// SER's tables, which `init` must leave exactly as they are.
const SER_TABLES: [&str; 5] = ["jusers", "icq", "msn", "aim", "yahoo"];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fixed "now" (Unix seconds): the store never reads the clock.
const T0: i64 = 1_700_000_000;

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
    v1_database_upgrades,
    v2_database_upgrades,
    sessions,
    go_online_keeps_published_state,
    concurrent_go_online,
    contact_presence,
    roster_and_fan_out,
    sip_subscriptions,
    publications,
    rooms,
    concurrent_expiry_returns_each_row_once,
    concurrent_writers,
    remove_account_removes_state,
    state_input_checked,
    deadlines,
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
    assert_eq!(store.schema_version().await.expect("version"), Some(3));
    store
        .add_account(&aor("sip:alice@example.com"), "alice", Some("pw"))
        .await
        .expect("add");
    let before = env.raw.ser_ddl().await;
    let again = Store::init(&env.url).await.expect("second init");
    assert_eq!(again.schema_version().await.expect("version"), Some(3));
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
    assert_eq!(
        store.account_by_juid(bob.juid).await.expect("by juid"),
        Some(bob.clone())
    );
    assert_eq!(store.account_by_juid(-1).await.expect("by juid"), None);

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
    assert!(!store.has_state_tables().await.expect("state tables?"));
    let err = store.session(1).await;
    assert!(
        matches!(
            err,
            Err(Error::SchemaTooOld {
                found: None,
                needed: 3
            })
        ),
        "{err:?}"
    );
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
    assert_eq!(store.schema_version().await.expect("version"), Some(3));
    assert_eq!(env.raw.ser_ddl().await, ddl, "init altered SER's tables");
    assert_eq!(store.accounts().await.expect("list").len(), 3);
    let s = store
        .set_session(&Session::new(1, SessionSource::Register, T0))
        .await
        .expect("state tables work after init");
    assert_eq!(s.version, 1);
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

/// Two accounts (juid 1 and 2) on a freshly initialised store.
async fn with_accounts(env: &Env) -> Store {
    let store = Store::init(&env.url).await.expect("init");
    for u in ["alice", "bob"] {
        store
            .add_account(&aor(&format!("sip:{u}@example.com")), u, None)
            .await
            .expect("add");
    }
    store
}

async fn v1_database_upgrades(env: &Env) {
    // What a gateway of schema version 1 left: SER's tables plus ours.
    env.raw.load_ser_fixture().await;
    env.raw
        .exec(
            "CREATE TABLE sipjab_schema(version INT NOT NULL);
             INSERT INTO sipjab_schema (version) VALUES (1);
             INSERT INTO jusers (jab_id, sip_id) VALUES ('alice', 'sip:alice@example.com');
             INSERT INTO jusers (jab_id, sip_id) VALUES ('bob', 'sip:bob@example.com');",
        )
        .await;
    let ddl = env.raw.ser_ddl().await;

    // It opens, accounts work, state methods say what to do.
    let old = Store::open(&env.url).await.expect("open v1");
    assert_eq!(old.schema_version().await.expect("version"), Some(1));
    assert!(!old.has_state_tables().await.expect("state tables?"));
    let err = old.roster(1).await.expect_err("no state tables yet");
    assert!(
        matches!(
            err,
            Error::SchemaTooOld {
                found: Some(1),
                needed: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("sipjab db init"), "{err}");
    assert!(
        old.remove_account(&aor("sip:bob@example.com"))
            .await
            .expect("remove on v1 skips the state tables")
    );

    let store = Store::init(&env.url).await.expect("init from v1");
    assert_eq!(store.schema_version().await.expect("version"), Some(3));
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await, 1);
    assert_eq!(env.raw.ser_ddl().await, ddl, "init altered SER's tables");
    assert_eq!(store.accounts().await.expect("list").len(), 1);
    // A handle opened before the upgrade sees the new tables.
    assert!(old.has_state_tables().await.expect("state tables?"));
    old.set_session(&Session::new(1, SessionSource::Command, T0))
        .await
        .expect("old handle writes after init");

    // Idempotent: rows and version stay.
    Store::init(&env.url).await.expect("init again");
    assert_eq!(store.schema_version().await.expect("version"), Some(3));
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await, 1);
    assert_eq!(store.online_sessions().await.expect("sessions").len(), 1);
}

async fn v2_database_upgrades(env: &Env) {
    // What a gateway of schema version 2 left: no contact presence table.
    let store = with_accounts(env).await;
    store
        .set_session(&Session::new(1, SessionSource::Register, T0))
        .await
        .expect("session");
    env.raw
        .exec(
            "DROP TABLE sipjab_contact_presence;
             UPDATE sipjab_schema SET version = 2;",
        )
        .await;
    let old = Store::open(&env.url).await.expect("open v2");
    assert_eq!(old.schema_version().await.expect("version"), Some(2));
    assert!(!old.has_state_tables().await.expect("state tables?"));
    let err = old
        .contact_presence(1, "c@x.org")
        .await
        .expect_err("too old");
    assert!(
        matches!(
            err,
            Error::SchemaTooOld {
                found: Some(2),
                needed: 3
            }
        ),
        "{err:?}"
    );
    let store = Store::init(&env.url).await.expect("init from v2");
    assert_eq!(store.schema_version().await.expect("version"), Some(3));
    assert_eq!(env.raw.count("SELECT COUNT(*) FROM sipjab_schema").await, 1);
    assert_eq!(store.online_sessions().await.expect("kept").len(), 1);
    assert!(old.has_state_tables().await.expect("state tables?"));
    assert!(
        old.contact_presence(1, "c@x.org")
            .await
            .expect("new table")
            .is_empty()
    );
}

async fn go_online_keeps_published_state(env: &Env) {
    let store = with_accounts(env).await;
    for (juid, contact, sub) in [
        (1, "b@x.org", Subscription::Both),
        (1, "a@x.org", Subscription::From),
        (1, "c@x.org", Subscription::To),
        (2, "d@x.org", Subscription::From),
    ] {
        store
            .set_roster_item(&RosterItem::new(juid, contact, sub, T0))
            .await
            .expect("roster");
    }
    let mut s = Session::new(1, SessionSource::Register, T0);
    s.expires_at = Some(T0 + 3600);
    let (first, subscribers) = store.go_online(&s).await.expect("online");
    assert_eq!((first.version, first.expires_at), (1, Some(T0 + 3600)));
    let contacts: Vec<&str> = subscribers.iter().map(|r| r.contact.as_str()).collect();
    assert_eq!(contacts, ["a@x.org", "b@x.org"]);

    // A PUBLISH set a status; a REGISTER refresh keeps it, and moves the rest.
    let mut published = first.clone();
    published.show = Some(Show::Dnd);
    published.status = Some("busy".to_owned());
    published.priority = 3;
    published.source = SessionSource::Publish;
    store.set_session(&published).await.expect("publish");
    let mut again = Session::new(1, SessionSource::Register, T0 + 10);
    again.expires_at = Some(T0 + 7200);
    let (second, _) = store.go_online(&again).await.expect("refresh");
    assert_eq!(second.show, Some(Show::Dnd));
    assert_eq!(second.status.as_deref(), Some("busy"));
    assert_eq!(second.priority, 3);
    assert_eq!(second.source, SessionSource::Register);
    assert_eq!(second.expires_at, Some(T0 + 7200));
    assert_eq!(second.last_activity, T0 + 10);
    assert_eq!(second.version, 3);
    // last_activity never moves back.
    let (third, _) = store
        .go_online(&Session::new(1, SessionSource::Command, T0))
        .await
        .expect("late");
    assert_eq!(third.last_activity, T0 + 10);
}

async fn concurrent_go_online(env: &Env) {
    // Many REGISTERs at once: on SQLite they share commits; each gets its own answer.
    let store = with_accounts(env).await;
    store
        .set_roster_item(&RosterItem::new(7, "w@x.org", Subscription::From, T0))
        .await
        .expect("roster");
    let mut tasks = tokio::task::JoinSet::new();
    for juid in 1..=200 {
        let store = store.clone();
        tasks.spawn(async move {
            let (s, subs) = store
                .go_online(&Session::new(juid, SessionSource::Register, T0 + juid))
                .await
                .expect("online");
            assert_eq!((s.juid, s.last_activity, s.version), (juid, T0 + juid, 1));
            assert_eq!(subs.len(), usize::from(juid == 7), "juid {juid}");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    assert_eq!(store.online_sessions().await.expect("sessions").len(), 200);
}

async fn contact_presence(env: &Env) {
    let store = with_accounts(env).await;
    let row = |resource: &str, available: bool| {
        ContactResource::new(1, "c@x.org", resource, available, "<presence/>", 0, T0)
    };
    assert!(
        store
            .contact_presence(1, "c@x.org")
            .await
            .expect("none")
            .is_empty()
    );
    store
        .set_contact_presence(1, "c@x.org", 1, &[row("phone", true), row("pc", true)])
        .await
        .expect("set");
    let got = store.contact_presence(1, "c@x.org").await.expect("get");
    let names: Vec<(&str, i64, bool)> = got
        .iter()
        .map(|r| (r.resource.as_str(), r.seq, r.available))
        .collect();
    assert_eq!(names, [("phone", 1, true), ("pc", 2, true)]);
    assert_eq!(got[0].stanza, "<presence/>");

    // The next state replaces the whole contact: pc left, phone updated.
    store
        .set_contact_presence(1, "c@x.org", 3, &[row("phone", true), row("pc", false)])
        .await
        .expect("replace");
    let got = store.contact_presence(1, "c@x.org").await.expect("get");
    let names: Vec<(&str, i64, bool, i64)> = got
        .iter()
        .map(|r| (r.resource.as_str(), r.seq, r.available, r.version))
        .collect();
    assert_eq!(names, [("phone", 3, true, 2), ("pc", 4, false, 2)]);
    // Other users and contacts are apart.
    store
        .set_contact_presence(2, "c@x.org", 1, &[row("tablet", true)])
        .await
        .expect("other user");
    store
        .set_contact_presence(1, "d@x.org", 1, &[row("", true)])
        .await
        .expect("other contact");
    store
        .set_contact_presence(1, "c@x.org", i64::MAX, &[])
        .await
        .expect("clear");
    assert!(
        store
            .contact_presence(1, "c@x.org")
            .await
            .expect("gone")
            .is_empty()
    );
    let other = store.contact_presence(2, "c@x.org").await.expect("kept");
    assert_eq!((other[0].juid, other[0].resource.as_str()), (2, "tablet"));
    assert_eq!(
        store
            .contact_presence(1, "d@x.org")
            .await
            .expect("kept")
            .len(),
        1
    );
    // Checked before writing: the longest resource fits, a longer one does not.
    let long = "ü".repeat(sipjab_db::RESOURCE_MAX);
    store
        .set_contact_presence(1, "e@x.org", 1, &[row(&long, true)])
        .await
        .expect("longest resource");
    assert_eq!(
        store.contact_presence(1, "e@x.org").await.expect("get")[0].resource,
        long
    );
    let err = store
        .set_contact_presence(1, "e@x.org", 2, &[row(&format!("{long}x"), true)])
        .await;
    assert!(matches!(err, Err(Error::TooLong { .. })), "{err:?}");
}

async fn sessions(env: &Env) {
    let store = with_accounts(env).await;
    assert_eq!(store.session(1).await.expect("get"), None);

    let mut s = Session::new(1, SessionSource::Register, T0);
    s.show = Some(Show::Away);
    s.status = Some("in a meeting ☎".to_owned());
    s.priority = -5;
    s.expires_at = Some(T0 + 3600);
    let stored = store.set_session(&s).await.expect("set");
    assert_eq!(stored.version, 1);
    let mut unversioned = stored.clone();
    unversioned.version = 0;
    assert_eq!(unversioned, s);
    assert_eq!(store.session(1).await.expect("get"), Some(stored.clone()));

    // Replace: last writer wins, version rises.
    let mut s2 = Session::new(1, SessionSource::Publish, T0 + 10);
    s2.show = Some(Show::Dnd);
    let stored2 = store.set_session(&s2).await.expect("replace");
    assert_eq!(stored2.version, 2);
    assert_eq!(stored2.show, Some(Show::Dnd));
    assert_eq!(stored2.expires_at, None);

    // Compare-and-set: the stale copy loses, the fresh one wins.
    let mut stale = stored.clone();
    stale.show = None;
    assert_eq!(store.update_session(&stale).await.expect("cas"), None);
    let mut fresh = stored2.clone();
    fresh.show = Some(Show::Chat);
    fresh.priority = 10;
    let updated = store
        .update_session(&fresh)
        .await
        .expect("cas")
        .expect("fresh copy wins");
    assert_eq!(updated.version, 3);
    assert_eq!(updated.show, Some(Show::Chat));

    // touch: forward only, version untouched; an old copy cannot move it back.
    assert!(store.touch_session(1, T0 + 100).await.expect("touch"));
    assert!(store.touch_session(1, T0 + 50).await.expect("touch back"));
    assert!(store.touch_session(1, T0 + 100).await.expect("same again"));
    assert!(!store.touch_session(2, T0 + 100).await.expect("offline"));
    let now = store.session(1).await.expect("get").expect("online");
    assert_eq!((now.last_activity, now.version), (T0 + 100, 3));
    let mut old_copy = updated.clone();
    old_copy.status = Some("back".to_owned());
    let after = store
        .update_session(&old_copy)
        .await
        .expect("cas")
        .expect("version still matches");
    assert_eq!(after.last_activity, T0 + 100, "last_activity kept");
    assert_eq!(after.status.as_deref(), Some("back"));

    // Bob online with a registration; expiry by time and by idleness.
    let mut b = Session::new(2, SessionSource::Register, T0);
    b.expires_at = Some(T0 + 60);
    store.set_session(&b).await.expect("bob");
    assert_eq!(
        store
            .online_sessions()
            .await
            .expect("all")
            .iter()
            .map(|s| s.juid)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        store
            .expire_sessions(T0 + 59, Some(T0), 10)
            .await
            .expect("nothing due")
            .is_empty()
    );
    let gone = store
        .expire_sessions(T0 + 60, None, 10)
        .await
        .expect("expire");
    assert_eq!(gone.iter().map(|s| s.juid).collect::<Vec<_>>(), vec![2]);
    assert_eq!(store.session(2).await.expect("get"), None);
    let idle = store
        .expire_sessions(T0 + 60, Some(T0 + 101), 10)
        .await
        .expect("idle");
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].status.as_deref(), Some("back"));
    assert!(store.online_sessions().await.expect("all").is_empty());

    // remove.
    store.set_session(&s).await.expect("again");
    assert!(store.remove_session(1).await.expect("remove"));
    assert!(!store.remove_session(1).await.expect("gone"));
    assert_eq!(
        store.update_session(&fresh).await.expect("cas on gone row"),
        None
    );

    // Bulk.
    let many: Vec<Session> = (1..=300)
        .map(|j| Session::new(j, SessionSource::Command, T0))
        .collect();
    store.set_sessions(&many).await.expect("bulk");
    store
        .set_sessions(&many)
        .await
        .expect("bulk again replaces");
    store.set_sessions(&[]).await.expect("empty bulk");
    let all = store.online_sessions().await.expect("all");
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|s| s.version == 2), "{:?}", all[0]);
    // Bounded sweeps.
    let first = store
        .expire_sessions(T0, Some(T0 + 1), 120)
        .await
        .expect("sweep");
    assert_eq!(first.len(), 120);
    let rest = store
        .expire_sessions(T0, Some(T0 + 1), 1000)
        .await
        .expect("sweep");
    assert_eq!(rest.len(), 180);
    assert!(
        store
            .expire_sessions(T0, Some(T0 + 1), 0)
            .await
            .expect("limit 0")
            .is_empty()
    );
}

async fn roster_and_fan_out(env: &Env) {
    let store = with_accounts(env).await;
    let items = [
        ("carol@jabber.org", Subscription::Both),
        ("dave@jabber.org", Subscription::To),
        ("erin@jabber.org", Subscription::From),
        ("frank@jabber.org", Subscription::None),
        ("Carol@jabber.org", Subscription::From),
    ];
    for (c, sub) in items {
        store
            .set_roster_item(&RosterItem::new(1, c, sub, T0))
            .await
            .expect("set");
    }
    store
        .set_roster_item(&RosterItem::new(
            2,
            "carol@jabber.org",
            Subscription::Both,
            T0,
        ))
        .await
        .expect("bob's");

    let fan_out: Vec<String> = store
        .subscribers(1)
        .await
        .expect("subscribers")
        .into_iter()
        .map(|i| i.contact)
        .collect();
    assert_eq!(
        fan_out,
        vec!["Carol@jabber.org", "carol@jabber.org", "erin@jabber.org"],
        "from and both only; JIDs compared exactly"
    );
    assert_eq!(store.roster(1).await.expect("roster").len(), 5);
    assert_eq!(store.roster(3).await.expect("roster"), vec![]);

    // A subscription transition is read-modify-write: compare-and-set.
    let mut d = store
        .roster_item(1, "dave@jabber.org")
        .await
        .expect("get")
        .expect("dave");
    assert_eq!((d.subscription, d.version), (Subscription::To, 1));
    d.pending_in = true;
    d.updated_at = T0 + 1;
    let d2 = store
        .update_roster_item(&d)
        .await
        .expect("cas")
        .expect("wins");
    assert_eq!((d2.pending_in, d2.version), (true, 2));
    d.subscription = Subscription::Both;
    assert_eq!(
        store.update_roster_item(&d).await.expect("cas"),
        None,
        "stale"
    );
    let mut d3 = d2.clone();
    d3.subscription = Subscription::Both;
    d3.pending_in = false;
    d3.pending_out = true;
    let d3 = store
        .update_roster_item(&d3)
        .await
        .expect("cas")
        .expect("wins");
    assert!(d3.pending_out);
    assert_eq!(store.subscribers(1).await.expect("fan-out").len(), 4);

    assert!(
        store
            .remove_roster_item(1, "dave@jabber.org")
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_roster_item(1, "dave@jabber.org")
            .await
            .expect("gone")
    );
    assert_eq!(
        store.roster_item(1, "dave@jabber.org").await.expect("get"),
        None
    );

    // Bulk: the benchmark's 100,000 users with a contact each, in small.
    let many: Vec<RosterItem> = (10..310)
        .map(|j| RosterItem::new(j, "watcher@jabber.org", Subscription::From, T0))
        .collect();
    store.set_roster_items(&many).await.expect("bulk");
    assert_eq!(store.subscribers(42).await.expect("fan-out").len(), 1);
    assert_eq!(
        env.raw.count("SELECT COUNT(*) FROM sipjab_roster").await,
        4 + 1 + 300
    );
}

async fn sip_subscriptions(env: &Env) {
    let store = with_accounts(env).await;
    let mut sub = SipSubscription::new(
        1,
        Direction::XmppWatchesSip,
        "carol@jabber.org",
        "a84b4c76e66710@gw",
        "1928301774",
        "presence",
        T0 + 3600,
        T0,
    );
    sub.local_cseq = 1;
    let s1 = store.upsert_sip_subscription(&sub).await.expect("insert");
    assert!(s1.id > 0);
    assert_eq!((s1.version, s1.remote_tag.as_str()), (1, ""));
    assert_eq!(
        store
            .sip_subscription_by_dialog("a84b4c76e66710@gw", "1928301774", "")
            .await
            .expect("by dialog"),
        Some(s1.clone())
    );
    // Call-IDs and tags are case-sensitive.
    assert_eq!(
        store
            .sip_subscription_by_dialog("A84B4C76E66710@gw", "1928301774", "")
            .await
            .expect("by dialog"),
        None
    );
    // The same dialog again: replaced, same id.
    let again = store.upsert_sip_subscription(&sub).await.expect("replace");
    assert_eq!((again.id, again.version), (s1.id, 2));

    // The 200 OK brings the remote tag, target and route set.
    let mut est = again.clone();
    est.remote_tag = "a6c85cf".to_owned();
    est.remote_target = "sip:alice@192.0.2.4:5060;transport=tcp".to_owned();
    est.route_set = "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>".to_owned();
    est.state = SubscriptionState::Active;
    let est = store
        .update_sip_subscription(&est)
        .await
        .expect("cas")
        .expect("wins");
    assert_eq!(est.version, 3);
    assert_eq!(
        store
            .sip_subscription_by_dialog("a84b4c76e66710@gw", "1928301774", "a6c85cf")
            .await
            .expect("by dialog"),
        Some(est.clone())
    );
    assert_eq!(
        store.sip_subscription(est.id).await.expect("by id"),
        Some(est.clone())
    );

    // CSeqs: each caller its own; the peer's only forward; never back.
    assert_eq!(store.next_local_cseq(est.id).await.expect("cseq"), Some(2));
    assert_eq!(store.next_local_cseq(est.id).await.expect("cseq"), Some(3));
    assert_eq!(
        store.next_local_cseq(est.id + 1000).await.expect("gone"),
        None
    );
    assert!(store.advance_remote_cseq(est.id, 7).await.expect("first"));
    assert!(
        !store
            .advance_remote_cseq(est.id, 7)
            .await
            .expect("retransmission")
    );
    assert!(!store.advance_remote_cseq(est.id, 5).await.expect("old"));
    assert!(store.advance_remote_cseq(est.id, 8).await.expect("next"));
    let now = store
        .sip_subscription(est.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!((now.local_cseq, now.remote_cseq, now.version), (3, 8, 3));
    let mut refresh = est.clone(); // holds cseqs 1 and 0
    refresh.expires_at = T0 + 7200;
    let refreshed = store
        .update_sip_subscription(&refresh)
        .await
        .expect("cas")
        .expect("cseq changes leave the version");
    assert_eq!(
        (
            refreshed.local_cseq,
            refreshed.remote_cseq,
            refreshed.expires_at
        ),
        (3, 8, T0 + 7200)
    );

    // The other direction, and a fork of the first.
    let mut watch = SipSubscription::new(
        1,
        Direction::SipWatchesXmpp,
        "carol@jabber.org",
        "777@phone",
        "srv1",
        "presence",
        T0 + 600,
        T0,
    );
    watch.remote_tag = "phone-tag".to_owned();
    let watch = store.upsert_sip_subscription(&watch).await.expect("insert");
    let mut fork = sub.clone();
    fork.remote_tag = "forked".to_owned();
    fork.expires_at = T0 + 60;
    let fork = store.upsert_sip_subscription(&fork).await.expect("fork");
    assert_ne!(fork.id, est.id);
    let ids = |v: Vec<SipSubscription>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .sip_subscriptions_with(1, "carol@jabber.org", Direction::XmppWatchesSip)
            .await
            .expect("with")),
        vec![est.id, fork.id]
    );
    assert_eq!(
        ids(store
            .sip_subscriptions_with(1, "carol@jabber.org", Direction::SipWatchesXmpp)
            .await
            .expect("with")),
        vec![watch.id]
    );
    assert_eq!(store.sip_subscriptions(1).await.expect("all").len(), 3);
    assert_eq!(
        ids(store
            .sip_subscriptions_expiring(T0 + 600, 10)
            .await
            .expect("due")),
        vec![fork.id, watch.id],
        "soonest first"
    );
    assert_eq!(
        store
            .sip_subscriptions_expiring(T0 + 600, 1)
            .await
            .expect("due")
            .len(),
        1
    );

    let gone = store
        .expire_sip_subscriptions(T0 + 60, 10)
        .await
        .expect("expire");
    assert_eq!(ids(gone), vec![fork.id]);
    assert!(
        store
            .remove_sip_subscription(watch.id)
            .await
            .expect("remove")
    );
    assert!(!store.remove_sip_subscription(watch.id).await.expect("gone"));
    assert_eq!(
        ids(store.sip_subscriptions(1).await.expect("all")),
        vec![est.id]
    );
}

async fn publications(env: &Env) {
    let store = with_accounts(env).await;
    let pidf = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>"#;
    let p = store
        .set_publication(&Publication::new(1, "dx200xyz", pidf, T0 + 3600, T0))
        .await
        .expect("publish");
    assert_eq!(p.version, 1);
    assert_eq!(
        store.publication_by_etag("dx200xyz").await.expect("get"),
        Some(p.clone())
    );
    assert_eq!(
        store.publication_by_etag("DX200XYZ").await.expect("get"),
        None
    );

    // Refresh: new entity tag; the old one is spent.
    let r = Publication::new(1, "kwj449x", pidf, T0 + 7200, T0 + 100);
    let r1 = store
        .refresh_publication("dx200xyz", &r, T0 + 100)
        .await
        .expect("refresh")
        .expect("matched");
    assert_eq!(
        (r1.etag.as_str(), r1.version, r1.expires_at),
        ("kwj449x", 2, T0 + 7200)
    );
    assert_eq!(
        store
            .refresh_publication(
                "dx200xyz",
                &Publication::new(1, "other", pidf, T0, T0),
                T0 + 100
            )
            .await
            .expect("refresh"),
        None,
        "spent entity tag: 412"
    );
    assert_eq!(
        store.publication_by_etag("dx200xyz").await.expect("get"),
        None
    );
    // Someone else's entity tag, or an expired one, does not match either.
    let r2 = Publication::new(2, "zzz", pidf, T0 + 9000, T0 + 100);
    assert_eq!(
        store
            .refresh_publication("kwj449x", &r2, T0 + 100)
            .await
            .expect("refresh"),
        None
    );
    let r3 = Publication::new(1, "late", pidf, T0 + 9000, T0 + 7200);
    assert_eq!(
        store
            .refresh_publication("kwj449x", &r3, T0 + 7200)
            .await
            .expect("refresh"),
        None,
        "expired at now"
    );

    store
        .set_publication(&Publication::new(1, "aaa", "<presence/>", T0 + 10, T0))
        .await
        .expect("second");
    store
        .set_publication(&Publication::new(2, "bbb", "<presence/>", T0 + 10, T0))
        .await
        .expect("bob's");
    let etags = |v: Vec<Publication>| v.into_iter().map(|p| p.etag).collect::<Vec<_>>();
    assert_eq!(
        etags(store.publications(1).await.expect("alice's")),
        vec!["aaa", "kwj449x"]
    );
    let mut gone = etags(
        store
            .expire_publications(T0 + 10, 10)
            .await
            .expect("expire"),
    );
    gone.sort();
    assert_eq!(gone, vec!["aaa", "bbb"]);
    assert!(store.remove_publication("kwj449x").await.expect("remove"));
    assert!(!store.remove_publication("kwj449x").await.expect("gone"));
    assert!(store.publications(1).await.expect("none").is_empty());
}

async fn rooms(env: &Env) {
    let store = with_accounts(env).await;
    let mut r = Room::new(2, "lobby@conference.jabber.org", "bob", T0);
    r.password = Some("s3cret".to_owned());
    let r1 = store.set_room(&r).await.expect("join");
    assert_eq!((r1.state, r1.version), (RoomState::Joining, 1));
    store
        .set_room(&Room::new(1, "lobby@conference.jabber.org", "Alice ☺", T0))
        .await
        .expect("alice joins");
    store
        .set_room(&Room::new(1, "dev@conference.jabber.org", "alice", T0))
        .await
        .expect("alice joins another");

    let mut joined = r1.clone();
    joined.state = RoomState::Joined;
    joined.joined_at = Some(T0 + 1);
    let joined = store
        .update_room(&joined)
        .await
        .expect("cas")
        .expect("wins");
    assert_eq!(joined.version, 2);
    let mut stale = r1.clone();
    stale.state = RoomState::Leaving;
    assert_eq!(store.update_room(&stale).await.expect("cas"), None);
    assert_eq!(
        store
            .room(2, "lobby@conference.jabber.org")
            .await
            .expect("get"),
        Some(joined.clone())
    );

    let rooms = store.rooms(1).await.expect("rooms");
    assert_eq!(
        rooms.iter().map(|r| r.room.as_str()).collect::<Vec<_>>(),
        vec!["dev@conference.jabber.org", "lobby@conference.jabber.org"]
    );
    assert_eq!(rooms[1].nick, "Alice ☺");
    let all = store.all_rooms().await.expect("all");
    assert_eq!(
        all.iter()
            .map(|r| (r.juid, r.room.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, "dev@conference.jabber.org"),
            (1, "lobby@conference.jabber.org"),
            (2, "lobby@conference.jabber.org"),
        ]
    );
    assert_eq!(all[2].password.as_deref(), Some("s3cret"));
    assert!(
        store
            .remove_room(1, "dev@conference.jabber.org")
            .await
            .expect("leave")
    );
    assert!(
        !store
            .remove_room(1, "dev@conference.jabber.org")
            .await
            .expect("gone")
    );
    assert_eq!(store.rooms(1).await.expect("rooms").len(), 1);
}

/// Every key in `a` and `b` together, checking that none is in both.
fn disjoint_union<K: Ord + Clone + std::fmt::Debug>(a: &[K], b: &[K]) -> BTreeSet<K> {
    let mut all = BTreeSet::new();
    for k in a.iter().chain(b) {
        assert!(all.insert(k.clone()), "{k:?} expired twice");
    }
    all
}

/// Sweeps in small batches until nothing is left; the keys this caller got.
async fn drain<K, F, Fut>(mut sweep: F) -> Vec<K>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<K>>,
{
    let mut out = Vec::new();
    loop {
        let got = sweep().await;
        if got.is_empty() {
            return out;
        }
        out.extend(got);
        tokio::task::yield_now().await;
    }
}

async fn concurrent_expiry_returns_each_row_once(env: &Env) {
    Store::init(&env.url).await.expect("init");
    // Two gateways on one database.
    let a = Store::open(&env.url).await.expect("open a");
    let b = Store::open(&env.url).await.expect("open b");

    // Even accounts' registrations end, odd ones have been idle.
    let sessions: Vec<Session> = (1..=300)
        .map(|j| {
            let mut s = Session::new(j, SessionSource::Register, T0 + 1000);
            if j % 2 == 0 {
                s.expires_at = Some(T0 + j % 10);
            } else {
                s.last_activity = T0 + j % 10;
            }
            s
        })
        .collect();
    a.set_sessions(&sessions).await.expect("bulk");
    let sweep = |s: &Store| {
        let s = s.clone();
        move || {
            let s = s.clone();
            async move {
                s.expire_sessions(T0 + 100, Some(T0 + 100), 25)
                    .await
                    .expect("expire")
                    .into_iter()
                    .map(|s| s.juid)
                    .collect::<Vec<_>>()
            }
        }
    };
    let (x, y) = tokio::join!(drain(sweep(&a)), drain(sweep(&b)));
    println!("sessions: {} + {}", x.len(), y.len());
    assert_eq!(disjoint_union(&x, &y), (1..=300).collect());

    for i in 0..100 {
        let mut sub = SipSubscription::new(
            1 + i % 3,
            Direction::SipWatchesXmpp,
            "c@x.org",
            &format!("call-{i}"),
            "tag",
            "presence",
            T0 + i % 10,
            T0,
        );
        sub.remote_tag = format!("r{i}");
        b.upsert_sip_subscription(&sub).await.expect("sub");
        a.set_publication(&Publication::new(
            1,
            &format!("e{i}"),
            "<p/>",
            T0 + i % 10,
            T0,
        ))
        .await
        .expect("pub");
    }
    let ids: BTreeSet<i64> = a
        .sip_subscriptions_expiring(T0 + 100, 1000)
        .await
        .expect("all")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids.len(), 100);
    let sweep = |s: &Store| {
        let s = s.clone();
        move || {
            let s = s.clone();
            async move {
                s.expire_sip_subscriptions(T0 + 100, 20)
                    .await
                    .expect("expire")
                    .into_iter()
                    .map(|s| s.id)
                    .collect::<Vec<_>>()
            }
        }
    };
    let (x, y) = tokio::join!(drain(sweep(&a)), drain(sweep(&b)));
    println!("sip subscriptions: {} + {}", x.len(), y.len());
    assert_eq!(disjoint_union(&x, &y), ids);

    let sweep = |s: &Store| {
        let s = s.clone();
        move || {
            let s = s.clone();
            async move {
                s.expire_publications(T0 + 100, 20)
                    .await
                    .expect("expire")
                    .into_iter()
                    .map(|p| p.etag)
                    .collect::<Vec<_>>()
            }
        }
    };
    let (x, y) = tokio::join!(drain(sweep(&a)), drain(sweep(&b)));
    println!("publications: {} + {}", x.len(), y.len());
    assert_eq!(disjoint_union(&x, &y).len(), 100);
}

async fn concurrent_writers(env: &Env) {
    with_accounts(env).await;
    let a = Store::open(&env.url).await.expect("open a");
    let b = Store::open(&env.url).await.expect("open b");

    // Both read version 1 and write: exactly one wins.
    let s = a
        .set_session(&Session::new(1, SessionSource::Register, T0))
        .await
        .expect("set");
    let (mut sa, mut sb) = (s.clone(), s.clone());
    sa.show = Some(Show::Away);
    sb.show = Some(Show::Xa);
    let (ra, rb) = tokio::join!(a.update_session(&sa), b.update_session(&sb));
    let (ra, rb) = (ra.expect("cas a"), rb.expect("cas b"));
    assert!(ra.is_some() != rb.is_some(), "{ra:?} {rb:?}");
    let winner = ra.or(rb).expect("one won");
    assert_eq!(a.session(1).await.expect("get"), Some(winner));

    let item = a
        .set_roster_item(&RosterItem::new(1, "c@x.org", Subscription::None, T0))
        .await
        .expect("set");
    let (mut ia, mut ib) = (item.clone(), item.clone());
    ia.subscription = Subscription::From;
    ib.pending_out = true;
    let (ra, rb) = tokio::join!(a.update_roster_item(&ia), b.update_roster_item(&ib));
    assert!(
        ra.expect("cas a").is_some() != rb.expect("cas b").is_some(),
        "exactly one transition"
    );

    // Requests sent from both gateways in one dialog get distinct CSeqs.
    let sub = a
        .upsert_sip_subscription(&SipSubscription::new(
            1,
            Direction::SipWatchesXmpp,
            "c@x.org",
            "cid",
            "lt",
            "presence",
            T0 + 60,
            T0,
        ))
        .await
        .expect("sub");
    let take = |s: &Store| {
        let s = s.clone();
        async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                got.push(
                    s.next_local_cseq(sub.id)
                        .await
                        .expect("cseq")
                        .expect("there"),
                );
            }
            got
        }
    };
    let (x, y) = tokio::join!(take(&a), take(&b));
    assert_eq!(disjoint_union(&x, &y), (1..=40).collect());

    // Two gateways refreshing one publication with the same SIP-If-Match.
    a.set_publication(&Publication::new(1, "old", "<p/>", T0 + 60, T0))
        .await
        .expect("publish");
    let (pa, pb) = (
        Publication::new(1, "new-a", "<a/>", T0 + 120, T0 + 1),
        Publication::new(1, "new-b", "<b/>", T0 + 120, T0 + 1),
    );
    let (ra, rb) = tokio::join!(
        a.refresh_publication("old", &pa, T0 + 1),
        b.refresh_publication("old", &pb, T0 + 1)
    );
    let (ra, rb) = (ra.expect("refresh a"), rb.expect("refresh b"));
    assert!(ra.is_some() != rb.is_some(), "{ra:?} {rb:?}");
    assert_eq!(a.publications(1).await.expect("pubs").len(), 1);
}

async fn remove_account_removes_state(env: &Env) {
    let store = with_accounts(env).await;
    for juid in [1, 2] {
        store
            .set_session(&Session::new(juid, SessionSource::Register, T0))
            .await
            .expect("session");
        store
            .set_roster_item(&RosterItem::new(juid, "c@x.org", Subscription::Both, T0))
            .await
            .expect("roster");
        store
            .upsert_sip_subscription(&SipSubscription::new(
                juid,
                Direction::XmppWatchesSip,
                "c@x.org",
                &format!("call{juid}"),
                "t",
                "presence",
                T0 + 60,
                T0,
            ))
            .await
            .expect("sub");
        store
            .set_publication(&Publication::new(
                juid,
                &format!("e{juid}"),
                "<p/>",
                T0 + 60,
                T0,
            ))
            .await
            .expect("pub");
        store
            .set_room(&Room::new(juid, "r@muc.x.org", "n", T0))
            .await
            .expect("room");
        let r = ContactResource::new(juid, "c@x.org", "phone", true, "<presence/>", 0, T0);
        store
            .set_contact_presence(juid, "c@x.org", 1, &[r])
            .await
            .expect("contact presence");
    }
    assert!(
        store
            .remove_account(&aor("sip:alice@example.com"))
            .await
            .expect("remove")
    );
    for t in [
        "sipjab_sessions",
        "sipjab_roster",
        "sipjab_sip_subscriptions",
        "sipjab_publications",
        "sipjab_rooms",
        "sipjab_contact_presence",
    ] {
        assert_eq!(
            env.raw
                .count(&format!("SELECT COUNT(*) FROM {t} WHERE juid = 1"))
                .await,
            0,
            "{t}"
        );
        assert_eq!(
            env.raw
                .count(&format!("SELECT COUNT(*) FROM {t} WHERE juid = 2"))
                .await,
            1,
            "{t} keeps bob's"
        );
    }
}

async fn state_input_checked(env: &Env) {
    let store = with_accounts(env).await;
    let long_jid = format!("{}@x.org", "c".repeat(510));
    let err = store
        .set_roster_item(&RosterItem::new(1, &long_jid, Subscription::Both, T0))
        .await;
    assert!(
        matches!(
            err,
            Err(Error::TooLong {
                field: "contact",
                max: 512
            })
        ),
        "{err:?}"
    );
    let err = store
        .set_roster_item(&RosterItem::new(1, "", Subscription::Both, T0))
        .await;
    assert!(
        matches!(err, Err(Error::Empty { field: "contact" })),
        "{err:?}"
    );
    let err = store
        .upsert_sip_subscription(&SipSubscription::new(
            1,
            Direction::SipWatchesXmpp,
            "c@x.org",
            "",
            "t",
            "presence",
            T0,
            T0,
        ))
        .await;
    assert!(
        matches!(err, Err(Error::Empty { field: "call_id" })),
        "{err:?}"
    );
    let err = store
        .set_room(&Room::new(1, "r@muc.x.org", &"n".repeat(1024), T0))
        .await;
    assert!(
        matches!(err, Err(Error::TooLong { field: "nick", .. })),
        "{err:?}"
    );
    let err = store
        .set_publication(&Publication::new(1, "", "<p/>", T0, T0))
        .await;
    assert!(
        matches!(err, Err(Error::Empty { field: "etag" })),
        "{err:?}"
    );
    for t in [
        "sipjab_roster",
        "sipjab_sip_subscriptions",
        "sipjab_rooms",
        "sipjab_publications",
    ] {
        assert_eq!(
            env.raw.count(&format!("SELECT COUNT(*) FROM {t}")).await,
            0,
            "{t}"
        );
    }
    // The longest values that fit round-trip, multi-byte ones included.
    let jid = format!("{}@x.org", "ü".repeat(506));
    assert_eq!(jid.chars().count(), 512);
    let item = store
        .set_roster_item(&RosterItem::new(1, &jid, Subscription::From, T0))
        .await
        .expect("fits");
    assert_eq!(store.roster_item(1, &jid).await.expect("get"), Some(item));
    let mut s = Session::new(1, SessionSource::Command, T0);
    s.status = Some("☃".repeat(16_383));
    s.priority = i8::MIN;
    let stored = store.set_session(&s).await.expect("long status fits");
    assert_eq!(store.session(1).await.expect("get"), Some(stored));

    // A hand-edited row is an error, not a panic.
    env.raw
        .exec("UPDATE sipjab_sessions SET show_state = 'busy' WHERE juid = 1")
        .await;
    let err = store.session(1).await;
    assert!(
        matches!(
            err,
            Err(Error::BadRow {
                table: "sipjab_sessions",
                column: "show_state",
                ..
            })
        ),
        "{err:?}"
    );
}

/// MySQL only: the state tables' hot queries run on their indexes (the
/// benchmark has 100,000 online users). The statements mirror those the
/// store builds (`src/state.rs`, `src/mysql.rs`); SQLite's plans are checked
/// by a unit test in `src/sqlite.rs`.
#[tokio::test]
async fn mysql_state_queries_use_indexes() {
    let Some(env) = Env::mysql().await else {
        return;
    };
    let store = Store::init(&env.url).await.expect("init");
    let sessions: Vec<Session> = (1..=300)
        .map(|j| {
            let mut s = Session::new(j, SessionSource::Register, T0 + j);
            s.expires_at = Some(T0 + j);
            s
        })
        .collect();
    store.set_sessions(&sessions).await.expect("sessions");
    let items: Vec<RosterItem> = (1..=300)
        .flat_map(|j| {
            [
                RosterItem::new(j, "a@x.org", Subscription::From, T0),
                RosterItem::new(j, "b@x.org", Subscription::To, T0),
            ]
        })
        .collect();
    store.set_roster_items(&items).await.expect("roster");
    let subs: Vec<String> = (1..=300)
        .map(|j| {
            format!(
                "({j}, 'sip_watches_xmpp', 'c{j}@x.org', 'call{j}', 'lt', 'rt', '', '', 1, 1,                  'presence', {}, 'active', {T0}, 1)",
                T0 + j
            )
        })
        .collect();
    let pubs: Vec<String> = (1..=300)
        .map(|j| format!("('e{j}', {j}, {}, '<p/>', {T0}, 1)", T0 + j))
        .collect();
    env.raw
        .exec(&format!(
            "INSERT INTO sipjab_sip_subscriptions (juid, direction, contact, call_id, local_tag,
               remote_tag, remote_target, route_set, local_cseq, remote_cseq, event, expires_at,
               state, updated_at, version) VALUES {};
             INSERT INTO sipjab_publications (etag, juid, expires_at, body, updated_at, version)
               VALUES {};
             ANALYZE TABLE sipjab_sessions, sipjab_roster, sipjab_sip_subscriptions,
               sipjab_publications;",
            subs.join(", "),
            pubs.join(", ")
        ))
        .await;
    let Raw::Mysql(url) = &env.raw else {
        unreachable!("Env::mysql gives Raw::Mysql")
    };
    let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
    let t5 = T0 + 5;
    for (sql, key) in [
        (
            "EXPLAIN SELECT juid, contact FROM sipjab_roster
             WHERE juid = 17 AND subscription IN ('from', 'both') ORDER BY contact"
                .to_owned(),
            "PRIMARY",
        ),
        (
            format!(
                "EXPLAIN SELECT juid FROM sipjab_sessions
                 WHERE expires_at <= {t5} ORDER BY expires_at LIMIT 25 FOR UPDATE"
            ),
            "sipjab_sessions_expires",
        ),
        (
            format!(
                "EXPLAIN SELECT juid FROM sipjab_sessions
                 WHERE last_activity < {t5} ORDER BY last_activity LIMIT 25 FOR UPDATE"
            ),
            "sipjab_sessions_activity",
        ),
        (
            "EXPLAIN SELECT id FROM sipjab_sip_subscriptions
             WHERE call_id = 'call17' AND local_tag = 'lt' AND remote_tag = 'rt'"
                .to_owned(),
            "sipjab_sip_subscriptions_dialog",
        ),
        (
            "EXPLAIN SELECT id FROM sipjab_sip_subscriptions
             WHERE juid = 17 AND contact = 'c17@x.org' AND direction = 'sip_watches_xmpp'
             ORDER BY id"
                .to_owned(),
            "sipjab_sip_subscriptions_owner",
        ),
        (
            format!(
                "EXPLAIN SELECT id FROM sipjab_sip_subscriptions
                 WHERE expires_at <= {t5} ORDER BY expires_at LIMIT 20 FOR UPDATE"
            ),
            "sipjab_sip_subscriptions_expires",
        ),
        (
            "EXPLAIN SELECT etag FROM sipjab_publications WHERE juid = 17 ORDER BY etag".to_owned(),
            "sipjab_publications_juid",
        ),
        (
            format!(
                "EXPLAIN SELECT etag FROM sipjab_publications
                 WHERE expires_at <= {t5} ORDER BY expires_at LIMIT 20 FOR UPDATE"
            ),
            "sipjab_publications_expires",
        ),
        (
            "EXPLAIN DELETE FROM sipjab_sip_subscriptions WHERE juid = 17".to_owned(),
            "sipjab_sip_subscriptions_owner",
        ),
    ] {
        let row: mysql_async::Row = conn
            .query_first(&sql)
            .await
            .expect("explain")
            .expect("a plan row");
        let used: Option<String> = row.get("key").expect("key column");
        assert_eq!(used.as_deref(), Some(key), "{sql}");
    }
    // deadlines(): each MIN is read from an index end, no table visited.
    let plan: Vec<mysql_async::Row> = conn
        .query(
            "EXPLAIN SELECT
               (SELECT MIN(expires_at) FROM sipjab_sessions),
               (SELECT MIN(last_activity) FROM sipjab_sessions),
               (SELECT MIN(expires_at) FROM sipjab_sip_subscriptions),
               (SELECT MIN(expires_at) FROM sipjab_publications)",
        )
        .await
        .expect("explain");
    let extras: Vec<Option<String>> = plan
        .iter()
        .map(|r| r.get("Extra").expect("Extra column"))
        .collect();
    assert_eq!(
        extras
            .iter()
            .filter(|e| e.as_deref() == Some("Select tables optimized away"))
            .count(),
        4,
        "{extras:?}"
    );
    conn.disconnect().await.expect("disconnect");
    assert_eq!(store.subscribers(17).await.expect("fan-out").len(), 1);
}

async fn deadlines(env: &Env) {
    let store = with_accounts(env).await;
    assert_eq!(
        store.deadlines().await.expect("empty"),
        Deadlines::default()
    );
    let mut s = Session::new(1, SessionSource::Register, T0 + 5);
    s.expires_at = Some(T0 + 300);
    store.set_session(&s).await.expect("session");
    store
        .set_session(&Session::new(2, SessionSource::Command, T0 + 9))
        .await
        .expect("no expiry");
    store
        .upsert_sip_subscription(&SipSubscription::new(
            1,
            Direction::SipWatchesXmpp,
            "c@x.org",
            "cid",
            "t",
            "presence",
            T0 + 60,
            T0,
        ))
        .await
        .expect("sub");
    let d = store.deadlines().await.expect("deadlines");
    assert_eq!(d.session_expires, Some(T0 + 300));
    assert_eq!(d.oldest_activity, Some(T0 + 5));
    assert_eq!(d.sip_subscription_expires, Some(T0 + 60));
    assert_eq!(d.publication_expires, None);
}
