//! eKuiper's `delimited` format: one row per message, its fields cut at a delimiter (`,` by
//! default; any string). There is no quoting, as in eKuiper: a field cannot hold the delimiter.
//!
//! A stream with a schema names the fields by the schema's columns in order (extra fields are
//! dropped, missing ones are null) and types them as `text_columns.rs` casts; a
//! schemaless stream names them `col0`, `col1`, ... as eKuiper does, all STRING. One line end
//! (`\n` or `\r\n`) ending a message is not part of its last field.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::json::{Decoded, with_meta};
use super::text_columns::{Text, TextColumns};
use crate::RawMessage;

/// Decodes delimited messages for one stream.
#[derive(Debug, Clone)]
pub struct DelimitedDecoder {
    schema: Option<SchemaRef>,
    delimiter: Arc<str>,
    with_topic: bool,
}

impl DelimitedDecoder {
    /// A decoder cutting at `delimiter` (not empty) into `schema`'s columns (None: `colN`).
    pub fn new(schema: Option<SchemaRef>, delimiter: &str, with_topic: bool) -> Self {
        DelimitedDecoder {
            schema,
            delimiter: delimiter.into(),
            with_topic,
        }
    }

    /// Decodes `messages`, one row each; a message that is not UTF-8 or does not cast costs its
    /// own row.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        let mut errors = Vec::new();
        // Each message's text; None for one that is not UTF-8.
        let texts: Vec<Option<&str>> = messages
            .iter()
            .map(|m| match std::str::from_utf8(&m.payload) {
                Ok(text) => Some(text),
                Err(_) => {
                    errors.push("invalid delimited payload: not UTF-8 text".to_string());
                    None
                }
            })
            .collect();
        let schema = match &self.schema {
            Some(s) => s.clone(),
            None => {
                let widest = texts
                    .iter()
                    .flatten()
                    .map(|t| self.split(t).count())
                    .max()
                    .unwrap_or(0);
                Arc::new(Schema::new(
                    (0..widest)
                        .map(|i| Field::new(format!("col{i}"), DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ))
            }
        };
        let mut columns = TextColumns::new(schema, messages.len());
        let mut decoded = Vec::with_capacity(messages.len());
        // One message's fields, reused from message to message.
        let mut values: Vec<Option<Text<'_>>> = Vec::new();
        for (m, t) in messages.iter().zip(&texts) {
            let Some(t) = t else { continue };
            values.clear();
            values.extend(self.split(t).map(|s| Some(Text::One(s))));
            match columns.push(&values) {
                Ok(()) => decoded.push(m.clone()),
                Err(e) => errors.push(format!("error in preprocessor: {e}")),
            }
        }
        if decoded.is_empty() {
            return Decoded {
                batches: Vec::new(),
                errors,
            };
        }
        let rows = columns.rows();
        let mut batch = columns.finish();
        if self.with_topic {
            batch = with_meta(batch, &decoded, &vec![1; rows]);
        }
        Decoded {
            batches: vec![batch],
            errors,
        }
    }

    /// A message's fields: its text cut at the delimiter, after one line end.
    fn split<'t>(&'t self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        text.split(&*self.delimiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    fn msg(s: &[u8]) -> RawMessage {
        RawMessage::new(s.to_vec(), "t/1".into())
    }

    #[test]
    fn schema_columns_in_order_typed_and_bad_messages_counted() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
        ]));
        let d = DelimitedDecoder::new(Some(schema), "|", true);
        let out = d.decode(&[
            msg(b"1|a|20.5\n"),
            msg(b"x|b|1"),
            msg(b"2|c"),
            msg(b"3|d|7|extra\r\n"),
            msg(b"\xff|e|1"),
        ]);
        assert_eq!(
            out.errors,
            [
                "invalid delimited payload: not UTF-8 text",
                "error in preprocessor: field id type mismatch: cannot convert string(x) to bigint",
            ]
        );
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 3);
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 2, 3]);
        assert_eq!(b.column(1).as_string::<i32>().value(2), "d");
        let temp = b.column(2).as_primitive::<Float64Type>();
        assert_eq!(
            (temp.value(0), temp.is_null(1), temp.value(2)),
            (20.5, true, 7.0)
        );
        assert_eq!(b.column(3).as_string::<i32>().value(0), "t/1");
    }

    #[test]
    fn schemaless_fields_are_col_n_strings() {
        let d = DelimitedDecoder::new(None, ",", false);
        let out = d.decode(&[msg(b"a,1"), msg(b"b,2,true")]);
        assert!(out.errors.is_empty());
        let b = &out.batches[0];
        let names: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["col0", "col1", "col2"]);
        assert!(b.column(2).is_null(0));
        assert_eq!(b.column(2).as_string::<i32>().value(1), "true");
    }
}
