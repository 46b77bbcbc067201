//! The Redis server a connector talks to: address, credentials and database, read the same way
//! by the lookup, the sinks and the subscriber, and the client built from them.
//!
//! Why the synchronous client: the workspace builds `redis` without its `aio` (tokio) feature.
//! Each connector here does one blocking step at a time on a thread of its own (a sink's
//! pipelined batch on `spawn_blocking`, the subscriber on a dedicated reader thread), so the
//! async client would buy no concurrency, while its feature adds `async-lock`, the tokio
//! codec layer and the crate's async connection code to every build. One `spawn_blocking` hop
//! per batch costs microseconds against a network round trip.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::ConnectorError;
use crate::props::Props;

/// The server eKuiper's Redis connectors use when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";

/// Where a Redis connector connects, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisServer {
    /// Host of the address.
    pub host: String,
    /// Port of the address.
    pub port: u16,
    /// `username` (Redis 6 ACL), with `password`.
    pub username: Option<String>,
    /// `password`, if the server wants one.
    pub password: Option<String>,
    /// The database number, 0 to 15.
    pub db: i64,
}

impl RedisServer {
    /// Reads the address under `addr_key` (`addr` or `address`; `host:port`, optionally with
    /// `tcp://` or `redis://`), `username`, `password`, and the database number `db`.
    pub(crate) fn read(p: &Props<'_>, addr_key: &str, db: i64) -> Result<Self, ConnectorError> {
        let addr = p.string(addr_key)?.unwrap_or(DEFAULT_ADDR);
        let bare = addr
            .trim()
            .trim_start_matches("tcp://")
            .trim_start_matches("redis://");
        let (host, port) = bare
            .rsplit_once(':')
            .and_then(|(h, port)| Some((h, port.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| p.error(format!("\"{addr_key}\" must be host:port, got \"{addr}\"")))?;
        let text = |key| -> Result<Option<String>, ConnectorError> {
            Ok(p.string(key)?.filter(|s| !s.is_empty()).map(String::from))
        };
        Ok(RedisServer {
            host: host.to_string(),
            port,
            username: text("username")?,
            password: text("password")?,
            db,
        })
    }

    /// The `db` property: a database number 0 to 15 (eKuiper's range), 0 when absent.
    pub(crate) fn db_prop(p: &Props<'_>) -> Result<i64, ConnectorError> {
        let db = match p.get("db") {
            None => 0,
            Some((name, v)) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| p.error(format!("\"{name}\" must be a database number, got {v}")))?,
        };
        if !(0..=15).contains(&db) {
            return Err(p.error(format!("the database number must be 0 to 15, got {db}")));
        }
        Ok(db)
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A client for this server; nothing is connected yet.
    pub fn client(&self) -> Result<redis::Client, ConnectorError> {
        let mut info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(p) = &self.password {
            info = info.set_password(p);
        }
        if let Some(u) = &self.username {
            info = info.set_username(u);
        }
        let addr = ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .map_err(|e| self.error(e))?
            .set_redis_settings(info);
        redis::Client::open(addr).map_err(|e| self.error(e))
    }

    /// Connects with `timeout` for the connection and for each read and write.
    pub fn connect(
        &self,
        client: &redis::Client,
        timeout: Duration,
    ) -> Result<redis::Connection, ConnectorError> {
        let conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| self.error(e))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| self.error(e))?;
        conn.set_write_timeout(Some(timeout))
            .map_err(|e| self.error(e))?;
        Ok(conn)
    }

    /// An I/O error naming this server.
    pub fn error(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Io {
            connector: "redis",
            reason: format!("{}: {e}", self.address()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn read(v: Value) -> Result<RedisServer, ConnectorError> {
        let map = v.as_object().unwrap().clone();
        let p = Props::new("redis", &map);
        let db = RedisServer::db_prop(&p)?;
        RedisServer::read(&p, "addr", db)
    }

    #[test]
    fn addresses_credentials_and_databases() {
        let s = read(json!({})).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.db), ("127.0.0.1", 6379, 0));
        let s = read(json!({"addr": "tcp://h:7000", "db": "3", "username": "u",
                            "password": "p"}))
        .unwrap();
        assert_eq!((s.host.as_str(), s.port, s.db), ("h", 7000, 3));
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(s.address(), "h:7000");
        for bad in [
            json!({"addr": "nohost"}),
            json!({"addr": ":1"}),
            json!({"db": 16}),
            json!({"db": -1}),
            json!({"db": "x"}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }
}
