//! A row view over an arrow batch, for authors who think in rows (eKuiper's `MessageTuple`).

use serde_json::{Map, Number, Value};

use super::arrow;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMillisecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;

/// One row of a batch; values are read by field name.
#[derive(Debug, Clone, Copy)]
pub struct Tuple<'a> {
    batch: &'a RecordBatch,
    row: usize,
}

impl<'a> Tuple<'a> {
    /// Row `row` of `batch`.
    pub fn new(batch: &'a RecordBatch, row: usize) -> Self {
        Tuple { batch, row }
    }

    /// The value of field `name` as JSON; `None` when the batch has no such field.
    pub fn value(&self, name: &str) -> Option<Value> {
        let column = self.batch.column_by_name(name)?;
        Some(cell_value(column.as_ref(), self.row))
    }

    /// The whole row as a JSON object, fields in batch order.
    pub fn to_map(&self) -> Map<String, Value> {
        self.batch
            .schema()
            .fields()
            .iter()
            .zip(self.batch.columns())
            .map(|(f, c)| (f.name().clone(), cell_value(c.as_ref(), self.row)))
            .collect()
    }

    /// The row's index in its batch.
    pub fn row(&self) -> usize {
        self.row
    }
}

/// Every row of `batch`, in order.
pub fn tuples(batch: &RecordBatch) -> impl Iterator<Item = Tuple<'_>> {
    (0..batch.num_rows()).map(move |row| Tuple::new(batch, row))
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Row `row` of `array` as JSON: numbers, strings, booleans, lists and records as themselves,
/// timestamps as milliseconds, other types as their display text.
pub fn cell_value(array: &dyn Array, row: usize) -> Value {
    if row >= array.len() || array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .into(),
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            Value::Array((0..list.len()).map(|i| cell_value(&list, i)).collect())
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>().value(row);
            Value::Array((0..list.len()).map(|i| cell_value(&list, i)).collect())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), cell_value(c.as_ref(), row)))
                    .collect(),
            )
        }
        _ => arrow::util::display::ArrayFormatter::try_new(array, &Default::default())
            .map(|f| Value::String(f.value(row).to_string()))
            .unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

    #[test]
    fn reads_values_by_name() {
        let batch = RecordBatch::try_from_iter([
            (
                "device",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "t",
                Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let rows: Vec<Tuple<'_>> = tuples(&batch).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].value("device"), Some(Value::from("a")));
        assert_eq!(rows[1].value("device"), Some(Value::Null));
        assert_eq!(rows[1].value("n"), Some(Value::from(2)));
        assert_eq!(rows[0].value("nope"), None);
        assert_eq!(
            Value::Object(rows[1].to_map()),
            serde_json::json!({"device": null, "n": 2, "t": 2.5})
        );
    }
}
