//! A batch's tag in a rule group's dataflow: the member (rule) it belongs to, kept in its
//! schema's metadata, so it survives slicing by the exchange and Arrow IPC between processes.

use std::sync::Arc;

use arrow::datatypes::{Metadata, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

/// The schema metadata key naming a batch's rule in the group's dataflow.
const MEMBER_KEY: &str = "quiver.member";
/// The schema metadata key saying whether the rule's rows are spread by key.
const SPREAD_KEY: &str = "quiver.spread";

/// `batch` tagged with member `id` (and whether its rows are spread by key).
pub fn tag(batch: RecordBatch, id: u64, spread: bool) -> RecordBatch {
    let mut metadata = batch.schema_ref().metadata().clone();
    metadata.insert(MEMBER_KEY.to_string(), id.to_string());
    metadata.insert(SPREAD_KEY.to_string(), u8::from(spread).to_string());
    with_metadata(batch, metadata)
}

/// The member a batch is tagged with, and whether its rows are spread by key.
pub fn tag_of(batch: &RecordBatch) -> Option<(u64, bool)> {
    let schema = batch.schema_ref();
    let id = schema.metadata().get(MEMBER_KEY)?.parse().ok()?;
    Some((
        id,
        schema.metadata().get(SPREAD_KEY).is_some_and(|s| s == "1"),
    ))
}

/// `batch` without its tag.
pub fn untag(batch: RecordBatch) -> RecordBatch {
    let mut metadata = batch.schema_ref().metadata().clone();
    metadata.remove(MEMBER_KEY);
    metadata.remove(SPREAD_KEY);
    with_metadata(batch, metadata)
}

/// The same columns and rows under the same fields with `metadata`.
fn with_metadata(batch: RecordBatch, metadata: Metadata) -> RecordBatch {
    let schema = Schema::new(batch.schema_ref().fields().clone()).with_metadata(metadata);
    // The row count is given for batches without columns (an empty window's emission).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    match RecordBatch::try_new_with_options(Arc::new(schema), batch.columns().to_vec(), &options) {
        Ok(b) => b,
        // Cannot happen (the columns already matched these fields); the batch goes as it was.
        Err(_) => batch,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn a_tag_goes_on_and_comes_off_keeping_the_batch_and_its_own_metadata() {
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)])
            .with_metadata(HashMap::from([("own".to_string(), "x".to_string())]));
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let tagged = tag(batch.clone(), 42, true);
        assert_eq!(tag_of(&tagged), Some((42, true)));
        assert_eq!(tag_of(&tag(batch.clone(), 7, false)), Some((7, false)));
        assert_eq!(tag_of(&batch), None);
        assert_eq!(untag(tagged), batch);
        let empty = crate::container::empty_emission();
        let back = untag(tag(empty, 1, false));
        assert!(crate::container::is_empty_emission(&back));
    }
}
