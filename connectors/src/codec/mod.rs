//! Payload codecs between bytes and Arrow batches.

pub mod encode;
pub mod flat;
pub mod json;
pub mod template;

// The compiler owns every hidden column name (`meta(topic)` reads what the decoders write).
pub use quiver_compiler::columns::{META_PREFIX, is_meta_column};
