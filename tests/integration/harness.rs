//! Running the `sipjab` binary and throw-away MariaDB databases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root, where `fixtures/` is.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture's path.
pub(crate) fn fixture(path: &str) -> PathBuf {
    root().join("fixtures").join(path)
}

/// What one run of the binary printed.
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `sipjab ARGS` in `dir` with no `SIPJAB_` variables from the caller's environment.
pub(crate) fn sipjab(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipjab"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SIPJAB_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .output()
        .expect("the sipjab binary runs")
        .into()
}

/// Runs `sipjab ARGS` and insists that it succeeds.
pub(crate) fn sipjab_ok(dir: &Path, args: &[&str]) -> String {
    let run = sipjab(dir, args);
    assert!(
        run.ok,
        "sipjab {args:?} failed:\n{}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// A MariaDB database that exists for one test, made on the server named by
/// `SIPJAB_TEST_MYSQL` (`mysql://root@127.0.0.1:3306`) with the `mariadb` client and dropped on
/// Drop.
pub(crate) struct TempMysql {
    server: Server,
    pub(crate) name: String,
}

struct Server {
    user: String,
    password: Option<String>,
    host: String,
    port: String,
}

impl TempMysql {
    /// `None`, with a note on stderr, when `SIPJAB_TEST_MYSQL` is not set.
    pub(crate) fn create(test: &str) -> Option<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let Ok(url) = std::env::var("SIPJAB_TEST_MYSQL") else {
            eprintln!("SIPJAB_TEST_MYSQL is not set: skipping the MariaDB half of {test}");
            return None;
        };
        let rest = url
            .strip_prefix("mysql://")
            .expect("SIPJAB_TEST_MYSQL is mysql://…");
        let rest = rest.trim_end_matches('/');
        let (cred, hostport) = rest
            .split_once('@')
            .expect("user@host in SIPJAB_TEST_MYSQL");
        let (user, password) = match cred.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (cred.to_owned(), None),
        };
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
        let name = format!(
            "sipjab_it_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let db = Self {
            server: Server {
                user,
                password,
                host: host.into(),
                port: port.into(),
            },
            name,
        };
        db.sql(None, &format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// The URL sipjab is given.
    pub(crate) fn url(&self) -> String {
        let s = &self.server;
        let cred = match &s.password {
            Some(p) => format!("{}:{p}", s.user),
            None => s.user.clone(),
        };
        format!("mysql://{cred}@{}:{}/{}", s.host, s.port, self.name)
    }

    /// Runs SQL in this database.
    pub(crate) fn run_sql(&self, sql: &str) {
        self.sql(Some(&self.name), sql);
    }

    fn sql(&self, db: Option<&str>, sql: &str) {
        let s = &self.server;
        let mut cmd = Command::new("mariadb");
        cmd.args(["-u", &s.user, "-h", &s.host, "-P", &s.port, "--batch"]);
        if let Some(p) = &s.password {
            cmd.arg(format!("-p{p}"));
        }
        if let Some(db) = db {
            cmd.arg(db);
        }
        let out = cmd
            .args(["-e", sql])
            .output()
            .expect("the mariadb client runs");
        assert!(
            out.status.success(),
            "mariadb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TempMysql {
    fn drop(&mut self) {
        self.sql(None, &format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}
