//! The SQL lookup: a dedicated thread owns the connection and a small runtime for the async
//! driver, so the dataflow worker asking for keys blocks only on a channel, and the runtime is
//! never dropped inside another runtime (tables are dropped from REST handlers).

use std::collections::HashMap;
use std::sync::{Mutex, mpsc};

use bytes::Bytes;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as Sql};

use super::driver::mysql::json;
use serde_json::{Map, Value};

use super::config::SqlLookupConfig;
use crate::ConnectorError;
use crate::lookup::LookupSource;

/// The rows of each asked key, or why the query failed.
type Answer = Result<Vec<Vec<Bytes>>, ConnectorError>;

/// One batch's keys and where to send the answer.
struct Request {
    keys: Vec<String>,
    reply: mpsc::SyncSender<Answer>,
}

/// Looks keys up in one MySQL/MariaDB table.
pub struct SqlLookup {
    config: SqlLookupConfig,
    /// To the connection thread; it ends when this is dropped.
    requests: Mutex<mpsc::Sender<Request>>,
}

impl std::fmt::Debug for SqlLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLookup")
            .field("table", &self.config.table)
            .field("key", &self.config.key)
            .finish()
    }
}

fn io(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Io {
        connector: "sql",
        reason: e.to_string(),
    }
}

impl SqlLookup {
    /// A lookup on the configured table; it connects on the first lookup, so creating the
    /// table does not need the database up.
    pub fn new(config: SqlLookupConfig) -> Result<Self, ConnectorError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io)?;
        let worker = config.clone();
        std::thread::Builder::new()
            .name(format!("sql-lookup-{}", config.table))
            .spawn(move || serve(rt, worker, rx))
            .map_err(io)?;
        Ok(SqlLookup {
            config,
            requests: Mutex::new(tx),
        })
    }
}

/// The connection thread: answers requests in order, reconnecting after a failure.
fn serve(rt: tokio::runtime::Runtime, config: SqlLookupConfig, rx: mpsc::Receiver<Request>) {
    let mut conn: Option<Conn> = None;
    while let Ok(req) = rx.recv() {
        let answer = rt.block_on(query(&mut conn, &config, &req.keys));
        let _ = req.reply.send(answer);
    }
    if let Some(c) = conn {
        let _ = rt.block_on(c.disconnect());
    }
}

async fn query(conn: &mut Option<Conn>, config: &SqlLookupConfig, keys: &[String]) -> Answer {
    let mut c = match conn.take() {
        Some(c) => c,
        None => tokio::time::timeout(config.timeout, Conn::new(config.opts.clone()))
            .await
            .map_err(|_| io("timed out connecting"))?
            .map_err(io)?,
    };
    let params: Vec<Sql> = keys.iter().map(|k| Sql::from(k.as_str())).collect();
    let rows: Vec<Row> =
        match tokio::time::timeout(config.timeout, c.exec(config.statement(keys.len()), params))
            .await
        {
            Ok(Ok(rows)) => {
                *conn = Some(c);
                rows
            }
            // The server rejected the statement (no such table or column): the connection is
            // fine; anything else may have left it out of step, so the next batch reconnects.
            Ok(Err(e @ mysql_async::Error::Server(_))) => {
                *conn = Some(c);
                return Err(io(e));
            }
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => return Err(io("timed out querying")),
        };
    let mut by_key: HashMap<String, Vec<Bytes>> = HashMap::new();
    for row in rows {
        let columns = row.columns();
        let Some(at) = columns
            .iter()
            .position(|c| c.name_str().eq_ignore_ascii_case(&config.key))
        else {
            return Err(io(format!(
                "table \"{}\" has no column \"{}\"",
                config.table, config.key
            )));
        };
        let values = row.unwrap();
        let key = key_text(&values[at]);
        let mut obj = Map::new();
        for (col, v) in columns.iter().zip(values) {
            obj.insert(col.name_str().into_owned(), json(v, col.column_type()));
        }
        let bytes = serde_json::to_vec(&Value::Object(obj)).map_err(io)?;
        by_key.entry(key).or_default().push(Bytes::from(bytes));
    }
    Ok(keys
        .iter()
        .map(|k| by_key.get(k).cloned().unwrap_or_default())
        .collect())
}

/// A key value as the lookup names keys: strings as themselves, numbers as their text.
fn key_text(v: &Sql) -> String {
    match v {
        Sql::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Sql::Int(i) => i.to_string(),
        Sql::UInt(u) => u.to_string(),
        Sql::Float(f) => Value::from(*f as f64).to_string(),
        Sql::Double(f) => Value::from(*f).to_string(),
        other => json(other.clone(), ColumnType::MYSQL_TYPE_STRING).to_string(),
    }
}

impl LookupSource for SqlLookup {
    fn fetch(&self, keys: &[String]) -> Answer {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .lock()
            .map_err(|_| io("request lock poisoned"))?
            .send(Request {
                keys: keys.to_vec(),
                reply,
            })
            .map_err(|_| io("the connection thread ended"))?;
        // Connecting and querying each have their own timeout on the thread.
        answer
            .recv_timeout(self.config.timeout * 3)
            .map_err(|_| io("no answer from the database in time"))?
    }
}
