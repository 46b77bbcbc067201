//! MySQL and MariaDB through `mysql_async`: prepared statements (cached by the driver per
//! connection), values bound as parameters.

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params, Row, TxOpts, Value as My};
use serde_json::{Map, Value};

use super::{DbError, SqlValue, Statement};

/// An open MySQL/MariaDB connection.
pub struct MysqlConn(Conn);

/// A driver error: the server's refusal leaves the connection usable.
fn error(e: mysql_async::Error) -> DbError {
    match e {
        e @ mysql_async::Error::Server(_) => DbError::refused(e),
        e => DbError::broken(e),
    }
}

/// A server error that says nothing about the rows: a lock wait or deadlock, a server that
/// is busy or shutting down. The whole write is tried again rather than the rows dropped.
fn transient(e: &mysql_async::ServerError) -> bool {
    // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN,
    // MariaDB's ER_STATEMENT_TIMEOUT, MySQL's ER_QUERY_TIMEOUT.
    matches!(e.code, 1205 | 1213 | 1040 | 1053 | 1969 | 3024)
}

fn params(values: &[SqlValue]) -> Params {
    if values.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        values
            .iter()
            .map(|v| match v {
                SqlValue::Null => My::NULL,
                SqlValue::Bool(b) => My::Int(i64::from(*b)),
                SqlValue::Int(i) => My::Int(*i),
                SqlValue::UInt(u) => My::UInt(*u),
                SqlValue::Float(f) => My::Double(*f),
                SqlValue::Text(s) => My::Bytes(s.as_bytes().to_vec()),
            })
            .collect(),
    )
}

impl MysqlConn {
    /// Connects.
    pub async fn open(opts: &Opts) -> Result<Self, DbError> {
        Conn::new(opts.clone()).await.map(MysqlConn).map_err(error)
    }

    /// Runs a query; rows as JSON objects.
    pub async fn query(&mut self, st: &Statement) -> Result<Vec<Map<String, Value>>, DbError> {
        let rows: Vec<Row> = self
            .0
            .exec(st.sql.as_str(), params(&st.params))
            .await
            .map_err(error)?;
        Ok(rows.into_iter().map(row_to_map).collect())
    }

    /// Runs the statements in one transaction.
    pub async fn write(&mut self, statements: &[Statement]) -> Result<u64, DbError> {
        let mut tx = self
            .0
            .start_transaction(TxOpts::default())
            .await
            .map_err(error)?;
        let mut affected = 0;
        for st in statements {
            if let Err(e) = tx.exec_drop(st.sql.as_str(), params(&st.params)).await {
                // Rolled back now: a dropped transaction would keep its locks until the
                // connection's next use, blocking other sessions meanwhile.
                let _ = tx.rollback().await;
                return Err(error(e));
            }
            affected += tx.affected_rows();
        }
        tx.commit().await.map_err(error)?;
        Ok(affected)
    }

    /// See [`super::Connection::write_groups`]. Savepoint statements go by the text
    /// protocol: MySQL does not prepare them.
    pub async fn write_groups(
        &mut self,
        groups: &[Vec<Statement>],
        last: &[Statement],
    ) -> Result<Vec<Option<String>>, DbError> {
        let mut tx = self
            .0
            .start_transaction(TxOpts::default())
            .await
            .map_err(error)?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let savepoint = format!("SAVEPOINT {}", super::SAVEPOINT);
            if let Err(e) = tx.query_drop(savepoint).await {
                let _ = tx.rollback().await;
                return Err(error(e));
            }
            let mut refused = None;
            for st in group {
                match tx.exec_drop(st.sql.as_str(), params(&st.params)).await {
                    Ok(()) => {}
                    Err(mysql_async::Error::Server(e)) if !transient(&e) => {
                        refused = Some(e.to_string());
                        break;
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(error(e));
                    }
                }
            }
            let end = match refused {
                Some(_) => format!("ROLLBACK TO SAVEPOINT {}", super::SAVEPOINT),
                None => format!("RELEASE SAVEPOINT {}", super::SAVEPOINT),
            };
            if let Err(e) = tx.query_drop(end).await {
                let _ = tx.rollback().await;
                return Err(error(e));
            }
            out.push(refused);
        }
        for st in last {
            if let Err(e) = tx.exec_drop(st.sql.as_str(), params(&st.params)).await {
                let _ = tx.rollback().await;
                return Err(error(e));
            }
        }
        tx.commit().await.map_err(error)?;
        Ok(out)
    }

    /// Says goodbye to the server.
    pub async fn close(self) {
        let _ = self.0.disconnect().await;
    }
}

/// A row as a JSON object of its columns.
pub(crate) fn row_to_map(row: Row) -> Map<String, Value> {
    let columns = row.columns();
    let values = row.unwrap();
    columns
        .iter()
        .zip(values)
        .map(|(col, v)| (col.name_str().into_owned(), json(v, col.column_type())))
        .collect()
}

/// A column value as JSON: numbers stay numbers (DECIMAL too), dates become text.
pub(crate) fn json(v: My, ty: ColumnType) -> Value {
    match v {
        My::NULL => Value::Null,
        My::Int(i) => Value::from(i),
        My::UInt(u) => Value::from(u),
        My::Float(f) => Value::from(f as f64),
        My::Double(f) => Value::from(f),
        My::Bytes(b) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            match ty {
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::String(s), Value::Number),
                ColumnType::MYSQL_TYPE_JSON => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                _ => Value::String(s),
            }
        }
        My::Date(y, mo, d, h, mi, s, us) => Value::String(if us > 0 {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        } else {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
        }),
        My::Time(neg, days, h, mi, s, _) => Value::String(format!(
            "{}{:02}:{mi:02}:{s:02}",
            if neg { "-" } else { "" },
            days * 24 + h as u32
        )),
    }
}
