//! eKuiper's `custom` format: payloads decoded and encoded by a converter from a plugin library
//! registered as a custom schema (`POST /schemas/custom` with `soFile`). Streams and sinks name
//! one of its message types as `SCHEMAID="<schema>.<message>"`.
//!
//! The server loads the libraries (`server/src/plugins/converter.rs`) and registers them here,
//! once per schema name, at startup and when a schema is created or replaced. The registry is
//! process-wide, like the protobuf schema folder, because decoders are made deep inside rule
//! planning on every worker; threading it through each layer would carry it past code that
//! never reads it.
//!
//! Decoding goes one message at a time, so a payload the converter refuses, or whose fields do
//! not cast to the stream's schema, costs its own rows and is counted with the reason.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::json::{Decoded, with_meta};
use crate::RawMessage;

/// One message type of a custom format, as the plugin host wraps it.
pub trait Converter: Send + Sync + std::fmt::Debug {
    /// Decodes one payload into rows.
    fn decode(&self, payload: &[u8]) -> Result<RecordBatch, String>;

    /// Encodes each row of `batch` into one payload.
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String>;
}

/// A loaded custom format library: makes the converter of a message type.
pub trait ConverterLibrary: Send + Sync + std::fmt::Debug {
    /// The converter of `message`; the error names the types it knows.
    fn converter(&self, message: &str) -> Result<Arc<dyn Converter>, String>;
}

type Registry = HashMap<String, Arc<dyn ConverterLibrary>>;

static LIBRARIES: RwLock<Option<Registry>> = RwLock::new(None);

/// Makes `library` the custom schema `name` (replacing an earlier one of that name).
pub fn register(name: &str, library: Arc<dyn ConverterLibrary>) {
    let mut libs = LIBRARIES.write().expect("custom format registry lock");
    libs.get_or_insert_with(HashMap::new)
        .insert(name.to_string(), library);
}

/// Forgets the custom schema `name`; rules already running keep their converters.
pub fn unregister(name: &str) {
    let mut libs = LIBRARIES.write().expect("custom format registry lock");
    if let Some(libs) = libs.as_mut() {
        libs.remove(name);
    }
}

/// The converter `schema_id` (`<schema>.<message>`) names.
pub fn converter(schema_id: &str) -> Result<Arc<dyn Converter>, String> {
    let Some((schema, message)) = schema_id
        .split_once('.')
        .filter(|(s, m)| !s.is_empty() && !m.is_empty())
    else {
        return Err(format!(
            "schemaId \"{schema_id}\" must be \"schema.MessageName\""
        ));
    };
    // The lock is let go before the plugin is called.
    let library = LIBRARIES
        .read()
        .expect("custom format registry lock")
        .as_ref()
        .and_then(|libs| libs.get(schema).cloned())
        .ok_or_else(|| {
            format!("custom schema \"{schema}\" is not registered (POST /schemas/custom)")
        })?;
    library
        .converter(message)
        .map_err(|e| format!("custom schema \"{schema}\": {e}"))
}

/// Casts that fail on a value they cannot convert.
const STRICT: arrow::compute::CastOptions<'static> = arrow::compute::CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// Decodes one stream's payloads with a converter, into the stream's schema when it has one.
#[derive(Debug, Clone)]
pub struct CustomDecoder {
    converter: Arc<dyn Converter>,
    schema: Option<SchemaRef>,
    with_topic: bool,
}

impl CustomDecoder {
    /// The decoder of `schema_id`; fails when it names no registered type.
    pub fn new(
        schema_id: &str,
        schema: Option<SchemaRef>,
        with_topic: bool,
    ) -> Result<CustomDecoder, String> {
        Ok(CustomDecoder {
            converter: converter(schema_id)?,
            schema,
            with_topic,
        })
    }

    /// Decodes `messages`, each on its own.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        let mut out = Decoded::default();
        // Consecutive messages that decode to one schema become one batch.
        let mut run: Vec<RecordBatch> = Vec::new();
        let mut run_messages: Vec<RawMessage> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        for m in messages {
            let batch = match self.converter.decode(&m.payload).and_then(|b| self.fit(b)) {
                Ok(b) => b,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            };
            if run.first().is_some_and(|f| f.schema() != batch.schema()) {
                out.batches
                    .push(self.finish(&mut run, &mut run_messages, &mut counts));
            }
            counts.push(batch.num_rows());
            run.push(batch);
            run_messages.push(m.clone());
        }
        if !run.is_empty() {
            out.batches
                .push(self.finish(&mut run, &mut run_messages, &mut counts));
        }
        out
    }

    /// The decoded rows cast to the stream's schema (a missing field is null).
    fn fit(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        let Some(schema) = &self.schema else {
            return Ok(batch);
        };
        let rows = batch.num_rows();
        let columns = schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                // A value that does not convert fails its message instead of becoming null.
                Some(c) => {
                    arrow::compute::cast_with_options(c, f.data_type(), &STRICT).map_err(|e| {
                        format!(
                            "field \"{}\" ({}) does not cast to {}: {e}",
                            f.name(),
                            c.data_type(),
                            f.data_type()
                        )
                    })
                }
                None => Ok(arrow::array::new_null_array(f.data_type(), rows)),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())
    }

    fn finish(
        &self,
        run: &mut Vec<RecordBatch>,
        messages: &mut Vec<RawMessage>,
        counts: &mut Vec<usize>,
    ) -> RecordBatch {
        let batches = std::mem::take(run);
        let batch = if batches.len() == 1 {
            batches.into_iter().next().expect("one batch")
        } else {
            arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .expect("batches of one schema")
        };
        let msgs = std::mem::take(messages);
        let cs = std::mem::take(counts);
        if self.with_topic {
            with_meta(batch, &msgs, &cs)
        } else {
            batch
        }
    }
}

/// A sink's `custom` format: a converter, compared by the schema id it came from.
#[derive(Debug, Clone)]
pub struct CustomEncoder {
    schema_id: String,
    converter: Arc<dyn Converter>,
}

impl PartialEq for CustomEncoder {
    fn eq(&self, other: &Self) -> bool {
        self.schema_id == other.schema_id
    }
}

impl Eq for CustomEncoder {}

impl CustomEncoder {
    /// The encoder of `schema_id`; fails when it names no registered type.
    pub fn new(schema_id: &str) -> Result<CustomEncoder, String> {
        Ok(CustomEncoder {
            schema_id: schema_id.to_string(),
            converter: converter(schema_id)?,
        })
    }

    /// One message per row of `batch`.
    pub fn batch(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        self.converter.encode(batch)
    }

    /// A `dataTemplate`'s output (a JSON object or a list of them) as messages, as eKuiper
    /// hands a template's result to its converter.
    pub fn json(&self, payload: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let rows = match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(m)) => vec![serde_json::Value::Object(m)],
            Ok(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_object()) => items,
            _ => {
                return Err(
                    "format \"custom\" needs the dataTemplate to produce a JSON object".into(),
                );
            }
        };
        let schema = arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
            .map_err(|e| e.to_string())?;
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::new(schema))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        decoder.serialize(&rows).map_err(|e| e.to_string())?;
        match decoder.flush().map_err(|e| e.to_string())? {
            Some(batch) => self.batch(&batch),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};

    /// `<id>:<temperature>`; anything else is refused.
    #[derive(Debug)]
    struct Pairs;

    impl Converter for Pairs {
        fn decode(&self, payload: &[u8]) -> Result<RecordBatch, String> {
            let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
            let (id, t) = text.split_once(':').ok_or("no colon")?;
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("t", DataType::Utf8, true),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(vec![
                        id.parse::<i64>().map_err(|e| e.to_string())?,
                    ])),
                    Arc::new(StringArray::from(vec![t])),
                ],
            )
            .map_err(|e| e.to_string())
        }

        fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
            let ids = batch.column_by_name("id").ok_or("no id")?;
            let ids = arrow::compute::cast(ids, &DataType::Int64).map_err(|e| e.to_string())?;
            Ok(ids
                .as_primitive::<Int64Type>()
                .iter()
                .map(|id| format!("{}:", id.unwrap_or(0)).into_bytes())
                .collect())
        }
    }

    #[derive(Debug)]
    struct Lib;

    impl ConverterLibrary for Lib {
        fn converter(&self, message: &str) -> Result<Arc<dyn Converter>, String> {
            match message {
                "Pair" => Ok(Arc::new(Pairs)),
                other => Err(format!("unknown message type \"{other}\"")),
            }
        }
    }

    #[test]
    fn messages_decode_into_the_schema_and_bad_ones_count() {
        register("pairs", Arc::new(Lib));
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Float64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("missing", DataType::Utf8, true),
        ]));
        let d = CustomDecoder::new("pairs.Pair", Some(schema), false).unwrap();
        let msg = |s: &str| RawMessage::new(s.as_bytes().to_vec(), "t".into());
        let out = d.decode(&[msg("1:20.5"), msg("nope"), msg("2:hot"), msg("3:21")]);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        assert_eq!(out.errors[0], "no colon");
        assert!(out.errors[1].contains("field \"t\" (Utf8) does not cast to Float64"));
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            b.column(0).as_primitive::<Float64Type>(),
            &Float64Array::from(vec![20.5, 21.0])
        );
        assert_eq!(b.column(1).as_primitive::<Int64Type>().values(), &[1, 3]);
        assert_eq!(b.column(2).null_count(), 2);

        let e = CustomDecoder::new("pairs.Other", None, false).unwrap_err();
        assert_eq!(e, "custom schema \"pairs\": unknown message type \"Other\"");
        let e = CustomDecoder::new("absent.Pair", None, false).unwrap_err();
        assert!(e.contains("\"absent\" is not registered"), "{e}");
        assert!(CustomDecoder::new("pairs", None, false).is_err());

        // Encoding: rows, and a template's JSON output.
        let e = CustomEncoder::new("pairs.Pair").unwrap();
        assert_eq!(e.batch(b).unwrap(), vec![b"1:".to_vec(), b"3:".to_vec()]);
        assert_eq!(
            e.json(br#"[{"id": 7}, {"id": 8}]"#).unwrap(),
            vec![b"7:".to_vec(), b"8:".to_vec()]
        );
        assert!(e.json(b"3").unwrap_err().contains("JSON object"));
        unregister("pairs");
        assert!(CustomDecoder::new("pairs.Pair", None, false).is_err());
    }
}
