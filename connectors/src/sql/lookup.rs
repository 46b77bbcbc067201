//! The SQL lookup: a dedicated thread owns the connection and a small runtime for the async
//! drivers, so the dataflow worker asking for keys blocks only on a channel, and the runtime is
//! never dropped inside another runtime (tables are dropped from REST handlers). One query per
//! batch of keys (`WHERE key IN (...)`), on MySQL/MariaDB, PostgreSQL or SQLite.

use std::collections::HashMap;
use std::sync::{Mutex, mpsc};

use bytes::Bytes;
use serde_json::Value;

use super::config::SqlLookupConfig;
use super::driver::Connection;
use crate::ConnectorError;
use crate::lookup::LookupSource;

/// The rows of each asked key, or why the query failed.
type Answer = Result<Vec<Vec<Bytes>>, ConnectorError>;

/// One batch's keys and where to send the answer.
struct Request {
    keys: Vec<String>,
    reply: mpsc::SyncSender<Answer>,
}

/// Looks keys up in one database table.
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
    let mut conn: Option<Connection> = None;
    while let Ok(req) = rx.recv() {
        let answer = rt.block_on(query(&mut conn, &config, &req.keys));
        let _ = req.reply.send(answer);
    }
    if let Some(c) = conn {
        rt.block_on(c.close());
    }
}

async fn query(conn: &mut Option<Connection>, config: &SqlLookupConfig, keys: &[String]) -> Answer {
    let mut c = match conn.take() {
        Some(c) => c,
        None => tokio::time::timeout(config.timeout, Connection::open(&config.url))
            .await
            .map_err(|_| io("timed out connecting"))?
            .map_err(io)?,
    };
    let rows = match tokio::time::timeout(config.timeout, c.query(&config.statement(keys))).await {
        Ok(Ok(rows)) => {
            *conn = Some(c);
            rows
        }
        // The server refused the statement (no such table or column): the connection is
        // fine; anything else may have left it out of step, so the next batch reconnects.
        Ok(Err(e)) => {
            if !e.broken {
                *conn = Some(c);
            }
            return Err(io(e));
        }
        Err(_) => return Err(io("timed out querying")),
    };
    let mut by_key: HashMap<String, Vec<Bytes>> = HashMap::new();
    for row in rows {
        let Some(value) = row
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&config.key))
            .map(|(_, v)| v)
        else {
            return Err(io(format!(
                "table \"{}\" has no column \"{}\"",
                config.table, config.key
            )));
        };
        let key = key_text(value);
        let bytes = serde_json::to_vec(&Value::Object(row)).map_err(io)?;
        by_key.entry(key).or_default().push(Bytes::from(bytes));
    }
    Ok(keys
        .iter()
        .map(|k| by_key.get(k).cloned().unwrap_or_default())
        .collect())
}

/// A key value as the lookup names keys: strings as themselves, numbers as their text.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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
