//! The lookup tables' properties (`KIND="lookup"`): what a `CONF_KEY` profile of a lookup
//! table's type may hold. A type that is also a source shares its profiles with it.

use super::Kind::*;
use super::PropertySpec as P;
use super::shared::{HTTP_REQUEST, REDIS_CREDENTIALS, SQL_URL, TLS};
use super::{ConnectorSpec, Role};

/// The cache settings every lookup table reads (`crate::lookup::LookupCacheConfig`).
const CACHE: &[P] = &[P::new(
    "lookup",
    Object,
    None,
    "the lookup cache: cache (default false), cacheTtl, cacheMissingKey (default false), cacheSize (default 10000)",
)
.runtime()];

const HTTPPULL: &[P] = &[
    P::new("body", String, None, "the request body, a template"),
    P::new(
        "oAuth",
        Object,
        None,
        "the token flow: access {url, body, expire, headers} and refresh {url, body, headers}",
    ),
];

const REDIS: &[P] = &[
    P::new(
        "addr",
        String,
        Some("\"127.0.0.1:6379\""),
        "the Redis server, host:port (the DATASOURCE is the database number)",
    ),
    P::new(
        "dataType",
        String,
        Some("\"string\""),
        "how rows are stored: string (one JSON row per key) or list",
    ),
    P::new(
        "timeout",
        Int,
        Some("1000"),
        "connect, read and write timeout in milliseconds",
    ),
];

const SQL: &[P] = &[P::new(
    "timeout",
    Int,
    Some("2000"),
    "the longest a lookup query may take, in milliseconds",
)];

/// Every lookup table type with an external store (`memory` lookups read no profile).
pub(crate) const ALL: &[ConnectorSpec] = &[
    ConnectorSpec {
        name: "httppull",
        role: Role::Source,
        about: "looks keys up with an HTTP request",
        groups: &[HTTP_REQUEST, TLS, HTTPPULL, CACHE],
    },
    ConnectorSpec {
        name: "redis",
        role: Role::Source,
        about: "looks keys up in Redis (lookup tables only)",
        groups: &[REDIS, REDIS_CREDENTIALS, CACHE],
    },
    ConnectorSpec {
        name: "sql",
        role: Role::Source,
        about: "looks keys up in a database table",
        groups: &[SQL_URL, SQL, CACHE],
    },
];
