//! Settings of the Kafka source and sink, parsed and validated once from eKuiper's properties
//! (names as eKuiper's kafka plugin reads them, matched case-insensitively).

use serde_json::{Map, Value};

use super::scram::ScramHash;
use crate::ConnectorError;
use crate::codec::template::TextProp;
use crate::props::{Props, action_props};
use crate::spec::{sink_spec, source_spec};
use crate::tls::TlsClient;

const CONNECTOR: &str = "kafka";

/// eKuiper's default `maxBytes`: the most a fetch returns (1 MB).
pub const DEFAULT_MAX_BYTES: u32 = 1_000_000;
/// eKuiper's default `batchBytes`: the largest produce request (10 MiB).
pub const DEFAULT_BATCH_BYTES: u64 = 10 * 1024 * 1024;
/// eKuiper's writer batch size: messages per produce request.
pub const DEFAULT_KAFKA_BATCH_SIZE: u64 = 100;

/// How the client logs in (`saslAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `plain`: the password sent as is (use TLS).
    Plain,
    /// `scram` (SCRAM-SHA-512, as eKuiper), `scram-sha-512` or `scram-sha-256`.
    Scram(ScramHash),
}

/// SASL credentials; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// `saslUserName`.
    pub username: String,
    /// `saslPassword` (the sink) or `password` (the source; `saslPassword` also read).
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sasl({:?}, {}, ***)", self.mechanism, self.username)
    }
}

/// How to reach the brokers: shared by the source and the sink.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `brokers`: `host:port` addresses, tried in order for metadata.
    pub brokers: Vec<String>,
    /// `saslAuthType` `plain` or `scram` with its credentials; None for `none`.
    pub sasl: Option<Sasl>,
    /// TLS, when any of eKuiper's TLS properties is set (as eKuiper's client decides).
    pub tls: Option<TlsClient>,
    /// `maxAttempts`: tries of one request before its failure is reported.
    pub max_attempts: u32,
}

/// Where a source starts when its group has no committed offset (`offsetReset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest message still kept.
    Earliest,
    /// Only messages produced from now on (eKuiper's default).
    Latest,
}

/// Settings of a Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// The topic (`DATASOURCE`).
    pub topic: String,
    /// The brokers and how to log in.
    pub connection: Connection,
    /// `groupID`: the consumer group whose committed offsets the source resumes from and
    /// commits to; None reads `partition` without committing.
    pub group: Option<String>,
    /// `partition`: the one partition read without a group (default 0).
    pub partition: i32,
    /// `maxBytes`: the most one fetch returns (default 1 MB).
    pub max_bytes: u32,
    /// `offsetReset`: where to start without a committed offset (default `latest`).
    pub offset_reset: OffsetReset,
}

impl KafkaSourceConfig {
    /// Validates the stream's DATASOURCE (the topic) and the connection properties.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let props = Props::new(CONNECTOR, props);
        props.refuse_unknown("kafka source", &source_spec(CONNECTOR).accepted())?;
        let topic = datasource.trim();
        if topic.is_empty() {
            return Err(config_error(
                "DATASOURCE (the topic to read) is required".into(),
            ));
        }
        check_topic(topic)?;
        let group = props
            .string("groupid")?
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string);
        let partition = match props.uint("partition")? {
            None => 0,
            Some(p) => i32::try_from(p)
                .map_err(|_| config_error(format!("\"partition\" {p} is out of range")))?,
        };
        if group.is_some() && props.get("partition").is_some() && partition != 0 {
            return Err(config_error(
                "\"partition\" and \"groupID\" exclude each other: a group reads every \
                 partition of the topic"
                    .into(),
            ));
        }
        let max_bytes = match props.uint("maxbytes")? {
            None => DEFAULT_MAX_BYTES,
            Some(0) => return Err(config_error("\"maxBytes\" must be at least 1".into())),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| config_error(format!("\"maxBytes\" {n} is too large")))?,
        };
        let offset_reset = match props.string("offsetreset")?.map(str::trim) {
            None | Some("") => OffsetReset::Latest,
            Some(s) if s.eq_ignore_ascii_case("latest") => OffsetReset::Latest,
            Some(s) if s.eq_ignore_ascii_case("earliest") => OffsetReset::Earliest,
            Some(other) => {
                return Err(config_error(format!(
                    "\"offsetReset\" must be earliest or latest, got \"{other}\""
                )));
            }
        };
        Ok(KafkaSourceConfig {
            topic: topic.to_string(),
            // kafka-go's reader tries a request three times by default.
            connection: props.connection(3, &["password", "saslpassword"])?,
            group,
            partition,
            max_bytes,
            offset_reset,
        })
    }
}

/// The sink's `headers`: fixed names with (possibly templated) values, or one template that
/// renders to a JSON object of them.
#[derive(Debug, Clone)]
pub enum Headers {
    /// No headers.
    None,
    /// Name → value; each value may be a template over the row.
    Map(Vec<(String, TextProp)>),
    /// A template rendering a JSON object of string values.
    Template(TextProp),
}

/// Settings of a Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// `topic` (required).
    pub topic: String,
    /// The brokers and how to log in.
    pub connection: Connection,
    /// `requiredACKs`: -1 (all in-sync replicas, default), 1 (the leader) or 0 (no answer).
    pub required_acks: i16,
    /// `key`: the message key, fixed or a template over the row; None sends no key.
    pub key: Option<TextProp>,
    /// `headers`.
    pub headers: Headers,
    /// `compression`: none or gzip.
    pub gzip: bool,
    /// `batchBytes`: the largest produce request (default 10 MiB).
    pub batch_bytes: u64,
    /// `kafkaBatchSize`: the most messages in one produce request (default 100).
    pub batch_size: usize,
    /// Keep null fields as `null` (`sendNilField`, default false).
    pub send_nil: bool,
    /// Send nothing for a batch without rows (`omitIfEmpty`); a batch is one message per row
    /// anyway, so an empty one sends nothing either way.
    pub omit_if_empty: bool,
    /// `format` (with `delimiter`, `hasHeader`, `fields`); `compression` is Kafka's own.
    pub format: std::sync::Arc<crate::codec::sink_format::SinkFormat>,
}

impl KafkaSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let props = action_props(CONNECTOR, props)?;
        if let Some((name, _)) = props.get("kafkabatchtimeout") {
            return Err(config_error(format!(
                "\"{name}\" is not supported: use the common property \"lingerInterval\" \
                 (with \"batchSize\") to gather rows before they are sent"
            )));
        }
        props.refuse_unknown_sink_keys("kafka sink", &sink_spec(CONNECTOR).accepted())?;
        let topic = props
            .string("topic")?
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| config_error("\"topic\" is required".into()))?;
        if topic.contains("{{") {
            return Err(config_error(format!(
                "\"topic\" \"{topic}\": topic templates are not supported"
            )));
        }
        check_topic(topic)?;
        let required_acks = match props.get("requiredacks") {
            None => -1,
            Some((name, value)) => {
                let n = value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
                match n {
                    Some(n @ -1..=1) => n as i16,
                    _ => {
                        return Err(config_error(format!(
                            "\"{name}\" must be -1 (all replicas), 0 (none) or 1 (the leader), \
                             got {value}"
                        )));
                    }
                }
            }
        };
        let key = match props.string("key")? {
            None | Some("") => None,
            Some(k) => Some(TextProp::parse("key", k).map_err(config_error)?),
        };
        let gzip = match props.string("compression")?.map(str::trim) {
            None | Some("") | Some("none") => false,
            Some(c) if c.eq_ignore_ascii_case("gzip") => true,
            Some(other) => {
                return Err(config_error(format!(
                    "\"compression\" \"{other}\" is not supported by this build; use gzip or none"
                )));
            }
        };
        let batch_bytes = props
            .uint("batchbytes")?
            .unwrap_or(DEFAULT_BATCH_BYTES)
            .max(1);
        let batch_size = props
            .uint("kafkabatchsize")?
            .unwrap_or(DEFAULT_KAFKA_BATCH_SIZE)
            .clamp(1, 1 << 20) as usize;
        Ok(KafkaSinkConfig {
            topic: topic.to_string(),
            connection: props.connection(1, &["saslpassword", "password"])?,
            required_acks,
            key,
            headers: props.headers()?,
            gzip,
            batch_bytes,
            batch_size,
            send_nil: props.boolean("sendnilfield")?.unwrap_or(false),
            omit_if_empty: props.boolean("omitifempty")?.unwrap_or(false),
            format: std::sync::Arc::new(crate::codec::sink_format::SinkFormat::parse(
                &props, false,
            )?),
        })
    }
}

/// The Kafka connector's own property readers.
impl Props<'_> {
    /// Brokers, SASL, TLS and `maxAttempts` (default `attempts`); the password is read from
    /// the first of `password_keys` that is set.
    fn connection(
        &self,
        attempts: u32,
        password_keys: &[&str],
    ) -> Result<Connection, ConnectorError> {
        let brokers: Vec<String> = self
            .string("brokers")?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .collect();
        if brokers.is_empty() {
            return Err(config_error(
                "\"brokers\" is required: a comma-separated list of host:port".into(),
            ));
        }
        for b in &brokers {
            let port = b.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) || b.contains("://") {
                return Err(config_error(format!(
                    "broker \"{b}\" must be host:port, e.g. 127.0.0.1:9092"
                )));
            }
        }
        let password = password_keys
            .iter()
            .find_map(|k| self.string(k).transpose())
            .transpose()?
            .unwrap_or("");
        let user = self.string("saslusername")?.unwrap_or("");
        let mechanism = match self.string("saslauthtype")?.map(str::trim) {
            None | Some("") | Some("none") => None,
            Some("plain") => Some(SaslMechanism::Plain),
            // eKuiper's `scram` is SCRAM-SHA-512; the explicit names are Quiver's, for brokers
            // that store SHA-256 credentials.
            Some("scram" | "scram-sha-512") => Some(SaslMechanism::Scram(ScramHash::Sha512)),
            Some("scram-sha-256") => Some(SaslMechanism::Scram(ScramHash::Sha256)),
            Some(other) => {
                return Err(config_error(format!(
                    "\"saslAuthType\" must be none, plain, scram (SCRAM-SHA-512), scram-sha-512 \
                     or scram-sha-256, got \"{other}\""
                )));
            }
        };
        let sasl = match mechanism {
            None => None,
            Some(_) if user.is_empty() || password.is_empty() => {
                return Err(config_error(
                    "\"saslAuthType\" plain and scram need \"saslUserName\" and a password".into(),
                ));
            }
            Some(mechanism) => Some(Sasl {
                mechanism,
                username: user.to_string(),
                password: password.to_string(),
            }),
        };
        let tls = match self.tls_property_set() {
            None => None,
            Some(_) => Some(self.tls_client()?),
        };
        let max_attempts = match self.uint("maxattempts")? {
            None => attempts,
            Some(n) => u32::try_from(n.clamp(1, 100)).unwrap_or(1),
        };
        Ok(Connection {
            brokers,
            sasl,
            tls,
            max_attempts,
        })
    }

    fn headers(&self) -> Result<Headers, ConnectorError> {
        match self.get("headers") {
            None => Ok(Headers::None),
            Some((_, Value::String(s))) if s.trim().is_empty() => Ok(Headers::None),
            Some((name, Value::String(s))) => Ok(Headers::Template(
                TextProp::parse(name, s).map_err(config_error)?,
            )),
            Some((name, Value::Object(map))) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => TextProp::parse(&format!("{name}.{k}"), s)
                        .map(|t| (k.clone(), t))
                        .map_err(config_error),
                    other => Err(config_error(format!(
                        "\"{name}\" value of \"{k}\" must be a string, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Headers::Map),
            Some((name, other)) => Err(config_error(format!(
                "\"{name}\" must be an object of strings or a template string, got {other}"
            ))),
        }
    }
}

/// Kafka's topic name rule: 1 to 249 of `[A-Za-z0-9._-]`.
fn check_topic(topic: &str) -> Result<(), ConnectorError> {
    let ok = topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(config_error(format!(
            "topic \"{topic}\" is not a Kafka topic name (1 to 249 of letters, digits, '.', '_', '-')"
        )))
    }
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
    fn source_defaults_follow_ekuiper() {
        let c = KafkaSourceConfig::parse("t1", &obj(json!({"brokers": "127.0.0.1:9092"}))).unwrap();
        assert_eq!(c.connection.brokers, ["127.0.0.1:9092"]);
        assert_eq!(c.partition, 0);
        assert_eq!(c.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(c.offset_reset, OffsetReset::Latest);
        assert_eq!(c.connection.max_attempts, 3);
        assert!(c.group.is_none() && c.connection.sasl.is_none() && c.connection.tls.is_none());
        let c = KafkaSourceConfig::parse(
            "t1",
            &obj(
                json!({"brokers": "a:1, b:2", "groupID": "g", "offsetReset": "earliest",
                        "saslAuthType": "plain", "saslUserName": "u", "password": "p",
                        "maxBytes": "500"}),
            ),
        )
        .unwrap();
        assert_eq!(c.connection.brokers, ["a:1", "b:2"]);
        assert_eq!(c.group.as_deref(), Some("g"));
        assert_eq!(c.offset_reset, OffsetReset::Earliest);
        assert_eq!(c.max_bytes, 500);
        assert_eq!(c.connection.sasl.as_ref().unwrap().password, "p");
        assert_eq!(
            c.connection.sasl.as_ref().unwrap().mechanism,
            SaslMechanism::Plain
        );
        assert!(!format!("{c:?}").contains("\"p\""));
        let scram = |kind: &str| {
            let props = json!({"brokers": "a:1", "saslAuthType": kind, "saslUserName": "u",
                               "saslPassword": "p"});
            let c = KafkaSourceConfig::parse("t1", &obj(props)).unwrap();
            c.connection.sasl.unwrap().mechanism
        };
        // eKuiper's `scram` is SCRAM-SHA-512.
        assert_eq!(scram("scram"), SaslMechanism::Scram(ScramHash::Sha512));
        assert_eq!(
            scram("scram-sha-256"),
            SaslMechanism::Scram(ScramHash::Sha256)
        );
    }

    #[test]
    fn source_refusals_name_the_property() {
        let e = |v: Value| reason(KafkaSourceConfig::parse("t", &obj(v)).unwrap_err());
        assert!(e(json!({})).contains("\"brokers\""));
        assert!(e(json!({"brokers": "tcp://a:1"})).contains("host:port"));
        assert!(e(json!({"brokers": "a:1", "offsetReset": "middle"})).contains("offsetReset"));
        assert!(e(json!({"brokers": "a:1", "saslAuthType": "scram"})).contains("saslUserName"));
        assert!(e(json!({"brokers": "a:1", "saslAuthType": "plain"})).contains("saslUserName"));
        assert!(e(json!({"brokers": "a:1", "saslAuthType": "gssapi"})).contains("saslAuthType"));
        assert!(e(json!({"brokers": "a:1", "groupID": "g", "partition": 2})).contains("exclude"));
        assert!(e(json!({"brokers": "a:1", "maxbytess": 1})).contains("\"maxbytess\""));
        assert!(
            reason(KafkaSourceConfig::parse("a/b", &obj(json!({"brokers": "a:1"}))).unwrap_err())
                .contains("topic")
        );
        let c = KafkaSourceConfig::parse(
            "t",
            &obj(json!({"brokers": "a:1", "insecureSkipVerify": true})),
        )
        .unwrap();
        assert!(c.connection.tls.is_some());
    }

    #[test]
    fn sink_defaults_and_refusals() {
        let c = KafkaSinkConfig::parse(&json!({"brokers": "a:1", "topic": "out"})).unwrap();
        assert_eq!(c.required_acks, -1);
        assert_eq!(c.connection.max_attempts, 1);
        assert_eq!(c.batch_bytes, DEFAULT_BATCH_BYTES);
        assert_eq!(c.batch_size, 100);
        assert!(c.key.is_none() && matches!(c.headers, Headers::None) && !c.gzip);
        let c = KafkaSinkConfig::parse(&json!({
            "brokers": "a:1", "topic": "out", "requiredACKs": 1, "key": "{{.id}}",
            "headers": {"h": "{{.v}}"}, "compression": "gzip", "saslAuthType": "plain",
            "saslUserName": "u", "saslPassword": "p", "kafkaBatchSize": 10
        }))
        .unwrap();
        assert_eq!(c.required_acks, 1);
        assert!(c.key.unwrap().is_template());
        assert!(matches!(c.headers, Headers::Map(ref m) if m.len() == 1));
        assert!(c.gzip && c.batch_size == 10);
        let e = |v: Value| reason(KafkaSinkConfig::parse(&v).unwrap_err());
        assert!(e(json!({"brokers": "a:1"})).contains("\"topic\""));
        assert!(
            e(json!({"brokers": "a:1", "topic": "t", "requiredACKs": 2})).contains("requiredACKs")
        );
        assert!(e(json!({"brokers": "a:1", "topic": "t", "compression": "zstd"})).contains("zstd"));
        assert!(
            e(json!({"brokers": "a:1", "topic": "t", "kafkaBatchTimeout": "1s"}))
                .contains("lingerInterval")
        );
        assert!(e(json!({"brokers": "a:1", "topic": "t", "headers": 3})).contains("headers"));
        assert!(
            e(json!({"brokers": "a:1", "topic": "t", "enableCache": true})).contains("enableCache")
        );
        assert!(e(json!({"brokers": "a:1", "topic": "t", "topik": 1})).contains("\"topik\""));
    }
}
