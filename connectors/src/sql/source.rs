//! The `sql` source task: one query per interval, rows sent on as JSON messages.
//!
//! The index values (the largest seen of each index field) are kept in memory: a rule that
//! restarts reads again from the configured `indexValue`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use super::driver::{Connection, SqlValue, Statement};
use super::source_config::{IndexField, QuerySpec, SqlSourceConfig};
use super::statement;
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// Polls a database table or query.
#[derive(Debug)]
pub struct SqlSource {
    config: SqlSourceConfig,
    /// The current value of each index field (the start value until a row is read).
    index: Vec<Option<Value>>,
}

impl SqlSource {
    /// A source with `config`; it connects on the first query.
    pub fn new(config: SqlSourceConfig) -> Self {
        let index = config.indexes.iter().map(|f| f.start.clone()).collect();
        SqlSource { config, index }
    }

    /// This poll's statement, the index values bound.
    fn statement(&self) -> Result<Statement, String> {
        let d = self.config.url.dialect();
        let values = self
            .config
            .indexes
            .iter()
            .zip(&self.index)
            .map(|(f, v)| v.as_ref().map(|v| index_param(f, v)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match &self.config.query {
            QuerySpec::Table { table, limit } => {
                let indexes: Vec<(&str, Option<SqlValue>)> = self
                    .config
                    .indexes
                    .iter()
                    .zip(values)
                    .map(|(f, v)| (f.name.as_str(), v))
                    .collect();
                statement::select(d, table, &indexes, *limit)
            }
            QuerySpec::Template(parts) => {
                let values: Vec<SqlValue> = values
                    .into_iter()
                    .map(|v| v.unwrap_or(SqlValue::Null))
                    .collect();
                statement::render_template(d, parts, &values)
            }
        })
    }

    /// Moves each index to the largest value among `rows`.
    fn advance(&mut self, rows: &[Map<String, Value>]) {
        for (field, current) in self.config.indexes.iter().zip(self.index.iter_mut()) {
            for row in rows {
                // PostgreSQL folds unquoted names to lower case: match the column loosely.
                let Some(v) = row
                    .get(&field.name)
                    .or_else(|| {
                        row.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&field.name))
                            .map(|(_, v)| v)
                    })
                    .filter(|v| !v.is_null())
                else {
                    continue;
                };
                if current.as_ref().is_none_or(|c| greater(field, v, c)) {
                    *current = Some(v.clone());
                }
            }
        }
    }
}

/// True when index value `a` is past `b`: numbers by value, times (with a format) by time,
/// other text by its characters.
fn greater(field: &IndexField, a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x > y;
    }
    if let Some(format) = &field.datetime_format
        && let (Some(x), Some(y)) = (millis(a, format), millis(b, format))
    {
        return x > y;
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x > y,
        _ => true,
    }
}

/// A time value in epoch ms: a number as ms, text in `format`, ISO 8601, or
/// `yyyy-MM-dd HH:mm:ss[.f]` (UTC).
fn millis(v: &Value, format: &str) -> Option<i64> {
    if let Some(ms) = v.as_i64() {
        return Some(ms);
    }
    let text = v.as_str()?.trim();
    quiver_compiler::functions::parse_with_pattern(text, format)
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis())
        })
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// The parameter for an index value: a `DATETIME` with a format is bound as text in that
/// format, whatever form the database returned it in; anything else as it is.
pub(super) fn index_param(field: &IndexField, v: &Value) -> Result<SqlValue, String> {
    let Some(format) = &field.datetime_format else {
        return Ok(SqlValue::from_json(v));
    };
    let ms = millis(v, format).ok_or_else(|| {
        format!(
            "index \"{}\": {v} is not a time in \"{format}\"",
            field.name
        )
    })?;
    let t = Utc
        .timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| format!("index \"{}\": {v} is out of range", field.name))?;
    Ok(SqlValue::Text(quiver_compiler::functions::format_zoned(
        t.fixed_offset(),
        "UTC",
        format,
    )))
}

#[async_trait]
impl Source for SqlSource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let mut ticker = tokio::time::interval(self.config.interval);
        // A slow rule or database delays the next query rather than bunching missed ones.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<Connection> = None;
        let mut failures = 0u64;
        loop {
            ticker.tick().await;
            let rows = match self.poll(&mut conn).await {
                Ok(rows) => rows,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!("sql source: {e}; retrying every interval");
                    } else {
                        tracing::debug!("sql source: query {failures} failed: {e}");
                    }
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!("sql source: querying again after {failures} failures");
                failures = 0;
            }
            if rows.is_empty() {
                continue;
            }
            self.advance(&rows);
            let messages = rows
                .into_iter()
                .filter_map(|row| serde_json::to_vec(&Value::Object(row)).ok())
                .map(|bytes| RawMessage::new(bytes, self.config.topic.clone()))
                .collect();
            out.send(SourceEvent::Raw(messages)).await?;
        }
    }
}

impl SqlSource {
    /// One query on the open connection (opened first if need be); a broken connection is
    /// dropped so the next poll reconnects.
    async fn poll(&self, conn: &mut Option<Connection>) -> Result<Vec<Map<String, Value>>, String> {
        let st = self.statement()?;
        let c = match conn {
            Some(c) => c,
            None => conn.insert(
                Connection::open(&self.config.url)
                    .await
                    .map_err(|e| format!("connecting to {:?}: {e}", self.config.url))?,
            ),
        };
        match c.query(&st).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                if e.broken {
                    *conn = None;
                }
                Err(format!("query failed: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datetime_indexes_are_bound_in_their_format() {
        let f = IndexField {
            name: "ts".into(),
            start: None,
            datetime_format: Some("YYYY-MM-dd HH:mm:ss".into()),
        };
        for v in [
            json!("2022-04-21 10:23:55"),
            json!("2022-04-21T10:23:55"),
            json!("2022-04-21T10:23:55+00:00"),
        ] {
            assert_eq!(
                index_param(&f, &v).unwrap(),
                SqlValue::Text("2022-04-21 10:23:55".into())
            );
        }
        assert!(
            index_param(&f, &json!("soon"))
                .unwrap_err()
                .contains("soon")
        );
        assert!(greater(
            &f,
            &json!("2022-04-21T10:23:56"),
            &json!("2022-04-21 10:23:55")
        ));
        let plain = IndexField {
            datetime_format: None,
            ..f
        };
        assert!(greater(&plain, &json!(10), &json!(9)));
        assert!(!greater(&plain, &json!("a"), &json!("b")));
    }
}
