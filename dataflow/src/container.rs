//! The timely container for Arrow batches.

use arrow::record_batch::RecordBatch;

/// A record batch as a timely container. Timely needs `Default`, hence the `Option`; the record
/// count is the row count, which is what progress tracking accounts.
#[derive(Debug, Clone, Default)]
pub struct ArrowBatch(pub Option<RecordBatch>);

impl timely::Accountable for ArrowBatch {
    fn record_count(&self) -> i64 {
        self.0.as_ref().map_or(0, |b| b.num_rows() as i64)
    }
}
