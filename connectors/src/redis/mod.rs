//! The `redis` connector: eKuiper's Redis lookup source (`TYPE="redis", KIND="lookup"`).
//!
//! `DATASOURCE` is the database number (0-15). With `dataType` "string" a key holds one JSON
//! object (read with one `MGET` per batch); with "list" a key holds a list of JSON objects,
//! each a row (one pipelined `LRANGE key 0 -1` per key, sent as one round trip per batch).
//! Like eKuiper, the key is the joined value as text: `"a"` looks up `a`, `1` looks up `1`.

mod config;
mod lookup;

pub use config::{RedisDataType, RedisLookupConfig};
pub use lookup::RedisLookup;
