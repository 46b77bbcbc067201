//! One small interface over the three database drivers the `sql` connectors use: MySQL and
//! MariaDB (`mysql_async`), PostgreSQL (`tokio-postgres`) and SQLite (`rusqlite`, run on the
//! blocking pool since it is synchronous).
//!
//! Statements always carry their values as bound parameters ([`SqlValue`]); only identifiers,
//! quoted by [`Dialect::quote`], are ever written into the statement text. Rows come back as
//! JSON objects, the form sources and lookups hand to the decoder.

pub(crate) mod mysql;
mod postgres;
mod sqlite;
mod url;

use serde_json::{Map, Value};

pub use url::DbUrl;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A boolean (MySQL and SQLite store it as 1 or 0).
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer beyond `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// Text; nested JSON values are bound as their JSON text.
    Text(String),
}

impl SqlValue {
    /// The parameter for a JSON value: objects and arrays become their JSON text.
    pub fn from_json(v: &Value) -> SqlValue {
        match v {
            Value::Null => SqlValue::Null,
            Value::Bool(b) => SqlValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => SqlValue::Int(i),
                (None, Some(u)) => SqlValue::UInt(u),
                _ => SqlValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SqlValue::Text(s.clone()),
            other => SqlValue::Text(other.to_string()),
        }
    }

    /// The value as PostgreSQL reads it in text form (`None` for NULL).
    fn text(&self) -> Option<String> {
        match self {
            SqlValue::Null => None,
            SqlValue::Bool(b) => Some(b.to_string()),
            SqlValue::Int(i) => Some(i.to_string()),
            SqlValue::UInt(u) => Some(u.to_string()),
            SqlValue::Float(f) => Some(f.to_string()),
            SqlValue::Text(s) => Some(s.clone()),
        }
    }
}

/// The SQL dialect of a database: how identifiers are quoted and parameters written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL and MariaDB: backticks, `?`.
    Mysql,
    /// PostgreSQL: double quotes, `$1`, `$2`, ...
    Postgres,
    /// SQLite: double quotes, `?`.
    Sqlite,
}

impl Dialect {
    /// `ident` quoted for this dialect; `db.table` quotes each part, and a quote character
    /// inside a name is doubled, so no name can end the quoting.
    pub fn quote(self, ident: &str) -> String {
        let q = match self {
            Dialect::Mysql => '`',
            Dialect::Postgres | Dialect::Sqlite => '"',
        };
        ident
            .split('.')
            .map(|part| {
                let doubled = part.replace(q, &format!("{q}{q}"));
                format!("{q}{doubled}{q}")
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The text of parameter number `n` (1-based).
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql | Dialect::Sqlite => "?".to_string(),
        }
    }

    /// The most parameters one statement may carry (MySQL's and PostgreSQL's 65,535,
    /// SQLite's 32,766 since 3.32): longer batches are split into several statements.
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Mysql | Dialect::Postgres => 65_535,
            Dialect::Sqlite => 32_766,
        }
    }
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The text, with placeholders where the values go.
    pub sql: String,
    /// The values, in placeholder order.
    pub params: Vec<SqlValue>,
}

/// The savepoint each group of [`Connection::write_groups`] runs under.
const SAVEPOINT: &str = "quiver_group";

/// A failure reported by a driver.
#[derive(Debug)]
pub struct DbError {
    /// The database's (or the driver's) message.
    pub message: String,
    /// True when the connection may be unusable (I/O, protocol): the caller reconnects. A
    /// statement the server refused leaves the connection usable.
    pub broken: bool,
}

impl DbError {
    /// A failure after which the connection is dropped.
    pub(crate) fn broken(e: impl std::fmt::Display) -> Self {
        DbError {
            message: e.to_string(),
            broken: true,
        }
    }

    /// A failure the server reported; the connection stays.
    pub(crate) fn refused(e: impl std::fmt::Display) -> Self {
        DbError {
            message: e.to_string(),
            broken: false,
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An open connection to one of the supported databases.
pub enum Connection {
    /// MySQL or MariaDB.
    Mysql(mysql::MysqlConn),
    /// PostgreSQL.
    Postgres(postgres::PgConn),
    /// SQLite.
    Sqlite(sqlite::SqliteConn),
}

impl Connection {
    /// Connects to the database `url` names.
    pub async fn open(url: &DbUrl) -> Result<Self, DbError> {
        Ok(match url {
            DbUrl::Mysql(opts) => Connection::Mysql(mysql::MysqlConn::open(opts).await?),
            DbUrl::Postgres(config) => Connection::Postgres(postgres::PgConn::open(config).await?),
            DbUrl::Sqlite(path) => Connection::Sqlite(sqlite::SqliteConn::open(path).await?),
        })
    }

    /// Runs a query; each row is a JSON object of its columns.
    pub async fn query(&mut self, st: &Statement) -> Result<Vec<Map<String, Value>>, DbError> {
        match self {
            Connection::Mysql(c) => c.query(st).await,
            Connection::Postgres(c) => c.query(st).await,
            Connection::Sqlite(c) => c.query(st).await,
        }
    }

    /// Runs `statements` in one transaction: all of them take effect or none. Returns the
    /// rows they affected.
    pub async fn write(&mut self, statements: &[Statement]) -> Result<u64, DbError> {
        match self {
            Connection::Mysql(c) => c.write(statements).await,
            Connection::Postgres(c) => c.write(statements).await,
            Connection::Sqlite(c) => c.write(statements).await,
        }
    }

    /// Runs each group of statements under a savepoint of one transaction, then `last`, and
    /// commits: a group the database refuses is rolled back to its savepoint and its message
    /// returned in its place, the other groups stay. A broken connection, or a refusal of
    /// `last`, rolls everything back and is the error.
    pub async fn write_groups(
        &mut self,
        groups: &[Vec<Statement>],
        last: &[Statement],
    ) -> Result<Vec<Option<String>>, DbError> {
        match self {
            Connection::Mysql(c) => c.write_groups(groups, last).await,
            Connection::Postgres(c) => c.write_groups(groups, last).await,
            Connection::Sqlite(c) => c.write_groups(groups, last).await,
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        match self {
            Connection::Mysql(c) => c.close().await,
            Connection::Postgres(_) | Connection::Sqlite(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_per_dialect() {
        assert_eq!(Dialect::Mysql.quote("dev`ices"), "`dev``ices`");
        assert_eq!(Dialect::Mysql.quote("test.t"), "`test`.`t`");
        assert_eq!(Dialect::Postgres.quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::Sqlite.quote("x; DROP"), "\"x; DROP\"");
        assert_eq!(Dialect::Postgres.placeholder(3), "$3");
        assert_eq!(Dialect::Sqlite.placeholder(3), "?");
    }

    #[test]
    fn json_values_become_parameters() {
        assert_eq!(SqlValue::from_json(&serde_json::json!(3)), SqlValue::Int(3));
        assert_eq!(
            SqlValue::from_json(&serde_json::json!(u64::MAX)),
            SqlValue::UInt(u64::MAX)
        );
        assert_eq!(
            SqlValue::from_json(&serde_json::json!({"a": 1})),
            SqlValue::Text("{\"a\":1}".into())
        );
        assert_eq!(SqlValue::Null.text(), None);
        assert_eq!(SqlValue::Float(1.5).text().as_deref(), Some("1.5"));
    }
}
