//! What a window needs, evaluated on the raw rows: row time, group key, arguments.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, SortField};
use quiver_compiler::eval::{EvalContext, true_mask};
use quiver_compiler::expr::{Expr, whole_row};
use quiver_compiler::window::{
    AggregateSpec, BEGIN_COLUMN, Carry, EMIT_COLUMN, KEY_COLUMN, PARTITION_COLUMN, TRIGGER_COLUMN,
    TS_COLUMN, arg_column, row_column,
};

/// Evaluates what a window needs on raw rows, so windows never evaluate SQL: the row time,
/// the encoded GROUP BY key, aggregate arguments, window conditions and the columns the result
/// still reads. Rows failing the window's `FILTER (WHERE ...)` are dropped here.
pub struct Prepare {
    spec: Arc<AggregateSpec>,
    /// `last_hit_*` calls the sliding window's trigger reads (found once, not per batch).
    trigger_hits: Vec<(Arc<quiver_compiler::hit::HitSite>, Expr)>,
}

/// Rows a step dropped because evaluating them failed, with the first reason.
#[derive(Debug, Default)]
pub struct Failures {
    /// How many rows.
    pub rows: usize,
    /// The first reason.
    pub first: Option<String>,
}

impl Failures {
    fn add(&mut self, n: usize, reason: impl FnOnce() -> String) {
        if n > 0 {
            self.rows += n;
            if self.first.is_none() {
                self.first = Some(reason());
            }
        }
    }
}

impl Prepare {
    /// A preparer for `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        let trigger_hits = spec
            .window
            .trigger
            .as_ref()
            .map(quiver_compiler::hit::cached_sites)
            .unwrap_or_default();
        Prepare { spec, trigger_hits }
    }

    /// Prepares a batch whose rows arrived at `time` (used when the batch has no `__ts`
    /// column, i.e. in processing time).
    pub fn prepare(
        &self,
        batch: RecordBatch,
        time: u64,
        failures: &mut Failures,
    ) -> Option<RecordBatch> {
        let mut batch = batch;
        if let Some(filter) = &self.spec.window.filter {
            let mask = condition(filter, &batch, failures, "run Window Filter error")?;
            batch = filter_record_batch(&batch, &mask).ok()?;
            if batch.num_rows() == 0 {
                return None;
            }
        }
        let rows = batch.num_rows();
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut push = |name: &str, col: ArrayRef| {
            fields.push(Field::new(name, col.data_type().clone(), true));
            cols.push(col);
        };
        let ts = match batch.column_by_name(TS_COLUMN) {
            Some(c) => c.clone(),
            None => Arc::new(Int64Array::from(vec![time as i64; rows])) as ArrayRef,
        };
        push(TS_COLUMN, ts);
        let mut ctx = EvalContext::new(rows);
        if !self.spec.keys.is_empty() {
            push(KEY_COLUMN, encode_keys(&self.spec.keys, &batch, &mut ctx)?);
        }
        for (i, call) in self.spec.aggs.iter().enumerate() {
            // Built-in aggregates read their first argument (the others are plan-time
            // constants); a plugin's reads them all.
            let used = if call.custom.is_some() {
                call.args.len()
            } else {
                call.args.len().min(1)
            };
            for (j, arg) in call.args.iter().take(used).enumerate() {
                match arg.eval(&batch, &mut ctx) {
                    Ok(v) => push(&arg_column(i, j), v.into_array(rows)),
                    Err(e) => {
                        failures.add(rows, || format!("run Aggregate error: {e}"));
                        return None;
                    }
                }
            }
            if call.whole_row {
                push(&row_column(i), whole_row(&batch, &[]));
            }
        }
        let w = &self.spec.window;
        if let Some(mask) = self.trigger_mask(&batch, &mut ctx) {
            push(TRIGGER_COLUMN, Arc::new(mask));
        }
        if let Some((begin, emit)) = &w.state {
            push(
                BEGIN_COLUMN,
                Arc::new(condition_lenient(begin, &batch, &mut ctx)),
            );
            push(
                EMIT_COLUMN,
                Arc::new(condition_lenient(emit, &batch, &mut ctx)),
            );
        }
        if !w.partition.is_empty() {
            push(
                PARTITION_COLUMN,
                encode_keys(&w.partition, &batch, &mut ctx)?,
            );
        }
        let schema = batch.schema();
        match &self.spec.carry {
            Carry::All => {
                for (f, c) in schema.fields().iter().zip(batch.columns()) {
                    if f.name() != TS_COLUMN {
                        push(f.name(), c.clone());
                    }
                }
            }
            Carry::Columns(names) => {
                for name in names {
                    if let Some(c) = quiver_compiler::eval::column_by_name(&batch, name) {
                        push(name, c.clone());
                    }
                }
            }
        }
        let out = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .ok()?;
        failures.add(ctx.errors.count(), || {
            format!(
                "run Aggregate error: {}",
                ctx.errors.first().unwrap_or_default()
            )
        });
        match ctx.errors.ok_mask() {
            Some(ok) => filter_record_batch(&out, &ok)
                .ok()
                .filter(|b| b.num_rows() > 0),
            None => Some(out),
        }
    }
}

/// A boolean filter mask from `cond`; rows whose condition fails are counted.
fn condition(
    cond: &Expr,
    batch: &RecordBatch,
    failures: &mut Failures,
    what: &str,
) -> Option<BooleanArray> {
    let rows = batch.num_rows();
    // Evaluated here rather than through `condition_lenient`, whose child context would drop
    // the errors this counts; a failed row is still false, as the lenient rule has it.
    let mut ctx = EvalContext::new(rows);
    let mask = match cond.eval(batch, &mut ctx) {
        Ok(v) => {
            let arr = v.into_array(rows);
            match arr.data_type() {
                DataType::Boolean => true_mask(arr.as_boolean()),
                _ => BooleanArray::from(vec![false; rows]),
            }
        }
        Err(e) => {
            ctx.errors.flag_all(e);
            BooleanArray::from(vec![false; rows])
        }
    };
    failures.add(ctx.errors.count(), || {
        format!("{what}: {}", ctx.errors.first().unwrap_or_default())
    });
    let mask = match ctx.errors.ok_mask() {
        Some(ok) => arrow::compute::and(&mask, &ok).ok()?,
        None => mask,
    };
    Some(mask)
}

impl Prepare {
    /// Which rows trigger a sliding window (`OVER (WHEN ...)`), recording `last_hit_*` hits;
    /// `None` when the window has no WHEN. Also used on a stream join's raw rows, one stream's
    /// rows at a time, the other streams' columns being absent (null).
    pub(crate) fn trigger_mask(
        &self,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
    ) -> Option<BooleanArray> {
        let trigger = self.spec.window.trigger.as_ref()?;
        Some(if self.trigger_hits.is_empty() {
            condition_lenient(trigger, batch, ctx)
        } else {
            quiver_compiler::hit::condition_with_hits(
                trigger,
                &self.trigger_hits,
                batch,
                ctx,
                &condition_lenient,
            )
        })
    }
}

/// A condition as a mask where null, non-boolean and failed values are false (eKuiper's rule
/// for window conditions).
fn condition_lenient(cond: &Expr, batch: &RecordBatch, ctx: &mut EvalContext) -> BooleanArray {
    let rows = batch.num_rows();
    let mut child = ctx.child();
    let mask = match cond.eval(batch, &mut child) {
        Ok(v) => {
            let arr = v.into_array(rows);
            match arr.data_type() {
                DataType::Boolean => true_mask(arr.as_boolean()),
                _ => BooleanArray::from(vec![false; rows]),
            }
        }
        Err(_) => BooleanArray::from(vec![false; rows]),
    };
    match child.errors.ok_mask() {
        Some(ok) => arrow::compute::and(&mask, &ok).unwrap_or(mask),
        None => mask,
    }
}

/// Encodes key expressions into one comparable byte string per row (arrow's row format), the
/// identity of a group.
pub fn encode_keys(keys: &[Expr], batch: &RecordBatch, ctx: &mut EvalContext) -> Option<ArrayRef> {
    let rows = batch.num_rows();
    let mut arrays = Vec::with_capacity(keys.len());
    for k in keys {
        match k.eval(batch, ctx) {
            Ok(v) => arrays.push(v.into_array(rows)),
            Err(e) => {
                ctx.errors.flag_all(e);
                return None;
            }
        }
    }
    if let ([key], [array]) = (keys, arrays.as_slice())
        && key.sql_type() == quiver_compiler::types::SqlType::Known(DataType::Utf8)
        && let Some(strings) = array.as_string_opt::<i32>()
    {
        return Some(string_keys(strings));
    }
    let fields: Vec<SortField> = arrays
        .iter()
        .map(|a| SortField::new(a.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).ok()?;
    let encoded = converter.convert_columns(&arrays).ok()?;
    let mut keys = arrow::array::BinaryBuilder::with_capacity(rows, encoded.size());
    for r in encoded.iter() {
        keys.append_value(r.as_ref());
    }
    let keys: BinaryArray = keys.finish();
    Some(Arc::new(keys))
}

/// Keys of one STRING column (the usual `GROUP BY device`), decided by the plan so every
/// batch of a rule is keyed alike: each value's own bytes, which needs no copy when the
/// column has no nulls, and `0xFF` for null, a byte no UTF-8 string contains.
fn string_keys(strings: &arrow::array::StringArray) -> ArrayRef {
    if strings.null_count() == 0 {
        return Arc::new(BinaryArray::from(strings.clone()));
    }
    let mut keys = arrow::array::BinaryBuilder::with_capacity(
        strings.len(),
        strings.value_data().len() + strings.null_count(),
    );
    for value in strings {
        keys.append_value(value.map_or(&[0xFF][..], str::as_bytes));
    }
    Arc::new(keys.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{aggregate, assert_failures, ints_of, rows};

    const FAILING_FILTER: &str =
        "SELECT v, count(*) AS c FROM s GROUP BY COUNTWINDOW(3) FILTER (WHERE 6 / v > 1)";

    fn prepare(sql: &str, batch: RecordBatch) -> (Option<RecordBatch>, Failures) {
        let mut failures = Failures::default();
        let out = Prepare::new(aggregate(sql)).prepare(batch, 42, &mut failures);
        (out, failures)
    }

    #[test]
    fn rows_without_a_row_time_get_the_time_of_arrival() {
        let (out, _) = prepare(
            "SELECT count(*) AS c FROM s GROUP BY COUNTWINDOW(2)",
            rows(&[("a", 1, 1000), ("b", 2, 2000)]),
        );
        assert_eq!(
            ints_of(&out.expect("both rows"), TS_COLUMN),
            [Some(42), Some(42)]
        );
    }

    #[test]
    fn the_window_filter_drops_rows_before_the_window_sees_them() {
        let (out, failures) = prepare(
            "SELECT v, count(*) AS c FROM s GROUP BY COUNTWINDOW(3) FILTER (WHERE v > 1)",
            rows(&[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)]),
        );
        assert_eq!(ints_of(&out.expect("b and c"), "v"), [Some(2), Some(3)]);
        assert_eq!(failures.rows, 0, "a false condition is no failure");
    }

    #[test]
    fn a_failing_window_filter_drops_its_row() {
        let (out, _) = prepare(FAILING_FILTER, rows(&[("a", 3, 1), ("b", 0, 2)]));
        assert_eq!(ints_of(&out.expect("a"), "v"), [Some(3)]);
    }

    #[test]
    fn a_failing_window_filter_counts_its_row() {
        let (_, failures) = prepare(FAILING_FILTER, rows(&[("a", 3, 1), ("b", 0, 2)]));
        assert_failures(&failures, 1, "run Window Filter error: divided by zero");
    }

    #[test]
    fn state_window_conditions_become_per_row_flags() {
        let (out, _) = prepare(
            "SELECT count(*) AS c FROM s GROUP BY STATEWINDOW(v = 1, v = 3)",
            rows(&[("a", 0, 1), ("a", 1, 2), ("a", 3, 3)]),
        );
        let out = out.expect("every row");
        assert_eq!(ints_of(&out, BEGIN_COLUMN), [Some(0), Some(1), Some(0)]);
        assert_eq!(ints_of(&out, EMIT_COLUMN), [Some(0), Some(0), Some(1)]);
    }
}
