//! A table's rows in memory by key (memory lookup tables).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use arrow::record_batch::RecordBatch;
use quiver_compiler::aggregate::json_value;

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
