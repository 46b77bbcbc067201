//! LIMIT within one emission.

use arrow::record_batch::RecordBatch;

use crate::chain::BatchOperator;

/// LIMIT n within one emission (part of the project node in eKuiper, so no metrics of its
/// own).
pub struct LimitOp {
    n: usize,
}

impl LimitOp {
    /// A limit of `n` rows.
    pub fn new(n: usize) -> Self {
        LimitOp { n }
    }
}

impl BatchOperator for LimitOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let rows = batch.num_rows();
        Some(batch.slice(0, rows.min(self.n))).filter(|b| b.num_rows() > 0)
    }
}
