//! The property tables against the connectors: every key a connector reads is in its table,
//! every default parses, and a table default is what the connector applies when the key is
//! absent.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{ConnectorSpec, PropertySpec, Support, lookups, shared, sinks, sources};
use crate::Connectors;

/// A configuration each connector accepts: the least it needs besides the defaults.
fn base_source(name: &str) -> (&'static str, Value) {
    match name {
        "file" => ("data.json", json!({"path": "/tmp"})),
        "httppull" => ("", json!({"url": "http://127.0.0.1:1/"})),
        "kafka" => ("t", json!({"brokers": "127.0.0.1:9092"})),
        "mqtt" => ("t", json!({"clientId": "fixed"})),
        "redisSub" => ("c", json!({})),
        "sql" => (
            "",
            json!({"url": "mysql://root@127.0.0.1:3306/test",
                   "internalSqlQueryCfg": {"table": "t"}}),
        ),
        "websocket" => ("/ws", json!({})),
        _ => ("t", json!({})),
    }
}

fn base_sink(name: &str) -> Value {
    match name {
        "file" => json!({"path": "/tmp/out.txt"}),
        "kafka" => json!({"brokers": "127.0.0.1:9092", "topic": "t"}),
        "memory" | "mqtt" => json!({"topic": "t", "clientId": "fixed"}),
        "redis" => json!({"key": "k"}),
        "redisPub" => json!({"channel": "c"}),
        "rest" => json!({"url": "http://127.0.0.1:1/"}),
        "sql" => json!({"url": "mysql://root@127.0.0.1:3306/test", "table": "t"}),
        "websocket" => json!({"path": "/ws"}),
        _ => json!({}),
    }
}

fn source_config(name: &str, props: &Value) -> Result<String, String> {
    let (datasource, _) = base_source(name);
    let spec = crate::SourceSpec {
        source_type: name.to_ascii_lowercase(),
        datasource: datasource.into(),
        props: props.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    // The parsed settings, compared through their Debug text: the sources' configs hold no
    // randomness once `clientId` is fixed.
    let p = &spec.props;
    let d = &spec.datasource;
    let parsed = match name {
        "file" => crate::file::FileSourceConfig::parse(d, p).map(|c| format!("{c:?}")),
        "httppull" => crate::httppull::HttpPullConfig::parse(d, p).map(|c| format!("{c:?}")),
        "kafka" => crate::kafka::KafkaSourceConfig::parse(d, p).map(|c| format!("{c:?}")),
        "mqtt" => crate::mqtt::MqttSourceConfig::parse(d, p).map(|c| format!("{c:?}")),
        "redisSub" => crate::redis::RedisSubConfig::parse(d, p).map(|c| format!("{c:?}")),
        "simulator" => crate::simulator::SimulatorConfig::parse(d, p).map(|c| format!("{c:?}")),
        "sql" => crate::sql::SqlSourceConfig::parse(d, p).map(|c| format!("{c:?}")),
        "websocket" => {
            crate::websocket::WebsocketSourceConfig::parse(d, p).map(|c| format!("{c:?}"))
        }
        "memory" | "httppush" => {
            crate::memory::MemorySourceConfig::parse(d, p).map(|c| format!("{c:?}"))
        }
        other => panic!("no parser for source {other}"),
    };
    parsed.map_err(|e| e.to_string())
}

fn sink_config(name: &str, props: &Value) -> Result<String, String> {
    let parsed = match name {
        "file" => crate::file::FileSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "kafka" => crate::kafka::KafkaSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "log" => crate::log::LogSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "memory" => crate::memory::MemorySinkConfig::parse(props).map(|c| format!("{c:?}")),
        "mqtt" => crate::mqtt::MqttSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "nop" => crate::nop::NopSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "redis" => crate::redis::RedisSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "redisPub" => crate::redis::RedisPubConfig::parse(props).map(|c| format!("{c:?}")),
        "rest" => crate::rest::RestSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "sql" => crate::sql::SqlSinkConfig::parse(props).map(|c| format!("{c:?}")),
        "websocket" => {
            crate::websocket::WebsocketSinkConfig::parse(props).map(|c| format!("{c:?}"))
        }
        other => panic!("no parser for sink {other}"),
    };
    parsed.map_err(|e| e.to_string())
}

fn lookup_config(name: &str, props: &Value) -> Result<String, String> {
    let p = props.as_object().cloned().unwrap_or_default();
    let parsed = match name {
        "httppull" => {
            crate::httppull::HttpPullConfig::parse_lookup("", &p).map(|c| format!("{c:?}"))
        }
        "redis" => crate::redis::RedisLookupConfig::parse("0", &p).map(|c| format!("{c:?}")),
        "sql" => crate::sql::SqlLookupConfig::parse("t", "id", &p).map(|c| format!("{c:?}")),
        other => panic!("no parser for lookup {other}"),
    };
    parsed.map_err(|e| e.to_string())
}

fn base_lookup(name: &str) -> Value {
    match name {
        "httppull" => json!({"url": "http://127.0.0.1:1/"}),
        "sql" => json!({"url": "mysql://root@127.0.0.1:3306/test"}),
        _ => json!({}),
    }
}

type Parser = fn(&str, &Value) -> Result<String, String>;

/// Every table with the least configuration its connector accepts and its parser.
fn every_table() -> Vec<(&'static ConnectorSpec, Value, Parser)> {
    let sources = sources()
        .iter()
        .map(|s| (s, base_source(s.name).1, source_config as Parser));
    let sinks = sinks()
        .iter()
        .map(|s| (s, base_sink(s.name), sink_config as Parser));
    let lookups = lookups()
        .iter()
        .map(|s| (s, base_lookup(s.name), lookup_config as Parser));
    sources.chain(sinks).chain(lookups).collect()
}

fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut map: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
    map.insert(key.to_string(), value);
    Value::Object(map)
}

#[test]
fn every_connector_type_has_one_table() {
    let registry = Connectors::new();
    let sources: BTreeSet<String> = sources()
        .iter()
        .map(|s| s.name.to_ascii_lowercase())
        .collect();
    let known: BTreeSet<String> = registry
        .source_types()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(sources, known, "source tables vs the registry");
    let sinks: BTreeSet<&str> = sinks().iter().map(|s| s.name).collect();
    let known: BTreeSet<&str> = registry.sink_types().iter().copied().collect();
    assert_eq!(sinks, known, "sink tables vs the registry");
    // Memory lookup tables read the memory bus, no profile.
    let lookups: BTreeSet<&str> = lookups().iter().map(|s| s.name).collect();
    let known: BTreeSet<&str> = registry
        .lookup_types()
        .iter()
        .copied()
        .filter(|t| *t != "memory")
        .collect();
    assert_eq!(lookups, known, "lookup tables vs the registry");
}

#[test]
fn names_are_unique_and_defaults_are_json() {
    for spec in sources().iter().chain(sinks()).chain(lookups()) {
        let mut seen = BTreeSet::new();
        for p in spec.properties() {
            assert!(
                seen.insert(p.name.to_ascii_lowercase()),
                "{} lists {} twice",
                spec.name,
                p.name
            );
            if let Some(d) = p.default {
                assert!(
                    serde_json::from_str::<Value>(d).is_ok(),
                    "{}.{}: default {d} is not JSON",
                    spec.name,
                    p.name
                );
            }
            assert!(!p.help.is_empty(), "{}.{} has no help", spec.name, p.name);
        }
    }
}

/// Every property a table lists as read is accepted, and setting it to its default changes
/// nothing: the table's default is the connector's.
#[test]
fn table_defaults_are_what_the_connectors_apply() {
    let mut wrong = Vec::new();
    for (spec, base, parse) in every_table() {
        let plain = parse(spec.name, &base)
            .unwrap_or_else(|e| panic!("{:?} {}: base config refused: {e}", spec.role, spec.name));
        // TLS settings are refused on plain connections, whatever their value.
        let tls = |p: &&PropertySpec| !shared::TLS.iter().any(|t| t.name == p.name);
        let read = spec
            .properties()
            .filter(|p| p.support == Support::Read)
            .filter(tls);
        for p in read {
            let Some(default) = p.default_value() else {
                continue;
            };
            let what = format!("{:?} {}.{} default {default}", spec.role, spec.name, p.name);
            match parse(spec.name, &with(&base, p.name, default)) {
                Ok(set) if set == plain => {}
                Ok(set) => wrong.push(format!("{what}:\n{set}\n{plain}")),
                Err(e) => wrong.push(format!("{what}: refused: {e}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every key a connector reads while parsing appears in its table, unless the connector
/// refuses it (keys read only to refuse them with a hint, keys of nested objects, keys another
/// role reads through shared code): a property cannot be taken without being documented.
#[test]
fn every_key_the_connectors_read_is_in_their_tables() {
    let mut missing = Vec::new();
    for (spec, base, parse) in every_table() {
        crate::props::recorded_reads();
        let _ = parse(spec.name, &base);
        for key in crate::props::recorded_reads() {
            if spec.property(&key).is_some() {
                continue;
            }
            let refused = match parse(spec.name, &with(&base, &key, json!(1))) {
                Err(e) => {
                    e.contains(&format!("\"{key}\""))
                        && (e.contains("unknown property") || e.contains("supported"))
                }
                Ok(_) => false,
            };
            if !refused {
                missing.push(format!("{:?} {} reads \"{key}\"", spec.role, spec.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the tables: {}",
        missing.join(", ")
    );
}

/// A key a table does not list is refused (or warned about) like any unknown one.
#[test]
fn a_key_outside_the_table_is_refused() {
    let err = crate::kafka::KafkaSourceConfig::parse(
        "t",
        json!({"brokers": "127.0.0.1:9092", "maxBites": 5})
            .as_object()
            .expect("object"),
    )
    .expect_err("an unknown key");
    assert!(
        err.to_string().contains("unknown property \"maxBites\""),
        "{err}"
    );
}
