//! Adds the join key column by which a partitioned table join's rows are exchanged.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::plan::TableJoin;

use crate::chain::BatchOperator;
use crate::keys::keys_of;

/// Adds the `__key` column a partitioned stream-table join is exchanged by: each row's join key
/// as the table's arrangement keys it, so the row reaches the worker holding its table rows.
pub struct TableKeyOp {
    keys: Vec<quiver_compiler::expr::Expr>,
}

impl TableKeyOp {
    /// Keys rows by the stream side of `join`.
    pub fn new(join: &TableJoin) -> Self {
        TableKeyOp {
            keys: join.stream_keys.clone(),
        }
    }
}

impl BatchOperator for TableKeyOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        // A key that fails to evaluate, or is null, matches nothing: such rows may go to any
        // worker (the join reports the failure there).
        let keys = self
            .keys
            .iter()
            .map(|k| k.eval(&batch, &mut ctx).map(|v| v.into_array(rows)))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map(|arrays| keys_of(&arrays, rows))
            .unwrap_or_else(|_| vec![None; rows]);
        let column = arrow::array::BinaryArray::from_iter_values(
            keys.iter()
                .map(|k| k.as_deref().unwrap_or_default().as_bytes()),
        );
        Some(quiver_connectors::codec::json::add_column(
            batch,
            quiver_compiler::window::KEY_COLUMN,
            Arc::new(column),
        ))
    }
}
