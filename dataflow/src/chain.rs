//! The one operator trait, the fused chain of operators, and the panic guard around it.
//!
//! Contract (eKuiper's): a row that fails (a bad cast, a division by zero) is dropped and
//! counted in its node's `exceptions_total` with the reason in `last_exception`; the rule keeps
//! running. Only setup and I/O failures change a rule's status.

use arrow::record_batch::RecordBatch;

use crate::metrics::NodeMetrics;

/// A step of a rule's pipeline over batches.
pub trait BatchOperator {
    /// Processes one batch; `None` when no row remains.
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch>;
}

/// Runs several operators in sequence (a fused stateless chain: one timely operator).
#[derive(Default)]
pub struct Chain {
    ops: Vec<Box<dyn BatchOperator>>,
}

impl Chain {
    /// Appends an operator.
    pub fn push(&mut self, op: Box<dyn BatchOperator>) {
        self.ops.push(op);
    }

    /// True when the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl BatchOperator for Chain {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut cur = batch;
        for op in &mut self.ops {
            cur = op.process_batch(cur)?;
        }
        Some(cur)
    }
}

/// Runs the fused operators on a batch. A bug in an operator must fail its rows, not the
/// worker (and every rule on it): a panic is caught and counted as exceptions.
pub(crate) fn run_chain(
    chain: &mut Chain,
    batch: RecordBatch,
    metrics: &NodeMetrics,
) -> Option<RecordBatch> {
    let rows = batch.num_rows();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chain.process_batch(batch))) {
        Ok(out) => out,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            tracing::error!("operator panicked, {rows} rows dropped: {reason}");
            metrics.exceptions(rows, &format!("internal error: {reason}"));
            None
        }
    }
}
