//! One window's groups and their accumulators.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::aggregate::{Accumulator, accumulator, interleave_loose};

use crate::state::{OpState, same_batch};
use quiver_compiler::window::{
    AggregateSpec, KEY_COLUMN, TS_COLUMN, WINDOW_END, WINDOW_START, WindowKind, agg_column,
    arg_column, row_column,
};

pub(crate) type FixedMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

pub(crate) fn fixed_map<K, V>() -> FixedMap<K, V> {
    HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5157_4956))
}

/// The groups of one window and their aggregates.
pub struct GroupTable {
    spec: Arc<AggregateSpec>,
    index: FixedMap<Box<[u8]>, u32>,
    /// Per group: (carried batch, row) of its first row.
    first: Vec<(u32, u32)>,
    /// The prepared batches that hold a first row (or every row, when rows pass through).
    carried: Vec<RecordBatch>,
    accs: Vec<Box<dyn Accumulator>>,
    /// Per aggregate, its argument column names (all of a plugin aggregate's; the first
    /// and the whole-row column of a built-in's).
    arg_names: Vec<Vec<String>>,
    /// Rows that could not be aggregated (non-numeric values in sum, ...).
    pub bad_rows: usize,
}

impl GroupTable {
    /// An empty table for `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        Self::with_capacity(spec, 0)
    }

    /// An empty table for `spec` with room for `groups` groups (the previous window's count,
    /// so a window's table does not grow and rehash group by group).
    pub fn with_capacity(spec: Arc<AggregateSpec>, groups: usize) -> Self {
        let accs = spec.aggs.iter().map(accumulator).collect();
        let arg_names = spec
            .aggs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.custom.is_some() {
                    return (0..c.args.len()).map(|j| arg_column(i, j)).collect();
                }
                let mut names = Vec::new();
                if !c.args.is_empty() {
                    names.push(arg_column(i, 0));
                }
                if c.whole_row {
                    names.push(row_column(i));
                }
                names
            })
            .collect();
        let mut index = fixed_map();
        index.reserve(groups);
        GroupTable {
            spec,
            index,
            first: Vec::with_capacity(groups),
            carried: Vec::new(),
            accs,
            arg_names,
            bad_rows: 0,
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when no row arrived.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Adds the rows of a prepared batch.
    pub fn update(&mut self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        if rows == 0 {
            return;
        }
        let b = self.carried.len() as u32;
        if self.spec.passes_rows() {
            // No aggregate and no key: the window's rows are its result.
            for r in 0..rows {
                self.first.push((b, r as u32));
            }
            self.carried.push(batch.clone());
            return;
        }
        let before = self.first.len();
        let groups: Vec<u32> = if self.spec.window.kind == WindowKind::Rows {
            // Each row is its own group.
            (0..rows)
                .map(|r| {
                    self.first.push((b, r as u32));
                    (before + r) as u32
                })
                .collect()
        } else {
            match batch.column_by_name(KEY_COLUMN) {
                None => {
                    if self.first.is_empty() {
                        self.first.push((b, 0));
                    }
                    vec![0; rows]
                }
                Some(keys) => {
                    let keys = keys.as_binary::<i32>();
                    let mut out = Vec::with_capacity(rows);
                    for r in 0..rows {
                        let k = keys.value(r);
                        let g = match self.index.get(k) {
                            Some(&g) => g,
                            None => {
                                let g = self.first.len() as u32;
                                self.index.insert(k.into(), g);
                                self.first.push((b, r as u32));
                                g
                            }
                        };
                        out.push(g);
                    }
                    out
                }
            }
        };
        if self.first.len() > before {
            self.carried.push(batch.clone());
        }
        let n = self.first.len();
        for (acc, names) in self.accs.iter_mut().zip(&self.arg_names) {
            let args: Vec<ArrayRef> = names
                .iter()
                .map(|name| {
                    batch
                        .column_by_name(name)
                        .cloned()
                        .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Null, rows))
                })
                .collect();
            self.bad_rows += acc.update(&groups, n, &args);
        }
    }

    /// The state (what a checkpoint writes): the group index, each group's first row, the
    /// accumulators' state and the bad-row count.
    pub fn save(&self) -> Result<OpState, String> {
        let n = self.first.len();
        let mut state = OpState::default();
        state.push_number("groups", n as i64);
        state.push_number("bad_rows", self.bad_rows as i64);
        state.push_rows(
            "first",
            self.first
                .iter()
                .map(|&(b, r)| (&self.carried[b as usize], r)),
        )?;
        let mut index: Vec<(&[u8], u32)> = self.index.iter().map(|(k, &g)| (&**k, g)).collect();
        index.sort_unstable_by_key(|&(_, g)| g);
        let keys: ArrayRef = Arc::new(BinaryArray::from_iter_values(index.iter().map(|e| e.0)));
        let groups: ArrayRef = Arc::new(UInt32Array::from_iter_values(index.iter().map(|e| e.1)));
        state.push_batch(
            "index",
            RecordBatch::try_from_iter([("key", keys), ("group", groups)])
                .map_err(|e| e.to_string())?,
        );
        for (i, acc) in self.accs.iter().enumerate() {
            let cols = acc.save(n)?;
            let batch = RecordBatch::try_from_iter(
                cols.into_iter()
                    .enumerate()
                    .map(|(c, col)| (format!("c{c}"), col)),
            )
            .map_err(|e| format!("aggregate {i}: {e}"))?;
            state.push_batch(format!("acc.{i}"), batch);
        }
        Ok(state)
    }

    /// Replaces the table's contents with a saved state (into a fresh table of the same spec).
    pub fn load(&mut self, state: &OpState) -> Result<(), String> {
        let n = state.need_number("groups")? as usize;
        let rows = state.rows("first")?;
        if rows.len() != n {
            return Err(format!(
                "window state: {} first rows for {n} groups",
                rows.len()
            ));
        }
        self.carried.clear();
        self.first.clear();
        for (batch, r) in rows {
            let b = match self.carried.iter().position(|c| same_batch(c, &batch)) {
                Some(b) => b,
                None => {
                    self.carried.push(batch);
                    self.carried.len() - 1
                }
            };
            self.first.push((b as u32, r));
        }
        let index = state.need_batch("index")?;
        let (keys, groups) = match (
            index
                .column_by_name("key")
                .and_then(|c| c.as_binary_opt::<i32>()),
            index
                .column_by_name("group")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt32Type>()),
        ) {
            (Some(k), Some(g)) => (k, g),
            _ => return Err("window state: bad group index".into()),
        };
        self.index.clear();
        for i in 0..index.num_rows() {
            if groups.value(i) as usize >= n {
                return Err("window state: group index out of range".into());
            }
            self.index.insert(keys.value(i).into(), groups.value(i));
        }
        for (i, acc) in self.accs.iter_mut().enumerate() {
            let batch = state.need_batch(&format!("acc.{i}"))?;
            acc.load(batch.columns())
                .map_err(|e| format!("aggregate {i}: {e}"))?;
        }
        self.bad_rows = state.need_number("bad_rows")? as usize;
        Ok(())
    }

    /// The result rows, one per group: carried columns (from each group's first row), the
    /// aggregates and the window bounds. `None` when the window had no row.
    pub fn finish(mut self, start: i64, end: i64) -> Option<RecordBatch> {
        let n = self.first.len();
        if n == 0 {
            return None;
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        // Carried columns, by name, in first-seen order across batches.
        let mut names: Vec<String> = Vec::new();
        for b in &self.carried {
            for f in b.schema().fields() {
                if quiver_compiler::columns::is_window_scratch(f.name()) || names.contains(f.name())
                {
                    continue;
                }
                names.push(f.name().clone());
            }
        }
        for name in &names {
            let arrays: Vec<ArrayRef> = self
                .carried
                .iter()
                .map(|b| {
                    b.column_by_name(name).cloned().unwrap_or_else(|| {
                        arrow::array::new_null_array(&DataType::Null, b.num_rows())
                    })
                })
                .collect();
            let col = interleave_loose(&arrays, &self.first);
            fields.push(Field::new(name, col.data_type().clone(), true));
            cols.push(col);
        }
        for (i, acc) in self.accs.iter_mut().enumerate() {
            let col = acc.finish(n);
            fields.push(Field::new(agg_column(i), col.data_type().clone(), true));
            cols.push(col);
        }
        let bounds = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v; n])) };
        if self.spec.window.kind == WindowKind::Rows {
            // No window: each row's own time stands for both bounds.
            let ts = interleave_loose(
                &self
                    .carried
                    .iter()
                    .map(|b| {
                        b.column_by_name(TS_COLUMN)
                            .cloned()
                            .unwrap_or_else(|| bounds(end))
                    })
                    .collect::<Vec<_>>(),
                &self.first,
            );
            fields.push(Field::new(WINDOW_START, DataType::Int64, true));
            cols.push(ts.clone());
            fields.push(Field::new(WINDOW_END, DataType::Int64, true));
            cols.push(ts);
        } else {
            fields.push(Field::new(WINDOW_START, DataType::Int64, true));
            cols.push(bounds(start));
            fields.push(Field::new(WINDOW_END, DataType::Int64, true));
            cols.push(bounds(end));
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{aggregate, column_names, ints_of, prepared, strings_of, text};

    /// The result of `sql`'s window [0, 10 s) over `rows`.
    fn grouped(sql: &str, rows: &[(&str, i64, i64)]) -> Option<RecordBatch> {
        let spec = aggregate(sql);
        let mut table = GroupTable::new(spec.clone());
        table.update(&prepared(&spec, rows));
        table.finish(0, 10_000)
    }

    #[test]
    fn groups_add_up_across_batches_in_first_seen_order() {
        let spec = aggregate(
            "SELECT k, sum(v) AS total, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)",
        );
        let mut table = GroupTable::new(spec.clone());
        table.update(&prepared(&spec, &[("b", 1, 1000), ("a", 2, 2000)]));
        table.update(&prepared(&spec, &[("b", 3, 3000)]));
        assert_eq!(table.len(), 2);
        let out = table.finish(0, 10_000).expect("two groups");
        // The window's scratch columns (row time, key, arguments) stay behind.
        assert_eq!(
            column_names(&out),
            ["k", "__agg_0", "__agg_1", "__window_start", "__window_end"]
        );
        assert_eq!(strings_of(&out, "k"), text(&["b", "a"]));
        assert_eq!(ints_of(&out, "__agg_0"), [Some(4), Some(2)]);
        assert_eq!(ints_of(&out, "__agg_1"), [Some(2), Some(1)]);
        assert_eq!(ints_of(&out, "__window_end"), [Some(10_000), Some(10_000)]);
    }

    #[test]
    fn without_group_by_every_row_is_in_one_group() {
        let out = grouped(
            "SELECT count(*) AS c FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
            &[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)],
        );
        let out = out.expect("one group");
        assert_eq!(ints_of(&out, "__agg_0"), [Some(3)]);
    }

    #[test]
    fn a_window_without_aggregates_or_keys_passes_its_rows_through() {
        let out = grouped(
            "SELECT k FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
            &[("a", 1, 1), ("a", 2, 2), ("b", 3, 3)],
        );
        let out = out.expect("three rows");
        assert_eq!(strings_of(&out, "k"), text(&["a", "a", "b"]));
        assert_eq!(ints_of(&out, "__window_start"), [Some(0); 3]);
    }

    #[test]
    fn a_window_that_saw_no_row_has_no_result() {
        let spec = aggregate("SELECT count(*) AS c FROM s GROUP BY TUMBLINGWINDOW(ss, 10)");
        let table = GroupTable::new(spec);
        assert!(table.is_empty());
        assert!(table.finish(0, 10_000).is_none());
    }
}
