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
use super::compress::Compression;
use super::custom::CustomDecoder;
use super::delimited::DelimitedDecoder;
use super::json::{Decoded, JsonDecoder};
use super::protobuf::{ProtobufDecoder, message_descriptor};
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
    /// Protobuf messages of a registered type.
    Protobuf {
        /// `SCHEMAID`: `schema.MessageName`.
        schema_id: String,
    },
    /// Messages a registered custom format library decodes.
    Custom {
        /// `SCHEMAID`: `schema.MessageName`.
        schema_id: String,
    },
}

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
            "protobuf" => Format::Protobuf {
                schema_id: options.raw.get("SCHEMAID").cloned().unwrap_or_default(),
            },
            "custom" => Format::Custom {
                schema_id: options.raw.get("SCHEMAID").cloned().unwrap_or_default(),
            },
            _ => Format::Json,
        }
    }
}

/// Decodes one stream's payloads in its format, after undoing the source's `decompression`.
#[derive(Debug, Clone)]
pub struct Decoder {
    kind: Kind,
    decompression: Compression,
}

/// The decoder of each format.
#[derive(Debug, Clone)]
enum Kind {
    Json(JsonDecoder),
    Delimited(Arc<DelimitedDecoder>),
    Binary(Arc<BinaryDecoder>),
    Urlencoded(Arc<UrlencodedDecoder>),
    Protobuf(Arc<ProtobufDecoder>),
    Custom(Arc<CustomDecoder>),
}

impl Decoder {
    /// A decoder for `format` into `schema` (None: schemaless). `with_topic` adds the hidden
    /// metadata columns `meta()` reads. Fails when a protobuf or custom schema id names no
    /// registered message type.
    pub fn new(
        format: &Format,
        schema: Option<SchemaRef>,
        with_topic: bool,
    ) -> Result<Decoder, String> {
        let kind = match format {
            Format::Json => Kind::Json(JsonDecoder::new(schema, with_topic)),
            Format::Delimited { delimiter } => Kind::Delimited(Arc::new(DelimitedDecoder::new(
                schema, delimiter, with_topic,
            ))),
            Format::Binary => Kind::Binary(Arc::new(BinaryDecoder::new(with_topic))),
            Format::Urlencoded => {
                Kind::Urlencoded(Arc::new(UrlencodedDecoder::new(schema, with_topic)))
            }
            Format::Protobuf { schema_id } => Kind::Protobuf(Arc::new(ProtobufDecoder::new(
                message_descriptor(schema_id)?,
                schema,
                with_topic,
            )?)),
            Format::Custom { schema_id } => {
                Kind::Custom(Arc::new(CustomDecoder::new(schema_id, schema, with_topic)?))
            }
        };
        Ok(Decoder {
            kind,
            decompression: Compression::None,
        })
    }

    /// A JSON decoder as it is (tables, whose rows are JSON).
    pub fn json(decoder: JsonDecoder) -> Decoder {
        Decoder {
            kind: Kind::Json(decoder),
            decompression: Compression::None,
        }
    }

    /// The decoder of a stream, by its `FORMAT` and schema.
    pub fn for_stream(
        def: &quiver_compiler::ddl::StreamDef,
        with_topic: bool,
    ) -> Result<Decoder, String> {
        Decoder::new(&Format::of(&def.options), def.arrow_schema(), with_topic)
    }

    /// The same decoder, decompressing each message first (the source's `decompression`); a
    /// message that does not decompress is a bad message.
    pub fn decompressing(mut self, decompression: Compression) -> Decoder {
        self.decompression = decompression;
        self
    }

    /// The same decoder for a rule that reads only `columns` (JSON's fast path skips the
    /// others; the other formats fill every column).
    pub fn reading(mut self, columns: Option<&BTreeSet<String>>) -> Decoder {
        if let Kind::Json(d) = self.kind {
            self.kind = Kind::Json(d.reading(columns));
        }
        self
    }

    /// Decodes `messages`.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        if self.decompression == Compression::None {
            return self.decode_plain(messages);
        }
        let mut errors = Vec::new();
        let plain: Vec<RawMessage> = messages
            .iter()
            .filter_map(|m| match self.decompression.decompress(&m.payload) {
                Ok(payload) => Some(RawMessage {
                    payload: payload.into(),
                    ..m.clone()
                }),
                Err(e) => {
                    errors.push(format!("decompression failed: {e}"));
                    None
                }
            })
            .collect();
        let mut decoded = self.decode_plain(&plain);
        errors.append(&mut decoded.errors);
        decoded.errors = errors;
        decoded
    }

    fn decode_plain(&self, messages: &[RawMessage]) -> Decoded {
        match &self.kind {
            Kind::Json(d) => d.decode(messages),
            Kind::Delimited(d) => d.decode(messages),
            Kind::Binary(d) => d.decode(messages),
            Kind::Urlencoded(d) => d.decode(messages),
            Kind::Protobuf(d) => d.decode(messages),
            Kind::Custom(d) => d.decode(messages),
        }
    }

    /// Decodes the non-blank lines of `block`, one message each, from `topic`; returns how many
    /// messages there were and what they decoded to.
    pub fn decode_lines(&self, block: &bytes::Bytes, topic: &Arc<str>) -> (usize, Decoded) {
        if let (Kind::Json(d), Compression::None) = (&self.kind, self.decompression) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_messages_decode_and_bad_ones_count() {
        let d = Decoder::new(&Format::Json, None, false)
            .unwrap()
            .decompressing(Compression::Gzip);
        let packed = Compression::Gzip.compress(br#"{"a":1}"#);
        let out = d.decode(&[
            RawMessage::new(packed, "t".into()),
            RawMessage::new(b"{\"a\":2}".to_vec(), "t".into()),
        ]);
        assert_eq!(out.rows(), 1);
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0].starts_with("decompression failed: "),
            "{:?}",
            out.errors
        );
    }
}
