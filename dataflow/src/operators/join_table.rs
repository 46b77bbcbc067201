//! Stream-table joins: each stream batch against a scan table's index or a lookup store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::aggregate::json_value;
use quiver_compiler::eval::{EvalContext, true_mask};
use quiver_compiler::plan::TableJoin;

use crate::chain::BatchOperator;
use crate::keys::keys_of;
use crate::metrics::NodeMetrics;

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
    table: crate::tables::TableSide,
    metrics: Arc<NodeMetrics>,
    /// A scan table's index on this worker (the arrangement of its rows by the join key).
    trace: Option<crate::tables::feed::TableTrace>,
    /// The id of the arrangement it reads (`IndexSpec::id`).
    index_id: String,
    /// Rows come exchanged by join key, carrying its text in `__key`.
    partitioned: bool,
    /// The rule's own copy of a scan table (qos 1 and 2), read instead of an arrangement.
    own: Option<crate::tables::own::OwnTable>,
}

impl JoinTableOp {
    /// A join of the stream with `table`, reporting into `metrics`; a scan table is read from
    /// this worker's arrangement `index` (built before the rule).
    pub fn new(
        join: TableJoin,
        table: crate::tables::TableSide,
        index: Option<&crate::tables::feed::IndexSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let trace = index.and_then(crate::tables::arrangement::trace);
        let index_id = index
            .map(crate::tables::feed::IndexSpec::id)
            .unwrap_or_default();
        let partitioned =
            index.is_some_and(|i| i.placement == crate::tables::feed::Placement::Partitioned);
        JoinTableOp {
            join,
            table,
            metrics,
            trace,
            index_id,
            partitioned,
            own: None,
        }
    }

    /// The join reading the rule's own copy of its scan table, fed by table source `source`
    /// (see `tables::own`).
    pub fn with_own_copy(mut self, source: u32) -> Self {
        if let crate::tables::TableSide::Scan(feed) = &self.table {
            self.own = Some(crate::tables::own::OwnTable::new(
                source,
                feed.key.clone(),
                feed.retain,
                self.join.table_keys.clone(),
                feed.decoder.clone(),
            ));
        }
        self
    }

    /// The rows of `keys` from this worker's arrangement, decoded, indexed like a lookup's.
    fn read(&mut self, keys: &[Option<String>]) -> Result<Fetched, String> {
        let (Some(trace), crate::tables::TableSide::Scan(feed)) =
            (self.trace.as_mut(), &self.table)
        else {
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
            crate::tables::arrangement::read(trace, &wanted, |i, (_, text)| {
                let key = String::from_utf8_lossy(&wanted[i]).into_owned();
                index.entry(key).or_default().push(texts.len() as u32);
                texts.push(text.clone());
            });
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let batch = crate::tables::rows::decode(&feed.decoder, &texts)?;
            return Ok((batch, index, HashMap::new()));
        }
        let (batch, index) = crate::tables::arrangement::lookup(
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
    fn fetch(
        table: &crate::tables::lookup::LookupTable,
        key: &ArrayRef,
    ) -> Result<Fetched, String> {
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
        Ok((crate::batch::concat_results(&batches), index, failed))
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
        let fetched = match (&self.own, &self.table) {
            (Some(own), _) => {
                let (rows, index) = own.read(&keys)?;
                (rows, index, HashMap::new())
            }
            (None, crate::tables::TableSide::Scan(_)) => self.read(&keys)?,
            (None, crate::tables::TableSide::Lookup(table)) => {
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
                .filter(|(f, _)| {
                    !f.name()
                        .starts_with(quiver_compiler::columns::HIDDEN_PREFIX)
                })
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

    fn save(&self) -> Result<Option<crate::state::OpState>, String> {
        if let Some(own) = &self.own {
            return own.save().map(Some);
        }
        match self.table {
            // A lookup keeps only its table's cache, which a restart may start empty.
            crate::tables::TableSide::Lookup(_) => Ok(None),
            crate::tables::TableSide::Scan(_) => {
                Err("saving the state of a scan table join is not supported".into())
            }
        }
    }

    fn load(&mut self, state: &crate::state::OpState) -> Result<(), String> {
        match self.own.as_mut() {
            Some(own) => own.load(state),
            None => Err("this join keeps no table of its own to load".into()),
        }
    }

    fn update_table(&mut self, source: u32, rows: &RecordBatch) -> bool {
        let Some(own) = self.own.as_mut().filter(|o| o.source == source) else {
            return false;
        };
        let skipped = own.apply(rows);
        if skipped > 0 {
            self.metrics.exceptions(
                skipped,
                &format!(
                    "table \"{}\": a row without a value for its KEY is left out",
                    self.join.table
                ),
            );
        }
        true
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
    use crate::tables::lookup::{LookupStore, LookupTable};
    use crate::tables::state::TableState;
    use crate::testing::{batch, metrics, records, rows, strings, strings_of, table_join, text};

    /// Memory lookup table `t` holding devices `a` (hall) and `b` (lab).
    fn devices() -> Arc<LookupTable> {
        let state = TableState::new(Some("id".to_string()), None);
        state.apply(&batch(vec![
            ("id", strings(&[Some("a"), Some("b")])),
            ("name", strings(&[Some("hall"), Some("lab")])),
        ]));
        Arc::new(LookupTable::new(
            LookupStore::Memory(Arc::new(state)),
            Default::default(),
        ))
    }

    fn join(kind: &str, table: &Arc<LookupTable>, m: Arc<NodeMetrics>) -> JoinTableOp {
        let sql = format!("SELECT k, t.name FROM s {kind} JOIN t ON s.k = t.id");
        let side = crate::tables::TableSide::Lookup(table.clone());
        JoinTableOp::new(table_join(&sql), side, None, m)
    }

    #[test]
    fn inner_join_adds_the_matching_table_row_and_drops_the_rest() {
        let table = devices();
        let m = metrics();
        let mut op = join("INNER", &table, m.clone());
        let out = op
            .process_batch(rows(&[("a", 1, 1), ("c", 2, 2), ("b", 3, 3), ("a", 4, 4)]))
            .expect("three matches");
        assert_eq!(strings_of(&out, "k"), text(&["a", "b", "a"]));
        assert_eq!(strings_of(&out, "t.name"), text(&["hall", "lab", "hall"]));
        assert_eq!(records(&m), (4, 3));
        assert_eq!(
            table.fetches(),
            1,
            "one store call a batch, for its distinct keys"
        );
    }

    #[test]
    fn left_join_keeps_unmatched_rows_without_table_values() {
        let table = devices();
        let mut op = join("LEFT", &table, metrics());
        let out = op
            .process_batch(rows(&[("a", 1, 1), ("c", 2, 2)]))
            .expect("both rows");
        assert_eq!(strings_of(&out, "k"), text(&["a", "c"]));
        assert_eq!(strings_of(&out, "t.name"), [Some("hall".to_string()), None]);
    }

    #[test]
    fn a_missing_key_matches_nothing() {
        let table = devices();
        let mut op = join("INNER", &table, metrics());
        let input = batch(vec![
            ("k", strings(&[None, Some("b")])),
            ("v", crate::testing::ints(&[Some(1), Some(2)])),
        ]);
        let out = op.process_batch(input).expect("b matches");
        assert_eq!(strings_of(&out, "t.name"), text(&["lab"]));
    }
}
