//! Rows to protobuf messages, one message per row (eKuiper encodes a map, so a sink of
//! protobuf sends each row on its own).
//!
//! Each field of the message type takes the row's column of the same name; a missing or null
//! column leaves the field unset, and columns the type lacks are not sent (eKuiper walks the
//! type's fields). A value that does not fit its field's type fails the emission with the
//! field named.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::Value as Json;

use super::super::encode::value_at;

/// Encodes rows as messages of one type.
#[derive(Debug, Clone)]
pub struct ProtobufEncoder {
    /// The schema id as the action names it.
    pub schema_id: String,
    message: MessageDescriptor,
}

impl PartialEq for ProtobufEncoder {
    fn eq(&self, other: &Self) -> bool {
        self.schema_id == other.schema_id
    }
}

impl Eq for ProtobufEncoder {}

impl ProtobufEncoder {
    /// An encoder of `message`, named `schema_id`.
    pub fn new(schema_id: &str, message: MessageDescriptor) -> Self {
        ProtobufEncoder {
            schema_id: schema_id.to_string(),
            message,
        }
    }

    /// One message per row of `batch`.
    pub fn batch(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        (0..batch.num_rows())
            .map(|row| {
                let mut m = DynamicMessage::new(self.message.clone());
                for fd in self.message.fields() {
                    let Some(col) = batch.column_by_name(fd.name()) else {
                        continue;
                    };
                    if let Some(v) = arrow_field(col.as_ref(), row, &fd)? {
                        m.set_field(&fd, v);
                    }
                }
                Ok(m.encode_to_vec())
            })
            .collect()
    }

    /// One message for a JSON object (a `dataTemplate`'s output).
    pub fn json(&self, object: &serde_json::Map<String, Json>) -> Result<Vec<u8>, String> {
        Ok(json_message(object, &self.message)?.encode_to_vec())
    }
}

/// The value of `fd` from one cell; None for null.
fn arrow_field(arr: &dyn Array, row: usize, fd: &FieldDescriptor) -> Result<Option<Value>, String> {
    if arr.is_null(row) {
        return Ok(None);
    }
    if fd.is_map() {
        return json_field(&value_at(arr, row), fd);
    }
    if fd.is_list() {
        let DataType::List(_) = arr.data_type() else {
            return Err(format!(
                "field \"{}\" is repeated: the value must be an array",
                fd.name()
            ));
        };
        let items = arr.as_list::<i32>().value(row);
        let values = (0..items.len())
            .filter(|i| !items.is_null(*i))
            .map(|i| arrow_one(items.as_ref(), i, fd))
            .collect::<Result<_, _>>()?;
        return Ok(Some(Value::List(values)));
    }
    arrow_one(arr, row, fd).map(Some)
}

/// One (not repeated) value of `fd`'s kind from a non-null cell.
fn arrow_one(arr: &dyn Array, row: usize, fd: &FieldDescriptor) -> Result<Value, String> {
    match (fd.kind(), arr.data_type()) {
        (Kind::Message(md), DataType::Struct(_)) => {
            let s = arr.as_struct();
            let mut m = DynamicMessage::new(md.clone());
            for sub in md.fields() {
                let Some(col) = s.column_by_name(sub.name()) else {
                    continue;
                };
                if let Some(v) = arrow_field(col.as_ref(), row, &sub)? {
                    m.set_field(&sub, v);
                }
            }
            Ok(Value::Message(m))
        }
        (Kind::Bytes, DataType::Binary) => Ok(Value::Bytes(bytes::Bytes::copy_from_slice(
            arr.as_binary::<i32>().value(row),
        ))),
        _ => json_one(&value_at(arr, row), fd),
    }
}

/// A message from a JSON object.
fn json_message(
    object: &serde_json::Map<String, Json>,
    md: &MessageDescriptor,
) -> Result<DynamicMessage, String> {
    let mut m = DynamicMessage::new(md.clone());
    for fd in md.fields() {
        let Some(value) = object.get(fd.name()) else {
            continue;
        };
        if let Some(v) = json_field(value, &fd)? {
            m.set_field(&fd, v);
        }
    }
    Ok(m)
}

/// The value of `fd` from JSON; None for null.
fn json_field(v: &Json, fd: &FieldDescriptor) -> Result<Option<Value>, String> {
    match v {
        Json::Null => Ok(None),
        Json::Object(entries) if fd.is_map() => {
            let Kind::Message(entry) = fd.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
            let mut map = std::collections::HashMap::new();
            for (k, v) in entries {
                let key = map_key(k, &kf)?;
                if let Some(v) = json_field(v, &vf)? {
                    map.insert(key, v);
                }
            }
            Ok(Some(Value::Map(map)))
        }
        _ if fd.is_map() => Err(format!(
            "field \"{}\" is a map: the value must be an object",
            fd.name()
        )),
        Json::Array(items) if fd.is_list() => items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| json_one(i, fd))
            .collect::<Result<_, _>>()
            .map(|l| Some(Value::List(l))),
        _ if fd.is_list() => Err(format!(
            "field \"{}\" is repeated: the value must be an array",
            fd.name()
        )),
        _ => json_one(v, fd).map(Some),
    }
}

fn map_key(k: &str, kf: &FieldDescriptor) -> Result<MapKey, String> {
    let bad = || format!("map key \"{k}\" does not fit field \"{}\"", kf.name());
    Ok(match kf.kind() {
        Kind::String => MapKey::String(k.to_string()),
        Kind::Bool => MapKey::Bool(k.parse().map_err(|_| bad())?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(k.parse().map_err(|_| bad())?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(k.parse().map_err(|_| bad())?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(k.parse().map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(k.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

/// One (not repeated) value of `fd`'s kind from a non-null JSON value.
fn json_one(v: &Json, fd: &FieldDescriptor) -> Result<Value, String> {
    let bad = || {
        format!(
            "invalid type for {} field \"{}\": {v}",
            kind_name(&fd.kind()),
            fd.name()
        )
    };
    let int = || -> Result<i64, String> {
        match v {
            Json::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                        .map(|f| f as i64)
                })
                .ok_or_else(bad),
            Json::String(s) => s.trim().parse().map_err(|_| bad()),
            Json::Bool(b) => Ok(i64::from(*b)),
            _ => Err(bad()),
        }
    };
    let float = || -> Result<f64, String> {
        match v {
            Json::Number(n) => n.as_f64().ok_or_else(bad),
            Json::String(s) => s.trim().parse().map_err(|_| bad()),
            _ => Err(bad()),
        }
    };
    Ok(match fd.kind() {
        Kind::Double => Value::F64(float()?),
        Kind::Float => Value::F32(float()? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(i32::try_from(int()?).map_err(|_| bad())?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(int()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(int()?).map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => match v {
            Json::Number(n) if n.as_u64().is_some() => Value::U64(n.as_u64().unwrap_or(0)),
            _ => Value::U64(u64::try_from(int()?).map_err(|_| bad())?),
        },
        Kind::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) => Value::Bool(s.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        },
        Kind::String => match v {
            Json::String(s) => Value::String(s.clone()),
            Json::Number(n) => Value::String(n.to_string()),
            Json::Bool(b) => Value::String(b.to_string()),
            _ => return Err(bad()),
        },
        // A string's own bytes, as eKuiper casts a string to bytes.
        Kind::Bytes => match v {
            Json::String(s) => Value::Bytes(bytes::Bytes::copy_from_slice(s.as_bytes())),
            _ => return Err(bad()),
        },
        Kind::Enum(e) => match v {
            Json::String(s) => match e.get_value_by_name(s) {
                Some(ev) => Value::EnumNumber(ev.number()),
                None => return Err(bad()),
            },
            _ => Value::EnumNumber(i32::try_from(int()?).map_err(|_| bad())?),
        },
        Kind::Message(md) => match v {
            Json::Object(o) => Value::Message(json_message(o, &md)?),
            _ => return Err(bad()),
        },
    })
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double | Kind::Float => "float",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) => "message",
        Kind::Enum(_) => "enum",
        _ => "int",
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::ProtobufDecoder;
    use super::super::tests::message;
    use super::*;
    use crate::RawMessage;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use serde_json::json;

    const PROTO: &str = r#"
        syntax = "proto3";
        package demo;
        enum Level { LOW = 0; HIGH = 1; }
        message Inner { string note = 1; }
        message Out {
            string name = 1;
            int32 n = 2;
            double v = 3;
            bytes raw = 4;
            Inner inner = 5;
            repeated int64 xs = 6;
            Level level = 7;
            map<string, string> labels = 8;
        }
    "#;

    /// A batch as a rule would emit it, from JSON rows.
    fn rows(json_rows: &str) -> RecordBatch {
        let d = crate::codec::json::JsonDecoder::new(None, false);
        let out = d.decode(&[RawMessage::new(json_rows.as_bytes().to_vec(), "t".into())]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.batches.into_iter().next().unwrap()
    }

    #[test]
    fn rows_round_trip_through_the_decoder() {
        let md = message(PROTO, "Out");
        let e = ProtobufEncoder::new("s.Out", md.clone());
        let batch = rows(
            r#"[{"name":"a","n":3,"v":1.5,"inner":{"note":"hi"},"xs":[1,2],"level":"HIGH","extra":true},
               {"name":"b","n":null}]"#,
        );
        let messages = e.batch(&batch).unwrap();
        assert_eq!(messages.len(), 2);
        let d = ProtobufDecoder::new(md.clone(), None, false).unwrap();
        let raw: Vec<RawMessage> = messages
            .into_iter()
            .map(|m| RawMessage::new(m, "t".into()))
            .collect();
        let out = d.decode(&raw);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let b = &out.batches[0];
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        assert_eq!(col("name").as_string::<i32>().value(1), "b");
        assert_eq!(col("n").as_primitive::<Int64Type>().values(), &[3, 0]);
        assert_eq!(col("level").as_primitive::<Int64Type>().value(0), 1);
        let inner = col("inner");
        assert_eq!(
            inner.as_struct().column(0).as_string::<i32>().value(0),
            "hi"
        );
        assert!(inner.is_null(1));
        let xs = col("xs");
        assert_eq!(
            xs.as_list::<i32>()
                .value(0)
                .as_primitive::<Int64Type>()
                .values(),
            &[1, 2]
        );
    }

    #[test]
    fn binary_columns_are_raw_bytes_and_bad_values_name_the_field() {
        let md = message(PROTO, "Out");
        let e = ProtobufEncoder::new("s.Out", md.clone());
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("raw", DataType::Binary, true),
        ]));
        let raw: arrow::array::BinaryArray = vec![Some(&[1u8, 2][..])].into_iter().collect();
        let batch = RecordBatch::try_new(schema, vec![std::sync::Arc::new(raw)]).unwrap();
        let m = DynamicMessage::decode(md.clone(), &e.batch(&batch).unwrap()[0][..]).unwrap();
        assert_eq!(
            m.get_field_by_name("raw")
                .unwrap()
                .as_bytes()
                .unwrap()
                .as_ref(),
            &[1, 2]
        );
        let bad = rows(r#"{"n":"many"}"#);
        assert_eq!(
            e.batch(&bad).unwrap_err(),
            "invalid type for int field \"n\": \"many\""
        );
        let big = rows(r#"{"n":5000000000}"#);
        assert!(e.batch(&big).is_err());
    }

    #[test]
    fn json_objects_encode_maps_and_enums() {
        let md = message(PROTO, "Out");
        let e = ProtobufEncoder::new("s.Out", md.clone());
        let bytes = e
            .json(
                json!({"name":"x","labels":{"k":"v"},"level":1,"xs":[5,null]})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        let m = DynamicMessage::decode(md, &bytes[..]).unwrap();
        assert_eq!(
            m.get_field_by_name("level").unwrap().as_enum_number(),
            Some(1)
        );
        let labels = m.get_field_by_name("labels").unwrap();
        assert_eq!(labels.as_map().unwrap().len(), 1);
        assert_eq!(
            m.get_field_by_name("xs").unwrap().as_list().unwrap().len(),
            1
        );
    }
}
