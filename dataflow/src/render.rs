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
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use quiver_compiler::plan::LogicalPlan;
use quiver_compiler::window::{TS_COLUMN, WindowKind};
use quiver_connectors::SourceEvent;
use quiver_connectors::codec::json::JsonDecoder;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{DistributorPact, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::operator::source;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::container::{ArrowBatch, KeyDistributor, ToFirstWorker};
use crate::metrics::NodeMetrics;
use crate::operator::{BatchOperator, Chain, FilterOp, LimitOp, ProjectOp, SortOp};
use crate::window::{Failures, GroupTable, Prepare, Windows, concat_results};

/// Result batches (per sink) a worker may hold undelivered before its source stops reading.
const MAX_PENDING_BATCHES: usize = 8;
/// How long a blocked operator waits before trying again.
const RETRY: Duration = Duration::from_millis(1);
/// Source events a worker handles per activation before yielding to other rules.
const EVENTS_PER_ACTIVATION: usize = 16;
/// Rows a rule's sources may have sent towards its window operators that those have not taken
/// yet (timely's channels are unbounded, so the sources hold back instead).
const MAX_ROWS_TO_WINDOWS: usize = 64 * 1024;

/// Event-time settings of a rule (`isEventTime` with the stream's `TIMESTAMP` field).
#[derive(Debug, Clone)]
pub struct EventTime {
    /// The field holding each row's time.
    pub field: String,
    /// `lateTolerance` in milliseconds.
    pub tolerance: u64,
    /// The stream's `TIMESTAMP_FORMAT`, for string times.
    pub format: Option<String>,
    /// Streams feeding the rule (joins): the watermark is the minimum over them.
    pub sources: usize,
}

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
    /// Event time, when the rule uses it (all input then goes to worker 0, which orders rows
    /// and keeps the watermark, as eKuiper's single watermark operator does).
    pub event_time: Option<EventTime>,
    /// Rows dropped for arriving behind the watermark.
    pub late_rows: Arc<AtomicU64>,
    /// What `rule_id()` and `rule_start()` read.
    pub rule: Arc<quiver_compiler::eval::RuleContext>,
    /// The tables the rule joins, by name.
    pub tables: std::collections::HashMap<String, crate::table::TableSide>,
    /// The scan-table indexes the rule's joins read, in plan order (built before the rule).
    pub indexes: Vec<crate::arrange::IndexSpec>,
    /// Rows sent to the window operators and not yet taken by them, over all workers.
    pub to_windows: Arc<std::sync::atomic::AtomicUsize>,
}

/// Builds the rule's dataflow in `scope` (called on every worker, in the same order).
pub fn build(scope: Scope<'_, u64>, rule: &RuleDataflow) {
    // Deliveries (batch x sink) emitted and not yet handed to a sink queue: in timely's
    // channel or in the sink operator's stash. Bounding it bounds the worker's memory.
    let pending = Rc::new(Cell::new(0usize));
    let stream = render(scope, rule, pending.clone());
    render_sink(stream, rule, pending);
}

/// The plan's nodes from the one above the scan up (the order they run in).
pub(crate) fn nodes(plan: &LogicalPlan) -> Vec<&LogicalPlan> {
    let mut out: Vec<&LogicalPlan> = plan.chain().filter(|n| n.input().is_some()).collect();
    out.reverse();
    out
}

/// Operators for plan nodes; the only match over plan nodes.
fn operators(
    nodes: &[&LogicalPlan],
    metrics: &mut impl Iterator<Item = Arc<NodeMetrics>>,
    rule: &RuleDataflow,
) -> Chain {
    let mut chain = Chain::default();
    for n in nodes {
        if let Some(op) = stateless_operator(n, metrics) {
            chain.push(op);
            continue;
        }
        match n {
            LogicalPlan::Filter { .. }
            | LogicalPlan::Project { .. }
            | LogicalPlan::Limit { .. } => {
                unreachable!("stateless nodes are built above")
            }
            LogicalPlan::Sort { keys, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(SortOp::new(keys.clone(), m)));
            }
            LogicalPlan::JoinStreams { join, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(crate::join::JoinStreamsOp::new(
                    (**join).clone(),
                    m,
                )));
            }
            LogicalPlan::RowNumber { specs, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(crate::operator::RowNumberOp::new(
                    specs.clone(),
                    m,
                )));
            }
            LogicalPlan::Aggregate { spec, .. } => {
                // Only the window-less form is a stateless operator.
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(RowsAggregateOp::new(
                    Arc::new((**spec).clone()),
                    m,
                )));
            }
            LogicalPlan::Analytic { calls, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(crate::analytic::AnalyticOp::new(calls.clone(), m)));
            }
            LogicalPlan::JoinTable { join, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                let table = rule
                    .tables
                    .get(&join.table)
                    .expect("the engine resolves every joined table")
                    .clone();
                chain.push(Box::new(crate::table::JoinTableOp::new(
                    (**join).clone(),
                    table,
                    index_for(rule, join),
                    m,
                )));
            }
            LogicalPlan::Scan(_) => unreachable!("scans are not operators"),
        }
    }
    chain
}

/// The operator of a stateless plan node (Filter, Project, Limit), taking its metrics node;
/// None for the others. Rule groups build their members' chains from these alone.
pub(crate) fn stateless_operator(
    n: &LogicalPlan,
    metrics: &mut impl Iterator<Item = Arc<NodeMetrics>>,
) -> Option<Box<dyn BatchOperator>> {
    let mut next = || metrics.next().expect("one metrics node per operator");
    Some(match n {
        LogicalPlan::Filter { predicate, .. } => Box::new(FilterOp::new(predicate.clone(), next())),
        LogicalPlan::Project { items, .. } => Box::new(ProjectOp::new(items.clone(), next())),
        // eKuiper applies LIMIT inside its project node: no node of its own.
        LogicalPlan::Limit { n, .. } => Box::new(LimitOp::new(*n)),
        _ => return None,
    })
}

/// The scan-table index a table join reads (the engine chose its placement per join).
fn index_for<'r>(
    rule: &'r RuleDataflow,
    join: &quiver_compiler::plan::TableJoin,
) -> Option<&'r crate::arrange::IndexSpec> {
    let text = |keys: &[quiver_compiler::expr::Expr]| -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    };
    rule.indexes
        .iter()
        .find(|i| i.feed.name == join.table && text(&i.keys) == text(&join.table_keys))
}

/// Where the arrangement a table join reads lives.
fn placement(
    rule: &RuleDataflow,
    join: &quiver_compiler::plan::TableJoin,
) -> crate::arrange::Placement {
    index_for(rule, join).map_or(crate::arrange::Placement::Replicated, |i| i.placement)
}

/// The position of the table join whose rows are exchanged by its key (its table partitioned
/// over the workers), if the rule has one.
fn partitioned_join(rule: &RuleDataflow, nodes: &[&LogicalPlan]) -> Option<usize> {
    nodes.iter().position(|n| {
        matches!(n, LogicalPlan::JoinTable { join, .. }
            if !join.lookup && placement(rule, join) == crate::arrange::Placement::Partitioned)
    })
}

/// Renders the plan: the source operator with the stateless part fused into it, then, for a
/// window, the exchange by key, the window operator and the gathering of its results.
fn render<'s>(
    scope: Scope<'s, u64>,
    rule: &RuleDataflow,
    pending: Rc<Cell<usize>>,
) -> Stream<'s, u64, ArrowBatch> {
    let nodes = nodes(&rule.plan);
    let mut metrics = rule.op_metrics.iter().cloned();
    let window_at = nodes.iter().position(|n| {
        matches!(n, LogicalPlan::Aggregate { spec, .. } if spec.window.kind != WindowKind::Rows)
    });
    let Some(at) = window_at else {
        if let Some(j) = partitioned_join(rule, &nodes) {
            // The join runs where its table rows are: rows spread by join key.
            let LogicalPlan::JoinTable { join, .. } = nodes[j] else {
                unreachable!("partitioned_join found a table join");
            };
            let mut pre = operators(&nodes[..j], &mut metrics, rule);
            pre.push(Box::new(crate::table::TableKeyOp::new(join)));
            let post = operators(&nodes[j..], &mut metrics, rule);
            let keyed = render_source(scope, rule, pre, pending.clone(), None, false);
            return render_keyed(keyed, post, pending, rule);
        }
        if let Some((a, partition)) = keyed_analytic(&nodes) {
            // Analytic state is per partition: rows spread by partition key (each key's rows
            // stay in order, since one worker reads them all and timely's channels keep order).
            let mut pre = operators(&nodes[..a], &mut metrics, rule);
            pre.push(Box::new(KeyOp { keys: partition }));
            let post = operators(&nodes[a..], &mut metrics, rule);
            let keyed = render_source(scope, rule, pre, pending.clone(), None, false);
            return render_keyed(keyed, post, pending, rule);
        }
        let chain = operators(&nodes, &mut metrics, rule);
        return render_source(scope, rule, chain, pending, None, true);
    };
    let LogicalPlan::Aggregate { spec, .. } = nodes[at] else {
        unreachable!("position found an Aggregate");
    };
    let spec = Arc::new((**spec).clone());
    // Stream-stream joins: rows of every stream go into the window as they are; the join, the
    // rest of the ON/WHERE work and the window's preparation run on each window's rows.
    let join_at = nodes[..at]
        .iter()
        .position(|n| matches!(n, LogicalPlan::JoinStreams { .. }));
    let (pre, joined) = match join_at {
        Some(j) => {
            let mut pre = operators(&nodes[..j], &mut metrics, rule);
            pre.push(Box::new(crate::join::TagSourceOp));
            let mut before = operators(&nodes[j..at], &mut metrics, rule);
            let window_metrics = metrics.next().expect("one metrics node per operator");
            before.push(Box::new(PrepareOp {
                prepare: Prepare::new(spec.clone()),
                metrics: window_metrics.clone(),
            }));
            (
                pre,
                Some((Windows::joined(spec.clone(), before), window_metrics)),
            )
        }
        None => (operators(&nodes[..at], &mut metrics, rule), None),
    };
    let post = operators(&nodes[at + 1..], &mut metrics, rule);
    if let Some((windows, window_metrics)) = joined {
        let prepared = render_source(scope, rule, pre, pending.clone(), None, false);
        let windowed = render_window(
            prepared,
            windows,
            window_metrics,
            DistributorPact(|_| ToFirstWorker),
            rule.to_windows.clone(),
            rule.rule.clone(),
        );
        return render_post(
            windowed,
            post,
            false,
            pending,
            rule.sinks.len().max(1),
            rule.rule.clone(),
        );
    }
    let mut pre = pre;
    let window_metrics = metrics.next().expect("one metrics node per operator");
    pre.push(Box::new(PrepareOp {
        prepare: Prepare::new(spec.clone()),
        metrics: window_metrics.clone(),
    }));
    let tick = match (&rule.event_time, &spec.window.kind) {
        (Some(_), _) => None,
        (None, WindowKind::Tumbling { size }) => Some(*size),
        (None, WindowKind::Hopping { hop, .. }) => Some(*hop),
        (None, WindowKind::Sliding { delay, .. }) if *delay > 0 => Some((*delay).min(100)),
        (None, WindowKind::Session { .. }) => Some(100),
        _ => None,
    };
    let prepared = render_source(scope, rule, pre, pending.clone(), tick, false);
    let merge = spec.window.kind.is_partitionable();
    let windowed = if merge && (rule.event_time.is_none() || spare_cores()) {
        render_window(
            prepared,
            Windows::new(spec),
            window_metrics,
            DistributorPact(|_| KeyDistributor),
            rule.to_windows.clone(),
            rule.rule.clone(),
        )
    } else {
        render_window(
            prepared,
            Windows::new(spec),
            window_metrics,
            DistributorPact(|_| ToFirstWorker),
            rule.to_windows.clone(),
            rule.rule.clone(),
        )
    };
    render_post(
        windowed,
        post,
        merge,
        pending,
        rule.sinks.len().max(1),
        rule.rule.clone(),
    )
}

/// Whether an event-time window's groups should spread over the workers. Its rows are read
/// in order by one worker and decoded by it and the source's reader thread, which keep two
/// cores busy; spreading the groups adds a partition and copy per batch and only pays when
/// more cores are free (measured: W2 at 2 workers on 2 cores, 0.28 s spread, 0.24 s kept).
fn spare_cores() -> bool {
    static SPARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SPARE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 2))
}

/// The position of the analytic node of a window-less rule whose analytic calls all share one
/// non-empty `PARTITION BY`, and that partition: such a rule's rows can spread by that key.
fn keyed_analytic(nodes: &[&LogicalPlan]) -> Option<(usize, Vec<quiver_compiler::expr::Expr>)> {
    let mut found = None;
    for (i, n) in nodes.iter().enumerate() {
        let LogicalPlan::Analytic { calls, .. } = n else {
            continue;
        };
        let first = &calls.first()?.partition;
        let text = |p: &[quiver_compiler::expr::Expr]| -> Vec<String> {
            p.iter().map(ToString::to_string).collect()
        };
        if found.is_some()
            || first.is_empty()
            || calls.iter().any(|c| text(&c.partition) != text(first))
        {
            return None;
        }
        found = Some((i, first.clone()));
    }
    found
}

/// Adds the window-key column (`__key`) computed from `keys`, which the key exchange reads.
struct KeyOp {
    keys: Vec<quiver_compiler::expr::Expr>,
}

impl BatchOperator for KeyOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut ctx = quiver_compiler::eval::EvalContext::new(batch.num_rows());
        // Without a key (its evaluation failed) the batch goes to worker 0, where the
        // analytic operator reports the failure.
        match crate::window::encode_keys(&self.keys, &batch, &mut ctx) {
            Some(key) => Some(add_column(batch, quiver_compiler::window::KEY_COLUMN, key)),
            None => Some(batch),
        }
    }
}

/// Runs the rest of a keyed rule (its analytic node, or its partitioned table join, and what
/// follows) on the worker that owns each key, then hands the results to that worker's sinks. It takes input only
/// while its sinks keep up; rows left queued hold the source back through `to_windows`.
fn render_keyed<'s>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut chain: Chain,
    pending: Rc<Cell<usize>>,
    rule: &RuleDataflow,
) -> Stream<'s, u64, ArrowBatch> {
    let sinks = rule.sinks.len().max(1);
    let ctx = rule.rule.clone();
    let to_windows = rule.to_windows.clone();
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        DistributorPact(|_| KeyDistributor),
        "Partitioned",
        move |_cap, info| {
            let retry = scope.activator_for(info.address.clone());
            move |(input, _frontier), output| {
                if pending.get() >= MAX_PENDING_BATCHES * sinks {
                    retry.activate_after(RETRY);
                    return;
                }
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    let rows = batch.num_rows();
                    let out = run_post(&mut chain, batch, &ctx);
                    // Only now are the rows through (a partitioned join has read its table).
                    to_windows.fetch_sub(rows, Ordering::AcqRel);
                    if let Some(out) = out {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                });
            }
        },
    )
}

/// Evaluates what the window needs (see [`Prepare`]); its failures count on the window node.
struct PrepareOp {
    prepare: Prepare,
    metrics: Arc<NodeMetrics>,
}

impl BatchOperator for PrepareOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut failures = Failures::default();
        let out = self.prepare.prepare(batch, now_ms(), &mut failures);
        if let Some(first) = &failures.first {
            self.metrics.exceptions(failures.rows, first);
        }
        out
    }
}

/// Aggregates of a rule without a window: eKuiper computes them on each row alone.
struct RowsAggregateOp {
    prepare: Prepare,
    spec: Arc<quiver_compiler::window::AggregateSpec>,
    metrics: Arc<NodeMetrics>,
}

impl RowsAggregateOp {
    fn new(spec: Arc<quiver_compiler::window::AggregateSpec>, metrics: Arc<NodeMetrics>) -> Self {
        RowsAggregateOp {
            prepare: Prepare::new(spec.clone()),
            spec,
            metrics,
        }
    }
}

impl BatchOperator for RowsAggregateOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut failures = Failures::default();
        let now = now_ms();
        let prepared = self.prepare.prepare(batch, now, &mut failures)?;
        let mut table = GroupTable::new(self.spec.clone());
        table.update(&prepared);
        let out = table.finish(now as i64, now as i64);
        if let Some(first) = &failures.first {
            self.metrics.exceptions(failures.rows, first);
        }
        self.metrics
            .batch(rows, out.as_ref().map_or(0, RecordBatch::num_rows), started);
        out
    }
}

/// The window operator: keeps the open windows of this worker's groups and emits each closed
/// window at time `end - 1`, the same time on every worker, so the gathering operator can
/// merge one window's results from all workers into one emission.
fn render_window<'s, P>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut windows: Windows,
    metrics: Arc<NodeMetrics>,
    pact: P,
    to_windows: Arc<std::sync::atomic::AtomicUsize>,
    rule: Arc<quiver_compiler::eval::RuleContext>,
) -> Stream<'s, u64, ArrowBatch>
where
    P: timely::dataflow::channels::pact::ParallelizationContract<u64, ArrowBatch>,
{
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        pact,
        "Window",
        move |_cap, _info| {
            let to_windows = to_windows.clone();
            // The earliest time this operator may still emit at.
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                let mut emitted = 0usize;
                let started = Instant::now();
                let mut rows_in = 0usize;
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    rows_in += batch.num_rows();
                    to_windows.fetch_sub(batch.num_rows(), Ordering::AcqRel);
                    let t = time.least().copied().unwrap_or_default();
                    if held.as_ref().is_none_or(|h| t < *h.time()) {
                        held = time.retain_least(0);
                    }
                    let closed =
                        quiver_compiler::eval::with_rule_context(&rule, || windows.insert(&batch));
                    for e in closed {
                        emitted += e.batch.num_rows();
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(e.batch)));
                    }
                });
                let f = frontier.frontier().iter().next().copied();
                let closes = quiver_compiler::eval::with_rule_context(&rule, || {
                    windows.advance(f.unwrap_or(u64::MAX))
                });
                for e in closes {
                    let Some(h) = held.as_ref() else { break };
                    let at = (e.end.max(1) as u64 - 1).max(*h.time());
                    let cap = h.delayed(&at);
                    emitted += e.batch.num_rows();
                    output
                        .session(&cap)
                        .give_container(&mut ArrowBatch(Some(e.batch)));
                }
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

/// Runs HAVING, ORDER BY, SELECT and LIMIT on each emission, on worker 0. For windows spread
/// over workers (`merge`), results with the same time are one window's parts and are merged
/// first, once the frontier shows every worker has sent its part.
fn render_post<'s>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut chain: Chain,
    merge: bool,
    pending: Rc<Cell<usize>>,
    sinks: usize,
    rule: Arc<quiver_compiler::eval::RuleContext>,
) -> Stream<'s, u64, ArrowBatch> {
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        DistributorPact(|_| ToFirstWorker),
        "Emit",
        move |_cap, _info| {
            let mut parts: BTreeMap<u64, (Capability<u64>, Vec<RecordBatch>)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    if merge {
                        let t = time.least().copied().unwrap_or_default();
                        if let Some(entry) = parts.get_mut(&t) {
                            entry.1.push(batch);
                        } else if let Some(cap) = time.retain_least(0) {
                            parts.insert(t, (cap, vec![batch]));
                        }
                    } else if let Some(out) = run_post(&mut chain, batch, &rule) {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                });
                while let Some((&t, _)) = parts.first_key_value() {
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let (cap, batches) = parts.remove(&t).expect("first key exists");
                    let Some(batch) = concat_results(&batches) else {
                        continue;
                    };
                    if let Some(out) = run_post(&mut chain, batch, &rule) {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&cap)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                }
            }
        },
    )
}

fn run_post(
    chain: &mut Chain,
    batch: RecordBatch,
    rule: &Arc<quiver_compiler::eval::RuleContext>,
) -> Option<RecordBatch> {
    let rows = batch.num_rows();
    let run = || quiver_compiler::eval::with_rule_context(rule, || chain.process_batch(batch));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(out) => out,
        Err(panic) => {
            tracing::error!("operator panicked, {rows} result rows dropped: {panic:?}");
            None
        }
    }
}

/// Event time, kept by worker 0 for the whole rule: rows wait, sorted by time, until the
/// watermark passes them (eKuiper's watermark operator), and rows behind it are dropped.
struct Watermark {
    field: String,
    format: Option<String>,
    tolerance: i64,
    last: i64,
    /// The latest time seen on each stream.
    max_seen: Vec<i64>,
    waiting: Vec<RecordBatch>,
    late: Arc<AtomicU64>,
}

impl Watermark {
    /// Adds rows; returns the rows the watermark released (in time order) and the new
    /// watermark, if it moved.
    fn push(
        &mut self,
        batch: RecordBatch,
        failures: &mut crate::window::Failures,
    ) -> (Option<RecordBatch>, Option<i64>) {
        let rows = batch.num_rows();
        let mut ts = Vec::with_capacity(rows);
        let mut keep = Vec::with_capacity(rows);
        // A joined stream's rows carry their own event time (see `crate::join::qualify`).
        let col = quiver_compiler::eval::column_by_name(&batch, crate::join::EVENT_TIME_COLUMN)
            .or_else(|| quiver_compiler::eval::column_by_name(&batch, &self.field))
            .cloned();
        let sources = batch
            .column_by_name(crate::join::SOURCE_COLUMN)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>().cloned());
        // Epoch milliseconds in a BIGINT column (the common case) are read directly; other
        // types go through the general time reader row by row.
        let millis = col
            .as_ref()
            .filter(|c| c.data_type() == &arrow::datatypes::DataType::Int64)
            .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().clone());
        let mut late = 0u64;
        let mut moved = false;
        for r in 0..rows {
            let t = match &millis {
                Some(m) => arrow::array::Array::is_valid(m, r).then(|| m.value(r)),
                None => col.as_ref().and_then(|c| {
                    quiver_compiler::functions::event_millis(c, r, self.format.as_deref())
                }),
            };
            match t {
                None => {
                    failures.rows += 1;
                    if failures.first.is_none() {
                        failures.first = Some(format!(
                            "cannot convert timestamp field {} of the row to a time",
                            self.field
                        ));
                    }
                    keep.push(false);
                    ts.push(0);
                }
                Some(t) => {
                    // Row by row, like eKuiper's watermark operator: a row is late against
                    // the watermark as it stood when the row arrived.
                    let ok = t >= self.last;
                    let src = sources
                        .as_ref()
                        .filter(|c| arrow::array::Array::is_valid(*c, r))
                        .map_or(0, |c| c.value(r) as usize)
                        .min(self.max_seen.len() - 1);
                    self.max_seen[src] = self.max_seen[src].max(t);
                    let slowest = self.max_seen.iter().copied().min().unwrap_or(i64::MIN);
                    let wm = slowest.saturating_sub(self.tolerance);
                    if wm > self.last {
                        self.last = wm;
                        moved = true;
                    }
                    if !ok {
                        late += 1;
                    }
                    keep.push(ok);
                    ts.push(t);
                }
            }
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        let ts_col: ArrayRef = Arc::new(Int64Array::from(ts));
        let batch = add_column(batch, TS_COLUMN, ts_col);
        if let Ok(kept) = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
            && kept.num_rows() > 0
        {
            self.waiting.push(kept);
        }
        if !moved {
            return (None, None);
        }
        (self.release(Some(self.last)), Some(self.last))
    }

    /// Releases waiting rows with time <= `upto` (all of them for `None`), sorted by time.
    fn release(&mut self, upto: Option<i64>) -> Option<RecordBatch> {
        if self.waiting.is_empty() {
            return None;
        }
        let schema = self.waiting[0].schema();
        let all = if self.waiting.len() == 1 {
            self.waiting[0].clone()
        } else if self.waiting.iter().all(|b| b.schema() == schema) {
            arrow::compute::concat_batches(&schema, &self.waiting).ok()?
        } else {
            crate::window::concat_results(&self.waiting)?
        };
        self.waiting.clear();
        let ts = all
            .column_by_name(TS_COLUMN)?
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        // Rows usually arrive in time order (one device's clock, a file written in order):
        // then the released rows are a prefix, cut without sorting or copying.
        if ts.values().windows(2).all(|w| w[0] <= w[1]) {
            let cut = match upto {
                Some(w) => ts.values().partition_point(|&t| t <= w),
                None => all.num_rows(),
            };
            if cut < all.num_rows() {
                self.waiting.push(all.slice(cut, all.num_rows() - cut));
            }
            return (cut > 0).then(|| all.slice(0, cut));
        }
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        // A stable sort: rows with equal times keep their arrival order.
        order.sort_by_key(|&i| ts.value(i as usize));
        let cut = match upto {
            Some(w) => order.partition_point(|&i| ts.value(i as usize) <= w),
            None => order.len(),
        };
        let rest = order.split_off(cut);
        if !rest.is_empty()
            && let Ok(b) = take_record_batch(&all, &UInt32Array::from(rest))
        {
            self.waiting.push(b);
        }
        if order.is_empty() {
            return None;
        }
        take_record_batch(&all, &UInt32Array::from(order)).ok()
    }
}

fn add_column(batch: RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
    quiver_connectors::codec::json::add_column(batch, name, col)
}

/// The source operator: drains this worker's ingest queue, decodes, runs the fused chain.
/// `tick`: for processing-time windows, how often time must advance without input, so
/// windows close on time. `deliveries`: whether the chain's output goes straight to sinks.
fn render_source<'s>(
    scope: Scope<'s, u64>,
    rule: &RuleDataflow,
    mut chain: Chain,
    pending: Rc<Cell<usize>>,
    tick: Option<u64>,
    deliveries: bool,
) -> Stream<'s, u64, ArrowBatch> {
    let worker = scope.index();
    let mut rx = rule.ingest.lock().expect("ingest lock")[worker].take();
    let decoder = rule.decoder.clone();
    let source_metrics = rule.source_metrics.clone();
    let decoder_metrics = rule.decoder_metrics.clone();
    let activators = rule.activators.clone();
    let sinks = rule.sinks.len().max(1);
    let rule_ctx = rule.rule.clone();
    let to_windows = rule.to_windows.clone();
    // Windows read each row's time, and so does `event_time()`.
    let windowed = !deliveries || rule.plan.reads_row_time();
    let mut watermark = rule.event_time.as_ref().map(|e| Watermark {
        field: e.field.clone(),
        format: e.format.clone(),
        tolerance: e.tolerance as i64,
        last: i64::MIN,
        max_seen: vec![i64::MIN; e.sources.max(1)],
        waiting: Vec::new(),
        late: rule.late_rows.clone(),
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
                    run_chain(&mut chain, batch, &source_metrics)
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
                let event = match queue.try_recv() {
                    Ok(e) => e,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        drained = true;
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                };
                let started = Instant::now();
                // Arrow rows (memory topics, joined streams) pass no decoder; a joined
                // stream's rows were counted on its own source node.
                let arrow_rows = matches!(event, SourceEvent::Batch(_));
                let joined = matches!(&event, SourceEvent::Batch(b)
                    if b.column_by_name(crate::join::SOURCE_COLUMN).is_some());
                let (messages, decoded) = event.decode(&decoder);
                if !joined {
                    source_metrics.batch(messages, messages, started);
                }
                if let Some(first) = decoded.errors.first() {
                    tracing::warn!(
                        rule = %rule_key(&info),
                        errors = decoded.errors.len(),
                        "dropping malformed messages: {first}"
                    );
                    decoder_metrics.exceptions(decoded.errors.len(), first);
                }
                if !arrow_rows && !Arc::ptr_eq(&decoder_metrics, &source_metrics) {
                    decoder_metrics.batch(messages, decoded.rows(), started);
                }
                let batches = decoded.batches.clone();
                for batch in batches {
                    match watermark.as_mut() {
                        Some(wm) => {
                            let mut failures = crate::window::Failures::default();
                            let (released, moved) = wm.push(batch, &mut failures);
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
                            let now = now_ms();
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
                let now = now_ms();
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

/// Runs the fused operators on a batch. A bug in an operator must fail its rows, not the
/// worker (and every rule on it): a panic is caught and counted as exceptions.
pub(crate) fn run_chain(
    chain: &mut Chain,
    batch: RecordBatch,
    metrics: &NodeMetrics,
) -> Option<RecordBatch> {
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
