//! The logical plan of a rule: a chain of Scan, Filter, Aggregate (a window with its groups
//! and aggregates), Sort, Project and Limit. A Filter above an Aggregate is HAVING. Joins
//! extend this enum in their own issue; the renderer's exhaustive match will then ask for them.

use std::fmt::{self, Write as _};

use arrow::datatypes::SchemaRef;

use crate::analytic::AnalyticCall;
use crate::expr::Expr;
use crate::window::{AggCall, AggregateSpec, SortKey};

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

/// The kind of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matching pairs only.
    Inner,
    /// Every left row, with nulls where nothing matches.
    Left,
    /// Every right row, with nulls where nothing matches.
    Right,
    /// Every row of both sides.
    Full,
    /// Every pair.
    Cross,
}

impl JoinKind {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            JoinKind::Inner => "INNER",
            JoinKind::Left => "LEFT",
            JoinKind::Right => "RIGHT",
            JoinKind::Full => "FULL",
            JoinKind::Cross => "CROSS",
        }
    }
}

/// A stream joined to the rule's first stream.
#[derive(Debug, Clone)]
pub struct JoinedStream {
    /// The stream's name.
    pub name: String,
    /// How the query names it: its columns are `qualifier.column` in joined rows.
    pub qualifier: String,
    /// Its schema, `None` when schemaless.
    pub schema: Option<SchemaRef>,
}

/// One JOIN of a stream onto the rows joined so far.
#[derive(Debug, Clone)]
pub struct JoinStep {
    /// INNER, LEFT, RIGHT, FULL or CROSS.
    pub kind: JoinKind,
    /// Which stream joins (1 = the first of [`StreamJoins::streams`]; 0 is the FROM stream).
    pub right: usize,
    /// Equi-join keys over the rows joined so far.
    pub left_keys: Vec<Expr>,
    /// The matching keys over the joining stream's (qualified) columns.
    pub right_keys: Vec<Expr>,
    /// The rest of the ON condition, over the joined row.
    pub residual: Option<Expr>,
}

/// Stream-stream joins: the window's rows of every stream are joined when the window closes.
#[derive(Debug, Clone)]
pub struct StreamJoins {
    /// The joined streams, in JOIN order.
    pub streams: Vec<JoinedStream>,
    /// The joins, in order.
    pub steps: Vec<JoinStep>,
}

/// One `row_number() OVER (...)` call over a window's results.
#[derive(Debug, Clone)]
pub struct RowNumberSpec {
    /// `PARTITION BY`: numbering restarts for each distinct key.
    pub partition: Vec<Expr>,
    /// `ORDER BY` within a partition.
    pub order: Vec<SortKey>,
    /// The hidden column that receives the numbers.
    pub column: String,
}

impl fmt::Display for RowNumberSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = row_number() OVER (", self.column)?;
        if !self.partition.is_empty() {
            let keys: Vec<String> = self.partition.iter().map(ToString::to_string).collect();
            write!(f, "PARTITION BY {}", keys.join(", "))?;
        }
        if !self.order.is_empty() {
            let keys: Vec<String> = self
                .order
                .iter()
                .map(|k| format!("{} {}", k.expr, if k.ascending { "ASC" } else { "DESC" }))
                .collect();
            let sep = if self.partition.is_empty() { "" } else { " " };
            write!(f, "{sep}ORDER BY {}", keys.join(", "))?;
        }
        f.write_str(")")
    }
}

/// What eKuiper knows of a SELECT field besides its value: the text its errors quote and
/// whether `sendNilField` keeps its nulls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldLabel {
    /// `expr: <eKuiper's text of the expression>`, or `alias: <name> expr: ...` when aliased.
    pub text: String,
    /// Written with `AS name`: eKuiper evaluates these after the other fields.
    pub aliased: bool,
    /// A plain column reference (`a`, `s.a`).
    pub column: bool,
}

impl FieldLabel {
    /// Under `sendNilField` a null of this field is sent: plain columns and aliased fields are
    /// kept, an unaliased computed value that is null is still left out (eKuiper's project
    /// operator).
    pub fn keeps_nil(&self) -> bool {
        self.aliased || self.column
    }
}

/// One item of a SELECT list.
#[derive(Debug, Clone)]
pub enum ProjectItem {
    /// `*`, `* EXCEPT(a, b)` or `* REPLACE(expr AS a, ...)`: every input field except the
    /// listed ones, replaced ones computed (REPLACE wins over EXCEPT, as in eKuiper).
    Wildcard {
        /// Names left out (compared ignoring case).
        except: Vec<String>,
        /// `expr AS name` pairs: the field `name` takes `expr`'s value (a new field when the
        /// input has none of that name).
        replace: Vec<(String, Expr)>,
    },
    /// `expr [AS name]`.
    Expr {
        /// The value.
        expr: Expr,
        /// The output key.
        name: String,
        /// How eKuiper names the field in errors and treats its nulls.
        label: FieldLabel,
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
    /// Stream-stream joins inside the window (the rows below are those of all the streams).
    JoinStreams {
        /// The rows of every stream, each tagged with its stream.
        input: Box<LogicalPlan>,
        /// The streams and the joins.
        join: Box<StreamJoins>,
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
    /// `row_number() OVER (PARTITION BY ... ORDER BY ...)`, within each emission: rows are
    /// grouped by partition (in the text order of their keys, as eKuiper) and sorted.
    RowNumber {
        /// The rows to number.
        input: Box<LogicalPlan>,
        /// One numbering per call; each adds its column.
        specs: Vec<RowNumberSpec>,
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
            | LogicalPlan::RowNumber { input, .. }
            | LogicalPlan::JoinStreams { input, .. }
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
            | LogicalPlan::RowNumber { input, .. }
            | LogicalPlan::JoinStreams { input, .. }
            | LogicalPlan::Limit { input, .. } => Some(input),
        }
    }

    /// Calls `f` on every expression of every node (and their sub-expressions).
    pub fn visit_exprs(&self, f: &mut dyn FnMut(&Expr)) {
        // Every field is named, none skipped with `..`: `columns_read` relies on this visit to
        // find every column a rule reads, so a new field that holds expressions must not
        // compile until it is considered here.
        match self {
            LogicalPlan::Scan(_) | LogicalPlan::Limit { input: _, n: _ } => {}
            LogicalPlan::Filter {
                input: _,
                predicate,
            } => predicate.visit(f),
            LogicalPlan::Project { input: _, items } => {
                for item in items {
                    match item {
                        ProjectItem::Wildcard { except: _, replace } => {
                            replace.iter().for_each(|(_, e)| e.visit(f))
                        }
                        ProjectItem::Expr { expr, .. }
                        | ProjectItem::Unnest { expr, name: _ }
                        | ProjectItem::Spread { expr } => expr.visit(f),
                    }
                }
            }
            LogicalPlan::Aggregate { input: _, spec } => {
                let AggregateSpec {
                    window,
                    keys,
                    aggs,
                    // Names of columns the expressions visited here and in the nodes above
                    // read (or every column, with `*`).
                    carry: _,
                    grouped: _,
                } = &**spec;
                keys.iter().for_each(|e| e.visit(f));
                for AggCall {
                    kind: _,
                    args,
                    whole_row: _,
                    ty: _,
                    custom: _,
                } in aggs
                {
                    args.iter().for_each(|e| e.visit(f));
                }
                let crate::window::WindowSpec {
                    kind: _,
                    filter,
                    trigger,
                    state,
                    partition,
                    text: _,
                } = window;
                filter.iter().chain(trigger.iter()).for_each(|e| e.visit(f));
                if let Some((b, e)) = state {
                    b.visit(f);
                    e.visit(f);
                }
                partition.iter().for_each(|e| e.visit(f));
            }
            LogicalPlan::Analytic { input: _, calls } => {
                for AnalyticCall {
                    kind: _,
                    args,
                    partition,
                    when,
                    ty: _,
                    names: _,
                } in calls
                {
                    args.iter()
                        .chain(partition)
                        .chain(when.iter())
                        .for_each(|e| e.visit(f));
                }
            }
            LogicalPlan::Sort { input: _, keys } => keys.iter().for_each(|k| k.expr.visit(f)),
            LogicalPlan::JoinStreams { input: _, join } => {
                let StreamJoins { streams: _, steps } = &**join;
                for JoinStep {
                    kind: _,
                    right: _,
                    left_keys,
                    right_keys,
                    residual,
                } in steps
                {
                    left_keys
                        .iter()
                        .chain(right_keys)
                        .chain(residual.iter())
                        .for_each(|e| e.visit(f));
                }
            }
            LogicalPlan::RowNumber { input: _, specs } => {
                for RowNumberSpec {
                    partition,
                    order,
                    column: _,
                } in specs
                {
                    partition.iter().for_each(|e| e.visit(f));
                    order.iter().for_each(|k| k.expr.visit(f));
                }
            }
            LogicalPlan::JoinTable { input: _, join } => {
                let TableJoin {
                    table: _,
                    qualifier: _,
                    schema: _,
                    left: _,
                    stream_keys,
                    // Over the table's own columns, evaluated on table rows.
                    table_keys: _,
                    residual,
                    lookup: _,
                } = &**join;
                stream_keys
                    .iter()
                    .chain(residual.iter())
                    .for_each(|e| e.visit(f));
            }
        }
        if let Some(input) = self.input() {
            input.visit_exprs(f);
        }
    }

    /// The columns the plan's expressions name (every stream column it reads, and its own
    /// hidden columns), or `None` when it reads whole rows: a `*` in SELECT, an aggregate over
    /// whole rows (`collect(*)`, `merge_agg(*)`, `deduplicate`), a join of streams, or no
    /// projection at all (the binder always adds one; without it the output would be the
    /// input row). Columns that operators read outside expressions (the event-time field) are
    /// the caller's to add.
    pub fn columns_read(&self) -> Option<std::collections::BTreeSet<String>> {
        let mut projected = false;
        for node in self.chain() {
            match node {
                LogicalPlan::Project { items, .. } => {
                    if items
                        .iter()
                        .any(|i| matches!(i, ProjectItem::Wildcard { .. }))
                    {
                        return None;
                    }
                    projected = true;
                }
                LogicalPlan::Aggregate { spec, .. } if spec.aggs.iter().any(|a| a.whole_row) => {
                    return None;
                }
                LogicalPlan::JoinStreams { .. } => return None,
                _ => {}
            }
        }
        // `*` as a function argument reads the whole row too.
        if !projected || self.any_expr(|e| matches!(e, Expr::Row { .. })) {
            return None;
        }
        let mut names = std::collections::BTreeSet::new();
        self.visit_exprs(&mut |e| {
            if let Expr::Column { name, .. } = e {
                names.insert(name.clone());
            }
        });
        Some(names)
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

    /// The streams joined to the FROM stream (empty without a stream-stream join).
    pub fn joined_streams(&self) -> &[JoinedStream] {
        self.chain()
            .find_map(|n| match n {
                LogicalPlan::JoinStreams { join, .. } => Some(join.streams.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The window node of the plan, if it has one.
    pub fn aggregate(&self) -> Option<&AggregateSpec> {
        self.chain().find_map(|n| match n {
            LogicalPlan::Aggregate { spec, .. } => Some(&**spec),
            _ => None,
        })
    }

    /// True when the plan joins table `name`.
    pub fn joins_table(&self, name: &str) -> bool {
        self.chain()
            .any(|n| matches!(n, LogicalPlan::JoinTable { join, .. } if join.table == name))
    }

    /// True when the plan has analytic functions (state that depends on row order).
    pub fn has_analytic(&self) -> bool {
        self.chain()
            .any(|n| matches!(n, LogicalPlan::Analytic { .. }))
    }

    /// True when the plan calls `last_hit_*` (each row sees the hits of the rows before it).
    pub fn reads_hits(&self) -> bool {
        self.any_expr(|e| matches!(e, Expr::Hit { .. }))
    }

    /// True when an expression reads message metadata, so the decoder must add those columns.
    pub fn uses_meta(&self) -> bool {
        self.any_expr(|e| matches!(e, Expr::Meta(_)))
    }

    /// True when an expression reads each row's time (`__ts`, e.g. `event_time()`).
    pub fn reads_row_time(&self) -> bool {
        self.any_expr(
            |e| matches!(e, Expr::Column { name, .. } if name == crate::window::TS_COLUMN),
        )
    }

    /// True when some expression of the plan, or a sub-expression, satisfies `pred`.
    fn any_expr(&self, pred: impl Fn(&Expr) -> bool) -> bool {
        let mut found = false;
        self.visit_exprs(&mut |e| found |= pred(e));
        found
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
            LogicalPlan::JoinStreams { input, join } => {
                for step in &join.steps {
                    let s = &join.streams[step.right - 1];
                    let mut on: Vec<String> = step
                        .left_keys
                        .iter()
                        .zip(&step.right_keys)
                        .map(|(l, r)| format!("{l} = {r}"))
                        .collect();
                    on.extend(step.residual.iter().map(ToString::to_string));
                    let _ = writeln!(
                        out,
                        "{pad}{} JOIN stream {} AS {}{}{}",
                        step.kind.keyword(),
                        s.name,
                        s.qualifier,
                        if on.is_empty() { "" } else { " ON " },
                        on.join(" AND ")
                    );
                }
                input.explain_into(out, depth + 1);
            }
            LogicalPlan::RowNumber { input, specs } => {
                let list: Vec<String> = specs.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "{pad}RowNumber: {}", list.join(", "));
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
            ProjectItem::Wildcard { except, replace } => {
                f.write_str("*")?;
                if !except.is_empty() {
                    write!(f, " EXCEPT({})", except.join(", "))?;
                }
                if !replace.is_empty() {
                    let list: Vec<String> =
                        replace.iter().map(|(n, e)| format!("{e} AS {n}")).collect();
                    write!(f, " REPLACE({})", list.join(", "))?;
                }
                Ok(())
            }
            ProjectItem::Expr { expr, name, .. } => write!(f, "{expr} AS {name}"),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::{Registry, compile_rule, parse_create};

    /// What `sql` reads from a stream `demo(device, temperature, humidity, ts)`.
    fn read(sql: &str) -> Option<Vec<String>> {
        let def = parse_create(
            r#"CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT)
               WITH (DATASOURCE="demo", FORMAT="JSON")"#,
        )
        .unwrap();
        let catalog = HashMap::from([("demo".to_string(), def)]);
        let plan = compile_rule(sql, &catalog, Registry::builtin()).unwrap();
        // Names of the plan's own hidden columns (aggregate results) come along; the
        // decoder matches only stream fields.
        let read = plan.plan.columns_read()?;
        Some(read.into_iter().filter(|c| !c.starts_with("__")).collect())
    }

    #[test]
    fn columns_read_are_every_column_an_expression_names() {
        let cols = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            read("SELECT device, temperature FROM demo WHERE temperature > 20"),
            cols(&["device", "temperature"])
        );
        assert_eq!(
            read(
                "SELECT device, avg(temperature), count(*), max(humidity) FROM demo \
                 GROUP BY device, TUMBLINGWINDOW(ss, 10)"
            ),
            cols(&["device", "humidity", "temperature"])
        );
        assert_eq!(
            read("SELECT upper(device) AS d FROM demo ORDER BY ts"),
            cols(&["device", "ts"])
        );
        assert_eq!(
            read("SELECT count(*) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)"),
            cols(&[])
        );
    }

    #[test]
    fn whole_rows_read_every_column() {
        for sql in [
            "SELECT * FROM demo",
            "SELECT *, temperature * 2 AS t2 FROM demo",
            "SELECT collect(*) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
            "SELECT deduplicate(device, false) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
        ] {
            assert_eq!(read(sql), None, "{sql}");
        }
    }
}
