//! Settings of the `redis` sink, parsed and validated once from eKuiper's properties
//! (`internal/io/redis/sink.go`: `addr`, `username`, `password`, `db`, `key`, `field`,
//! `keyType`, `dataType`, `expiration`, `rowkindField`).

use serde_json::Value;

use super::config::RedisDataType;
use super::server::RedisServer;
use crate::ConnectorError;
use crate::props::action_props;

/// Where a row is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisKey {
    /// `keyType` "single" with `field`: the row's value of that field is the key, the row as
    /// JSON the value.
    Field(String),
    /// `keyType` "single" with only `key`: every row goes to this key.
    Fixed(String),
    /// `keyType` "multiple": each field of the row is a key of its own holding the field's
    /// value as text.
    PerField,
}

/// Settings of a redis sink.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    /// `addr`, `username`, `password`, `db`.
    pub server: RedisServer,
    /// `key` / `field` / `keyType`.
    pub key: RedisKey,
    /// `dataType`: SET (string) or LPUSH (list).
    pub data_type: RedisDataType,
    /// `expiration` in seconds for string keys (`SET ... EX`); None keeps keys forever
    /// (eKuiper's default -1).
    pub expiration: Option<u64>,
    /// `rowkindField`: the field holding `insert`, `update`, `upsert` or `delete`.
    pub rowkind_field: Option<String>,
}

impl RedisSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let p = action_props("redis", props)?;
        // `sendSingle` and `omitIfEmpty` change nothing here: rows are written one by one
        // whatever the batch, and an empty batch writes nothing.
        p.refuse_unknown_sink_keys("redis sink", &crate::spec::sink_spec("redis").accepted())?;
        let db = RedisServer::db_prop(&p)?;
        let server = RedisServer::read(&p, "addr", db)?;
        // Templates are not rendered in these names (eKuiper reads them as they are), so a
        // `{{` is refused rather than written into Redis as text.
        let name = |key: &str| -> Result<Option<String>, ConnectorError> {
            match p.string(key)?.filter(|s| !s.is_empty()) {
                Some(s) if s.contains("{{") => Err(p.error(format!(
                    "\"{key}\" \"{s}\" is not a template here; use \"field\" to take the key \
                     from each row"
                ))),
                other => Ok(other.map(String::from)),
            }
        };
        let (key, field) = (name("key")?, name("field")?);
        let key = match p.string("keytype")?.map(str::trim) {
            None | Some("single") => match (field, key) {
                (Some(f), _) => RedisKey::Field(f),
                (None, Some(k)) => RedisKey::Fixed(k),
                (None, None) => {
                    return Err(p.error(
                        "\"key\" or \"field\" is required when \"keyType\" is \"single\"".into(),
                    ));
                }
            },
            Some("multiple") => {
                if let Some((k, _)) = [("key", &key), ("field", &field)]
                    .into_iter()
                    .find(|(_, v)| v.is_some())
                {
                    return Err(p.error(format!(
                        "\"{k}\" does not apply when \"keyType\" is \"multiple\" (each field \
                         is its own key)"
                    )));
                }
                RedisKey::PerField
            }
            Some(other) => {
                return Err(p.error(format!(
                    "\"keyType\" must be \"single\" or \"multiple\", got \"{other}\""
                )));
            }
        };
        let data_type = RedisDataType::read(&p)?;
        let expiration = match p.get("expiration") {
            None => None,
            Some((name, v)) => {
                let secs = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| {
                        p.error(format!("\"{name}\" must be a number of seconds, got {v}"))
                    })?;
                // eKuiper's default is -1: no expiration; 0 and below mean the same.
                u64::try_from(secs).ok().filter(|s| *s > 0)
            }
        };
        if expiration.is_some() && data_type == RedisDataType::List {
            return Err(p.error(
                "\"expiration\" applies to \"dataType\" \"string\" only, not \"list\"".into(),
            ));
        }
        let rowkind_field = p
            .string("rowkindfield")?
            .filter(|s| !s.is_empty())
            .map(String::from);
        p.boolean("sendsingle")?;
        p.boolean("omitifempty")?;
        Ok(RedisSinkConfig {
            server,
            key,
            data_type,
            expiration,
            rowkind_field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(props: Value) -> String {
        crate::error::config_reason(RedisSinkConfig::parse(&props).unwrap_err())
    }

    #[test]
    fn defaults_follow_ekuiper() {
        let c = RedisSinkConfig::parse(&json!({"key": "k"})).unwrap();
        assert_eq!(c.server.address(), "127.0.0.1:6379");
        assert_eq!(c.server.db, 0);
        assert_eq!(c.key, RedisKey::Fixed("k".into()));
        assert_eq!(c.data_type, RedisDataType::String);
        assert_eq!((c.expiration, c.rowkind_field), (None, None));
        // `field` wins over `key`; -1 is eKuiper's "never expires".
        let c = RedisSinkConfig::parse(&json!({"addr": "h:1", "db": 2, "key": "k",
            "field": "id", "expiration": -1, "rowkindField": "action", "sendSingle": true}))
        .unwrap();
        assert_eq!(c.key, RedisKey::Field("id".into()));
        assert_eq!(c.expiration, None);
        assert_eq!(c.rowkind_field.as_deref(), Some("action"));
        let c = RedisSinkConfig::parse(
            &json!({"keyType": "multiple", "dataType": "list", "enableCache": false}),
        )
        .unwrap();
        assert_eq!(
            (c.key, c.data_type),
            (RedisKey::PerField, RedisDataType::List)
        );
        let c = RedisSinkConfig::parse(&json!({"key": "k", "expiration": "30"})).unwrap();
        assert_eq!(c.expiration, Some(30));
    }

    #[test]
    fn refusals_name_the_property() {
        assert_eq!(
            reason(json!({"key": "k", "expire": "10"})),
            "redis sink: unknown property \"expire\""
        );
        assert_eq!(
            reason(json!({"key": "k", "keyField": "id"})),
            "redis sink: unknown property \"keyField\""
        );
        assert!(reason(json!({})).contains("\"key\" or \"field\""));
        assert!(reason(json!({"key": "k", "keyType": "many"})).contains("keyType"));
        assert!(reason(json!({"keyType": "multiple", "field": "id"})).contains("\"field\""));
        assert!(reason(json!({"key": "k", "dataType": "hash"})).contains("dataType"));
        assert!(reason(json!({"key": "k", "db": 16})).contains("0 to 15"));
        assert!(reason(json!({"key": "k", "addr": "nope"})).contains("\"addr\""));
        assert!(reason(json!({"key": "k", "expiration": "soon"})).contains("expiration"));
        assert!(
            reason(json!({"key": "k", "dataType": "list", "expiration": 5})).contains("expiration")
        );
        assert!(reason(json!({"key": "{{.id}}"})).contains("\"field\""));
        assert!(reason(json!({"key": "k", "sendSingle": "yes"})).contains("sendSingle"));
        assert!(reason(json!({"key": "k", "concurrency": 2})).contains("concurrency"));
    }
}
