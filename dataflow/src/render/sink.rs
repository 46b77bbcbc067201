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
) {
    let mut senders: Vec<mpsc::Sender<RecordBatch>> = rule.sinks.clone();
    // eKuiper sends each row `unnest` produces as an emission of its own.
    let split_rows = rule.plan.has_unnest();
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        Pipeline,
        "Sink",
        move |cap, info| {
            let retry = scope.activator_for(info.address.clone());
            // Held until every batch is handed over, so the dataflow is not retired early.
            let mut cap = Some(cap);
            let mut stash: VecDeque<(usize, RecordBatch)> = VecDeque::new();
            move |(input, frontier), _output| {
                input.for_each(|_time, data| {
                    if let Some(batch) = data.0.take() {
                        let parts: Vec<RecordBatch> = if split_rows {
                            (0..batch.num_rows()).map(|r| batch.slice(r, 1)).collect()
                        } else {
                            vec![batch]
                        };
                        for (k, part) in parts.into_iter().enumerate() {
                            for i in 0..senders.len() {
                                // The operator counted one delivery per batch and sink.
                                if k > 0 {
                                    pending.set(pending.get() + 1);
                                }
                                stash.push_back((i, part.clone()));
                            }
                        }
                    }
                });
                while let Some((i, batch)) = stash.pop_front() {
                    match senders[i].try_send(batch) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(batch)) => {
                            stash.push_front((i, batch));
                            break;
                        }
                        // The sink task has stopped: nothing will read this batch.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                    pending.set(pending.get().saturating_sub(1));
                }
                if !stash.is_empty() {
                    retry.activate_after(RETRY);
                } else if frontier.is_empty() && cap.is_some() {
                    cap = None;
                    // Input ended and everything is handed over: let the sink tasks finish.
                    senders.clear();
                }
            }
        },
    );
}
