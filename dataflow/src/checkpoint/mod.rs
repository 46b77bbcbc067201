//! Checkpoints (rule options `qos` 1 and 2, `checkpointInterval`): a rule's input is logged
//! before its workers see it, its operators' state is saved at aligned epochs of the dataflow's
//! time, and after a crash the rule starts from its last checkpoint and replays the log from
//! the positions saved with it. See docs/checkpoints.md.

pub mod coordinator;
pub mod event_codec;
pub mod log;
pub mod marker;
pub mod store;

pub use coordinator::{Checkpointing, CommitStats, RunFlags};
pub use log::InputLog;
pub use marker::{as_marker, marker};
pub use store::{Checkpoint, CheckpointStore};

use std::sync::Arc;

use quiver_connectors::{ConnectorError, EventLog, SourceEvent};

/// A rule's input log as its source writes it: each event stamped with the time it was logged.
pub struct LogWriter(pub Arc<InputLog>);

impl EventLog for LogWriter {
    fn log(
        &self,
        worker: usize,
        event: SourceEvent,
        mark: Option<&[u8]>,
    ) -> Result<SourceEvent, ConnectorError> {
        let at = crate::clock::now_time();
        let seq =
            self.0
                .append(worker, at, &event, mark)
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

    fn marks(&self) -> Vec<Vec<u8>> {
        (0..self.0.workers())
            .filter_map(|w| match self.0.last_mark(w) {
                Ok(mark) => mark,
                Err(e) => {
                    tracing::warn!("input log mark not read: {e}");
                    None
                }
            })
            .collect()
    }

    fn recent(&self, limit: usize) -> Vec<quiver_connectors::RawMessage> {
        let mut out = Vec::new();
        for w in 0..self.0.workers() {
            let last = self.0.last_seq(w);
            let records = match self.0.read_after(w, last.saturating_sub(limit as u64)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("input log tail not read: {e}");
                    continue;
                }
            };
            for record in records {
                match record {
                    Ok(r) => {
                        if let SourceEvent::Raw(messages) = r.event {
                            out.extend(messages);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("input log tail not read: {e}");
                        break;
                    }
                }
            }
        }
        out
    }
}
