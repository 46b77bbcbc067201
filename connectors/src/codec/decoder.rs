//! The one place a stream's `FORMAT` picks its decoder: [`Decoder`] wraps the decoder of each
//! payload format behind the calls the runtime makes (`decode`, `decode_lines`, `reading`).
//!
//! Every decoder returns [`Decoded`]: the rows, and one reason per message that failed. A bad
//! message is counted on the rule's decoder node and costs its own row, never the rule.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use quiver_compiler::ddl::StreamOptions;

use super::binary::BinaryDecoder;
use super::delimited::DelimitedDecoder;
use super::json::{Decoded, JsonDecoder};
use super::urlencoded::UrlencodedDecoder;
use crate::RawMessage;

/// A stream's payload format (`FORMAT`, with `DELIMITER` for `delimited`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// JSON objects (or arrays of them).
    Json,
    /// Fields cut at a delimiter.
    Delimited {
        /// The delimiter (not empty).
        delimiter: String,
    },
    /// The payload as one BYTEA field `self`.
    Binary,
    /// Form-encoded `key=value&...` pairs.
    Urlencoded,
}

/// The formats sources decode, as `FORMAT` names them.
pub const SOURCE_FORMATS: &[&str] = &["json", "delimited", "binary", "urlencoded"];

/// `DELIMITER` when a delimited stream names none (eKuiper's default).
pub const DEFAULT_DELIMITER: &str = ",";

impl Format {
    /// The format `FORMAT` and `DELIMITER` name; the DDL has checked both, so an unknown name
    /// cannot reach here and reads as JSON.
    pub fn of(options: &StreamOptions) -> Format {
        match options.format.as_str() {
            "delimited" => Format::Delimited {
                delimiter: options
                    .raw
                    .get("DELIMITER")
                    .filter(|d| !d.is_empty())
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_DELIMITER.to_string()),
            },
            "binary" => Format::Binary,
            "urlencoded" => Format::Urlencoded,
            _ => Format::Json,
        }
    }
}

/// Decodes one stream's payloads in its format.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// `FORMAT="json"`.
    Json(JsonDecoder),
    /// `FORMAT="delimited"`.
    Delimited(Arc<DelimitedDecoder>),
    /// `FORMAT="binary"`.
    Binary(Arc<BinaryDecoder>),
    /// `FORMAT="urlencoded"`.
    Urlencoded(Arc<UrlencodedDecoder>),
}

impl Decoder {
    /// A decoder for `format` into `schema` (None: schemaless). `with_topic` adds the hidden
    /// metadata columns `meta()` reads.
    pub fn new(format: &Format, schema: Option<SchemaRef>, with_topic: bool) -> Decoder {
        match format {
            Format::Json => Decoder::Json(JsonDecoder::new(schema, with_topic)),
            Format::Delimited { delimiter } => Decoder::Delimited(Arc::new(DelimitedDecoder::new(
                schema, delimiter, with_topic,
            ))),
            Format::Binary => Decoder::Binary(Arc::new(BinaryDecoder::new(with_topic))),
            Format::Urlencoded => {
                Decoder::Urlencoded(Arc::new(UrlencodedDecoder::new(schema, with_topic)))
            }
        }
    }

    /// The decoder of a stream, by its `FORMAT` and schema.
    pub fn for_stream(def: &quiver_compiler::ddl::StreamDef, with_topic: bool) -> Decoder {
        Decoder::new(&Format::of(&def.options), def.arrow_schema(), with_topic)
    }

    /// The same decoder for a rule that reads only `columns` (JSON's fast path skips the
    /// others; the other formats fill every column).
    pub fn reading(self, columns: Option<&BTreeSet<String>>) -> Decoder {
        match self {
            Decoder::Json(d) => Decoder::Json(d.reading(columns)),
            other => other,
        }
    }

    /// Decodes `messages`.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        match self {
            Decoder::Json(d) => d.decode(messages),
            Decoder::Delimited(d) => d.decode(messages),
            Decoder::Binary(d) => d.decode(messages),
            Decoder::Urlencoded(d) => d.decode(messages),
        }
    }

    /// Decodes the non-blank lines of `block`, one message each, from `topic`; returns how many
    /// messages there were and what they decoded to.
    pub fn decode_lines(&self, block: &bytes::Bytes, topic: &Arc<str>) -> (usize, Decoded) {
        if let Decoder::Json(d) = self {
            return d.decode_lines(block, topic);
        }
        let messages = crate::SourceEvent::Lines {
            block: block.clone(),
            topic: topic.clone(),
        }
        .into_messages()
        .unwrap_or_default();
        (messages.len(), self.decode(&messages))
    }
}
