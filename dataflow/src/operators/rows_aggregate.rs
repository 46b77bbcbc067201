//! Aggregates of a rule without a window (eKuiper computes them per row).

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;
use crate::window::{Failures, GroupTable, Prepare};

/// Aggregates of a rule without a window: eKuiper computes them on each row alone.
pub struct RowsAggregateOp {
    prepare: Prepare,
    spec: Arc<quiver_compiler::window::AggregateSpec>,
    metrics: Arc<NodeMetrics>,
}

impl RowsAggregateOp {
    /// Aggregates of `spec`, reporting into `metrics`.
    pub fn new(
        spec: Arc<quiver_compiler::window::AggregateSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        RowsAggregateOp {
            prepare: Prepare::new(spec.clone()),
            spec,
            metrics,
        }
    }
}

impl BatchOperator for RowsAggregateOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut failures = Failures::default();
        let now = crate::clock::now_time();
        // A batch whose every row failed yields nothing, but its failures still count.
        let out = self
            .prepare
            .prepare(batch, now, &mut failures)
            .and_then(|prepared| {
                let mut table = GroupTable::new(self.spec.clone());
                table.update(&prepared);
                table.finish(now as i64, now as i64)
            });
        if let Some(first) = &failures.first {
            self.metrics.exceptions(failures.rows, first);
        }
        self.metrics
            .batch(rows, out.as_ref().map_or(0, RecordBatch::num_rows), started);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        aggregate, assert_drops_the_failing_row, exceptions, ints_of, metrics, records, strings_of,
        text, timed,
    };

    #[test]
    fn each_row_is_aggregated_alone_at_its_own_time() {
        let m = metrics();
        let spec = aggregate("SELECT k, count(*) AS c, sum(v) AS total FROM s");
        let mut op = RowsAggregateOp::new(spec, m.clone());
        let out = op
            .process_batch(timed(&[("a", 1, 1000), ("a", 2, 2000), ("b", 5, 3000)]))
            .expect("a result a row");
        assert_eq!(strings_of(&out, "k"), text(&["a", "a", "b"]));
        assert_eq!(ints_of(&out, "__agg_0"), [Some(1), Some(1), Some(1)]);
        assert_eq!(ints_of(&out, "__agg_1"), [Some(1), Some(2), Some(5)]);
        assert_eq!(
            ints_of(&out, "__window_start"),
            [Some(1000), Some(2000), Some(3000)]
        );
        assert_eq!(
            ints_of(&out, "__window_end"),
            ints_of(&out, "__window_start")
        );
        assert_eq!(records(&m), (3, 3));
    }

    #[test]
    fn a_failing_argument_drops_its_row_with_ekuipers_message() {
        let m = metrics();
        let mut op = RowsAggregateOp::new(aggregate("SELECT k, sum(6 / v) AS q FROM s"), m.clone());
        let out = assert_drops_the_failing_row(&mut op, &m, "run Aggregate error: divided by zero");
        assert_eq!(ints_of(&out, "__agg_0"), [Some(2), Some(3)]);
    }

    #[test]
    fn a_batch_whose_rows_all_fail_still_counts_them() {
        let m = metrics();
        let mut op = RowsAggregateOp::new(aggregate("SELECT k, sum(6 / v) AS q FROM s"), m.clone());
        assert!(op.process_batch(timed(&[("b", 0, 2)])).is_none());
        assert_eq!(
            exceptions(&m),
            (1, "run Aggregate error: divided by zero".to_string())
        );
        assert_eq!(records(&m), (1, 0));
    }
}
