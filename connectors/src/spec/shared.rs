//! Property groups several connectors share: TLS, sink payload formats, the HTTP request, the
//! message sources' runtime properties and the row options of sinks.

use super::Kind::*;
use super::PropertySpec as P;

/// eKuiper's TLS properties of clients (MQTT, Kafka, HTTP, websocket).
pub(crate) const TLS: &[P] = &[
    P::new(
        "insecureSkipVerify",
        Bool,
        Some("false"),
        "skip checking the server's certificate",
    ),
    P::new(
        "certificationPath",
        String,
        None,
        "the client certificate file (PEM)",
    ),
    P::new(
        "privateKeyPath",
        String,
        None,
        "the client private key file (PEM)",
    ),
    P::new(
        "rootCaPath",
        String,
        None,
        "the CA certificate file the server's certificate must chain to",
    ),
    P::new(
        "certificationRaw",
        String,
        None,
        "the client certificate, base64 PEM text",
    ),
    P::new(
        "privateKeyRaw",
        Password,
        None,
        "the client private key, base64 PEM text",
    ),
    P::new(
        "rootCaRaw",
        String,
        None,
        "the CA certificate, base64 PEM text",
    ),
    P::new(
        "tlsMinVersion",
        String,
        Some("\"tls1.2\""),
        "the lowest TLS version accepted: tls1.0 to tls1.3",
    ),
    P::new(
        "renegotiationSupport",
        String,
        Some("\"never\""),
        "TLS renegotiation: never, once or freely",
    ),
];

/// How a byte sink encodes rows ([`crate::codec::sink_format`]).
pub(crate) const SINK_ENCODING: &[P] = &[
    P::new(
        "format",
        String,
        Some("\"json\""),
        "payload encoding: json, delimited, binary, urlencoded or protobuf",
    ),
    P::new(
        "schemaId",
        String,
        None,
        "the message type of format protobuf: schema.Message, a registered schema",
    ),
    P::new(
        "delimiter",
        String,
        None,
        "between values with format delimited (there default \",\")",
    ),
    P::new(
        "hasHeader",
        Bool,
        None,
        "start delimited output with a header line (format delimited only; there default false)",
    ),
    P::new(
        "fields",
        ListString,
        None,
        "the fields to send, in this order (default all)",
    ),
];

/// How a byte sink compresses payloads.
pub(crate) const SINK_COMPRESSION: &[P] = &[P::new(
    "compression",
    String,
    None,
    "compress payloads: zlib, gzip, flate or zstd",
)];

/// `decompression` of a message source, undone by the stream's decoder on the workers.
pub(crate) const DECOMPRESSION: P = P::new(
    "decompression",
    String,
    None,
    "decompress payloads before decoding: zlib, gzip, flate or zstd",
)
.runtime();

/// The properties of every source that the rule runtime reads.
pub(crate) const SOURCE_RUNTIME: &[P] = &[
    P::new(
        "bufferLength",
        Int,
        Some("1024"),
        "rows queued in front of the rule",
    )
    .runtime(),
    P::new(
        "mergeField",
        String,
        None,
        "eKuiper's field to merge rows on",
    )
    .runtime(),
    P::new(
        "format",
        String,
        Some("\"json\""),
        "payload format (the stream's FORMAT wins)",
    )
    .runtime(),
];

/// The further properties of a message source (MQTT, Kafka) that the rule runtime reads.
pub(crate) const MESSAGE_RUNTIME: &[P] = &[
    P::new(
        "interval",
        Duration,
        None,
        "eKuiper's send interval of the source",
    )
    .runtime(),
    DECOMPRESSION,
];

/// Where a websocket source or sink talks: a server it connects to, or a path it serves.
pub(crate) const WEBSOCKET_ENDPOINT: &[P] = &[
    P::new(
        "addr",
        String,
        None,
        "the server to connect to, host:port (default: serve the path on the push listener)",
    ),
    P::new("scheme", String, None, "ws or wss when connecting"),
    P::new(
        "path",
        String,
        None,
        "the path to connect to or serve (a source's DATASOURCE wins)",
    ),
];

/// The HTTP request of the httppull source and the rest sink ([`crate::http::request`]).
pub(crate) const HTTP_REQUEST: &[P] = &[
    P::new("url", String, None, "the address to call").required(),
    P::new("method", String, Some("\"get\""), "the HTTP method"),
    P::new(
        "bodyType",
        String,
        None,
        "the body's content type: none, text, json, html, xml, javascript or form (default none for GET and HEAD, json otherwise)",
    ),
    P::new(
        "headers",
        Object,
        None,
        "request headers; values may be templates",
    ),
    P::new(
        "timeout",
        Int,
        Some("5000"),
        "the longest a request may take, in milliseconds",
    ),
    P::new(
        "responseType",
        String,
        Some("\"code\""),
        "how an answer is judged: by its status code or by a code field in its body",
    ),
];

/// `sendSingle` of a sink.
pub(crate) const SEND_SINGLE: P = P::new(
    "sendSingle",
    Bool,
    Some("false"),
    "send each row on its own instead of one list per emission",
);
/// `sendNilField` of a sink.
pub(crate) const SEND_NIL: P = P::new(
    "sendNilField",
    Bool,
    Some("false"),
    "keep null fields as null instead of leaving them out",
);
/// `omitIfEmpty` of a sink.
pub(crate) const OMIT_IF_EMPTY: P = P::new(
    "omitIfEmpty",
    Bool,
    Some("false"),
    "send nothing for an emission without rows",
);

/// The row options of most byte sinks.
pub(crate) const ROW_OPTIONS: &[P] = &[SEND_SINGLE, SEND_NIL, OMIT_IF_EMPTY];

/// eKuiper's Redis login, shared by the Redis connectors.
pub(crate) const REDIS_CREDENTIALS: &[P] = &[
    P::new("username", String, None, "the Redis ACL user"),
    P::new("password", Password, None, "the Redis password"),
];

/// eKuiper's common sink properties a built-in sink accepts only at their default, the value
/// that asks for what it does anyway (no resend cache, one writer, writes awaited in order);
/// any other value is refused, since this build does not implement it there.
pub(crate) const SINK_DEFAULT_ONLY: &[P] = &[
    P::new(
        "enableCache",
        Bool,
        Some("false"),
        "eKuiper's resend cache: only false for this sink",
    ),
    P::new(
        "runAsync",
        Bool,
        Some("false"),
        "eKuiper 1.x asynchronous sending: only false",
    ),
    P::new(
        "concurrency",
        Int,
        Some("1"),
        "sink instances: only 1 for this sink",
    ),
];

/// Where eKuiper's `redisSub` source and `redisPub` sink connect (the `redis` sink says
/// `addr`).
pub(crate) const REDIS_ADDRESS: &[P] = &[
    P::new(
        "address",
        String,
        Some("\"127.0.0.1:6379\""),
        "the Redis server, host:port",
    ),
    P::new("db", Int, Some("0"), "the database number, 0 to 15"),
];

/// The database of the sql source and sink.
pub(crate) const SQL_URL: &[P] = &[
    P::new(
        "url",
        String,
        None,
        "the database URL, e.g. mysql://user:pass@host:3306/db",
    ),
    P::new("dbUrl", String, None, "eKuiper's other name for url"),
];
