//! The physical plan: how a rule runs, decided in one pass over its logical plan.
//!
//! The logical plan (`quiver_compiler::plan::LogicalPlan`) says what a rule computes. The
//! physical plan says how: which workers read the input, where rows are exchanged and by what
//! key, which stage keeps time moving, which operators run fused in which stage, whether the
//! rule joins its stream's rule group, and the metric node of every operator. The renderer
//! (`crate::render`) is one exhaustive match over [`Stage`] and [`OpKind`]; it decides nothing.
//!
//! Checkpoints will ask the physical plan which operators hold state ([`OpKind::is_stateful`]),
//! and cluster mode which exchanges cross processes ([`Exchange`]).

mod lower;

use std::fmt::{self, Write as _};
use std::sync::Arc;

use quiver_compiler::analytic::AnalyticCall;
use quiver_compiler::expr::Expr;
use quiver_compiler::plan::{ProjectItem, RowNumberSpec, StreamJoins, TableJoin};
use quiver_compiler::window::{AggregateSpec, SortKey};

pub use lower::{Target, lower};

/// The index of a metric node in [`PhysicalPlan::nodes`].
pub type NodeId = usize;

/// Event-time settings of a rule (`isEventTime` with the stream's `TIMESTAMP` field).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Which workers read the rule's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Every worker reads a share (rows spread round-robin by the source).
    AllWorkers,
    /// Worker 0 reads every row, in order: event time (one watermark, as eKuiper's one
    /// watermark operator), stream joins, analytic and hit functions, and windows whose bounds
    /// follow the sequence of rows.
    FirstWorker,
}

/// How rows move between workers in front of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// By the hash of the `__key` column (the same seeded hash that places table rows).
    ByKey,
    /// Every row to worker 0.
    ToFirstWorker,
}

/// Where a table join reads its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRead {
    /// A scan table's index, partitioned over the workers by join key: the rule's rows are
    /// exchanged by that key to meet their table rows (`index` is the slot in
    /// [`PhysicalPlan::indexes`]).
    Partitioned {
        /// Slot in [`PhysicalPlan::indexes`].
        index: usize,
    },
    /// A scan table's index replicated on every worker, read wherever the rows are.
    Replicated {
        /// Slot in [`PhysicalPlan::indexes`].
        index: usize,
    },
    /// A lookup table: the store is asked once per batch.
    Lookup,
    /// The rule's own copy of a scan table on worker 0 (qos 1 and 2), fed by its table
    /// source number `source` (`tables::own`).
    Own {
        /// The table's source number (after the joined streams').
        source: u32,
    },
}

/// One operator of a stage, with the metric node it reports into (none for LIMIT, which
/// eKuiper counts in the project node, and for the planner's own key and tag operators).
#[derive(Debug, Clone)]
pub struct Op {
    /// What it does.
    pub kind: OpKind,
    /// Its metric node.
    pub node: Option<NodeId>,
}

/// What an operator does.
#[derive(Debug, Clone)]
pub enum OpKind {
    /// WHERE or HAVING.
    Filter(Expr),
    /// SELECT.
    Project {
        /// The fields.
        items: Vec<ProjectItem>,
        /// The rule's `sendNilField`: nulls of plain columns and aliased fields are sent.
        send_nil: bool,
    },
    /// LIMIT.
    Limit(usize),
    /// ORDER BY within one emission.
    Sort(Vec<SortKey>),
    /// `row_number() OVER (...)` within one emission.
    RowNumber(Vec<RowNumberSpec>),
    /// Aggregates without a window (each row alone, as eKuiper).
    RowsAggregate(Arc<AggregateSpec>),
    /// Analytic functions (state per call and partition).
    Analytic(Vec<AnalyticCall>),
    /// A stream-table join.
    JoinTable(Box<TableJoin>, TableRead),
    /// Stream-stream joins over a window's rows.
    JoinStreams(Box<StreamJoins>),
    /// Evaluates on the raw rows what the window needs (row time, key, arguments); in event
    /// time it also stamps the rule's first row time on every batch, for every window worker.
    PrepareWindow {
        /// The window's aggregate.
        spec: Arc<AggregateSpec>,
        /// Whether the rule runs in event time.
        event_time: bool,
    },
    /// Adds the key column of a partitioned table join (exchanged by it).
    TableKey(Box<TableJoin>),
    /// Adds the partition key column of keyed analytic functions (exchanged by it).
    PartitionKey(Vec<Expr>),
    /// Tags the FROM stream's rows as stream 0 (the joined streams' rows are tagged already).
    TagSource,
}

impl OpKind {
    /// True when the operator keeps state from one batch to the next (what a checkpoint
    /// writes). Windows are stages of their own and always hold state.
    pub fn is_stateful(&self) -> bool {
        match self {
            OpKind::Analytic(_) => true,
            // In event time it keeps the rule's first row time.
            OpKind::PrepareWindow { event_time, .. } => *event_time,
            // A filter with `last_hit_*` records hits; the sites live in the plan's expressions.
            OpKind::Filter(e) => {
                let mut hits = false;
                e.visit(&mut |x| hits |= matches!(x, Expr::Hit { .. }));
                hits
            }
            OpKind::Project { .. }
            | OpKind::Limit(_)
            | OpKind::Sort(_)
            | OpKind::RowNumber(_)
            | OpKind::RowsAggregate(_)
            | OpKind::JoinTable(..)
            | OpKind::JoinStreams(_)
            | OpKind::TableKey(_)
            | OpKind::PartitionKey(_)
            | OpKind::TagSource => false,
        }
    }
}

/// Where a stage sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Straight to the sink stage on the same worker.
    Sinks,
    /// Into an exchange: the rows count towards the rule's in-flight bound until the next
    /// stage takes them.
    Exchange,
}

/// One step of the rendered dataflow.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Reads this worker's ingest queue, decodes, keeps the watermark (event time), stamps
    /// each batch's time and runs `ops` fused in one timely operator.
    Source {
        /// The fused operators.
        ops: Vec<Op>,
        /// Processing-time windows: how often time must move without input (ms).
        tick: Option<u64>,
        /// Whether each batch carries its row time (`__ts`) and moves the capability: only
        /// windows and readers of the row time need it, and each move wakes every worker.
        stamps_time: bool,
        /// Where the results go.
        output: Output,
    },
    /// Rows exchanged by key; `ops` run on the worker that owns the key.
    Keyed {
        /// The operators after the exchange.
        ops: Vec<Op>,
    },
    /// The window operator after an exchange.
    Window {
        /// How rows reach it.
        exchange: Exchange,
        /// The window and its aggregates.
        spec: Arc<AggregateSpec>,
        /// Stream joins: the operators run on each closed window's rows before grouping.
        joined: Option<Vec<Op>>,
        /// Its metric node.
        node: NodeId,
    },
    /// On worker 0: merges one window's parts from every worker (`merge`), then runs `ops`.
    Emit {
        /// Whether parts from several workers make one emission.
        merge: bool,
        /// HAVING, ORDER BY, SELECT, LIMIT and what else follows the window.
        ops: Vec<Op>,
    },
    /// Hands batches to the rule's sink queues.
    Sink {
        /// Each row is an emission of its own (`unnest`, as eKuiper).
        split_rows: bool,
    },
}

/// A scan-table index a rule reads, in the order of its joins.
#[derive(Debug, Clone)]
pub struct IndexRead {
    /// The table.
    pub table: String,
    /// The table-side join keys.
    pub keys: Vec<Expr>,
    /// Partitioned by key (true) or replicated.
    pub partitioned: bool,
}

/// What the decoder of the rule's source converts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decode {
    /// The columns the plan reads (and the event-time field); `None`: every column.
    pub columns: Option<Vec<String>>,
    /// Whether message metadata columns are added (`meta(...)`).
    pub meta: bool,
}

/// How a rule runs. Built by [`lower`].
#[derive(Debug, Clone)]
pub struct PhysicalPlan {
    /// Metric nodes in topology order, named as eKuiper names them (`source_demo`,
    /// `op_2_decoder`, `op_3_filter`, ..., `sink_log_0`, then joined streams' sources).
    pub nodes: Vec<String>,
    /// The source node.
    pub source: NodeId,
    /// The decoder node (the source node itself for memory streams, which carry rows).
    pub decoder: NodeId,
    /// One node per action, in order.
    pub sinks: Vec<NodeId>,
    /// Streams joined to the FROM stream: name, qualifier and source node.
    pub joined: Vec<(String, String, NodeId)>,
    /// Scan tables the rule keeps its own copy of (source numbers on from the joined
    /// streams'), with their source nodes.
    pub own_tables: Vec<(String, NodeId)>,
    /// Which workers read the input.
    pub input: Input,
    /// Event time, when the rule uses it.
    pub event_time: Option<EventTime>,
    /// What the decoder converts.
    pub decode: Decode,
    /// The scan-table indexes the rule's joins read, in plan order.
    pub indexes: Vec<IndexRead>,
    /// Whether the rule runs in its shared stream's rule group instead of a dataflow of its
    /// own: a stateless rule's source stage, or a window rule's stages as a
    /// [`GroupedWindow`].
    pub grouped: bool,
    /// The stages, source first, sink last.
    pub stages: Vec<Stage>,
}

/// A window rule's stages as its shared stream's rule group runs them: the group's source
/// runs the source stage's operators, then the group's window and emit operators keep this.
#[derive(Debug, Clone)]
pub struct GroupedWindow {
    /// The window and its aggregates.
    pub spec: Arc<AggregateSpec>,
    /// Its metric node.
    pub node: NodeId,
    /// Whether its groups are spread over the workers by key (else one worker keeps all).
    pub spread: bool,
    /// HAVING, ORDER BY, SELECT, LIMIT.
    pub post: Vec<Op>,
    /// How often processing time must move without input (ms): every window ends on a
    /// multiple of it (a hopping window's on a multiple of its hop).
    pub tick: u64,
}

impl PhysicalPlan {
    /// A grouped window rule's window, emit and tick (none for a stateless rule, or a rule of
    /// its own).
    pub fn grouped_window(&self) -> Option<GroupedWindow> {
        if !self.grouped {
            return None;
        }
        match self.stages.as_slice() {
            [
                Stage::Source {
                    tick: Some(tick), ..
                },
                Stage::Window {
                    exchange,
                    spec,
                    joined: None,
                    node,
                },
                Stage::Emit { ops, .. },
                Stage::Sink { split_rows: false },
            ] => Some(GroupedWindow {
                spec: spec.clone(),
                node: *node,
                spread: *exchange == Exchange::ByKey,
                post: ops.clone(),
                tick: *tick,
            }),
            _ => None,
        }
    }

    /// The operators of the source stage (a grouped rule's whole chain).
    pub fn source_ops(&self) -> &[Op] {
        match self.stages.first() {
            Some(Stage::Source { ops, .. }) => ops,
            _ => &[],
        }
    }

    /// The tables the rule's joins read, by name (a table joined twice is named twice).
    pub fn tables(&self) -> impl Iterator<Item = &String> {
        self.stages
            .iter()
            .flat_map(|s| match s {
                Stage::Source { ops, .. } | Stage::Keyed { ops } | Stage::Emit { ops, .. } => {
                    ops.as_slice()
                }
                Stage::Window { joined, .. } => joined.as_deref().unwrap_or_default(),
                Stage::Sink { .. } => &[],
            })
            .filter_map(|op| match &op.kind {
                OpKind::JoinTable(join, _) => Some(&join.table),
                _ => None,
            })
    }

    /// The plan as text, for `EXPLAIN`, tests and logs.
    pub fn explain(&self) -> String {
        self.to_string()
    }

    fn node(&self, id: Option<NodeId>) -> String {
        id.and_then(|i| self.nodes.get(i))
            .map_or_else(String::new, |n| format!(" [{n}]"))
    }

    fn ops(&self, out: &mut String, ops: &[Op]) {
        for op in ops {
            let _ = writeln!(out, "    {}{}", op.kind, self.node(op.node));
        }
    }
}

impl fmt::Display for PhysicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let input = match self.input {
            Input::AllWorkers => "all workers",
            Input::FirstWorker => "worker 0, in order",
        };
        let _ = write!(out, "Input: {input}{}", self.node(Some(self.source)));
        if self.decoder != self.source {
            let _ = write!(out, ", decoded{}", self.node(Some(self.decoder)));
        }
        match &self.decode.columns {
            Some(c) => {
                let _ = write!(out, ", reading {}", c.join(", "));
            }
            None => out.push_str(", reading every column"),
        }
        if self.decode.meta {
            out.push_str(", with metadata");
        }
        out.push('\n');
        if let Some(e) = &self.event_time {
            let _ = writeln!(
                out,
                "Event time: {} (late tolerance {} ms, {} stream{})",
                e.field,
                e.tolerance,
                e.sources,
                if e.sources == 1 { "" } else { "s" }
            );
        }
        for (name, qualifier, node) in &self.joined {
            let _ = writeln!(
                out,
                "Joined stream: {name} as {qualifier}{}",
                self.node(Some(*node))
            );
        }
        for i in &self.indexes {
            let keys: Vec<String> = i.keys.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "Index: {} by ({}), {}",
                i.table,
                keys.join(", "),
                if i.partitioned {
                    "partitioned"
                } else {
                    "replicated"
                }
            );
        }
        if self.grouped {
            out.push_str(
                "Rule group: the stream's stateless and processing-time window rules share one dataflow\n",
            );
        }
        for stage in &self.stages {
            match stage {
                Stage::Source {
                    ops,
                    tick,
                    stamps_time,
                    output,
                } => {
                    let mut notes = Vec::new();
                    if let Some(t) = tick {
                        notes.push(format!("tick {t} ms"));
                    }
                    if *stamps_time {
                        notes.push("stamps row time".to_string());
                    }
                    notes.push(match output {
                        Output::Sinks => "to sinks".to_string(),
                        Output::Exchange => "to exchange".to_string(),
                    });
                    let _ = writeln!(out, "  Source ({})", notes.join(", "));
                    self.ops(&mut out, ops);
                }
                Stage::Keyed { ops } => {
                    let _ = writeln!(out, "  Exchange by key");
                    self.ops(&mut out, ops);
                }
                Stage::Window {
                    exchange,
                    spec,
                    joined,
                    node,
                } => {
                    let ex = match exchange {
                        Exchange::ByKey => "by key",
                        Exchange::ToFirstWorker => "on worker 0",
                    };
                    let _ = writeln!(out, "  Window {ex}: {spec}{}", self.node(Some(*node)));
                    if let Some(ops) = joined {
                        let _ = writeln!(out, "   on each window's rows:");
                        self.ops(&mut out, ops);
                    }
                }
                Stage::Emit { merge, ops } => {
                    let _ = writeln!(
                        out,
                        "  Emit on worker 0{}",
                        if *merge {
                            ", one emission per window time"
                        } else {
                            ""
                        }
                    );
                    self.ops(&mut out, ops);
                }
                Stage::Sink { split_rows } => {
                    let sinks: Vec<&str> =
                        self.sinks.iter().map(|&s| self.nodes[s].as_str()).collect();
                    let _ = writeln!(
                        out,
                        "  Sink{}: {}",
                        if *split_rows {
                            " (a row per emission)"
                        } else {
                            ""
                        },
                        sinks.join(", ")
                    );
                }
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
        match self {
            OpKind::Filter(e) => write!(f, "Filter: {e}"),
            OpKind::Project { items, send_nil } => {
                write!(
                    f,
                    "Project: {}{}",
                    list(&mut items.iter().map(ToString::to_string)),
                    if *send_nil { " (sendNilField)" } else { "" }
                )
            }
            OpKind::Limit(n) => write!(f, "Limit: {n}"),
            OpKind::Sort(keys) => write!(
                f,
                "Sort: {}",
                list(&mut keys.iter().map(|k| format!(
                    "{} {}",
                    k.expr,
                    if k.ascending { "ASC" } else { "DESC" }
                )))
            ),
            OpKind::RowNumber(specs) => write!(f, "RowNumber: {} call(s)", specs.len()),
            OpKind::RowsAggregate(spec) => write!(f, "Aggregate per row: {spec}"),
            OpKind::Analytic(calls) => {
                write!(
                    f,
                    "Analytic: {}",
                    list(&mut calls.iter().map(ToString::to_string))
                )
            }
            OpKind::JoinTable(join, read) => {
                let how = match read {
                    TableRead::Partitioned { .. } => "partitioned index",
                    TableRead::Replicated { .. } => "replicated index",
                    TableRead::Lookup => "lookup",
                    TableRead::Own { .. } => "the rule's own copy",
                };
                write!(
                    f,
                    "{} table {} ({how})",
                    if join.left { "LeftJoin" } else { "Join" },
                    join.table
                )
            }
            OpKind::JoinStreams(join) => write!(
                f,
                "JoinStreams: {}",
                list(&mut join.streams.iter().map(|s| s.name.clone()))
            ),
            OpKind::PrepareWindow { .. } => f.write_str("PrepareWindow"),
            OpKind::TableKey(join) => write!(
                f,
                "TableKey: {}",
                list(&mut join.stream_keys.iter().map(ToString::to_string))
            ),
            OpKind::PartitionKey(keys) => {
                write!(
                    f,
                    "PartitionKey: {}",
                    list(&mut keys.iter().map(ToString::to_string))
                )
            }
            OpKind::TagSource => f.write_str("TagSource"),
        }
    }
}
