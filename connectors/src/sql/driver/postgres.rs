//! PostgreSQL through `tokio-postgres`, without TLS.
//!
//! - Every parameter is sent in text form with the type the server infers for its place, as
//!   if it were a quoted literal: one encoding serves integer, numeric, timestamp, json and
//!   text columns alike, and the value is still never part of the statement text.
//! - A query is wrapped as `SELECT row_to_json(q)::text FROM (<query>) AS q`, so the server
//!   hands each row over as one JSON object (numbers as numbers, times in ISO form) and no
//!   column type needs a Rust decoder of its own.

use bytes::BytesMut;
use serde_json::{Map, Value};
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls};

use super::{DbError, SqlValue, Statement};

/// An open PostgreSQL connection; its socket is driven by a task of its own, which ends when
/// this is dropped.
pub struct PgConn(Client);

/// A refusal by the server leaves the connection usable; anything else drops it.
fn error(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::refused(format!("{}: {}", db.severity(), db.message())),
        None => DbError::broken(e),
    }
}

/// An error that says nothing about the rows (SQLSTATE classes 08 connection, 40 transaction
/// rollback such as a deadlock, 53 insufficient resources, 57 operator intervention, and
/// 55P03 lock not available): the whole write is tried again rather than the rows dropped.
fn transient(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let c = c.code();
        ["08", "40", "53", "57"]
            .iter()
            .any(|class| c.starts_with(class))
            || c == "55P03"
    })
}

/// A parameter in text form, accepted for any column type.
#[derive(Debug)]
struct Text(Option<String>);

impl ToSql for Text {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

fn texts(values: &[SqlValue]) -> Vec<Text> {
    values.iter().map(|v| Text(v.text())).collect()
}

fn refs(values: &[Text]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl PgConn {
    /// Connects and starts the task that drives the socket.
    pub async fn open(config: &Config) -> Result<Self, DbError> {
        let (client, connection) = config.connect(NoTls).await.map_err(error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("sql: postgres connection ended: {e}");
            }
        });
        Ok(PgConn(client))
    }

    /// Runs a query; rows as JSON objects.
    pub async fn query(&mut self, st: &Statement) -> Result<Vec<Map<String, Value>>, DbError> {
        let inner = st.sql.trim().trim_end_matches(';');
        let sql = format!("SELECT row_to_json(q)::text FROM ({inner}) AS q");
        let params = texts(&st.params);
        let rows = self.0.query(&sql, &refs(&params)).await.map_err(error)?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get(0).map_err(error)?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(map)) => Ok(map),
                    _ => Err(DbError::refused(format!(
                        "a row is not a JSON object: {text}"
                    ))),
                }
            })
            .collect()
    }

    /// Runs the statements in one transaction.
    pub async fn write(&mut self, statements: &[Statement]) -> Result<u64, DbError> {
        let tx = self.0.transaction().await.map_err(error)?;
        let mut affected = 0;
        for st in statements {
            let params = texts(&st.params);
            match tx.execute(&st.sql, &refs(&params)).await {
                Ok(n) => affected += n,
                Err(e) => {
                    // Rolled back before answering, so the next statement starts clean.
                    let _ = tx.rollback().await;
                    return Err(error(e));
                }
            }
        }
        tx.commit().await.map_err(error)?;
        Ok(affected)
    }

    /// See [`super::Connection::write_groups`]. PostgreSQL aborts a transaction at its first
    /// error, so each group runs in a savepoint that a refusal rolls back to.
    pub async fn write_groups(
        &mut self,
        groups: &[Vec<Statement>],
        last: &[Statement],
    ) -> Result<Vec<Option<String>>, DbError> {
        let mut tx = self.0.transaction().await.map_err(error)?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let sp = tx.savepoint(super::SAVEPOINT).await.map_err(error)?;
            let mut refused = None;
            for st in group {
                let params = texts(&st.params);
                if let Err(e) = sp.execute(&st.sql, &refs(&params)).await {
                    let again = transient(&e);
                    let e = error(e);
                    if e.broken || again {
                        return Err(e);
                    }
                    refused = Some(e.message);
                    break;
                }
            }
            match refused {
                Some(_) => sp.rollback().await.map_err(error)?,
                None => sp.commit().await.map_err(error)?,
            }
            out.push(refused);
        }
        for st in last {
            let params = texts(&st.params);
            tx.execute(&st.sql, &refs(&params)).await.map_err(error)?;
        }
        tx.commit().await.map_err(error)?;
        Ok(out)
    }
}
