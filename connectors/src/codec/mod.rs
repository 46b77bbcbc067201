//! Payload codecs between bytes and Arrow batches: one file per format (`json` with its
//! `flat` fast path, `delimited`, `binary`, `urlencoded`, `protobuf`), `decoder` picking a stream's
//! decoder by `FORMAT`, `text_columns` typing text fields, `encode` for sinks.

pub mod binary;
pub mod compress;
pub mod custom;
pub mod decoder;
pub mod delimited;
pub mod encode;
pub mod flat;
pub mod json;
pub mod protobuf;
pub mod sink_format;
pub mod template;
mod text_columns;
pub mod urlencoded;

pub use decoder::{Decoder, Format};
pub use json::Decoded;

// The compiler owns every hidden column name (`meta(topic)` reads what the decoders write).
pub use quiver_compiler::columns::{META_PREFIX, is_meta_column};
