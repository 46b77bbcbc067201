//! What the `redis` sink writes for each row, eKuiper's way, gathered into one pipeline per
//! batch:
//!
//! - the row kind (`rowkindField`, default upsert): `insert`, `update` and `upsert` write,
//!   `delete` removes; any other value, or a value that is not a string, is that row's error;
//! - the keys: `field`'s value in the row (a missing one is that row's error), else `key`;
//!   with `keyType` "multiple" every field of the row is a key holding its value as text
//!   (strings as they are, numbers and booleans as written in JSON, objects and arrays as
//!   JSON). As in eKuiper, that includes the `rowkindField` itself;
//! - the command: `SET key value [EX expiration]` or `LPUSH key value` to write, `DEL key`
//!   or `LPOP key` to delete.

use serde_json::{Map, Value};

use super::config::RedisDataType;
use super::sink_config::{RedisKey, RedisSinkConfig};

/// The commands of one batch and what each answer belongs to.
pub(super) struct Plan {
    /// The pipelined commands, sent as one round trip.
    pub pipe: redis::Pipeline,
    /// For each command, the row it was made from.
    pub row_of: Vec<usize>,
    /// Rows that produced no command, with why.
    pub failures: Vec<(usize, String)>,
}

impl RedisSinkConfig {
    /// True when commands depend on the rows' values (not only on their JSON text).
    pub(super) fn needs_rows(&self) -> bool {
        !matches!(self.key, RedisKey::Fixed(_)) || self.rowkind_field.is_some()
    }

    /// True when values are whole rows as JSON (`keyType` "single").
    pub(super) fn needs_json(&self) -> bool {
        self.key != RedisKey::PerField
    }

    /// The commands for `n` rows: `rows` holds their values when [`Self::needs_rows`], `json`
    /// their JSON text when [`Self::needs_json`] (made from `rows` when empty).
    pub(super) fn plan(&self, n: usize, rows: &[Map<String, Value>], json: &[Vec<u8>]) -> Plan {
        let mut plan = Plan {
            pipe: redis::pipe(),
            row_of: Vec::with_capacity(n),
            failures: Vec::new(),
        };
        let empty = Map::new();
        for i in 0..n {
            let row = rows.get(i).unwrap_or(&empty);
            let delete = match self.row_kind(row) {
                Ok(delete) => delete,
                Err(e) => {
                    plan.failures.push((i, e));
                    continue;
                }
            };
            let pairs = match &self.key {
                RedisKey::PerField => row.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                single => {
                    let key = match single {
                        RedisKey::Field(f) => match key_text(f, row.get(f)) {
                            Ok(k) => k,
                            Err(e) => {
                                plan.failures.push((i, e));
                                continue;
                            }
                        },
                        RedisKey::Fixed(k) => k.clone(),
                        RedisKey::PerField => unreachable!("matched above"),
                    };
                    let value = match json.get(i) {
                        Some(j) => j.clone(),
                        None => serde_json::to_vec(row).unwrap_or_default(),
                    };
                    vec![(key, value)]
                }
            };
            for (key, value) in pairs {
                self.command(&mut plan.pipe, delete, key, value);
                plan.row_of.push(i);
            }
        }
        plan
    }

    /// Whether `row` deletes (else it writes); an error when its kind is not one eKuiper knows.
    fn row_kind(&self, row: &Map<String, Value>) -> Result<bool, String> {
        let Some(field) = &self.rowkind_field else {
            return Ok(false);
        };
        match row.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::String(kind)) => match kind.as_str() {
                "insert" | "update" | "upsert" => Ok(false),
                "delete" => Ok(true),
                other => Err(format!(
                    "rowkind field \"{field}\" is \"{other}\"; expected insert, update, upsert \
                     or delete"
                )),
            },
            Some(other) => Err(format!(
                "rowkind field \"{field}\" must be a string, got {other}"
            )),
        }
    }

    fn command(&self, pipe: &mut redis::Pipeline, delete: bool, key: String, value: Vec<u8>) {
        match (self.data_type, delete) {
            (RedisDataType::String, false) => {
                pipe.cmd("SET").arg(key).arg(value);
                if let Some(secs) = self.expiration {
                    pipe.arg("EX").arg(secs);
                }
            }
            (RedisDataType::List, false) => {
                pipe.cmd("LPUSH").arg(key).arg(value);
            }
            (RedisDataType::String, true) => {
                pipe.cmd("DEL").arg(key);
            }
            (RedisDataType::List, true) => {
                pipe.cmd("LPOP").arg(key);
            }
        }
    }
}

/// A value as Redis text: strings as they are, anything else as JSON.
fn text(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// The key a row's `field` value names: a string, number or boolean.
fn key_text(field: &str, value: Option<&Value>) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Err(format!("field \"{field}\" does not exist in the row")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(other) => Err(format!(
            "field \"{field}\" must be a string, number or boolean to be a key, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(props: Value) -> RedisSinkConfig {
        RedisSinkConfig::parse(&props).unwrap()
    }

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    /// The commands as text, one string per command.
    fn commands(plan: &Plan) -> Vec<String> {
        plan.pipe
            .cmd_iter()
            .map(|c| {
                c.args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => "<other>".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn single_keys_write_rows_as_json() {
        let c = config(json!({"field": "id", "expiration": 10, "rowkindField": "op"}));
        let r = rows(
            json!([{"id": 1, "op": "insert"}, {"id": "b", "op": "delete"},
                            {"id": 2.5}, {"op": "update"}, {"id": 3, "op": "merge"},
                            {"id": {"a": 1}}]),
        );
        let plan = c.plan(r.len(), &r, &[]);
        assert_eq!(
            commands(&plan),
            [
                r#"SET 1 {"id":1,"op":"insert"} EX 10"#,
                "DEL b",
                r#"SET 2.5 {"id":2.5} EX 10"#
            ]
        );
        assert_eq!(plan.row_of, [0, 1, 2]);
        let failed: Vec<usize> = plan.failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, [3, 4, 5]);
        assert!(plan.failures[0].1.contains("\"id\" does not exist"));
        assert!(plan.failures[1].1.contains("\"merge\""));
    }

    #[test]
    fn lists_and_multiple_keys() {
        let c = config(json!({"key": "k", "dataType": "list"}));
        let plan = c.plan(2, &[], &[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
        assert_eq!(
            commands(&plan),
            [r#"LPUSH k {"a":1}"#, r#"LPUSH k {"a":2}"#]
        );
        assert!(!c.needs_rows() && c.needs_json());
        let c = config(json!({"keyType": "multiple", "rowkindField": "op"}));
        assert!(c.needs_rows() && !c.needs_json());
        let r = rows(json!([{"t": 20.5, "s": "x", "b": true, "o": [1]},
                            {"t": 1, "op": "delete"}]));
        let plan = c.plan(2, &r, &[]);
        assert_eq!(
            commands(&plan),
            [
                "SET b true",
                "SET o [1]",
                "SET s x",
                "SET t 20.5",
                "DEL op",
                "DEL t"
            ]
        );
        assert_eq!(plan.row_of, [0, 0, 0, 0, 1, 1]);
    }
}
