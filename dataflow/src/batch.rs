//! Helpers over whole record batches shared by windows, tables and operators.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::aggregate::interleave_loose;

use crate::state::same_batch;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, column_names, ints, ints_of, strings, strings_of, text};

    #[test]
    fn results_of_one_shape_concatenate_in_order() {
        let a = batch(vec![("k", strings(&[Some("a"), Some("b")]))]);
        let b = batch(vec![("k", strings(&[Some("c")]))]);
        let out = concat_results(&[a, b]).expect("three rows");
        assert_eq!(strings_of(&out, "k"), text(&["a", "b", "c"]));
        assert!(concat_results(&[]).is_none());
    }

    #[test]
    fn results_of_different_shapes_fill_missing_columns_with_null() {
        let a = batch(vec![("k", strings(&[Some("a")])), ("v", ints(&[Some(1)]))]);
        let b = batch(vec![("w", ints(&[Some(5)])), ("k", strings(&[Some("b")]))]);
        let out = concat_results(&[a, b]).expect("two rows");
        assert_eq!(column_names(&out), ["k", "v", "w"]);
        assert_eq!(strings_of(&out, "k"), text(&["a", "b"]));
        assert_eq!(ints_of(&out, "v"), [Some(1), None]);
        assert_eq!(ints_of(&out, "w"), [None, Some(5)]);
    }

    #[test]
    fn rows_come_out_in_the_order_they_are_asked_for() {
        let a = batch(vec![("k", strings(&[Some("a0"), Some("a1")]))]);
        let b = batch(vec![("k", strings(&[Some("b0")]))]);
        let out = rows_to_batch([(&b, 0), (&a, 1), (&a, 0)].into_iter()).expect("three rows");
        assert_eq!(strings_of(&out, "k"), text(&["b0", "a1", "a0"]));
        assert!(rows_to_batch(std::iter::empty()).is_none());
    }
}
