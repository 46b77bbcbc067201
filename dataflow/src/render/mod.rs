//! Rendering: a rule's physical plan becomes timely operators on one worker.

mod emit;
pub mod group;
mod keyed;
mod sink;
mod source;
mod window;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use quiver_compiler::plan::LogicalPlan;
use quiver_compiler::window::{TS_COLUMN, WindowKind};
use quiver_connectors::SourceEvent;
use quiver_connectors::codec::json::JsonDecoder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::chain::{BatchOperator, Chain};
use crate::container::ArrowBatch;
use crate::exchange::{KeyDistributor, ToFirstWorker};
use crate::metrics::NodeMetrics;
use crate::operators::{filter::FilterOp, limit::LimitOp, project::ProjectOp, sort::SortOp};
use crate::operators::{key::KeyOp, prepare::PrepareOp, rows_aggregate::RowsAggregateOp};
use crate::window::Windows;
use emit::render_post;
use keyed::render_keyed;
use sink::render_sink;
use source::render_source;
use window::render_window;

/// Result batches (per sink) a worker may hold undelivered before its source stops reading.
pub(crate) const MAX_PENDING_BATCHES: usize = 8;
/// How long a blocked operator waits before trying again.
pub(crate) const RETRY: Duration = Duration::from_millis(1);
/// Source events a worker handles per activation before yielding to other rules.
pub(crate) const EVENTS_PER_ACTIVATION: usize = 16;
/// Rows a rule's sources may have sent towards its window operators that those have not taken
/// yet (timely's channels are unbounded, so the sources hold back instead).
pub(crate) const MAX_ROWS_TO_WINDOWS: usize = 64 * 1024;

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
    pub tables: std::collections::HashMap<String, crate::tables::TableSide>,
    /// The scan-table indexes the rule's joins read, in plan order (built before the rule).
    pub indexes: Vec<crate::tables::feed::IndexSpec>,
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
                chain.push(Box::new(
                    crate::operators::join_streams::JoinStreamsOp::new((**join).clone(), m),
                ));
            }
            LogicalPlan::RowNumber { specs, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                chain.push(Box::new(crate::operators::row_number::RowNumberOp::new(
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
                chain.push(Box::new(crate::operators::analytic::AnalyticOp::new(
                    calls.clone(),
                    m,
                )));
            }
            LogicalPlan::JoinTable { join, .. } => {
                let m = metrics.next().expect("one metrics node per operator");
                let table = rule
                    .tables
                    .get(&join.table)
                    .expect("the engine resolves every joined table")
                    .clone();
                chain.push(Box::new(crate::operators::join_table::JoinTableOp::new(
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
) -> Option<&'r crate::tables::feed::IndexSpec> {
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
) -> crate::tables::feed::Placement {
    index_for(rule, join).map_or(crate::tables::feed::Placement::Replicated, |i| i.placement)
}

/// The position of the table join whose rows are exchanged by its key (its table partitioned
/// over the workers), if the rule has one.
fn partitioned_join(rule: &RuleDataflow, nodes: &[&LogicalPlan]) -> Option<usize> {
    nodes.iter().position(|n| {
        matches!(n, LogicalPlan::JoinTable { join, .. }
            if !join.lookup && placement(rule, join) == crate::tables::feed::Placement::Partitioned)
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
            pre.push(Box::new(crate::operators::table_key::TableKeyOp::new(join)));
            let post = operators(&nodes[j..], &mut metrics, rule);
            let keyed = render_source(scope, rule, pre, pending.clone(), None, false);
            return render_keyed(keyed, post, pending, rule);
        }
        if let Some((a, partition)) = keyed_analytic(&nodes) {
            // Analytic state is per partition: rows spread by partition key (each key's rows
            // stay in order, since one worker reads them all and timely's channels keep order).
            let mut pre = operators(&nodes[..a], &mut metrics, rule);
            pre.push(Box::new(KeyOp::new(partition)));
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
            pre.push(Box::new(crate::operators::join_streams::TagSourceOp));
            let mut before = operators(&nodes[j..at], &mut metrics, rule);
            let window_metrics = metrics.next().expect("one metrics node per operator");
            before.push(Box::new(PrepareOp::new(
                spec.clone(),
                window_metrics.clone(),
            )));
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
    pre.push(Box::new(PrepareOp::new(
        spec.clone(),
        window_metrics.clone(),
    )));
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

/// True when an expression of the plan reads each row's time (`__ts`, e.g. `event_time()`).
pub(crate) fn reads_row_time(plan: &LogicalPlan) -> bool {
    let mut found = false;
    plan.visit_exprs(&mut |e| {
        found |= matches!(e, quiver_compiler::expr::Expr::Column { name, .. } if name == TS_COLUMN);
    });
    found
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
