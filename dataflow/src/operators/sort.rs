//! ORDER BY within one emission.

use std::sync::Arc;
use std::time::Instant;

use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::window::SortKey;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;

/// How a key sorts: missing values last either way, as eKuiper's sorter puts a nil after any
/// value in both directions (`internal/xsql/sorter.go`). Arrow's `nulls_first` is absolute, not
/// relative to the direction.
pub(crate) fn sort_options(k: &SortKey) -> SortOptions {
    SortOptions {
        descending: !k.ascending,
        nulls_first: false,
    }
}

/// ORDER BY within one emission.
pub struct SortOp {
    keys: Vec<SortKey>,
    metrics: Arc<NodeMetrics>,
}

impl SortOp {
    /// A sort reporting into `metrics`.
    pub fn new(keys: Vec<SortKey>, metrics: Arc<NodeMetrics>) -> Self {
        SortOp { keys, metrics }
    }
}

impl BatchOperator for SortOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let mut columns = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            match k.expr.eval(&batch, &mut ctx) {
                Ok(v) => columns.push(SortColumn {
                    values: v.into_array(rows),
                    options: Some(sort_options(k)),
                }),
                Err(e) => {
                    self.metrics
                        .exceptions(rows, &format!("run Order By error: {e}"));
                    self.metrics.batch(rows, rows, started);
                    return Some(batch);
                }
            }
        }
        let sorted = lexsort_to_indices(&columns, None)
            .map_err(|e| e.to_string())
            .and_then(|idx| take_record_batch(&batch, &idx).map_err(|e| e.to_string()));
        match sorted {
            Ok(b) => {
                self.metrics.batch(rows, rows, started);
                Some(b)
            }
            Err(e) => {
                // Keys of types that do not compare (e.g. mixed): keep arrival order.
                self.metrics
                    .exceptions(rows, &format!("run Order By error: {e}"));
                self.metrics.batch(rows, rows, started);
                Some(batch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, ints, ints_of, metrics, order_by, strings, strings_of, text};

    /// Rows `a..e` with `v` = 3, null, 1, 2, 1, sorted by the ORDER BY of `sql`.
    fn sorted(sql: &str) -> RecordBatch {
        let input = batch(vec![
            (
                "k",
                strings(&[Some("a"), Some("b"), Some("c"), Some("d"), Some("e")]),
            ),
            ("v", ints(&[Some(3), None, Some(1), Some(2), Some(1)])),
        ]);
        let mut op = SortOp::new(order_by(sql), metrics());
        op.process_batch(input).expect("all rows")
    }

    #[test]
    fn ascending_puts_missing_values_last() {
        let v = ints_of(&sorted("SELECT k FROM s ORDER BY v"), "v");
        assert_eq!(v, [Some(1), Some(1), Some(2), Some(3), None]);
    }

    #[test]
    fn descending_puts_missing_values_last_too() {
        let v = ints_of(&sorted("SELECT k FROM s ORDER BY v DESC"), "v");
        assert_eq!(v, [Some(3), Some(2), Some(1), Some(1), None]);
    }

    #[test]
    fn a_second_key_breaks_ties_of_the_first() {
        let out = sorted("SELECT k FROM s ORDER BY v, k DESC");
        assert_eq!(strings_of(&out, "k"), text(&["e", "c", "d", "a", "b"]));
    }
}
