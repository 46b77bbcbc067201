//! The sink stage: hands result batches to the rule's sink queues without blocking.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use arrow::record_batch::RecordBatch;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use tokio::sync::mpsc;

use super::{RETRY, RuleDataflow};
use crate::container::ArrowBatch;

/// The sink operator: hands result batches to the sink tasks without ever blocking the worker.
pub(super) fn render_sink(
    stream: Stream<'_, u64, ArrowBatch>,
    rule: &RuleDataflow,
    pending: Rc<Cell<usize>>,
    split_rows: bool,
) {
    let mut stash = SinkStash::new(rule.sinks.clone());
    let scope = stream.scope();
    let worker = scope.index();
    let ckpt = rule.checkpoint.clone();
    if ckpt.as_ref().is_some_and(|c| c.exactly_once()) {
        stash.worker = Some(worker);
    }
    if let Some(c) = &ckpt {
        for sink in 0..stash.sinks() {
            c.register(crate::checkpoint::coordinator::sink_part(sink, worker));
        }
    }
    // The checkpoint whose marker this worker has sent its sinks.
    let mut marked = 0u64;
    // qos 2: results at or after the pending checkpoint's time, held until its marker is
    // sent, so each sink task can tell the rows of one checkpoint from the next's.
    let exactly_once = ckpt.as_ref().is_some_and(|c| c.exactly_once());
    let mut held: Vec<(u64, RecordBatch)> = Vec::new();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        Pipeline,
        "Sink",
        move |cap, info| {
            let retry = scope.activator_for(info.address.clone());
            // Held until every batch is handed over, so the dataflow is not retired early.
            let mut cap = Some(cap);
            move |(input, frontier), _output| {
                input.for_each(|time, data| {
                    if let Some(batch) = data.0.take() {
                        // Read per batch: a checkpoint may start while this runs.
                        let at = time.least().copied().unwrap_or(0);
                        let hold = exactly_once
                            && ckpt
                                .as_ref()
                                .and_then(|c| c.pending_time())
                                .is_some_and(|t| at >= t);
                        if hold {
                            // Not counted as waiting for the sinks meanwhile: the source must
                            // read on, or time would not reach the checkpoint that releases it.
                            pending.set(pending.get().saturating_sub(stash.sinks()));
                            held.push((at, batch));
                        } else {
                            hand(&mut stash, &pending, split_rows, batch);
                        }
                    }
                });
                // Held for a checkpoint given up without its marker: those before the one now
                // pending go ahead of its marker.
                release(&mut held, &ckpt, marked, &mut stash, &pending, split_rows);
                // Every result before the pending checkpoint is in the stash or handed over: a
                // marker behind them tells each sink task to report once it has written them.
                if let Some((epoch, t)) = ckpt.as_ref().and_then(|c| c.pending())
                    && epoch > marked
                    && !frontier.less_than(&t)
                {
                    marked = epoch;
                    pending.set(pending.get() + stash.sinks());
                    stash.push(&crate::checkpoint::marker(epoch, worker));
                }
                // After the marker: everything held.
                release(&mut held, &ckpt, marked, &mut stash, &pending, split_rows);
                let handed = stash.flush();
                pending.set(pending.get().saturating_sub(handed));
                if !stash.is_empty() || !held.is_empty() {
                    retry.activate_after(RETRY);
                } else if frontier.is_empty() && cap.is_some() {
                    cap = None;
                    // Input ended and everything is handed over: let the sink tasks finish.
                    stash.close();
                }
            }
        },
    );
}

/// Hands over the held results that no pending checkpoint's marker must precede: those before
/// the pending checkpoint whose marker is not out yet, or all of them.
fn release(
    held: &mut Vec<(u64, RecordBatch)>,
    ckpt: &Option<std::sync::Arc<crate::checkpoint::Checkpointing>>,
    marked: u64,
    stash: &mut SinkStash,
    pending: &Cell<usize>,
    split_rows: bool,
) {
    if held.is_empty() {
        return;
    }
    let upto = match ckpt.as_ref().and_then(|c| c.pending()) {
        Some((epoch, t)) if epoch > marked => t,
        _ => u64::MAX,
    };
    let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(held)
        .into_iter()
        .partition(|(at, _)| *at < upto);
    *held = keep;
    for (_, batch) in go {
        pending.set(pending.get() + stash.sinks());
        hand(stash, pending, split_rows, batch);
    }
}

/// Puts one result batch in the stash for every sink (row by row under `split_rows`),
/// tagged with the worker at qos 2.
fn hand(stash: &mut SinkStash, pending: &Cell<usize>, split_rows: bool, batch: RecordBatch) {
    let parts: Vec<RecordBatch> = if split_rows {
        (0..batch.num_rows()).map(|r| batch.slice(r, 1)).collect()
    } else {
        vec![batch]
    };
    for (k, part) in parts.into_iter().enumerate() {
        // The operator counted one delivery per batch and sink.
        if k > 0 {
            pending.set(pending.get() + stash.sinks());
        }
        let part = match stash.worker {
            Some(w) => crate::checkpoint::marker::tag(part, w),
            None => part,
        };
        stash.push(&part);
    }
}

/// A rule's sink queues on one worker and the results they have not taken yet. A timely
/// operator never blocks its worker: what a full queue refuses waits here, in order, and is
/// offered again on the next activation.
pub(crate) struct SinkStash {
    senders: Vec<mpsc::Sender<RecordBatch>>,
    waiting: VecDeque<(usize, RecordBatch)>,
    /// qos 2: the worker each batch is tagged with.
    worker: Option<usize>,
}

impl SinkStash {
    /// A stash in front of `senders` (one per action).
    pub(crate) fn new(senders: Vec<mpsc::Sender<RecordBatch>>) -> Self {
        SinkStash {
            senders,
            waiting: VecDeque::new(),
            worker: None,
        }
    }

    /// The number of sinks.
    pub(crate) fn sinks(&self) -> usize {
        self.senders.len()
    }

    /// Queues `batch` for every sink.
    pub(crate) fn push(&mut self, batch: &RecordBatch) {
        for i in 0..self.senders.len() {
            self.waiting.push_back((i, batch.clone()));
        }
    }

    /// Hands waiting batches to the sink queues until one is full; returns how many left the
    /// stash (a batch for a sink task that has stopped is dropped: nothing will read it).
    pub(crate) fn flush(&mut self) -> usize {
        let mut handed = 0;
        while let Some((i, batch)) = self.waiting.pop_front() {
            match self.senders[i].try_send(batch) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => handed += 1,
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    self.waiting.push_front((i, batch));
                    break;
                }
            }
        }
        handed
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// True when at least `MAX_PENDING_BATCHES` per sink wait: the reader should stop.
    pub(crate) fn blocked(&self) -> bool {
        self.waiting.len() >= super::MAX_PENDING_BATCHES * self.senders.len().max(1)
    }

    /// Drops the sink queues, so the sink tasks see the end of their input.
    pub(crate) fn close(&mut self) {
        self.senders.clear();
    }
}
