//! The Redis connectors, eKuiper's four:
//!
//! - `redis` lookup table (`TYPE="redis", KIND="lookup"`): `DATASOURCE` is the database number
//!   (0-15). With `dataType` "string" a key holds one JSON object (read with one `MGET` per
//!   batch); with "list" a key holds a list of JSON objects, each a row (one pipelined
//!   `LRANGE key 0 -1` per key, sent as one round trip per batch). Like eKuiper, the key is the
//!   joined value as text: `"a"` looks up `a`, `1` looks up `1`.
//! - `redis` sink: each row `SET` or `LPUSH`ed (or deleted, by row kind) under a fixed key, a
//!   key from the row, or one key per field; one pipeline per batch ([`RedisSink`]).
//! - `redisPub` sink: each batch (or row, with `sendSingle`) `PUBLISH`ed to a channel
//!   ([`RedisPubSink`]).
//! - `redisSub` source: messages of subscribed channels, reconnecting after failures
//!   ([`RedisSubSource`]).
//!
//! All use the synchronous client on blocking threads; [`server`] says why.

mod commands;
mod config;
mod link;
mod lookup;
mod pub_sink;
mod pubsub_config;
pub mod server;
mod sink;
mod sink_config;
mod sub_source;

pub use config::{RedisDataType, RedisLookupConfig};
pub use lookup::RedisLookup;
pub use pub_sink::RedisPubSink;
pub use pubsub_config::{RedisPubConfig, RedisSubConfig};
pub use server::RedisServer;
pub use sink::RedisSink;
pub use sink_config::{RedisKey, RedisSinkConfig};
pub use sub_source::RedisSubSource;
