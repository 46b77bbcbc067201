//! Evaluates what a window needs on the raw rows, before the exchange.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;
use crate::window::{Failures, Prepare};

/// Evaluates what the window needs (see [`Prepare`]); its failures count on the window node.
pub struct PrepareOp {
    prepare: Prepare,
    metrics: Arc<NodeMetrics>,
}

impl PrepareOp {
    /// Prepares rows for the window `spec`, counting failures on the window's node.
    pub fn new(
        spec: Arc<quiver_compiler::window::AggregateSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        PrepareOp {
            prepare: Prepare::new(spec),
            metrics,
        }
    }
}

impl BatchOperator for PrepareOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut failures = Failures::default();
        let out = self
            .prepare
            .prepare(batch, crate::clock::now_time(), &mut failures);
        if let Some(first) = &failures.first {
            self.metrics.exceptions(failures.rows, first);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        aggregate, bytes_of, divide_by_zero_once, exceptions, ints_of, metrics, rows, timed,
    };

    const SUM_BY_K: &str = "SELECT k, sum(v) AS total FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)";

    #[test]
    fn rows_keep_their_event_time_and_get_their_group_key_and_arguments() {
        let mut op = PrepareOp::new(aggregate(SUM_BY_K), metrics());
        let out = op
            .process_batch(timed(&[("a", 1, 1000), ("b", 2, 2000)]))
            .expect("both rows");
        assert_eq!(ints_of(&out, "__ts"), [Some(1000), Some(2000)]);
        assert_eq!(bytes_of(&out, "__key"), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(ints_of(&out, "__arg_0_0"), [Some(1), Some(2)]);
    }

    #[test]
    fn rows_without_a_time_get_the_time_they_are_prepared_at() {
        let mut op = PrepareOp::new(aggregate(SUM_BY_K), metrics());
        let before = crate::clock::now_ms();
        let out = op
            .process_batch(rows(&[("a", 1, 1), ("b", 2, 2)]))
            .expect("both rows");
        let after = crate::clock::now_ms();
        let ts = ints_of(&out, "__ts");
        assert_eq!(ts[0], ts[1], "one batch arrives at one time");
        let t = ts[0].expect("a time");
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..={after}"
        );
    }

    #[test]
    fn a_failing_argument_drops_its_row_and_counts_on_the_window_node() {
        let m = metrics();
        let spec = aggregate("SELECT k, sum(6 / v) AS q FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)");
        let mut op = PrepareOp::new(spec, m.clone());
        let out = divide_by_zero_once(&mut op);
        assert_eq!(ints_of(&out, "__arg_0_0"), [Some(2), Some(3)]);
        assert_eq!(
            exceptions(&m),
            (1, "run Aggregate error: divided by zero".to_string())
        );
    }
}
