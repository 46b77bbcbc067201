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

/// Field metadata key set (to "true") on a result column whose nulls are sent as `null`: the
/// rule's `sendNilField` asks for it on plain columns and aliased fields.
pub const KEEP_NIL: &str = "quiver.keep_nil";

/// Converts every row of `batch` into a JSON object (for data templates, which read values;
/// sinks write bytes with [`RowEncoder`], which picks the same fields).
pub fn batch_to_rows(batch: &RecordBatch, send_nil: bool) -> Vec<Map<String, Value>> {
    let rows = RowEncoder::new(batch, send_nil);
    (0..rows.len())
        .map(|row| {
            rows.fields(row)
                .map(|(key, cell)| {
                    let value = cell.map_or(Value::Null, Cell::into_value);
                    (key.name.to_string(), value)
                })
                .collect()
        })
        .collect()
}

/// Encodes a batch as one JSON array of objects (eKuiper's `sendSingle: false`).
pub fn batch_to_json_array(batch: &RecordBatch, send_nil: bool) -> Vec<u8> {
    let rows = RowEncoder::new(batch, send_nil);
    let mut out = Vec::with_capacity(2 + rows.len() * rows.row_hint());
    out.push(b'[');
    for row in 0..rows.len() {
        if row > 0 {
            out.push(b',');
        }
        rows.write(row, &mut out);
    }
    out.push(b']');
    out
}

/// Encodes each row of a batch as a JSON object of its own (eKuiper's `sendSingle: true`).
pub fn batch_to_json_objects(batch: &RecordBatch, send_nil: bool) -> Vec<Vec<u8>> {
    let rows = RowEncoder::new(batch, send_nil);
    let hint = rows.row_hint();
    (0..rows.len())
        .map(|row| {
            let mut out = Vec::with_capacity(hint);
            rows.write(row, &mut out);
            out
        })
        .collect()
}

/// The messages a byte sink sends for one emission, as eKuiper's sinks shape them: one JSON
/// object per row with `sendSingle`, else one JSON array of the rows (none for an empty
/// emission with `omitIfEmpty`).
pub fn batch_messages(
    batch: &RecordBatch,
    send_single: bool,
    send_nil: bool,
    omit_if_empty: bool,
) -> Vec<Vec<u8>> {
    if send_single {
        batch_to_json_objects(batch, send_nil)
    } else if batch.num_rows() == 0 && omit_if_empty {
        Vec::new()
    } else {
        vec![batch_to_json_array(batch, send_nil)]
    }
}

/// Writes a batch's rows as JSON objects straight to bytes, in eKuiper's shape (the module
/// doc), without building a `serde_json::Value` per cell: sinks encode every result row, and
/// the maps, key copies and cell values cost several times the writing itself.
pub struct RowEncoder<'a> {
    /// Output keys in Go's (byte) order, each with its columns in schema order.
    keys: Vec<Key<'a>>,
    rows: usize,
    send_nil: bool,
}

/// One output key: its name, its encoded prefix and the columns that share the name (the
/// first non-null one of a row wins).
struct Key<'a> {
    name: &'a str,
    /// A column of this name carries [`KEEP_NIL`]: its nulls are written.
    keep_nil: bool,
    /// `"name":`, escaped once per batch.
    prefix: Vec<u8>,
    columns: Vec<Column<'a>>,
}

/// A column, with the common types resolved once per batch instead of once per cell.
enum Column<'a> {
    Int64(&'a arrow::array::Int64Array),
    Float64(&'a arrow::array::Float64Array),
    Utf8(&'a arrow::array::StringArray),
    Boolean(&'a arrow::array::BooleanArray),
    Other(&'a dyn Array),
}

/// A non-null cell, ready to write.
enum Cell<'c> {
    Int64(i64),
    Float64(f64),
    Utf8(&'c str),
    Boolean(bool),
    /// Other types go through [`value_at`], whose null (a `NULL` literal's column, an
    /// out-of-range datetime) counts as a null cell.
    Value(Value),
}

impl Column<'_> {
    /// The cell at `row`, or `None` when it is null.
    fn cell(&self, row: usize) -> Option<Cell<'_>> {
        match self {
            Column::Int64(a) => a.is_valid(row).then(|| Cell::Int64(a.value(row))),
            // NaN and infinities print as null, so they are null cells here too.
            Column::Float64(a) => Some(a.value(row))
                .filter(|v| a.is_valid(row) && v.is_finite())
                .map(Cell::Float64),
            Column::Utf8(a) => a.is_valid(row).then(|| Cell::Utf8(a.value(row))),
            Column::Boolean(a) => a.is_valid(row).then(|| Cell::Boolean(a.value(row))),
            Column::Other(a) => Some(value_at(*a, row))
                .filter(|v| !v.is_null())
                .map(Cell::Value),
        }
    }
}

impl Cell<'_> {
    fn into_value(self) -> Value {
        match self {
            Cell::Int64(v) => Value::from(v),
            Cell::Float64(v) => float_value(v),
            Cell::Utf8(v) => Value::String(v.to_string()),
            Cell::Boolean(v) => Value::Bool(v),
            Cell::Value(v) => v,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let written = match self {
            Cell::Int64(v) => serde_json::to_writer(&mut *out, v),
            Cell::Float64(v) => serde_json::to_writer(&mut *out, &float_value(*v)),
            Cell::Utf8(v) => serde_json::to_writer(&mut *out, v),
            Cell::Boolean(v) => serde_json::to_writer(&mut *out, v),
            Cell::Value(v) => serde_json::to_writer(&mut *out, v),
        };
        written.expect("JSON values always serialize into a Vec");
    }
}

impl<'a> RowEncoder<'a> {
    /// Prepares `batch`'s columns; `send_nil` keeps null fields (eKuiper's `sendNilField`).
    pub fn new(batch: &'a RecordBatch, send_nil: bool) -> Self {
        let mut by_name: BTreeMap<&'a str, (bool, Vec<Column<'a>>)> = BTreeMap::new();
        for (field, col) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            if is_meta_column(field.name()) {
                continue;
            }
            let col = col.as_ref();
            let column = match col.data_type() {
                DataType::Int64 => Column::Int64(col.as_primitive()),
                DataType::Float64 => Column::Float64(col.as_primitive()),
                DataType::Utf8 => Column::Utf8(col.as_string()),
                DataType::Boolean => Column::Boolean(col.as_boolean()),
                _ => Column::Other(col),
            };
            let entry = by_name.entry(field.name()).or_default();
            entry.0 |= field.metadata().get(KEEP_NIL).is_some_and(|v| v == "true");
            entry.1.push(column);
        }
        let keys = by_name
            .into_iter()
            .map(|(name, (keep_nil, columns))| {
                let mut prefix = serde_json::to_vec(name).expect("a string always serializes");
                prefix.push(b':');
                Key {
                    name,
                    keep_nil,
                    prefix,
                    columns,
                }
            })
            .collect();
        RowEncoder {
            keys,
            rows: batch.num_rows(),
            send_nil,
        }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// A guess at one row's encoded size, to size buffers.
    fn row_hint(&self) -> usize {
        2 + self.keys.iter().map(|k| k.prefix.len() + 12).sum::<usize>()
    }

    /// The fields row `row` outputs, in key order: each key with its first non-null cell, or
    /// `None` (a null kept by `send_nil`); keys with only nulls are left out otherwise.
    fn fields(&self, row: usize) -> impl Iterator<Item = (&Key<'a>, Option<Cell<'_>>)> {
        self.keys.iter().filter_map(move |key| {
            let cell = key.columns.iter().find_map(|c| c.cell(row));
            (cell.is_some() || self.send_nil || key.keep_nil).then_some((key, cell))
        })
    }

    /// Appends row `row` as a JSON object to `out`.
    pub fn write(&self, row: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (key, cell)) in self.fields(row).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&key.prefix);
            match cell {
                Some(c) => c.write(out),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
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

    /// The direct encoder writes exactly what serialising [`batch_to_rows`] writes, for every
    /// type, null, duplicate name and odd float.
    #[test]
    fn row_encoder_matches_the_value_path() {
        use arrow::array::{
            BooleanArray, Int32Array, ListArray, NullArray, StructArray, TimestampMillisecondArray,
        };
        use arrow::datatypes::Int64Type;
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
            Some(vec![Some(7)]),
            None,
            None,
        ]);
        let point = StructArray::from(vec![
            (
                Arc::new(Field::new("y", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])) as Arc<dyn Array>,
            ),
            (
                Arc::new(Field::new("x", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e", "f"])) as Arc<dyn Array>,
            ),
        ]);
        let columns: Vec<(&str, Arc<dyn Array>)> = vec![
            (
                "t",
                Arc::new(Float64Array::from(vec![
                    Some(3.0),
                    Some(2.5),
                    Some(f64::NAN),
                    Some(1e21),
                    Some(-0.0),
                    Some(f64::INFINITY),
                ])),
            ),
            (
                "d",
                Arc::new(StringArray::from(vec![
                    Some("x\"y\\z\n"),
                    None,
                    Some("é\u{1}€"),
                    Some(""),
                    Some("dev-1"),
                    None,
                ])),
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![
                    Some(i64::MIN),
                    None,
                    Some(0),
                    Some(9_007_199_254_740_993),
                    Some(-1),
                    None,
                ])),
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    None,
                    None,
                ])),
            ),
            (
                "i",
                Arc::new(Int32Array::from(vec![
                    Some(1),
                    None,
                    Some(-3),
                    Some(4),
                    None,
                    Some(6),
                ])),
            ),
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(0),
                    None,
                    Some(1_700_000_000_123),
                    Some(i64::MAX),
                    Some(5),
                    None,
                ])),
            ),
            ("l", Arc::new(list)),
            ("p", Arc::new(point)),
            ("z", Arc::new(NullArray::new(6))),
            // Shares a name with `t`: fills in where `t` is null, NaN or infinite.
            (
                "t",
                Arc::new(Float64Array::from(vec![
                    Some(9.0),
                    None,
                    Some(8.0),
                    None,
                    None,
                    None,
                ])),
            ),
            ("__meta_topic", Arc::new(StringArray::from(vec!["m"; 6]))),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema, columns.into_iter().map(|(_, c)| c).collect()).unwrap();
        assert!(
            is_meta_column("__meta_topic"),
            "the test's meta column is one"
        );
        for send_nil in [false, true] {
            let expected: Vec<Vec<u8>> = batch_to_rows(&batch, send_nil)
                .into_iter()
                .map(|r| serde_json::to_vec(&Value::Object(r)).unwrap())
                .collect();
            let got = batch_to_json_objects(&batch, send_nil);
            for (row, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(e),
                    "row {row}, send_nil {send_nil}"
                );
            }
            assert_eq!(got.len(), expected.len());
            let array: Vec<Value> =
                serde_json::from_slice(&batch_to_json_array(&batch, send_nil)).unwrap();
            assert_eq!(array.len(), 6);
        }
    }
}
