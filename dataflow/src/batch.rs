//! Helpers over whole record batches shared by windows, tables and operators.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::aggregate::interleave_loose;

/// Concatenates the partial results of one window from several workers into one emission.
pub fn concat_results(batches: &[RecordBatch]) -> Option<RecordBatch> {
    match batches {
        [] => None,
        [one] => Some(one.clone()),
        many => {
            let schema = many[0].schema();
            if many.iter().all(|b| b.schema() == schema) {
                return arrow::compute::concat_batches(&schema, many).ok();
            }
            rows_to_batch(
                many.iter()
                    .flat_map(|b| (0..b.num_rows() as u32).map(move |r| (b, r))),
            )
        }
    }
}

/// True when two batch handles share their columns (clones of one batch).
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_rows() == b.num_rows()
        && a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

/// Concatenates rows, each a (batch, position), into one batch in order, tolerating schema
/// differences (a column missing from a batch is null in its rows).
pub fn rows_to_batch<'a>(
    rows: impl Iterator<Item = (&'a RecordBatch, u32)>,
) -> Option<RecordBatch> {
    // Distinct batches, in order of first use, and each row's position.
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut positions = Vec::new();
    for (batch, row) in rows {
        let b = match batches.iter().position(|b| same_batch(b, batch)) {
            Some(i) => i,
            None => {
                batches.push(batch);
                batches.len() - 1
            }
        };
        positions.push((b as u32, row));
    }
    if positions.is_empty() {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for b in &batches {
        for f in b.schema().fields() {
            if !names.contains(f.name()) {
                names.push(f.name().clone());
            }
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut cols = Vec::with_capacity(names.len());
    for name in &names {
        let arrays: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .cloned()
                    .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Null, b.num_rows()))
            })
            .collect();
        let col = interleave_loose(&arrays, &positions);
        fields.push(Field::new(name, col.data_type().clone(), true));
        cols.push(col);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(positions.len())),
    )
    .ok()
}
