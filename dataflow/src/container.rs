//! The container timely moves between operators: one Arrow record batch. Between processes it
//! travels as Arrow IPC (`container/ipc.rs`).

use arrow::record_batch::RecordBatch;

mod ipc;
pub mod member;

pub use ipc::encoded_bytes;

/// A record batch as a timely container. Timely needs `Default`, hence the `Option`; the record
/// count is the row count, which is what progress tracking accounts.
#[derive(Debug, Clone, Default)]
pub struct ArrowBatch(pub Option<RecordBatch>);

/// An empty window's emission (eKuiper's `[]`): no columns, no rows. Timely drops
/// containers that count no records, so [`ArrowBatch`] counts this one as one.
pub fn empty_emission() -> RecordBatch {
    RecordBatch::new_empty(std::sync::Arc::new(arrow::datatypes::Schema::empty()))
}

/// True for the batch of [`empty_emission`].
pub fn is_empty_emission(b: &RecordBatch) -> bool {
    b.num_rows() == 0 && b.num_columns() == 0
}

impl timely::Accountable for ArrowBatch {
    fn record_count(&self) -> i64 {
        match &self.0 {
            Some(b) if is_empty_emission(b) => 1,
            Some(b) => b.num_rows() as i64,
            None => 0,
        }
    }
}
