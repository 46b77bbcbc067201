//! The analytic operator: evaluates `lag`, `latest`, `changed_col`, `had_changed` and the
//! `acc_*` functions row by row, with one state per call and `PARTITION BY` key, and appends
//! each call's value as a hidden column.
//!
//! Rows must arrive in order for the results to mean anything, so one worker reads all input
//! of a rule with analytic functions (as it does for event time). When every call of a
//! window-less rule shares one `PARTITION BY`, the rows then spread over the workers by that
//! key, like GROUP BY keys, each key's rows still in order; otherwise the state stays on the
//! reading worker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, NullArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use quiver_compiler::aggregate::{interleave_loose, json_value as value_as_json};
use quiver_compiler::analytic::{AnalyticCall, AnalyticKind, analytic_column};
use quiver_compiler::eval::{EvalContext, present, true_mask};
use quiver_compiler::expr::Expr;
use serde_json::Value;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;
use crate::state::OpState;

/// A value kept in state: one row of some column (a one-element array).
type Cell = ArrayRef;

/// The state of one call for one partition.
#[derive(Default)]
struct State {
    /// `lag`: the last `offset` values (oldest first); `latest`: the last non-null value.
    history: VecDeque<Cell>,
    /// `changed_col` / `had_changed`: the previous values, compared as JSON.
    previous: Vec<Option<Value>>,
    seen: bool,
    /// `acc_*`: running numbers.
    count: i64,
    sum: f64,
    isum: i64,
    any_float: bool,
    best: Option<f64>,
    best_int: Option<i64>,
}

/// The analytic operator of a rule.
pub struct AnalyticOp {
    calls: Vec<AnalyticCall>,
    states: Vec<HashMap<Vec<u8>, State, foldhash::fast::FixedState>>,
    metrics: Arc<NodeMetrics>,
}

impl AnalyticOp {
    /// An operator for `calls`, reporting into `metrics`.
    pub fn new(calls: Vec<AnalyticCall>, metrics: Arc<NodeMetrics>) -> Self {
        let states = calls
            .iter()
            .map(|_| HashMap::with_hasher(foldhash::fast::FixedState::with_seed(7)))
            .collect();
        AnalyticOp {
            calls,
            states,
            metrics,
        }
    }
}

fn one(arr: &ArrayRef, row: usize) -> Cell {
    arr.slice(row, 1)
}

fn null_cell() -> Cell {
    Arc::new(NullArray::new(1))
}

/// Reads a number: (value, is integer).
fn number(arr: &ArrayRef, row: usize) -> Option<(f64, Option<i64>)> {
    if !present(arr.as_ref(), row) {
        return None;
    }
    match arr.data_type() {
        DataType::Int64 => {
            let v = arr.as_primitive::<arrow::datatypes::Int64Type>().value(row);
            Some((v as f64, Some(v)))
        }
        DataType::Float64 => Some((
            arr.as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
            None,
        )),
        t if t.is_integer() => arrow::compute::cast(&arr.slice(row, 1), &DataType::Int64)
            .ok()
            .map(|a| {
                let v = a.as_primitive::<arrow::datatypes::Int64Type>().value(0);
                (v as f64, Some(v))
            }),
        t if t.is_floating() => arrow::compute::cast(&arr.slice(row, 1), &DataType::Float64)
            .ok()
            .map(|a| {
                (
                    a.as_primitive::<arrow::datatypes::Float64Type>().value(0),
                    None,
                )
            }),
        _ => None,
    }
}

impl AnalyticOp {
    fn column(
        &mut self,
        i: usize,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<ArrayRef, String> {
        let rows = batch.num_rows();
        let call = &self.calls[i];
        let eval = |e: &Expr, ctx: &mut EvalContext| -> Result<ArrayRef, String> {
            Ok(e.eval(batch, ctx)?.into_array(rows))
        };
        let args: Vec<ArrayRef> = call
            .args
            .iter()
            .map(|a| eval(a, ctx))
            .collect::<Result<_, _>>()?;
        let when: Option<BooleanArray> = match &call.when {
            Some(w) => {
                let v = eval(w, ctx)?;
                Some(match v.data_type() {
                    DataType::Boolean => true_mask(v.as_boolean()),
                    _ => BooleanArray::from(vec![false; rows]),
                })
            }
            None => None,
        };
        let keys: Option<arrow::array::BinaryArray> = if call.partition.is_empty() {
            None
        } else {
            let arrays: Vec<ArrayRef> = call
                .partition
                .iter()
                .map(|e| eval(e, ctx))
                .collect::<Result<_, _>>()?;
            let fields = arrays
                .iter()
                .map(|a| arrow::row::SortField::new(a.data_type().clone()))
                .collect();
            let converter = arrow::row::RowConverter::new(fields).map_err(|e| e.to_string())?;
            let encoded = converter
                .convert_columns(&arrays)
                .map_err(|e| e.to_string())?;
            let mut b = arrow::array::BinaryBuilder::new();
            for r in encoded.iter() {
                b.append_value(r.as_ref());
            }
            Some(b.finish())
        };
        if call.kind == AnalyticKind::ChangedCols {
            let ignore_null = matches!(
                call.args.get(1),
                Some(Expr::Literal(quiver_compiler::eval::Literal::Bool(true)))
            );
            return Ok(changed_cols(
                &mut self.states[i],
                &call.names,
                &args[2..],
                keys.as_ref(),
                when.as_ref(),
                ignore_null,
                rows,
            ));
        }
        let flag = |e: Option<&Expr>| {
            matches!(
                e,
                Some(Expr::Literal(quiver_compiler::eval::Literal::Bool(true)))
            )
        };
        let kind = call.kind;
        let ignore_null = match kind {
            // eKuiper's lag ignores nulls unless its fourth argument says false
            // (`binder/function/funcs_analytic.go`): a null leaves the history as it was.
            AnalyticKind::Lag => call.args.get(3).is_none_or(|e| flag(Some(e))),
            AnalyticKind::ChangedCol | AnalyticKind::HadChanged => flag(call.args.first()),
            _ => false,
        };
        let offset = match call.args.get(1) {
            Some(Expr::Literal(quiver_compiler::eval::Literal::Int(n)))
                if kind == AnalyticKind::Lag =>
            {
                (*n).max(1) as usize
            }
            _ => 1,
        };
        let states = &mut self.states[i];
        let mut cells: Vec<Cell> = Vec::with_capacity(rows);
        let mut bools: Vec<Option<bool>> = Vec::new();
        let mut ints: Vec<Option<i64>> = Vec::new();
        let mut floats: Vec<Option<f64>> = Vec::new();
        let mut float_out = false;
        for r in 0..rows {
            let key = keys.as_ref().map_or(&[][..], |k| k.value(r));
            let valid = when.as_ref().is_none_or(|w| w.value(r));
            let state = match states.get_mut(key) {
                Some(s) => s,
                None => states.entry(key.to_vec()).or_default(),
            };
            match kind {
                AnalyticKind::Lag => {
                    let value = &args[0];
                    let out = if state.history.len() >= offset {
                        state.history[state.history.len() - offset].clone()
                    } else {
                        args.get(2).map_or_else(null_cell, |d| one(d, r))
                    };
                    cells.push(out);
                    if valid && (!ignore_null || present(value.as_ref(), r)) {
                        state.history.push_back(one(value, r));
                        while state.history.len() > offset {
                            state.history.pop_front();
                        }
                    }
                }
                AnalyticKind::Latest => {
                    let value = &args[0];
                    if valid && present(value.as_ref(), r) {
                        state.history.clear();
                        state.history.push_back(one(value, r));
                    }
                    cells.push(match state.history.back() {
                        Some(c) => c.clone(),
                        None => args.get(1).map_or_else(null_cell, |d| one(d, r)),
                    });
                }
                AnalyticKind::ChangedCol => {
                    let value = &args[1];
                    let now = value_as_json(value.as_ref(), r);
                    let changed = valid
                        && !(ignore_null && now.is_none())
                        && (!state.seen || state.previous.first() != Some(&now));
                    if changed {
                        state.seen = true;
                        state.previous = vec![now];
                        cells.push(one(value, r));
                    } else {
                        cells.push(null_cell());
                    }
                }
                AnalyticKind::HadChanged => {
                    let now: Vec<Option<Value>> = args[1..]
                        .iter()
                        .map(|a| value_as_json(a.as_ref(), r))
                        .collect();
                    let mut changed = false;
                    if valid {
                        if state.previous.len() != now.len() {
                            state.previous = vec![None; now.len()];
                        }
                        for (k, v) in now.into_iter().enumerate() {
                            if ignore_null && v.is_none() {
                                continue;
                            }
                            if !state.seen || state.previous[k] != v {
                                changed = true;
                            }
                            state.previous[k] = v;
                        }
                        if changed {
                            state.seen = true;
                        }
                    }
                    bools.push(Some(changed));
                }
                AnalyticKind::AccCount => {
                    if valid && present(args[0].as_ref(), r) {
                        state.count += 1;
                    }
                    ints.push(Some(state.count));
                }
                AnalyticKind::AccSum | AnalyticKind::AccAvg => {
                    if valid && let Some((f, i)) = number(&args[0], r) {
                        state.count += 1;
                        match i {
                            Some(i) => state.isum = state.isum.wrapping_add(i),
                            None => {
                                state.sum += f;
                                state.any_float = true;
                            }
                        }
                    }
                    let total = state.sum + state.isum as f64;
                    if kind == AnalyticKind::AccAvg {
                        float_out = true;
                        floats.push((state.count > 0).then(|| total / state.count as f64));
                    } else {
                        float_out |= state.any_float;
                        floats.push((state.count > 0).then_some(total));
                        ints.push((state.count > 0).then_some(state.isum));
                    }
                }
                AnalyticKind::ChangedCols => unreachable!("handled above"),
                AnalyticKind::AccMin | AnalyticKind::AccMax => {
                    let max = kind == AnalyticKind::AccMax;
                    if valid && let Some((f, i)) = number(&args[0], r) {
                        let better = state.best.is_none_or(|b| if max { f > b } else { f < b });
                        if better {
                            state.best = Some(f);
                            state.best_int = i;
                        }
                        if i.is_none() {
                            state.any_float = true;
                        }
                    }
                    float_out |= state.any_float;
                    floats.push(state.best);
                    ints.push(state.best_int.or(state.best.map(|b| b as i64)));
                }
            }
        }
        Ok(match kind {
            AnalyticKind::Lag | AnalyticKind::Latest | AnalyticKind::ChangedCol => {
                let positions: Vec<(u32, u32)> = (0..cells.len() as u32).map(|i| (i, 0)).collect();
                interleave_loose(&cells, &positions)
            }
            AnalyticKind::HadChanged => Arc::new(BooleanArray::from(bools)),
            AnalyticKind::ChangedCols => unreachable!("handled above"),
            AnalyticKind::AccCount => Arc::new(Int64Array::from(ints)),
            _ if float_out || ints.is_empty() => Arc::new(Float64Array::from(floats)),
            _ => Arc::new(Int64Array::from(ints)),
        })
    }
}

/// `changed_cols`: per row, a struct with one field per watched column holding its value when
/// it changed since the partition's last valid row, else null.
fn changed_cols(
    states: &mut HashMap<Vec<u8>, State, foldhash::fast::FixedState>,
    names: &[String],
    cols: &[ArrayRef],
    keys: Option<&arrow::array::BinaryArray>,
    when: Option<&BooleanArray>,
    ignore_null: bool,
    rows: usize,
) -> ArrayRef {
    let mut cells: Vec<Vec<Cell>> = vec![Vec::with_capacity(rows); cols.len()];
    for r in 0..rows {
        let key = keys.map_or(&[][..], |k| k.value(r));
        let valid = when.is_none_or(|w| w.value(r));
        let state = match states.get_mut(key) {
            Some(s) => s,
            None => states.entry(key.to_vec()).or_default(),
        };
        if state.previous.len() != cols.len() {
            state.previous = vec![None; cols.len()];
        }
        for (k, col) in cols.iter().enumerate() {
            let now = value_as_json(col.as_ref(), r);
            let changed = valid
                && !(ignore_null && now.is_none())
                && (!state.seen || state.previous[k] != now);
            if changed {
                cells[k].push(one(col, r));
                state.previous[k] = now;
            } else {
                cells[k].push(null_cell());
            }
        }
        if valid {
            state.seen = true;
        }
    }
    let positions: Vec<(u32, u32)> = (0..rows as u32).map(|i| (i, 0)).collect();
    let (fields, arrays): (Vec<_>, Vec<_>) = names
        .iter()
        .zip(cells)
        .map(|(name, cells)| {
            let arr = interleave_loose(&cells, &positions);
            (
                arrow::datatypes::Field::new(name, arr.data_type().clone(), true),
                arr,
            )
        })
        .unzip();
    if fields.is_empty() {
        return Arc::new(arrow::array::StructArray::new_empty_fields(rows, None));
    }
    Arc::new(arrow::array::StructArray::new(
        arrow::datatypes::Fields::from(fields),
        arrays,
        None,
    ))
}

impl BatchOperator for AnalyticOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let mut out = batch;
        for i in 0..self.calls.len() {
            match self.column(i, &out, &mut ctx) {
                Ok(col) => {
                    out = quiver_connectors::codec::json::add_column(out, &analytic_column(i), col);
                }
                Err(e) => {
                    self.metrics
                        .exceptions(rows, &format!("run Analytic error: {e}"));
                    self.metrics.batch(rows, 0, started);
                    return None;
                }
            }
        }
        let failed = ctx.errors.count();
        if failed > 0 {
            self.metrics.exceptions(
                failed,
                &format!(
                    "run Analytic error: {}",
                    ctx.errors.first().unwrap_or_default()
                ),
            );
        }
        let out = match ctx.errors.ok_mask() {
            Some(ok) => arrow::compute::filter_record_batch(&out, &ok).ok()?,
            None => out,
        };
        self.metrics.batch(rows, out.num_rows(), started);
        Some(out).filter(|b| b.num_rows() > 0)
    }

    /// Per call, one row per partition: its key and running values (batch `call.<i>`), and
    /// the values `lag`/`latest` hold (arrays `call.<i>.history`, exact types).
    fn save(&self) -> Result<Option<OpState>, String> {
        let mut state = OpState::default();
        for (i, states) in self.states.iter().enumerate() {
            let mut parts: Vec<(&Vec<u8>, &State)> = states.iter().collect();
            parts.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let previous: Vec<String> = parts
                .iter()
                .map(|(_, s)| {
                    let wrapped: Vec<Value> = s
                        .previous
                        .iter()
                        .map(|v| Value::Array(v.iter().cloned().collect()))
                        .collect();
                    Value::Array(wrapped).to_string()
                })
                .collect();
            let st = || parts.iter().map(|p| p.1);
            let columns: Vec<(&str, ArrayRef)> = vec![
                (
                    "key",
                    Arc::new(arrow::array::BinaryArray::from_iter_values(
                        parts.iter().map(|p| p.0),
                    )),
                ),
                (
                    "seen",
                    Arc::new(BooleanArray::from_iter(st().map(|s| Some(s.seen)))),
                ),
                (
                    "count",
                    Arc::new(Int64Array::from_iter_values(st().map(|s| s.count))),
                ),
                (
                    "sum",
                    Arc::new(Float64Array::from_iter_values(st().map(|s| s.sum))),
                ),
                (
                    "isum",
                    Arc::new(Int64Array::from_iter_values(st().map(|s| s.isum))),
                ),
                (
                    "any_float",
                    Arc::new(BooleanArray::from_iter(st().map(|s| Some(s.any_float)))),
                ),
                (
                    "best",
                    Arc::new(Float64Array::from_iter(st().map(|s| s.best))),
                ),
                (
                    "best_int",
                    Arc::new(Int64Array::from_iter(st().map(|s| s.best_int))),
                ),
                (
                    "history_len",
                    Arc::new(Int64Array::from_iter_values(
                        st().map(|s| s.history.len() as i64),
                    )),
                ),
                (
                    "previous",
                    Arc::new(arrow::array::StringArray::from(previous)),
                ),
            ];
            let batch = RecordBatch::try_from_iter(columns).map_err(|e| e.to_string())?;
            state.push_batch(format!("call.{i}"), batch);
            let cells: Vec<Cell> = parts
                .iter()
                .flat_map(|(_, s)| s.history.iter().cloned())
                .collect();
            state.push_arrays(&format!("call.{i}.history"), &cells)?;
        }
        Ok(Some(state))
    }

    fn load(&mut self, state: &OpState) -> Result<(), String> {
        for (i, states) in self.states.iter_mut().enumerate() {
            let batch = state.need_batch(&format!("call.{i}"))?;
            let mut cells = state.arrays(&format!("call.{i}.history"))?.into_iter();
            let bad = || format!("analytic state: bad columns for call {i}");
            let get = |name: &str| batch.column_by_name(name).ok_or_else(bad);
            let keys = get("key")?.as_binary_opt::<i32>().ok_or_else(bad)?;
            let boolean = |name: &str| -> Result<BooleanArray, String> {
                get(name)?.as_boolean_opt().cloned().ok_or_else(bad)
            };
            let int = |name: &str| -> Result<Int64Array, String> {
                get(name)?
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
                    .cloned()
                    .ok_or_else(bad)
            };
            let float = |name: &str| -> Result<Float64Array, String> {
                get(name)?
                    .as_primitive_opt::<arrow::datatypes::Float64Type>()
                    .cloned()
                    .ok_or_else(bad)
            };
            let (seen, any_float) = (boolean("seen")?, boolean("any_float")?);
            let (count, isum, best_int, history_len) = (
                int("count")?,
                int("isum")?,
                int("best_int")?,
                int("history_len")?,
            );
            let (sum, best) = (float("sum")?, float("best")?);
            let previous = get("previous")?.as_string_opt::<i32>().ok_or_else(bad)?;
            states.clear();
            for r in 0..batch.num_rows() {
                let wrapped: Vec<Vec<Value>> =
                    serde_json::from_str(previous.value(r)).map_err(|e| e.to_string())?;
                let history: VecDeque<Cell> =
                    cells.by_ref().take(history_len.value(r) as usize).collect();
                if history.len() != history_len.value(r) as usize {
                    return Err(bad());
                }
                let part = State {
                    history,
                    previous: wrapped.into_iter().map(|v| v.into_iter().next()).collect(),
                    seen: seen.value(r),
                    count: count.value(r),
                    sum: sum.value(r),
                    isum: isum.value(r),
                    any_float: any_float.value(r),
                    best: best.is_valid(r).then(|| best.value(r)),
                    best_int: best_int.is_valid(r).then(|| best_int.value(r)),
                };
                states.insert(keys.value(r).to_vec(), part);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        analytic_calls, assert_drops_the_failing_row, batch, divide_by_zero_once, ints, ints_of,
        metrics, rows, strings,
    };

    fn analytic(select: &str, metrics: Arc<NodeMetrics>) -> AnalyticOp {
        AnalyticOp::new(analytic_calls(&format!("SELECT {select} FROM s")), metrics)
    }

    #[test]
    fn lag_keeps_each_partitions_previous_value_across_batches() {
        let mut op = analytic("k, lag(v) OVER (PARTITION BY k) AS p", metrics());
        let first = op
            .process_batch(rows(&[("a", 1, 1), ("b", 2, 2), ("a", 3, 3)]))
            .expect("rows");
        assert_eq!(ints_of(&first, "__an_0"), [None, None, Some(1)]);
        let second = op
            .process_batch(rows(&[("b", 4, 4), ("a", 5, 5)]))
            .expect("rows");
        assert_eq!(ints_of(&second, "__an_0"), [Some(2), Some(3)]);
    }

    #[test]
    fn lag_with_an_offset_and_a_default() {
        let mut op = analytic("lag(v, 2, 0) AS p", metrics());
        let out = op
            .process_batch(rows(&[("a", 1, 1), ("a", 2, 2), ("b", 3, 3), ("b", 4, 4)]))
            .expect("rows");
        assert_eq!(
            ints_of(&out, "__an_0"),
            [Some(0), Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn lag_skips_nulls_unless_its_fourth_argument_is_false() {
        let input = || {
            batch(vec![
                ("k", strings(&[Some("a"), Some("b"), Some("c")])),
                ("v", ints(&[Some(1), None, Some(3)])),
            ])
        };
        // eKuiper's default: the null of b leaves the history at a's 1.
        let mut op = analytic("lag(v) AS p", metrics());
        let out = op.process_batch(input()).expect("rows");
        assert_eq!(ints_of(&out, "__an_0"), [None, Some(1), Some(1)]);
        let mut op = analytic("lag(v, 1, 0, false) AS p", metrics());
        let out = op.process_batch(input()).expect("rows");
        assert_eq!(ints_of(&out, "__an_0"), [Some(0), Some(1), None]);
    }

    #[test]
    fn running_sums_and_counts_per_partition_add_up_across_batches() {
        let mut op = analytic(
            "acc_sum(v) OVER (PARTITION BY k) AS total, acc_count(v) AS n",
            metrics(),
        );
        let first = op
            .process_batch(rows(&[("a", 1, 1), ("a", 2, 2), ("b", 10, 3)]))
            .expect("rows");
        assert_eq!(ints_of(&first, "__an_0"), [Some(1), Some(3), Some(10)]);
        assert_eq!(ints_of(&first, "__an_1"), [Some(1), Some(2), Some(3)]);
        let second = op.process_batch(rows(&[("a", 4, 4)])).expect("rows");
        assert_eq!(ints_of(&second, "__an_0"), [Some(7)]);
        assert_eq!(ints_of(&second, "__an_1"), [Some(4)]);
    }

    #[test]
    fn a_failing_row_is_dropped_and_counted_with_ekuipers_message() {
        let m = metrics();
        let mut op = analytic("k, lag(6 / v) AS p", m.clone());
        assert_drops_the_failing_row(&mut op, &m, "run Analytic error: divided by zero");
    }

    #[test]
    fn a_failing_row_leaves_the_state_alone() {
        let mut op = analytic("k, lag(6 / v) AS p", metrics());
        let out = divide_by_zero_once(&mut op);
        // eKuiper does not call lag on a row whose argument failed: c sees a's value. The
        // failed argument is null here, which lag's default ignoreNull skips (issue 22).
        assert_eq!(ints_of(&out, "__an_0"), [None, Some(2)]);
    }

    /// Every analytic function, partitioned and not, over integers, floats and text.
    const ALL: &str = "k, lag(v) AS l, lag(k, 2, 'none') OVER (PARTITION BY k) AS l2, \
        latest(v * 0.1) AS lt, changed_col(true, v) OVER (PARTITION BY k) AS cc, \
        had_changed(true, v) AS hc, changed_cols('c_', true, k, v), \
        acc_count(v) OVER (PARTITION BY k) AS n, acc_sum(v * 0.1) AS fs, acc_sum(v) AS s, \
        acc_avg(v) OVER (PARTITION BY k) AS a, acc_max(v) AS mx, acc_min(v * 0.3) AS mn";

    #[test]
    fn a_restored_operator_goes_on_as_if_it_never_stopped() {
        let batches: Vec<RecordBatch> = (0..8i64)
            .map(|i| {
                let r: Vec<(&str, i64, i64)> = (0..3)
                    .map(|j| (["a", "b", "c"][((i + j) % 3) as usize], (i * 5 + j) % 4, i))
                    .collect();
                rows(&r)
            })
            .collect();
        for cut in 0..=batches.len() {
            let mut a = analytic(ALL, metrics());
            let mut b = analytic(ALL, metrics());
            for batch in &batches[..cut] {
                a.process_batch(batch.clone());
                b.process_batch(batch.clone());
            }
            let bytes = b.save().unwrap().expect("state").encode().unwrap();
            let mut c = analytic(ALL, metrics());
            c.load(&OpState::decode(&bytes).unwrap()).unwrap();
            for (i, batch) in batches[cut..].iter().enumerate() {
                let expected = a.process_batch(batch.clone());
                let got = c.process_batch(batch.clone());
                assert_eq!(got, expected, "cut {cut}, batch {i}");
            }
        }
    }
}
