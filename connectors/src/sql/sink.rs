//! The `sql` sink: writes each result batch to a table, eKuiper's way.
//!
//! - A batch is written in one transaction (with `sendSingle`, each row in one of its own): its inserts as one multi-row `INSERT` (split only
//!   at the database's parameter limit), so either all of its rows land or none do.
//! - With `rowkindField`, each row's action (`insert`, `update`, `upsert`, `delete`; missing:
//!   `insert`) picks the statement; runs of equal actions share one statement where the
//!   dialect allows (multi-row inserts and upserts, `DELETE ... IN`), in row order.
//! - A row the sink cannot place (an unknown action, no key) is counted in the batch's error
//!   and left out; the other rows are still written. A failed write is an error of the batch
//!   with the database's message; the rule keeps running and the next batch reconnects if
//!   the connection broke.

use std::collections::HashSet;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::{Map, Value};

use super::driver::{Connection, SqlValue, Statement};
use super::sink_config::SqlSinkConfig;
use super::statement::{self, InsertSpec};
use crate::codec::encode;
use crate::{ConnectorError, Refused, Sink};

/// The table, in the sink's database, where each qos 2 sink records the last epoch it
/// committed (eKuiper has no such table: its exactly-once stops at its own state).
pub const PROGRESS_TABLE: &str = "quiver_sink_progress";

/// What a row asks for (`rowkindField`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Upsert,
    Delete,
}

/// Writes result batches to a database table.
pub struct SqlSink {
    config: SqlSinkConfig,
    conn: Option<Connection>,
}

impl std::fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSink")
            .field("url", &self.config.url)
            .field("table", &self.config.table)
            .finish()
    }
}

fn io(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "sql",
        reason,
    }
}

impl SqlSink {
    /// A sink with `config`; it connects on the first batch.
    pub fn new(config: SqlSinkConfig) -> Self {
        SqlSink { config, conn: None }
    }

    /// The rows to write: the batch's rows, or those nested in `tableDataField`.
    fn rows(&self, batch: &RecordBatch) -> Vec<Map<String, Value>> {
        let rows = encode::batch_to_rows(batch, true);
        let Some(field) = &self.config.table_data_field else {
            return rows;
        };
        rows.into_iter()
            .flat_map(|mut row| match row.remove(field) {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .filter_map(|i| match i {
                        Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .collect(),
                Some(Value::Object(m)) => vec![m],
                _ => Vec::new(),
            })
            .collect()
    }

    /// The columns written: `fields`, else every field of the rows in the order first seen
    /// (less the rowkind field, which names an action rather than a column).
    fn columns(&self, rows: &[Map<String, Value>]) -> Vec<String> {
        if let Some(fields) = &self.config.fields {
            return fields.clone();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            for key in row.keys() {
                if Some(key) != self.config.rowkind_field.as_ref() && seen.insert(key.as_str()) {
                    out.push(key.clone());
                }
            }
        }
        out
    }

    /// The statements for `rows`, and the rows left out with why (the first reason).
    fn statements(&self, rows: &[Map<String, Value>]) -> (Vec<Statement>, usize, Option<String>) {
        let c = &self.config;
        let d = c.url.dialect();
        let columns = self.columns(rows);
        let mut skipped = 0;
        let mut first = None;
        let mut runs: Vec<(Kind, Vec<Vec<SqlValue>>)> = Vec::new();
        // Keys in the current upsert run: a key seen twice starts a new statement, since one
        // statement may not touch a row twice.
        let mut run_keys: HashSet<String> = HashSet::new();
        let key_at = c
            .key_field
            .as_ref()
            .and_then(|k| columns.iter().position(|c| c == k));
        for row in rows {
            let kind = match self.kind(row) {
                Ok(k) => k,
                Err(e) => {
                    skipped += 1;
                    first.get_or_insert(e);
                    continue;
                }
            };
            let values: Vec<SqlValue> = columns
                .iter()
                .map(|col| row.get(col).map_or(SqlValue::Null, SqlValue::from_json))
                .collect();
            if kind != Kind::Insert {
                let key = c.key_field.as_deref().unwrap_or_default();
                match row.get(key) {
                    Some(v) if !v.is_null() && key_at.is_some() => {
                        let text = v.to_string();
                        let same_run = runs.last().is_some_and(|(k, _)| *k == kind);
                        if kind == Kind::Upsert && same_run && !run_keys.insert(text.clone()) {
                            runs.push((kind, Vec::new()));
                            run_keys.clear();
                            run_keys.insert(text);
                        } else if !same_run {
                            run_keys.clear();
                            run_keys.insert(text);
                        }
                    }
                    _ => {
                        skipped += 1;
                        first.get_or_insert(format!("a row has no key field \"{key}\""));
                        continue;
                    }
                }
            }
            match runs.last_mut() {
                Some((k, rows)) if *k == kind => rows.push(values),
                _ => runs.push((kind, vec![values])),
            }
        }
        let key = c.key_field.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for (kind, rows) in runs {
            match kind {
                Kind::Insert | Kind::Upsert => {
                    let spec = InsertSpec {
                        dialect: d,
                        table: &c.table,
                        columns: &columns,
                        upsert_key: (kind == Kind::Upsert).then_some(key),
                    };
                    out.extend(statement::insert(&spec, rows));
                }
                Kind::Update => out.extend(
                    rows.into_iter()
                        .filter_map(|r| statement::update(d, &c.table, &columns, key, r)),
                ),
                Kind::Delete => {
                    let at = key_at.unwrap_or_default();
                    let keys = rows.into_iter().map(|mut r| r.swap_remove(at)).collect();
                    out.extend(statement::delete(d, &c.table, key, keys));
                }
            }
        }
        (out, skipped, first)
    }

    /// A row's action; insert when there is no rowkind field (or the row lacks it).
    fn kind(&self, row: &Map<String, Value>) -> Result<Kind, String> {
        let Some(field) = &self.config.rowkind_field else {
            return Ok(Kind::Insert);
        };
        match row.get(field) {
            None | Some(Value::Null) => Ok(Kind::Insert),
            Some(Value::String(s)) => match s.as_str() {
                "insert" => Ok(Kind::Insert),
                "update" => Ok(Kind::Update),
                "upsert" => Ok(Kind::Upsert),
                "delete" => Ok(Kind::Delete),
                other => Err(format!("invalid rowkind \"{other}\" in field \"{field}\"")),
            },
            Some(other) => Err(format!(
                "rowkind field \"{field}\" is not a string: {other}"
            )),
        }
    }
}

impl SqlSink {
    /// The open connection, opened first if there is none.
    async fn connection(&mut self) -> Result<&mut Connection, ConnectorError> {
        Ok(match self.conn {
            Some(ref mut c) => c,
            None => self.conn.insert(
                Connection::open(&self.config.url)
                    .await
                    .map_err(|e| io(format!("connecting to {:?}: {e}", self.config.url)))?,
            ),
        })
    }

    /// Writes `rows` in one transaction; the error says how many rows and why.
    async fn write_rows(&mut self, rows: &[Map<String, Value>]) -> Result<(), ConnectorError> {
        let (statements, skipped, first) = self.statements(rows);
        if !statements.is_empty() {
            let conn = self.connection().await?;
            if let Err(e) = conn.write(&statements).await {
                if e.broken {
                    self.conn = None;
                }
                return Err(io(format!(
                    "writing {} rows to \"{}\": {e}",
                    rows.len() - skipped,
                    self.config.table
                )));
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err(io(format!(
                "{skipped} of {} rows were not written: {e}",
                rows.len()
            ))),
        }
    }
}

#[async_trait]
impl Sink for SqlSink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let rows = self.rows(batch);
        if !self.config.send_single {
            return self.write_rows(&rows).await;
        }
        // `sendSingle`: a transaction per row, so a row the database refuses does not take
        // the batch's other rows with it.
        let mut failed = 0;
        let mut first = None;
        for row in rows.chunks(1) {
            if let Err(e) = self.write_rows(row).await {
                failed += 1;
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(e) if failed == 1 => Err(e),
            Some(e) => Err(io(format!(
                "{failed} of {} rows failed; the first: {e}",
                rows.len()
            ))),
        }
    }

    fn transactional(&self) -> bool {
        true
    }

    async fn committed_epoch(&mut self, id: &str) -> Result<u64, ConnectorError> {
        let d = self.config.url.dialect();
        let create = Statement {
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {} (id VARCHAR(255) PRIMARY KEY, epoch BIGINT NOT NULL)",
                d.quote(PROGRESS_TABLE)
            ),
            params: Vec::new(),
        };
        let select = Statement {
            sql: format!(
                "SELECT epoch FROM {} WHERE id = {}",
                d.quote(PROGRESS_TABLE),
                d.placeholder(1)
            ),
            params: vec![SqlValue::Text(id.to_string())],
        };
        let conn = self.connection().await?;
        let result = match conn.write(std::slice::from_ref(&create)).await {
            Ok(_) => conn.query(&select).await,
            Err(e) => Err(e),
        };
        let rows = result.map_err(|e| {
            if e.broken {
                self.conn = None;
            }
            io(format!("reading the progress table {PROGRESS_TABLE}: {e}"))
        })?;
        let epoch = rows.first().and_then(|r| r.get("epoch")).map(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match epoch {
            None => Ok(0),
            Some(Some(e)) => Ok(e),
            Some(None) => Err(io(format!(
                "the progress table {PROGRESS_TABLE} holds an epoch that is not a number for \"{id}\""
            ))),
        }
    }

    async fn commit_epoch(
        &mut self,
        id: &str,
        epoch: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<Refused>, ConnectorError> {
        let d = self.config.url.dialect();
        let mut refused = Vec::new();
        let mut groups = Vec::with_capacity(batches.len());
        let mut sizes = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let rows = self.rows(batch);
            let (statements, skipped, first) = self.statements(&rows);
            if let Some(reason) = first {
                refused.push(Refused {
                    batch: i,
                    rows: skipped,
                    reason,
                });
            }
            sizes.push((i, rows.len() - skipped));
            groups.push(statements);
        }
        let columns = ["id".to_string(), "epoch".to_string()];
        let progress = statement::insert(
            &InsertSpec {
                dialect: d,
                table: PROGRESS_TABLE,
                columns: &columns,
                upsert_key: Some("id"),
            },
            vec![vec![
                SqlValue::Text(id.to_string()),
                SqlValue::Int(i64::try_from(epoch).unwrap_or(i64::MAX)),
            ]],
        );
        let table = self.config.table.clone();
        let conn = self.connection().await?;
        match conn.write_groups(&groups, &progress).await {
            Ok(outcomes) => {
                for ((i, rows), outcome) in sizes.into_iter().zip(outcomes) {
                    if let Some(reason) = outcome {
                        refused.push(Refused {
                            batch: i,
                            rows,
                            reason: format!("writing {rows} rows to \"{table}\": {reason}"),
                        });
                    }
                }
                Ok(refused)
            }
            Err(e) => {
                if e.broken {
                    self.conn = None;
                }
                Err(io(format!(
                    "committing epoch {epoch} to \"{table}\" and {PROGRESS_TABLE}: {e}"
                )))
            }
        }
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
        Ok(())
    }
}
