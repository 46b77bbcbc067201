//! The logical plan of a rule: a chain of Scan, Filter, Aggregate (a window with its groups
//! and aggregates), Sort, Project and Limit. A Filter above an Aggregate is HAVING. Joins
//! extend this enum in their own issue; the renderer's exhaustive match will then ask for them.

use std::fmt::{self, Write as _};

use arrow::datatypes::SchemaRef;

use crate::analytic::AnalyticCall;
use crate::expr::Expr;
use crate::window::{AggregateSpec, SortKey};

/// Reading a stream.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The stream's name.
    pub stream: String,
    /// The name the query refers to it by (`FROM demo AS d`).
    pub alias: Option<String>,
    /// The stream's schema, `None` when schemaless.
    pub schema: Option<SchemaRef>,
}

/// A stream-table join: each stream row is joined with the rows the table holds when the row
/// is processed (the stream drives; table updates never re-emit past rows).
#[derive(Debug, Clone)]
pub struct TableJoin {
    /// The table's name.
    pub table: String,
    /// How the query names it (its alias, or its name): joined table columns are called
    /// `qualifier.column`.
    pub qualifier: String,
    /// The table's schema, `None` when schemaless.
    pub schema: Option<SchemaRef>,
    /// LEFT JOIN (keep stream rows without a match) rather than INNER.
    pub left: bool,
    /// Equi-join keys on the stream side.
    pub stream_keys: Vec<Expr>,
    /// The matching keys on the table side (over the table's own column names).
    pub table_keys: Vec<Expr>,
    /// The rest of the ON condition, over the joined row.
    pub residual: Option<Expr>,
    /// A lookup table (`KIND="lookup"`): the rows are fetched by the one key in
    /// `table_keys` (the table's `KEY`) when stream rows arrive, instead of read from memory.
    pub lookup: bool,
}

/// One item of a SELECT list.
#[derive(Debug, Clone)]
pub enum ProjectItem {
    /// `*` or `* EXCEPT(a, b)`: every input field except the listed ones.
    Wildcard {
        /// Names left out (compared ignoring case).
        except: Vec<String>,
    },
    /// `expr [AS name]`.
    Expr {
        /// The value.
        expr: Expr,
        /// The output key.
        name: String,
    },
    /// A value whose object fields become output fields (`changed_cols(...)`); null fields
    /// are left out like any null.
    Spread {
        /// The object-valued expression.
        expr: Expr,
    },
    /// `unnest(array) [AS name]`: one output row per element (objects spread into columns),
    /// each row its own emission.
    Unnest {
        /// The array.
        expr: Expr,
        /// The output key for elements that are not objects.
        name: String,
    },
}

/// A node of the logical plan.
#[derive(Debug, Clone)]
pub enum LogicalPlan {
    /// Read a stream.
    Scan(Scan),
    /// Keep the rows where `predicate` is true.
    Filter {
        /// The rows to filter.
        input: Box<LogicalPlan>,
        /// A boolean expression.
        predicate: Expr,
    },
    /// Compute the output fields.
    Project {
        /// The rows to project.
        input: Box<LogicalPlan>,
        /// The output fields in SELECT order.
        items: Vec<ProjectItem>,
    },
    /// Group rows into windows (and GROUP BY keys) and compute the aggregates; each closed
    /// window is one emission.
    Aggregate {
        /// The rows to group.
        input: Box<LogicalPlan>,
        /// Window, keys, aggregates and the columns the result keeps.
        spec: Box<AggregateSpec>,
    },
    /// A stream-table join.
    JoinTable {
        /// The stream rows.
        input: Box<LogicalPlan>,
        /// The table and the join condition.
        join: Box<TableJoin>,
    },
    /// Analytic functions, evaluated on every row before anything else (eKuiper's order).
    Analytic {
        /// The rows.
        input: Box<LogicalPlan>,
        /// The calls; call `i` adds the column [`crate::analytic::analytic_column`]`(i)`.
        calls: Vec<AnalyticCall>,
    },
    /// ORDER BY, within each emission.
    Sort {
        /// The rows to sort.
        input: Box<LogicalPlan>,
        /// Keys, most significant first.
        keys: Vec<SortKey>,
    },
    /// LIMIT n, within each emission.
    Limit {
        /// The rows to cut.
        input: Box<LogicalPlan>,
        /// Rows kept.
        n: usize,
    },
}

impl LogicalPlan {
    /// The stream this plan reads.
    pub fn scan(&self) -> &Scan {
        match self {
            LogicalPlan::Scan(s) => s,
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Project { input, .. }
            | LogicalPlan::Aggregate { input, .. }
            | LogicalPlan::Analytic { input, .. }
            | LogicalPlan::JoinTable { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Limit { input, .. } => input.scan(),
        }
    }

    /// The node below this one, `None` for the scan.
    pub fn input(&self) -> Option<&LogicalPlan> {
        match self {
            LogicalPlan::Scan(_) => None,
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Project { input, .. }
            | LogicalPlan::Aggregate { input, .. }
            | LogicalPlan::Analytic { input, .. }
            | LogicalPlan::JoinTable { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Limit { input, .. } => Some(input),
        }
    }

    /// Calls `f` on every expression of every node (and their sub-expressions).
    pub fn visit_exprs(&self, f: &mut dyn FnMut(&Expr)) {
        match self {
            LogicalPlan::Scan(_) | LogicalPlan::Limit { .. } => {}
            LogicalPlan::Filter { predicate, .. } => predicate.visit(f),
            LogicalPlan::Project { items, .. } => {
                for item in items {
                    match item {
                        ProjectItem::Wildcard { .. } => {}
                        ProjectItem::Expr { expr, .. }
                        | ProjectItem::Unnest { expr, .. }
                        | ProjectItem::Spread { expr } => expr.visit(f),
                    }
                }
            }
            LogicalPlan::Aggregate { spec, .. } => {
                spec.keys.iter().for_each(|e| e.visit(f));
                spec.aggs
                    .iter()
                    .flat_map(|a| &a.args)
                    .for_each(|e| e.visit(f));
                let w = &spec.window;
                w.filter
                    .iter()
                    .chain(w.trigger.iter())
                    .for_each(|e| e.visit(f));
                if let Some((b, e)) = &w.state {
                    b.visit(f);
                    e.visit(f);
                }
                w.partition.iter().for_each(|e| e.visit(f));
            }
            LogicalPlan::Analytic { calls, .. } => {
                for c in calls {
                    c.args
                        .iter()
                        .chain(&c.partition)
                        .chain(c.when.iter())
                        .for_each(|e| e.visit(f));
                }
            }
            LogicalPlan::Sort { keys, .. } => keys.iter().for_each(|k| k.expr.visit(f)),
            LogicalPlan::JoinTable { join, .. } => {
                join.stream_keys
                    .iter()
                    .chain(join.residual.iter())
                    .for_each(|e| e.visit(f));
            }
        }
        if let Some(input) = self.input() {
            input.visit_exprs(f);
        }
    }

    /// This node and the ones below it, down to the scan (the plan is a chain).
    pub fn chain(&self) -> impl Iterator<Item = &LogicalPlan> {
        std::iter::successors(Some(self), |n| n.input())
    }

    /// True when the SELECT list has `unnest`.
    pub fn has_unnest(&self) -> bool {
        self.chain().any(|n| {
            matches!(n, LogicalPlan::Project { items, .. }
                if items.iter().any(|i| matches!(i, ProjectItem::Unnest { .. })))
        })
    }

    /// The window node of the plan, if it has one.
    pub fn aggregate(&self) -> Option<&AggregateSpec> {
        self.chain().find_map(|n| match n {
            LogicalPlan::Aggregate { spec, .. } => Some(&**spec),
            _ => None,
        })
    }

    /// The plan as indented text, one node per line, leaves last (as `EXPLAIN` prints it).
    pub fn explain(&self) -> String {
        let mut out = String::new();
        self.explain_into(&mut out, 0);
        out
    }

    fn explain_into(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        match self {
            LogicalPlan::Scan(s) => {
                let schema = match &s.schema {
                    Some(schema) => format!("{} columns", schema.fields().len()),
                    None => "schemaless".to_string(),
                };
                let _ = writeln!(out, "{pad}Scan: {} ({schema})", s.stream);
            }
            LogicalPlan::Filter { input, predicate } => {
                let _ = writeln!(out, "{pad}Filter: {predicate}");
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::Project { input, items } => {
                let list: Vec<String> = items.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "{pad}Project: {}", list.join(", "));
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::Aggregate { input, spec } => {
                let _ = writeln!(out, "{pad}Window: {spec}");
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::Analytic { input, calls } => {
                let list: Vec<String> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} AS {}", crate::analytic::analytic_column(i)))
                    .collect();
                let _ = writeln!(out, "{pad}Analytic: {}", list.join(", "));
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::JoinTable { input, join } => {
                let on: Vec<String> = join
                    .stream_keys
                    .iter()
                    .zip(&join.table_keys)
                    .map(|(s, t)| format!("{s} = {}.{t}", join.qualifier))
                    .collect();
                let residual = join
                    .residual
                    .as_ref()
                    .map(|r| format!(" AND {r}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{pad}{}{} table {}: {}{residual}",
                    if join.left { "LeftJoin" } else { "Join" },
                    if join.lookup { " lookup" } else { "" },
                    join.table,
                    on.join(" AND ")
                );
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::Sort { input, keys } => {
                let list: Vec<String> = keys
                    .iter()
                    .map(|k| format!("{} {}", k.expr, if k.ascending { "ASC" } else { "DESC" }))
                    .collect();
                let _ = writeln!(out, "{pad}Order: {}", list.join(", "));
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::Limit { input, n } => {
                let _ = writeln!(out, "{pad}Limit: {n}");
                input.explain_into(out, depth + 1);
            }
        }
    }
}

impl fmt::Display for ProjectItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectItem::Wildcard { except } if except.is_empty() => f.write_str("*"),
            ProjectItem::Wildcard { except } => write!(f, "* EXCEPT({})", except.join(", ")),
            ProjectItem::Expr { expr, name } => write!(f, "{expr} AS {name}"),
            ProjectItem::Unnest { expr, name } => write!(f, "unnest({expr}) AS {name}"),
            ProjectItem::Spread { expr } => write!(f, "{expr}.*"),
        }
    }
}

/// A compiled rule query.
#[derive(Debug, Clone)]
pub struct RulePlan {
    /// The SQL it was compiled from.
    pub sql: String,
    /// The logical plan.
    pub plan: LogicalPlan,
}

impl RulePlan {
    /// The plan as text.
    pub fn explain(&self) -> String {
        self.plan.explain()
    }
}
