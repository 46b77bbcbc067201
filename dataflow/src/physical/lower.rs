//! Lowering: the one pass from a logical plan to a physical plan.

use std::sync::Arc;

use quiver_compiler::plan::LogicalPlan;
use quiver_compiler::window::WindowKind;

use super::{
    Decode, EventTime, Exchange, IndexRead, Input, NodeId, Op, OpKind, Output, PhysicalPlan, Stage,
    TableRead,
};

/// What the physical plan depends on besides the logical plan: the stream, the rule's
/// options and sinks, and the machine.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The FROM stream's name.
    pub stream: &'a str,
    /// Its source type: `memory` streams carry rows and have no decoder node.
    pub source_type: &'a str,
    /// Whether the stream is `SHARED` (its stateless rules then run in its rule group).
    pub shared: bool,
    /// Event time from the rule's options (`sources` is filled in here).
    pub event_time: Option<EventTime>,
    /// The sink type of each action, in order.
    pub sinks: &'a [String],
    /// The rule's `sendNilField` option.
    pub send_nil: bool,
    /// Whether the machine has cores to spare beyond a reading worker and a reader thread:
    /// only then do event-time windows spread their groups over the workers.
    pub spare_cores: bool,
    /// Whether the rule keeps its own copy of each scan table it joins (qos 1 and 2: the
    /// shared arrangement is outside its checkpoints, see `tables::own`).
    pub own_tables: bool,
}

/// Builds the physical plan of `plan` for `target`.
pub fn lower(plan: &LogicalPlan, target: &Target<'_>) -> PhysicalPlan {
    // The plan's nodes from the one above the scan up: the order they run in.
    let mut logical: Vec<&LogicalPlan> = plan.chain().filter(|n| n.input().is_some()).collect();
    logical.reverse();

    let mut nodes = vec![format!("source_{}", target.stream)];
    let source: NodeId = 0;
    let decoder = if target.source_type == "memory" {
        source
    } else {
        nodes.push("op_2_decoder".to_string());
        1
    };
    let joined_streams = plan.joined_streams();
    let event_time = target.event_time.clone().map(|e| EventTime {
        sources: 1 + joined_streams.len(),
        ..e
    });
    let window_kind = plan.aggregate().map(|a| &a.window.kind);
    let scans = logical
        .iter()
        .filter(|n| matches!(n, LogicalPlan::JoinTable { join, .. } if !join.lookup))
        .count();
    // A rule's own table copies live on worker 0, which takes their changes between the
    // stream's rows in the order of its input log.
    let own_tables = target.own_tables && scans > 0;
    let ordered = own_tables
        || event_time.is_some()
        || !joined_streams.is_empty()
        || plan.has_analytic()
        || plan.reads_hits()
        || window_kind.is_some_and(|k| !k.is_partitionable() && *k != WindowKind::Rows);

    // A rule without windows, order or other keyed state that joins one scan table reads it
    // partitioned: its rows are exchanged by join key to the worker holding the matching
    // table rows. Other rules join wherever their rows are, against a replicated index.
    let partitioned = !own_tables
        && scans == 1
        && event_time.is_none()
        && joined_streams.is_empty()
        && !plan.has_analytic()
        && !plan.reads_hits()
        && window_kind.is_none_or(|k| *k == WindowKind::Rows);
    let mut indexes: Vec<IndexRead> = Vec::new();
    // Own copies: one source per table (numbered after the joined streams), read by each of
    // its joins.
    let mut own: Vec<String> = Vec::new();
    let reads: Vec<Option<TableRead>> = logical
        .iter()
        .map(|n| {
            let LogicalPlan::JoinTable { join, .. } = n else {
                return None;
            };
            if join.lookup {
                return Some(TableRead::Lookup);
            }
            if own_tables {
                let at = match own.iter().position(|t| *t == join.table) {
                    Some(at) => at,
                    None => {
                        own.push(join.table.clone());
                        own.len() - 1
                    }
                };
                let source = (1 + joined_streams.len() + at) as u32;
                return Some(TableRead::Own { source });
            }
            let text = |keys: &[quiver_compiler::expr::Expr]| -> Vec<String> {
                keys.iter().map(ToString::to_string).collect()
            };
            // Joins of one table on the same keys share one index.
            let index = match indexes
                .iter()
                .position(|i| i.table == join.table && text(&i.keys) == text(&join.table_keys))
            {
                Some(i) => i,
                None => {
                    indexes.push(IndexRead {
                        table: join.table.clone(),
                        keys: join.table_keys.clone(),
                        partitioned,
                    });
                    indexes.len() - 1
                }
            };
            Some(if partitioned {
                TableRead::Partitioned { index }
            } else {
                TableRead::Replicated { index }
            })
        })
        .collect();
    // One metric node per operator eKuiper shows, numbered on from the decoder, and the
    // operator of every node but a window (a stage of its own).
    let mut seen_window = false;
    let (op_nodes, kinds): (Vec<Option<NodeId>>, Vec<Option<OpKind>>) = logical
        .iter()
        .zip(&reads)
        .map(|(n, read)| {
            let (name, kind) = lower_node(n, &mut seen_window, *read, target.send_nil);
            let node = name.map(|name| {
                nodes.push(format!("op_{}_{name}", nodes.len() + 1));
                nodes.len() - 1
            });
            (node, kind)
        })
        .unzip();
    let sinks: Vec<NodeId> = target
        .sinks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            nodes.push(format!("sink_{t}_{i}"));
            nodes.len() - 1
        })
        .collect();
    let joined: Vec<(String, String, NodeId)> = plan
        .joined_streams()
        .iter()
        .map(|s| {
            nodes.push(format!("source_{}", s.name));
            (s.name.clone(), s.qualifier.clone(), nodes.len() - 1)
        })
        .collect();
    let own_tables: Vec<(String, NodeId)> = own
        .into_iter()
        .map(|t| {
            nodes.push(format!("source_{t}"));
            (t, nodes.len() - 1)
        })
        .collect();

    // Without a window each message is its own emission and eKuiper applies LIMIT to each
    // message's result (`internal/topo/operator/project_operator.go`): LIMIT n >= 1 keeps every
    // row, whatever messages a batch holds. (The rows `unnest` makes of one message are limited
    // together, per batch.)
    let per_message = window_kind.is_none_or(|k| *k == WindowKind::Rows) && !plan.has_unnest();
    let ops = |range: std::ops::Range<usize>| -> Vec<Op> {
        range
            .map(|i| Op {
                kind: kinds[i]
                    .clone()
                    .expect("a window is a stage, not an operator"),
                node: op_nodes[i],
            })
            .filter(|op| !(per_message && matches!(op.kind, OpKind::Limit(n) if n > 0)))
            .collect()
    };

    // eKuiper sends each row `unnest` makes as an emission of its own; and in event time
    // without a window its watermark operator sends each released row on its own
    // (`internal/topo/node/watermark_op.go`), even when one watermark releases several.
    let split_rows = plan.has_unnest()
        || (event_time.is_some() && window_kind.is_none_or(|k| *k == WindowKind::Rows));
    let window_at = logical.iter().position(
        |n| matches!(n, LogicalPlan::Aggregate { spec, .. } if spec.window.kind != WindowKind::Rows),
    );
    let stages = match window_at {
        None => {
            let all = 0..logical.len();
            let partitioned_at = reads
                .iter()
                .position(|r| matches!(r, Some(TableRead::Partitioned { .. })));
            let keyed = match partitioned_at {
                Some(j) => {
                    let LogicalPlan::JoinTable { join, .. } = logical[j] else {
                        unreachable!("a table read belongs to a table join");
                    };
                    Some((j, OpKind::TableKey(join.clone())))
                }
                None => keyed_analytic(&logical).map(|(a, p)| (a, OpKind::PartitionKey(p))),
            };
            match keyed {
                // The rest runs where its key lives: a partitioned join where its table rows
                // are, analytic state per partition (each key's rows still in order, since one
                // worker reads them all and timely's channels keep order).
                Some((at, key)) => {
                    let mut pre = ops(0..at);
                    pre.push(Op {
                        kind: key,
                        node: None,
                    });
                    vec![
                        Stage::Source {
                            ops: pre,
                            tick: None,
                            stamps_time: true,
                            output: Output::Exchange,
                        },
                        Stage::Keyed {
                            ops: ops(at..logical.len()),
                        },
                        Stage::Sink { split_rows },
                    ]
                }
                None => vec![
                    Stage::Source {
                        ops: ops(all),
                        tick: None,
                        stamps_time: plan.reads_row_time(),
                        output: Output::Sinks,
                    },
                    Stage::Sink { split_rows },
                ],
            }
        }
        Some(at) => {
            let LogicalPlan::Aggregate { spec, .. } = logical[at] else {
                unreachable!("position found an Aggregate");
            };
            let spec = Arc::new((**spec).clone());
            let node = op_nodes[at].expect("a window has a metric node");
            let prepare = Op {
                kind: OpKind::PrepareWindow {
                    spec: spec.clone(),
                    event_time: event_time.is_some(),
                },
                node: Some(node),
            };
            let post = ops(at + 1..logical.len());
            let join_at = logical[..at]
                .iter()
                .position(|n| matches!(n, LogicalPlan::JoinStreams { .. }));
            // Processing time moves on without input, so windows close on time.
            let tick = match (&event_time, &spec.window.kind) {
                (Some(_), _) => None,
                (None, WindowKind::Tumbling { size }) => Some(*size),
                (None, WindowKind::Hopping { hop, .. }) => Some(*hop),
                (None, WindowKind::Sliding { delay, .. }) if *delay > 0 => Some((*delay).min(100)),
                (None, WindowKind::Session { .. }) => Some(100),
                _ => None,
            };
            // eKuiper does not push WHERE below count and sliding windows, nor below any
            // event-time window (internal/topo/planner/planner.go, windowPlan.go): the window
            // collects unfiltered rows (a count window counts them), WHERE filters each window's
            // rows, and a window WHERE leaves empty is not emitted. State windows and sliding
            // windows with OVER (WHEN ...) decide their bounds row by row and keep WHERE below
            // them, as do rules whose WHERE records `last_hit_*` hits.
            let where_above = join_at.is_none()
                && at > 0
                && matches!(logical[at - 1], LogicalPlan::Filter { .. })
                && (event_time.is_some()
                    || matches!(
                        spec.window.kind,
                        WindowKind::Count { .. } | WindowKind::Sliding { .. }
                    ))
                && spec.window.state.is_none()
                && spec.window.trigger.is_none()
                && !plan.reads_hits();
            // Windows that keep their raw rows and run a chain on each window's rows when it
            // closes, on worker 0: stream-stream joins (rows of every stream go in as they are;
            // the join, the rest of the ON/WHERE work and the preparation run per window), and
            // a WHERE kept above the window.
            let raw = match join_at {
                Some(j) => {
                    let mut pre = ops(0..j);
                    pre.push(Op {
                        kind: OpKind::TagSource,
                        node: None,
                    });
                    Some((pre, j, None))
                }
                None if where_above => Some((ops(0..at - 1), at - 1, tick)),
                None => None,
            };
            match raw {
                Some((pre, from, tick)) => {
                    let mut on_window = ops(from..at);
                    on_window.push(prepare);
                    vec![
                        Stage::Source {
                            ops: pre,
                            tick,
                            stamps_time: true,
                            output: Output::Exchange,
                        },
                        Stage::Window {
                            exchange: Exchange::ToFirstWorker,
                            spec,
                            joined: Some(on_window),
                            node,
                        },
                        Stage::Emit {
                            merge: false,
                            ops: post,
                        },
                        Stage::Sink { split_rows },
                    ]
                }
                None => {
                    let mut pre = ops(0..at);
                    pre.push(prepare);
                    let merge = spec.window.kind.is_partitionable();
                    // An event-time window's rows are read in order by one worker, which with
                    // the source's reader thread keeps two cores busy: spreading its groups
                    // adds a partition and a copy per batch and pays only with cores to spare
                    // (measured: W2 at 2 workers on 2 cores, 0.28 s spread, 0.24 s kept).
                    let exchange = if merge && (event_time.is_none() || target.spare_cores) {
                        Exchange::ByKey
                    } else {
                        Exchange::ToFirstWorker
                    };
                    vec![
                        Stage::Source {
                            ops: pre,
                            tick,
                            stamps_time: true,
                            output: Output::Exchange,
                        },
                        Stage::Window {
                            exchange,
                            spec,
                            joined: None,
                            node,
                        },
                        Stage::Emit { merge, ops: post },
                        Stage::Sink { split_rows },
                    ]
                }
            }
        }
    };

    // The fast JSON path converts only what the rule reads (and the watermark's field); the
    // plan's own hidden columns are no stream fields.
    let columns = plan.columns_read().map(|mut c| {
        c.extend(event_time.as_ref().map(|e| e.field.clone()));
        c.into_iter()
            .filter(|c| !c.starts_with(quiver_compiler::columns::HIDDEN_PREFIX))
            .collect()
    });
    let grouped = target.shared
        && joined.is_empty()
        && event_time.is_none()
        && !ordered
        && (groupable(plan) || window_groupable(plan, &stages));
    PhysicalPlan {
        nodes,
        source,
        decoder,
        sinks,
        joined,
        own_tables,
        input: if ordered {
            Input::FirstWorker
        } else {
            Input::AllWorkers
        },
        event_time,
        decode: Decode {
            columns,
            meta: plan.uses_meta(),
        },
        indexes,
        grouped,
        stages,
    }
}

/// A plan node's metric node name, as eKuiper names it (none for LIMIT, which eKuiper applies
/// inside the project node), and its operator (none for a window, a stage of its own): the only
/// match over plan nodes.
fn lower_node(
    n: &LogicalPlan,
    seen_window: &mut bool,
    read: Option<TableRead>,
    send_nil: bool,
) -> (Option<&'static str>, Option<OpKind>) {
    match n {
        LogicalPlan::Filter { predicate, .. } => (
            Some(if *seen_window { "having" } else { "filter" }),
            Some(OpKind::Filter(predicate.clone())),
        ),
        LogicalPlan::Project { items, .. } => (
            Some("project"),
            Some(OpKind::Project {
                items: items.clone(),
                send_nil,
            }),
        ),
        LogicalPlan::Limit { n, .. } => (None, Some(OpKind::Limit(*n))),
        LogicalPlan::Sort { keys, .. } => (Some("order"), Some(OpKind::Sort(keys.clone()))),
        LogicalPlan::RowNumber { specs, .. } => {
            (Some("windowFunc"), Some(OpKind::RowNumber(specs.clone())))
        }
        LogicalPlan::Aggregate { spec, .. } => {
            *seen_window = true;
            if spec.window.kind == WindowKind::Rows {
                let spec = Arc::new((**spec).clone());
                (Some("aggregate"), Some(OpKind::RowsAggregate(spec)))
            } else {
                (Some("window"), None)
            }
        }
        LogicalPlan::Analytic { calls, .. } => {
            (Some("analytic"), Some(OpKind::Analytic(calls.clone())))
        }
        LogicalPlan::JoinTable { join, .. } => (
            Some("join"),
            Some(OpKind::JoinTable(
                join.clone(),
                read.expect("every table join has a table read"),
            )),
        ),
        LogicalPlan::JoinStreams { join, .. } => {
            (Some("join"), Some(OpKind::JoinStreams(join.clone())))
        }
        LogicalPlan::Scan(_) => (None, None),
    }
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

/// Whether a rule can run in its stream's group: its plan is a chain of filters, projections
/// (without `unnest`) and a limit, reading no row time and keeping no state between events
/// (hit functions keep some).
fn groupable(plan: &LogicalPlan) -> bool {
    !plan.reads_row_time()
        && !plan.reads_hits()
        && !plan.has_unnest()
        && plan.chain().all(|n| {
            matches!(
                n,
                LogicalPlan::Scan(_)
                    | LogicalPlan::Filter { .. }
                    | LogicalPlan::Project { .. }
                    | LogicalPlan::Limit { .. }
            )
        })
}

/// Whether a window rule can run in its shared stream's rule group: a processing-time tumbling
/// or hopping window (which closes on the clock, not on row order) between operators that keep
/// no state of their own and read no table.
fn window_groupable(plan: &LogicalPlan, stages: &[Stage]) -> bool {
    let plain = |ops: &[Op], after: bool| {
        ops.iter().all(|o| match o.kind {
            OpKind::Filter(_) | OpKind::Project { .. } => true,
            OpKind::PrepareWindow { .. } | OpKind::PartitionKey(_) => !after,
            OpKind::Sort(_) | OpKind::Limit(_) => after,
            _ => false,
        })
    };
    !plan.reads_hits()
        && !plan.has_unnest()
        && !plan.has_analytic()
        && match stages {
            [
                Stage::Source {
                    ops: pre,
                    tick: Some(_),
                    ..
                },
                Stage::Window {
                    spec, joined: None, ..
                },
                Stage::Emit { ops: post, .. },
                Stage::Sink { split_rows: false },
            ] => spec.window.kind.is_partitionable() && plain(pre, false) && plain(post, true),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use quiver_compiler::{Registry, compile_rule, parse_create};

    use super::*;

    /// Lowers `sql` over stream `demo` (mqtt, or `shared`) and table `devices`.
    fn plan(sql: &str, shared: bool, event_time: bool, cores: usize) -> PhysicalPlan {
        let mut catalog = HashMap::new();
        for ddl in [
            r#"CREATE STREAM demo (device STRING, temperature FLOAT, ts BIGINT) WITH (DATASOURCE="d", TYPE="mqtt", TIMESTAMP="ts")"#,
            r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="t", TYPE="memory", KEY="id")"#,
        ] {
            let def = parse_create(ddl).unwrap();
            catalog.insert(def.name.clone(), def);
        }
        let logical = compile_rule(sql, &catalog, Registry::builtin())
            .unwrap()
            .plan;
        let sinks = ["log".to_string(), "memory".to_string()];
        lower(
            &logical,
            &Target {
                stream: "demo",
                source_type: "mqtt",
                shared,
                event_time: event_time.then(|| EventTime {
                    field: "ts".into(),
                    tolerance: 0,
                    format: None,
                    sources: 1,
                }),
                sinks: &sinks,
                send_nil: false,
                spare_cores: cores > 2,
                own_tables: false,
            },
        )
    }

    #[test]
    fn metric_nodes_are_numbered_as_ekuiper_names_them() {
        let p = plan(
            "SELECT device FROM demo WHERE temperature > 1 LIMIT 0",
            false,
            false,
            2,
        );
        assert_eq!(
            p.nodes,
            [
                "source_demo",
                "op_2_decoder",
                "op_3_filter",
                "op_4_project",
                "sink_log_0",
                "sink_memory_1"
            ]
        );
        let ops = p.source_ops();
        assert_eq!(ops.len(), 3, "filter, project and limit run fused");
        assert_eq!(ops[0].node, Some(2));
        assert_eq!(ops[2].node, None, "LIMIT counts in the project node");
        assert!(matches!(ops[2].kind, OpKind::Limit(0)));
        assert_eq!(p.input, Input::AllWorkers);
        assert!(matches!(
            p.stages[0],
            Stage::Source {
                output: Output::Sinks,
                stamps_time: false,
                ..
            }
        ));
    }

    #[test]
    fn without_a_window_limit_applies_to_each_message() {
        let p = plan("SELECT device FROM demo LIMIT 2", false, false, 2);
        assert!(
            p.source_ops()
                .iter()
                .all(|o| !matches!(o.kind, OpKind::Limit(_))),
            "every message is an emission of one row: LIMIT 2 keeps it"
        );
        let w = plan(
            "SELECT device FROM demo GROUP BY TUMBLINGWINDOW(ss, 1) LIMIT 2",
            false,
            false,
            2,
        );
        assert!(matches!(
            &w.stages[2],
            Stage::Emit { ops, .. } if matches!(ops.last().map(|o| &o.kind), Some(OpKind::Limit(2)))
        ));
    }

    #[test]
    fn analytic_state_and_hit_recording_filters_are_stateful() {
        let p = plan(
            "SELECT lag(temperature) AS prev FROM demo WHERE last_hit_count() < 3 AND temperature > 1",
            false,
            false,
            2,
        );
        let stateful: Vec<bool> = p
            .stages
            .iter()
            .flat_map(|s| match s {
                Stage::Source { ops, .. } | Stage::Keyed { ops } => ops.clone(),
                _ => Vec::new(),
            })
            .map(|o| o.kind.is_stateful())
            .collect();
        // Analytic (state per partition), the filter recording hits, the projection.
        assert_eq!(stateful, [true, true, false]);
    }

    #[test]
    fn stateless_rules_of_a_shared_stream_join_its_group() {
        let sql = "SELECT device FROM demo WHERE temperature > 1";
        assert!(plan(sql, true, false, 2).grouped);
        assert!(!plan(sql, false, false, 2).grouped);
        assert!(!plan(sql, true, true, 2).grouped, "event time keeps state");
    }

    #[test]
    fn processing_time_tumbling_and_hopping_rules_of_a_shared_stream_join_its_group() {
        for sql in [
            "SELECT device, count(*) FROM demo WHERE temperature > 1 GROUP BY device, TUMBLINGWINDOW(ss, 1) HAVING count(*) > 1 ORDER BY device LIMIT 3",
            "SELECT avg(temperature) FROM demo GROUP BY HOPPINGWINDOW(ss, 10, 5)",
        ] {
            let p = plan(sql, true, false, 2);
            let w = p.grouped_window().expect(sql);
            assert!(w.tick > 0, "{sql}");
            assert!(plan(sql, false, false, 2).grouped_window().is_none());
            assert!(
                plan(sql, true, true, 2).grouped_window().is_none(),
                "event time"
            );
        }
        for sql in [
            "SELECT count(*) FROM demo GROUP BY COUNTWINDOW(3)",
            "SELECT count(*) FROM demo GROUP BY SESSIONWINDOW(ss, 10, 2)",
            "SELECT lag(temperature) AS p, count(*) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
            "SELECT count(*) FROM demo INNER JOIN devices ON demo.device = devices.id GROUP BY TUMBLINGWINDOW(ss, 1)",
        ] {
            assert!(!plan(sql, true, false, 2).grouped, "{sql}");
        }
    }

    #[test]
    fn processing_time_windows_spread_by_key_and_tick() {
        let p = plan(
            "SELECT device, count(*) FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)",
            false,
            false,
            2,
        );
        assert_eq!(p.input, Input::AllWorkers);
        assert!(matches!(
            p.stages[0],
            Stage::Source {
                tick: Some(10_000),
                output: Output::Exchange,
                ..
            }
        ));
        assert!(matches!(
            p.stages[1],
            Stage::Window {
                exchange: Exchange::ByKey,
                ..
            }
        ));
        assert!(matches!(p.stages[2], Stage::Emit { merge: true, .. }));
    }

    #[test]
    fn event_time_windows_spread_only_with_cores_to_spare() {
        let sql = "SELECT device, count(*) FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)";
        for (cores, exchange) in [(2, Exchange::ToFirstWorker), (4, Exchange::ByKey)] {
            let p = plan(sql, false, true, cores);
            assert_eq!(p.input, Input::FirstWorker);
            assert!(matches!(p.stages[0], Stage::Source { tick: None, .. }));
            assert!(matches!(&p.stages[1], Stage::Window { exchange: e, .. } if *e == exchange));
        }
    }

    #[test]
    fn row_sequence_windows_read_in_order_on_worker_zero() {
        let p = plan(
            "SELECT count(*) FROM demo GROUP BY COUNTWINDOW(3)",
            false,
            false,
            4,
        );
        assert_eq!(p.input, Input::FirstWorker);
        assert!(matches!(
            p.stages[1],
            Stage::Window {
                exchange: Exchange::ToFirstWorker,
                ..
            }
        ));
        assert!(matches!(p.stages[2], Stage::Emit { merge: false, .. }));
    }

    #[test]
    fn one_scan_table_join_is_partitioned_by_its_key() {
        let p = plan(
            "SELECT device, location FROM demo JOIN devices ON device = devices.id",
            false,
            false,
            2,
        );
        assert_eq!(p.indexes.len(), 1);
        assert!(p.indexes[0].partitioned);
        assert!(matches!(p.stages[1], Stage::Keyed { .. }));
        assert!(matches!(
            p.source_ops().last().map(|o| &o.kind),
            Some(OpKind::TableKey(_))
        ));
        // Under a window the same join reads a replicated index where the rows are.
        let w = plan(
            "SELECT location, count(*) FROM demo JOIN devices ON device = devices.id GROUP BY location, TUMBLINGWINDOW(ss, 1)",
            false,
            false,
            2,
        );
        assert!(!w.indexes[0].partitioned);
    }

    #[test]
    fn unnest_sends_each_row_on_its_own_and_explain_names_every_stage() {
        let p = plan(
            "SELECT unnest(array_create(device, device)) AS d FROM demo",
            false,
            false,
            2,
        );
        assert!(matches!(
            p.stages.last(),
            Some(Stage::Sink { split_rows: true })
        ));
        let text = p.explain();
        assert!(text.contains("Source (to sinks)"), "{text}");
        assert!(
            text.contains("Sink (a row per emission): sink_log_0, sink_memory_1"),
            "{text}"
        );
    }
}
