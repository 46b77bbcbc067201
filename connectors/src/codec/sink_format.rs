//! How a byte sink (mqtt, rest, kafka, redisPub, websocket, log) turns an emission into
//! messages: eKuiper's `format` with its options, then `compression`. Every byte sink calls
//! [`SinkFormat::messages`] (or [`SinkFormat::payloads`] for `dataTemplate` output), so a
//! format works the same on all of them.
//!
//! - `json` (default): one object per row with `sendSingle`, else one array
//!   ([`super::encode::batch_messages`]).
//! - `delimited`: the row's values joined by `delimiter` (default `,`), in the order of
//!   `fields` when the action lists them, else by field name (as eKuiper sorts a map's keys);
//!   a null is empty, a list or object its JSON text. With `sendSingle` one line per message
//!   (ended by `\n`), else the rows joined by `\n` in one message. `hasHeader` puts the field
//!   names first: in every message of rows, or once, in the first message, with `sendSingle`
//!   (eKuiper's behaviour).
//! - `urlencoded`: `key=value&...` sorted by key, a list as a repeated key; one message per row
//!   (one row is what the format holds).
//! - `binary`: the raw bytes of the row's one field, which must be BYTEA or STRING; one message
//!   per row, none for a null.
//!
//! - `protobuf`: each row as one message of the type `schemaId` names (`schema.Message`, a
//!   schema of the registry), see [`super::protobuf::encode`].
//!
//! - `custom`: each row as one message of a custom format library's type (`schemaId`:
//!   `schema.Message`, a library registered with `POST /schemas/custom`), see
//!   [`super::custom`].

use std::sync::Mutex;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use super::compress::Compression;
use super::custom::CustomEncoder;
use super::encode;
use super::protobuf::{ProtobufEncoder, message_descriptor};
use crate::ConnectorError;
use crate::props::Props;

/// The common sink properties a byte sink reads itself (`Connectors::sink_own_keys`): the host
/// passes them through instead of refusing them.
pub const SINK_OWN_KEYS: &[&str] = &["format", "compression", "fields", "schemaId"];

/// The formats byte sinks write, as `format` names them: those streams read.
pub const SINK_FORMATS: &[&str] = quiver_compiler::ddl::SUPPORTED_FORMATS;

/// A row's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// JSON objects.
    Json,
    /// Values joined by `delimiter`.
    Delimited {
        /// Between two values.
        delimiter: String,
        /// Field names first.
        has_header: bool,
    },
    /// The one field's raw bytes.
    Binary,
    /// `key=value&...`.
    Urlencoded,
    /// One protobuf message per row.
    Protobuf(ProtobufEncoder),
    /// One message per row from a custom format library.
    Custom(CustomEncoder),
}

/// A byte sink's `format`, its options and `compression`, validated.
#[derive(Debug)]
pub struct SinkFormat {
    /// How rows become bytes.
    pub encoding: Encoding,
    /// Applied to every message last.
    pub compression: Compression,
    /// The action's `fields`: the delimited column order.
    fields: Option<Vec<String>>,
    /// The delimited columns with `sendSingle`, fixed by the first message (which carries the
    /// header), as eKuiper fixes them.
    single_columns: Mutex<Option<Vec<String>>>,
}

impl Default for SinkFormat {
    fn default() -> Self {
        SinkFormat {
            encoding: Encoding::Json,
            compression: Compression::None,
            fields: None,
            single_columns: Mutex::new(None),
        }
    }
}

impl SinkFormat {
    /// Reads `format`, `delimiter`, `hasHeader`, `fields` and (when `compression` is true; the
    /// kafka sink's `compression` is Kafka's own) `compression`.
    pub(crate) fn parse(p: &Props<'_>, compression: bool) -> Result<SinkFormat, ConnectorError> {
        let format = p.string("format")?.map(str::trim).unwrap_or("");
        let delimiter = p.string("delimiter")?;
        let has_header = p.boolean("hasheader")?;
        let encoding = match format.to_ascii_lowercase().as_str() {
            "" | "json" => Encoding::Json,
            "delimited" => Encoding::Delimited {
                delimiter: match delimiter {
                    Some("") => return Err(p.error("\"delimiter\" must not be empty".into())),
                    Some(d) => d.to_string(),
                    None => ",".to_string(),
                },
                has_header: has_header.unwrap_or(false),
            },
            "binary" => Encoding::Binary,
            "urlencoded" => Encoding::Urlencoded,
            "protobuf" => Encoding::Protobuf(protobuf_encoder(p)?),
            "custom" => Encoding::Custom(custom_encoder(p)?),
            _ => {
                return Err(p.error(format!(
                    "format \"{format}\" is unknown; supported: {}",
                    SINK_FORMATS.join(", ")
                )));
            }
        };
        if !matches!(encoding, Encoding::Protobuf(_) | Encoding::Custom(_))
            && p.string("schemaid")?.is_some()
        {
            return Err(
                p.error("\"schemaId\" applies to formats \"protobuf\" and \"custom\" only".into())
            );
        }
        if !matches!(encoding, Encoding::Delimited { .. }) {
            for (key, set) in [
                ("delimiter", delimiter.is_some()),
                ("hasHeader", has_header.is_some()),
            ] {
                if set {
                    return Err(p.error(format!("\"{key}\" applies to format \"delimited\" only")));
                }
            }
        }
        let fields = match p.get("fields") {
            Some((_, Value::Array(items))) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        };
        let compression = if compression {
            Compression::parse(
                p,
                "compression",
                &[
                    Compression::Zlib,
                    Compression::Gzip,
                    Compression::Flate,
                    Compression::Zstd,
                ],
            )?
        } else {
            Compression::None
        };
        Ok(SinkFormat {
            encoding,
            compression,
            fields,
            single_columns: Mutex::new(None),
        })
    }

    /// True for uncompressed JSON, which a sink may encode its own way (the rest sink's form
    /// bodies).
    pub fn is_plain_json(&self) -> bool {
        self.encoding == Encoding::Json && self.compression == Compression::None
    }

    /// The messages for one emission (see the module doc); `send_nil` keeps null JSON fields,
    /// `omit_if_empty` sends nothing for an emission without rows.
    pub fn messages(
        &self,
        batch: &RecordBatch,
        send_single: bool,
        send_nil: bool,
        omit_if_empty: bool,
    ) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let messages = match &self.encoding {
            Encoding::Json => encode::batch_messages(batch, send_single, send_nil, omit_if_empty),
            Encoding::Binary => binary_messages(batch)?,
            Encoding::Protobuf(e) => e.batch(batch).map_err(protobuf_error)?,
            Encoding::Custom(e) => e.batch(batch).map_err(protobuf_error)?,
            _ if batch.num_rows() == 0 && (omit_if_empty || send_single) => Vec::new(),
            _ => self.encode_rows(&encode::batch_to_rows(batch, send_nil), send_single),
        };
        Ok(self.compressed(messages))
    }

    /// `dataTemplate` output as messages: as it is for `json` and `binary`; for `delimited`
    /// and `urlencoded` read as JSON (an object or a list of them) and encoded, as eKuiper
    /// encodes a template's result.
    pub fn payloads(
        &self,
        payloads: &[Vec<u8>],
        send_single: bool,
    ) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let messages = match &self.encoding {
            Encoding::Json | Encoding::Binary => payloads.to_vec(),
            Encoding::Protobuf(e) => payloads
                .iter()
                .map(|p| match serde_json::from_slice::<Value>(p) {
                    Ok(Value::Object(m)) => e.json(&m).map_err(protobuf_error),
                    _ => Err(protobuf_error(
                        "format \"protobuf\" needs the dataTemplate to produce a JSON object"
                            .into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Encoding::Custom(e) => {
                let mut out = Vec::new();
                for p in payloads {
                    out.extend(e.json(p).map_err(protobuf_error)?);
                }
                out
            }
            _ => {
                let mut out = Vec::new();
                for p in payloads {
                    let rows = match serde_json::from_slice::<Value>(p) {
                        Ok(Value::Object(m)) => vec![m],
                        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items
                            .into_iter()
                            .filter_map(|v| match v {
                                Value::Object(m) => Some(m),
                                _ => None,
                            })
                            .collect(),
                        _ => {
                            return Err(ConnectorError::Config {
                                connector: "sink",
                                reason: "format needs the dataTemplate to produce a JSON object or a list of objects".into(),
                            });
                        }
                    };
                    out.extend(self.encode_rows(&rows, send_single));
                }
                out
            }
        };
        Ok(self.compressed(messages))
    }

    fn compressed(&self, messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        match self.compression {
            Compression::None => messages,
            c => messages.iter().map(|m| c.compress(m)).collect(),
        }
    }

    /// Delimited or urlencoded rows as messages.
    fn encode_rows(&self, rows: &[Map<String, Value>], send_single: bool) -> Vec<Vec<u8>> {
        match &self.encoding {
            Encoding::Urlencoded => rows.iter().map(urlencoded).collect(),
            Encoding::Delimited {
                delimiter,
                has_header,
            } => {
                if send_single {
                    let mut fixed = self.single_columns.lock().expect("columns lock");
                    let first = fixed.is_none();
                    let columns = fixed.get_or_insert_with(|| self.columns(rows)).clone();
                    rows.iter()
                        .enumerate()
                        .map(|(i, row)| {
                            let mut out = Vec::new();
                            if *has_header && first && i == 0 {
                                out.extend(columns.join(delimiter).as_bytes());
                                out.push(b'\n');
                            }
                            delimited_row(row, &columns, delimiter, &mut out);
                            out.push(b'\n');
                            out
                        })
                        .collect()
                } else {
                    let columns = self.columns(rows);
                    let mut out = Vec::new();
                    if *has_header {
                        out.extend(columns.join(delimiter).as_bytes());
                    }
                    for (i, row) in rows.iter().enumerate() {
                        if i > 0 || *has_header {
                            out.push(b'\n');
                        }
                        delimited_row(row, &columns, delimiter, &mut out);
                    }
                    vec![out]
                }
            }
            Encoding::Json | Encoding::Binary | Encoding::Protobuf(_) | Encoding::Custom(_) => {
                unreachable!("encoded from the batch")
            }
        }
    }

    /// The delimited columns: `fields`, else every field name of the rows, sorted.
    fn columns(&self, rows: &[Map<String, Value>]) -> Vec<String> {
        if let Some(f) = &self.fields {
            return f.clone();
        }
        let mut names: Vec<String> = rows.iter().flat_map(|r| r.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The encoder of the message type `schemaId` names.
fn protobuf_encoder(p: &Props<'_>) -> Result<ProtobufEncoder, ConnectorError> {
    let Some(id) = p.string("schemaid")? else {
        return Err(
            p.error("format \"protobuf\" needs \"schemaId\": \"schema.MessageName\"".into())
        );
    };
    let message = message_descriptor(id).map_err(|e| p.error(e))?;
    Ok(ProtobufEncoder::new(id, message))
}

/// The encoder of the custom format message type `schemaId` names.
fn custom_encoder(p: &Props<'_>) -> Result<CustomEncoder, ConnectorError> {
    let Some(id) = p.string("schemaid")? else {
        return Err(p.error("format \"custom\" needs \"schemaId\": \"schema.MessageName\"".into()));
    };
    CustomEncoder::new(id).map_err(|e| p.error(e))
}

fn protobuf_error(reason: String) -> ConnectorError {
    ConnectorError::Config {
        connector: "sink",
        reason,
    }
}

/// A value as delimited and urlencoded text: a string as it is, null empty, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn delimited_row(row: &Map<String, Value>, columns: &[String], delimiter: &str, out: &mut Vec<u8>) {
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.extend(delimiter.as_bytes());
        }
        if let Some(v) = row.get(c) {
            out.extend(text(v).as_bytes());
        }
    }
}

fn urlencoded(row: &Map<String, Value>) -> Vec<u8> {
    let mut keys: Vec<&String> = row.keys().collect();
    keys.sort();
    let mut form = form_urlencoded::Serializer::new(String::new());
    for k in keys {
        match &row[k] {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    form.append_pair(k, &text(item));
                }
            }
            v => {
                form.append_pair(k, &text(v));
            }
        }
    }
    form.finish().into_bytes()
}

/// One message per row: the bytes of the batch's one BYTEA or STRING column.
fn binary_messages(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let schema = batch.schema();
    let visible: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !super::is_meta_column(schema.field(i).name()))
        .collect();
    let bad = |reason: String| ConnectorError::Config {
        connector: "sink",
        reason,
    };
    let [i] = visible[..] else {
        let names: Vec<&str> = visible
            .iter()
            .map(|&i| schema.field(i).name().as_str())
            .collect();
        return Err(bad(format!(
            "format \"binary\" sends the one field of a row; the result has {} ({})",
            names.len(),
            names.join(", ")
        )));
    };
    let column = batch.column(i);
    let rows = 0..column.len();
    Ok(match column.data_type() {
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            rows.filter(|&r| a.is_valid(r))
                .map(|r| a.value(r).to_vec())
                .collect()
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            rows.filter(|&r| a.is_valid(r))
                .map(|r| a.value(r).as_bytes().to_vec())
                .collect()
        }
        DataType::Null => Vec::new(),
        other => {
            return Err(bad(format!(
                "format \"binary\" sends a BYTEA or STRING field; \"{}\" is {other}",
                schema.field(i).name()
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("id", DataType::Int64, true),
                Field::new("t", DataType::Float64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("a b"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![20.5, 3.0])),
            ],
        )
        .unwrap()
    }

    fn format(props: Value) -> Result<SinkFormat, ConnectorError> {
        let Value::Object(map) = props else { panic!() };
        SinkFormat::parse(&Props::new("mqtt", &map), true)
    }

    fn text_of(messages: Vec<Vec<u8>>) -> Vec<String> {
        messages
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect()
    }

    #[test]
    fn delimited_rows_sorted_or_by_fields_with_a_header() {
        let f =
            format(serde_json::json!({"format": "delimited", "delimiter": ";", "hasHeader": true}))
                .unwrap();
        let m = f.messages(&batch(), false, false, false).unwrap();
        assert_eq!(text_of(m), ["id;name;t\n1;a b;20.5\n2;;3"]);
        let single = f.messages(&batch(), true, false, false).unwrap();
        assert_eq!(text_of(single), ["id;name;t\n1;a b;20.5\n", "2;;3\n"]);
        // The header goes out once with sendSingle.
        let again = f.messages(&batch(), true, false, false).unwrap();
        assert_eq!(text_of(again)[0], "1;a b;20.5\n");
        let f = format(serde_json::json!({"format": "delimited", "fields": ["t", "id"]})).unwrap();
        let m = f.messages(&batch(), false, false, false).unwrap();
        assert_eq!(text_of(m), ["20.5,1\n3,2"]);
    }

    #[test]
    fn urlencoded_one_message_per_row() {
        let f = format(serde_json::json!({"format": "urlencoded"})).unwrap();
        let m = f.messages(&batch(), false, false, false).unwrap();
        assert_eq!(text_of(m), ["id=1&name=a+b&t=20.5", "id=2&t=3"]);
        let t = f
            .payloads(&[br#"{"k":["x","y"],"n":1}"#.to_vec()], false)
            .unwrap();
        assert_eq!(text_of(t), ["k=x&k=y&n=1"]);
    }

    #[test]
    fn binary_sends_the_one_field_raw() {
        let f = format(serde_json::json!({"format": "binary"})).unwrap();
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "self",
                DataType::Binary,
                true,
            )])),
            vec![Arc::new(BinaryArray::from(vec![Some(&[0u8, 1][..]), None]))],
        )
        .unwrap();
        assert_eq!(f.messages(&b, false, false, false).unwrap(), [vec![0u8, 1]]);
        let err = f.messages(&batch(), false, false, false).unwrap_err();
        assert!(
            err.to_string().contains("the result has 3 (name, id, t)"),
            "{err}"
        );
    }

    #[test]
    fn options_are_checked_and_compression_applies_last() {
        for (props, want) in [
            (
                serde_json::json!({"format": "protobuf"}),
                "format \"protobuf\" needs \"schemaId\": \"schema.MessageName\"",
            ),
            (
                serde_json::json!({"format": "protobuf", "schemaId": "../x.M"}),
                "schema id \"../x.M\" must be \"schema.MessageName\"",
            ),
            (
                serde_json::json!({"schemaId": "s.M"}),
                "\"schemaId\" applies to formats \"protobuf\" and \"custom\" only",
            ),
            (
                serde_json::json!({"format": "custom"}),
                "format \"custom\" needs \"schemaId\"",
            ),
            (
                serde_json::json!({"format": "custom", "schemaId": "nowhere.M"}),
                "custom schema \"nowhere\" is not registered",
            ),
            (
                serde_json::json!({"format": "xml"}),
                "format \"xml\" is unknown",
            ),
            (
                serde_json::json!({"delimiter": ";"}),
                "\"delimiter\" applies to format \"delimited\" only",
            ),
            (
                serde_json::json!({"compression": "lz4"}),
                "unknown compression \"lz4\"",
            ),
        ] {
            let err = format(props).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let f = format(serde_json::json!({"compression": "zlib"})).unwrap();
        let m = f.messages(&batch(), false, false, false).unwrap();
        let plain = Compression::Zlib.decompress(&m[0]).unwrap();
        assert_eq!(plain, br#"[{"id":1,"name":"a b","t":20.5},{"id":2,"t":3}]"#);
    }
}
