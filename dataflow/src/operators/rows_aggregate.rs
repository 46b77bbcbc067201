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
        let prepared = self.prepare.prepare(batch, now, &mut failures)?;
        let mut table = GroupTable::new(self.spec.clone());
        table.update(&prepared);
        let out = table.finish(now as i64, now as i64);
        if let Some(first) = &failures.first {
            self.metrics.exceptions(failures.rows, first);
        }
        self.metrics
            .batch(rows, out.as_ref().map_or(0, RecordBatch::num_rows), started);
        out
    }
}
