//! WHERE and HAVING: keeps the rows whose condition is true.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;

/// Keeps rows where the WHERE condition is true.
pub struct FilterOp {
    predicate: Expr,
    /// `last_hit_*` calls the predicate reads; this operator records their hits.
    hits: Vec<(Arc<quiver_compiler::hit::HitSite>, Expr)>,
    metrics: Arc<NodeMetrics>,
}

impl FilterOp {
    /// A filter reporting into `metrics`.
    pub fn new(predicate: Expr, metrics: Arc<NodeMetrics>) -> Self {
        let hits = quiver_compiler::hit::cached_sites(&predicate);
        FilterOp {
            predicate,
            hits,
            metrics,
        }
    }
}

/// The rows a condition keeps: true, not null; a non-boolean result fails every row.
fn condition_mask(predicate: &Expr, batch: &RecordBatch, ctx: &mut EvalContext) -> BooleanArray {
    let rows = batch.num_rows();
    match predicate.eval(batch, ctx) {
        Ok(v) => {
            let arr = v.into_array(rows);
            match arr.data_type() {
                DataType::Boolean => quiver_compiler::eval::true_mask(arr.as_boolean()),
                DataType::Null => BooleanArray::from(vec![false; rows]),
                other => {
                    ctx.errors.flag_all(format!(
                        "invalid condition that returns non-bool value {}",
                        quiver_compiler::types::type_name(other)
                    ));
                    BooleanArray::from(vec![false; rows])
                }
            }
        }
        Err(e) => {
            ctx.errors.flag_all(e);
            BooleanArray::from(vec![false; rows])
        }
    }
}

impl BatchOperator for FilterOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = if self.metrics.sends_errors() {
            EvalContext::detailed(rows)
        } else {
            EvalContext::new(rows)
        };
        let keep = if self.hits.is_empty() {
            condition_mask(&self.predicate, &batch, &mut ctx)
        } else {
            quiver_compiler::hit::condition_with_hits(
                &self.predicate,
                &self.hits,
                &batch,
                &mut ctx,
                &condition_mask,
            )
        };
        let keep = match ctx.errors.ok_mask() {
            Some(ok) => arrow::compute::and(&keep, &ok).unwrap_or(keep),
            None => keep,
        };
        self.metrics.row_errors(&ctx.errors, "run Where error: ");
        let out = filter_record_batch(&batch, &keep).ok();
        let kept = out.as_ref().map_or(0, RecordBatch::num_rows);
        self.metrics.batch(rows, kept, started);
        out.filter(|b| b.num_rows() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        assert_drops_the_failing_row, batch, exceptions, ints, metrics, predicate, records,
        strings, strings_of, text,
    };

    #[test]
    fn keeps_the_rows_whose_condition_is_true_and_drops_null_ones() {
        let m = metrics();
        let mut op = FilterOp::new(predicate("SELECT k FROM s WHERE v > 1"), m.clone());
        let input = batch(vec![
            ("k", strings(&[Some("a"), Some("b"), Some("c"), Some("d")])),
            ("v", ints(&[Some(1), Some(2), None, Some(3)])),
        ]);
        let out = op.process_batch(input).expect("two rows pass");
        assert_eq!(strings_of(&out, "k"), text(&["b", "d"]));
        assert_eq!(records(&m), (4, 2));
        assert_eq!(exceptions(&m), (0, String::new()));
    }

    #[test]
    fn a_failing_row_is_dropped_and_counted_with_ekuipers_message() {
        let m = metrics();
        let mut op = FilterOp::new(predicate("SELECT k FROM s WHERE 6 / v > 1"), m.clone());
        assert_drops_the_failing_row(&mut op, &m, "run Where error: divided by zero");
    }

    #[test]
    fn a_batch_without_a_passing_row_goes_no_further() {
        let m = metrics();
        let mut op = FilterOp::new(predicate("SELECT k FROM s WHERE v > 10"), m.clone());
        let input = batch(vec![
            ("k", strings(&[Some("a"), Some("b")])),
            ("v", ints(&[Some(1), Some(2)])),
        ]);
        assert!(op.process_batch(input).is_none());
        assert_eq!(records(&m), (2, 0));
    }
}
