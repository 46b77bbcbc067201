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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{analytic_calls, batch, bytes_of, column_names, ints, strings};

    fn keyed(partition: &str) -> KeyOp {
        let calls = analytic_calls(&format!(
            "SELECT lag(v) OVER (PARTITION BY {partition}) AS p FROM s"
        ));
        KeyOp::new(calls[0].partition.clone())
    }

    #[test]
    fn a_string_key_is_its_own_bytes_and_null_a_byte_no_string_has() {
        let mut op = keyed("k");
        let input = batch(vec![("k", strings(&[Some("a"), None, Some("a")]))]);
        let out = op.process_batch(input).expect("every row goes on");
        assert_eq!(column_names(&out), ["k", "__key"]);
        assert_eq!(
            bytes_of(&out, "__key"),
            [b"a".to_vec(), vec![0xFF], b"a".to_vec()]
        );
    }

    #[test]
    fn rows_share_a_key_only_when_every_partition_value_is_equal() {
        let mut op = keyed("k, v");
        let input = batch(vec![
            ("k", strings(&[Some("a"), Some("a"), Some("a"), Some("b")])),
            ("v", ints(&[Some(1), Some(2), Some(1), Some(1)])),
        ]);
        let out = op.process_batch(input).expect("every row goes on");
        let keys = bytes_of(&out, "__key");
        assert_eq!(keys[0], keys[2]);
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[3]);
        assert_ne!(keys[1], keys[3]);
    }
}
