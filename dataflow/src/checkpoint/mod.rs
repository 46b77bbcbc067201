//! Checkpoints (rule options `qos` 1 and 2, `checkpointInterval`): a rule's input is logged
//! before its workers see it, its operators' state is saved at aligned epochs of the dataflow's
//! time, and after a crash the rule starts from its last checkpoint and replays the log from
//! the positions saved with it. See docs/checkpoints.md.

pub mod coordinator;
pub mod event_codec;
pub mod log;
pub mod store;

pub use coordinator::{Checkpointing, CommitStats};
pub use log::InputLog;
pub use store::{Checkpoint, CheckpointStore};

use std::sync::Arc;

use quiver_connectors::{ConnectorError, EventLog, SourceEvent};

/// A rule's input log as its source writes it: each event stamped with the time it was logged.
pub struct LogWriter(pub Arc<InputLog>);

impl EventLog for LogWriter {
    fn log(&self, worker: usize, event: SourceEvent) -> Result<SourceEvent, ConnectorError> {
        let at = crate::clock::now_time();
        let seq = self
            .0
            .append(worker, at, &event)
            .map_err(|reason| ConnectorError::Fatal {
                connector: "input log".into(),
                reason,
            })?;
        Ok(SourceEvent::Logged {
            seq,
            at,
            event: Box::new(event),
        })
    }
}

const MARKER_EPOCH: &str = "quiver.checkpoint.epoch";
const MARKER_WORKER: &str = "quiver.checkpoint.worker";

/// The marker a sink operator sends its sink tasks after its results before a checkpoint: an
/// empty batch whose schema names the checkpoint and the worker.
pub fn marker(epoch: u64, worker: usize) -> arrow::record_batch::RecordBatch {
    let meta = std::collections::HashMap::from([
        (MARKER_EPOCH.to_string(), epoch.to_string()),
        (MARKER_WORKER.to_string(), worker.to_string()),
    ]);
    arrow::record_batch::RecordBatch::new_empty(Arc::new(
        arrow::datatypes::Schema::empty().with_metadata(meta),
    ))
}

/// The (epoch, worker) of a marker batch; `None` for results.
pub fn as_marker(batch: &arrow::record_batch::RecordBatch) -> Option<(u64, usize)> {
    if batch.num_columns() > 0 {
        return None;
    }
    let meta = batch.schema_ref().metadata();
    Some((
        meta.get(MARKER_EPOCH)?.parse().ok()?,
        meta.get(MARKER_WORKER)?.parse().ok()?,
    ))
}
