//! The `kafka` connector: eKuiper's kafka source and sink, over the Kafka protocol spoken by a
//! small client of our own (`client.rs`, `wire.rs`) on the `kafka-protocol` codec.
//!
//! - The source reads the stream's `DATASOURCE` topic and, with `groupID`, commits the offsets
//!   of what it handed to the rule, so a restart resumes there (see `source.rs`).
//! - The sink writes one message per result row, keyed and with headers as configured (see
//!   `sink.rs`).
//! - Brokers are `host:port` lists; SASL PLAIN and SCRAM (`scram.rs`) and eKuiper's TLS
//!   properties are supported.

pub mod client;
mod config;
mod partitioner;
pub mod records;
pub mod scram;
mod sink;
mod source;
mod wire;

pub use config::{
    Connection, DEFAULT_BATCH_BYTES, DEFAULT_KAFKA_BATCH_SIZE, DEFAULT_MAX_BYTES, Headers,
    KafkaSinkConfig, KafkaSourceConfig, OffsetReset, Sasl, SaslMechanism,
};
pub use sink::KafkaSink;
pub use source::KafkaSource;
