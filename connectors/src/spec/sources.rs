//! The built-in sources' properties: what a `CONF_KEY` profile of each source type may hold.

use super::Kind::*;
use super::PropertySpec as P;
use super::shared::{
    DECOMPRESSION, HTTP_REQUEST, MESSAGE_RUNTIME, REDIS_ADDRESS, REDIS_CREDENTIALS, SOURCE_RUNTIME,
    SQL_URL, TLS, WEBSOCKET_ENDPOINT,
};
use super::{ConnectorSpec, Role};

/// The MQTT connection, read by the source and the sink alike except for `qos`'s default.
pub(crate) const MQTT_CONNECTION: &[P] = &[
    P::new(
        "server",
        String,
        Some("\"tcp://127.0.0.1:1883\""),
        "the broker: tcp://, ssl://, mqtt:// or mqtts:// host:port",
    ),
    P::new("username", String, None, "the MQTT user name"),
    P::new("password", Password, None, "the MQTT password"),
    P::new(
        "clientId",
        String,
        None,
        "the MQTT client id (default a generated quiver-<random>)",
    ),
    P::new(
        "protocolVersion",
        String,
        Some("\"3.1.1\""),
        "the MQTT version: 3.1.1 (or 4) or 5",
    ),
];

/// eKuiper's MQTT properties for KubeEdge, which this build ignores.
pub(crate) const MQTT_IGNORED: &[P] = &[
    P::new(
        "kubeedgeVersion",
        String,
        None,
        "eKuiper's KubeEdge version",
    )
    .ignored(),
    P::new(
        "kubeedgeModelFile",
        String,
        None,
        "eKuiper's KubeEdge model file",
    )
    .ignored(),
];

/// The named connection a stream or sink shares instead of its own client.
pub(crate) const MQTT_SHARED: &[P] = &[P::new(
    "connectionSelector",
    String,
    None,
    "the id of a connection made with POST /connections: share its client",
)];

/// The Kafka connection, shared by the source and the sink (`maxAttempts` differs).
pub(crate) const KAFKA_CONNECTION: &[P] = &[
    P::new(
        "brokers",
        String,
        None,
        "the brokers, host:port separated by commas",
    )
    .required(),
    P::new(
        "saslAuthType",
        String,
        Some("\"none\""),
        "SASL login: none, plain, scram (SCRAM-SHA-512), scram-sha-512 or scram-sha-256",
    ),
    P::new("saslUserName", String, None, "the SASL user name"),
    P::new("saslPassword", Password, None, "the SASL password"),
    P::new(
        "password",
        Password,
        None,
        "the SASL password (the source's older name)",
    ),
];

const FILE: &[P] = &[
    P::new(
        "path",
        String,
        None,
        "the folder the DATASOURCE file name is read from",
    ),
    P::new(
        "fileType",
        String,
        None,
        "the file's content: json, lines or csv (default by the file's extension)",
    ),
    P::new(
        "interval",
        Duration,
        None,
        "read the file again after this long (default once)",
    ),
    P::new("sendInterval", Duration, None, "the wait between two rows"),
    P::new(
        "hasHeader",
        Bool,
        None,
        "the csv file starts with a header line (default true without columns)",
    ),
    P::new("columns", ListString, None, "the csv column names"),
    P::new("delimiter", String, Some("\",\""), "between csv values"),
    P::new(
        "ignoreStartLines",
        Int,
        Some("0"),
        "lines skipped at the start",
    ),
    P::new("ignoreEndLines", Int, Some("0"), "lines skipped at the end"),
    P::new(
        "decompression",
        String,
        None,
        "decompress the file first: gzip or zstd",
    ),
    P::new(
        "actionAfterRead",
        Int,
        Some("0"),
        "after reading: 0 keep, 1 delete, 2 move to moveTo",
    ),
    P::new(
        "moveTo",
        String,
        None,
        "the folder read files move to (actionAfterRead 2)",
    ),
    P::new(
        "parallel",
        Bool,
        Some("false"),
        "read the files of a folder in parallel",
    ),
];

const HTTPPULL: &[P] = &[
    P::new(
        "interval",
        Duration,
        Some("10000"),
        "the wait between two requests",
    ),
    P::new(
        "incremental",
        Bool,
        Some("false"),
        "skip an answer equal to the previous one",
    ),
    P::new(
        "body",
        String,
        None,
        "the request body, a template over the pull times",
    ),
    P::new(
        "oAuth",
        Object,
        None,
        "the token flow: access {url, body, expire, headers} and refresh {url, body, headers}",
    ),
];

const MQTT_SOURCE: &[P] = &[P::new(
    "qos",
    Int,
    Some("1"),
    "the subscription's quality of service: 0, 1 or 2",
)];

const KAFKA_SOURCE: &[P] = &[
    P::new(
        "maxAttempts",
        Int,
        Some("3"),
        "tries of one request before its failure is reported",
    ),
    P::new(
        "groupID",
        String,
        None,
        "the consumer group whose committed offsets are resumed",
    ),
    P::new(
        "partition",
        Int,
        Some("0"),
        "the partition read without a group",
    ),
    P::new(
        "maxBytes",
        Int,
        Some("1000000"),
        "the most bytes one fetch returns",
    ),
    P::new(
        "offsetReset",
        String,
        Some("\"latest\""),
        "where to start without a committed offset: earliest or latest",
    ),
];

const REDIS_SUB: &[P] = &[
    P::new(
        "channels",
        ListString,
        None,
        "channel patterns to subscribe to (default the DATASOURCE, split at commas)",
    ),
    DECOMPRESSION,
];

const SQL: &[P] = &[
    P::new(
        "interval",
        Duration,
        Some("10000"),
        "the wait between two queries",
    ),
    P::new(
        "internalSqlQueryCfg",
        Object,
        None,
        "a generated query: table, limit, indexField, indexValue, indexFieldType, dateTimeFormat or indexFields",
    ),
    P::new(
        "templateSqlQueryCfg",
        Object,
        None,
        "a query template: templateSql with index fields",
    ),
];

const SIMULATOR: &[P] = &[
    P::new("data", List, None, "the rows to send, in order"),
    P::new(
        "interval",
        Duration,
        Some("10"),
        "the wait between two rows",
    ),
    P::new("loop", Bool, Some("true"), "start again after the last row"),
];

/// Every built-in source, by type name.
pub(crate) const ALL: &[ConnectorSpec] = &[
    ConnectorSpec {
        name: "file",
        role: Role::Source,
        about: "reads rows from files: json, lines or csv",
        groups: &[FILE, SOURCE_RUNTIME],
    },
    ConnectorSpec {
        name: "httppull",
        role: Role::Source,
        about: "polls an HTTP endpoint",
        groups: &[HTTP_REQUEST, TLS, HTTPPULL],
    },
    ConnectorSpec {
        name: "httppush",
        role: Role::Source,
        about: "receives HTTP requests on the push listener; the DATASOURCE is the URL path",
        groups: &[],
    },
    ConnectorSpec {
        name: "kafka",
        role: Role::Source,
        about: "consumes a Kafka topic",
        groups: &[
            KAFKA_CONNECTION,
            TLS,
            KAFKA_SOURCE,
            SOURCE_RUNTIME,
            MESSAGE_RUNTIME,
        ],
    },
    ConnectorSpec {
        name: "memory",
        role: Role::Source,
        about: "reads an in-process topic that memory sinks publish to",
        groups: &[],
    },
    ConnectorSpec {
        name: "mqtt",
        role: Role::Source,
        about: "subscribes to an MQTT topic",
        groups: &[
            MQTT_CONNECTION,
            MQTT_SHARED,
            MQTT_SOURCE,
            TLS,
            SOURCE_RUNTIME,
            MESSAGE_RUNTIME,
            MQTT_IGNORED,
        ],
    },
    ConnectorSpec {
        name: "redisSub",
        role: Role::Source,
        about: "subscribes to Redis channels",
        groups: &[REDIS_ADDRESS, REDIS_SUB, REDIS_CREDENTIALS],
    },
    ConnectorSpec {
        name: "simulator",
        role: Role::Source,
        about: "sends the rows it is given, again and again",
        groups: &[SIMULATOR],
    },
    ConnectorSpec {
        name: "sql",
        role: Role::Source,
        about: "queries a database (MySQL, PostgreSQL, SQLite) at an interval",
        groups: &[SQL_URL, SQL],
    },
    ConnectorSpec {
        name: "websocket",
        role: Role::Source,
        about: "receives websocket messages, as a client or on the push listener",
        groups: &[WEBSOCKET_ENDPOINT, &[DECOMPRESSION], TLS],
    },
];
