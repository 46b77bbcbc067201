//! Protobuf messages to Arrow columns.
//!
//! A schemaless stream takes its columns from the message type, as eKuiper infers them: every
//! integer and enum BIGINT (an enum as its number), `float`/`double` FLOAT, `bool` BOOLEAN,
//! `string` STRING, `bytes` BYTEA, a message STRUCT, a repeated field (or a map, as its
//! key/value entries) ARRAY. A stream with a schema takes the fields its columns name (a
//! column the message type lacks is null) and casts each to the column's type; an enum read
//! into a STRING column is its name.
//!
//! Unset scalar fields read as their default (proto3), an unset message field as null. A
//! message that does not parse or does not cast costs its own row (the batch is decoded
//! message by message once a batch fails), never the rule.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    StructArray, TimestampMillisecondArray, new_null_array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};

use super::super::json::{Decoded, with_meta};
use super::MAX_NESTING;
use crate::RawMessage;

/// Decodes one stream's protobuf messages.
#[derive(Debug, Clone)]
pub struct ProtobufDecoder {
    message: MessageDescriptor,
    /// The stream's columns, or the message type's own.
    schema: SchemaRef,
    with_topic: bool,
}

impl ProtobufDecoder {
    /// A decoder of `message` into `schema` (None: the message type's columns).
    pub fn new(
        message: MessageDescriptor,
        schema: Option<SchemaRef>,
        with_topic: bool,
    ) -> Result<Self, String> {
        let schema = match schema {
            Some(s) => s,
            None => Arc::new(Schema::new(message_fields(&message, 0)?)),
        };
        Ok(ProtobufDecoder {
            message,
            schema,
            with_topic,
        })
    }

    /// The columns rows decode to.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes `messages`, one row each.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(messages.len());
        let mut kept = Vec::with_capacity(messages.len());
        for m in messages {
            match DynamicMessage::decode(self.message.clone(), &m.payload[..]) {
                Ok(d) => {
                    parsed.push(Some(Value::Message(d)));
                    kept.push(m.clone());
                }
                Err(e) => errors.push(format!("invalid protobuf payload: {e}")),
            }
        }
        if parsed.is_empty() {
            return Decoded {
                batches: Vec::new(),
                errors,
            };
        }
        let batch = match self.batch(&parsed) {
            Ok(b) => b,
            // One row failed to cast: keep the others, one reason per failing message.
            Err(_) => {
                let mut rows = Vec::new();
                let mut good = Vec::new();
                for (value, m) in parsed.into_iter().zip(kept) {
                    match self.batch(std::slice::from_ref(&value)) {
                        Ok(b) => {
                            rows.push(b);
                            good.push(m);
                        }
                        Err(e) => errors.push(format!("error in preprocessor: {e}")),
                    }
                }
                kept = good;
                if rows.is_empty() {
                    return Decoded {
                        batches: Vec::new(),
                        errors,
                    };
                }
                arrow::compute::concat_batches(&self.schema, &rows)
                    .expect("batches of one schema concatenate")
            }
        };
        let batch = if self.with_topic {
            with_meta(batch, &kept, &vec![1; kept.len()])
        } else {
            batch
        };
        Decoded {
            batches: vec![batch],
            errors,
        }
    }

    fn batch(&self, messages: &[Option<Value>]) -> Result<RecordBatch, String> {
        let refs: Vec<Option<&Value>> = messages.iter().map(Option::as_ref).collect();
        let fields = self.schema.fields().clone();
        let rows = messages.len();
        let columns = struct_columns(&refs, &fields)?;
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())
    }
}

/// The columns of a message type, as eKuiper infers a schemaless stream's.
pub fn message_fields(message: &MessageDescriptor, depth: usize) -> Result<Fields, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "message type \"{}\" nests more than {MAX_NESTING} levels deep",
            message.full_name()
        ));
    }
    message
        .fields()
        .map(|f| Ok(Field::new(f.name(), field_type(&f, depth)?, true)))
        .collect()
}

/// A field's column type.
fn field_type(field: &FieldDescriptor, depth: usize) -> Result<DataType, String> {
    let one = kind_type(&field.kind(), depth)?;
    Ok(if field.is_list() || field.is_map() {
        DataType::List(Arc::new(Field::new("item", one, true)))
    } else {
        one
    })
}

fn kind_type(kind: &Kind, depth: usize) -> Result<DataType, String> {
    Ok(match kind {
        Kind::Double | Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::String => DataType::Utf8,
        Kind::Bytes => DataType::Binary,
        Kind::Message(m) => DataType::Struct(message_fields(m, depth + 1)?),
        _ => DataType::Int64,
    })
}

/// The columns `fields` of values that are messages (None: a null row).
fn struct_columns(values: &[Option<&Value>], fields: &Fields) -> Result<Vec<ArrayRef>, String> {
    let messages: Vec<Option<&DynamicMessage>> = values
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(Value::Message(m)) => Ok(Some(m)),
            Some(other) => Err(format!("cannot convert {} to struct", describe(other))),
        })
        .collect::<Result<_, _>>()?;
    fields
        .iter()
        .map(|target| {
            let cells: Vec<Option<Cow<'_, Value>>> = messages
                .iter()
                .map(|m| m.and_then(|m| field_value(m, target)))
                .collect();
            let refs: Vec<Option<&Value>> = cells.iter().map(|c| c.as_deref()).collect();
            build(&refs, target.data_type())
                .map_err(|e| format!("field {} type mismatch: {e}", target.name()))
        })
        .collect()
}

/// The value of `target`'s field in `m`: None for a field the type lacks or an unset message;
/// a map as its entries; an enum as its name for a STRING column.
fn field_value<'m>(m: &'m DynamicMessage, target: &Field) -> Option<Cow<'m, Value>> {
    let fd = m.descriptor().get_field_by_name(target.name())?;
    if matches!(fd.kind(), Kind::Message(_)) && !fd.is_list() && !fd.is_map() && !m.has_field(&fd) {
        return None;
    }
    let value = m.get_field(&fd);
    let want_name = |t: &DataType| matches!(t, DataType::Utf8);
    match (fd.kind(), value.as_ref()) {
        (Kind::Message(entry), Value::Map(map)) => {
            let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let list = entries
                .into_iter()
                .map(|(k, v)| {
                    let mut e = DynamicMessage::new(entry.clone());
                    e.set_field(&entry.map_entry_key_field(), Value::from(k.clone()));
                    e.set_field(&entry.map_entry_value_field(), v.clone());
                    Value::Message(e)
                })
                .collect();
            Some(Cow::Owned(Value::List(list)))
        }
        (Kind::Enum(e), &Value::EnumNumber(n)) if want_name(target.data_type()) => {
            Some(Cow::Owned(Value::String(
                e.get_value(n)
                    .map_or_else(|| n.to_string(), |v| v.name().to_string()),
            )))
        }
        (Kind::Enum(e), Value::List(items)) if matches!(target.data_type(), DataType::List(f) if want_name(f.data_type())) => {
            Some(Cow::Owned(Value::List(
                items
                    .iter()
                    .map(|i| match i {
                        Value::EnumNumber(n) => Value::String(
                            e.get_value(*n)
                                .map_or_else(|| n.to_string(), |v| v.name().to_string()),
                        ),
                        other => other.clone(),
                    })
                    .collect(),
            )))
        }
        _ => Some(value),
    }
}

/// One column of `target` type from `values`.
fn build(values: &[Option<&Value>], target: &DataType) -> Result<ArrayRef, String> {
    Ok(match target {
        DataType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| v.map(to_i64).transpose())
                .collect::<Result<Int64Array, _>>()?,
        ),
        DataType::Float64 => Arc::new(
            values
                .iter()
                .map(|v| v.map(to_f64).transpose())
                .collect::<Result<Float64Array, _>>()?,
        ),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| v.map(to_bool).transpose())
                .collect::<Result<BooleanArray, _>>()?,
        ),
        DataType::Utf8 => Arc::new(
            values
                .iter()
                .map(|v| v.map(to_string).transpose())
                .collect::<Result<StringArray, _>>()?,
        ),
        DataType::Binary => {
            let bytes = values
                .iter()
                .map(|v| v.map(to_bytes).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(bytes.iter().map(|b| b.as_deref()).collect::<BinaryArray>())
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => Arc::new(
            values
                .iter()
                .map(|v| v.map(to_i64).transpose())
                .collect::<Result<TimestampMillisecondArray, _>>()?
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Struct(fields) => {
            let columns = struct_columns(values, fields)?;
            let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
            if fields.is_empty() {
                Arc::new(StructArray::new_empty_fields(values.len(), Some(nulls)))
            } else {
                Arc::new(
                    StructArray::try_new(fields.clone(), columns, Some(nulls))
                        .map_err(|e| e.to_string())?,
                )
            }
        }
        DataType::List(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut items: Vec<Option<&Value>> = Vec::new();
            for v in values {
                match v {
                    None => {}
                    Some(Value::List(list)) => items.extend(list.iter().map(Some)),
                    Some(other) => {
                        return Err(format!("cannot convert {} to array", describe(other)));
                    }
                }
                let end = i32::try_from(items.len()).map_err(|_| "array too long".to_string())?;
                offsets.push(end);
            }
            let child = build(&items, item.data_type())?;
            let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
            Arc::new(
                ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    Some(nulls),
                )
                .map_err(|e| e.to_string())?,
            )
        }
        DataType::Null => new_null_array(&DataType::Null, values.len()),
        other => return Err(format!("cannot decode protobuf into {other}")),
    })
}

/// A value as eKuiper names its kind in errors.
fn describe(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("bool({b})"),
        Value::I32(n) => format!("int({n})"),
        Value::I64(n) => format!("int({n})"),
        Value::U32(n) => format!("int({n})"),
        Value::U64(n) => format!("int({n})"),
        Value::EnumNumber(n) => format!("enum({n})"),
        Value::F32(n) => format!("float({n})"),
        Value::F64(n) => format!("float({n})"),
        Value::String(s) => format!("string({s})"),
        Value::Bytes(_) => "bytea".into(),
        Value::Message(_) => "struct".into(),
        Value::List(_) => "array".into(),
        Value::Map(_) => "map".into(),
    }
}

fn to_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::I32(n) | Value::EnumNumber(n) => Ok(i64::from(*n)),
        Value::I64(n) => Ok(*n),
        Value::U32(n) => Ok(i64::from(*n)),
        Value::U64(n) => i64::try_from(*n).map_err(|_| format!("{n} is out of range for bigint")),
        Value::F32(_) | Value::F64(_) => {
            let f = to_f64(v)?;
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                Ok(f as i64)
            } else {
                Err(format!("cannot convert {} to bigint", describe(v)))
            }
        }
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("cannot convert {} to bigint", describe(v))),
        other => Err(format!("cannot convert {} to bigint", describe(other))),
    }
}

fn to_f64(v: &Value) -> Result<f64, String> {
    match v {
        Value::F32(n) => Ok(f64::from(*n)),
        Value::F64(n) => Ok(*n),
        Value::I32(n) | Value::EnumNumber(n) => Ok(f64::from(*n)),
        Value::I64(n) => Ok(*n as f64),
        Value::U32(n) => Ok(f64::from(*n)),
        Value::U64(n) => Ok(*n as f64),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("cannot convert {} to float", describe(v))),
        other => Err(format!("cannot convert {} to float", describe(other))),
    }
}

fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("cannot convert {} to boolean", describe(v))),
        other => Err(format!("cannot convert {} to boolean", describe(other))),
    }
}

fn to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::I32(n) | Value::EnumNumber(n) => Ok(n.to_string()),
        Value::I64(n) => Ok(n.to_string()),
        Value::U32(n) => Ok(n.to_string()),
        Value::U64(n) => Ok(n.to_string()),
        Value::F32(n) => Ok(n.to_string()),
        Value::F64(n) => Ok(n.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| "cannot convert bytea to string: not UTF-8".to_string()),
        other => Err(format!("cannot convert {} to string", describe(other))),
    }
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => Err(format!("cannot convert {} to bytea", describe(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::message;
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    const PROTO: &str = r#"
        syntax = "proto3";
        enum Color { RED = 0; GREEN = 1; }
        message Point { double x = 1; double y = 2; }
        message Reading {
            string id = 1;
            int64 count = 2;
            uint32 small = 3;
            float temp = 4;
            bool ok = 5;
            bytes raw = 6;
            Color color = 7;
            Point at = 8;
            repeated int32 samples = 9;
            repeated Point path = 10;
            map<string, int64> tags = 11;
            sint64 delta = 12;
        }
    "#;

    fn reading() -> DynamicMessage {
        let desc = message(PROTO, "Reading");
        let point = message(PROTO, "Point");
        let mut m = DynamicMessage::new(desc);
        m.set_field_by_name("id", Value::String("dev1".into()));
        m.set_field_by_name("count", Value::I64(1 << 40));
        m.set_field_by_name("small", Value::U32(7));
        m.set_field_by_name("temp", Value::F32(20.5));
        m.set_field_by_name("ok", Value::Bool(true));
        m.set_field_by_name("raw", Value::Bytes(vec![0u8, 255].into()));
        m.set_field_by_name("color", Value::EnumNumber(1));
        let mut p = DynamicMessage::new(point.clone());
        p.set_field_by_name("x", Value::F64(1.5));
        m.set_field_by_name("at", Value::Message(p.clone()));
        m.set_field_by_name(
            "samples",
            Value::List(vec![Value::I32(1), Value::I32(2), Value::I32(3)]),
        );
        m.set_field_by_name("path", Value::List(vec![Value::Message(p)]));
        let mut tags = std::collections::HashMap::new();
        tags.insert(MapKey::String("b".into()), Value::I64(2));
        tags.insert(MapKey::String("a".into()), Value::I64(1));
        m.set_field_by_name("tags", Value::Map(tags));
        m.set_field_by_name("delta", Value::I64(-3));
        m
    }

    fn msg(bytes: Vec<u8>) -> RawMessage {
        RawMessage::new(bytes, "t/1".into())
    }

    #[test]
    fn schemaless_types_nesting_and_repeated() {
        use prost::Message;
        let d = ProtobufDecoder::new(message(PROTO, "Reading"), None, true).unwrap();
        let empty = DynamicMessage::new(message(PROTO, "Reading"));
        let out = d.decode(&[msg(reading().encode_to_vec()), msg(empty.encode_to_vec())]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let b = &out.batches[0];
        let types: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            types[..8].join(" "),
            "id:Utf8 count:Int64 small:Int64 temp:Float64 ok:Boolean raw:Binary color:Int64 at:Struct(\"x\": Float64, \"y\": Float64)"
        );
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        assert_eq!(col("id").as_string::<i32>().value(0), "dev1");
        assert_eq!(col("count").as_primitive::<Int64Type>().value(0), 1 << 40);
        assert_eq!(col("small").as_primitive::<Int64Type>().value(0), 7);
        assert_eq!(col("temp").as_primitive::<Float64Type>().value(0), 20.5);
        assert!(col("ok").as_boolean().value(0));
        assert_eq!(col("raw").as_binary::<i32>().value(0), &[0u8, 255]);
        assert_eq!(col("color").as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(col("delta").as_primitive::<Int64Type>().value(0), -3);
        let at = col("at");
        let at = at.as_struct();
        assert_eq!(at.column(0).as_primitive::<Float64Type>().value(0), 1.5);
        assert_eq!(at.column(1).as_primitive::<Float64Type>().value(0), 0.0);
        // An unset message field is null; unset scalars are their defaults.
        assert!(at.is_null(1));
        assert_eq!(col("count").as_primitive::<Int64Type>().value(1), 0);
        let samples = col("samples");
        let samples = samples.as_list::<i32>();
        assert_eq!(
            samples
                .value(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[1, 2, 3]
        );
        assert_eq!(samples.value(1).len(), 0);
        let path = col("path");
        assert_eq!(path.as_list::<i32>().value(0).len(), 1);
        let tags = col("tags");
        let tags = tags.as_list::<i32>().value(0);
        let tags = tags.as_struct();
        assert_eq!(tags.column(0).as_string::<i32>().value(0), "a");
        assert_eq!(tags.column(1).as_primitive::<Int64Type>().value(1), 2);
        assert_eq!(
            b.column_by_name("__meta_topic")
                .map(|c| c.as_string::<i32>().value(0)),
            Some("t/1")
        );
    }

    #[test]
    fn a_schema_casts_names_enums_and_bad_messages_cost_their_row() {
        use prost::Message;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("color", DataType::Utf8, true),
            Field::new("temp", DataType::Utf8, true),
            Field::new("missing", DataType::Float64, true),
            Field::new(
                "at",
                DataType::Struct(vec![Field::new("y", DataType::Float64, true)].into()),
                true,
            ),
        ]));
        let d = ProtobufDecoder::new(message(PROTO, "Reading"), Some(schema), false).unwrap();
        let mut good = reading();
        good.set_field_by_name("id", Value::String("42".into()));
        let out = d.decode(&[
            msg(good.encode_to_vec()),
            msg(reading().encode_to_vec()),
            msg(vec![0xff, 0xff, 0xff]),
        ]);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        assert!(
            out.errors[0].starts_with("invalid protobuf payload: "),
            "{:?}",
            out.errors
        );
        assert_eq!(
            out.errors[1],
            "error in preprocessor: field id type mismatch: cannot convert string(dev1) to bigint"
        );
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 42);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "GREEN");
        assert_eq!(b.column(2).as_string::<i32>().value(0), "20.5");
        assert!(b.column(3).is_null(0));
        assert_eq!(
            b.column(4)
                .as_struct()
                .column(0)
                .as_primitive::<Float64Type>()
                .value(0),
            0.0
        );
    }

    #[test]
    fn recursive_types_are_refused_for_schemaless_streams() {
        let proto = "syntax=\"proto3\"; message Node { Node next = 1; int64 v = 2; }";
        let err = ProtobufDecoder::new(message(proto, "Node"), None, false).unwrap_err();
        assert!(err.contains("nests more than 32 levels"), "{err}");
    }
}
