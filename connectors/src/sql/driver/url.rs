//! eKuiper's database `url` forms: `mysql://user:pw@host:port/db`,
//! `postgres://user:pw@host:port/db` (or `postgresql://`), and `sqlite:/path`,
//! `sqlite://path` (or `sqlite3:`).

use std::path::PathBuf;
use std::str::FromStr;

use mysql_async::{Opts, OptsBuilder};

use super::Dialect;
use crate::ConnectorError;
use crate::props::Props;

/// Go driver options eKuiper's examples carry that mean nothing here: times always come back
/// as text, so `parseTime` is dropped.
const GO_ONLY_PARAMS: &[&str] = &["parsetime"];

/// Where a `sql` connector connects.
#[derive(Clone)]
pub enum DbUrl {
    /// MySQL or MariaDB.
    Mysql(Opts),
    /// PostgreSQL (no TLS).
    Postgres(Box<tokio_postgres::Config>),
    /// An SQLite database file (created if missing).
    Sqlite(PathBuf),
}

// By hand: the driver options hold the password.
impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Mysql(o) => write!(
                f,
                "mysql://{}/{}",
                o.ip_or_hostname(),
                o.db_name().unwrap_or("")
            ),
            DbUrl::Postgres(c) => write!(
                f,
                "postgres://{:?}/{}",
                c.get_hosts(),
                c.get_dbname().unwrap_or("")
            ),
            DbUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
        }
    }
}

impl DbUrl {
    /// Parses a `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "mysql" => parse_mysql(url),
            "postgres" | "postgresql" => tokio_postgres::Config::from_str(url)
                .map(|c| DbUrl::Postgres(Box::new(c)))
                .map_err(|e| format!("bad postgres \"url\": {e}")),
            "sqlite" | "sqlite3" => parse_sqlite(&url[scheme.len() + 1..]),
            _ => Err(format!(
                "unsupported \"url\" \"{}\": use mysql://, postgres:// or sqlite:",
                redact(url)
            )),
        }
    }

    /// The database of a source's or sink's properties: `url`, or eKuiper's older `dburl`.
    pub(crate) fn from_props(p: &Props<'_>) -> Result<Self, ConnectorError> {
        let url = match p.string("url")? {
            Some(u) => u,
            None => p.string("dburl")?.ok_or_else(|| {
                p.error("\"url\" is required (mysql://, postgres:// or sqlite:)".into())
            })?,
        };
        DbUrl::parse(url).map_err(|e| p.error(e))
    }

    /// The dialect of the statements this database takes.
    pub fn dialect(&self) -> Dialect {
        match self {
            DbUrl::Mysql(_) => Dialect::Mysql,
            DbUrl::Postgres(_) => Dialect::Postgres,
            DbUrl::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

/// `url` without its password, for errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

fn parse_mysql(url: &str) -> Result<DbUrl, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            !kv.is_empty() && !GO_ONLY_PARAMS.contains(&key.as_str())
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let opts = Opts::from_url(&url).map_err(|e| format!("bad mysql \"url\": {e}"))?;
    if opts.db_name().is_none() {
        return Err("the mysql \"url\" must name the database (mysql://host/db)".into());
    }
    // mysql_async would switch a loopback TCP connection to the server's unix socket;
    // connect where the url says.
    Ok(DbUrl::Mysql(Opts::from(
        OptsBuilder::from_opts(opts).prefer_socket(false),
    )))
}

fn parse_sqlite(rest: &str) -> Result<DbUrl, String> {
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.contains('?') {
        return Err(format!(
            "sqlite \"url\" options are not supported: \"{path}\" (give the file path only)"
        ));
    }
    if path.is_empty() {
        return Err("the sqlite \"url\" needs a file path (sqlite:/path/to/file.db)".into());
    }
    Ok(DbUrl::Sqlite(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ekuiper_url_forms() {
        let u = DbUrl::parse("mysql://root:pw@127.0.0.1:3306/test?parseTime=true").unwrap();
        assert_eq!(u.dialect(), Dialect::Mysql);
        let DbUrl::Mysql(o) = &u else { panic!() };
        assert_eq!(o.db_name(), Some("test"));
        assert_eq!(o.pass(), Some("pw"));
        assert_eq!(
            DbUrl::parse("postgres://postgres@127.0.0.1:5432/test")
                .unwrap()
                .dialect(),
            Dialect::Postgres
        );
        assert!(
            matches!(DbUrl::parse("sqlite:/tmp/a.db").unwrap(), DbUrl::Sqlite(p) if p.as_path() == std::path::Path::new("/tmp/a.db"))
        );
        assert!(
            matches!(DbUrl::parse("sqlite://test.db").unwrap(), DbUrl::Sqlite(p) if p.as_path() == std::path::Path::new("test.db"))
        );
        assert!(
            matches!(DbUrl::parse("sqlite:///tmp/b.db").unwrap(), DbUrl::Sqlite(p) if p.as_path() == std::path::Path::new("/tmp/b.db"))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        let e = DbUrl::parse("sqlserver://sa:secret@h/db").unwrap_err();
        assert!(e.contains("unsupported") && !e.contains("secret"), "{e}");
        assert!(DbUrl::parse("mysql://h").unwrap_err().contains("database"));
        assert!(DbUrl::parse("sqlite:").is_err());
        assert!(DbUrl::parse("sqlite:/a.db?cache=shared").is_err());
        assert!(DbUrl::parse("mysql://h/db?nosuch=1").is_err());
    }
}
