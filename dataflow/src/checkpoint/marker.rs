//! What a rule's sink operators tell its sink tasks besides results: the checkpoint markers,
//! and at qos 2 which worker each result batch came from.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

const MARKER_EPOCH: &str = "quiver.checkpoint.epoch";
const MARKER_WORKER: &str = "quiver.checkpoint.worker";

/// The marker a sink operator sends its sink tasks after its results before a checkpoint: an
/// empty batch whose schema names the checkpoint and the worker.
pub fn marker(epoch: u64, worker: usize) -> RecordBatch {
    let meta = HashMap::from([
        (MARKER_EPOCH.to_string(), epoch.to_string()),
        (MARKER_WORKER.to_string(), worker.to_string()),
    ]);
    RecordBatch::new_empty(Arc::new(Schema::empty().with_metadata(meta)))
}

/// The (epoch, worker) of a marker batch; `None` for results.
pub fn as_marker(batch: &RecordBatch) -> Option<(u64, usize)> {
    if batch.num_columns() > 0 {
        return None;
    }
    let meta = batch.schema_ref().metadata();
    Some((
        meta.get(MARKER_EPOCH)?.parse().ok()?,
        meta.get(MARKER_WORKER)?.parse().ok()?,
    ))
}

const WORKER: &str = "quiver.sink.worker";

/// `batch` marked as coming from `worker` (qos 2: a sink task keeps each worker's rows apart,
/// since a worker's rows after its marker belong to the next checkpoint).
pub fn tag(batch: RecordBatch, worker: usize) -> RecordBatch {
    let schema = Schema::new_with_metadata(
        batch.schema_ref().fields().clone(),
        HashMap::from([(WORKER.to_string(), worker.to_string())]),
    );
    with_schema(batch, schema)
}

/// The worker a [`tag`]ged batch came from, and the batch without the tag.
pub fn untag(batch: RecordBatch) -> (Option<usize>, RecordBatch) {
    let Some(worker) = batch
        .schema_ref()
        .metadata()
        .get(WORKER)
        .and_then(|w| w.parse().ok())
    else {
        return (None, batch);
    };
    let plain = Schema::new(batch.schema_ref().fields().clone());
    (Some(worker), with_schema(batch, plain))
}

/// `batch`'s columns under `schema`, which has the same fields (`RecordBatch::with_schema`
/// refuses to drop metadata).
fn with_schema(batch: RecordBatch, schema: Schema) -> RecordBatch {
    let rows = batch.num_rows();
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        batch.columns().to_vec(),
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap_or_else(|e| unreachable!("the same fields take the same columns: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_tags_round_trip() {
        let m = marker(7, 1);
        assert_eq!(as_marker(&m), Some((7, 1)));
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
                "a",
                arrow::datatypes::DataType::Int64,
                false,
            )])),
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .expect("batch");
        assert_eq!(as_marker(&rows), None);
        let (w, back) = untag(tag(rows.clone(), 3));
        assert_eq!((w, &back), (Some(3), &rows));
        assert_eq!(untag(rows.clone()), (None, rows));
        let empty = crate::container::empty_emission();
        assert_eq!(
            as_marker(&tag(empty, 0)),
            None,
            "an empty emission is not a marker"
        );
    }
}
