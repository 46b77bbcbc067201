//! Shared sources: the one source of a `SHARED="true"` stream, decoded once, and its fan-out
//! to every rule run (and rule group) that reads the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quiver_connectors::codec::Decoder;
use quiver_connectors::{SourceEvent, SourceOutput, SourceSpec};
use tokio::sync::mpsc;

use super::Engine;
use crate::error::EngineError;

/// One subscriber of a shared source: a rule run's worker queues and how to wake them.
pub(super) struct Subscriber {
    pub(super) key: String,
    pub(super) out: SourceOutput,
    pub(super) wake_all: Arc<dyn Fn() + Send + Sync>,
    /// Events this rule lost for falling behind the others (its status reports them).
    pub(super) dropped: Arc<AtomicU64>,
}

/// How long the fan-out waits for a rule whose queue is full before it drops the event for
/// that rule (eKuiper discards on a full buffer too): a rule that is slow but moving still
/// paces the stream (back-pressure, nothing lost), while one that takes nothing for this long
/// (a stuck sink) holds the stream's other rules back by at most this, once per stall.
const STALL_BOUND: Duration = Duration::from_secs(2);

/// The single source of a `SHARED="true"` stream and the rule runs it feeds.
pub(super) struct SharedSource {
    pub(super) subscribers: Arc<Mutex<Vec<Subscriber>>>,
    /// Set (under the subscribers lock) when the input ended and every subscriber was let go:
    /// a rule that joins after it needs a new source.
    pub(super) ended: Arc<AtomicBool>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(super) connection: Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
}

/// A rule that fell behind waits again (up to [`STALL_BOUND`]) only after taking this many
/// events in a row without a full queue: a rule that keeps falling behind must not cost the
/// others a stall per event it does take.
const CAUGHT_UP_AFTER: u32 = 64;

/// Hands `event` to one rule of a shared stream: at once if its queue has room, else after
/// waiting up to [`STALL_BOUND`] (not at all while the rule is `behind`: the events it took
/// since); an event that does not fit is dropped for that rule and counted. False when the
/// rule has stopped.
async fn deliver(
    out: &SourceOutput,
    event: SourceEvent,
    behind: &mut HashMap<String, u32>,
    key: &str,
    dropped: &AtomicU64,
) -> bool {
    let event = match out.try_send(event) {
        Ok(()) => {
            if let Some(taken) = behind.get_mut(key) {
                *taken += 1;
                if *taken >= CAUGHT_UP_AFTER {
                    behind.remove(key);
                }
            }
            return true;
        }
        Err(quiver_connectors::TrySend::Closed) => return false,
        Err(quiver_connectors::TrySend::Full(e)) => e,
    };
    if let Some(taken) = behind.get_mut(key) {
        *taken = 0;
    } else {
        match tokio::time::timeout(STALL_BOUND, out.send(event)).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => {
                tracing::warn!(
                    rule = %key,
                    "a rule fell behind its shared stream; dropping its events until it catches up"
                );
                behind.insert(key.to_string(), 0);
            }
        }
    }
    dropped.fetch_add(1, Ordering::Relaxed);
    true
}

impl Engine {
    /// Adds a rule run to the shared source of `stream`, starting the source for the first one.
    /// One subscription feeds every rule of the stream; a rule that falls behind holds the
    /// others back for at most [`STALL_BOUND`], then loses events (counted, in its status)
    /// until its queue has room again.
    pub(super) fn join_shared(
        &self,
        stream: &str,
        spec: &SourceSpec,
        subscriber: Subscriber,
        queue: usize,
    ) -> Result<Option<Arc<quiver_connectors::mqtt::ConnectionState>>, EngineError> {
        let mut shared = self.inner.shared.lock().expect("shared lock");
        // A shared source whose input ended (and was handed out) is finished; the next rule
        // starts a new one. Until then the rule joins it, checked under the lock the fan-out
        // ends under, so no rule joins a source that has just let its rules go.
        let mut subscriber = Some(subscriber);
        if let Some(s) = shared.get(stream) {
            let mut subs = s.subscribers.lock().expect("subscribers lock");
            if !s.ended.load(Ordering::Acquire) {
                subs.push(subscriber.take().expect("not pushed yet"));
                return Ok(s.connection.clone());
            }
        }
        let subscriber = subscriber.expect("not pushed");
        if let Some(old) = shared.remove(stream) {
            old.tasks.iter().for_each(|t| t.abort());
        }
        let mut source = self.inner.connectors.source(spec)?;
        let connection = source.connection();
        let subscribers = Arc::new(Mutex::new(vec![subscriber]));
        let ended = Arc::new(AtomicBool::new(false));
        let fanout_ended = ended.clone();
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(queue);
        let reader = self.inner.runtime.spawn(async move {
            let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
            if let Err(e) = source.run(out).await {
                tracing::error!("shared source failed: {e}");
            }
        });
        let subs = subscribers.clone();
        // Decoded once here for every rule of the stream (metadata columns included: rules
        // that do not read them never see them), not once per rule.
        let decoder = self
            .stream(stream)
            .map(|def| self.stream_decoder(&def, true))
            .transpose()?;
        let fanout = self.inner.runtime.spawn(async move {
            // Rules that fell behind: they get what fits in their queue, without waiting.
            let mut behind: HashMap<String, u32> = HashMap::new();
            while let Some(first) = rx.recv().await {
                let event = match &decoder {
                    Some(decoder) => {
                        // What queued while the last event went out to every rule goes on
                        // as one event. Each event costs every rule a wake-up and a dataflow
                        // step, so with many rules the events grow under load instead of the
                        // backlog; without a backlog nothing waits.
                        let mut parts = vec![first.decoded_with(decoder)];
                        let mut messages = event_messages(&parts[0]);
                        while messages < MAX_GATHERED_MESSAGES {
                            let Ok(next) = rx.try_recv() else { break };
                            let next = next.decoded_with(decoder);
                            messages += event_messages(&next);
                            parts.push(next);
                        }
                        gather(parts, decoder)
                    }
                    None => first,
                };
                let targets: Vec<(String, SourceOutput, Arc<AtomicU64>)> = subs
                    .lock()
                    .expect("subscribers lock")
                    .iter()
                    .map(|s| (s.key.clone(), s.out.clone(), s.dropped.clone()))
                    .collect();
                for (key, out, dropped) in targets {
                    if !deliver(&out, event.clone(), &mut behind, &key, &dropped).await {
                        subs.lock()
                            .expect("subscribers lock")
                            .retain(|s| s.key != key);
                    }
                }
            }
            // The input ended: close every rule's queues and wake its workers.
            let ended: Vec<Subscriber> = {
                let mut list = subs.lock().expect("subscribers lock");
                fanout_ended.store(true, Ordering::Release);
                std::mem::take(&mut *list)
            };
            for s in ended {
                let wake = s.wake_all.clone();
                drop(s);
                wake();
            }
        });
        shared.insert(
            stream.to_string(),
            SharedSource {
                subscribers,
                ended,
                tasks: vec![reader, fanout],
                connection: connection.clone(),
            },
        );
        Ok(connection)
    }

    /// Removes a rule run from a shared source; the last one out stops the source.
    pub(super) fn leave_shared(&self, stream: &str, key: &str) {
        let mut shared = self.inner.shared.lock().expect("shared lock");
        let Some(s) = shared.get(stream) else { return };
        let empty = {
            let mut subs = s.subscribers.lock().expect("subscribers lock");
            subs.retain(|x| x.key != key);
            subs.is_empty()
        };
        if empty && let Some(s) = shared.remove(stream) {
            for t in s.tasks {
                t.abort();
            }
        }
    }
}

/// Most messages a shared source's fan-out gathers into one event.
const MAX_GATHERED_MESSAGES: usize = 4096;

/// Messages (or rows) in an event already decoded by [`SourceEvent::decoded_with`].
fn event_messages(event: &SourceEvent) -> usize {
    match event {
        SourceEvent::Decoded { messages, .. } => *messages,
        SourceEvent::Batch(b) => b.num_rows(),
        SourceEvent::Raw(m) => m.len(),
        SourceEvent::Lines { .. } => 1,
        SourceEvent::Logged { event, .. } => event_messages(event),
    }
}

/// Events (decoded, or rows as they came) as one: their rows in order, in one batch when they
/// share a schema (so each rule runs once over them), and their failures.
fn gather(mut parts: Vec<SourceEvent>, decoder: &Decoder) -> SourceEvent {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    let (messages, decoded) = crate::render::group::combine(parts, decoder);
    SourceEvent::Decoded { messages, decoded }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    fn decoded(values: &[i64], errors: &[&str]) -> SourceEvent {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .unwrap();
        SourceEvent::Decoded {
            messages: values.len() + errors.len(),
            decoded: Arc::new(quiver_connectors::codec::json::Decoded {
                batches: vec![batch],
                errors: errors.iter().map(|e| e.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn gathered_events_keep_every_row_in_order_in_one_batch() {
        let decoder = Decoder::new(&quiver_connectors::codec::Format::Json, None, false).unwrap();
        let one = gather(vec![decoded(&[1, 2], &["bad"])], &decoder);
        let SourceEvent::Decoded { messages, .. } = &one else {
            panic!("decoded")
        };
        assert_eq!(*messages, 3);
        let all = gather(
            vec![
                decoded(&[1, 2], &["x"]),
                decoded(&[3], &[]),
                decoded(&[4, 5], &["y"]),
            ],
            &decoder,
        );
        let SourceEvent::Decoded { messages, decoded } = all else {
            panic!("decoded")
        };
        assert_eq!(messages, 7);
        assert_eq!(decoded.errors, ["x", "y"]);
        assert_eq!(decoded.batches.len(), 1, "one batch: each rule runs once");
        let n = decoded.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(n.values().to_vec(), [1, 2, 3, 4, 5]);
        assert_eq!(n.null_count(), 0);
    }
}
