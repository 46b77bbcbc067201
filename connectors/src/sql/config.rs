//! Settings of the SQL lookup source.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder};
use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::Props;

/// Settings of a SQL lookup table.
#[derive(Debug, Clone)]
pub struct SqlLookupConfig {
    /// Connection options from `url`.
    pub opts: Opts,
    /// The table (`DATASOURCE`).
    pub table: String,
    /// The key column (the lookup table's `KEY`).
    pub key: String,
    /// Connect and query timeout: short, since lookups run inside the rule.
    pub timeout: Duration,
}

/// Connect/query timeout when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

impl SqlLookupConfig {
    /// Validates `DATASOURCE` (the table), the table's KEY and the profile's properties.
    pub fn parse(
        datasource: &str,
        key: &str,
        props: &Map<String, Value>,
    ) -> Result<Self, ConnectorError> {
        let p = Props::new("sql", props);
        p.check_keys("sql lookup", &["url", "dburl", "timeout"], &["lookup"], &[]);
        let url = match p.string("url")? {
            Some(u) => u,
            None => p
                .string("dburl")?
                .ok_or_else(|| p.error("\"url\" is required (mysql://user@host:port/db)".into()))?,
        };
        if !url.starts_with("mysql://") {
            return Err(p.error(format!(
                "only mysql:// urls are supported (MySQL and MariaDB), got \"{url}\""
            )));
        }
        let opts = Opts::from_url(url).map_err(|e| p.error(format!("bad \"url\": {e}")))?;
        if opts.db_name().is_none() {
            return Err(p.error("\"url\" must name the database (mysql://host/db)".into()));
        }
        if datasource.trim().is_empty() {
            return Err(p.error("DATASOURCE (the table) is required".into()));
        }
        let timeout = match p.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some((name, v)) => v
                .as_u64()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| p.error(format!("\"{name}\" must be milliseconds, got {v}")))?,
        };
        let opts = Opts::from(
            OptsBuilder::from_opts(opts)
                // mysql_async would switch a loopback TCP connection to the server's unix
                // socket; connect where the url says.
                .prefer_socket(false),
        );
        Ok(SqlLookupConfig {
            opts,
            table: datasource.trim().to_string(),
            key: key.to_string(),
            timeout,
        })
    }

    /// The statement for `n` keys, identifiers quoted with backticks (doubled inside).
    pub fn statement(&self, n: usize) -> String {
        format!(
            "SELECT * FROM {} WHERE {} IN ({})",
            quote(&self.table),
            quote(&self.key),
            vec!["?"; n].join(", ")
        )
    }
}

/// A MySQL identifier, quoted: `db.table` quotes each part.
fn quote(ident: &str) -> String {
    ident
        .split('.')
        .map(|part| format!("`{}`", part.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ds: &str, v: Value) -> Result<SqlLookupConfig, ConnectorError> {
        SqlLookupConfig::parse(ds, "id", v.as_object().unwrap())
    }

    #[test]
    fn statement_quotes_identifiers_and_binds_keys() {
        let c = parse(
            "dev`ices",
            serde_json::json!({"url": "mysql://root@127.0.0.1:3306/test"}),
        )
        .unwrap();
        assert_eq!(
            c.statement(3),
            "SELECT * FROM `dev``ices` WHERE `id` IN (?, ?, ?)"
        );
        let c = parse(
            "test.devices",
            serde_json::json!({"dburl": "mysql://root@h/test"}),
        )
        .unwrap();
        assert_eq!(
            c.statement(1),
            "SELECT * FROM `test`.`devices` WHERE `id` IN (?)"
        );
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(parse("t", serde_json::json!({})).is_err());
        assert!(parse("t", serde_json::json!({"url": "postgres://h/db"})).is_err());
        assert!(parse("t", serde_json::json!({"url": "mysql://h"})).is_err());
        assert!(parse("", serde_json::json!({"url": "mysql://h/db"})).is_err());
    }
}
