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
