//! Rendering: a rule's physical plan becomes timely operators on one worker.
//!
//! [`build`] is one exhaustive match over the plan's stages, and [`chain`] one over its
//! operators; every decision (placement, exchanges, ticks, metric nodes) was made by
//! `crate::physical::lower`. Stateless operators are fused into the stage that reads the
//! source, so a filter/project rule is one timely operator plus the sink operator: per batch
//! that is one activation instead of four (timely's fixed cost per activation dominates small
//! rules; see shared/rules-scale.md).
//!
//! Capabilities: the source operator holds one capability at the batch's time and drops it
//! when its input ends; the sink operator holds its own until it has handed every batch to the
//! sink tasks, so the dataflow stays alive while results wait for a slow sink.

mod emit;
pub mod group;
mod group_emit;
mod group_window;
mod keyed;
mod sink;
mod source;
mod window;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;
use quiver_connectors::SourceEvent;
use quiver_connectors::codec::Decoder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::chain::{BatchOperator, Chain};
use crate::container::ArrowBatch;
use crate::exchange::{KeyDistributor, ToFirstWorker};
use crate::metrics::RuleMetrics;
use crate::operators::analytic::AnalyticOp;
use crate::operators::join_streams::{JoinStreamsOp, TagSourceOp};
use crate::operators::join_table::JoinTableOp;
use crate::operators::rows_aggregate::RowsAggregateOp;
use crate::operators::table_key::TableKeyOp;
use crate::operators::{filter::FilterOp, limit::LimitOp, project::ProjectOp, sort::SortOp};
use crate::operators::{key::KeyOp, prepare::PrepareOp, row_number::RowNumberOp};
use crate::physical::{Exchange, Op, OpKind, Output, PhysicalPlan, Stage, TableRead};
use crate::tables::TableSide;
use crate::tables::feed::IndexSpec;
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

/// Takes `rows` off a rule's rows in flight towards its window (or keyed) operators. In a
/// cluster an operator also takes rows that another process's source counted there, so the
/// count stops at zero instead of wrapping round (which would hold this process's source
/// back for ever).
pub(crate) fn rows_taken(to_windows: &std::sync::atomic::AtomicUsize, rows: usize) {
    use std::sync::atomic::Ordering;
    let _ = to_windows.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        Some(n.saturating_sub(rows))
    });
}

/// Everything the workers need to build one run of a rule. Shared by all workers.
pub struct RuleDataflow {
    /// Unique key of this run (rule id + run number), used to drop it.
    pub key: String,
    /// How the rule runs.
    pub physical: Arc<PhysicalPlan>,
    /// The counters of every node of [`PhysicalPlan::nodes`], by node id.
    pub metrics: Arc<RuleMetrics>,
    /// Decoder for raw payloads.
    pub decoder: Decoder,
    /// One ingest queue per worker, taken by the worker that builds it.
    pub ingest: Mutex<Vec<Option<mpsc::Receiver<SourceEvent>>>>,
    /// Where each worker registers the activator the source task wakes it with.
    pub activators: Arc<Mutex<Vec<Option<SyncActivator>>>>,
    /// One bounded queue per action; each worker sends on clones.
    pub sinks: Vec<mpsc::Sender<RecordBatch>>,
    /// Rows dropped for arriving behind the watermark.
    pub late_rows: Arc<AtomicU64>,
    /// What `rule_id()` and `rule_start()` read.
    pub rule: Arc<quiver_compiler::eval::RuleContext>,
    /// The tables the rule's joins read.
    pub tables: TableInputs,
    /// Rows sent to the window operators and not yet taken by them, over all workers.
    pub to_windows: Arc<std::sync::atomic::AtomicUsize>,
    /// Where an operator's panic fails the rule (never the worker).
    pub fault: Arc<crate::fault::Fault>,
    /// Checkpointing, for rules with `qos` 1 or 2.
    pub checkpoint: Option<Arc<crate::checkpoint::Checkpointing>>,
    /// Per worker, the input log's last record when the run began: a worker replays the log
    /// (its events keep the times they were logged at) until its position reaches it.
    pub replay_until: Vec<u64>,
    /// The rule's `last_hit_*` call sites (their hits are part of a checkpoint).
    pub hits: Vec<Arc<quiver_compiler::hit::HitSite>>,
}

/// What an operator of a rule run needs besides its data: the rule context its expressions
/// read, and the fault slot a panic fails the rule through.
pub(crate) type RunContext = (
    Arc<quiver_compiler::eval::RuleContext>,
    Arc<crate::fault::Fault>,
);

/// The tables a rule's joins read: each table by name, and the scan-table indexes by the
/// slots of [`PhysicalPlan::indexes`] (built before the rule).
#[derive(Default)]
pub struct TableInputs {
    /// The tables, by name.
    pub tables: HashMap<String, TableSide>,
    /// The indexes, by slot.
    pub indexes: Vec<IndexSpec>,
}

/// Builds the rule's dataflow in `scope` (called on every worker, in the same order): one
/// exhaustive match over the physical plan's stages.
pub fn build(scope: Scope<'_, u64>, rule: &RuleDataflow) {
    // Deliveries (batch x sink) emitted and not yet handed to a sink queue: in timely's
    // channel or in the sink operator's stash. Bounding it bounds the worker's memory.
    let pending = Rc::new(Cell::new(0usize));
    let sinks = rule.sinks.len().max(1);
    let mut stream: Option<Stream<'_, u64, ArrowBatch>> = None;
    for stage in &rule.physical.stages {
        let input = || {
            stream
                .clone()
                .expect("a stage after the source has an input")
        };
        stream = Some(match stage {
            Stage::Source {
                ops,
                tick,
                stamps_time,
                output,
            } => render_source(
                scope,
                rule,
                chain(ops, &rule.metrics, &rule.tables),
                pending.clone(),
                *tick,
                *stamps_time,
                *output == Output::Sinks,
            ),
            Stage::Keyed { ops } => render_keyed(
                input(),
                chain(ops, &rule.metrics, &rule.tables),
                pending.clone(),
                rule,
            ),
            Stage::Window {
                exchange,
                spec,
                joined,
                node,
            } => {
                let event_time = rule.physical.event_time.is_some();
                let windows = match joined {
                    Some(ops) => Windows::joined(
                        spec.clone(),
                        chain(ops, &rule.metrics, &rule.tables),
                        event_time,
                    ),
                    None => Windows::new(spec.clone(), event_time),
                };
                let metrics = rule.metrics.at(*node);
                let (to_windows, ctx) = (rule.to_windows.clone(), rule.rule.clone());
                let fault = rule.fault.clone();
                match exchange {
                    Exchange::ByKey => render_window(
                        input(),
                        windows,
                        (metrics, *node),
                        DistributorPact(|_| KeyDistributor),
                        to_windows,
                        (ctx, fault),
                        (rule.checkpoint.clone(), event_time),
                    ),
                    Exchange::ToFirstWorker => render_window(
                        input(),
                        windows,
                        (metrics, *node),
                        DistributorPact(|_| ToFirstWorker),
                        to_windows,
                        (ctx, fault),
                        (rule.checkpoint.clone(), event_time),
                    ),
                }
            }
            Stage::Emit { merge, ops } => render_post(
                input(),
                chain(ops, &rule.metrics, &rule.tables),
                *merge,
                pending.clone(),
                sinks,
                (rule.rule.clone(), rule.fault.clone()),
            ),
            Stage::Sink { split_rows } => {
                render_sink(input(), rule, pending.clone(), *split_rows);
                return;
            }
        });
    }
}

/// The operators of a stage, fused into one chain.
pub(crate) fn chain(ops: &[Op], metrics: &RuleMetrics, tables: &TableInputs) -> Chain {
    let mut chain = Chain::default();
    for op in ops {
        chain.push(operator(op, metrics, tables));
    }
    chain
}

/// The operator of a physical op: the only match over operator kinds.
fn operator(op: &Op, metrics: &RuleMetrics, tables: &TableInputs) -> Box<dyn BatchOperator> {
    let node = || {
        metrics.at(op
            .node
            .expect("the planner gives this operator a metric node"))
    };
    match &op.kind {
        OpKind::Filter(predicate) => Box::new(FilterOp::new(predicate.clone(), node())),
        OpKind::Project { items, send_nil } => {
            Box::new(ProjectOp::new(items.clone(), node()).sending_nil(*send_nil))
        }
        OpKind::Limit(n) => Box::new(LimitOp::new(*n)),
        OpKind::Sort(keys) => Box::new(SortOp::new(keys.clone(), node())),
        OpKind::RowNumber(specs) => Box::new(RowNumberOp::new(specs.clone(), node())),
        OpKind::RowsAggregate(spec) => Box::new(RowsAggregateOp::new(spec.clone(), node())),
        OpKind::Analytic(calls) => Box::new(AnalyticOp::new(calls.clone(), node())),
        OpKind::JoinTable(join, read) => {
            let table = tables
                .tables
                .get(&join.table)
                .expect("the engine resolves every joined table")
                .clone();
            let index = match read {
                TableRead::Partitioned { index } | TableRead::Replicated { index } => {
                    tables.indexes.get(*index)
                }
                TableRead::Lookup | TableRead::Own { .. } => None,
            };
            let op = JoinTableOp::new((**join).clone(), table, index, node());
            Box::new(match read {
                TableRead::Own { source } => op.with_own_copy(*source),
                _ => op,
            })
        }
        OpKind::JoinStreams(join) => Box::new(JoinStreamsOp::new((**join).clone(), node())),
        OpKind::PrepareWindow { spec, event_time } => {
            let op = PrepareOp::new(spec.clone(), node());
            Box::new(if *event_time {
                op.stamping_first_row()
            } else {
                op
            })
        }
        OpKind::TableKey(join) => Box::new(TableKeyOp::new(join)),
        OpKind::PartitionKey(keys) => Box::new(KeyOp::new(keys.clone())),
        OpKind::TagSource => Box::new(TagSourceOp),
    }
}
