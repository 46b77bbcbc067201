//! `row_number() OVER (...)` within one emission.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use quiver_compiler::eval::EvalContext;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;
use crate::operators::sort::sort_options;

/// `row_number() OVER (...)` within one emission: groups the rows by partition (partitions in
/// the text order of their keys, as eKuiper lists them), sorts each by its ORDER BY and numbers
/// it from 1.
pub struct RowNumberOp {
    specs: Vec<quiver_compiler::plan::RowNumberSpec>,
    metrics: Arc<NodeMetrics>,
}

impl RowNumberOp {
    /// Numberings reporting into `metrics`.
    pub fn new(
        specs: Vec<quiver_compiler::plan::RowNumberSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        RowNumberOp { specs, metrics }
    }

    fn number(
        spec: &quiver_compiler::plan::RowNumberSpec,
        batch: RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<RecordBatch, String> {
        let rows = batch.num_rows();
        let mut columns = Vec::new();
        let mut keys: Option<Vec<String>> = None;
        if !spec.partition.is_empty() {
            let values = spec
                .partition
                .iter()
                .map(|e| e.eval(&batch, ctx).map(|v| v.into_array(rows)))
                .collect::<Result<Vec<_>, _>>()?;
            let text: Vec<String> = (0..rows)
                .map(|r| {
                    values
                        .iter()
                        .map(|v| key_text(v.as_ref(), r) + ",")
                        .collect()
                })
                .collect();
            columns.push(SortColumn {
                values: Arc::new(arrow::array::StringArray::from(text.clone())),
                options: None,
            });
            keys = Some(text);
        }
        for k in &spec.order {
            columns.push(SortColumn {
                values: k.expr.eval(&batch, ctx)?.into_array(rows),
                options: Some(sort_options(k)),
            });
        }
        // The arrival position last keeps equal rows in order (the sort is not stable).
        columns.push(SortColumn {
            values: Arc::new(arrow::array::UInt32Array::from_iter_values(0..rows as u32)),
            options: None,
        });
        let order = lexsort_to_indices(&columns, None).map_err(|e| e.to_string())?;
        let mut numbers = Vec::with_capacity(rows);
        let mut n = 0i64;
        let mut previous: Option<&str> = None;
        for &i in order.values() {
            let key = keys.as_ref().map(|k| k[i as usize].as_str());
            if key.is_some() && key != previous {
                n = 0;
            }
            n += 1;
            previous = key;
            numbers.push(n);
        }
        let sorted = take_record_batch(&batch, &order).map_err(|e| e.to_string())?;
        Ok(quiver_connectors::codec::json::add_column(
            sorted,
            &spec.column,
            Arc::new(arrow::array::Int64Array::from(numbers)),
        ))
    }
}

/// A partition value as eKuiper's key text shows it: strings as they are, `<nil>` for null,
/// other values as JSON.
fn key_text(arr: &dyn Array, row: usize) -> String {
    if arr.is_null(row) {
        return "<nil>".to_string();
    }
    match arr.as_string_opt::<i32>() {
        Some(s) => s.value(row).to_string(),
        None => quiver_compiler::aggregate::json_value(arr, row)
            .map(|v| v.to_string())
            .unwrap_or_default(),
    }
}

impl BatchOperator for RowNumberOp {
    fn process_batch(&mut self, mut batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        for spec in &self.specs {
            match Self::number(spec, batch.clone(), &mut ctx) {
                Ok(b) => batch = b,
                Err(e) => {
                    self.metrics
                        .exceptions(rows, &format!("run Window Function error: {e}"));
                    self.metrics.batch(rows, 0, started);
                    return None;
                }
            }
        }
        self.metrics.batch(rows, rows, started);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ints_of, metrics, records, row_numbers, rows, strings_of, text};

    fn numbering(over: &str, metrics: Arc<NodeMetrics>) -> RowNumberOp {
        let sql = format!(
            "SELECT k, v, row_number() OVER ({over}) AS rn FROM s GROUP BY TUMBLINGWINDOW(ss, 10)"
        );
        RowNumberOp::new(row_numbers(&sql), metrics)
    }

    #[test]
    fn numbers_each_partition_from_one_in_its_order() {
        let mut op = numbering("PARTITION BY k ORDER BY v DESC", metrics());
        let out = op
            .process_batch(rows(&[
                ("b", 1, 1),
                ("a", 5, 2),
                ("b", 3, 3),
                ("a", 2, 4),
                ("b", 2, 5),
            ]))
            .expect("all rows");
        // Partitions in the text order of their keys, each sorted by v, highest first.
        assert_eq!(strings_of(&out, "k"), text(&["a", "a", "b", "b", "b"]));
        assert_eq!(
            ints_of(&out, "v"),
            [Some(5), Some(2), Some(3), Some(2), Some(1)]
        );
        assert_eq!(
            ints_of(&out, "__rownum_0"),
            [Some(1), Some(2), Some(1), Some(2), Some(3)]
        );
    }

    #[test]
    fn without_partition_the_whole_emission_is_numbered_and_ties_keep_arrival_order() {
        let m = metrics();
        let mut op = numbering("ORDER BY v", m.clone());
        let out = op
            .process_batch(rows(&[("x", 2, 1), ("y", 1, 2), ("z", 2, 3)]))
            .expect("all rows");
        assert_eq!(strings_of(&out, "k"), text(&["y", "x", "z"]));
        assert_eq!(ints_of(&out, "__rownum_0"), [Some(1), Some(2), Some(3)]);
        assert_eq!(records(&m), (3, 3));
    }

    #[test]
    fn each_emission_starts_again_from_one() {
        let mut op = numbering("PARTITION BY k", metrics());
        let first = op
            .process_batch(rows(&[("a", 1, 1), ("a", 2, 2)]))
            .expect("rows");
        let second = op.process_batch(rows(&[("a", 3, 3)])).expect("rows");
        assert_eq!(ints_of(&first, "__rownum_0"), [Some(1), Some(2)]);
        assert_eq!(ints_of(&second, "__rownum_0"), [Some(1)]);
    }
}
