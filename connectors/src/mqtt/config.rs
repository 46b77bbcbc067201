//! Settings of the MQTT source and sink, parsed and validated once from eKuiper-style props.
//!
//! Property names are matched case-insensitively, as eKuiper does (`clientid` = `clientId`).
//! Values may be JSON numbers/booleans or their string forms (`"1"`, `"true"`), since YAML
//! profiles and REST bodies write them both ways.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::QoS;
use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::Props;
use crate::spec::{sink_spec, source_spec};
use crate::tls::TlsClient;

use super::Protocol;

const CONNECTOR: &str = "mqtt";

/// The broker eKuiper connects to when `server` is not set.
pub const DEFAULT_SERVER: &str = "tcp://127.0.0.1:1883";

/// Where the broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection is TLS (`ssl://`, `mqtts://`, ...).
    pub tls: bool,
}

impl BrokerAddress {
    /// Parses eKuiper's `server`: `tcp://host:port`, `mqtt://host:port`, `host:port` or `host`
    /// (port 1883), or over TLS `ssl://`, `tls://`, `mqtts://`, `tcps://`, `mqtt+ssl://` (the
    /// schemes eKuiper's client takes; port 8883). WebSocket schemes are rejected.
    pub fn parse(server: &str) -> Result<Self, ConnectorError> {
        let server = server.trim();
        let (rest, tls) = match server.split_once("://") {
            None => (server, false),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "tcp" | "mqtt" => (rest, false),
                "ssl" | "tls" | "mqtts" | "tcps" | "mqtt+ssl" => (rest, true),
                "ws" | "wss" => {
                    return Err(config_error(format!(
                        "server \"{server}\": scheme \"{scheme}\" is not supported; \
                         use tcp:// or ssl:// (this build has no WebSocket transport)"
                    )));
                }
                _ => {
                    return Err(config_error(format!(
                        "server \"{server}\": unknown scheme \"{scheme}\"; expected tcp://host:port \
                         or ssl://host:port"
                    )));
                }
            },
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| {
                config_error(format!(
                    "server \"{server}\": unclosed \"[\" in IPv6 address"
                ))
            })?;
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => {
                        return Err(config_error(format!(
                            "server \"{server}\": expected \":port\" after the IPv6 address"
                        )));
                    }
                },
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(config_error(format!(
                "server \"{server}\": expected tcp://host:port"
            )));
        }
        let port = match port {
            None if tls => 8883,
            None => 1883,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(config_error(format!(
                        "server \"{server}\": port \"{p}\" is not a number from 1 to 65535"
                    )));
                }
            },
        };
        Ok(BrokerAddress {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A user name and password; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (may be empty).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Settings of an MQTT source.
#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    /// The topic filter to subscribe to (`DATASOURCE`); `+` and `#` wildcards allowed.
    pub topic: String,
    /// The broker (`server`, default `tcp://127.0.0.1:1883`).
    pub broker: BrokerAddress,
    /// The MQTT client id (`clientid`, default a generated `quiver-<random>`).
    pub client_id: String,
    /// Subscription quality of service (`qos`, 0, 1 or 2; eKuiper's default 1).
    pub qos: QoS,
    /// Login (`username`, `password`), if any.
    pub credentials: Option<Credentials>,
    /// TLS settings when the server is `ssl://` (eKuiper's `rootCaPath`, `insecureSkipVerify`...).
    pub tls: Option<TlsClient>,
    /// The MQTT version (`protocolVersion`: `"3.1.1"`/`"4"`, default, or `"5"`).
    pub protocol: Protocol,
    /// The named connection whose client this source shares (`connectionSelector`); the
    /// connection settings above are then unused.
    pub connection: Option<String>,
}

impl MqttSourceConfig {
    /// Validates the stream's DATASOURCE and the connection properties.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let props = Props::new(CONNECTOR, props);
        props.check_spec("mqtt source", source_spec(CONNECTOR));
        let topic = datasource.trim();
        if topic.is_empty() {
            return Err(config_error(
                "DATASOURCE (the topic to subscribe to) is required".into(),
            ));
        }
        validate_filter(topic)?;
        let connection = props.connection_selector()?;
        let broker = props.broker()?;
        Ok(MqttSourceConfig {
            connection,
            protocol: props.protocol_version()?,
            topic: topic.to_string(),
            tls: props.tls(&broker)?,
            broker,
            client_id: props.client_id()?,
            qos: props.qos(QoS::AtLeastOnce)?,
            credentials: props.credentials()?,
        })
    }
}

/// Settings of an MQTT sink.
#[derive(Debug, Clone)]
pub struct MqttSinkConfig {
    /// The topic to publish to (`topic`, required, no wildcards).
    pub topic: String,
    /// The broker (`server`, default `tcp://127.0.0.1:1883`).
    pub broker: BrokerAddress,
    /// The MQTT client id (`clientId`, default a generated `quiver-<random>`).
    pub client_id: String,
    /// Publish quality of service (`qos`, 0, 1 or 2; default 0).
    pub qos: QoS,
    /// Whether the broker keeps the last message for new subscribers (`retained`, default false).
    pub retained: bool,
    /// One message per row instead of one JSON array per batch (`sendSingle`, default false).
    pub send_single: bool,
    /// Keep null fields as `null` instead of leaving them out (`sendNilField`, default false).
    pub send_nil: bool,
    /// Skip batches without rows instead of publishing `[]` (`omitIfEmpty`, default false).
    pub omit_if_empty: bool,
    /// Login (`username`, `password`), if any.
    pub credentials: Option<Credentials>,
    /// TLS settings when the server is `ssl://` (eKuiper's `rootCaPath`, `insecureSkipVerify`...).
    pub tls: Option<TlsClient>,
    /// The MQTT version (`protocolVersion`: `"3.1.1"`/`"4"`, default, or `"5"`).
    pub protocol: Protocol,
    /// `format` (with `delimiter`, `hasHeader`, `fields`) and `compression`.
    pub format: std::sync::Arc<crate::codec::sink_format::SinkFormat>,
    /// The named connection whose client this sink shares (`connectionSelector`); the
    /// connection settings above are then unused.
    pub connection: Option<String>,
}

impl MqttSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let empty = Map::new();
        let props = match props {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Err(config_error(format!(
                    "the action's properties must be an object, got {other}"
                )));
            }
        };
        let props = Props::new(CONNECTOR, props);
        props.check_spec("mqtt sink", sink_spec(CONNECTOR));
        let topic = props
            .string("topic")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| config_error("\"topic\" is required".into()))?;
        if topic.contains('+') || topic.contains('#') {
            return Err(config_error(format!(
                "sink topic \"{topic}\" must not contain wildcards"
            )));
        }
        if topic.contains("{{") {
            return Err(config_error(format!(
                "sink topic \"{topic}\": topic templates are not supported yet"
            )));
        }
        if let Some((name, _)) = props.get("resourceid") {
            return Err(config_error(format!(
                "\"{name}\" (eKuiper's shared sink configuration) is not supported; name a \
                 connection made with POST /connections in \"connectionSelector\" instead"
            )));
        }
        let connection = props.connection_selector()?;
        let broker = props.broker()?;
        Ok(MqttSinkConfig {
            connection,
            protocol: props.protocol_version()?,
            topic: topic.to_string(),
            tls: props.tls(&broker)?,
            broker,
            client_id: props.client_id()?,
            qos: props.qos(QoS::AtMostOnce)?,
            retained: props.boolean("retained")?.unwrap_or(false),
            send_single: props.boolean("sendsingle")?.unwrap_or(false),
            send_nil: props.boolean("sendnilfield")?.unwrap_or(false),
            omit_if_empty: props.boolean("omitifempty")?.unwrap_or(false),
            credentials: props.credentials()?,
            format: std::sync::Arc::new(crate::codec::sink_format::SinkFormat::parse(
                &props, true,
            )?),
        })
    }
}

/// Settings of a named MQTT connection (`POST /connections` with `"typ": "mqtt"`): the broker
/// and login that every stream and sink naming it in `connectionSelector` share.
#[derive(Debug, Clone)]
pub struct MqttConnectionConfig {
    /// The broker (`server`, default `tcp://127.0.0.1:1883`).
    pub broker: BrokerAddress,
    /// The MQTT client id (`clientid`, default a generated `quiver-<random>`).
    pub client_id: String,
    /// Login (`username`, `password`), if any.
    pub credentials: Option<Credentials>,
    /// TLS settings when the server is `ssl://`.
    pub tls: Option<TlsClient>,
    /// The MQTT version (`protocolVersion`).
    pub protocol: Protocol,
}

impl MqttConnectionConfig {
    /// Validates a connection's properties: only the connection properties of the MQTT
    /// source and sink tables (`server`, the login, `clientid`, `protocolVersion`, TLS).
    pub fn parse(props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let props = Props::new(CONNECTOR, props);
        let allowed: Vec<&str> = connection_keys().collect();
        props.refuse_unknown("mqtt connection", &allowed)?;
        let broker = props.broker()?;
        Ok(MqttConnectionConfig {
            protocol: props.protocol_version()?,
            tls: props.tls(&broker)?,
            broker,
            client_id: props.client_id()?,
            credentials: props.credentials()?,
        })
    }
}

/// The properties a named connection holds, and a stream or sink naming one must not set.
fn connection_keys() -> impl Iterator<Item = &'static str> {
    crate::spec::sources::MQTT_CONNECTION
        .iter()
        .chain(crate::spec::shared::TLS)
        .map(|p| p.name)
}

/// The MQTT connector's own property readers.
impl Props<'_> {
    /// `connectionSelector`: the id of a named connection; the connection properties are then
    /// the connection's, and setting them here too is refused (never silently overridden).
    fn connection_selector(&self) -> Result<Option<String>, ConnectorError> {
        let Some(id) = self.string("connectionselector")?.map(str::trim) else {
            return Ok(None);
        };
        if id.is_empty() {
            return Ok(None);
        }
        if let Some((name, _)) = connection_keys().find_map(|k| self.get(&k.to_ascii_lowercase())) {
            return Err(config_error(format!(
                "\"{name}\" cannot be set together with \"connectionSelector\": connection \
                 \"{id}\" holds the connection properties"
            )));
        }
        Ok(Some(id.to_string()))
    }

    fn qos(&self, default: QoS) -> Result<QoS, ConnectorError> {
        let Some((name, value)) = self.get("qos") else {
            return Ok(default);
        };
        let level = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match level {
            Some(0) => Ok(QoS::AtMostOnce),
            Some(1) => Ok(QoS::AtLeastOnce),
            Some(2) => Ok(QoS::ExactlyOnce),
            _ => Err(config_error(format!(
                "\"{name}\" must be 0, 1 or 2, got {value}"
            ))),
        }
    }

    fn broker(&self) -> Result<BrokerAddress, ConnectorError> {
        match self.string("server")? {
            Some(s) if !s.trim().is_empty() => BrokerAddress::parse(s),
            _ => BrokerAddress::parse(DEFAULT_SERVER),
        }
    }

    /// `protocolVersion`: MQTT 3.1.1 (`"3.1.1"` or `"4"`, eKuiper's default) or MQTT 5 (`"5"`);
    /// MQTT 3.1 is refused by name.
    fn protocol_version(&self) -> Result<Protocol, ConnectorError> {
        let Some((name, value)) = self.get("protocolversion") else {
            return Ok(Protocol::default());
        };
        let version = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(config_error(format!(
                    "\"{name}\" must be a string such as \"3.1.1\" or \"5\", got {other}"
                )));
            }
        };
        match version.as_str() {
            "" | "3.1.1" | "4" => Ok(Protocol::V311),
            "5" => Ok(Protocol::V5),
            "3.1" | "3" => Err(config_error(format!(
                "\"{name}\" \"{version}\" (MQTT 3.1) is not supported; use \"3.1.1\", which \
                 every MQTT 3.1 broker also speaks, or \"5\""
            ))),
            other => Err(config_error(format!(
                "\"{name}\" \"{other}\" is not an MQTT version; expected \"3.1.1\" or \"5\""
            ))),
        }
    }

    /// TLS settings for an `ssl://` broker; TLS properties for a plain `tcp://` one are refused
    /// (eKuiper's client would not use them either).
    fn tls(&self, broker: &BrokerAddress) -> Result<Option<TlsClient>, ConnectorError> {
        if broker.tls {
            return self.tls_client().map(Some);
        }
        match self.tls_property_set() {
            None => Ok(None),
            Some(name) => Err(config_error(format!(
                "\"{name}\" applies to TLS connections only, but server {broker} is plain TCP; \
                 use ssl://{}:8883 (or mqtts://) for TLS",
                broker.host
            ))),
        }
    }

    fn client_id(&self) -> Result<String, ConnectorError> {
        match self.string("clientid")? {
            Some(id) if !id.is_empty() => {
                if id.len() > 65_535 {
                    return Err(config_error("\"clientid\" is too long".into()));
                }
                Ok(id.to_string())
            }
            _ => Ok(generated_client_id()),
        }
    }

    fn credentials(&self) -> Result<Option<Credentials>, ConnectorError> {
        let username = self.string("username")?.filter(|u| !u.is_empty());
        let password = self.string("password")?.filter(|p| !p.is_empty());
        match (username, password) {
            (None, None) => Ok(None),
            (Some(u), p) => Ok(Some(Credentials {
                username: u.to_string(),
                password: p.unwrap_or_default().to_string(),
            })),
            (None, Some(_)) => Err(config_error(
                "\"password\" needs a \"username\" (MQTT 3.1.1 has no password-only login)".into(),
            )),
        }
    }
}

/// Checks an MQTT topic filter: `#` only as the whole last level, `+` only as a whole level.
fn validate_filter(filter: &str) -> Result<(), ConnectorError> {
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let bad = match *level {
            "#" => i + 1 != levels.len(),
            "+" => false,
            l => l.contains('#') || l.contains('+'),
        };
        if bad {
            return Err(config_error(format!(
                "topic filter \"{filter}\": \"+\" must be a whole level and \"#\" the whole last level"
            )));
        }
    }
    if filter.contains('\0') {
        return Err(config_error(format!(
            "topic filter \"{filter}\" contains a NUL character"
        )));
    }
    Ok(())
}

/// A client id unique to this process and run: `quiver-` and 16 hex digits.
fn generated_client_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_i64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    format!("quiver-{:016x}", h.finish())
}

fn config_error(reason: String) -> ConnectorError {
    ConnectorError::Config {
        connector: CONNECTOR,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    use crate::error::config_reason as reason;

    #[test]
    fn server_forms() {
        let a = |s| BrokerAddress::parse(s).unwrap();
        assert_eq!(a("tcp://127.0.0.1:1883"), a("127.0.0.1:1883"));
        assert_eq!(a("mqtt://broker:1884").port, 1884);
        assert_eq!(a("broker").port, 1883);
        assert_eq!(a("tcp://[::1]:1885").host, "::1");
        assert_eq!(a("tcp://[::1]:1885").to_string(), "tcp://[::1]:1885");
        assert!(a("ssl://x:8884").tls && a("mqtts://x").tls && a("tls://x").tls);
        assert_eq!(a("mqtts://x").port, 8883);
        assert_eq!(a("mqtt+ssl://x:1").to_string(), "ssl://x:1");
        assert!(!a("tcp://x").tls);
        assert!(reason(BrokerAddress::parse("wss://x:8883").unwrap_err()).contains("WebSocket"));
        assert!(reason(BrokerAddress::parse("tcp://x:0").unwrap_err()).contains("port"));
        assert!(reason(BrokerAddress::parse("tcp://x:abc").unwrap_err()).contains("port"));
        assert!(BrokerAddress::parse("tcp://:1883").is_err());
    }

    #[test]
    fn source_defaults_and_values() {
        let c = MqttSourceConfig::parse("a/+/#", &Map::new()).unwrap();
        assert_eq!(c.broker.to_string(), DEFAULT_SERVER);
        assert_eq!(c.qos, QoS::AtLeastOnce);
        assert!(c.client_id.starts_with("quiver-"));
        assert!(c.credentials.is_none());
        let other = MqttSourceConfig::parse("a", &Map::new()).unwrap();
        assert_ne!(c.client_id, other.client_id);

        let c = MqttSourceConfig::parse(
            "t",
            &obj(
                json!({"server": "mqtt://h:2000", "qos": "2", "clientId": "me",
                        "username": "u", "password": "p", "insecureSkipVerify": false,
                        "protocolVersion": "3.1.1"}),
            ),
        )
        .unwrap();
        assert_eq!(c.broker.port, 2000);
        assert_eq!(c.qos, QoS::ExactlyOnce);
        assert_eq!(c.client_id, "me");
        assert_eq!(c.credentials.as_ref().unwrap().password, "p");
        assert!(!format!("{c:?}").contains("\"p\""));
    }

    #[test]
    fn source_errors() {
        assert!(
            reason(MqttSourceConfig::parse("", &Map::new()).unwrap_err()).contains("DATASOURCE")
        );
        assert!(MqttSourceConfig::parse("a/#/b", &Map::new()).is_err());
        assert!(MqttSourceConfig::parse("a/b+", &Map::new()).is_err());
        let e = MqttSourceConfig::parse("a", &obj(json!({"qos": 3}))).unwrap_err();
        assert!(reason(e).contains("0, 1 or 2"));
        let e = MqttSourceConfig::parse("a", &obj(json!({"password": "p"}))).unwrap_err();
        assert!(reason(e).contains("username"));
        let e = MqttSourceConfig::parse("a", &obj(json!({"server": 5}))).unwrap_err();
        assert!(reason(e).contains("string"));
        let c = MqttSourceConfig::parse("a", &obj(json!({"protocolVersion": "5"}))).unwrap();
        assert_eq!(c.protocol, Protocol::V5);
        let e = MqttSourceConfig::parse("a", &obj(json!({"protocolVersion": "6"}))).unwrap_err();
        assert!(reason(e).contains("\"protocolVersion\" \"6\""));
        let e = MqttSourceConfig::parse("a", &obj(json!({"protocolVersion": "3.1"}))).unwrap_err();
        assert!(reason(e).contains("MQTT 3.1"));
        let e =
            MqttSourceConfig::parse("a", &obj(json!({"insecureSkipVerify": true}))).unwrap_err();
        assert!(reason(e).contains("\"insecureSkipVerify\" applies to TLS connections only"));
        let c = MqttSourceConfig::parse(
            "a",
            &obj(json!({"server": "mqtts://h", "insecureSkipVerify": true})),
        )
        .unwrap();
        assert_eq!(c.tls.unwrap().description(), "insecureSkipVerify");
    }

    #[test]
    fn sink_defaults_and_errors() {
        let c = MqttSinkConfig::parse(&json!({"topic": "out"})).unwrap();
        assert_eq!(c.qos, QoS::AtMostOnce);
        assert!(!c.retained && !c.send_single && !c.send_nil && !c.omit_if_empty);
        let c = MqttSinkConfig::parse(
            &json!({"topic": "out", "sendSingle": true, "retained": "true",
                                              "qos": 1, "clientId": "s", "concurrency": 2}),
        )
        .unwrap();
        assert!(c.send_single && c.retained);
        assert_eq!(c.qos, QoS::AtLeastOnce);
        assert_eq!(c.client_id, "s");
        assert!(reason(MqttSinkConfig::parse(&json!({})).unwrap_err()).contains("\"topic\""));
        assert!(MqttSinkConfig::parse(&json!({"topic": "a/#"})).is_err());
        assert!(MqttSinkConfig::parse(&json!({"topic": "a/{{.x}}"})).is_err());
        assert!(MqttSinkConfig::parse(&json!({"topic": "a", "retained": 1})).is_err());
        assert!(MqttSinkConfig::parse(&json!("x")).is_err());
    }
}
