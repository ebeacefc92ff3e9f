//! Database URLs: the `db_url` forms of SER (`sql://`, `mysql://`) plus our
//! embedded `sqlite://`.
//!
//! The `mysql://user:pass@host:port/db` form is the one the SER jabber module
//! documents for its `db_url` parameter (default `mysql://root@127.0.0.1/sip_jab`);
//! old SER configs also wrote `sql://` for MySQL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Where the account store lives.
///
/// `Debug` and `Display` both redact the password, so a `DbUrl` can be logged.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbUrl {
    /// An SQLite file; a relative path is relative to the working directory.
    Sqlite {
        /// The file, as written in the URL.
        path: PathBuf,
    },
    /// A MySQL or MariaDB database.
    Mysql {
        /// The URL normalised to the `mysql://` scheme, password included.
        url: String,
    },
}

impl DbUrl {
    /// Parses `sqlite://rel/path.db`, `sqlite:///abs/path.db`,
    /// `mysql://user:pass@host:port/db` and SER's `sql://user:pass@host/db`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let err = |reason| Error::Url {
            url: redact(s),
            reason,
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err("missing scheme://"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(err("empty path"));
                }
                if rest.contains(['?', '#']) {
                    return Err(err("query strings are not supported in sqlite URLs"));
                }
                Ok(Self::Sqlite {
                    path: PathBuf::from(rest),
                })
            }
            "mysql" | "sql" => {
                let url = format!("mysql://{rest}");
                let opts = mysql_async::Opts::from_url(&url)
                    .map_err(|_| err("not a valid mysql://user:pass@host:port/db URL"))?;
                if opts.ip_or_hostname().is_empty() {
                    return Err(err("missing host"));
                }
                match opts.db_name() {
                    Some(db) if !db.is_empty() => Ok(Self::Mysql { url }),
                    _ => Err(err("missing database name (mysql://user@host/db)")),
                }
            }
            _ => Err(err(
                "unsupported scheme (expected sqlite://, mysql:// or sql://)",
            )),
        }
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Mysql { url } => redact(url),
        }
    }
}

/// Replaces the password of any `scheme://user:pass@host...` string by `***`.
pub(crate) fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The userinfo ends at the last '@' of the authority: a password may hold '@'.
    let Some(at) = authority.rfind('@') else {
        return s.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{host}{tail}"),
        None => s.to_owned(),
    }
}

impl FromStr for DbUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbUrl").field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql(s: &str) -> String {
        match DbUrl::parse(s) {
            Ok(DbUrl::Mysql { url }) => url,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sqlite_relative_and_absolute() {
        assert_eq!(
            DbUrl::parse("sqlite://var/sipjab.db").ok(),
            Some(DbUrl::Sqlite {
                path: PathBuf::from("var/sipjab.db")
            })
        );
        assert_eq!(
            DbUrl::parse("sqlite:///abs/path.db").ok(),
            Some(DbUrl::Sqlite {
                path: PathBuf::from("/abs/path.db")
            })
        );
        assert_eq!(
            "SQLite://x.db".parse::<DbUrl>().ok().map(|u| u.to_string()),
            Some("sqlite://x.db".to_owned())
        );
    }

    #[test]
    fn mysql_forms() {
        assert_eq!(
            mysql("mysql://user:pass@host:3307/sip_jab"),
            "mysql://user:pass@host:3307/sip_jab"
        );
        assert_eq!(
            mysql("mysql://root@127.0.0.1/sip_jab"),
            "mysql://root@127.0.0.1/sip_jab"
        );
        // SER's sql:// means MySQL.
        assert_eq!(
            mysql("sql://ser:heslo@localhost/sip_jab"),
            "mysql://ser:heslo@localhost/sip_jab"
        );
    }

    #[test]
    fn redaction() {
        let u = DbUrl::parse("mysql://user:s3cret@host:3306/sip_jab").expect("valid");
        assert_eq!(u.redacted(), "mysql://user:***@host:3306/sip_jab");
        assert_eq!(u.to_string(), "mysql://user:***@host:3306/sip_jab");
        assert!(!format!("{u:?}").contains("s3cret"));
        let no_pw = DbUrl::parse("mysql://root@host/db").expect("valid");
        assert_eq!(no_pw.redacted(), "mysql://root@host/db");
        assert_eq!(redact("mysql://u:p@ss@h/db"), "mysql://u:***@h/db");
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "postgres://u@h/db",
            "sqlite://",
            "garbage",
            "",
            "mysql://root@127.0.0.1",
            "mysql://root@127.0.0.1/",
            "mysql://root@127.0.0.1:notaport/db",
            "sqlite://x.db?mode=ro",
        ] {
            assert!(
                matches!(DbUrl::parse(bad), Err(Error::Url { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn errors_do_not_leak_passwords() {
        let err = DbUrl::parse("postgres://u:s3cret@h/db").expect_err("unsupported");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
