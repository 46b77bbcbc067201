//! Executable aggregates: one accumulator per aggregate call and window, updated a batch at a
//! time with the group index of every row.
//!
//! sum, count, avg, min, max, var and stddev keep O(1) state per group. The others (collect,
//! last_value, merge_agg, deduplicate, median, percentiles) keep, per group, the positions of
//! their rows in the argument column they need — never whole rows — and build the result when
//! the window closes.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, NullArray,
    StringArray, UInt64Array, new_empty_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, UInt64Type};
use serde_json::Value;

use crate::eval::present;
use crate::functions::{json_to_array, value_to_json};
use crate::window::{AggCall, AggKind};

/// The state of one aggregate call over the groups of one window.
pub trait Accumulator: Send {
    /// Adds the rows of a batch: `groups[i]` is row i's group, `args` the call's argument
    /// columns for the batch. Returns the number of rows whose value could not be used.
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize;
    /// The result, one value per group.
    fn finish(&mut self, n_groups: usize) -> ArrayRef;
    /// The state (what a checkpoint writes), as columns of `n_groups` values each: running
    /// sums and moments rather than results, so that a restored accumulator finishes to the
    /// very same values.
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String>;
    /// Replaces the state with one [`Accumulator::save`] wrote for the same call.
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String>;
}

/// A fresh accumulator for `call`.
pub fn accumulator(call: &AggCall) -> Box<dyn Accumulator> {
    let flag = |i: usize| match call.args.get(i) {
        Some(crate::expr::Expr::Literal(crate::eval::Literal::Bool(b))) => *b,
        _ => false,
    };
    let fraction = match call.args.get(1) {
        Some(crate::expr::Expr::Literal(crate::eval::Literal::Float(p))) => *p,
        Some(crate::expr::Expr::Literal(crate::eval::Literal::Int(p))) => *p as f64,
        _ => 0.5,
    };
    if let Some(func) = &call.custom {
        return Box::new(Custom {
            func: func.clone(),
            columns: vec![Vec::new(); call.args.len()],
            rows: Vec::new(),
        });
    }
    match call.kind {
        AggKind::Count => Box::new(Count {
            star: call.args.is_empty(),
            counts: Vec::new(),
        }),
        AggKind::Sum => Box::new(Sum::default()),
        AggKind::Avg => Box::new(Avg::default()),
        AggKind::Max => Box::new(Extreme::new(true)),
        AggKind::Min => Box::new(Extreme::new(false)),
        AggKind::Var => Box::new(Moments::new(false, false)),
        AggKind::Vars => Box::new(Moments::new(true, false)),
        AggKind::Stddev => Box::new(Moments::new(false, true)),
        AggKind::Stddevs => Box::new(Moments::new(true, true)),
        kind => Box::new(Buffered::new(kind, flag(1), fraction)),
    }
}

fn grow<T: Clone>(v: &mut Vec<T>, n: usize, init: T) {
    if v.len() < n {
        v.resize(n, init);
    }
}

/// `count(*)` (rows per group) and `count(x)` (non-null values per group).
#[derive(Default)]
struct Count {
    /// `count(*)`: every row counts.
    star: bool,
    counts: Vec<i64>,
}

impl Accumulator for Count {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        grow(&mut self.counts, n_groups, 0);
        let arr = args.first().filter(|_| !self.star);
        if arr.is_some_and(|a| a.data_type() == &DataType::Null) {
            return 0;
        }
        match arr.filter(|a| a.null_count() > 0) {
            None => {
                for &g in groups {
                    self.counts[g as usize] += 1;
                }
            }
            Some(arr) => {
                for (i, &g) in groups.iter().enumerate() {
                    if arr.is_valid(i) {
                        self.counts[g as usize] += 1;
                    }
                }
            }
        }
        0
    }
    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        grow(&mut self.counts, n_groups, 0);
        Arc::new(Int64Array::from(std::mem::take(&mut self.counts)))
    }
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        let counts = padded(&self.counts, n_groups, 0);
        Ok(vec![Arc::new(Int64Array::from(counts))])
    }
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        self.counts = ints_at(state, 0)?;
        Ok(())
    }
}

/// Calls `f(row, value)` for each present numeric value of `arr`; returns rows that held a
/// value that is not a number.
fn for_each_number(arr: &ArrayRef, mut f: impl FnMut(usize, Num)) -> usize {
    match arr.data_type() {
        DataType::Null => 0,
        DataType::Int64 => {
            let a = arr.as_primitive::<Int64Type>();
            if a.null_count() == 0 {
                for (i, v) in a.values().iter().enumerate() {
                    f(i, Num::Int(*v));
                }
            } else {
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        f(i, Num::Int(a.value(i)));
                    }
                }
            }
            0
        }
        DataType::Float64 => {
            let a = arr.as_primitive::<Float64Type>();
            if a.null_count() == 0 {
                for (i, v) in a.values().iter().enumerate() {
                    f(i, Num::Float(*v));
                }
            } else {
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        f(i, Num::Float(a.value(i)));
                    }
                }
            }
            0
        }
        t if t.is_integer() => match arrow::compute::cast(arr, &DataType::Int64) {
            Ok(c) => for_each_number(&c, f),
            Err(_) => arr.len() - arr.null_count(),
        },
        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            match arrow::compute::cast(arr, &DataType::Float64) {
                Ok(c) => for_each_number(&c, f),
                Err(_) => arr.len() - arr.null_count(),
            }
        }
        _ => arr.len() - arr.null_count(),
    }
}

/// A numeric value as read from a column.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// `sum(x)`: integers stay integers until a float joins (eKuiper's typing).
#[derive(Default)]
struct Sum {
    ints: Vec<i64>,
    floats: Vec<f64>,
    seen: Vec<bool>,
    any_float: bool,
}

impl Accumulator for Sum {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        grow(&mut self.ints, n_groups, 0);
        grow(&mut self.floats, n_groups, 0.0);
        grow(&mut self.seen, n_groups, false);
        let (ints, floats, seen) = (&mut self.ints, &mut self.floats, &mut self.seen);
        let mut any_float = false;
        let bad = for_each_number(&args[0], |i, v| {
            let g = groups[i] as usize;
            seen[g] = true;
            match v {
                Num::Int(x) => ints[g] = ints[g].wrapping_add(x),
                Num::Float(x) => {
                    floats[g] += x;
                    any_float = true;
                }
            }
        });
        self.any_float |= any_float;
        bad
    }
    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        grow(&mut self.ints, n_groups, 0);
        grow(&mut self.floats, n_groups, 0.0);
        grow(&mut self.seen, n_groups, false);
        if self.any_float {
            Arc::new(Float64Array::from_iter((0..n_groups).map(|g| {
                self.seen[g].then(|| self.floats[g] + self.ints[g] as f64)
            })))
        } else {
            Arc::new(Int64Array::from_iter(
                (0..n_groups).map(|g| self.seen[g].then_some(self.ints[g])),
            ))
        }
    }
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        Ok(vec![
            Arc::new(Int64Array::from(padded(&self.ints, n_groups, 0))),
            Arc::new(Float64Array::from(padded(&self.floats, n_groups, 0.0))),
            Arc::new(BooleanArray::from(padded(&self.seen, n_groups, false))),
            flag_column(self.any_float, n_groups),
        ])
    }
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        self.ints = ints_at(state, 0)?;
        self.floats = floats_at(state, 1)?;
        self.seen = bools_at(state, 2)?;
        self.any_float = flag_at(state, 3)?;
        Ok(())
    }
}

/// `avg(x)`: sum and count. Like eKuiper, integers average with integer (truncating)
/// division unless a float took part.
#[derive(Default)]
struct Avg {
    sums: Vec<f64>,
    isums: Vec<i64>,
    counts: Vec<u64>,
    any_float: bool,
}

impl Accumulator for Avg {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        grow(&mut self.sums, n_groups, 0.0);
        grow(&mut self.isums, n_groups, 0);
        grow(&mut self.counts, n_groups, 0);
        let (sums, isums, counts) = (&mut self.sums, &mut self.isums, &mut self.counts);
        let mut any_float = false;
        let bad = for_each_number(&args[0], |i, v| {
            let g = groups[i] as usize;
            match v {
                Num::Int(x) => isums[g] = isums[g].wrapping_add(x),
                Num::Float(x) => {
                    sums[g] += x;
                    any_float = true;
                }
            }
            counts[g] += 1;
        });
        self.any_float |= any_float;
        bad
    }
    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        grow(&mut self.sums, n_groups, 0.0);
        grow(&mut self.isums, n_groups, 0);
        grow(&mut self.counts, n_groups, 0);
        if !self.any_float {
            return Arc::new(Int64Array::from_iter((0..n_groups).map(|g| {
                (self.counts[g] > 0).then(|| self.isums[g] / self.counts[g] as i64)
            })));
        }
        Arc::new(Float64Array::from_iter((0..n_groups).map(|g| {
            (self.counts[g] > 0)
                .then(|| (self.sums[g] + self.isums[g] as f64) / self.counts[g] as f64)
        })))
    }
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        Ok(vec![
            Arc::new(Float64Array::from(padded(&self.sums, n_groups, 0.0))),
            Arc::new(Int64Array::from(padded(&self.isums, n_groups, 0))),
            Arc::new(UInt64Array::from(padded(&self.counts, n_groups, 0))),
            flag_column(self.any_float, n_groups),
        ])
    }
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        self.sums = floats_at(state, 0)?;
        self.isums = ints_at(state, 1)?;
        self.counts = column_at::<UInt64Type>(state, 2)?.values().to_vec();
        self.any_float = flag_at(state, 3)?;
        Ok(())
    }
}

/// The best value so far of a max/min group.
#[derive(Debug, Clone, PartialEq)]
enum Best {
    None,
    Int(i64),
    Float(f64),
    Str(String),
}

/// `max(x)` / `min(x)` over numbers or strings.
struct Extreme {
    max: bool,
    best: Vec<Best>,
}

impl Extreme {
    fn new(max: bool) -> Self {
        Extreme {
            max,
            best: Vec::new(),
        }
    }

    fn offer_num(&mut self, g: usize, v: Num) {
        let better = |a: f64, b: f64, max: bool| if max { a > b } else { a < b };
        let max = self.max;
        let slot = &mut self.best[g];
        *slot = match (&*slot, v) {
            (Best::None, Num::Int(x)) => Best::Int(x),
            (Best::None, Num::Float(x)) => Best::Float(x),
            (Best::Int(b), Num::Int(x)) => {
                Best::Int(if (x > *b) == max && x != *b { x } else { *b })
            }
            (Best::Int(b), Num::Float(x)) => {
                if better(x, *b as f64, max) {
                    Best::Float(x)
                } else {
                    Best::Float(*b as f64)
                }
            }
            (Best::Float(b), v) => {
                let x = v.f64();
                Best::Float(if better(x, *b, max) { x } else { *b })
            }
            // A number after strings: eKuiper compares like types only; keep the string.
            (Best::Str(_), _) => return,
        };
    }
}

impl Accumulator for Extreme {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        grow(&mut self.best, n_groups, Best::None);
        let arr = &args[0];
        match arr.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let Ok(s) = arrow::compute::cast(arr, &DataType::Utf8) else {
                    return 0;
                };
                let s = s.as_string::<i32>();
                for (i, &g) in groups.iter().enumerate() {
                    if !s.is_valid(i) {
                        continue;
                    }
                    let v = s.value(i);
                    let slot = &mut self.best[g as usize];
                    let replace = match slot {
                        Best::None => true,
                        Best::Str(b) => {
                            if self.max {
                                v > b.as_str()
                            } else {
                                v < b.as_str()
                            }
                        }
                        _ => false,
                    };
                    if replace {
                        *slot = Best::Str(v.to_string());
                    }
                }
                0
            }
            _ => {
                let mut updates = Vec::new();
                let bad = for_each_number(arr, |i, v| updates.push((groups[i] as usize, v)));
                for (g, v) in updates {
                    self.offer_num(g, v);
                }
                bad
            }
        }
    }
    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        grow(&mut self.best, n_groups, Best::None);
        let best = std::mem::take(&mut self.best);
        if best.iter().any(|b| matches!(b, Best::Str(_))) {
            return Arc::new(StringArray::from_iter(best.into_iter().map(|b| match b {
                Best::Str(s) => Some(s),
                Best::Int(i) => Some(i.to_string()),
                Best::Float(f) => Some(crate::functions::format_float(f)),
                Best::None => None,
            })));
        }
        if best.iter().any(|b| matches!(b, Best::Float(_))) {
            return Arc::new(Float64Array::from_iter(best.into_iter().map(|b| match b {
                Best::Int(i) => Some(i as f64),
                Best::Float(f) => Some(f),
                _ => None,
            })));
        }
        Arc::new(Int64Array::from_iter(best.into_iter().map(|b| match b {
            Best::Int(i) => Some(i),
            _ => None,
        })))
    }
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        let best = padded(&self.best, n_groups, Best::None);
        let ints = best.iter().map(|b| match b {
            Best::Int(i) => Some(*i),
            _ => None,
        });
        let floats = best.iter().map(|b| match b {
            Best::Float(f) => Some(*f),
            _ => None,
        });
        let strs = best.iter().map(|b| match b {
            Best::Str(s) => Some(s.as_str()),
            _ => None,
        });
        Ok(vec![
            Arc::new(Int64Array::from_iter(ints)),
            Arc::new(Float64Array::from_iter(floats)),
            Arc::new(StringArray::from_iter(strs)),
        ])
    }
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        let ints = column_at::<Int64Type>(state, 0)?;
        let floats = column_at::<Float64Type>(state, 1)?;
        let strs = state
            .get(2)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or("aggregate state: column 2 is not text")?;
        if ints.len() != floats.len() || ints.len() != strs.len() {
            return Err("aggregate state: columns of different lengths".into());
        }
        self.best = (0..ints.len())
            .map(|g| {
                if ints.is_valid(g) {
                    Best::Int(ints.value(g))
                } else if floats.is_valid(g) {
                    Best::Float(floats.value(g))
                } else if strs.is_valid(g) {
                    Best::Str(strs.value(g).to_string())
                } else {
                    Best::None
                }
            })
            .collect();
        Ok(())
    }
}

/// Variance and standard deviation by Welford's method (stable, O(1) per group).
struct Moments {
    sample: bool,
    sqrt: bool,
    n: Vec<u64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(sample: bool, sqrt: bool) -> Self {
        Moments {
            sample,
            sqrt,
            n: Vec::new(),
            mean: Vec::new(),
            m2: Vec::new(),
        }
    }
}

impl Accumulator for Moments {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        grow(&mut self.n, n_groups, 0);
        grow(&mut self.mean, n_groups, 0.0);
        grow(&mut self.m2, n_groups, 0.0);
        let (n, mean, m2) = (&mut self.n, &mut self.mean, &mut self.m2);
        for_each_number(&args[0], |i, v| {
            let g = groups[i] as usize;
            let x = v.f64();
            n[g] += 1;
            let d = x - mean[g];
            mean[g] += d / n[g] as f64;
            m2[g] += d * (x - mean[g]);
        })
    }
    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        grow(&mut self.n, n_groups, 0);
        grow(&mut self.mean, n_groups, 0.0);
        grow(&mut self.m2, n_groups, 0.0);
        Arc::new(Float64Array::from_iter((0..n_groups).map(|g| {
            let n = self.n[g];
            let denom = if self.sample { n.saturating_sub(1) } else { n };
            if denom == 0 {
                // eKuiper divides 0 by 0 here (NaN, which JSON cannot carry): no value.
                return None;
            }
            let var = self.m2[g] / denom as f64;
            Some(if self.sqrt { var.sqrt() } else { var })
        })))
    }
    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        Ok(vec![
            Arc::new(UInt64Array::from(padded(&self.n, n_groups, 0))),
            Arc::new(Float64Array::from(padded(&self.mean, n_groups, 0.0))),
            Arc::new(Float64Array::from(padded(&self.m2, n_groups, 0.0))),
        ])
    }
    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        self.n = column_at::<UInt64Type>(state, 0)?.values().to_vec();
        self.mean = floats_at(state, 1)?;
        self.m2 = floats_at(state, 2)?;
        Ok(())
    }
}

/// Aggregates that need every value of the group: the argument columns of the window's
/// batches and, per group, the (batch, row) positions of its rows in arrival order.
struct Buffered {
    kind: AggKind,
    flag: bool,
    fraction: f64,
    columns: Vec<ArrayRef>,
    /// Whole rows (a struct column per batch), for deduplicate.
    records: Vec<ArrayRef>,
    rows: Vec<Vec<(u32, u32)>>,
}

impl Buffered {
    fn new(kind: AggKind, flag: bool, fraction: f64) -> Self {
        Buffered {
            kind,
            flag,
            fraction,
            columns: Vec::new(),
            records: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn numbers(&self, g: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.rows[g].len());
        for &(b, r) in &self.rows[g] {
            let col = &self.columns[b as usize];
            if !present(col.as_ref(), r as usize) {
                continue;
            }
            if let Some(v) = crate::functions::float_at(col, r as usize) {
                out.push(v);
            }
        }
        out
    }

    fn json(&self, b: u32, r: u32) -> Option<Value> {
        value_to_json(self.columns[b as usize].as_ref(), r as usize)
    }

    /// The values at `positions` as one array.
    fn gather(&self, positions: &[(u32, u32)]) -> ArrayRef {
        interleave_loose(&self.columns, positions)
    }

    /// One list per group from per-group position lists.
    fn lists(&self, per_group: Vec<Vec<(u32, u32)>>) -> ArrayRef {
        lists(&self.columns, &per_group)
    }
}

/// One list per group of the values at each group's `(column, row)` positions.
fn lists(columns: &[ArrayRef], per_group: &[Vec<(u32, u32)>]) -> ArrayRef {
    let mut offsets = Vec::with_capacity(per_group.len() + 1);
    offsets.push(0i32);
    let mut flat = Vec::new();
    for g in per_group {
        flat.extend_from_slice(g);
        offsets.push(flat.len() as i32);
    }
    let values = if flat.is_empty() {
        columns
            .first()
            .map(|c| new_empty_array(c.data_type()))
            .unwrap_or_else(|| Arc::new(NullArray::new(0)))
    } else {
        interleave_loose(columns, &flat)
    };
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::new(offsets.into()),
        values,
        None,
    ))
}

impl Accumulator for Buffered {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        if self.rows.len() < n_groups {
            self.rows.resize_with(n_groups, Vec::new);
        }
        let b = self.columns.len() as u32;
        let arr = args[0].clone();
        for (i, &g) in groups.iter().enumerate() {
            self.rows[g as usize].push((b, i as u32));
        }
        self.columns.push(arr);
        if let Some(rec) = args.get(1) {
            self.records.push(rec.clone());
        }
        0
    }

    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        if self.rows.len() < n_groups {
            self.rows.resize_with(n_groups, Vec::new);
        }
        let present_at =
            |s: &Self, (b, r): (u32, u32)| present(s.columns[b as usize].as_ref(), r as usize);
        match self.kind {
            AggKind::Collect => {
                let groups = self.rows.clone();
                self.lists(groups)
            }
            AggKind::LastValue => {
                let picks: Vec<Option<(u32, u32)>> = self
                    .rows
                    .iter()
                    .map(|g| {
                        if self.flag {
                            g.iter().rev().copied().find(|&p| present_at(self, p))
                        } else {
                            g.last().copied()
                        }
                    })
                    .collect();
                self.pick(&picks)
            }
            AggKind::Median => self.floats(|v| percentile_cont(v, 0.5)),
            AggKind::PercentileCont => {
                let p = self.fraction;
                self.floats(move |v| percentile_cont(v, p))
            }
            AggKind::PercentileDisc => {
                let p = self.fraction;
                self.floats(move |v| percentile_disc(v, p))
            }
            AggKind::MergeAgg => {
                let values: Vec<Option<Value>> = (0..n_groups)
                    .map(|g| {
                        let mut merged = serde_json::Map::new();
                        let mut any = false;
                        for &(b, r) in &self.rows[g] {
                            if let Some(Value::Object(m)) = self.json(b, r) {
                                any = true;
                                for (k, v) in m {
                                    merged.insert(k, v);
                                }
                            }
                        }
                        any.then_some(Value::Object(merged))
                    })
                    .collect();
                json_to_array(values).unwrap_or_else(|_| Arc::new(NullArray::new(n_groups)))
            }
            AggKind::Deduplicate => {
                // Whole rows, the first of each distinct value in window order; without `all`,
                // the last row when its value is new (else nothing).
                let all = self.flag;
                let mut per_group = Vec::with_capacity(n_groups);
                let mut singles = Vec::with_capacity(n_groups);
                for g in 0..n_groups {
                    let mut seen: Vec<Option<Value>> = Vec::new();
                    let mut keep = Vec::new();
                    for &(b, r) in &self.rows[g] {
                        let v = self.json(b, r);
                        if !seen.contains(&v) {
                            seen.push(v);
                            keep.push((b, r));
                        }
                    }
                    let last = self.rows[g].last().copied();
                    let last_is_new = last.is_some_and(|p| keep.last() == Some(&p));
                    singles.push(if last_is_new { last } else { None });
                    per_group.push(keep);
                }
                let records = std::mem::take(&mut self.records);
                let source = if records.len() == self.columns.len() {
                    std::mem::replace(&mut self.columns, records)
                } else {
                    Vec::new()
                };
                let out = if all {
                    self.lists(per_group)
                } else {
                    self.pick(&singles)
                };
                if !source.is_empty() {
                    self.records = std::mem::replace(&mut self.columns, source);
                }
                out
            }
            _ => Arc::new(NullArray::new(n_groups)),
        }
    }

    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        let rows = padded_rows(&self.rows, n_groups);
        let mut out = vec![lists(&self.columns, &rows)];
        if !self.records.is_empty() {
            out.push(lists(&self.records, &rows));
        }
        Ok(out)
    }

    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        let (values, rows) = unlist(state.first())?;
        self.records = match state.get(1) {
            Some(records) => unlist(Some(records))?.0.into_iter().collect(),
            None => Vec::new(),
        };
        self.columns = values.into_iter().collect();
        self.rows = rows;
        Ok(())
    }
}

impl Buffered {
    fn floats(&self, f: impl Fn(&mut [f64]) -> Option<f64>) -> ArrayRef {
        Arc::new(Float64Array::from_iter((0..self.rows.len()).map(|g| {
            let mut v = self.numbers(g);
            v.sort_by(f64::total_cmp);
            f(&mut v)
        })))
    }

    fn pick(&self, picks: &[Option<(u32, u32)>]) -> ArrayRef {
        let positions: Vec<(u32, u32)> = picks.iter().flatten().copied().collect();
        let values = self.gather(&positions);
        // Spread back to one slot per group, nulls where a group had no pick.
        let mut idx = Vec::with_capacity(picks.len());
        let mut k = 0u32;
        for p in picks {
            match p {
                Some(_) => {
                    idx.push(Some(k));
                    k += 1;
                }
                None => idx.push(None),
            }
        }
        let idx = arrow::array::UInt32Array::from(idx);
        arrow::compute::take(values.as_ref(), &idx, None)
            .unwrap_or_else(|_| Arc::new(NullArray::new(picks.len())))
    }
}

/// A plugin's aggregate: every argument column of the window's batches and, per group, the
/// positions of its rows; at the end the function gets each group's values at once.
struct Custom {
    func: Arc<dyn crate::functions::ScalarFunction>,
    /// Per argument, one column per batch.
    columns: Vec<Vec<ArrayRef>>,
    rows: Vec<Vec<(u32, u32)>>,
}

impl Accumulator for Custom {
    fn update(&mut self, groups: &[u32], n_groups: usize, args: &[ArrayRef]) -> usize {
        if self.rows.len() < n_groups {
            self.rows.resize_with(n_groups, Vec::new);
        }
        let b = self.columns.first().map_or(0, Vec::len) as u32;
        for (i, col) in self.columns.iter_mut().enumerate() {
            col.push(
                args.get(i)
                    .cloned()
                    .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Null, groups.len())),
            );
        }
        for (r, &g) in groups.iter().enumerate() {
            self.rows[g as usize].push((b, r as u32));
        }
        0
    }

    fn finish(&mut self, n_groups: usize) -> ArrayRef {
        if self.rows.len() < n_groups {
            self.rows.resize_with(n_groups, Vec::new);
        }
        let mut results: Vec<ArrayRef> = Vec::with_capacity(n_groups);
        for g in 0..n_groups {
            let positions = &self.rows[g];
            let args: Vec<crate::eval::Columnar> = self
                .columns
                .iter()
                .map(|cols| crate::eval::Columnar::Array(interleave_loose(cols, positions)))
                .collect();
            let mut ctx = crate::eval::EvalContext::new(positions.len());
            let value = self
                .func
                .invoke(&args, &mut ctx)
                .map(|v| v.into_array(positions.len().max(1)))
                .ok()
                .filter(|a| !a.is_empty())
                .map(|a| a.slice(0, 1))
                .unwrap_or_else(|| Arc::new(NullArray::new(1)));
            results.push(value);
        }
        let positions: Vec<(u32, u32)> = (0..n_groups as u32).map(|i| (i, 0)).collect();
        interleave_loose(&results, &positions)
    }

    fn save(&self, n_groups: usize) -> Result<Vec<ArrayRef>, String> {
        let rows = padded_rows(&self.rows, n_groups);
        Ok(self.columns.iter().map(|cols| lists(cols, &rows)).collect())
    }

    fn load(&mut self, state: &[ArrayRef]) -> Result<(), String> {
        if state.len() != self.columns.len() {
            return Err(format!(
                "aggregate state: {} argument columns for a call of {}",
                state.len(),
                self.columns.len()
            ));
        }
        let mut rows = Vec::new();
        for (i, list) in state.iter().enumerate() {
            let (values, r) = unlist(Some(list))?;
            self.columns[i] = values.into_iter().collect();
            rows = r;
        }
        self.rows = rows;
        Ok(())
    }
}

/// `v` with `init` added up to `n` entries (accumulators grow lazily).
fn padded<T: Clone>(v: &[T], n: usize, init: T) -> Vec<T> {
    let mut out = v.to_vec();
    grow(&mut out, n, init);
    out
}

fn padded_rows(rows: &[Vec<(u32, u32)>], n: usize) -> Vec<Vec<(u32, u32)>> {
    let mut out = rows.to_vec();
    if out.len() < n {
        out.resize_with(n, Vec::new);
    }
    out
}

/// A flag of the whole accumulator, repeated in each group's slot.
fn flag_column(flag: bool, n_groups: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![flag; n_groups]))
}

fn column_at<T: arrow::datatypes::ArrowPrimitiveType>(
    state: &[ArrayRef],
    i: usize,
) -> Result<&arrow::array::PrimitiveArray<T>, String> {
    state
        .get(i)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or_else(|| format!("aggregate state: column {i} missing or of another type"))
}

fn ints_at(state: &[ArrayRef], i: usize) -> Result<Vec<i64>, String> {
    Ok(column_at::<Int64Type>(state, i)?.values().to_vec())
}

fn floats_at(state: &[ArrayRef], i: usize) -> Result<Vec<f64>, String> {
    Ok(column_at::<Float64Type>(state, i)?.values().to_vec())
}

fn bools_at(state: &[ArrayRef], i: usize) -> Result<Vec<bool>, String> {
    let b = state
        .get(i)
        .and_then(|c| c.as_boolean_opt())
        .ok_or_else(|| format!("aggregate state: column {i} is not boolean"))?;
    Ok((0..b.len()).map(|g| b.value(g)).collect())
}

fn flag_at(state: &[ArrayRef], i: usize) -> Result<bool, String> {
    Ok(bools_at(state, i)?.first().copied().unwrap_or(false))
}

/// Per group, the `(column, row)` positions of its values.
type Positions = Vec<Vec<(u32, u32)>>;

/// A saved list column back as one values column (`None` when no group has a value) and,
/// per group, the positions of its values in it.
fn unlist(list: Option<&ArrayRef>) -> Result<(Option<ArrayRef>, Positions), String> {
    let list = list
        .and_then(|l| l.as_list_opt::<i32>())
        .ok_or("aggregate state: no list column")?;
    let offsets = list.value_offsets();
    let rows = offsets
        .windows(2)
        .map(|w| (w[0] as u32..w[1] as u32).map(|r| (0, r)).collect())
        .collect();
    let values = list.values();
    let values = (!values.is_empty()).then(|| values.clone());
    Ok((values, rows))
}

/// Linear interpolation between the closest ranks (sorted input).
fn percentile_cont(sorted: &mut [f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// The first value whose cumulative distribution reaches `p` (sorted input).
fn percentile_disc(sorted: &mut [f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(sorted[idx])
}

/// The values at `(array, row)` positions as one array: arrow's interleave when the arrays
/// share a type, else rebuilt through JSON (schemaless batches may disagree on a type).
pub fn interleave_loose(columns: &[ArrayRef], positions: &[(u32, u32)]) -> ArrayRef {
    let Some(first) = columns.first() else {
        return Arc::new(NullArray::new(positions.len()));
    };
    if columns.iter().all(|c| c.data_type() == first.data_type()) {
        let arrays: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
        let idx: Vec<(usize, usize)> = positions
            .iter()
            .map(|&(b, r)| (b as usize, r as usize))
            .collect();
        if let Ok(a) = arrow::compute::interleave(&arrays, &idx) {
            return a;
        }
    }
    // Null-typed columns (a field missing from a batch) join any type.
    let typed: Vec<&ArrayRef> = columns
        .iter()
        .filter(|c| c.data_type() != &DataType::Null)
        .collect();
    if let Some(t) = typed.first().map(|c| c.data_type().clone())
        && typed.iter().all(|c| c.data_type() == &t)
    {
        let cast: Vec<ArrayRef> = columns
            .iter()
            .map(|c| {
                if c.data_type() == &DataType::Null {
                    arrow::array::new_null_array(&t, c.len())
                } else {
                    c.clone()
                }
            })
            .collect();
        let arrays: Vec<&dyn Array> = cast.iter().map(|c| c.as_ref()).collect();
        let idx: Vec<(usize, usize)> = positions
            .iter()
            .map(|&(b, r)| (b as usize, r as usize))
            .collect();
        if let Ok(a) = arrow::compute::interleave(&arrays, &idx) {
            return a;
        }
    }
    let values = positions
        .iter()
        .map(|&(b, r)| value_to_json(columns[b as usize].as_ref(), r as usize))
        .collect();
    json_to_array(values).unwrap_or_else(|_| Arc::new(NullArray::new(positions.len())))
}

/// The JSON value of row `row` of `arr` (`None` for null): how stateful operators compare
/// values of any type.
pub fn json_value(arr: &dyn Array, row: usize) -> Option<Value> {
    value_to_json(arr, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Literal;
    use crate::expr::Expr;
    use crate::types::SqlType;

    fn call(kind: AggKind, args: Vec<Literal>) -> AggCall {
        AggCall {
            kind,
            args: args.into_iter().map(Expr::Literal).collect(),
            whole_row: kind == AggKind::Deduplicate,
            ty: SqlType::Any,
            custom: None,
        }
    }

    /// A batch of rows: each row's group and the call's argument columns.
    type Rows = (Vec<u32>, Vec<ArrayRef>);

    /// Six batches over up to three groups; numbers alternate between integer and float
    /// batches (so sums switch to floats midway), with nulls.
    fn numbers() -> Vec<Rows> {
        (0..6u32)
            .map(|i| {
                let groups: Vec<u32> = (0..4).map(|j| (i + j) % (i + 1).min(3)).collect();
                let col: ArrayRef = if i % 2 == 0 {
                    Arc::new(Int64Array::from_iter(
                        (0..4).map(|j| (j != 2).then_some(i as i64 * 7 - j as i64 * 5)),
                    ))
                } else {
                    Arc::new(Float64Array::from_iter(
                        (0..4).map(|j| Some(0.1 * (i * 3 + j) as f64 + 1e-9)),
                    ))
                };
                (groups, vec![col])
            })
            .collect()
    }

    /// Feeds `batches` to a fresh accumulator for `call`, with a save and a load into another
    /// fresh one after every prefix: the results agree with the uninterrupted accumulator's.
    fn assert_round_trips(call: &AggCall, batches: &[Rows]) {
        let n_after = |k: usize| {
            batches[..k]
                .iter()
                .flat_map(|b| b.0.iter())
                .map(|&g| g as usize + 1)
                .max()
                .unwrap_or(0)
        };
        let n = n_after(batches.len());
        let mut whole = accumulator(call);
        for (groups, args) in batches {
            whole.update(groups, n_after(batches.len()).max(1), args);
        }
        let expected = whole.finish(n).to_data();
        for cut in 0..=batches.len() {
            let mut before = accumulator(call);
            for (groups, args) in &batches[..cut] {
                before.update(groups, n_after(cut), args);
            }
            let saved = before.save(n_after(cut)).expect("save");
            assert!(saved.iter().all(|c| c.len() == n_after(cut)));
            let mut after = accumulator(call);
            after.load(&saved).expect("load");
            for (groups, args) in &batches[cut..] {
                after.update(groups, n, args);
            }
            assert_eq!(
                after.finish(n).to_data(),
                expected,
                "{:?} cut after {cut} batches",
                call.kind
            );
        }
    }

    #[test]
    fn every_accumulator_finishes_the_same_after_a_save_and_load() {
        let frac = Literal::Float(0.3);
        let cases = [
            (AggKind::Count, vec![]),
            (AggKind::Count, vec![Literal::Null]),
            (AggKind::Sum, vec![Literal::Null]),
            (AggKind::Avg, vec![Literal::Null]),
            (AggKind::Max, vec![Literal::Null]),
            (AggKind::Min, vec![Literal::Null]),
            (AggKind::Var, vec![Literal::Null]),
            (AggKind::Stddevs, vec![Literal::Null]),
            (AggKind::Collect, vec![Literal::Null]),
            (AggKind::Median, vec![Literal::Null]),
            (AggKind::PercentileDisc, vec![Literal::Null, frac]),
            (AggKind::LastValue, vec![Literal::Null, Literal::Bool(true)]),
        ];
        for (kind, args) in cases {
            assert_round_trips(&call(kind, args), &numbers());
        }
        // Integers alone stay integers (an integer sum and truncating average).
        let ints: Vec<Rows> = numbers().into_iter().step_by(2).collect();
        assert_round_trips(&call(AggKind::Sum, vec![Literal::Null]), &ints);
        assert_round_trips(&call(AggKind::Avg, vec![Literal::Null]), &ints);
    }

    #[test]
    fn text_extremes_deduplicate_and_plugin_aggregates_restore() {
        let text = |i: u32| -> ArrayRef {
            Arc::new(StringArray::from_iter(
                (0..4).map(|j| (j != 1).then(|| format!("s{}", (i * 5 + j * 3) % 7))),
            ))
        };
        let batches: Vec<Rows> = (0..5)
            .map(|i| ((0..4).map(|j| (i + j) % 2).collect(), vec![text(i)]))
            .collect();
        assert_round_trips(&call(AggKind::Max, vec![Literal::Null]), &batches);
        assert_round_trips(&call(AggKind::Min, vec![Literal::Null]), &batches);
        // deduplicate: the value and the whole row it returns.
        let with_rows: Vec<Rows> = (0..5)
            .map(|i| {
                let v = text(i);
                let row = arrow::array::StructArray::from(vec![(
                    Arc::new(Field::new("x", DataType::Utf8, true)),
                    v.clone(),
                )]);
                (batches[i as usize].0.clone(), vec![v, Arc::new(row)])
            })
            .collect();
        for all in [true, false] {
            let dedup = call(
                AggKind::Deduplicate,
                vec![Literal::Null, Literal::Bool(all)],
            );
            assert_round_trips(&dedup, &with_rows);
        }
        let mut custom = call(AggKind::Custom, vec![Literal::Null, Literal::Null]);
        custom.custom = crate::functions::Registry::builtin().get("concat").cloned();
        let pairs: Vec<Rows> = (0..5)
            .map(|i| (batches[i as usize].0.clone(), vec![text(i), text(i + 1)]))
            .collect();
        assert_round_trips(&custom, &pairs);
    }
}
