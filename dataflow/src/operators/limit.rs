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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{limit, rows, strings_of, text};

    #[test]
    fn keeps_the_first_rows_of_each_emission() {
        let mut op = LimitOp::new(limit("SELECT k FROM s LIMIT 2"));
        let first = op
            .process_batch(rows(&[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)]))
            .expect("two rows");
        assert_eq!(strings_of(&first, "k"), text(&["a", "b"]));
        // The limit holds for each emission alone, not for the rule's whole output.
        let second = op
            .process_batch(rows(&[("d", 4, 4), ("e", 5, 5), ("f", 6, 6)]))
            .expect("two rows again");
        assert_eq!(strings_of(&second, "k"), text(&["d", "e"]));
        let short = op.process_batch(rows(&[("g", 7, 7)])).expect("one row");
        assert_eq!(strings_of(&short, "k"), text(&["g"]));
    }

    #[test]
    fn limit_zero_emits_nothing() {
        let mut op = LimitOp::new(0);
        assert!(op.process_batch(rows(&[("a", 1, 1)])).is_none());
    }
}
