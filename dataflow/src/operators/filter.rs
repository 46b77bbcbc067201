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
        let mut ctx = EvalContext::new(rows);
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
        self.metrics.exceptions(
            ctx.errors.count(),
            &format!(
                "run Where error: {}",
                ctx.errors.first().unwrap_or_default()
            ),
        );
        let out = filter_record_batch(&batch, &keep).ok();
        let kept = out.as_ref().map_or(0, RecordBatch::num_rows);
        self.metrics.batch(rows, kept, started);
        out.filter(|b| b.num_rows() > 0)
    }
}
