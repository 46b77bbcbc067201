//! The durable half of an MQTT source of a qos 1 or 2 rule: its messages are logged, synced and
//! only then handed to the workers and acknowledged to the broker, on a thread of its own, so
//! the source goes on reading while a sync runs.
//!
//! Mosquitto sends a client at most `max_inflight_messages` (20) unacknowledged QoS 1 messages.
//! When the source itself logged and synced each batch before reading the next, every sync
//! was a pause in which the broker's window stayed full, and batches stayed small (about five
//! messages). Here the source hands each batch over and reads on; the log thread takes every
//! batch waiting for it, writes them, syncs once (a group commit), hands them to the workers as
//! one event and passes their acks on. A worker still sees only what is durable, so a replay
//! after a crash or a power cut gives the same results.
//!
//! When the broker's window is wide, the log thread lingers before a commit at high rates, so
//! each sync covers more messages (see [`super::pacing`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::client::Client;
use super::pacing::{Pacing, Wait};
use crate::{ConnectorError, RawMessage, SourceEvent, SourceOutput};

/// Batches handed over and not yet taken by the log thread: the source waits beyond this
/// (each batch holds at most `MAX_GATHER` messages, and the broker's window bounds them).
const HANDOFF_BATCHES: usize = 64;

/// Messages the log thread puts into one worker event at most.
const MAX_EVENT_MESSAGES: usize = 4096;

/// What the source hands the log thread: messages to log and the acks to send once they (and
/// everything before them) are durable, in the order the messages arrived.
pub(super) struct Handoff {
    /// Messages to log (empty for messages the log holds already: sent again by the broker).
    pub messages: Vec<RawMessage>,
    /// (QoS, packet id) of every message of the batch, the ones sent again included.
    pub acks: Vec<(u8, u16)>,
    /// The connection the messages came on ([`Durable::connection`]).
    pub connection: u64,
}

/// How the log thread ended.
#[derive(Clone, Debug)]
enum Ended {
    /// The rule stopped: its workers' queues closed.
    Closed,
    /// Logging or syncing failed: nothing after it may be acknowledged.
    Failed(String),
}

/// What [`Durable::next`] waited for.
pub(super) enum Next {
    /// Acks to send now.
    Acks(Vec<(u8, u16)>),
    /// The log thread ended: the source's error.
    Ended(ConnectorError),
}

/// Acks of durable messages, with the connection their messages came on.
type Acks = (u64, Vec<(u8, u16)>);

/// The log thread of one durable source, and the acks it sends back.
pub(super) struct Durable {
    tx: tokio::sync::mpsc::Sender<Handoff>,
    ended: tokio::sync::watch::Receiver<Option<Ended>>,
    /// Acks of what the log thread made durable: the source's loop writes them on its
    /// connection, several in one flush.
    acks: tokio::sync::mpsc::Receiver<Acks>,
    /// Bumped on every (re)connect and connection failure: acks of messages that came on an
    /// earlier connection are dropped. The broker sends those messages again on the new
    /// connection (flagged DUP, when it kept the session), and they are acknowledged then; an
    /// old packet id sent on a new session would acknowledge another message.
    connection: Arc<AtomicU64>,
    /// Sends acks through the client's request queue, for clients whose connection the loop
    /// cannot write to (MQTT 5).
    acker: Acker,
}

impl Durable {
    /// Starts the log thread writing through `out` and acknowledging through `client`.
    pub(super) fn start(client: Client, out: SourceOutput, topic: String) -> Durable {
        let (tx, rx) = tokio::sync::mpsc::channel::<Handoff>(HANDOFF_BATCHES);
        let (ended_tx, ended) = tokio::sync::watch::channel(None);
        let connection = Arc::new(AtomicU64::new(0));
        let acker = Acker::start(client, topic.clone());
        // A batch of acks holds at least one unacknowledged message, and the broker lets at
        // most 65,535 be unacknowledged (16-bit packet ids).
        let (acks, acks_rx) = tokio::sync::mpsc::channel::<Acks>(1 << 16);
        let pacing = Pacing::new(topic.clone());
        let spawned = std::thread::Builder::new()
            .name("mqtt-input-log".into())
            .spawn(move || {
                let end = log_thread(rx, &out, &acks, pacing, &topic);
                // The workers must look at their queues again once this thread's senders
                // are gone, or a worker that saw them empty would wait for a wake-up.
                drop(acks);
                let _ = ended_tx.send(Some(end));
                out.wake_all();
            });
        if let Err(e) = spawned {
            tracing::error!("mqtt source: the input log thread did not start: {e}");
        }
        Durable {
            tx,
            ended,
            acks: acks_rx,
            connection,
            acker,
        }
    }

    /// The current connection's number, for [`Handoff::connection`].
    pub(super) fn connection(&self) -> u64 {
        self.connection.load(Ordering::Acquire)
    }

    /// A new connection (or a failed one): acks of what came before are dropped.
    pub(super) fn reconnected(&self) {
        self.connection.fetch_add(1, Ordering::AcqRel);
    }

    /// Hands a batch to the log thread, waiting while it is behind; fails when it has ended.
    pub(super) async fn hand(&mut self, batch: Handoff) -> Result<(), ConnectorError> {
        if batch.acks.is_empty() && batch.messages.is_empty() {
            return Ok(());
        }
        match self.tx.send(batch).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.ended().await),
        }
    }

    /// Waits for acks of durable messages, and returns them with every other batch ready,
    /// those of messages from an earlier connection left out; or for the log thread's end.
    pub(super) async fn next(&mut self) -> Next {
        let first = tokio::select! {
            first = self.acks.recv() => first,
            _ = self.ended.wait_for(Option::is_some) => None,
        };
        match first {
            Some(first) => Next::Acks(self.current(Some(first))),
            None => Next::Ended(self.ended().await),
        }
    }

    /// The acks ready now (see [`Durable::next`]).
    pub(super) fn ready_acks(&mut self) -> Vec<(u8, u16)> {
        self.current(None)
    }

    /// `first` and the batches ready, in order, keeping those of the current connection.
    fn current(&mut self, first: Option<Acks>) -> Vec<(u8, u16)> {
        let now = self.connection();
        let mut out = Vec::new();
        let mut add = |(connection, acks): Acks| {
            if connection == now {
                out.extend(acks);
            }
        };
        if let Some(first) = first {
            add(first);
        }
        while let Ok(more) = self.acks.try_recv() {
            add(more);
        }
        out
    }

    /// Acknowledges `acks` through the client's request queue, from a task of its own (for
    /// a client whose connection the loop cannot write to).
    pub(super) fn ack_through_client(&self, acks: Vec<(u8, u16)>) {
        for ack in acks {
            if self.acker.tx.try_send(ack).is_err() {
                tracing::warn!(
                    "mqtt source {}: ack not sent: too many pending",
                    self.acker.topic
                );
            }
        }
    }

    /// Waits until the log thread ends, and says why as the source's error.
    pub(super) async fn ended(&mut self) -> ConnectorError {
        let end = match self.ended.wait_for(Option::is_some).await {
            Ok(end) => end.clone(),
            Err(_) => None,
        };
        match end {
            Some(Ended::Closed) => ConnectorError::Closed,
            Some(Ended::Failed(reason)) => ConnectorError::Fatal {
                connector: "mqtt".into(),
                reason: format!(
                    "the input log failed, nothing more is acknowledged: {reason} (topic {})",
                    self.acker.topic
                ),
            },
            // The thread panicked (or never started): nothing it took is acknowledged.
            None => ConnectorError::Fatal {
                connector: "mqtt".into(),
                reason: format!("the input log thread stopped (topic {})", self.acker.topic),
            },
        }
    }
}

/// The log thread: takes every batch waiting, logs and syncs them, queues them for the workers
/// and sends their acks back to the source. Returns why it ended.
fn log_thread(
    mut rx: tokio::sync::mpsc::Receiver<Handoff>,
    out: &SourceOutput,
    acks: &tokio::sync::mpsc::Sender<Acks>,
    mut pacing: Pacing,
    topic: &str,
) -> Ended {
    while let Some(first) = rx.blocking_recv() {
        // Messages of the group, each waiting for this commit to be acknowledged (QoS 0 ones
        // too: the broker does not hold them back).
        let mut unacked = first.acks.len();
        let mut batches = vec![first];
        unacked += take_waiting(&mut rx, &mut batches);
        match pacing.before_commit(unacked) {
            Wait::Now => {}
            // A plain sleep, not a wait on the queue: each batch the source hands over would
            // wake a waiting thread, and the wake-ups are what lingering saves.
            Wait::Linger(d) => {
                std::thread::sleep(d);
                let arrived = take_waiting(&mut rx, &mut batches);
                unacked += arrived;
                pacing.lingered(arrived, unacked);
            }
            Wait::Probe(d) => {
                std::thread::sleep(d);
                take_waiting(&mut rx, &mut batches);
                pacing.probed(unacked_on_last_connection(&batches));
            }
        }
        pacing.committed(unacked);
        let mut events = Vec::new();
        let mut messages: Vec<RawMessage> = Vec::new();
        for batch in &mut batches {
            if messages.len() + batch.messages.len() > MAX_EVENT_MESSAGES && !messages.is_empty() {
                events.push(SourceEvent::Raw(std::mem::take(&mut messages)));
            }
            messages.append(&mut batch.messages);
        }
        if !messages.is_empty() {
            events.push(SourceEvent::Raw(messages));
        }
        match out.blocking_send_synced(events) {
            Ok(()) => {}
            Err(ConnectorError::Closed) => return Ended::Closed,
            Err(e) => return Ended::Failed(e.to_string()),
        }
        for batch in batches {
            if !batch.acks.is_empty() && acks.try_send((batch.connection, batch.acks)).is_err() {
                tracing::warn!("mqtt source {topic}: acks not sent: too many pending");
            }
        }
    }
    Ended::Closed
}

/// Moves every batch waiting in `rx` to `batches`; returns how many messages they hold.
fn take_waiting(
    rx: &mut tokio::sync::mpsc::Receiver<Handoff>,
    batches: &mut Vec<Handoff>,
) -> usize {
    let mut messages = 0;
    while let Ok(more) = rx.try_recv() {
        messages += more.acks.len();
        batches.push(more);
    }
    messages
}

/// Messages of the batches that came on the last batch's connection: what came on an earlier
/// one, sent again on the new one, would count twice against the broker's window.
fn unacked_on_last_connection(batches: &[Handoff]) -> usize {
    let last = batches.last().map(|b| b.connection);
    batches
        .iter()
        .filter(|b| Some(b.connection) == last)
        .map(|b| b.acks.len())
        .sum()
}

/// Sends acks through the client's request queue from a task of its own: an ack waits for room
/// in that queue, which only the source's loop drains by polling, so the loop must not wait
/// for an ack.
struct Acker {
    tx: tokio::sync::mpsc::Sender<(u8, u16)>,
    task: tokio::task::JoinHandle<()>,
    topic: String,
}

impl Acker {
    fn start(client: Client, topic: String) -> Acker {
        // The broker lets at most 65,535 messages be unacknowledged (16-bit packet ids).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, u16)>(1 << 16);
        let t = topic.clone();
        let task = tokio::spawn(async move {
            while let Some((qos, pkid)) = rx.recv().await {
                if let Err(e) = client.ack(qos, pkid).await {
                    tracing::warn!("mqtt source {t}: ack not sent: {e}");
                }
            }
        });
        Acker { tx, task, topic }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u16, n: u16) -> Handoff {
        Handoff {
            messages: (first..first + n)
                .map(|i| RawMessage::new(i.to_string().into_bytes(), Arc::from("t")))
                .collect(),
            acks: (first..first + n).map(|i| (1, i)).collect(),
            connection: 0,
        }
    }

    /// Hands three batches to a log thread paced by `pacing`, the second and third as soon as
    /// it has taken the first (while it commits or lingers); returns the sizes of the worker
    /// events and every ack sent back, in order.
    fn commits(pacing: Pacing) -> (Vec<usize>, Vec<u16>) {
        let (tx, rx) = tokio::sync::mpsc::channel(HANDOFF_BATCHES);
        let (queue, mut worker) = tokio::sync::mpsc::channel(16);
        let out = SourceOutput::new(vec![queue], Arc::new(|_| {}));
        let (acks_tx, mut acks) = tokio::sync::mpsc::channel(16);
        let thread = std::thread::spawn(move || log_thread(rx, &out, &acks_tx, pacing, "t"));
        tx.blocking_send(batch(1, 3)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tx.capacity() < HANDOFF_BATCHES {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch was never taken"
            );
            std::thread::yield_now();
        }
        tx.blocking_send(batch(4, 2)).unwrap();
        tx.blocking_send(batch(6, 1)).unwrap();
        drop(tx);
        assert!(matches!(thread.join().unwrap(), Ended::Closed));
        let mut sizes = Vec::new();
        while let Ok(SourceEvent::Raw(messages)) = worker.try_recv() {
            sizes.push(messages.len());
        }
        let mut sent = Vec::new();
        while let Ok((_, batch)) = acks.try_recv() {
            sent.extend(batch.into_iter().map(|(_, pkid)| pkid));
        }
        (sizes, sent)
    }

    #[test]
    fn behind_a_wide_window_batches_handed_during_the_linger_are_one_commit() {
        // The later batches come within microseconds of the take, and the linger lasts 1 ms;
        // a test thread descheduled for longer misses it, so it has three tries. Without the
        // linger the first batch is committed alone every time.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (sizes, acks) = commits(Pacing::found(true));
            assert_eq!(acks, (1..=6).collect::<Vec<_>>());
            if sizes == [6] {
                return;
            }
            seen.push(sizes);
        }
        panic!("never one worker event for the three batches: {seen:?}");
    }

    #[test]
    fn behind_a_narrow_window_the_first_batch_commits_at_once() {
        // The take is seen when the queue's slot frees, a moment before the thread takes
        // whatever else is waiting: a thread descheduled in between takes the later batches
        // too, so this has three tries. With a linger it would take them every time.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (sizes, acks) = commits(Pacing::found(false));
            assert_eq!(sizes.iter().sum::<usize>(), 6);
            assert_eq!(acks, (1..=6).collect::<Vec<_>>());
            if sizes.first() == Some(&3) {
                return;
            }
            seen.push(sizes);
        }
        panic!("the first batch was never committed alone: {seen:?}");
    }
}
