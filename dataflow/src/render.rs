//! Rendering: a rule's logical plan becomes timely operators on one worker.
//!
//! One function, one exhaustive match over [`LogicalPlan`]. Stateless nodes (Filter, Project)
//! are fused into the operator that reads the source, so a filter/project rule is one timely
//! operator plus the sink operator: per batch that is one activation instead of four (timely's
//! fixed cost per activation dominates small rules; see shared/rules-scale.md).
//!
//! Capabilities: the source operator holds one capability at the batch's processing time and
//! drops it when its input ends; the sink operator holds its own until it has handed every
//! batch to the sink tasks, so the dataflow stays alive while results wait for a slow sink.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quiver_compiler::plan::LogicalPlan;
use quiver_connectors::SourceEvent;
use quiver_connectors::codec::json::JsonDecoder;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::operator::source;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::container::ArrowBatch;
use crate::metrics::NodeMetrics;
use crate::operator::{BatchOperator, Chain, FilterOp, ProjectOp};

/// Result batches (per sink) a worker may hold undelivered before its source stops reading.
const MAX_PENDING_BATCHES: usize = 8;
/// How long a blocked operator waits before trying again.
const RETRY: Duration = Duration::from_millis(1);
/// Source events a worker handles per activation before yielding to other rules.
const EVENTS_PER_ACTIVATION: usize = 16;

/// Everything the workers need to build one run of a rule. Shared by all workers.
pub struct RuleDataflow {
    /// Unique key of this run (rule id + run number), used to drop it.
    pub key: String,
    /// The compiled plan.
    pub plan: LogicalPlan,
    /// Decoder for raw payloads.
    pub decoder: JsonDecoder,
    /// One ingest queue per worker, taken by the worker that builds it.
    pub ingest: Mutex<Vec<Option<mpsc::Receiver<SourceEvent>>>>,
    /// Where each worker registers the activator the source task wakes it with.
    pub activators: Arc<Mutex<Vec<Option<SyncActivator>>>>,
    /// One bounded queue per action; each worker sends on clones.
    pub sinks: Vec<mpsc::Sender<RecordBatch>>,
    /// Metrics of the source node.
    pub source_metrics: Arc<NodeMetrics>,
    /// Metrics of the decoder node (the source node itself for memory streams).
    pub decoder_metrics: Arc<NodeMetrics>,
    /// Metrics of the plan's operators, bottom-up (the order they run in).
    pub op_metrics: Vec<Arc<NodeMetrics>>,
}

/// Builds the rule's dataflow in `scope` (called on every worker, in the same order).
pub fn build(scope: Scope<'_, u64>, rule: &RuleDataflow) {
    // Deliveries (batch x sink) emitted by the source and not yet handed to a sink queue: in
    // timely's channel or in the sink operator's stash. Bounding it bounds the worker's memory.
    let pending = Rc::new(Cell::new(0usize));
    let stream = render(scope, &rule.plan, rule, pending.clone());
    render_sink(stream, rule, pending);
}

/// Renders a plan node; the only match over plan nodes.
fn render<'s>(
    scope: Scope<'s, u64>,
    plan: &LogicalPlan,
    rule: &RuleDataflow,
    pending: Rc<Cell<usize>>,
) -> Stream<'s, u64, ArrowBatch> {
    // Walk down through stateless nodes, collecting them, until a node that needs a stream.
    let mut stateless: Vec<&LogicalPlan> = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Scan(_) => break,
            LogicalPlan::Filter { input, .. } | LogicalPlan::Project { input, .. } => {
                stateless.push(node);
                node = input;
            }
        }
    }
    let mut chain = Chain::default();
    let mut metrics = rule.op_metrics.iter();
    for n in stateless.iter().rev() {
        let m = metrics
            .next()
            .expect("one metrics node per operator")
            .clone();
        match n {
            LogicalPlan::Filter { predicate, .. } => {
                chain.push(Box::new(FilterOp::new(predicate.clone(), m)));
            }
            LogicalPlan::Project { items, .. } => {
                chain.push(Box::new(ProjectOp::new(items.clone(), m)));
            }
            LogicalPlan::Scan(_) => unreachable!("scans end the walk"),
        }
    }
    render_source(scope, rule, chain, pending)
}

/// The source operator: drains this worker's ingest queue, decodes, runs the fused chain.
fn render_source<'s>(
    scope: Scope<'s, u64>,
    rule: &RuleDataflow,
    mut chain: Chain,
    pending: Rc<Cell<usize>>,
) -> Stream<'s, u64, ArrowBatch> {
    let worker = scope.index();
    let mut rx = rule.ingest.lock().expect("ingest lock")[worker].take();
    let decoder = rule.decoder.clone();
    let source_metrics = rule.source_metrics.clone();
    let decoder_metrics = rule.decoder_metrics.clone();
    let activators = rule.activators.clone();
    let sinks = rule.sinks.len().max(1);
    source::<_, CapacityContainerBuilder<ArrowBatch>, _, _>(scope, "Source", move |cap, info| {
        let sync = scope.worker().sync_activator_for(info.address.to_vec());
        activators.lock().expect("activator lock")[worker] = Some(sync);
        let retry = scope.activator_for(info.address.clone());
        // The capability at the processing time of the last batch; None once input ended.
        let mut cap = Some(cap);
        move |output| {
            let Some(queue) = rx.as_mut() else {
                cap = None;
                return;
            };
            for _ in 0..EVENTS_PER_ACTIVATION {
                if pending.get() >= MAX_PENDING_BATCHES * sinks {
                    // Sinks are behind: leave events queued so the source task waits.
                    retry.activate_after(RETRY);
                    return;
                }
                let event = match queue.try_recv() {
                    Ok(e) => e,
                    Err(mpsc::error::TryRecvError::Empty) => return,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        rx = None;
                        cap = None;
                        return;
                    }
                };
                let started = Instant::now();
                let batches = match event {
                    SourceEvent::Raw(messages) => {
                        source_metrics.batch(messages.len(), messages.len(), started);
                        let decoded = decoder.decode(&messages);
                        if let Some(first) = decoded.errors.first() {
                            tracing::warn!(
                                rule = %rule_key(&info),
                                errors = decoded.errors.len(),
                                "dropping malformed messages: {first}"
                            );
                            decoder_metrics.exceptions(decoded.errors.len(), first);
                        }
                        if !Arc::ptr_eq(&decoder_metrics, &source_metrics) {
                            decoder_metrics.batch(messages.len(), decoded.rows(), started);
                        }
                        decoded.batches
                    }
                    SourceEvent::Batch(b) => {
                        source_metrics.batch(b.num_rows(), b.num_rows(), started);
                        vec![b]
                    }
                };
                for batch in batches {
                    let Some(out) = run_chain(&mut chain, batch, &source_metrics) else {
                        continue;
                    };
                    let c = cap.as_mut().expect("a capability while input is open");
                    let now = now_ms().max(*c.time());
                    c.downgrade(&now);
                    pending.set(pending.get() + sinks);
                    output
                        .session(&*c)
                        .give_container(&mut ArrowBatch(Some(out)));
                }
            }
            // More may be queued: come back after other operators had their turn.
            retry.activate();
        }
    })
}

/// Runs the fused operators on a batch. A bug in an operator must fail its rows, not the
/// worker (and every rule on it): a panic is caught and counted as exceptions.
fn run_chain(chain: &mut Chain, batch: RecordBatch, metrics: &NodeMetrics) -> Option<RecordBatch> {
    let rows = batch.num_rows();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chain.process_batch(batch))) {
        Ok(out) => out,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            tracing::error!("operator panicked, {rows} rows dropped: {reason}");
            metrics.exceptions(rows, &format!("internal error: {reason}"));
            None
        }
    }
}

fn rule_key(info: &timely::dataflow::operators::generic::OperatorInfo) -> String {
    format!("{:?}", info.address)
}

/// The sink operator: hands result batches to the sink tasks without ever blocking the worker.
fn render_sink(stream: Stream<'_, u64, ArrowBatch>, rule: &RuleDataflow, pending: Rc<Cell<usize>>) {
    let mut senders: Vec<mpsc::Sender<RecordBatch>> = rule.sinks.clone();
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
                        for i in 0..senders.len() {
                            stash.push_back((i, batch.clone()));
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
