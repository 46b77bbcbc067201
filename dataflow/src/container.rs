//! The container timely moves between operators: one Arrow record batch.

use arrow::record_batch::RecordBatch;

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

/// Quiver runs its workers in one process (`Config::process`), where timely hands containers
/// from worker to worker by pointer and never serialises them. Timely still demands this
/// trait for any exchanged container at compile time; should a multi-process configuration
/// ever be added, this is where Arrow IPC goes.
impl timely::dataflow::channels::ContainerBytes for ArrowBatch {
    fn from_bytes(_bytes: timely::bytes::arc::Bytes) -> Self {
        panic!("Arrow batches are exchanged in process only (no multi-process timely config)")
    }

    fn length_in_bytes(&self) -> usize {
        panic!("Arrow batches are exchanged in process only (no multi-process timely config)")
    }

    fn into_bytes<W: std::io::Write>(&self, _writer: &mut W) {
        panic!("Arrow batches are exchanged in process only (no multi-process timely config)")
    }
}
