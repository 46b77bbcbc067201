//! Result rows for the sink tests: `(device, v)` batches.
#![allow(dead_code)]

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

/// A batch of `(device, v)` rows; a `v` of None is null.
pub fn batch(rows: &[(&str, Option<i64>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("device", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("a valid batch")
}

/// [`batch`] with every `v` set.
pub fn full_batch(rows: &[(&str, i64)]) -> RecordBatch {
    let rows: Vec<(&str, Option<i64>)> = rows.iter().map(|(d, v)| (*d, Some(*v))).collect();
    batch(&rows)
}

/// `rows` benchmark readings `(id, device, temperature)` with ids from `first_id`.
pub fn readings(first_id: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("temperature", DataType::Float64, true),
    ]));
    let ids: Vec<i64> = (first_id..first_id + rows as i64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("device-{}", i % 100)),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| 20.0 + (i % 17) as f64 * 0.5),
            )),
        ],
    )
    .unwrap()
}
