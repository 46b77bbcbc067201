//! JSON payloads to Arrow batches.
//!
//! Streams with a schema decode straight into the schema's types with arrow-json's tape
//! decoder (unknown keys are ignored, missing keys are null). Schemaless streams infer a schema
//! per batch, with every JSON number as FLOAT (eKuiper's rule for schemaless data).
//!
//! A batch is first decoded in one pass; only if that fails is it decoded message by message, so
//! one malformed message costs its own row (reported in [`Decoded::errors`]) and nothing else.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;

use super::META_PREFIX;
use crate::RawMessage;

/// The result of decoding a group of messages.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The rows that decoded, if any.
    pub batch: Option<RecordBatch>,
    /// One reason per message that failed.
    pub errors: Vec<String>,
}

/// Decodes JSON messages for one stream.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: Option<SchemaRef>,
    with_topic: bool,
}

impl JsonDecoder {
    /// A decoder for a stream with `schema` (None: schemaless). `with_topic` adds the hidden
    /// `__meta_topic` column that `meta(topic)` reads.
    pub fn new(schema: Option<SchemaRef>, with_topic: bool) -> Self {
        JsonDecoder { schema, with_topic }
    }

    /// Decodes `messages` into one batch.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        if messages.is_empty() {
            return Decoded::default();
        }
        let schema = match &self.schema {
            Some(s) => s.clone(),
            None => match infer_schema(messages) {
                Ok(s) => s,
                Err(_) => return self.decode_one_by_one(messages, None),
            },
        };
        match decode_all(&schema, messages, self.schema.is_none()) {
            Ok((batch, counts)) => Decoded {
                batch: Some(self.with_meta(batch, messages, &counts)),
                errors: Vec::new(),
            },
            Err(_) => self.decode_one_by_one(messages, self.schema.clone()),
        }
    }

    fn decode_one_by_one(&self, messages: &[RawMessage], schema: Option<SchemaRef>) -> Decoded {
        let mut batches = Vec::new();
        let mut errors = Vec::new();
        for m in messages {
            let one = std::slice::from_ref(m);
            let schema = match &schema {
                Some(s) => s.clone(),
                None => match infer_schema(one) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            };
            match decode_all(&schema, one, self.schema.is_none()) {
                Ok((b, counts)) => batches.push(self.with_meta(b, one, &counts)),
                Err(e) => errors.push(e),
            }
        }
        let batch = match batches.len() {
            0 => None,
            1 => batches.pop(),
            _ if self.schema.is_some() => {
                arrow::compute::concat_batches(&batches[0].schema(), &batches).ok()
            }
            _ => concat_schemaless(batches),
        };
        Decoded { batch, errors }
    }

    fn with_meta(
        &self,
        batch: RecordBatch,
        messages: &[RawMessage],
        counts: &[usize],
    ) -> RecordBatch {
        if !self.with_topic {
            return batch;
        }
        let topics: StringArray = messages
            .iter()
            .zip(counts)
            .flat_map(|(m, n)| std::iter::repeat_n(Some(m.topic.as_ref()), *n))
            .collect();
        add_column(batch, &format!("{META_PREFIX}topic"), Arc::new(topics))
    }
}

/// Appends a column to a batch.
pub fn add_column(batch: RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(name, col.data_type().clone(), true)));
    let mut cols = batch.columns().to_vec();
    cols.push(col);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .expect("column length equals the batch's row count")
}

/// Decodes all messages with `schema`; returns the batch and the rows each message produced.
fn decode_all(
    schema: &SchemaRef,
    messages: &[RawMessage],
    coerce: bool,
) -> Result<(RecordBatch, Vec<usize>), String> {
    // The batch size caps the rows buffered before `decode` stops reading: make it larger than
    // any possible row count (every row needs at least the two bytes of `{}`).
    let max_rows = messages
        .iter()
        .map(|m| m.payload.len() / 2 + 1)
        .sum::<usize>();
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(max_rows.max(1))
        .with_coerce_primitive(coerce)
        .with_flatten(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let mut counts = Vec::with_capacity(messages.len());
    let mut total = 0usize;
    for m in messages {
        let mut buf: &[u8] = &m.payload;
        while !buf.is_empty() {
            let read = decoder.decode(buf).map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            buf = &buf[read..];
        }
        // A message must be complete on its own; also separates it from the next one.
        let read = decoder.decode(b"\n").map_err(|e| e.to_string())?;
        if decoder.has_partial_record() || read == 0 {
            return Err("unexpected end of JSON input".to_string());
        }
        let now = decoder.len();
        counts.push(now - total);
        total = now;
    }
    let batch = decoder
        .flush()
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    Ok((batch, counts))
}

/// Infers a schema from the messages, with every number as FLOAT.
fn infer_schema(messages: &[RawMessage]) -> Result<SchemaRef, String> {
    let mut values = Vec::with_capacity(messages.len());
    for m in messages {
        let v: serde_json::Value =
            serde_json::from_slice(&m.payload).map_err(|e| format!("invalid JSON: {e}"))?;
        match v {
            serde_json::Value::Array(items) => {
                for item in items {
                    if !item.is_object() {
                        return Err("a JSON array payload must hold objects".to_string());
                    }
                    values.push(Ok(item));
                }
            }
            serde_json::Value::Object(_) => values.push(Ok(v)),
            other => {
                return Err(format!(
                    "expected a JSON object, got {}",
                    match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        _ => "a string",
                    }
                ));
            }
        }
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(values.into_iter())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(Schema::new(floats_everywhere(schema.fields()))))
}

fn floats_everywhere(fields: &Fields) -> Vec<Field> {
    fields
        .iter()
        .map(|f| Field::new(f.name(), float_type(f.data_type()), true))
        .collect()
}

fn float_type(t: &DataType) -> DataType {
    match t {
        t if t.is_integer() => DataType::Float64,
        DataType::List(item) => DataType::List(Arc::new(Field::new(
            item.name(),
            float_type(item.data_type()),
            true,
        ))),
        DataType::Struct(fields) => DataType::Struct(floats_everywhere(fields).into()),
        other => other.clone(),
    }
}

/// Concatenates schemaless batches whose inferred schemas may differ, by re-inferring over all.
fn concat_schemaless(batches: Vec<RecordBatch>) -> Option<RecordBatch> {
    // Rare path (a group with malformed messages): widen to the union of fields.
    let mut fields: Vec<Field> = Vec::new();
    for b in &batches {
        for f in b.schema().fields() {
            match fields.iter_mut().find(|x| x.name() == f.name()) {
                None => fields.push(f.as_ref().clone()),
                Some(existing) if existing.data_type() != f.data_type() => {
                    *existing = Field::new(f.name(), DataType::Utf8, true);
                }
                Some(_) => {}
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let mut aligned = Vec::with_capacity(batches.len());
    for b in batches {
        let cols = schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => arrow::compute::cast(c.as_ref(), f.data_type()),
                None => Ok(arrow::array::new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        aligned.push(RecordBatch::try_new(schema.clone(), cols).ok()?);
    }
    arrow::compute::concat_batches(&schema, &aligned).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;

    fn msg(s: &str) -> RawMessage {
        RawMessage {
            payload: s.as_bytes().into(),
            topic: "t/1".into(),
        }
    }

    #[test]
    fn typed_decoding_skips_only_the_bad_message() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
        ]));
        let d = JsonDecoder::new(Some(schema), true);
        let out = d.decode(&[
            msg(r#"{"device":"a","temperature":21.5,"extra":1}"#),
            msg(r#"{"device":"b","#),
            msg(r#"{"device":"c","temperature":"hot"}"#),
            msg(r#"{"device":"d"}"#),
        ]);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(1), "d");
        assert!(b.column(1).is_null(1));
        assert_eq!(b.column(2).as_string::<i32>().value(0), "t/1");
    }

    #[test]
    fn schemaless_numbers_are_floats_and_arrays_flatten() {
        let d = JsonDecoder::new(None, false);
        let out = d.decode(&[msg(r#"[{"a":3},{"a":6,"n":{"x":1}}]"#)]);
        assert!(out.errors.is_empty());
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 2);
        let a = b.column_by_name("a").unwrap().as_primitive::<Float64Type>();
        assert_eq!(a.values(), &[3.0, 6.0]);
    }
}
