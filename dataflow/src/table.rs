//! The stream-table join, over scan tables (`CREATE TABLE`, arranged on the workers by
//! [`crate::arrange`]) and lookup tables ([`crate::lookup`]).
//!
//! For each stream batch the join reads the rows of the batch's distinct keys: from this
//! worker's arrangement of a scan table, as it is when the batch is processed (the stream
//! drives, and a table update never re-emits a past result: eKuiper's semantics), or fetched
//! from a lookup table's store. It then assembles the joined rows the same way for both. A
//! lookup key whose rows could not be read fails only its stream rows (counted as exceptions).
//!
//! [`TableState`] keeps the rows of a memory lookup table by key.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::aggregate::json_value;
use quiver_compiler::eval::{EvalContext, true_mask};
use quiver_compiler::plan::TableJoin;

use crate::metrics::NodeMetrics;
use crate::operator::BatchOperator;

/// The rows of a memory lookup table, upserted by key.
#[derive(Debug)]
pub struct TableState {
    key: Option<String>,
    retain: Option<usize>,
    data: RwLock<TableData>,
    /// Rows applied so far (upserts included), for tests and status.
    applied: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct TableData {
    version: u64,
    seq: u64,
    /// Keyed tables: key → sequence number of its row.
    by_key: HashMap<String, u64>,
    /// Live rows (one-row batches) in arrival order.
    rows: BTreeMap<u64, RecordBatch>,
    /// Unkeyed tables: sequence numbers, oldest first.
    order: VecDeque<u64>,
}

impl TableState {
    /// An empty table; `key` is the `KEY` column, `retain` the `RETAIN_SIZE`.
    pub fn new(key: Option<String>, retain: Option<usize>) -> Self {
        TableState {
            key,
            retain,
            data: RwLock::new(TableData::default()),
            applied: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Applies decoded rows: upserts by key, or appends and trims to `RETAIN_SIZE`. Rows
    /// without a key value are skipped (and counted in the return value).
    pub fn apply(&self, batch: &RecordBatch) -> usize {
        let key_col = self
            .key
            .as_ref()
            .and_then(|k| quiver_compiler::eval::column_by_name(batch, k).cloned());
        let mut skipped = 0;
        let mut data = self.data.write().expect("table lock");
        for r in 0..batch.num_rows() {
            let row = batch.slice(r, 1);
            data.seq += 1;
            let seq = data.seq;
            match (&self.key, &key_col) {
                (Some(_), Some(col)) => match json_value(col.as_ref(), r) {
                    Some(k) => {
                        if let Some(old) = data.by_key.insert(k.to_string(), seq) {
                            data.rows.remove(&old);
                        }
                        data.rows.insert(seq, row);
                    }
                    None => skipped += 1,
                },
                (Some(_), None) => skipped += 1,
                (None, _) => {
                    data.rows.insert(seq, row);
                    data.order.push_back(seq);
                    if let Some(n) = self.retain {
                        while data.order.len() > n {
                            if let Some(old) = data.order.pop_front() {
                                data.rows.remove(&old);
                            }
                        }
                    }
                }
            }
        }
        data.version += 1;
        self.applied.fetch_add(
            batch.num_rows() as u64,
            std::sync::atomic::Ordering::Release,
        );
        skipped
    }

    /// Rows applied so far, upserts and skipped rows included.
    pub fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The row of `key` (its JSON text, as [`TableState::apply`] keys rows) in a keyed table.
    pub fn get(&self, key: &str) -> Option<RecordBatch> {
        let data = self.data.read().expect("table lock");
        let seq = data.by_key.get(key)?;
        data.rows.get(seq).cloned()
    }

    /// Number of rows held.
    pub fn len(&self) -> usize {
        self.data.read().expect("table lock").rows.len()
    }

    /// True when the table holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A key as text: each value's JSON, so 1 and 1.0 match (both print `1`); `None` when a key
/// value is missing (null never matches).
pub(crate) fn keys_of(arrays: &[ArrayRef], rows: usize) -> Vec<Option<String>> {
    (0..rows)
        .map(|r| {
            let mut key = String::new();
            for a in arrays {
                if !push_key_text(&mut key, a.as_ref(), r)? {
                    key.push_str(&json_value(a.as_ref(), r)?.to_string());
                }
                key.push('\u{1f}');
            }
            Some(key)
        })
        .collect()
}

/// Appends the JSON text of a string value that needs no escaping (the usual key), as
/// `json_value(..).to_string()` would write it, without building a JSON value: `Some(true)`
/// when written, `Some(false)` when the caller must take the general path, `None` for null.
fn push_key_text(key: &mut String, a: &dyn Array, r: usize) -> Option<bool> {
    if a.is_null(r) {
        return None;
    }
    let Some(s) = a.as_any().downcast_ref::<arrow::array::StringArray>() else {
        return Some(false);
    };
    let v = s.value(r);
    if v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return Some(false);
    }
    key.push('"');
    key.push_str(v);
    key.push('"');
    Some(true)
}

/// The table a join reads: rows in memory (scan) or a store asked per batch (lookup).
#[derive(Debug, Clone)]
pub enum TableSide {
    /// A scan table, arranged on the workers.
    Scan(Arc<crate::arrange::TableFeed>),
    /// A lookup table.
    Lookup(Arc<crate::lookup::LookupTable>),
}

/// A lookup's rows for one batch: the rows, their index by key text, and the keys that failed
/// (key text → why).
type Fetched = (
    Option<RecordBatch>,
    HashMap<String, Vec<u32>>,
    HashMap<String, String>,
);

/// Rows that failed in a join (their lookup key could not be read): count and first reason.
type RowErrors = (usize, Option<String>);

/// The stream-table join operator.
pub struct JoinTableOp {
    join: TableJoin,
    table: TableSide,
    metrics: Arc<NodeMetrics>,
    /// A scan table's index on this worker (the arrangement of its rows by the join key).
    trace: Option<crate::arrange::TableTrace>,
    /// The id of the arrangement it reads (`IndexSpec::id`).
    index_id: String,
    /// Rows come exchanged by join key, carrying its text in `__key`.
    partitioned: bool,
}

impl JoinTableOp {
    /// A join of the stream with `table`, reporting into `metrics`; a scan table is read from
    /// this worker's arrangement `index` (built before the rule).
    pub fn new(
        join: TableJoin,
        table: TableSide,
        index: Option<&crate::arrange::IndexSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let trace = index.and_then(crate::arrange::trace);
        let index_id = index.map(crate::arrange::IndexSpec::id).unwrap_or_default();
        let partitioned =
            index.is_some_and(|i| i.placement == crate::arrange::Placement::Partitioned);
        JoinTableOp {
            join,
            table,
            metrics,
            trace,
            index_id,
            partitioned,
        }
    }

    /// The rows of `keys` from this worker's arrangement, decoded, indexed like a lookup's.
    fn read(&mut self, keys: &[Option<String>]) -> Result<Fetched, String> {
        let (Some(trace), TableSide::Scan(feed)) = (self.trace.as_mut(), &self.table) else {
            return Err(format!(
                "table \"{}\" is not arranged on this worker",
                self.join.table
            ));
        };
        let mut wanted: Vec<&String> = keys.iter().flatten().collect();
        wanted.sort_unstable();
        wanted.dedup();
        if self.join.schema.is_none() {
            // Schemaless rows may decode to different columns from batch to batch: decode
            // the rows of this batch together, every time.
            let wanted: Vec<Vec<u8>> = wanted.iter().map(|k| k.as_bytes().to_vec()).collect();
            let mut texts: Vec<String> = Vec::new();
            let mut index: HashMap<String, Vec<u32>> = HashMap::new();
            crate::arrange::read(trace, &wanted, |i, (_, text)| {
                let key = String::from_utf8_lossy(&wanted[i]).into_owned();
                index.entry(key).or_default().push(texts.len() as u32);
                texts.push(text.clone());
            });
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let batch = crate::arrange::decode(&feed.decoder, &texts)?;
            return Ok((batch, index, HashMap::new()));
        }
        let (batch, index) = crate::arrange::lookup(
            &feed.name,
            &self.index_id,
            trace,
            &feed.decoder,
            feed.rows(),
            &wanted,
        )?;
        Ok((batch, index, HashMap::new()))
    }

    /// The rows of the batch's distinct keys from a lookup table, indexed like a snapshot,
    /// and the keys whose rows could not be read (with why).
    fn fetch(table: &crate::lookup::LookupTable, key: &ArrayRef) -> Result<Fetched, String> {
        let mut distinct: Vec<serde_json::Value> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for r in 0..key.len() {
            if let Some(v) = json_value(key.as_ref(), r)
                && seen.insert(v.to_string())
            {
                distinct.push(v);
            }
        }
        let found = if distinct.is_empty() {
            Vec::new()
        } else {
            table.lookup(&distinct)?
        };
        let mut batches = Vec::new();
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        let mut failed = HashMap::new();
        let mut at = 0u32;
        for (v, rows) in distinct.iter().zip(found) {
            // The same text `keys_of` makes for the stream side of a one-column key.
            let text = format!("{v}\u{1f}");
            match rows {
                Ok(Some(b)) => {
                    let n = b.num_rows() as u32;
                    index.insert(text, (at..at + n).collect());
                    at += n;
                    batches.push(b);
                }
                Ok(None) => {}
                Err(e) => {
                    failed.insert(text, e);
                }
            }
        }
        Ok((crate::window::concat_results(&batches), index, failed))
    }

    fn join_batch(
        &mut self,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<(RecordBatch, RowErrors), String> {
        let rows = batch.num_rows();
        let arrays: Vec<ArrayRef> = self
            .join
            .stream_keys
            .iter()
            .map(|k| k.eval(batch, ctx).map(|v| v.into_array(rows)))
            .collect::<Result<_, _>>()?;
        // A partitioned join's rows carry their key text, computed before the exchange.
        let keys = match batch
            .column_by_name(quiver_compiler::window::KEY_COLUMN)
            .and_then(|k| k.as_any().downcast_ref::<arrow::array::BinaryArray>())
        {
            Some(k) if self.partitioned => (0..rows)
                .map(|r| {
                    let v = k.value(r);
                    (!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned())
                })
                .collect(),
            _ => keys_of(&arrays, rows),
        };
        let fetched = match &self.table {
            TableSide::Scan(_) => self.read(&keys)?,
            TableSide::Lookup(table) => {
                let key = arrays.first().ok_or("a lookup join needs its KEY")?;
                Self::fetch(table, key)?
            }
        };
        let (snapshot, index, failed) = (fetched.0.as_ref(), &fetched.1, Some(&fetched.2));
        // Stream rows whose key could not be read are left out and reported as exceptions.
        let mut errors: RowErrors = (0, None);
        let mut s_idx: Vec<u32> = Vec::new();
        let mut t_idx: Vec<Option<u32>> = Vec::new();
        for (r, key) in keys.iter().enumerate() {
            if let Some(e) = key.as_ref().and_then(|k| failed.and_then(|f| f.get(k))) {
                errors.0 += 1;
                errors.1.get_or_insert_with(|| e.clone());
                continue;
            }
            let matches = key.as_ref().and_then(|k| index.get(k));
            match matches {
                Some(ts) => {
                    for &t in ts {
                        s_idx.push(r as u32);
                        t_idx.push(Some(t));
                    }
                }
                None if self.join.left => {
                    s_idx.push(r as u32);
                    t_idx.push(None);
                }
                None => {}
            }
        }
        let mut joined = self.assemble(batch, snapshot, &s_idx, &t_idx)?;
        if let Some(residual) = &self.join.residual {
            let n = joined.num_rows();
            let mut rctx = EvalContext::new(n);
            let keep = match residual.eval(&joined, &mut rctx)?.into_array(n) {
                a if a.data_type() == &arrow::datatypes::DataType::Boolean => {
                    true_mask(arrow::array::AsArray::as_boolean(&a))
                }
                _ => BooleanArray::from(vec![false; n]),
            };
            if !self.join.left {
                joined = arrow::compute::filter_record_batch(&joined, &keep)
                    .map_err(|e| e.to_string())?;
            } else {
                // A stream row whose matches all fail the condition still comes out once,
                // without table values.
                let mut survived = vec![false; rows];
                let mut s2 = Vec::new();
                let mut t2 = Vec::new();
                for i in 0..n {
                    if keep.value(i) && t_idx[i].is_some() {
                        survived[s_idx[i] as usize] = true;
                        s2.push(s_idx[i]);
                        t2.push(t_idx[i]);
                    }
                }
                for (r, ok) in survived.iter().enumerate() {
                    if !ok && (0..n).any(|i| s_idx[i] as usize == r) {
                        s2.push(r as u32);
                        t2.push(None);
                    }
                }
                joined = self.assemble(batch, snapshot, &s2, &t2)?;
            }
        }
        Ok((joined, errors))
    }

    /// Stream columns of rows `s_idx`, then the table's columns (as `qualifier.column`) of rows
    /// `t_idx` (null where `None`).
    fn assemble(
        &self,
        batch: &RecordBatch,
        table: Option<&RecordBatch>,
        s_idx: &[u32],
        t_idx: &[Option<u32>],
    ) -> Result<RecordBatch, String> {
        let s_take = UInt32Array::from(s_idx.to_vec());
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            fields.push(f.as_ref().clone().with_nullable(true));
            cols.push(arrow::compute::take(c.as_ref(), &s_take, None).map_err(|e| e.to_string())?);
        }
        let t_take = UInt32Array::from(t_idx.to_vec());
        let table_fields: Vec<(Field, ArrayRef)> = match table {
            Some(t) => t
                .schema()
                .fields()
                .iter()
                .zip(t.columns())
                .filter(|(f, _)| !f.name().starts_with("__"))
                .map(|(f, c)| {
                    arrow::compute::take(c.as_ref(), &t_take, None)
                        .map(|a| (f.as_ref().clone(), a))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<_, _>>()?,
            None => match &self.join.schema {
                Some(schema) => schema
                    .fields()
                    .iter()
                    .map(|f| {
                        (
                            f.as_ref().clone(),
                            arrow::array::new_null_array(f.data_type(), s_idx.len()),
                        )
                    })
                    .collect(),
                None => Vec::new(),
            },
        };
        for (f, c) in table_fields {
            fields.push(Field::new(
                format!("{}.{}", self.join.qualifier, f.name()),
                c.data_type().clone(),
                true,
            ));
            cols.push(c);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(s_idx.len())),
        )
        .map_err(|e| e.to_string())
    }
}

impl BatchOperator for JoinTableOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let result = self
            .join_batch(&batch, &mut ctx)
            .map(|(out, (failed, reason))| {
                if let Some(reason) = reason {
                    self.metrics
                        .exceptions(failed, &format!("run Join error: {reason}"));
                }
                out
            });
        report_join(&self.metrics, rows, started, &ctx, result)
    }
}

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

/// Counts a join's outcome on its node: per-row failures in `ctx`, or the whole batch when
/// the join failed; the joined rows, if any, go on.
pub(crate) fn report_join(
    metrics: &NodeMetrics,
    rows: usize,
    started: Instant,
    ctx: &EvalContext,
    result: Result<RecordBatch, String>,
) -> Option<RecordBatch> {
    match result {
        Ok(out) => {
            if let Some(first) = ctx.errors.first() {
                metrics.exceptions(ctx.errors.count(), &format!("run Join error: {first}"));
            }
            metrics.batch(rows, out.num_rows(), started);
            Some(out).filter(|b| b.num_rows() > 0)
        }
        Err(e) => {
            metrics.exceptions(rows, &format!("run Join error: {e}"));
            metrics.batch(rows, 0, started);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_read_like_their_json_text() {
        let values = [
            "dev-1",
            "",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "ünï©ødé",
        ];
        let strings: ArrayRef = Arc::new(arrow::array::StringArray::from(
            values
                .iter()
                .map(|v| Some(*v))
                .chain([None])
                .collect::<Vec<_>>(),
        ));
        let keys = keys_of(&[strings], values.len() + 1);
        for (v, k) in values.iter().zip(&keys) {
            let json = serde_json::Value::String(v.to_string()).to_string();
            assert_eq!(k.as_deref(), Some(format!("{json}\u{1f}").as_str()));
        }
        assert_eq!(keys[values.len()], None, "a null key matches nothing");
    }
}
