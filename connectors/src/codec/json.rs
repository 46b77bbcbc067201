//! JSON payloads to Arrow batches.
//!
//! Streams with a schema decode straight into the schema's types (unknown keys are ignored,
//! missing keys are null): flat objects of scalar fields through [`FlatDecoder`], everything
//! else, and any group the fast path gives up on, through arrow-json's tape decoder.
//! Schemaless streams infer a schema per batch, with every JSON number as FLOAT (eKuiper's
//! rule for schemaless data).
//!
//! A batch is first decoded in one pass; only if that fails is it decoded message by message, so
//! one malformed message costs its own row (reported in [`Decoded::errors`]) and nothing else.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;

use super::META_PREFIX;
use super::flat::FlatDecoder;
use crate::RawMessage;

/// The result of decoding a group of messages.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The rows that decoded: one batch, or (schemaless data whose fields change type from
    /// message to message) one batch per group of messages with consistent types.
    pub batches: Vec<RecordBatch>,
    /// One reason per message that failed.
    pub errors: Vec<String>,
}

impl Decoded {
    /// Rows decoded.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    fn extend(&mut self, other: Decoded) {
        self.batches.extend(other.batches);
        self.errors.extend(other.errors);
    }
}

/// Decodes JSON messages for one stream.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: Option<SchemaRef>,
    with_topic: bool,
    /// The fast path for flat objects, when the schema's types allow it.
    flat: Option<Arc<FlatDecoder>>,
}

impl JsonDecoder {
    /// A decoder for a stream with `schema` (None: schemaless). `with_topic` adds the hidden
    /// `__meta_topic` column that `meta(topic)` reads.
    pub fn new(schema: Option<SchemaRef>, with_topic: bool) -> Self {
        let flat = schema.clone().and_then(FlatDecoder::new).map(Arc::new);
        JsonDecoder {
            schema,
            with_topic,
            flat,
        }
    }

    /// The same decoder for a rule that reads only `columns` of the stream (`None`: every
    /// column). The fast path leaves the other columns null instead of converting them; its
    /// rows and errors are otherwise the same, and the general path still fills them.
    pub fn reading(mut self, columns: Option<&std::collections::BTreeSet<String>>) -> Self {
        if let (Some(columns), Some(flat)) = (columns, &self.flat) {
            self.flat = Some(Arc::new(flat.reading(columns)));
        }
        self
    }

    /// A decoder that always takes arrow-json's path: the reference the fast path is tested
    /// and benchmarked against.
    pub fn general(schema: Option<SchemaRef>) -> Self {
        JsonDecoder {
            schema,
            with_topic: false,
            flat: None,
        }
    }

    /// Decodes the non-blank lines of `block`, one message each, from `topic`; returns how many
    /// messages there were and what they decoded to.
    pub fn decode_lines(&self, block: &bytes::Bytes, topic: &Arc<str>) -> (usize, Decoded) {
        if let Some(Ok(batch)) = self.flat.as_ref().map(|f| f.decode_lines(block)) {
            let rows = batch.num_rows();
            let batch = if self.with_topic {
                let topics = StringArray::from(vec![Some(topic.as_ref()); rows]);
                add_column(batch, &format!("{META_PREFIX}topic"), Arc::new(topics))
            } else {
                batch
            };
            let decoded = Decoded {
                batches: vec![batch],
                errors: Vec::new(),
            };
            return (rows, decoded);
        }
        let messages = crate::SourceEvent::Lines {
            block: block.clone(),
            topic: topic.clone(),
        }
        .into_messages()
        .unwrap_or_default();
        (messages.len(), self.decode_general(&messages))
    }

    /// Decodes `messages`.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        if messages.is_empty() {
            return Decoded::default();
        }
        if let Some(Ok(batch)) = self.flat.as_ref().map(|f| f.decode(messages)) {
            let counts = if self.with_topic {
                vec![1; messages.len()]
            } else {
                Vec::new()
            };
            return Decoded {
                batches: vec![self.with_meta(batch, messages, &counts)],
                errors: Vec::new(),
            };
        }
        self.decode_general(messages)
    }

    /// Decodes `messages` without the fast path (which gave up on them, or does not apply).
    fn decode_general(&self, messages: &[RawMessage]) -> Decoded {
        if messages.is_empty() {
            return Decoded::default();
        }
        if let Some(schema) = &self.schema {
            // A number or boolean for a STRING column becomes its text, as eKuiper casts it.
            return self.decode_group(schema.clone(), messages, true);
        }
        // Schemaless: a field may be a number in one message and a string in the next. eKuiper
        // types every row on its own, so messages are grouped by consistent field types and
        // each group gets its own inferred schema (one group in the usual case).
        let Ok(parsed) = parse_all(messages) else {
            return self.decode_one_by_one(messages, None);
        };
        let groups = group_by_types(&parsed);
        let mut out = Decoded::default();
        for group in groups {
            let values = group.iter().flat_map(|&i| parsed[i].iter().cloned());
            let schema = match infer_from_values(values) {
                Ok(s) => s,
                Err(_) => {
                    let msgs: Vec<RawMessage> =
                        group.iter().map(|&i| messages[i].clone()).collect();
                    out.extend(self.decode_one_by_one(&msgs, None));
                    continue;
                }
            };
            if group.len() == messages.len() {
                out.extend(self.decode_group(schema, messages, true));
            } else {
                let msgs: Vec<RawMessage> = group.iter().map(|&i| messages[i].clone()).collect();
                out.extend(self.decode_group(schema, &msgs, true));
            }
        }
        out
    }

    fn decode_group(&self, schema: SchemaRef, messages: &[RawMessage], coerce: bool) -> Decoded {
        match decode_all(&schema, messages, coerce) {
            Ok((batch, counts)) => Decoded {
                batches: vec![self.with_meta(batch, messages, &counts)],
                errors: Vec::new(),
            },
            Err(_) => self.decode_one_by_one(messages, self.schema.clone()),
        }
    }

    /// The slow path after a failure: each message on its own, so only bad ones are lost.
    fn decode_one_by_one(&self, messages: &[RawMessage], schema: Option<SchemaRef>) -> Decoded {
        let mut batches = Vec::new();
        let mut errors = Vec::new();
        for m in messages {
            let one = std::slice::from_ref(m);
            let schema = match &schema {
                Some(s) => s.clone(),
                None => {
                    match parse_all(one).and_then(|p| infer_from_values(p.into_iter().flatten())) {
                        Ok(s) => s,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
            };
            match decode_all(&schema, one, true) {
                Ok((b, counts)) => batches.push(self.with_meta(b, one, &counts)),
                Err(e) => errors.push(type_mismatch(&schema, m, &e).unwrap_or(e)),
            }
        }
        if self.schema.is_some()
            && batches.len() > 1
            && let Ok(b) = arrow::compute::concat_batches(&batches[0].schema(), &batches)
        {
            batches = vec![b];
        }
        Decoded { batches, errors }
    }

    fn with_meta(
        &self,
        batch: RecordBatch,
        messages: &[RawMessage],
        counts: &[usize],
    ) -> RecordBatch {
        if self.with_topic {
            with_meta(batch, messages, counts)
        } else {
            batch
        }
    }
}

/// `batch` with the hidden metadata columns `meta()` reads: the topic, and MQTT's QoS and
/// message id when the source has them; message `i` gave `counts[i]` rows.
pub(crate) fn with_meta(
    batch: RecordBatch,
    messages: &[RawMessage],
    counts: &[usize],
) -> RecordBatch {
    let topics: StringArray = messages
        .iter()
        .zip(counts)
        .flat_map(|(m, n)| std::iter::repeat_n(Some(m.topic.as_ref()), *n))
        .collect();
    let mut batch = add_column(batch, &format!("{META_PREFIX}topic"), Arc::new(topics));
    // MQTT metadata, when the source has it (`meta(qos)`, `meta(messageid)`).
    if messages.iter().any(|m| m.qos.is_some()) {
        let per_row = |f: &dyn Fn(&RawMessage) -> Option<i64>| -> arrow::array::Int64Array {
            messages
                .iter()
                .zip(counts)
                .flat_map(|(m, n)| std::iter::repeat_n(f(m), *n))
                .collect()
        };
        let qos = per_row(&|m| m.qos.map(i64::from));
        let ids = per_row(&|m| m.message_id.map(i64::from));
        batch = add_column(batch, &format!("{META_PREFIX}qos"), Arc::new(qos));
        batch = add_column(batch, &format!("{META_PREFIX}messageid"), Arc::new(ids));
    }
    batch
}

/// The JSON kind of a value, for grouping messages by field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    String,
    Bool,
    Object,
    Array,
}

fn kind(v: &serde_json::Value) -> Option<Kind> {
    use serde_json::Value as V;
    match v {
        V::Null => None,
        V::Bool(_) => Some(Kind::Bool),
        V::Number(_) => Some(Kind::Number),
        V::String(_) => Some(Kind::String),
        V::Array(_) => Some(Kind::Array),
        V::Object(_) => Some(Kind::Object),
    }
}

/// Groups message indexes so that, within a group, each top-level field has one JSON kind.
fn group_by_types(parsed: &[Vec<serde_json::Value>]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(std::collections::HashMap<&str, Kind>, Vec<usize>)> = Vec::new();
    for (i, rows) in parsed.iter().enumerate() {
        let mut sig: std::collections::HashMap<&str, Kind> = std::collections::HashMap::new();
        for row in rows {
            if let serde_json::Value::Object(map) = row {
                for (k, v) in map {
                    if let Some(kd) = kind(v) {
                        sig.entry(k.as_str()).or_insert(kd);
                    }
                }
            }
        }
        let fits = |g: &std::collections::HashMap<&str, Kind>| {
            sig.iter().all(|(k, kd)| g.get(k).is_none_or(|gk| gk == kd))
        };
        match groups.iter_mut().find(|(g, _)| fits(g)) {
            Some((g, members)) => {
                g.extend(sig);
                members.push(i);
            }
            None => groups.push((sig, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
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

/// eKuiper's text for a value of the wrong type for a schema column, from arrow-json's
/// ("whilst decoding field 'size': ..."): `error in preprocessor: field size type mismatch:
/// cannot convert string(red) to int64`, the value described with Go's type names.
fn type_mismatch(schema: &SchemaRef, message: &RawMessage, arrow_error: &str) -> Option<String> {
    let rest = arrow_error.split("whilst decoding field '").nth(1)?;
    let name = &rest[..rest.find('\'')?];
    let field = schema.field_with_name(name).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&message.payload).ok()?;
    let got = match value.get(name)? {
        serde_json::Value::String(s) => format!("string({s})"),
        serde_json::Value::Bool(b) => format!("bool({b})"),
        serde_json::Value::Number(n) if n.is_i64() => format!("int64({n})"),
        serde_json::Value::Number(n) => format!("float64({n})"),
        serde_json::Value::Object(_) => format!("map[string]interface {{}}({})", value[name]),
        serde_json::Value::Array(_) => format!("[]interface {{}}({})", value[name]),
        serde_json::Value::Null => return None,
    };
    let want = match field.data_type() {
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        DataType::Utf8 => "string",
        DataType::Binary => "bytea",
        DataType::Timestamp(..) => "datetime",
        DataType::List(_) => "array",
        DataType::Struct(_) => "struct",
        _ => return None,
    };
    Some(format!(
        "error in preprocessor: field {name} type mismatch: cannot convert {got} to {want}"
    ))
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

/// Parses every message into its rows (an array payload gives one row per element).
fn parse_all(messages: &[RawMessage]) -> Result<Vec<Vec<serde_json::Value>>, String> {
    messages
        .iter()
        .map(|m| {
            let v: serde_json::Value =
                serde_json::from_slice(&m.payload).map_err(|e| format!("invalid JSON: {e}"))?;
            match v {
                serde_json::Value::Array(items) => {
                    if items.iter().all(serde_json::Value::is_object) {
                        Ok(items)
                    } else {
                        Err("a JSON array payload must hold objects".to_string())
                    }
                }
                serde_json::Value::Object(_) => Ok(vec![v]),
                other => Err(format!(
                    "expected a JSON object, got {}",
                    match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        _ => "a string",
                    }
                )),
            }
        })
        .collect()
}

/// Infers a schema from rows, with every number as FLOAT (eKuiper's schemaless rule).
fn infer_from_values(values: impl Iterator<Item = serde_json::Value>) -> Result<SchemaRef, String> {
    let schema = arrow::json::reader::infer_json_schema_from_iterator(values.map(Ok))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;

    fn msg(s: &str) -> RawMessage {
        RawMessage::new(s.as_bytes().to_vec(), "t/1".into())
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
        assert_eq!(out.batches.len(), 1);
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(1), "d");
        assert!(b.column(1).is_null(1));
        assert_eq!(b.column(2).as_string::<i32>().value(0), "t/1");
    }

    #[test]
    fn a_block_of_lines_decodes_line_by_line() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Float64, true)]));
        let topic: Arc<str> = Arc::from("in.jsonl");
        for decoder in [
            JsonDecoder::new(Some(schema.clone()), true),
            JsonDecoder::general(Some(schema.clone())),
        ] {
            // CRLF, a blank line, an unended last line: three messages.
            let block = bytes::Bytes::from_static(b"{\"a\":1}\r\n  \n{\"a\":2}\n{\"a\":3}");
            let (messages, out) = decoder.decode_lines(&block, &topic);
            assert_eq!((messages, out.rows()), (3, 3));
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            // A malformed line costs its own row only.
            let block = bytes::Bytes::from_static(b"{\"a\":1}\nnot json\n{\"a\":3}\n");
            let (messages, out) = decoder.decode_lines(&block, &topic);
            assert_eq!((messages, out.rows(), out.errors.len()), (3, 2, 1));
            let a = out.batches[0].column(0).as_primitive::<Float64Type>();
            assert_eq!(a.values(), &[1.0, 3.0]);
        }
        let d = JsonDecoder::new(Some(schema), true);
        let (_, out) = d.decode_lines(&bytes::Bytes::from_static(b"{\"a\":1}\n"), &topic);
        let topics = out.batches[0].column(1).as_string::<i32>();
        assert_eq!(topics.value(0), "in.jsonl");
    }

    #[test]
    fn schemaless_numbers_are_floats_and_arrays_flatten() {
        let d = JsonDecoder::new(None, false);
        let out = d.decode(&[msg(r#"[{"a":3},{"a":6,"n":{"x":1}}]"#)]);
        assert!(out.errors.is_empty());
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 2);
        let a = b.column_by_name("a").unwrap().as_primitive::<Float64Type>();
        assert_eq!(a.values(), &[3.0, 6.0]);
    }

    #[test]
    fn schemaless_fields_that_change_type_keep_their_types() {
        let d = JsonDecoder::new(None, false);
        let out = d.decode(&[msg(r#"{"a":25}"#), msg(r#"{"a":"x"}"#), msg(r#"{"a":30}"#)]);
        assert!(out.errors.is_empty());
        let types: Vec<DataType> = out
            .batches
            .iter()
            .map(|b| b.column_by_name("a").unwrap().data_type().clone())
            .collect();
        assert_eq!(types, vec![DataType::Float64, DataType::Utf8]);
        assert_eq!(out.rows(), 3);
    }
}
