//! Payload codecs between bytes and Arrow batches.

pub mod encode;
pub mod flat;
pub mod json;

/// Prefix of hidden columns carrying message metadata (`meta(topic)`); never part of output.
pub const META_PREFIX: &str = "__meta_";

/// True for hidden metadata columns.
pub fn is_meta_column(name: &str) -> bool {
    name.starts_with(META_PREFIX)
}
