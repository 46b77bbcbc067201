//! SQLite through `rusqlite`. The driver is synchronous, so each call moves the connection
//! onto tokio's blocking pool and back; no lock is held meanwhile, and a call that is
//! cancelled simply loses the connection (the next one reopens the file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use rusqlite::types::{Value as Lite, ValueRef};
use serde_json::{Map, Value};

use super::{DbError, SqlValue, Statement};

/// How long a statement waits for another writer's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open SQLite database file.
pub struct SqliteConn {
    path: PathBuf,
    /// `None` while a call has it on the blocking pool, or after a cancelled call.
    conn: Option<rusqlite::Connection>,
}

fn params(values: &[SqlValue]) -> Vec<Lite> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Null => Lite::Null,
            SqlValue::Bool(b) => Lite::Integer(i64::from(*b)),
            SqlValue::Int(i) => Lite::Integer(*i),
            // SQLite integers are 64-bit signed: larger ones are stored as reals.
            SqlValue::UInt(u) => Lite::Real(*u as f64),
            SqlValue::Float(f) => Lite::Real(*f),
            SqlValue::Text(s) => Lite::Text(s.clone()),
        })
        .collect()
}

fn open_file(path: &Path) -> Result<rusqlite::Connection, DbError> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| DbError::broken(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(DbError::broken)?;
    Ok(conn)
}

impl SqliteConn {
    /// Opens (or creates) the file.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_file(&p))
            .await
            .map_err(DbError::broken)??;
        Ok(SqliteConn {
            path,
            conn: Some(conn),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.take();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(c) => c,
                None => match open_file(&path) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&mut conn);
            (Some(conn), result)
        })
        .await
        .map_err(DbError::broken)?;
        self.conn = conn;
        result
    }

    /// Runs a query; rows as JSON objects.
    pub async fn query(&mut self, st: &Statement) -> Result<Vec<Map<String, Value>>, DbError> {
        let st = st.clone();
        self.with(move |conn| {
            let mut stmt = conn.prepare(&st.sql).map_err(DbError::refused)?;
            let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params(&st.params)))
                .map_err(DbError::refused)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(DbError::refused)? {
                let mut obj = Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v = row.get_ref(i).map_err(DbError::refused)?;
                    obj.insert(name.clone(), json(v));
                }
                out.push(obj);
            }
            Ok(out)
        })
        .await
    }

    /// Runs the statements in one transaction.
    pub async fn write(&mut self, statements: &[Statement]) -> Result<u64, DbError> {
        let statements = statements.to_vec();
        self.with(move |conn| {
            // Dropped without commit on failure, which rolls it back.
            let tx = conn.transaction().map_err(DbError::refused)?;
            let mut affected = 0;
            for st in &statements {
                let mut stmt = tx.prepare_cached(&st.sql).map_err(DbError::refused)?;
                affected += stmt
                    .execute(rusqlite::params_from_iter(params(&st.params)))
                    .map_err(DbError::refused)? as u64;
            }
            tx.commit().map_err(DbError::refused)?;
            Ok(affected)
        })
        .await
    }

    /// See [`super::Connection::write_groups`].
    pub async fn write_groups(
        &mut self,
        groups: &[Vec<Statement>],
        last: &[Statement],
    ) -> Result<Vec<Option<String>>, DbError> {
        let (groups, last) = (groups.to_vec(), last.to_vec());
        self.with(move |conn| {
            // Dropped without commit on failure, which rolls it back.
            let mut tx = conn.transaction().map_err(DbError::refused)?;
            let mut out = Vec::with_capacity(groups.len());
            for group in &groups {
                let sp = tx.savepoint().map_err(DbError::refused)?;
                let mut refused = None;
                for st in group {
                    let done = sp.prepare_cached(&st.sql).and_then(|mut s| {
                        s.execute(rusqlite::params_from_iter(params(&st.params)))
                    });
                    if let Err(e) = done {
                        if transient(&e) {
                            return Err(DbError::refused(e));
                        }
                        refused = Some(e.to_string());
                        break;
                    }
                }
                match refused {
                    // Dropping a savepoint rolls it back.
                    Some(_) => drop(sp),
                    None => sp.commit().map_err(DbError::refused)?,
                }
                out.push(refused);
            }
            for st in &last {
                tx.prepare_cached(&st.sql)
                    .and_then(|mut s| s.execute(rusqlite::params_from_iter(params(&st.params))))
                    .map_err(DbError::refused)?;
            }
            tx.commit().map_err(DbError::refused)?;
            Ok(out)
        })
        .await
    }
}

/// An error that says nothing about the rows (the file busy or locked, full, failing I/O):
/// the whole write is tried again rather than the rows dropped.
fn transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    e.sqlite_error_code().is_some_and(|c| {
        matches!(
            c,
            DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | OutOfMemory | CannotOpen
        )
    })
}

/// A column value as JSON: blobs as base64 text, as eKuiper's JSON shows bytes.
fn json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}
