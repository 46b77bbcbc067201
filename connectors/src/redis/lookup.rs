//! The Redis lookup: one connection, re-opened after a failure, queried once per batch.

use std::sync::Mutex;

use bytes::Bytes;

use super::config::{RedisDataType, RedisLookupConfig};
use crate::ConnectorError;
use crate::lookup::LookupSource;

/// Looks keys up in one Redis database.
pub struct RedisLookup {
    config: RedisLookupConfig,
    client: redis::Client,
    /// Shared by the rule's workers: a lookup is one short round trip, so one connection
    /// serves them; `None` after a failure, so the next batch reconnects.
    conn: Mutex<Option<redis::Connection>>,
}

impl std::fmt::Debug for RedisLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLookup")
            .field("server", &self.config.server.address())
            .field("db", &self.config.server.db)
            .finish()
    }
}

fn io(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Io {
        connector: "redis",
        reason: e.to_string(),
    }
}

impl RedisLookup {
    /// A lookup on the configured server; it connects on the first lookup, so creating the
    /// table does not need the server up (as eKuiper, which connects when a rule starts).
    pub fn new(config: RedisLookupConfig) -> Result<Self, ConnectorError> {
        let client = config.server.client()?;
        Ok(RedisLookup {
            config,
            client,
            conn: Mutex::new(None),
        })
    }

    fn connect(&self) -> Result<redis::Connection, ConnectorError> {
        self.config
            .server
            .connect(&self.client, self.config.timeout)
    }

    fn query(
        &self,
        conn: &mut redis::Connection,
        keys: &[String],
    ) -> redis::RedisResult<Vec<Vec<Bytes>>> {
        match self.config.data_type {
            RedisDataType::String => {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query(conn)?;
                Ok(values
                    .into_iter()
                    .map(|v| v.map(|b| vec![Bytes::from(b)]).unwrap_or_default())
                    .collect())
            }
            RedisDataType::List => {
                let mut pipe = redis::pipe();
                for k in keys {
                    pipe.cmd("LRANGE").arg(k).arg(0).arg(-1);
                }
                let lists: Vec<Vec<Vec<u8>>> = pipe.query(conn)?;
                Ok(lists
                    .into_iter()
                    .map(|l| l.into_iter().map(Bytes::from).collect())
                    .collect())
            }
        }
    }
}

impl LookupSource for RedisLookup {
    fn fetch(&self, keys: &[String]) -> Result<Vec<Vec<Bytes>>, ConnectorError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| io("connection lock poisoned"))?;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        match self.query(&mut conn, keys) {
            Ok(rows) => {
                *guard = Some(conn);
                Ok(rows)
            }
            // A server reply such as WRONGTYPE is the data's fault: the connection is fine. After
            // an I/O error or a timeout the stream may be out of step, so the next batch
            // reconnects.
            Err(e) if !(e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error()) => {
                *guard = Some(conn);
                Err(io(e))
            }
            Err(e) => Err(io(e)),
        }
    }
}
