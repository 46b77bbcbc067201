//! The window stage: open windows of this worker's groups, closed as time passes.

use std::sync::Arc;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use arrow::record_batch::RecordBatch;

use crate::checkpoint::Checkpointing;
use crate::checkpoint::coordinator::window_part;
use crate::container::ArrowBatch;
use crate::metrics::NodeMetrics;
use crate::window::Windows;

/// The window operator: keeps the open windows of this worker's groups and emits each closed
/// window at time `end - 1`, the same time on every worker, so the gathering operator can
/// merge one window's results from all workers into one emission.
pub(super) fn render_window<'s, P>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut windows: Windows,
    (metrics, node): (Arc<NodeMetrics>, usize),
    pact: P,
    to_windows: Arc<std::sync::atomic::AtomicUsize>,
    (rule, fault): super::RunContext,
    (ckpt, event_time): (Option<Arc<Checkpointing>>, bool),
) -> Stream<'s, u64, ArrowBatch>
where
    P: timely::dataflow::channels::pact::ParallelizationContract<u64, ArrowBatch>,
{
    let worker = stream.scope().index();
    let part = window_part(node, worker);
    // Windows that were open at the checkpoint this run resumes from.
    let mut restored = false;
    if let Some(c) = &ckpt {
        c.register(part.clone());
        match c.restored(&part) {
            Ok(None) => {}
            Ok(Some(state)) => match windows.load(&state) {
                Ok(()) => restored = !windows.is_idle(),
                Err(e) => fault.fail(&format!("cannot restore the checkpoint: {e}")),
            },
            Err(e) => fault.fail(&format!("cannot restore the checkpoint: {e}")),
        }
    }
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        pact,
        "Window",
        move |cap, _info| {
            let to_windows = to_windows.clone();
            // The earliest time this operator may still emit at; restored windows need one
            // from the start.
            let mut held: Option<Capability<u64>> = restored.then_some(cap);
            // Dropped (with every open window) when the rule fails.
            let mut windows = Some(windows);
            // Rows at or after a pending checkpoint's time, held back until the checkpoint
            // has this operator's state without them.
            let mut stash: Vec<(Capability<u64>, RecordBatch)> = Vec::new();
            // The checkpoint this worker's windows have saved their part of.
            let mut saved_epoch = 0u64;
            move |(input, frontier), output| {
                let mut emitted = 0usize;
                let started = Instant::now();
                let mut rows_in = 0usize;
                let pending = ckpt.as_ref().and_then(|c| c.pending());
                let mut arrived: Vec<(Capability<u64>, RecordBatch)> = Vec::new();
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    rows_in += batch.num_rows();
                    super::rows_taken(&to_windows, batch.num_rows());
                    let Some(cap) = time.retain_least(0) else {
                        return;
                    };
                    if held.as_ref().is_none_or(|h| cap.time() < h.time()) {
                        held = Some(cap.clone());
                    }
                    arrived.push((cap, batch));
                });
                // Rows at or after the pending checkpoint wait until the state is saved.
                let split =
                    |rows: Vec<(Capability<u64>, RecordBatch)>,
                     stash: &mut Vec<(Capability<u64>, RecordBatch)>| {
                        match pending {
                            Some((epoch, t)) if epoch > saved_epoch => {
                                let (later, now): (Vec<_>, Vec<_>) =
                                    rows.into_iter().partition(|(c, _)| *c.time() >= t);
                                stash.extend(later);
                                now
                            }
                            _ => rows,
                        }
                    };
                let mut ready = split(std::mem::take(&mut stash), &mut stash);
                ready.extend(split(arrived, &mut stash));
                if fault.failed() {
                    // The rule failed: its windows and their rows go, time is let go of.
                    windows = None;
                    held = None;
                    stash.clear();
                    return;
                }
                let Some(windows) = windows.as_mut() else {
                    return;
                };
                let f = frontier.frontier().iter().next().copied();
                // Inserts rows, then closes the windows that time `upto` closes.
                let mut run = |rows: Vec<(Capability<u64>, RecordBatch)>,
                               upto: Option<u64>,
                               windows: &mut Windows,
                               emitted: &mut usize| {
                    for (time, batch) in rows {
                        let closed = fault
                            .contain("the window operator", || {
                                quiver_compiler::eval::with_rule_context(&rule, || {
                                    windows.insert(&batch)
                                })
                            })
                            .unwrap_or_default();
                        for e in closed {
                            *emitted += e.batch.num_rows();
                            output
                                .session(&time)
                                .give_container(&mut ArrowBatch(Some(e.batch)));
                        }
                    }
                    let Some(upto) = upto else { return };
                    // In event time the dataflow's time is twice the watermark.
                    let upto = if event_time {
                        crate::event_time::watermark_of(upto)
                    } else {
                        upto
                    };
                    let closes = fault
                        .contain("the window operator", || {
                            quiver_compiler::eval::with_rule_context(&rule, || {
                                windows.advance(upto)
                            })
                        })
                        .unwrap_or_default();
                    for e in closes {
                        let Some(h) = held.as_ref() else { break };
                        let end = e.end.max(1) as u64 - 1;
                        let end = if event_time {
                            crate::event_time::time_of(end)
                        } else {
                            end
                        };
                        let at = end.max(*h.time());
                        let cap = h.delayed(&at);
                        *emitted += e.batch.num_rows();
                        output
                            .session(&cap)
                            .give_container(&mut ArrowBatch(Some(e.batch)));
                    }
                };
                run(ready, None, windows, &mut emitted);
                // Every row before the pending checkpoint is in: close what it closes, save.
                if let (Some((epoch, t)), Some(c)) = (pending, ckpt.as_ref())
                    && epoch > saved_epoch
                    && f.is_none_or(|f| f >= t)
                {
                    run(Vec::new(), Some(t), windows, &mut emitted);
                    saved_epoch = epoch;
                    match windows.save() {
                        Ok(state) => {
                            tracing::debug!(part = %part, epoch, time = t, rows = ?state.batches.iter().map(|(n, b)| (n.clone(), b.num_rows())).collect::<Vec<_>>(), "window state saved");
                            c.report(epoch, &part, Some(state))
                        }
                        Err(e) => fault.fail(&format!("cannot save a checkpoint: {e}")),
                    }
                    let later = std::mem::take(&mut stash);
                    run(later, None, windows, &mut emitted);
                }
                run(
                    Vec::new(),
                    Some(f.unwrap_or(u64::MAX)),
                    windows,
                    &mut emitted,
                );
                let bad = windows.take_bad_rows();
                if bad > 0 {
                    metrics.exceptions(bad, "run Aggregate error: a value of the wrong type");
                }
                if rows_in > 0 || emitted > 0 {
                    metrics.batch(rows_in, emitted, started);
                }
                match (f, !windows.is_idle()) {
                    (Some(t), true) => {
                        if let Some(h) = held.as_mut()
                            && t > *h.time()
                        {
                            h.downgrade(&t);
                        }
                    }
                    _ => held = None,
                }
            }
        },
    )
}
