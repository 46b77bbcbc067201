//! The built-in sinks' properties: what a rule action of each sink type may hold, beside the
//! common sink properties the rule runtime reads for every sink (docs/rule-options.md).

use super::Kind::*;
use super::PropertySpec as P;
use super::shared::{
    HTTP_REQUEST, OMIT_IF_EMPTY, REDIS_ADDRESS, REDIS_CREDENTIALS, ROW_OPTIONS, SEND_SINGLE,
    SINK_COMPRESSION, SINK_DEFAULT_ONLY, SINK_ENCODING, SQL_URL, TLS, WEBSOCKET_ENDPOINT,
};
use super::sources::{KAFKA_CONNECTION, MQTT_CONNECTION, MQTT_IGNORED, MQTT_SHARED};
use super::{ConnectorSpec, Role};

const FILE: &[P] = &[
    P::new(
        "path",
        String,
        None,
        "the file to write; may be a template over the row",
    )
    .required(),
    P::new(
        "fileType",
        String,
        Some("\"lines\""),
        "the file's content: lines, json or csv",
    ),
    P::new(
        "hasHeader",
        Bool,
        Some("false"),
        "start a csv file with a header line",
    ),
    P::new("delimiter", String, Some("\",\""), "between csv values"),
    P::new(
        "rollingInterval",
        Duration,
        None,
        "start a new file after this long",
    ),
    P::new(
        "checkInterval",
        Duration,
        Some("300000"),
        "how often the rolling interval is checked",
    ),
    P::new(
        "interval",
        Duration,
        None,
        "eKuiper's older name for checkInterval",
    ),
    P::new(
        "rollingCount",
        Int,
        Some("1000000"),
        "start a new file after this many rows",
    ),
    P::new(
        "rollingNamePattern",
        String,
        None,
        "where the roll time goes in the file name: prefix, suffix or none",
    ),
    P::new(
        "compression",
        String,
        None,
        "compress finished files: gzip or zstd",
    ),
    P::new(
        "format",
        String,
        None,
        "json for lines and json files, delimited for csv",
    ),
    P::new("fields", ListString, None, "the csv columns, in this order"),
];

const KAFKA: &[P] = &[
    P::new(
        "maxAttempts",
        Int,
        Some("1"),
        "tries of one request before its failure is reported",
    ),
    P::new("topic", String, None, "the topic to write to").required(),
    P::new(
        "requiredAcks",
        Int,
        Some("-1"),
        "acknowledgements awaited: -1 all replicas, 0 none, 1 the leader",
    ),
    P::new(
        "key",
        String,
        None,
        "the record key, a template over the row",
    ),
    P::new(
        "headers",
        Object,
        None,
        "record headers; values may be templates",
    ),
    P::new(
        "compression",
        String,
        None,
        "Kafka's record compression: gzip or none",
    ),
    P::new(
        "batchBytes",
        Int,
        Some("10485760"),
        "the largest produce request, in bytes",
    ),
    P::new(
        "kafkaBatchSize",
        Int,
        Some("100"),
        "the most records in one produce request",
    ),
];

const LOG: &[P] = &[SEND_SINGLE];

const MEMORY: &[P] = &[P::new(
    "topic",
    String,
    None,
    "the in-process topic to publish to (no wildcards)",
)
.required()];

const MQTT: &[P] = &[
    P::new(
        "qos",
        Int,
        Some("0"),
        "the publish quality of service: 0, 1 or 2",
    ),
    P::new(
        "topic",
        String,
        None,
        "the topic to publish to (no wildcards)",
    )
    .required(),
    P::new(
        "retained",
        Bool,
        Some("false"),
        "the broker keeps the last message for new subscribers",
    ),
];

/// eKuiper's common sink properties, which the rule runtime reads before the MQTT sink.
const MQTT_RUNTIME: &[P] = &[
    P::new("concurrency", Int, Some("1"), "sink instances").runtime(),
    P::new(
        "bufferLength",
        Int,
        Some("1024"),
        "emissions queued in front of the sink",
    )
    .runtime(),
    P::new(
        "runAsync",
        Bool,
        Some("false"),
        "eKuiper 1.x asynchronous sending",
    )
    .runtime(),
    P::new(
        "dataTemplate",
        String,
        None,
        "a template the rows are rendered through",
    )
    .runtime(),
    P::new("excludeFields", ListString, None, "fields left out").runtime(),
    P::new(
        "dataField",
        String,
        None,
        "the field holding the rows to send",
    )
    .runtime(),
    P::new(
        "tableDataField",
        String,
        None,
        "eKuiper's older name for dataField",
    )
    .runtime(),
    P::new("batchSize", Int, Some("0"), "rows gathered before a write").runtime(),
    P::new(
        "lingerInterval",
        Duration,
        Some("0"),
        "the longest a partial batch waits",
    )
    .runtime(),
    P::new("compressionProps", Object, None, "compression settings").runtime(),
    P::new("encryption", String, None, "payload encryption").runtime(),
    P::new("encProps", Object, None, "encryption settings").runtime(),
    P::new(
        "resourceId",
        String,
        None,
        "eKuiper's shared sink configuration",
    )
    .runtime(),
    P::new(
        "enableCache",
        Bool,
        Some("false"),
        "keep failed results and send them again",
    )
    .runtime(),
    P::new(
        "memoryCacheThreshold",
        Int,
        Some("1024"),
        "cached results kept in memory",
    )
    .runtime(),
    P::new(
        "maxDiskCache",
        Int,
        Some("1024000"),
        "cached results kept on disk",
    )
    .runtime(),
    P::new(
        "bufferPageSize",
        Int,
        Some("256"),
        "cached results per disk page",
    )
    .runtime(),
    P::new(
        "resendInterval",
        Duration,
        Some("0"),
        "the wait between two resends",
    )
    .runtime(),
    P::new(
        "cleanCacheAtStop",
        Bool,
        Some("false"),
        "drop the cache when the rule stops",
    )
    .runtime(),
    P::new(
        "resendAlterQueue",
        Bool,
        Some("false"),
        "resend through a second sink",
    )
    .runtime(),
    P::new(
        "resendPriority",
        Int,
        Some("0"),
        "resent against new results: -1, 0 or 1",
    )
    .runtime(),
    P::new(
        "resendIndicatorField",
        String,
        None,
        "a field marking resent results",
    )
    .runtime(),
    P::new("resendDestination", String, None, "where resent results go").runtime(),
];

const NOP: &[P] = &[
    P::new("log", Bool, Some("false"), "log each emission"),
    SEND_SINGLE,
    OMIT_IF_EMPTY,
];

const REDIS: &[P] = &[
    P::new(
        "addr",
        String,
        Some("\"127.0.0.1:6379\""),
        "the Redis server, host:port",
    ),
    P::new("db", Int, Some("0"), "the database number, 0 to 15"),
    P::new("key", String, None, "the key rows are written to"),
    P::new(
        "field",
        String,
        None,
        "the row field whose value is the key",
    ),
    P::new(
        "keyType",
        String,
        Some("\"single\""),
        "single: one key per row; multiple: each field is its own key",
    ),
    P::new(
        "dataType",
        String,
        Some("\"string\""),
        "how rows are stored: string or list",
    ),
    P::new("expiration", Int, None, "seconds until written keys expire"),
    P::new(
        "rowkindField",
        String,
        None,
        "the field saying insert, update, upsert or delete",
    ),
    SEND_SINGLE,
    OMIT_IF_EMPTY,
];

const REDIS_PUB: &[P] = &[
    P::new("channel", String, None, "the channel to publish to").required(),
    SEND_SINGLE,
    OMIT_IF_EMPTY,
];

const REST: &[P] = &[P::new(
    "debugResp",
    Bool,
    Some("false"),
    "log each response's status and body",
)];

const SQL: &[P] = &[
    P::new("table", String, None, "the table to write to").required(),
    P::new(
        "fields",
        ListString,
        None,
        "the columns to write (default all fields)",
    ),
    P::new(
        "tableDataField",
        String,
        None,
        "the field holding the rows to write",
    ),
    P::new(
        "rowkindField",
        String,
        None,
        "the field saying insert, update, upsert or delete",
    ),
    P::new(
        "keyField",
        String,
        None,
        "the key column of updates and deletes",
    ),
    SEND_SINGLE,
];

const WEBSOCKET: &[P] = &[P::new(
    "checkConnection",
    Bool,
    Some("false"),
    "refuse to start while no client is connected",
)];

/// Every built-in sink, by type name.
pub(crate) const ALL: &[ConnectorSpec] = &[
    ConnectorSpec {
        name: "file",
        role: Role::Sink,
        about: "writes rows to files, rolling them by time or count",
        groups: &[FILE, ROW_OPTIONS, SINK_DEFAULT_ONLY],
    },
    ConnectorSpec {
        name: "kafka",
        role: Role::Sink,
        about: "produces to a Kafka topic",
        groups: &[
            KAFKA_CONNECTION,
            TLS,
            KAFKA,
            ROW_OPTIONS,
            SINK_ENCODING,
            SINK_DEFAULT_ONLY,
        ],
    },
    ConnectorSpec {
        name: "log",
        role: Role::Sink,
        about: "writes results to the server log",
        groups: &[LOG, SINK_ENCODING],
    },
    ConnectorSpec {
        name: "memory",
        role: Role::Sink,
        about: "publishes to an in-process topic that memory sources read",
        groups: &[MEMORY],
    },
    ConnectorSpec {
        name: "mqtt",
        role: Role::Sink,
        about: "publishes to an MQTT topic",
        groups: &[
            MQTT_CONNECTION,
            MQTT_SHARED,
            MQTT,
            TLS,
            ROW_OPTIONS,
            SINK_ENCODING,
            SINK_COMPRESSION,
            MQTT_RUNTIME,
            MQTT_IGNORED,
        ],
    },
    ConnectorSpec {
        name: "nop",
        role: Role::Sink,
        about: "discards results",
        groups: &[NOP, SINK_DEFAULT_ONLY],
    },
    ConnectorSpec {
        name: "redis",
        role: Role::Sink,
        about: "writes rows to Redis keys",
        groups: &[REDIS, REDIS_CREDENTIALS, SINK_DEFAULT_ONLY],
    },
    ConnectorSpec {
        name: "redisPub",
        role: Role::Sink,
        about: "publishes to a Redis channel",
        groups: &[
            REDIS_ADDRESS,
            REDIS_PUB,
            REDIS_CREDENTIALS,
            SINK_ENCODING,
            SINK_COMPRESSION,
            SINK_DEFAULT_ONLY,
        ],
    },
    ConnectorSpec {
        name: "rest",
        role: Role::Sink,
        about: "sends results in HTTP requests",
        groups: &[
            HTTP_REQUEST,
            TLS,
            REST,
            ROW_OPTIONS,
            SINK_ENCODING,
            SINK_COMPRESSION,
            SINK_DEFAULT_ONLY,
        ],
    },
    ConnectorSpec {
        name: "sql",
        role: Role::Sink,
        about: "inserts, updates or deletes rows of a database table",
        groups: &[SQL_URL, SQL, SINK_DEFAULT_ONLY],
    },
    ConnectorSpec {
        name: "websocket",
        role: Role::Sink,
        about: "sends results to websocket clients or a websocket server",
        groups: &[
            WEBSOCKET_ENDPOINT,
            WEBSOCKET,
            ROW_OPTIONS,
            TLS,
            SINK_ENCODING,
            SINK_COMPRESSION,
            SINK_DEFAULT_ONLY,
        ],
    },
];
