//! The source operator: drains a worker's ingest queue, decodes, runs the fused chain.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::TS_COLUMN;
use quiver_connectors::SourceEvent;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use tokio::sync::mpsc;

use super::{EVENTS_PER_ACTIVATION, MAX_PENDING_BATCHES, MAX_ROWS_TO_WINDOWS, RETRY, RuleDataflow};
use crate::chain::{Chain, run_chain};
use crate::container::ArrowBatch;
use crate::operators::watermark::Watermark;

fn add_column(batch: RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
    quiver_connectors::codec::json::add_column(batch, name, col)
}

/// The source operator: drains this worker's ingest queue, decodes, runs the fused chain.
/// `tick`: for processing-time windows, how often time must advance without input, so
/// windows close on time. `deliveries`: whether the chain's output goes straight to sinks.
pub(super) fn render_source<'s>(
    scope: Scope<'s, u64>,
    rule: &RuleDataflow,
    mut chain: Chain,
    pending: Rc<Cell<usize>>,
    tick: Option<u64>,
    stamps_time: bool,
    deliveries: bool,
) -> Stream<'s, u64, ArrowBatch> {
    let worker = scope.index();
    let mut rx = rule.ingest.lock().expect("ingest lock")[worker].take();
    let decoder = rule.decoder.clone();
    let source_metrics = rule.metrics.at(rule.physical.source);
    let decoder_metrics = rule.metrics.at(rule.physical.decoder);
    let activators = rule.activators.clone();
    let sinks = rule.sinks.len().max(1);
    let rule_ctx = rule.rule.clone();
    let fault = rule.fault.clone();
    let to_windows = rule.to_windows.clone();
    let windowed = stamps_time;
    let mut watermark = rule.physical.event_time.as_ref().map(|e| {
        Watermark::new(
            e.field.clone(),
            e.format.clone(),
            e.tolerance as i64,
            e.sources,
            rule.late_rows.clone(),
        )
    });
    source::<_, CapacityContainerBuilder<ArrowBatch>, _, _>(scope, "Source", move |cap, info| {
        let sync = scope.worker().sync_activator_for(info.address.to_vec());
        activators.lock().expect("activator lock")[worker] = Some(sync);
        let retry = scope.activator_for(info.address.clone());
        // The capability at the time of the last batch; None once input ended.
        let mut cap = Some(cap);
        // Processing-time windows: the next time this operator wakes itself to move time on.
        let mut next_tick = 0u64;
        move |output| {
            let Some(queue) = rx.as_mut() else {
                cap = None;
                return;
            };
            // Emits a batch through the chain at the current capability.
            let mut emit = |batch: RecordBatch, cap: &mut Option<Capability<u64>>| {
                let out = quiver_compiler::eval::with_rule_context(&rule_ctx, || {
                    run_chain(&mut chain, batch, &source_metrics, &fault)
                });
                let Some(out) = out else {
                    return;
                };
                let Some(c) = cap.as_mut() else { return };
                if deliveries {
                    pending.set(pending.get() + sinks);
                } else {
                    to_windows.fetch_add(out.num_rows(), Ordering::AcqRel);
                }
                output
                    .session(&*c)
                    .give_container(&mut ArrowBatch(Some(out)));
            };
            let mut ended = false;
            let mut drained = false;
            for _ in 0..EVENTS_PER_ACTIVATION {
                if pending.get() >= MAX_PENDING_BATCHES * sinks
                    || (!deliveries && to_windows.load(Ordering::Acquire) >= MAX_ROWS_TO_WINDOWS)
                {
                    // Sinks or windows are behind: leave events queued so the source task waits.
                    retry.activate_after(RETRY);
                    return;
                }
                let event = match next_event(queue) {
                    Next::Event(e) => e,
                    Next::Drained => {
                        drained = true;
                        break;
                    }
                    Next::Ended => {
                        ended = true;
                        break;
                    }
                };
                let started = Instant::now();
                // Arrow rows (memory topics, joined streams) pass no decoder; a joined
                // stream's rows were counted on its own source node.
                let arrow_rows = matches!(event, SourceEvent::Batch(_));
                let joined = matches!(&event, SourceEvent::Batch(b)
                    if b.column_by_name(quiver_compiler::columns::SOURCE_COLUMN).is_some());
                if fault.failed() {
                    // A failed rule reads on only to let its source see the end.
                    continue;
                }
                let Some((messages, decoded)) =
                    fault.contain("the decoder", || event.decode(&decoder))
                else {
                    continue;
                };
                if !joined {
                    source_metrics.batch(messages, messages, started);
                }
                if let Some(first) = decoded.errors.first() {
                    tracing::warn!(
                        rule = %rule_key(&info),
                        errors = decoded.errors.len(),
                        "dropping malformed messages: {first}"
                    );
                    decoder_metrics.failed_each(&decoded.errors);
                }
                if !arrow_rows && !Arc::ptr_eq(&decoder_metrics, &source_metrics) {
                    decoder_metrics.batch(messages, decoded.rows(), started);
                }
                let batches = decoded.batches.clone();
                for batch in batches {
                    match watermark.as_mut() {
                        Some(wm) => {
                            let mut failures = crate::window::Failures::default();
                            let Some((released, moved)) = fault
                                .contain("the watermark operator", || {
                                    wm.push(batch, &mut failures)
                                })
                            else {
                                continue;
                            };
                            if let Some(first) = &failures.first {
                                decoder_metrics.exceptions(failures.rows, first);
                            }
                            if let Some(b) = released {
                                emit(b, &mut cap);
                            }
                            if let (Some(w), Some(c)) = (moved, cap.as_mut())
                                && w > 0
                                && w as u64 > *c.time()
                            {
                                c.downgrade(&(w as u64));
                            }
                        }
                        None => {
                            let now = crate::clock::now_time();
                            // Time matters only to windows and `__ts` readers. Elsewhere the
                            // capability stays put: each move is progress news for every
                            // worker, which would wake them all for every event of every rule.
                            if windowed && let Some(c) = cap.as_mut() {
                                let t = now.max(*c.time());
                                c.downgrade(&t);
                            }
                            let batch = if windowed {
                                let rows = batch.num_rows();
                                let t = cap.as_ref().map_or(now, |c| *c.time());
                                add_column(
                                    batch,
                                    TS_COLUMN,
                                    Arc::new(Int64Array::from(vec![t as i64; rows])),
                                )
                            } else {
                                batch
                            };
                            emit(batch, &mut cap);
                        }
                    }
                }
            }
            if ended {
                // End of input: everything waiting for the watermark goes out, then time ends.
                if let Some(wm) = watermark.as_mut()
                    && let Some(b) = wm.release(None)
                {
                    emit(b, &mut cap);
                }
                rx = None;
                cap = None;
                return;
            }
            if let Some(tick) = tick {
                // Processing time moves on even without input, so windows close on time.
                let now = crate::clock::now_time();
                if let Some(c) = cap.as_mut()
                    && now > *c.time()
                {
                    c.downgrade(&now);
                }
                if next_tick <= now {
                    next_tick = (now / tick + 1) * tick;
                    retry.activate_after(Duration::from_millis(next_tick - now));
                }
            }
            // More may be queued: come back after other operators had their turn.
            if !drained {
                retry.activate();
            }
        }
    })
}

fn rule_key(info: &timely::dataflow::operators::generic::OperatorInfo) -> String {
    format!("{:?}", info.address)
}

/// What a worker's ingest queue gives next.
pub(super) enum Next {
    /// An event.
    Event(SourceEvent),
    /// Nothing for now.
    Drained,
    /// The source has stopped: no event will come.
    Ended,
}

/// Takes the next event of a worker's ingest queue without waiting.
pub(super) fn next_event(queue: &mut mpsc::Receiver<SourceEvent>) -> Next {
    match queue.try_recv() {
        Ok(e) => Next::Event(e),
        Err(mpsc::error::TryRecvError::Empty) => Next::Drained,
        Err(mpsc::error::TryRecvError::Disconnected) => Next::Ended,
    }
}
