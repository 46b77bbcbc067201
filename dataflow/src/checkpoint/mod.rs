//! Checkpoints (rule options `qos` 1 and 2, `checkpointInterval`): a rule's input is logged
//! before its workers see it, its operators' state is saved at aligned epochs of the dataflow's
//! time, and after a crash the rule starts from its last checkpoint and replays the log from
//! the positions saved with it. See docs/checkpoints.md.

pub mod coordinator;
pub mod event_codec;
pub mod joined;
pub mod log;
pub mod marker;
pub mod reread;
pub mod store;

pub use coordinator::{Checkpointing, CommitStats, RunFlags};
pub use joined::{JOIN_WORKER, JoinedLogWriter, PrepareJoined};
pub use log::InputLog;
pub use marker::{as_marker, marker};
pub use reread::Reread;
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
        logged(&self.0, worker, 0, event, mark, true, |e| e)
    }

    fn log_unsynced(
        &self,
        worker: usize,
        event: SourceEvent,
    ) -> Result<SourceEvent, ConnectorError> {
        logged(&self.0, worker, 0, event, None, false, |e| e)
    }

    fn log_place(
        &self,
        worker: usize,
        event: SourceEvent,
        mark: &[u8],
        keep: bool,
    ) -> Result<SourceEvent, ConnectorError> {
        let at = crate::clock::now_time();
        let seq = self
            .0
            .append_place(worker, at, keep.then_some(&event), mark)
            .map_err(log_failed)?;
        Ok(SourceEvent::Logged {
            seq,
            at,
            event: Box::new(event),
        })
    }

    fn sync(&self) -> Result<(), ConnectorError> {
        self.0.sync().map_err(log_failed)
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
        // The FROM stream's records: those of joined streams are their sources' own.
        let workers: Vec<usize> = (0..self.0.workers()).collect();
        joined::recent_of(&self.0, &workers, 0, limit)
    }
}

/// Writes `event` of the rule's stream `source` to `worker`'s log (synced when `sync`), stamped
/// with the time it is logged at, and returns what the worker gets: `hand(event)` with its
/// position and time.
fn logged(
    log: &InputLog,
    worker: usize,
    source: u32,
    event: SourceEvent,
    mark: Option<&[u8]>,
    sync: bool,
    hand: impl FnOnce(SourceEvent) -> SourceEvent,
) -> Result<SourceEvent, ConnectorError> {
    let at = crate::clock::now_time();
    let seq = log
        .append_as(worker, at, source, &event, mark, sync)
        .map_err(log_failed)?;
    Ok(SourceEvent::Logged {
        seq,
        at,
        event: Box::new(hand(event)),
    })
}

/// A failed write to the input log: the source stops.
fn log_failed(reason: String) -> ConnectorError {
    ConnectorError::Fatal {
        connector: "input log".into(),
        reason,
    }
}
