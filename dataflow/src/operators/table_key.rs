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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        batch, bytes_of, column_names, ints, strings, strings_of, table_join, text,
    };

    fn keyed(on: &str) -> TableKeyOp {
        TableKeyOp::new(&table_join(&format!(
            "SELECT k, u.name FROM s INNER JOIN u ON {on}"
        )))
    }

    #[test]
    fn each_row_carries_its_join_key_as_the_tables_index_keys_it() {
        let mut op = keyed("s.k = u.id");
        let input = batch(vec![
            ("k", strings(&[Some("a"), None, Some("b")])),
            ("v", ints(&[Some(1), Some(2), Some(3)])),
        ]);
        let out = op.process_batch(input).expect("every row goes on");
        assert_eq!(column_names(&out), ["k", "v", "__key"]);
        assert_eq!(
            strings_of(&out, "k"),
            [Some("a".to_string()), None, Some("b".to_string())]
        );
        // A missing key has no text: it matches nothing, on whichever worker it lands.
        assert_eq!(
            bytes_of(&out, "__key"),
            [b"\"a\"\x1f".to_vec(), Vec::new(), b"\"b\"\x1f".to_vec()]
        );
    }

    #[test]
    fn a_key_expression_is_evaluated_before_the_exchange() {
        let mut op = keyed("lower(s.k) = u.id");
        let input = batch(vec![("k", strings(&[Some("A"), Some("b")]))]);
        let out = op.process_batch(input).expect("every row goes on");
        assert_eq!(strings_of(&out, "k"), text(&["A", "b"]));
        assert_eq!(
            bytes_of(&out, "__key"),
            [b"\"a\"\x1f".to_vec(), b"\"b\"\x1f".to_vec()]
        );
    }
}
