//! Settings of the Redis lookup source.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::Props;

/// How the rows of a key are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDataType {
    /// A string holding one JSON object (`GET`).
    String,
    /// A list of JSON objects, each one row (`LRANGE key 0 -1`).
    List,
}

/// Settings of a Redis lookup table.
#[derive(Debug, Clone)]
pub struct RedisLookupConfig {
    /// Host of `addr`.
    pub host: String,
    /// Port of `addr`.
    pub port: u16,
    /// `password`, if the server wants one.
    pub password: Option<String>,
    /// `username` (Redis 6 ACL), with `password`.
    pub username: Option<String>,
    /// The database number (`DATASOURCE`).
    pub db: i64,
    /// `dataType`: how rows are stored.
    pub data_type: RedisDataType,
    /// Connect, read and write timeout: short, since lookups run inside the rule.
    pub timeout: Duration,
}

/// The server eKuiper's profile points at by default.
const DEFAULT_ADDR: &str = "127.0.0.1:6379";

/// Connect/read/write timeout when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisLookupConfig {
    /// Validates `DATASOURCE` (the database number) and the profile's properties.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new("redis", props);
        // `lookup` holds the cache settings, read by the engine for every lookup table.
        p.check_keys(
            "redis lookup",
            &["addr", "password", "username", "datatype", "timeout"],
            &["lookup"],
            &[],
        );
        let db: i64 = datasource.trim().parse().map_err(|_| {
            p.error(format!(
                "DATASOURCE must be the database number, got \"{datasource}\""
            ))
        })?;
        if !(0..=15).contains(&db) {
            return Err(p.error(format!("the database number must be 0 to 15, got {db}")));
        }
        let addr = p.string("addr")?.unwrap_or(DEFAULT_ADDR);
        let bare = addr
            .trim()
            .trim_start_matches("tcp://")
            .trim_start_matches("redis://");
        let (host, port) = bare
            .rsplit_once(':')
            .and_then(|(h, port)| Some((h, port.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| p.error(format!("\"addr\" must be host:port, got \"{addr}\"")))?;
        let data_type = match p.string("datatype")?.map(str::trim) {
            None | Some("string") => RedisDataType::String,
            Some("list") => RedisDataType::List,
            Some(other) => {
                return Err(p.error(format!(
                    "\"dataType\" must be \"string\" or \"list\", got \"{other}\""
                )));
            }
        };
        let timeout = match p.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some((name, v)) => v
                .as_u64()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| p.error(format!("\"{name}\" must be milliseconds, got {v}")))?,
        };
        Ok(RedisLookupConfig {
            host: host.to_string(),
            port,
            password: p
                .string("password")?
                .filter(|s| !s.is_empty())
                .map(String::from),
            username: p
                .string("username")?
                .filter(|s| !s.is_empty())
                .map(String::from),
            db,
            data_type,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ds: &str, v: Value) -> Result<RedisLookupConfig, ConnectorError> {
        RedisLookupConfig::parse(ds, v.as_object().unwrap())
    }

    #[test]
    fn defaults_follow_ekuiper() {
        let c = parse("0", serde_json::json!({})).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("127.0.0.1", 6379, 0));
        assert_eq!(c.data_type, RedisDataType::String);
        let c = parse(
            "3",
            serde_json::json!({"addr": "tcp://h:7000", "datatype": "list"}),
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("h", 7000, 3));
        assert_eq!(c.data_type, RedisDataType::List);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(parse("x", serde_json::json!({})).is_err());
        assert!(parse("16", serde_json::json!({})).is_err());
        assert!(parse("0", serde_json::json!({"addr": "nohost"})).is_err());
        assert!(parse("0", serde_json::json!({"dataType": "hash"})).is_err());
    }
}
