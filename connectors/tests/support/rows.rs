//! Result rows for the sink tests: `(device, v)` batches.
#![allow(dead_code)]

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
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
