//! Stream-stream joins (`FROM a JOIN b ON ... GROUP BY <window>`), as eKuiper runs them: the
//! window keeps the rows of every stream, and when it closes its rows are joined, then WHERE,
//! GROUP BY and the aggregates run over the joined rows.
//!
//! Rows of the joined streams reach the rule with their columns renamed `qualifier.column` and
//! a `__src` column saying which stream they come from (0 for the FROM stream); a window's rows
//! are one batch with the union of those columns. A joined row is a tuple of row positions in
//! that batch, one per stream (`None` where an outer join found nothing), and becomes a row by
//! taking each column from its stream's position.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::eval::{EvalContext, true_mask};
use quiver_compiler::plan::{JoinKind, JoinStep, StreamJoins};

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;

use quiver_compiler::columns::{EVENT_TIME_COLUMN, SOURCE_COLUMN};

/// A joined row: one row position per stream.
type Tuple = Vec<Option<u32>>;

/// Most candidate pairs one join step of one window may build (a CROSS JOIN or an ON without
/// equalities pairs every row with every row): beyond it the window fails with an exception
/// instead of exhausting memory.
const MAX_PAIRS: usize = 4 << 20;

/// Joins the rows of one window.
pub struct JoinStreamsOp {
    join: StreamJoins,
    metrics: Arc<NodeMetrics>,
}

impl JoinStreamsOp {
    /// The joins of a rule, reporting into `metrics`.
    pub fn new(join: StreamJoins, metrics: Arc<NodeMetrics>) -> Self {
        JoinStreamsOp { join, metrics }
    }

    /// Which stream owns each column of `batch`: `qualifier.` columns their stream, the rest
    /// the FROM stream.
    fn owners(&self, batch: &RecordBatch) -> Vec<usize> {
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                self.join
                    .streams
                    .iter()
                    .position(|s| {
                        f.name()
                            .strip_prefix(s.qualifier.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                    })
                    .map_or(0, |i| i + 1)
            })
            .collect()
    }

    fn join(&self, batch: &RecordBatch, ctx: &mut EvalContext) -> Result<RecordBatch, String> {
        let streams = self.join.streams.len() + 1;
        let rows_of = rows_by_source(batch, streams);
        let owners = self.owners(batch);
        let mut acc: Vec<Tuple> = rows_of[0]
            .iter()
            .map(|&r| {
                let mut t = vec![None; streams];
                t[0] = Some(r);
                t
            })
            .collect();
        for step in &self.join.steps {
            acc = self.step(step, acc, batch, &owners, &rows_of[step.right], ctx)?;
        }
        materialize(batch, &owners, &acc)
    }

    fn step(
        &self,
        step: &JoinStep,
        left: Vec<Tuple>,
        batch: &RecordBatch,
        owners: &[usize],
        right_rows: &[u32],
        ctx: &mut EvalContext,
    ) -> Result<Vec<Tuple>, String> {
        let k = step.right;
        // Candidate pairs (left tuple index, right row).
        let mut pairs: Vec<(usize, u32)> = Vec::new();
        if step.left_keys.is_empty() {
            if left.len().saturating_mul(right_rows.len()) > MAX_PAIRS {
                return Err(format!(
                    "{} x {} rows to pair in one window is more than {MAX_PAIRS}; add an equality to ON or use a smaller window",
                    left.len(),
                    right_rows.len()
                ));
            }
            for l in 0..left.len() {
                pairs.extend(right_rows.iter().map(|&r| (l, r)));
            }
        } else {
            let left_batch = materialize(batch, owners, &left)?;
            let lkeys = key_texts(&step.left_keys, &left_batch, ctx)?;
            let right_batch =
                arrow::compute::take_record_batch(batch, &UInt32Array::from(right_rows.to_vec()))
                    .map_err(|e| e.to_string())?;
            let rkeys = key_texts(&step.right_keys, &right_batch, ctx)?;
            let mut index: HashMap<&str, Vec<u32>> = HashMap::new();
            for (i, key) in rkeys.iter().enumerate() {
                if let Some(key) = key {
                    index.entry(key.as_str()).or_default().push(right_rows[i]);
                }
            }
            for (l, key) in lkeys.iter().enumerate() {
                if let Some(matches) = key.as_ref().and_then(|k| index.get(k.as_str())) {
                    pairs.extend(matches.iter().map(|&r| (l, r)));
                    if pairs.len() > MAX_PAIRS {
                        return Err(format!(
                            "more than {MAX_PAIRS} joined pairs in one window; use a smaller window"
                        ));
                    }
                }
            }
        }
        let joined = |(l, r): (usize, u32)| -> Tuple {
            let mut t = left[l].clone();
            t[k] = Some(r);
            t
        };
        let mut tuples: Vec<Tuple> = pairs.iter().copied().map(joined).collect();
        if let Some(residual) = &step.residual
            && !tuples.is_empty()
        {
            let candidates = materialize(batch, owners, &tuples)?;
            let n = candidates.num_rows();
            let mut rctx = EvalContext::new(n);
            let keep = match residual.eval(&candidates, &mut rctx)?.into_array(n) {
                a if a.data_type() == &DataType::Boolean => true_mask(a.as_boolean()),
                _ => BooleanArray::from(vec![false; n]),
            };
            let mut kept_pairs = Vec::new();
            let mut kept = Vec::new();
            for (i, t) in tuples.into_iter().enumerate() {
                if keep.value(i) {
                    kept.push(t);
                    kept_pairs.push(pairs[i]);
                }
            }
            tuples = kept;
            pairs = kept_pairs;
        }
        let keep_left = matches!(step.kind, JoinKind::Left | JoinKind::Full);
        let keep_right = matches!(step.kind, JoinKind::Right | JoinKind::Full);
        if keep_left {
            let mut matched = vec![false; left.len()];
            pairs.iter().for_each(|&(l, _)| matched[l] = true);
            for (l, m) in matched.iter().enumerate() {
                if !m {
                    tuples.push(left[l].clone());
                }
            }
        }
        if keep_right {
            let matched: std::collections::HashSet<u32> = pairs.iter().map(|&(_, r)| r).collect();
            for &r in right_rows {
                if !matched.contains(&r) {
                    let mut t = vec![None; self.join.streams.len() + 1];
                    t[k] = Some(r);
                    tuples.push(t);
                }
            }
        }
        Ok(tuples)
    }
}

impl BatchOperator for JoinStreamsOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let result = self.join(&batch, &mut ctx);
        crate::operators::join_table::report_join(&self.metrics, rows, started, &ctx, result)
    }

    fn save(&self) -> Result<Option<crate::state::OpState>, String> {
        // It joins one closed window's rows at a time: the rows wait in the window's state.
        Ok(None)
    }
}

/// The positions of each stream's rows in `batch`.
fn rows_by_source(batch: &RecordBatch, streams: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); streams];
    let src = batch
        .column_by_name(SOURCE_COLUMN)
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>().cloned());
    for r in 0..batch.num_rows() {
        let s = src
            .as_ref()
            .filter(|c| c.is_valid(r))
            .map_or(0, |c| c.value(r) as usize);
        if let Some(rows) = out.get_mut(s) {
            rows.push(r as u32);
        }
    }
    out
}

/// Each row's key as text (JSON values joined), `None` when a part is null: null keys never
/// match, as in SQL.
fn key_texts(
    keys: &[quiver_compiler::expr::Expr],
    batch: &RecordBatch,
    ctx: &mut EvalContext,
) -> Result<Vec<Option<String>>, String> {
    let rows = batch.num_rows();
    let arrays: Vec<ArrayRef> = keys
        .iter()
        .map(|k| {
            let mut c = EvalContext::new(rows);
            let v = k.eval(batch, &mut c).map(|v| v.into_array(rows));
            if let Some(first) = c.errors.first() {
                ctx.errors.flag_all(first.to_string());
            }
            v
        })
        .collect::<Result<_, _>>()?;
    Ok(crate::keys::keys_of(&arrays, rows))
}

/// The joined rows: every column of `batch` taken from its stream's position in each tuple.
fn materialize(
    batch: &RecordBatch,
    owners: &[usize],
    tuples: &[Tuple],
) -> Result<RecordBatch, String> {
    let streams = owners.iter().copied().max().unwrap_or(0) + 1;
    let takes: Vec<UInt32Array> = (0..streams)
        .map(|s| tuples.iter().map(|t| t.get(s).copied().flatten()).collect())
        .collect();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for ((f, c), &o) in batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .zip(owners)
    {
        let col = if f.name() == SOURCE_COLUMN {
            // Joined rows belong to no single stream.
            Arc::new(Int64Array::from(vec![0; tuples.len()])) as ArrayRef
        } else {
            arrow::compute::take(c.as_ref(), &takes[o], None).map_err(|e| e.to_string())?
        };
        fields.push(Field::new(f.name(), col.data_type().clone(), true));
        cols.push(col);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(tuples.len())),
    )
    .map_err(|e| e.to_string())
}

/// A joined stream's decoded rows as the rule sees them: columns renamed
/// `qualifier.column`, `__src` set to `source`, and its event time (when `event_time` names
/// its `TIMESTAMP` field) copied to `__evt` for the watermark.
pub fn qualify(
    batch: RecordBatch,
    qualifier: &str,
    source: i64,
    event_time: Option<&str>,
) -> RecordBatch {
    let rows = batch.num_rows();
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.name()
            .starts_with(quiver_compiler::columns::HIDDEN_PREFIX)
        {
            continue;
        }
        fields.push(Field::new(
            format!("{qualifier}.{}", f.name()),
            f.data_type().clone(),
            true,
        ));
        cols.push(c.clone());
    }
    if let Some(field) = event_time
        && let Some(c) = batch.column_by_name(field)
    {
        fields.push(Field::new(EVENT_TIME_COLUMN, c.data_type().clone(), true));
        cols.push(c.clone());
    }
    fields.push(Field::new(SOURCE_COLUMN, DataType::Int64, false));
    cols.push(Arc::new(Int64Array::from(vec![source; rows])));
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("renamed columns keep their arrays")
}

/// Marks the FROM stream's rows (`__src` = 0); joined streams' rows already carry theirs.
pub struct TagSourceOp;

impl BatchOperator for TagSourceOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        if batch.column_by_name(SOURCE_COLUMN).is_some() {
            return Some(batch);
        }
        let zeros = Arc::new(Int64Array::from(vec![0; batch.num_rows()]));
        Some(quiver_connectors::codec::json::add_column(
            batch,
            SOURCE_COLUMN,
            zeros,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_compiler::plan::{JoinedStream, StreamJoins};

    /// A window's rows: `left` rows of the FROM stream then `right` rows of stream `b`.
    fn window(left: usize, right: usize) -> RecordBatch {
        let n = left + right;
        let ids: Vec<Option<String>> = (0..n)
            .map(|i| (i < left).then(|| format!("d{}", i % 3)))
            .collect();
        let bids: Vec<Option<String>> = (0..n)
            .map(|i| (i >= left).then(|| format!("d{}", i % 3)))
            .collect();
        let src: Vec<i64> = (0..n).map(|i| i64::from(i >= left)).collect();
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(arrow::array::StringArray::from(ids)) as ArrayRef,
            ),
            (
                "b.id",
                Arc::new(arrow::array::StringArray::from(bids)) as ArrayRef,
            ),
            (SOURCE_COLUMN, Arc::new(Int64Array::from(src)) as ArrayRef),
        ])
        .unwrap()
    }

    fn cross() -> StreamJoins {
        StreamJoins {
            streams: vec![JoinedStream {
                name: "b".into(),
                qualifier: "b".into(),
                schema: None,
            }],
            steps: vec![JoinStep {
                kind: JoinKind::Cross,
                right: 1,
                left_keys: Vec::new(),
                right_keys: Vec::new(),
                residual: None,
            }],
        }
    }

    #[test]
    fn cross_join_pairs_every_row_and_takes_columns_from_their_stream() {
        let metrics = Arc::new(NodeMetrics::default());
        let mut op = JoinStreamsOp::new(cross(), metrics.clone());
        let out = op.process_batch(window(3, 2)).expect("6 pairs");
        assert_eq!(out.num_rows(), 6);
        let a = out.column_by_name("id").unwrap().as_string::<i32>();
        let b = out.column_by_name("b.id").unwrap().as_string::<i32>();
        assert!((0..6).all(|r| a.is_valid(r) && b.is_valid(r)));
        assert_eq!(metrics.exceptions_total(), 0);
    }

    #[test]
    fn a_window_with_too_many_pairs_fails_with_an_exception_instead_of_growing() {
        let metrics = Arc::new(NodeMetrics::default());
        let mut op = JoinStreamsOp::new(cross(), metrics.clone());
        // 2,100 x 2,100 = 4.41 M pairs, over the 4 M bound.
        assert!(op.process_batch(window(2_100, 2_100)).is_none());
        assert_eq!(metrics.exceptions_total(), 4_200);
    }
}
