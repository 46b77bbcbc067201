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
use crate::chain::{BatchOperator, Chain, run_chain};
use crate::checkpoint::coordinator::source_part;
use crate::container::ArrowBatch;
use crate::operators::watermark::Watermark;
use crate::state::OpState;

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
    let ckpt = rule.checkpoint.clone();
    // `last_hit_*` call sites: kept by the worker that reads every row in order (worker 0).
    let hits = if worker == 0 {
        rule.hits.clone()
    } else {
        Vec::new()
    };
    // Until this worker's position reaches it, its events are replayed from the input log.
    let replay_until = rule.replay_until.get(worker).copied().unwrap_or(0);
    // The input log position of the last event this worker is through with.
    let mut position = 0u64;
    if let Some(c) = &ckpt {
        c.register(source_part(worker));
        match c.restored(&source_part(worker)) {
            Ok(None) => {}
            Ok(Some(state)) => {
                position = state.number("position").unwrap_or(0).max(0) as u64;
                let loaded = restore_source(&state, &mut chain, watermark.as_mut(), &hits);
                if let Err(e) = loaded {
                    fault.fail(&format!("cannot restore the checkpoint: {e}"));
                }
            }
            Err(e) => fault.fail(&format!("cannot restore the checkpoint: {e}")),
        }
    }
    source::<_, CapacityContainerBuilder<ArrowBatch>, _, _>(scope, "Source", move |cap, info| {
        let sync = scope.worker().sync_activator_for(info.address.to_vec());
        activators.lock().expect("activator lock")[worker] = Some(sync);
        let retry = scope.activator_for(info.address.clone());
        // The capability at the time of the last batch; None once input ended.
        let mut cap = Some(cap);
        // Processing-time windows: the next time this operator wakes itself to move time on.
        let mut next_tick = 0u64;
        move |output| {
            // Saves this worker's part of a pending checkpoint when its time moves to `to`.
            let cross = |to: u64, position: u64, chain: &Chain, watermark: &Option<Watermark>| {
                if let Some(c) = &ckpt {
                    c.source_moves(worker, to, || {
                        let state = save_source(position, chain, watermark.as_ref(), &hits)?;
                        tracing::debug!(worker, position, to, "source state saved");
                        Ok((position, state))
                    });
                }
            };
            let replaying = position < replay_until;
            let Some(queue) = rx.as_mut() else {
                // Input ended: this worker's part of any later checkpoint is what it was.
                cross(u64::MAX, position, &chain, &watermark);
                cap = None;
                return;
            };
            // A pending checkpoint moves an idle or timeless source to it, so it can complete.
            // (In event time the watermark moves time; it waits for rows.) Processing-time
            // windows only with nothing queued: a queued event must be processed at the time it
            // was logged at, as its replay after a crash will be, or it could land in another
            // window.
            // (The input's last checkpoint, at the end of time, is met at the end of the queue.)
            if let Some(t) = ckpt.as_ref().and_then(|c| c.pending_time())
                && t != u64::MAX
                && watermark.is_none()
                && !replaying
                && (!windowed || queue.is_empty())
                && let Some(c) = cap.as_mut()
                && *c.time() < t
            {
                let to = t.max(crate::clock::now_time());
                cross(to, position, &chain, &watermark);
                c.downgrade(&to);
            }
            // Emits a batch through the chain at the current capability.
            let mut emit =
                |chain: &mut Chain, batch: RecordBatch, cap: &mut Option<Capability<u64>>| {
                    let out = quiver_compiler::eval::with_rule_context(&rule_ctx, || {
                        run_chain(chain, batch, &source_metrics, &fault)
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
                // A logged event carries its log position and the time it was logged at,
                // which it keeps when replayed after a crash.
                let (seq, at, event) = match event {
                    SourceEvent::Logged { seq, at, event } => (Some(seq), Some(at), *event),
                    e => (None, None, e),
                };
                if seq.is_some_and(|s| s <= position) {
                    // Already in the restored state.
                    continue;
                }
                let started = Instant::now();
                // Arrow rows (memory topics, joined streams) pass no decoder; a joined
                // stream's rows were decoded and counted on its own source node.
                let joined = is_joined(&event);
                let arrow_rows = joined || matches!(event, SourceEvent::Batch(_));
                if fault.failed() {
                    // A failed rule reads on only to let its source see the end.
                    continue;
                }
                // Rows of a scan table the rule keeps its own copy of (qos 1 and 2) change that
                // copy in their place among the stream's rows; they were decoded and counted on
                // the table's source node, and take no part in time.
                if let Some((source, rows)) = own_table_rows(&event) {
                    for b in rows {
                        fault.contain("the table join", || chain.update_table(source, b));
                    }
                    position = seq.unwrap_or(position);
                    continue;
                }
                // Processing time: the event's rows take one time, moved to before they go.
                if watermark.is_none()
                    && windowed
                    && let Some(c) = cap.as_mut()
                {
                    let t = at.unwrap_or_else(crate::clock::now_time).max(*c.time());
                    cross(t, position, &chain, &watermark);
                    c.downgrade(&t);
                }
                let Some((messages, decoded)) =
                    fault.contain("the decoder", || event.decode(&decoder))
                else {
                    position = seq.unwrap_or(position);
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
                // Event time: where the watermark moved to over the event's rows.
                let mut moved_to: Option<u64> = None;
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
                                emit(&mut chain, b, &mut cap);
                            }
                            if let Some(w) = moved
                                && w > 0
                            {
                                let t = crate::event_time::time_of(w as u64);
                                moved_to = Some(moved_to.unwrap_or(0).max(t));
                            }
                        }
                        None => {
                            let batch = if windowed {
                                let rows = batch.num_rows();
                                let t = cap
                                    .as_ref()
                                    .map_or_else(crate::clock::now_time, |c| *c.time());
                                add_column(
                                    batch,
                                    TS_COLUMN,
                                    Arc::new(Int64Array::from(vec![t as i64; rows])),
                                )
                            } else {
                                batch
                            };
                            emit(&mut chain, batch, &mut cap);
                        }
                    }
                }
                // The event is through: the position moves past it, then time (a checkpoint
                // taken at this move holds the event's effects and not the next one's).
                position = seq.unwrap_or(position);
                if let (Some(w), Some(c)) = (moved_to, cap.as_mut())
                    && w > *c.time()
                {
                    cross(w, position, &chain, &watermark);
                    c.downgrade(&w);
                }
            }
            // Event time: an idle source meets a pending checkpoint between two watermark
            // times, so the checkpoint completes (and qos 2 sinks write what came before it)
            // without the watermark moving.
            if drained
                && watermark.is_some()
                && position >= replay_until
                && let Some(t) = ckpt.as_ref().and_then(|c| c.pending_time())
                && t != u64::MAX
                && crate::event_time::is_between(t)
                && let Some(c) = cap.as_mut()
                && *c.time() < t
            {
                cross(t, position, &chain, &watermark);
                c.downgrade(&t);
            }
            if ended {
                // End of input: everything waiting for the watermark goes out, then time ends.
                if let Some(wm) = watermark.as_mut()
                    && let Some(b) = wm.release(None)
                {
                    emit(&mut chain, b, &mut cap);
                }
                cross(u64::MAX, position, &chain, &watermark);
                rx = None;
                cap = None;
                return;
            }
            // Processing time moves on even without input, so windows close on time; not while
            // replaying, whose events keep the times they were logged at, nor past events still
            // queued (they are processed at their logged time, as a replay would).
            if let Some(tick) = tick
                && position >= replay_until
                && (drained || ckpt.is_none())
            {
                let now = crate::clock::now_time();
                if let Some(c) = cap.as_mut()
                    && now > *c.time()
                {
                    cross(now, position, &chain, &watermark);
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

/// A source's part of a checkpoint: its log position, its chain's operators, the watermark
/// and the hit call sites it keeps.
fn save_source(
    position: u64,
    chain: &Chain,
    watermark: Option<&Watermark>,
    hits: &[Arc<quiver_compiler::hit::HitSite>],
) -> Result<OpState, String> {
    let mut state = OpState::default();
    state.push_number("position", position as i64);
    if let Some(s) = chain.save()? {
        state.nest("chain", s);
        state.push_number("has_chain", 1);
    }
    if let Some(wm) = watermark {
        state.nest("watermark", wm.save()?);
    }
    state.push_number("hits", hits.len() as i64);
    for (i, site) in hits.iter().enumerate() {
        let (count, time) = site.saved();
        state.push_number(format!("hit.{i}.count"), count);
        state.push_number(format!("hit.{i}.time"), time);
    }
    Ok(state)
}

/// Puts back what [`save_source`] saved.
fn restore_source(
    state: &OpState,
    chain: &mut Chain,
    watermark: Option<&mut Watermark>,
    hits: &[Arc<quiver_compiler::hit::HitSite>],
) -> Result<(), String> {
    if state.number("has_chain") == Some(1) {
        chain.load(&state.inner("chain"))?;
    }
    if let Some(wm) = watermark {
        wm.load(&state.inner("watermark"))?;
    }
    if state.number("hits").unwrap_or(0) != hits.len() as i64 {
        return Err("the saved hit call sites do not match the rule's".into());
    }
    for (i, site) in hits.iter().enumerate() {
        site.restore(
            state.need_number(&format!("hit.{i}.count"))?,
            state.need_number(&format!("hit.{i}.time"))?,
        );
    }
    Ok(())
}

/// The rows of a scan table the rule keeps its own copy of, with the table's source number.
fn own_table_rows(event: &SourceEvent) -> Option<(u32, &[RecordBatch])> {
    let SourceEvent::Decoded { decoded, .. } = event else {
        return None;
    };
    let source = crate::tables::own::source_of(decoded.batches.first()?)?;
    Some((source, decoded.batches.as_slice()))
}

/// True for the rows of a stream joined to the rule's FROM stream (tagged with their stream).
fn is_joined(event: &SourceEvent) -> bool {
    let tagged = |b: &RecordBatch| {
        b.column_by_name(quiver_compiler::columns::SOURCE_COLUMN)
            .is_some()
    };
    match event {
        SourceEvent::Batch(b) => tagged(b),
        SourceEvent::Decoded { decoded, .. } => decoded.batches.first().is_some_and(tagged),
        _ => false,
    }
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
