//! Tumbling and hopping windows: incremental, one group table per open window.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Emission, GroupTable};
use arrow::array::{AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::{AggregateSpec, TS_COLUMN};

/// Tumbling (`hop == size`) and hopping windows, aligned to natural time (multiples of the
/// hop since the epoch, UTC).
pub struct AlignedWindows {
    spec: Arc<AggregateSpec>,
    pub(super) size: i64,
    hop: i64,
    pub(super) open: BTreeMap<i64, GroupTable>,
    pub(crate) bad_rows: usize,
    /// Groups in the last window closed: the room a new window's table starts with.
    last_groups: usize,
}

impl AlignedWindows {
    pub(super) fn new(spec: Arc<AggregateSpec>, size: u64, hop: u64) -> Self {
        AlignedWindows {
            spec,
            size: size as i64,
            hop: hop as i64,
            open: BTreeMap::new(),
            bad_rows: 0,
            last_groups: 0,
        }
    }

    pub(super) fn insert(&mut self, batch: &RecordBatch) {
        let Some(ts) = batch.column_by_name(TS_COLUMN) else {
            return;
        };
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>();
        let (size, hop) = (self.size, self.hop);
        // Window starts containing t: multiples s of hop with s <= t < s + size.
        let last_start = |t: i64| t - t.rem_euclid(hop);
        let first = ts.value(0);
        let uniform = size == hop && {
            let s = last_start(first);
            ts.values().iter().all(|&t| t >= s && t < s + size)
        };
        if uniform {
            let s = last_start(first);
            self.table(s).update(batch);
            return;
        }
        let mut per_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (r, &t) in ts.values().iter().enumerate() {
            let mut s = last_start(t);
            while s + size > t {
                per_window.entry(s).or_default().push(r as u32);
                s -= hop;
            }
        }
        for (s, rows) in per_window {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                match take_record_batch(batch, &UInt32Array::from(rows)) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            self.table(s).update(&part);
        }
    }

    fn table(&mut self, start: i64) -> &mut GroupTable {
        let (spec, groups) = (&self.spec, self.last_groups);
        self.open
            .entry(start)
            .or_insert_with(|| GroupTable::with_capacity(spec.clone(), groups))
    }

    pub(super) fn advance(&mut self, frontier: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            let end = start.saturating_add(self.size);
            if end > frontier {
                break;
            }
            let table = self.open.remove(&start).expect("first key exists");
            self.bad_rows += table.bad_rows;
            self.last_groups = table.len();
            if let Some(batch) = table.finish(start, end) {
                out.push(Emission { end, batch });
            }
        }
        out
    }
}
