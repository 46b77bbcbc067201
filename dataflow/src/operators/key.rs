//! Adds the partition key column by which keyed analytic rows are exchanged.

use arrow::record_batch::RecordBatch;

use crate::chain::BatchOperator;

/// Adds the window-key column (`__key`) computed from `keys`, which the key exchange reads.
pub struct KeyOp {
    keys: Vec<quiver_compiler::expr::Expr>,
}

impl KeyOp {
    /// Keys rows by `keys`.
    pub fn new(keys: Vec<quiver_compiler::expr::Expr>) -> Self {
        KeyOp { keys }
    }
}

impl BatchOperator for KeyOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut ctx = quiver_compiler::eval::EvalContext::new(batch.num_rows());
        // Without a key (its evaluation failed) the batch goes to worker 0, where the
        // analytic operator reports the failure.
        match crate::window::prepare::encode_keys(&self.keys, &batch, &mut ctx) {
            Some(key) => Some(quiver_connectors::codec::json::add_column(
                batch,
                quiver_compiler::window::KEY_COLUMN,
                key,
            )),
            None => Some(batch),
        }
    }
}
