//! Settings of the SQL lookup source.

use std::time::Duration;

use serde_json::{Map, Value};

use super::driver::{DbUrl, SqlValue, Statement};
use crate::ConnectorError;
use crate::props::Props;

/// Settings of a SQL lookup table.
#[derive(Debug, Clone)]
pub struct SqlLookupConfig {
    /// The database, from `url` (MySQL/MariaDB, PostgreSQL or SQLite).
    pub url: DbUrl,
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
        p.check_spec("sql lookup", crate::spec::lookup_spec("sql"));
        let url = DbUrl::from_props(&p)?;
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
        Ok(SqlLookupConfig {
            url,
            table: datasource.trim().to_string(),
            key: key.to_string(),
            timeout,
        })
    }

    /// The statement for `keys`: identifiers quoted for the database's dialect, the keys bound
    /// as parameters.
    pub fn statement(&self, keys: &[String]) -> Statement {
        let dialect = self.url.dialect();
        let placeholders: Vec<String> = (1..=keys.len()).map(|n| dialect.placeholder(n)).collect();
        // PostgreSQL compares a text parameter with an integer column only after a cast: the
        // key column is read as text there, so keys of any column type match.
        let key = match dialect {
            super::driver::Dialect::Postgres => format!("{}::text", dialect.quote(&self.key)),
            _ => dialect.quote(&self.key),
        };
        Statement {
            sql: format!(
                "SELECT * FROM {} WHERE {key} IN ({})",
                dialect.quote(&self.table),
                placeholders.join(", ")
            ),
            params: keys.iter().map(|k| SqlValue::Text(k.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ds: &str, v: Value) -> Result<SqlLookupConfig, ConnectorError> {
        SqlLookupConfig::parse(ds, "id", v.as_object().unwrap())
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn statement_quotes_identifiers_and_binds_keys() {
        let c = parse(
            "dev`ices",
            serde_json::json!({"url": "mysql://root@127.0.0.1:3306/test"}),
        )
        .unwrap();
        let st = c.statement(&keys(3));
        assert_eq!(st.sql, "SELECT * FROM `dev``ices` WHERE `id` IN (?, ?, ?)");
        assert_eq!(st.params[2], SqlValue::Text("2".into()));
        let c = parse(
            "test.devices",
            serde_json::json!({"dburl": "mysql://root@h/test"}),
        )
        .unwrap();
        assert_eq!(
            c.statement(&keys(1)).sql,
            "SELECT * FROM `test`.`devices` WHERE `id` IN (?)"
        );
        let c = parse("devices", serde_json::json!({"url": "postgres://u@h/db"})).unwrap();
        assert_eq!(
            c.statement(&keys(2)).sql,
            "SELECT * FROM \"devices\" WHERE \"id\"::text IN ($1, $2)"
        );
        let c = parse("devices", serde_json::json!({"url": "sqlite:/tmp/x.db"})).unwrap();
        assert_eq!(
            c.statement(&keys(1)).sql,
            "SELECT * FROM \"devices\" WHERE \"id\" IN (?)"
        );
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(parse("t", serde_json::json!({})).is_err());
        assert!(parse("t", serde_json::json!({"url": "oracle://h/db"})).is_err());
        assert!(parse("t", serde_json::json!({"url": "mysql://h"})).is_err());
        assert!(parse("", serde_json::json!({"url": "mysql://h/db"})).is_err());
    }
}
