//! The input log of a stream joined to a rule's FROM stream (qos 1 and 2). A join's window
//! runs on worker 0, so the joined stream's events go into worker 0's log, between the FROM
//! stream's, as they arrive: a replay gives the window the same rows in the same order, at the
//! same times. Each record keeps the raw event (what its source may be sent again, and what
//! a replay decodes again) with the joined stream's number.

use std::sync::Arc;

use quiver_connectors::{ConnectorError, EventLog, RawMessage, SourceEvent};

use super::InputLog;

/// The worker whose log and queue hold a join's rows.
pub const JOIN_WORKER: usize = 0;

/// Turns a joined stream's raw event into the rows worker 0 takes: decoded, renamed
/// `qualifier.column` and tagged with the stream's number. The same live and on replay.
pub type PrepareJoined = Arc<dyn Fn(SourceEvent) -> SourceEvent + Send + Sync>;

/// How the source of the `source`-th joined stream logs its events.
pub struct JoinedLogWriter {
    /// The rule's input log.
    pub log: Arc<InputLog>,
    /// The stream's number (from 1, in the order of the rule's joins).
    pub source: u32,
    /// What worker 0 gets for a logged event.
    pub prepare: PrepareJoined,
}

impl JoinedLogWriter {
    /// Writes `event` to worker 0's log (synced when `sync`) and returns what worker 0 gets.
    fn write(
        &self,
        event: SourceEvent,
        mark: Option<&[u8]>,
        sync: bool,
    ) -> Result<SourceEvent, ConnectorError> {
        super::logged(
            &self.log,
            JOIN_WORKER,
            self.source,
            event,
            mark,
            sync,
            |e| (self.prepare)(e),
        )
    }
}

impl EventLog for JoinedLogWriter {
    fn log(
        &self,
        _worker: usize,
        event: SourceEvent,
        mark: Option<&[u8]>,
    ) -> Result<SourceEvent, ConnectorError> {
        self.write(event, mark, true)
    }

    fn log_unsynced(
        &self,
        _worker: usize,
        event: SourceEvent,
    ) -> Result<SourceEvent, ConnectorError> {
        self.write(event, None, false)
    }

    fn sync(&self) -> Result<(), ConnectorError> {
        self.log.sync().map_err(super::log_failed)
    }

    fn recent(&self, limit: usize) -> Vec<RawMessage> {
        recent_of(&self.log, &[JOIN_WORKER], self.source, limit)
    }
}

/// The raw messages of stream `source`'s records among the last `limit` records of each of
/// `workers`' logs.
pub(super) fn recent_of(
    log: &InputLog,
    workers: &[usize],
    source: u32,
    limit: usize,
) -> Vec<RawMessage> {
    let mut out = Vec::new();
    for &w in workers {
        let last = log.last_seq(w);
        let records = match log.read_after(w, last.saturating_sub(limit as u64)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("input log tail not read: {e}");
                continue;
            }
        };
        for record in records {
            match record {
                Ok(r) if r.source == source => {
                    if let Some(SourceEvent::Raw(messages)) = r.event {
                        out.extend(messages);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("input log tail not read: {e}");
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn raw(text: &'static str) -> SourceEvent {
        SourceEvent::Raw(vec![RawMessage::new(
            Bytes::from_static(text.as_bytes()),
            Arc::from("t"),
        )])
    }

    #[test]
    fn joined_events_share_worker_0s_log_and_keep_their_stream() {
        let dir = std::env::temp_dir().join(format!("quiver-joined-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(InputLog::open(&dir, 2).unwrap());
        let writer = JoinedLogWriter {
            log: log.clone(),
            source: 1,
            // Stands for the decoding.
            prepare: Arc::new(|e| e),
        };
        log.append(0, 1, 0, &raw("from"), None).unwrap();
        let SourceEvent::Logged { seq, .. } = writer.log(1, raw("joined"), None).unwrap() else {
            panic!("a logged event")
        };
        assert_eq!(seq, 2, "after the FROM stream's record, in worker 0's log");
        let sources: Vec<u32> = log
            .read_after(0, 0)
            .unwrap()
            .map(|r| r.unwrap().source)
            .collect();
        assert_eq!(sources, vec![0, 1]);
        let payloads =
            |m: Vec<RawMessage>| -> Vec<Vec<u8>> { m.iter().map(|m| m.payload.to_vec()).collect() };
        assert_eq!(payloads(writer.recent(10)), vec![b"joined".to_vec()]);
        assert_eq!(
            payloads(recent_of(&log, &[0, 1], 0, 10)),
            vec![b"from".to_vec()]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
