//! Evaluates what a window needs on the raw rows, before the exchange.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;
use crate::state::OpState;
use crate::window::{Failures, FirstRowStamp, Prepare};

/// Evaluates what the window needs (see [`Prepare`]); its failures count on the window node.
pub struct PrepareOp {
    prepare: Prepare,
    metrics: Arc<NodeMetrics>,
    /// Event time: the rule's first row time, stamped on every batch for the window workers.
    stamp: Option<FirstRowStamp>,
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
            stamp: None,
        }
    }

    /// In event time: stamps the rule's first row time on every batch (see
    /// [`crate::window::first_row`]); a checkpoint keeps it.
    pub fn stamping_first_row(mut self) -> Self {
        self.stamp = Some(FirstRowStamp::default());
        self
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
        match self.stamp.as_mut() {
            Some(stamp) => out.map(|b| stamp.stamp(b)),
            None => out,
        }
    }

    fn save(&self) -> Result<Option<OpState>, String> {
        let Some(stamp) = &self.stamp else {
            return Ok(None);
        };
        let mut state = OpState::default();
        state.push_number("stamp", 1);
        if let Some(first) = stamp.first {
            state.push_number("first_row", first);
        }
        Ok(Some(state))
    }

    fn load(&mut self, state: &OpState) -> Result<(), String> {
        match self.stamp.as_mut() {
            Some(stamp) => {
                stamp.restore(state.number("first_row"));
                Ok(())
            }
            None => Err("window preparation: no state to load in processing time".into()),
        }
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
    #[test]
    fn in_event_time_the_first_row_time_survives_a_checkpoint() {
        use crate::window::first_row::first_row;
        let spec = aggregate(SUM_BY_K);
        let mut op = PrepareOp::new(spec.clone(), metrics()).stamping_first_row();
        let one = op
            .process_batch(timed(&[("a", 1, 1300), ("b", 2, 1250)]))
            .expect("both rows");
        assert_eq!(first_row(&one), Some(1250));
        let state = op.save().unwrap().expect("event time keeps the first row");
        let mut restored = PrepareOp::new(spec.clone(), metrics()).stamping_first_row();
        restored.load(&state).unwrap();
        let two = restored
            .process_batch(timed(&[("c", 1, 9000)]))
            .expect("a row");
        assert_eq!(
            first_row(&two),
            Some(1250),
            "the rule's first row, not the restored run's"
        );
        // Processing time keeps nothing and stamps nothing.
        let mut plain = PrepareOp::new(spec, metrics());
        assert!(plain.save().unwrap().is_none());
        let three = plain
            .process_batch(timed(&[("c", 1, 9000)]))
            .expect("a row");
        assert_eq!(first_row(&three), None);
    }
}
