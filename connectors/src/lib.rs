//! Quiver's connectors: the source and sink traits the runtime drives, payload codecs, and the
//! built-in connectors.
//!
//! - A [`Source`] runs as a tokio task and pushes [`SourceEvent`]s into a bounded channel; a full
//!   channel suspends the source (back-pressure, nothing dropped).
//! - A [`Sink`] receives whole Arrow batches (`collect_list`), never one call per row.
//! - Payloads are decoded on the dataflow workers ([`codec::Decoder`], by `FORMAT`), so decoding
//!   scales with the worker count instead of running on one source thread.
//!
//! Entry point: [`Connectors`], the registry of connector types by name.

pub mod codec;
pub mod error;
pub mod file;
pub mod http;
pub mod httppull;
pub mod kafka;
pub mod log;
pub mod lookup;
pub mod memory;
pub mod mqtt;
pub mod nop;
mod props;
pub mod redis;
pub mod rest;
pub mod simulator;
pub mod spec;
pub mod sql;
pub mod tls;
pub mod traits;
pub mod websocket;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

pub use error::ConnectorError;
pub use traits::{
    EventLog, RawMessage, Refused, Sink, Source, SourceEvent, SourceOutput, TrySend, WakeFn,
};

/// What a stream asks of its source connector.
#[derive(Debug, Clone, Default)]
pub struct SourceSpec {
    /// Connector type (`memory`, `mqtt`, ...).
    pub source_type: String,
    /// `DATASOURCE`: topic, path or address.
    pub datasource: String,
    /// Connection properties (from the stream's `CONF_KEY` profile).
    pub props: Map<String, Value>,
    /// The stream's `FORMAT`, lower case (empty: `json`). The file source reads files of
    /// another format as lines, one message each.
    pub format: String,
}

/// Refuses eKuiper's `connectionSelector` on a built-in connector other than `mqtt`: only
/// MQTT connections are shared in this build, and the property must not be silently ignored.
fn refuse_selector(
    role: &str,
    connector: &str,
    props: &Map<String, Value>,
) -> Result<(), ConnectorError> {
    if connector == "mqtt" {
        return Ok(());
    }
    match props
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("connectionSelector") && !v.is_null())
    {
        Some((name, _)) => Err(ConnectorError::Config {
            connector: "connection",
            reason: format!(
                "\"{name}\" on a {connector} {role}: only mqtt connections can be shared in \
                 this build"
            ),
        }),
        None => Ok(()),
    }
}

/// Makes sinks of one type registered at run time (a sink plugin): one per rule action.
pub trait SinkFactory: Send + Sync + std::fmt::Debug {
    /// Creates and configures a sink from the action's properties.
    fn create(&self, props: &Value) -> Result<Box<dyn Sink>, ConnectorError>;
}

/// Makes sources of one type registered at run time (a source plugin).
pub trait SourceFactory: Send + Sync + std::fmt::Debug {
    /// Creates and configures a source for a stream.
    fn create(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, ConnectorError>;
}

/// The registry of built-in connectors, plus the process-wide state they share (the memory bus)
/// and the source and sink types registered at run time (plugins). Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    memory: memory::MemoryBus,
    httppush: memory::MemoryBus,
    websocket: websocket::WebsocketHub,
    plugin_sinks: Arc<RwLock<BTreeMap<String, Arc<dyn SinkFactory>>>>,
    plugin_sources: Arc<RwLock<BTreeMap<String, Arc<dyn SourceFactory>>>>,
    mqtt_connections: mqtt::MqttConnections,
}

impl Connectors {
    /// A registry with a fresh memory bus.
    pub fn new() -> Self {
        Connectors::default()
    }

    /// The in-process pub/sub bus behind the `memory` source and sink.
    pub fn memory(&self) -> &memory::MemoryBus {
        &self.memory
    }

    /// The bus behind `httppush` streams: the server's push listener publishes request bodies
    /// on it, with the URL path as the topic.
    pub fn httppush(&self) -> &memory::MemoryBus {
        &self.httppush
    }

    /// The named MQTT connections (`/connections`) that streams and sinks share.
    pub fn mqtt_connections(&self) -> &mqtt::MqttConnections {
        &self.mqtt_connections
    }

    /// The server-mode websocket endpoints, served on the push listener.
    pub fn websocket(&self) -> &websocket::WebsocketHub {
        &self.websocket
    }

    /// Source types this build knows.
    pub fn source_types(&self) -> &'static [&'static str] {
        &[
            "file",
            "httppull",
            "httppush",
            "kafka",
            "memory",
            "mqtt",
            // eKuiper's `redisSub`: the parser folds TYPE to lower case.
            "redissub",
            "simulator",
            "sql",
            "websocket",
        ]
    }

    /// Types a lookup table (`KIND="lookup"`) may use: `memory` is served by the engine from
    /// the topic's rows, the others by [`Connectors::lookup_source`].
    pub fn lookup_types(&self) -> &'static [&'static str] {
        &["httppull", "memory", "redis", "sql"]
    }

    /// Creates the lookup source of an external store (`httppull`, `redis`, `sql`) for a table keyed by
    /// column `key`.
    pub fn lookup_source(
        &self,
        spec: &SourceSpec,
        key: &str,
    ) -> Result<Box<dyn lookup::LookupSource>, ConnectorError> {
        refuse_selector("lookup source", &spec.source_type, &spec.props)?;
        match spec.source_type.as_str() {
            "httppull" => Ok(Box::new(httppull::HttpPullLookup::new(
                httppull::HttpPullConfig::parse_lookup(&spec.datasource, &spec.props)?,
                key,
            )?)),
            "redis" => Ok(Box::new(redis::RedisLookup::new(
                redis::RedisLookupConfig::parse(&spec.datasource, &spec.props)?,
            )?)),
            "sql" => Ok(Box::new(sql::SqlLookup::new(sql::SqlLookupConfig::parse(
                &spec.datasource,
                key,
                &spec.props,
            )?)?)),
            other => Err(ConnectorError::UnknownType {
                kind: "lookup source",
                name: other.to_string(),
                known: self.lookup_types().join(", "),
            }),
        }
    }

    /// Sink types this build knows.
    pub fn sink_types(&self) -> &'static [&'static str] {
        &[
            "file",
            "kafka",
            "log",
            "memory",
            "mqtt",
            "nop",
            "redis",
            "redisPub",
            "rest",
            "sql",
            "websocket",
        ]
    }

    /// eKuiper common sink properties a built-in sink of `sink_type` reads itself, so the host
    /// passes them on instead of refusing them (`format` and `compression` of the byte sinks and
    /// the file sink).
    pub fn sink_own_keys(sink_type: &str) -> &'static [&'static str] {
        match sink_type {
            "file" => file::SINK_OWN_KEYS,
            // The sinks that send bytes encode them in `format` and compress them.
            "mqtt" | "rest" | "redisPub" | "websocket" => codec::sink_format::SINK_OWN_KEYS,
            // Kafka's own record compression, not the host's payload compression.
            "kafka" => &["compression", "format", "fields"],
            // A log line is text: formats, but no compression.
            "log" => &["format", "fields"],
            "sql" => sql::SINK_OWN_KEYS,
            _ => &[],
        }
    }

    /// The property a sink of `sink_type` writes to, which eKuiper's `resendDestination`
    /// replaces for resent results: the MQTT and memory sinks' `topic`, the rest sink's `url`
    /// (eKuiper's list). `None`: the sink type has no resend destination.
    pub fn resend_destination_key(sink_type: &str) -> Option<&'static str> {
        match sink_type {
            "mqtt" | "memory" => Some("topic"),
            "rest" => Some("url"),
            _ => None,
        }
    }

    /// Registers (or replaces) a sink type; rules created from now on can use it as an action.
    pub fn register_sink(&self, name: &str, factory: Arc<dyn SinkFactory>) {
        self.plugin_sinks
            .write()
            .expect("plugin sinks lock")
            .insert(name.to_string(), factory);
    }

    /// Removes a registered sink type; running sinks of it keep running.
    pub fn unregister_sink(&self, name: &str) -> bool {
        self.plugin_sinks
            .write()
            .expect("plugin sinks lock")
            .remove(name)
            .is_some()
    }

    /// Sink types registered at run time, sorted.
    pub fn plugin_sink_types(&self) -> Vec<String> {
        self.plugin_sinks
            .read()
            .expect("plugin sinks lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Registers (or replaces) a source type; streams created from now on can use it as `TYPE`.
    pub fn register_source(&self, name: &str, factory: Arc<dyn SourceFactory>) {
        self.plugin_sources
            .write()
            .expect("plugin sources lock")
            .insert(name.to_string(), factory);
    }

    /// Removes a registered source type; running sources of it keep running.
    pub fn unregister_source(&self, name: &str) -> bool {
        self.plugin_sources
            .write()
            .expect("plugin sources lock")
            .remove(name)
            .is_some()
    }

    /// Every source type: built-in ones, then those registered at run time.
    pub fn all_source_types(&self) -> Vec<String> {
        let plugins = self.plugin_sources.read().expect("plugin sources lock");
        self.source_types()
            .iter()
            .map(|s| s.to_string())
            .chain(plugins.keys().cloned())
            .collect()
    }

    /// Creates a source for `spec`.
    pub fn source(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, ConnectorError> {
        if self.source_types().contains(&spec.source_type.as_str()) {
            refuse_selector("source", &spec.source_type, &spec.props)?;
        }
        match spec.source_type.as_str() {
            "memory" => Ok(Box::new(memory::MemorySource::new(
                self.memory.clone(),
                memory::MemorySourceConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "httppush" => Ok(Box::new(memory::MemorySource::new(
                self.httppush.clone(),
                memory::MemorySourceConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "mqtt" => Ok(Box::new(mqtt::MqttSource::with_connections(
                mqtt::MqttSourceConfig::parse(&spec.datasource, &spec.props)?,
                &self.mqtt_connections,
            )?)),
            "file" => Ok(Box::new(file::FileSource::new(
                file::FileSourceConfig::parse_for_format(
                    &spec.datasource,
                    &spec.props,
                    &spec.format,
                )?,
            ))),
            "httppull" => Ok(Box::new(httppull::HttpPullSource::new(
                httppull::HttpPullConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "redissub" => Ok(Box::new(redis::RedisSubSource::new(
                redis::RedisSubConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "kafka" => Ok(Box::new(kafka::KafkaSource::new(
                kafka::KafkaSourceConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "simulator" => Ok(Box::new(simulator::SimulatorSource::new(
                simulator::SimulatorConfig::parse(&spec.datasource, &spec.props)?,
            ))),
            "sql" => Ok(Box::new(sql::SqlSource::new(sql::SqlSourceConfig::parse(
                &spec.datasource,
                &spec.props,
            )?))),
            "websocket" => Ok(Box::new(websocket::WebsocketSource::new(
                &self.websocket,
                websocket::WebsocketSourceConfig::parse(&spec.datasource, &spec.props)?,
            )?)),
            other => {
                // Cloned out of the lock: creating a plugin source calls into the plugin.
                let factory = self
                    .plugin_sources
                    .read()
                    .expect("plugin sources lock")
                    .get(other)
                    .cloned();
                match factory {
                    Some(f) => f.create(spec),
                    None => Err(ConnectorError::UnknownType {
                        kind: "source",
                        name: other.to_string(),
                        known: self.all_source_types().join(", "),
                    }),
                }
            }
        }
    }

    /// Creates a sink of `sink_type` configured by `props` (the action's JSON object).
    pub fn sink(&self, sink_type: &str, props: &Value) -> Result<Box<dyn Sink>, ConnectorError> {
        if let (true, Value::Object(map)) = (self.sink_types().contains(&sink_type), props) {
            refuse_selector("sink", sink_type, map)?;
        }
        match sink_type {
            "file" => Ok(Box::new(file::FileSink::new(file::FileSinkConfig::parse(
                props,
            )?))),
            "kafka" => Ok(Box::new(kafka::KafkaSink::new(
                kafka::KafkaSinkConfig::parse(props)?,
            ))),
            "log" => Ok(Box::new(log::LogSink::new(log::LogSinkConfig::parse(
                props,
            )?))),
            "memory" => Ok(Box::new(memory::MemorySink::new(
                self.memory.clone(),
                memory::MemorySinkConfig::parse(props)?,
            ))),
            "mqtt" => Ok(Box::new(mqtt::MqttSink::with_connections(
                mqtt::MqttSinkConfig::parse(props)?,
                &self.mqtt_connections,
            )?)),
            "nop" => Ok(Box::new(nop::NopSink::new(nop::NopSinkConfig::parse(
                props,
            )?))),
            "redis" => Ok(Box::new(redis::RedisSink::new(
                redis::RedisSinkConfig::parse(props)?,
            )?)),
            "redisPub" => Ok(Box::new(redis::RedisPubSink::new(
                redis::RedisPubConfig::parse(props)?,
            )?)),
            "rest" => Ok(Box::new(rest::RestSink::new(rest::RestSinkConfig::parse(
                props,
            )?))),
            "sql" => Ok(Box::new(sql::SqlSink::new(sql::SqlSinkConfig::parse(
                props,
            )?))),
            "websocket" => Ok(Box::new(websocket::WebsocketSink::new(
                self.websocket.clone(),
                websocket::WebsocketSinkConfig::parse(props)?,
            ))),
            other => {
                // Cloned out of the lock: creating a plugin sink calls into the plugin.
                let factory = self
                    .plugin_sinks
                    .read()
                    .expect("plugin sinks lock")
                    .get(other)
                    .cloned();
                match factory {
                    Some(f) => f.create(props),
                    None => Err(ConnectorError::UnknownType {
                        kind: "sink",
                        name: other.to_string(),
                        known: self
                            .sink_types()
                            .iter()
                            .map(|s| s.to_string())
                            .chain(self.plugin_sink_types())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    }
}
