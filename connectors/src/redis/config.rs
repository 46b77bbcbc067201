//! Settings of the Redis lookup source.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::Props;

use super::server::RedisServer;

/// How the rows of a key are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDataType {
    /// A string holding one JSON object (`GET`).
    String,
    /// A list of JSON objects, each one row (`LRANGE key 0 -1`).
    List,
}

impl RedisDataType {
    /// The `dataType` property: "string" (the default) or "list".
    pub(crate) fn read(p: &Props<'_>) -> Result<Self, ConnectorError> {
        match p.string("datatype")?.map(str::trim) {
            None | Some("string") => Ok(RedisDataType::String),
            Some("list") => Ok(RedisDataType::List),
            Some(other) => Err(p.error(format!(
                "\"dataType\" must be \"string\" or \"list\", got \"{other}\""
            ))),
        }
    }
}

/// Settings of a Redis lookup table.
#[derive(Debug, Clone)]
pub struct RedisLookupConfig {
    /// `addr`, `username`, `password`, and the database number (`DATASOURCE`).
    pub server: RedisServer,
    /// `dataType`: how rows are stored.
    pub data_type: RedisDataType,
    /// Connect, read and write timeout: short, since lookups run inside the rule.
    pub timeout: Duration,
}

/// Connect/read/write timeout when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisLookupConfig {
    /// Validates `DATASOURCE` (the database number) and the profile's properties.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new("redis", props);
        // `lookup` holds the cache settings, read by the engine for every lookup table.
        p.check_spec("redis lookup", crate::spec::lookup_spec("redis"));
        let db: i64 = datasource.trim().parse().map_err(|_| {
            p.error(format!(
                "DATASOURCE must be the database number, got \"{datasource}\""
            ))
        })?;
        if !(0..=15).contains(&db) {
            return Err(p.error(format!("the database number must be 0 to 15, got {db}")));
        }
        let server = RedisServer::read(&p, "addr", db)?;
        let data_type = RedisDataType::read(&p)?;
        let timeout = match p.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some((name, v)) => v
                .as_u64()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| p.error(format!("\"{name}\" must be milliseconds, got {v}")))?,
        };
        Ok(RedisLookupConfig {
            server,
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
        assert_eq!(
            (c.server.host.as_str(), c.server.port, c.server.db),
            ("127.0.0.1", 6379, 0)
        );
        assert_eq!(c.data_type, RedisDataType::String);
        let c = parse(
            "3",
            serde_json::json!({"addr": "tcp://h:7000", "datatype": "list"}),
        )
        .unwrap();
        assert_eq!(
            (c.server.host.as_str(), c.server.port, c.server.db),
            ("h", 7000, 3)
        );
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
