//! Arrow batches to JSON the way eKuiper's sinks print it.
//!
//! - keys in alphabetical order (Go's map encoding), whatever the SELECT order;
//! - a null (missing) top-level field is left out, unless `send_nil` (eKuiper's `sendNilField`);
//! - whole-number floats print without `.0` (`3`, not `3.0`);
//! - datetimes as RFC 3339 strings, bytes as base64;
//! - when two output fields share a name, the first non-null one wins.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::is_meta_column;

/// Converts every row of `batch` into a JSON object.
pub fn batch_to_rows(batch: &RecordBatch, send_nil: bool) -> Vec<Map<String, Value>> {
    let schema = batch.schema();
    let mut rows: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        if is_meta_column(field.name()) {
            continue;
        }
        for (row, out) in rows.iter_mut().enumerate() {
            let v = value_at(col.as_ref(), row);
            if v.is_null() && !send_nil {
                continue;
            }
            match out.get(field.name()) {
                Some(existing) if !existing.is_null() => {}
                _ => {
                    out.insert(field.name().clone(), v);
                }
            }
        }
    }
    rows.into_iter().map(|r| r.into_iter().collect()).collect()
}

/// Encodes a batch as one JSON array of objects (eKuiper's `sendSingle: false`).
pub fn batch_to_json_array(batch: &RecordBatch, send_nil: bool) -> Vec<u8> {
    let rows: Vec<Value> = batch_to_rows(batch, send_nil)
        .into_iter()
        .map(Value::Object)
        .collect();
    serde_json::to_vec(&rows).expect("JSON values always serialize")
}

/// A float as JSON: whole numbers as integers (below 1e21, like Go), NaN/inf as null.
pub fn float_value(v: f64) -> Value {
    if !v.is_finite() {
        Value::Null
    } else if v == v.trunc() && v.abs() < 1e21 {
        if v.abs() < 9.007_199_254_740_992e15 {
            Value::Number(Number::from(v as i64))
        } else {
            Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
    } else {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// The JSON value of one cell; nested nulls stay `null`.
pub fn value_at(arr: &dyn Array, row: usize) -> Value {
    if arr.is_null(row) {
        return Value::Null;
    }
    match arr.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(arr.as_boolean().value(row)),
        DataType::Int8 => Value::from(arr.as_primitive::<arrow::datatypes::Int8Type>().value(row)),
        DataType::Int16 => {
            Value::from(arr.as_primitive::<arrow::datatypes::Int16Type>().value(row))
        }
        DataType::Int32 => {
            Value::from(arr.as_primitive::<arrow::datatypes::Int32Type>().value(row))
        }
        DataType::Int64 => {
            Value::from(arr.as_primitive::<arrow::datatypes::Int64Type>().value(row))
        }
        DataType::UInt8 => {
            Value::from(arr.as_primitive::<arrow::datatypes::UInt8Type>().value(row))
        }
        DataType::UInt16 => Value::from(
            arr.as_primitive::<arrow::datatypes::UInt16Type>()
                .value(row),
        ),
        DataType::UInt32 => Value::from(
            arr.as_primitive::<arrow::datatypes::UInt32Type>()
                .value(row),
        ),
        DataType::UInt64 => Value::from(
            arr.as_primitive::<arrow::datatypes::UInt64Type>()
                .value(row),
        ),
        DataType::Float32 => float_value(
            arr.as_primitive::<arrow::datatypes::Float32Type>()
                .value(row) as f64,
        ),
        DataType::Float64 => float_value(
            arr.as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Utf8 => Value::String(arr.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(arr.as_string::<i64>().value(row).to_string()),
        DataType::Binary => Value::String(
            base64::engine::general_purpose::STANDARD.encode(arr.as_binary::<i32>().value(row)),
        ),
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => arr
                    .as_primitive::<arrow::datatypes::TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1000),
                TimeUnit::Millisecond => arr
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(row),
                TimeUnit::Microsecond => {
                    arr.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                        .value(row)
                        / 1000
                }
                TimeUnit::Nanosecond => {
                    arr.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                        .value(row)
                        / 1_000_000
                }
            };
            chrono::DateTime::from_timestamp_millis(raw)
                .map(|d| Value::String(d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
                .unwrap_or(Value::Null)
        }
        DataType::List(_) => {
            let list = arr.as_list::<i32>();
            let items = list.value(row);
            Value::Array(
                (0..items.len())
                    .map(|i| value_at(items.as_ref(), i))
                    .collect(),
            )
        }
        DataType::Struct(fields) => {
            let st = arr.as_struct();
            let mut obj: BTreeMap<String, Value> = BTreeMap::new();
            for (f, c) in fields.iter().zip(st.columns()) {
                obj.insert(f.name().clone(), value_at(c.as_ref(), row));
            }
            Value::Object(obj.into_iter().collect())
        }
        _ => {
            let opts = arrow::util::display::FormatOptions::default();
            arrow::util::display::ArrayFormatter::try_new(arr, &opts)
                .map(|f| Value::String(f.value(row).to_string()))
                .unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn ekuiper_json_shape() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("z", DataType::Float64, true),
            Field::new("a", DataType::Int64, true),
            Field::new("m", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(3.0), Some(2.5)])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let json = String::from_utf8(batch_to_json_array(&batch, false)).unwrap();
        assert_eq!(json, r#"[{"a":1,"m":"x","z":3},{"z":2.5}]"#);
    }
}
