//! The rule's first row time in event time, carried with the rows to every window worker.
//!
//! eKuiper reports the first event-time window's `window_start()` as the time of the first row
//! its one window operator saw. With the groups spread over workers, each worker sees only its
//! keys' rows, so the reading worker (the only one in event time) stamps the first row's time
//! on every prepared batch's schema, and every worker aligns its first window on it.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::TS_COLUMN;

/// The schema metadata key holding the rule's first row time (ms).
pub const FIRST_ROW_KEY: &str = "quiver.first_row_ms";

/// The rule's first row time stamped on `batch`, if any.
pub fn first_row(batch: &RecordBatch) -> Option<i64> {
    batch
        .schema_ref()
        .metadata()
        .get(FIRST_ROW_KEY)?
        .parse()
        .ok()
}

/// The earliest row time of a prepared batch.
pub fn earliest(batch: &RecordBatch) -> Option<i64> {
    let ts = batch.column_by_name(TS_COLUMN)?;
    ts.as_primitive_opt::<Int64Type>()?
        .values()
        .iter()
        .min()
        .copied()
}

/// Stamps prepared batches with the rule's first row time: the earliest row of the first
/// batch with rows (the watermark releases rows in time order, so no later row is earlier).
#[derive(Debug, Default)]
pub struct FirstRowStamp {
    /// The first row's time, once a row was seen.
    pub first: Option<i64>,
    /// The last input schema and its stamped copy (batches of one stream share a schema).
    cached: Option<(Arc<Schema>, Arc<Schema>)>,
}

impl FirstRowStamp {
    /// `batch` with the first row time in its schema's metadata (set from it if unset).
    pub fn stamp(&mut self, batch: RecordBatch) -> RecordBatch {
        if self.first.is_none() {
            self.first = earliest(&batch);
        }
        let Some(first) = self.first else {
            return batch;
        };
        let schema = batch.schema();
        let stamped = match &self.cached {
            Some((from, to)) if Arc::ptr_eq(from, &schema) || **from == *schema => to.clone(),
            _ => {
                let mut metadata = schema.metadata().clone();
                metadata.insert(FIRST_ROW_KEY, first.to_string());
                let to = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
                self.cached = Some((schema.clone(), to.clone()));
                to
            }
        };
        batch.with_schema(stamped).unwrap_or_else(|e| {
            unreachable!("the same fields with other metadata fit the batch: {e}")
        })
    }

    /// Restores the first row time a checkpoint saved.
    pub fn restore(&mut self, first: Option<i64>) {
        self.first = first;
        self.cached = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{aggregate, prepared};

    #[test]
    fn every_batch_carries_the_first_batchs_earliest_row() {
        let spec = aggregate("SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 1)");
        let mut stamp = FirstRowStamp::default();
        let one = stamp.stamp(prepared(&spec, &[("a", 1, 1300), ("b", 1, 1250)]));
        let two = stamp.stamp(prepared(&spec, &[("c", 1, 1900)]));
        assert_eq!((first_row(&one), first_row(&two)), (Some(1250), Some(1250)));
        assert_eq!(earliest(&two), Some(1900));
        assert_eq!(first_row(&prepared(&spec, &[("c", 1, 1900)])), None);
    }
}
