//! The source and sink traits.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ConnectorError;

/// One message as a source received it, before decoding.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The payload bytes (a JSON object or array for FORMAT="json"), often a slice of a
    /// larger buffer (a file's read block, an MQTT packet).
    pub payload: bytes::Bytes,
    /// The topic (or path) it arrived on, for `meta(topic)`.
    pub topic: std::sync::Arc<str>,
    /// MQTT QoS it was delivered with, for `meta(qos)`.
    pub qos: Option<u8>,
    /// MQTT packet id, for `meta(messageid)`.
    pub message_id: Option<u16>,
}

impl RawMessage {
    /// A message without MQTT metadata.
    pub fn new(payload: impl Into<bytes::Bytes>, topic: std::sync::Arc<str>) -> Self {
        RawMessage {
            payload: payload.into(),
            topic,
            qos: None,
            message_id: None,
        }
    }
}

/// What a source hands to the runtime.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// Undecoded messages; decoded on the workers.
    Raw(Vec<RawMessage>),
    /// Undecoded messages one per line (a file's read block, cut at a line end): the workers
    /// split and decode them, so the reader does no per-line work. Blank lines are skipped.
    Lines {
        /// Whole lines, each ended by `\n` (the last one may be unended).
        block: bytes::Bytes,
        /// Where they came from, for `meta(topic)`.
        topic: std::sync::Arc<str>,
    },
    /// Rows that are already Arrow (e.g. from a memory topic another rule publishes to).
    Batch(RecordBatch),
    /// Messages decoded once for every rule of a shared stream: the rows (metadata columns
    /// included) and the failures, which each rule counts as its own.
    Decoded {
        /// How many messages were decoded.
        messages: usize,
        /// The rows and the per-message failures.
        decoded: std::sync::Arc<crate::codec::json::Decoded>,
    },
    /// An event written to the rule's input log (qos 1 and 2) before the worker got it.
    Logged {
        /// Its sequence number in the worker's log: the worker's position once it is through.
        seq: u64,
        /// The processing time (ms) it was logged at; it keeps it when replayed.
        at: u64,
        /// The event itself.
        event: Box<SourceEvent>,
    },
}

impl SourceEvent {
    /// Raw messages (`Raw`, `Lines`) decoded once into a `Decoded` event, to be passed on to
    /// rules that then skip decoding; rows are returned as they are.
    pub fn decoded_with(self, decoder: &crate::codec::Decoder) -> SourceEvent {
        match self {
            e @ (SourceEvent::Raw(_) | SourceEvent::Lines { .. }) => {
                let (messages, decoded) = e.decode(decoder);
                SourceEvent::Decoded { messages, decoded }
            }
            e => e,
        }
    }

    /// The undecoded messages of a `Raw` or `Lines` event, one per message; None for rows.
    pub fn into_messages(self) -> Option<Vec<RawMessage>> {
        match self {
            SourceEvent::Raw(messages) => Some(messages),
            SourceEvent::Lines { block, topic } => Some(
                crate::codec::flat::lines(&block)
                    .map(|(start, end)| RawMessage::new(block.slice(start..end), topic.clone()))
                    .collect(),
            ),
            SourceEvent::Batch(_) | SourceEvent::Decoded { .. } => None,
            SourceEvent::Logged { event, .. } => event.into_messages(),
        }
    }

    /// The event's rows: raw messages decoded with `decoder`, Arrow rows as they are, rows
    /// decoded upstream as they came. Returns how many messages (or rows) the event held.
    pub fn decode(
        self,
        decoder: &crate::codec::Decoder,
    ) -> (usize, std::sync::Arc<crate::codec::json::Decoded>) {
        match self {
            SourceEvent::Raw(messages) => (
                messages.len(),
                std::sync::Arc::new(decoder.decode(&messages)),
            ),
            SourceEvent::Lines { block, topic } => {
                let (messages, decoded) = decoder.decode_lines(&block, &topic);
                (messages, std::sync::Arc::new(decoded))
            }
            SourceEvent::Batch(b) => (
                b.num_rows(),
                std::sync::Arc::new(crate::codec::json::Decoded {
                    batches: vec![b],
                    errors: Vec::new(),
                }),
            ),
            SourceEvent::Decoded { messages, decoded } => (messages, decoded),
            SourceEvent::Logged { event, .. } => event.decode(decoder),
        }
    }
}

/// Wakes the consumer of worker `i`'s queue after an event was queued for it.
pub type WakeFn = std::sync::Arc<dyn Fn(usize) + Send + Sync>;

/// Where a source writes: one bounded queue per dataflow worker, filled round-robin, so rows
/// are spread across workers. `send` waits while the rule is behind (back-pressure).
#[derive(Clone)]
pub struct SourceOutput {
    queues: Vec<mpsc::Sender<SourceEvent>>,
    wake: WakeFn,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set when one worker reads every row: a source that has a thread of its own may decode
    /// there (see [`SourceOutput::predecode`]), in parallel with the worker.
    decoder: Option<crate::codec::Decoder>,
    /// Set for rules that checkpoint: every event is made durable here before a worker sees it.
    log: Option<std::sync::Arc<dyn EventLog>>,
    /// Shared by the outputs that write one worker's log and queue (a rule's FROM stream and
    /// the streams joined to it): one logs and queues at a time, so the queue holds the
    /// events in the order of their log positions.
    order: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// Where a rule's events are made durable before a worker sees them (qos 1 and 2).
pub trait EventLog: Send + Sync {
    /// Logs `event` for `worker` (synced to disk) and returns it as the worker gets it. Blocks.
    /// `mark`: the source's position after the event (see [`EventLog::log_place`]), written in
    /// the same record, so the log and the position never disagree.
    fn log(
        &self,
        worker: usize,
        event: SourceEvent,
        mark: Option<&[u8]>,
    ) -> Result<SourceEvent, ConnectorError>;

    /// Logs where `event` lies in an input the source can read again (`mark`: the file source's
    /// cursor), for `worker`, and returns the event as the worker gets it. The event itself is
    /// written only when `keep` (its input will not be there to read again). Not synced: nothing
    /// was promised to anybody, and the log is synced before a checkpoint that counts the
    /// record commits (or by [`EventLog::sync`]). Blocks. The default logs the whole event
    /// with its mark, as [`EventLog::log`] does: safe for a log that cannot read inputs again.
    fn log_place(
        &self,
        worker: usize,
        event: SourceEvent,
        mark: &[u8],
        keep: bool,
    ) -> Result<SourceEvent, ConnectorError> {
        let _ = keep;
        self.log(worker, event, Some(mark))
    }

    /// Logs `event` for `worker` as [`EventLog::log`] does, without syncing it: it is durable
    /// once a later [`EventLog::sync`] returns, and neither a worker sees it nor its source
    /// acknowledges it before then. Blocks. The default syncs, which is as safe and slower.
    fn log_unsynced(
        &self,
        worker: usize,
        event: SourceEvent,
    ) -> Result<SourceEvent, ConnectorError> {
        self.log(worker, event, None)
    }

    /// Makes everything logged so far durable. Blocks.
    fn sync(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The mark of each worker's last logged record that has one (from this run or an earlier
    /// one). Reads the disk: call it once, at start.
    fn marks(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// The raw messages of the last `limit` records of each worker's log (from this run or an
    /// earlier one): what a source that acknowledges after logging may be sent again.
    fn recent(&self, limit: usize) -> Vec<RawMessage> {
        let _ = limit;
        Vec::new()
    }
}

impl std::fmt::Debug for SourceOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceOutput")
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl SourceOutput {
    /// Wraps the runtime's per-worker senders and the function that wakes a worker.
    pub fn new(queues: Vec<mpsc::Sender<SourceEvent>>, wake: WakeFn) -> Self {
        assert!(
            !queues.is_empty(),
            "a source needs at least one worker queue"
        );
        SourceOutput {
            queues,
            wake,
            next: Default::default(),
            decoder: None,
            log: None,
            order: None,
        }
    }

    /// Logs and queues under `lock`, which other outputs into the same worker queues share:
    /// a worker skips an event whose log position is behind one it already took, so the
    /// events of several writers must reach its queue in log order.
    pub fn with_order(mut self, lock: std::sync::Arc<tokio::sync::Mutex<()>>) -> Self {
        self.order = Some(lock);
        self
    }

    /// Logs every event in `log` before it is queued: a source's `send` returns once the event
    /// is durable, so what it acknowledges afterwards is kept across a crash.
    pub fn with_log(mut self, log: std::sync::Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// True once every worker's queue is closed: the rule stopped, nothing more is taken.
    pub fn is_closed(&self) -> bool {
        self.queues.iter().all(|q| q.is_closed())
    }

    /// True when events are logged before they are queued: a source that can acknowledge
    /// its input should do so only after `send` returns.
    pub fn is_logged(&self) -> bool {
        self.log.is_some()
    }

    /// The raw messages of the last `limit` records of each worker's input log (none without
    /// a log). Reads the disk: call it once, at start.
    pub fn recently_logged(&self, limit: usize) -> Vec<RawMessage> {
        self.log.as_ref().map_or_else(Vec::new, |l| l.recent(limit))
    }

    /// The event as logged for worker `i` (with the source's position after it, `mark`), or
    /// as it is when the rule keeps no log. Blocking I/O: on the async runtime it runs in
    /// place of a worker thread's other tasks.
    fn logged(
        &self,
        i: usize,
        event: SourceEvent,
        mark: Option<&[u8]>,
    ) -> Result<SourceEvent, ConnectorError> {
        match &self.log {
            None => Ok(event),
            Some(log) => blocking_io(|| log.log(i, event, mark)),
        }
    }

    /// The marks of the last marked records of the input log (none without a log): where a
    /// source that re-reads its input (the file source) had got to. Reads the disk: call it
    /// once, at start.
    pub fn logged_marks(&self) -> Vec<Vec<u8>> {
        self.log.as_ref().map_or_else(Vec::new, |l| l.marks())
    }

    /// Lets sources decode before sending. The engine sets it for rules whose rows one worker
    /// reads in order (event time and the like): that worker would otherwise decode every
    /// row while the others wait for its output.
    pub fn with_decoder(mut self, decoder: crate::codec::Decoder) -> Self {
        self.decoder = Some(decoder);
        self
    }

    /// The event decoded here when a decoder is set (raw messages only) and the worker is
    /// behind, else as it is. Meant for a source's own blocking thread, never the async
    /// runtime's.
    ///
    /// The worker decodes what arrives undecoded, so the decoding shifts to whichever of the
    /// two threads has room: while the next queue is less than half full the worker keeps up
    /// and takes the decoding itself; once it fills, this thread takes it. The order of
    /// events is the same either way.
    pub fn predecode(&self, event: SourceEvent) -> SourceEvent {
        if self.log.is_some() {
            // Logged events are raw: decoded rows cannot be written to the log.
            return event;
        }
        let i = self.next.load(std::sync::atomic::Ordering::Relaxed) % self.queues.len();
        self.decoded_for(i, event)
    }

    /// The event decoded here for queue `i` when a decoder is set and that queue's worker is
    /// behind (see [`SourceOutput::predecode`]).
    fn decoded_for(&self, i: usize, event: SourceEvent) -> SourceEvent {
        let queue = &self.queues[i];
        match &self.decoder {
            Some(d) if queue.capacity() * 2 <= queue.max_capacity() => event.decoded_with(d),
            _ => event,
        }
    }

    /// Sends an event to the next worker, waiting for room; fails when the rule has stopped.
    pub async fn send(&self, event: SourceEvent) -> Result<(), ConnectorError> {
        let _turn = match &self.order {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.queues.len();
        let event = self.logged(i, event, None)?;
        self.queues[i]
            .send(event)
            .await
            .map_err(|_| ConnectorError::Closed)?;
        (self.wake)(i);
        Ok(())
    }

    /// Logs `events` in order, each for the next worker, without syncing them one by one; then
    /// syncs the log once and queues them, waiting for room. So a source that acknowledges its
    /// input once this returns pays one sync for everything it gathered while the last call
    /// ran, and a worker sees only durable events. Without a log, a plain send. For a source's
    /// own blocking thread (never the async runtime's).
    pub fn blocking_send_synced(&self, events: Vec<SourceEvent>) -> Result<(), ConnectorError> {
        let _turn = self.order.as_ref().map(|l| l.blocking_lock());
        let n = self.queues.len();
        let mut ready = Vec::with_capacity(events.len());
        for event in events {
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
            ready.push(match &self.log {
                Some(log) => (i, log.log_unsynced(i, event)?),
                None => (i, event),
            });
        }
        // Also with no events: what is acknowledged next may be a record of an earlier call,
        // or of the last run, that no sync covered yet.
        if let Some(log) = &self.log {
            log.sync()?;
        }
        for (i, event) in ready {
            self.queues[i]
                .blocking_send(event)
                .map_err(|_| ConnectorError::Closed)?;
            (self.wake)(i);
        }
        Ok(())
    }

    /// Wakes every worker this output writes to: after a writer of its queues is gone, a
    /// worker that found its queue empty must look again.
    pub fn wake_all(&self) {
        for i in 0..self.queues.len() {
            (self.wake)(i);
        }
    }

    /// Sends an event to the next worker if its queue has room now; gives the event back when
    /// it is full, and fails when the rule has stopped.
    pub fn try_send(&self, event: SourceEvent) -> Result<(), TrySend> {
        // Another writer's turn: like a full queue, the event is given back unlogged.
        let _turn = match self.order.as_ref().map(|l| l.try_lock()) {
            Some(Err(_)) => return Err(TrySend::Full(event)),
            Some(Ok(guard)) => Some(guard),
            None => None,
        };
        let i = self.next.load(std::sync::atomic::Ordering::Relaxed) % self.queues.len();
        let event = if self.log.is_some() {
            // Logged only once there is room, so an event given back is not in the log.
            if self.queues[i].capacity() == 0 {
                return Err(TrySend::Full(event));
            }
            match self.logged(i, event, None) {
                Ok(logged) => logged,
                Err(e) => {
                    tracing::error!("event not logged, the source stops: {e}");
                    return Err(TrySend::Closed);
                }
            }
        } else {
            event
        };
        match self.queues[i].try_send(event) {
            Ok(()) => {
                self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (self.wake)(i);
                Ok(())
            }
            // A logged event is not given back: it would be logged twice. The rule's source is
            // its queues' only writer, so a full queue here means the rule stopped reading; the
            // event is in the log and is read again from there.
            Err(mpsc::error::TrySendError::Full(_)) if self.log.is_some() => Err(TrySend::Closed),
            Err(mpsc::error::TrySendError::Full(e)) => Err(TrySend::Full(e)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TrySend::Closed),
        }
    }

    /// [`SourceOutput::send`] for a source's own blocking thread (never the async runtime's):
    /// the thread waits for room itself, with no async task between it and the workers.
    pub fn blocking_send(&self, event: SourceEvent) -> Result<(), ConnectorError> {
        self.blocking_send_as(event, |i, event| self.logged(i, event, None))
    }

    /// [`SourceOutput::blocking_send`] for a source that reads its input again after a restart
    /// (the file source): the log records only `mark`, where the event lies in the input, and
    /// the event itself only when `keep` (see [`EventLog::log_place`]). Without a log it is a
    /// plain send. An event the log does not hold may be decoded on the caller's thread, as
    /// [`SourceOutput::predecode`] does; the worker decodes it when it is read again.
    pub fn blocking_send_place(
        &self,
        event: SourceEvent,
        mark: &[u8],
        keep: bool,
    ) -> Result<(), ConnectorError> {
        self.blocking_send_as(event, |i, event| {
            let event = match &self.log {
                None => event,
                Some(log) => blocking_io(|| log.log_place(i, event, mark, keep))?,
            };
            Ok(match event {
                SourceEvent::Logged { seq, at, event } if !keep => SourceEvent::Logged {
                    seq,
                    at,
                    event: Box::new(self.decoded_for(i, *event)),
                },
                e => e,
            })
        })
    }

    /// Queues `event` for the next worker `i`, as `prepare(i, event)` makes it (logged, say),
    /// in turn with the other writers of the same queues, waiting for room on the caller's
    /// blocking thread.
    fn blocking_send_as(
        &self,
        event: SourceEvent,
        prepare: impl FnOnce(usize, SourceEvent) -> Result<SourceEvent, ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let _turn = self.order.as_ref().map(|l| l.blocking_lock());
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.queues.len();
        let event = prepare(i, event)?;
        self.queues[i]
            .blocking_send(event)
            .map_err(|_| ConnectorError::Closed)?;
        (self.wake)(i);
        Ok(())
    }

    /// Makes what was logged so far durable (nothing without a log): before a source does
    /// something it cannot take back, such as moving away a file whose events the log holds.
    pub fn sync_log(&self) -> Result<(), ConnectorError> {
        match &self.log {
            None => Ok(()),
            Some(log) => blocking_io(|| log.sync()),
        }
    }
}

/// Runs blocking I/O: on the multi-threaded async runtime, in place of a worker thread's other
/// tasks.
fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Why [`SourceOutput::try_send`] did not send.
#[derive(Debug)]
pub enum TrySend {
    /// The worker's queue is full; the event is given back.
    Full(SourceEvent),
    /// The rule has stopped.
    Closed,
}

/// A source of messages for one rule (or, for shared streams, several).
#[async_trait]
pub trait Source: Send {
    /// Produces events until the input ends (`Ok`) or fails. Cancellation is by dropping the task.
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError>;

    /// The live connection state, for sources that hold a connection (eKuiper's
    /// `connection_status` metrics); `None` for in-process sources.
    fn connection(&self) -> Option<std::sync::Arc<crate::mqtt::ConnectionState>> {
        None
    }
}

/// A destination for rule results. Receives whole batches.
#[async_trait]
pub trait Sink: Send {
    /// Connects before the first batch.
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Writes one batch of result rows (one emission of the rule).
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;

    /// True when the sink can write already-encoded payloads (`dataTemplate` output).
    fn accepts_payloads(&self) -> bool {
        false
    }

    /// Writes encoded payloads, one message each (the result of a `dataTemplate`). Only called
    /// when [`Sink::accepts_payloads`] is true.
    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let _ = payloads;
        Err(ConnectorError::Config {
            connector: "sink",
            reason: "this sink writes rows, not encoded payloads".into(),
        })
    }

    /// Writes the payloads a `dataTemplate` rendered from `batch` (one per row with
    /// `sendSingle`, else one for the batch). Sinks whose properties depend on the rows (the
    /// rest sink's templated `url`) read them from `batch`; by default the payloads are
    /// written as they are.
    async fn collect_rendered(
        &mut self,
        batch: &RecordBatch,
        payloads: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        let _ = batch;
        self.collect_payloads(payloads).await
    }

    /// Flushes and releases resources when the rule stops.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Called once before the first write when the host keeps failed writes in a sink cache
    /// (`enableCache`): a sink that would otherwise wait for its far end to come back fails
    /// at once instead, so that the cache holds the results and the rule keeps reading.
    fn fail_fast(&mut self) {}

    /// True when the sink can write a checkpoint's rows together with the checkpoint's epoch
    /// in one transaction of its far end ([`Sink::commit_epoch`]): what exactly-once
    /// delivery (rule option `qos` 2) needs.
    fn transactional(&self) -> bool {
        false
    }

    /// The last epoch [`Sink::commit_epoch`] recorded for `id` at the far end (0: none).
    async fn committed_epoch(&mut self, id: &str) -> Result<u64, ConnectorError> {
        let _ = id;
        Err(not_transactional())
    }

    /// Writes `batches` and records `epoch` as `id`'s last committed epoch, in one
    /// transaction: all of it lands or none of it does. A batch the far end refuses (a
    /// constraint, a type) is left out and named in the answer, as a plain write would count
    /// it; an error means nothing was written and the call can be repeated.
    async fn commit_epoch(
        &mut self,
        id: &str,
        epoch: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<Refused>, ConnectorError> {
        let _ = (id, epoch, batches);
        Err(not_transactional())
    }
}

/// A batch of an epoch the far end refused: its index among the epoch's batches, its rows
/// and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The batch's index in the call.
    pub batch: usize,
    /// Rows not written.
    pub rows: usize,
    /// The far end's reason.
    pub reason: String,
}

fn not_transactional() -> ConnectorError {
    ConnectorError::Config {
        connector: "sink",
        reason: "this sink cannot write in transactions with an epoch (qos 2)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn lines(n: usize) -> SourceEvent {
        let text: String = (0..n).map(|i| format!("{{\"v\": {i}}}\n")).collect();
        SourceEvent::Lines {
            block: text.into(),
            topic: "t".into(),
        }
    }

    #[test]
    fn predecode_takes_the_decoding_only_while_the_worker_is_behind() {
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let decoder =
            crate::codec::Decoder::new(&crate::codec::Format::Json, Some(schema), false).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let out =
            SourceOutput::new(vec![tx], std::sync::Arc::new(|_| {})).with_decoder(decoder.clone());
        let mut kinds = Vec::new();
        for i in 0..4 {
            let event = out.predecode(lines(3));
            kinds.push(matches!(event, SourceEvent::Decoded { .. }));
            out.blocking_send(event).expect("room for four");
            assert_eq!(rx.len(), i + 1);
        }
        // Empty and one queued: the worker keeps up and decodes; two and three queued (at
        // least half of four): the reader decodes.
        assert_eq!(kinds, [false, false, true, true]);
        // The worker gets the same rows either way.
        for _ in 0..4 {
            let (messages, decoded) = rx.try_recv().expect("queued").decode(&decoder);
            assert_eq!(messages, 3);
            assert_eq!(decoded.rows(), 3);
        }
        // Without a decoder nothing is decoded ahead.
        let (tx, _rx) = mpsc::channel(1);
        let out = SourceOutput::new(vec![tx], std::sync::Arc::new(|_| {}));
        assert!(matches!(out.predecode(lines(1)), SourceEvent::Lines { .. }));
    }
}
