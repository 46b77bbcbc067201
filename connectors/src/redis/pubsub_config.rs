//! Settings of the `redisPub` sink and the `redisSub` source (eKuiper's
//! `internal/io/redis/redisPub.go` and `redisSub.go`): `address`, `username`, `password`,
//! `db`, plus the sink's `channel` and the source's `channels`.

use serde_json::{Map, Value};

use super::server::RedisServer;
use crate::ConnectorError;
use crate::props::{Props, action_props};

/// Settings of a redisPub sink.
#[derive(Debug, Clone)]
pub struct RedisPubConfig {
    /// `address`, `username`, `password`, `db`.
    pub server: RedisServer,
    /// The channel every message is published to (`channel`, required).
    pub channel: String,
    /// One message per row instead of one JSON array per batch (`sendSingle`).
    pub send_single: bool,
    /// Publish nothing for a batch without rows (`omitIfEmpty`, default false).
    pub omit_if_empty: bool,
    /// `format` (with `delimiter`, `hasHeader`, `fields`) and `compression`.
    pub format: std::sync::Arc<crate::codec::sink_format::SinkFormat>,
}

impl RedisPubConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let p = action_props("redisPub", props)?;
        p.refuse_unknown_sink_keys(
            "redisPub sink",
            &crate::spec::sink_spec("redisPub").accepted(),
        )?;
        let server = RedisServer::read(&p, "address", RedisServer::db_prop(&p)?)?;
        let channel = match p.string("channel")?.filter(|c| !c.is_empty()) {
            None => return Err(p.error("\"channel\" is required".into())),
            // eKuiper publishes to the channel as written; a template would not be rendered.
            Some(c) if c.contains("{{") => {
                return Err(p.error(format!(
                    "\"channel\" \"{c}\" is not a template here; name one channel"
                )));
            }
            Some(c) => c.to_string(),
        };
        Ok(RedisPubConfig {
            server,
            channel,
            send_single: p.boolean("sendsingle")?.unwrap_or(false),
            omit_if_empty: p.boolean("omitifempty")?.unwrap_or(false),
            format: std::sync::Arc::new(crate::codec::sink_format::SinkFormat::parse(&p, true)?),
        })
    }
}

/// Settings of a redisSub source.
#[derive(Debug, Clone)]
pub struct RedisSubConfig {
    /// `address`, `username`, `password`, `db`.
    pub server: RedisServer,
    /// Channel patterns to subscribe to (`channels`, else `DATASOURCE` split at commas);
    /// eKuiper subscribes with PSUBSCRIBE, so `*`, `?` and `[...]` match as in Redis.
    pub channels: Vec<String>,
}

impl RedisSubConfig {
    /// Validates the stream's `DATASOURCE` and profile.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new("redisSub", props);
        p.refuse_unknown(
            "redisSub source",
            &crate::spec::source_spec("redisSub").accepted(),
        )?;
        // `decompression` is undone by the stream's decoder, on the workers.
        let server = RedisServer::read(&p, "address", RedisServer::db_prop(&p)?)?;
        let listed = match p.get("channels") {
            None => Vec::new(),
            Some((_, Value::String(s))) => split(s),
            Some((name, Value::Array(items))) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    other => Err(p.error(format!(
                        "\"{name}\" must be a list of channel names, got {other} in it"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some((name, other)) => {
                return Err(p.error(format!(
                    "\"{name}\" must be a list of channel names, got {other}"
                )));
            }
        };
        let from_datasource = split(datasource);
        let channels = match (listed.is_empty(), from_datasource.is_empty()) {
            (false, true) => listed,
            (true, false) => from_datasource,
            (false, false) if listed == from_datasource => listed,
            (false, false) => {
                return Err(p.error(format!(
                    "DATASOURCE \"{datasource}\" and \"channels\" name different channels; \
                     give one of them"
                )));
            }
            (true, true) => {
                return Err(p.error(
                    "no channel to subscribe to: set \"channels\" in the profile or DATASOURCE"
                        .into(),
                ));
            }
        };
        Ok(RedisSubConfig { server, channels })
    }
}

/// Channel names separated by commas, blanks dropped.
fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::error::config_reason as reason;

    fn sub(ds: &str, v: Value) -> Result<RedisSubConfig, ConnectorError> {
        RedisSubConfig::parse(ds, v.as_object().unwrap())
    }

    #[test]
    fn pub_settings() {
        let c = RedisPubConfig::parse(&json!({"channel": "c"})).unwrap();
        assert_eq!(c.server.address(), "127.0.0.1:6379");
        assert_eq!(c.channel, "c");
        assert!(!c.send_single && !c.omit_if_empty);
        let c = RedisPubConfig::parse(&json!({"address": "h:1", "db": 3, "channel": "c",
            "username": "u", "password": "p", "sendSingle": true}))
        .unwrap();
        assert_eq!((c.server.db, c.send_single), (3, true));
        let r = |v| reason(RedisPubConfig::parse(&v).unwrap_err());
        assert_eq!(r(json!({})), "\"channel\" is required");
        assert_eq!(
            r(json!({"channel": "c", "addr": "h:1"})),
            "redisPub sink: unknown property \"addr\""
        );
        assert!(r(json!({"channel": "c/{{.id}}"})).contains("not a template"));
        assert!(r(json!({"channel": "c", "db": 20})).contains("0 to 15"));
        assert!(r(json!({"channel": "c", "runAsync": true})).contains("runAsync"));
    }

    #[test]
    fn sub_settings() {
        let c = sub("", json!({"channels": ["a", "b*"], "db": 1})).unwrap();
        assert_eq!(c.channels, ["a", "b*"]);
        assert_eq!(c.server.db, 1);
        assert_eq!(sub("x, y", json!({})).unwrap().channels, ["x", "y"]);
        assert_eq!(sub("x", json!({"channels": "x"})).unwrap().channels, ["x"]);
        let r = |ds, v| reason(sub(ds, v).unwrap_err());
        assert!(r("", json!({})).contains("no channel"));
        assert!(r("a", json!({"channels": ["b"]})).contains("different channels"));
        assert!(r("a", json!({"channels": [1]})).contains("\"channels\""));
        assert_eq!(
            r("a", json!({"adress": "h:1"})),
            "redisSub source: unknown property \"adress\""
        );
        // `decompression` is the decoder's (an empty one is eKuiper's "none").
        sub("a", json!({"decompression": ""})).unwrap();
        sub("a", json!({"decompression": "gzip"})).unwrap();
    }
}
