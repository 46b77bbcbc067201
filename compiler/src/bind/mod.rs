//! Binding: sqlparser's AST of a rule query becomes a typed [`LogicalPlan`].
//!
//! Names are resolved against the catalog (fields of schema streams checked, with a
//! "did you mean"; schemaless fields resolved at run time), functions are looked up in the
//! registry and their arguments checked, and every error carries the position it refers to.
//!
//! [`compile_rule`] walks the clauses in the order eKuiper evaluates them; each concern has its
//! own file:
//! - `over_when`: cuts `OVER (WHEN ...)` out of the text before sqlparser sees it;
//! - `from`: FROM and JOIN, and the join nodes of the plan;
//! - `names`: identifiers to columns of the stream, the joined tables and SELECT aliases;
//! - `expr`: operators, literals, field access;
//! - `calls`: function calls (registry functions, `meta`, rule context, `last_hit_*`,
//!   `row_number() OVER`);
//! - `analytic`: analytic calls and where their plan node goes;
//! - `aggregate`: aggregate calls and the aggregate node;
//! - `window`: GROUP BY and its window function;
//! - `projection`: SELECT items and their output names.

mod aggregate;
mod analytic;
mod calls;
mod expr;
mod from;
mod names;
mod over_when;

pub(crate) use over_when::extract_over_whens;
mod projection;
mod window;

use std::collections::HashMap;

use sqlparser::ast::{self as ast, SelectItem, SetExpr, Spanned, Value};
use sqlparser::tokenizer::Token;

use crate::analytic::AnalyticCall;
use crate::ddl::StreamDef;
use crate::error::{CompileError, Pos, Result};
use crate::expr::Expr;
use crate::functions::Registry;
use crate::plan::{LogicalPlan, RowNumberSpec, RulePlan, Scan};
use crate::types::SqlType;
use crate::window::{AggCall, SortKey};

use from::TableRef;

/// Where the binder finds streams.
pub trait StreamCatalog {
    /// The stream called `name` (case-sensitive, like eKuiper).
    fn stream(&self, name: &str) -> Option<&StreamDef>;
    /// All stream names, for suggestions.
    fn stream_names(&self) -> Vec<String>;
}

impl StreamCatalog for HashMap<String, StreamDef> {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.get(name)
    }
    fn stream_names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// Compiles a rule's SQL against the catalog and function registry.
pub fn compile_rule(
    sql: &str,
    catalog: &dyn StreamCatalog,
    registry: &Registry,
) -> Result<RulePlan> {
    // Size and depth first, on tokens: a tree too deep to bind is never built.
    crate::limits::check_sql(sql)?;
    let (masked, whens) = over_when::extract_over_whens(sql)?;
    let (query, invisible) = parse_query(&masked)?;
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(CompileError::at(
            "a rule must be a single SELECT",
            pos_of(query.body.as_ref()),
        ));
    };
    let (scan, join_refs) = from::bind_from(select, catalog)?;
    let mut binder = Binder {
        scan: &scan,
        registry,
        // A SELECT alias stands for its expression in every clause, as in eKuiper
        // (`topo/planner/analyzer.go` binds field references to aliases first).
        aliases: select_aliases(&select.projection),
        resolving: Vec::new(),
        aggs: None,
        window: false,
        in_aggregate: false,
        hit_cached: false,
        agg_hits: false,
        row_numbers: Vec::new(),
        whens,
        analytics: Vec::new(),
        tables: join_refs.iter().map(|j| j.table.clone()).collect(),
    };
    let mut plan = binder.joins(LogicalPlan::Scan(scan.clone()), &join_refs, select)?;
    if let Some(selection) = &select.selection {
        let predicate = binder.cached_condition("WHERE", selection)?;
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    let grouping = binder.group_by(select, join_refs.iter().any(|j| j.stream))?;

    // Everything after grouping may use aggregates and window functions.
    binder.aggs = Some(Vec::new());
    binder.window = grouping.window.is_some();
    let mut items = binder.projection(&select.projection)?;
    // An INVISIBLE field was bound (its aliases and calls serve the other clauses) but is not
    // sent; `projection` gives one item per SELECT field.
    let mut field = 0;
    items.retain(|_| {
        field += 1;
        !invisible.contains(&(field - 1))
    });
    let having = match &select.having {
        Some(h) => Some(binder.cached_condition("HAVING", h)?),
        None => None,
    };
    let sort_keys = binder.order_by(&query)?;
    let limit = limit(&query)?;
    plan = binder.aggregate_node(plan, grouping, &items, having.as_ref(), &sort_keys);
    if let Some(predicate) = having {
        if plan.aggregate().is_none() {
            return Err(CompileError::at(
                "HAVING needs GROUP BY",
                select.having.as_ref().and_then(pos_of),
            ));
        }
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    if !sort_keys.is_empty() {
        plan = LogicalPlan::Sort {
            input: Box::new(plan),
            keys: sort_keys,
        };
    }
    let row_numbers = std::mem::take(&mut binder.row_numbers);
    if !row_numbers.is_empty() {
        plan = LogicalPlan::RowNumber {
            input: Box::new(plan),
            specs: row_numbers,
        };
    }
    plan = LogicalPlan::Project {
        input: Box::new(plan),
        items,
    };
    if let Some(n) = limit {
        plan = LogicalPlan::Limit {
            input: Box::new(plan),
            n,
        };
    }
    if let Some((pos, _)) = binder.whens.first() {
        return Err(CompileError::at(
            "OVER (WHEN ...) belongs to an analytic function or a SLIDINGWINDOW",
            Some(*pos),
        ));
    }
    let analytics = std::mem::take(&mut binder.analytics);
    if !analytics.is_empty() {
        plan = analytic::above_scan(plan, analytics);
    }
    Ok(RulePlan {
        sql: sql.to_string(),
        plan,
    })
}

/// Parses the one statement of a rule: a query, optionally followed by semicolons. Also
/// returns the indexes of the SELECT fields marked `INVISIBLE`.
pub(crate) fn parse_query(sql: &str) -> Result<(Box<ast::Query>, Vec<usize>)> {
    let tokens = crate::dialect::ekuiper_tokens(sql)
        .map_err(|e| CompileError::at(e.message.clone(), Pos::from_location(e.location)))?;
    let mut parser = crate::dialect::rule_parser(tokens.tokens);
    let stmt = parser
        .parse_statement()
        .map_err(CompileError::from_parser)?;
    while parser.consume_token(&Token::SemiColon) {}
    crate::dialect::expect_end(&parser, "query")?;
    match stmt {
        ast::Statement::Query(query) => Ok((query, tokens.invisible)),
        _ => Err(CompileError::at(
            "a rule must be a SELECT statement",
            Some(Pos { line: 1, column: 1 }),
        )),
    }
}

/// SELECT aliases (lowercased) to their expressions; the first of a repeated alias wins.
fn select_aliases(projection: &[SelectItem]) -> HashMap<String, ast::Expr> {
    let mut aliases = HashMap::new();
    for item in projection {
        if let SelectItem::ExprWithAlias { expr, alias } = item {
            aliases
                .entry(alias.value.to_lowercase())
                .or_insert_with(|| expr.clone());
        }
    }
    aliases
}

/// `LIMIT n`; eKuiper has no OFFSET.
fn limit(query: &ast::Query) -> Result<Option<usize>> {
    match &query.limit_clause {
        Some(ast::LimitClause::LimitOffset {
            limit: Some(n),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => Ok(Some(limit_value(n)?)),
        Some(other) => Err(CompileError::at(
            "only LIMIT n is supported (no OFFSET)",
            pos_of(other),
        )),
        None => Ok(None),
    }
}

fn limit_value(e: &ast::Expr) -> Result<usize> {
    if let ast::Expr::Value(v) = e
        && let Value::Number(n, _) = &v.value
        && let Ok(n) = n.parse::<usize>()
    {
        return Ok(n);
    }
    Err(CompileError::at(
        "LIMIT needs a non-negative integer",
        pos_of(e),
    ))
}

fn pos_of(node: &impl Spanned) -> Option<Pos> {
    Pos::from_location(node.span().start)
}

fn check_condition(clause: &str, predicate: &Expr, at: &ast::Expr) -> Result<()> {
    if let SqlType::Known(t) = predicate.sql_type()
        && t != arrow::datatypes::DataType::Boolean
        && t != arrow::datatypes::DataType::Null
    {
        return Err(CompileError::at(
            format!(
                "{clause} needs a boolean condition, got {}",
                crate::types::type_name(&t)
            ),
            pos_of(at),
        ));
    }
    Ok(())
}

/// The state of binding one rule query.
struct Binder<'a> {
    scan: &'a Scan,
    registry: &'a Registry,
    /// SELECT aliases (lowercased) to their expressions.
    aliases: HashMap<String, ast::Expr>,
    /// Aliases being expanded, to stop `a + 1 AS a` from referring to itself.
    resolving: Vec<String>,
    /// Aggregate calls found so far; `None` where aggregates are not allowed (WHERE, keys).
    aggs: Option<Vec<AggCall>>,
    /// The query has a window, so `window_start()` and `window_end()` mean something.
    window: bool,
    /// Binding an aggregate's arguments (aggregates do not nest).
    in_aggregate: bool,
    /// `OVER (... WHEN cond)` conditions cut out of the text, by the position of their OVER.
    whens: Vec<(Pos, ast::Expr)>,
    /// Analytic calls found so far.
    analytics: Vec<AnalyticCall>,
    /// Tables joined to the stream.
    tables: Vec<TableRef>,
    /// Binding a condition (WHERE, HAVING, WHEN): `last_hit_*` calls only read there.
    hit_cached: bool,
    /// A `last_agg_hit_*` call was bound: eKuiper counts it as an aggregate.
    agg_hits: bool,
    /// `row_number() OVER (...)` calls over a window's results.
    row_numbers: Vec<RowNumberSpec>,
}

impl Binder<'_> {
    /// Binds a condition that may read `last_hit_*` (WHERE, HAVING, a sliding window's
    /// `OVER (WHEN ...)`): there the calls only read, and the condition's operator records.
    fn cached_condition(&mut self, clause: &str, e: &ast::Expr) -> Result<Expr> {
        self.hit_cached = true;
        let bound = self.expr(e);
        self.hit_cached = false;
        let bound = bound?;
        check_condition(clause, &bound, e)?;
        Ok(bound)
    }

    /// The keys of ORDER BY, over result rows (aggregates and aliases allowed).
    fn order_by(&mut self, query: &ast::Query) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        if let Some(order) = &query.order_by {
            let ast::OrderByKind::Expressions(list) = &order.kind else {
                return Err(CompileError::at(
                    "ORDER BY ALL is not part of eKuiper's SQL",
                    pos_of(order),
                ));
            };
            for o in list {
                keys.push(SortKey {
                    expr: self.expr(&o.expr)?,
                    ascending: !matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
                });
            }
        }
        Ok(keys)
    }
}

/// A small catalog and shorthands for the binder modules' tests.
#[cfg(test)]
mod testing {
    use std::collections::HashMap;

    use crate::{Registry, StreamDef, compile_rule, parse_create};

    /// `demo` (a schema stream), `raw` (schemaless), `other` (a stream to join), `devices` (a
    /// lookup table keyed by `id`) and `places` (a scan table).
    pub(super) fn catalog() -> HashMap<String, StreamDef> {
        [
            r#"CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT,
               tags ARRAY(STRING), loc STRUCT(lat FLOAT, lng FLOAT))
               WITH (DATASOURCE="demo", FORMAT="JSON")"#,
            r#"CREATE STREAM raw () WITH (DATASOURCE="raw")"#,
            r#"CREATE STREAM other (device STRING, level BIGINT) WITH (DATASOURCE="other")"#,
            r#"CREATE TABLE devices (id STRING, location STRING)
               WITH (DATASOURCE="devices", TYPE="memory", KEY="id", KIND="lookup")"#,
            r#"CREATE TABLE places (id STRING, city STRING) WITH (DATASOURCE="places", TYPE="file")"#,
        ]
        .into_iter()
        .map(|ddl| {
            let def = parse_create(ddl).expect("test DDL parses");
            (def.name.clone(), def)
        })
        .collect()
    }

    /// The explain text of a rule that must compile.
    pub(super) fn explain(sql: &str) -> String {
        match compile_rule(sql, &catalog(), Registry::builtin()) {
            Ok(plan) => plan.explain(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// The error of a rule that must not compile, with its position and hint.
    pub(super) fn error(sql: &str) -> String {
        match compile_rule(sql, &catalog(), Registry::builtin()) {
            Ok(plan) => panic!("{sql} compiled:\n{}", plan.explain()),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{error, explain};

    #[test]
    fn clauses_stack_in_the_order_ekuiper_evaluates_them() {
        let plan = explain(
            "SELECT device, count(*) AS n FROM demo WHERE temperature > 20 \
             GROUP BY device, TUMBLINGWINDOW(ss, 10) HAVING count(*) > 1 ORDER BY n DESC LIMIT 3",
        );
        let nodes: Vec<&str> = plan
            .lines()
            .map(|l| l.trim_start().split(':').next().unwrap())
            .collect();
        assert_eq!(
            nodes,
            [
                "Limit", "Project", "Order", "Filter", "Window", "Filter", "Scan"
            ]
        );
        // ORDER BY reads the alias, HAVING the aggregate: both become the result column.
        assert!(plan.contains("Order: __agg_0 DESC"), "{plan}");
        assert!(plan.contains("Filter: (__agg_0 > 1)"), "{plan}");
    }

    #[test]
    fn a_rule_is_one_select_and_nothing_after_it() {
        assert_eq!(
            error("SELECT * FROM demo; SELECT 1"),
            "syntax error: unexpected \"SELECT\" after the query at 1:21"
        );
        assert!(explain("SELECT * FROM demo;").starts_with("Project: *"));
    }

    #[test]
    fn all_and_distinct_are_column_names_and_aliases_need_as() {
        // eKuiper has no ALL or DISTINCT keyword (`xsql/lexical.go`).
        let plan = explain("SELECT distinct, all AS a FROM raw WHERE all > 1");
        assert!(
            plan.starts_with("Project: distinct AS distinct, all AS a"),
            "{plan}"
        );
        assert!(plan.contains("Filter: (all > 1)"), "{plan}");
        assert!(
            error("SELECT DISTINCT device FROM demo").starts_with("syntax error:"),
            "an alias needs AS, so this is not `distinct AS device`"
        );
    }

    #[test]
    fn invisible_fields_are_bound_but_not_sent() {
        let plan = explain(
            "SELECT temperature * 2 AS t INVISIBLE, t + 1 AS u, abs(humidity) invisible, \
             humidity + 1 FROM demo WHERE t > 1",
        );
        assert!(
            plan.starts_with(
                "Project: ((temperature * 2) + 1) AS u, (humidity + 1) AS kuiper_field_0\n"
            ),
            "{plan}"
        );
        assert!(plan.contains("Filter: ((temperature * 2) > 1)"), "{plan}");
        // An unnamed invisible field still takes its kuiper_field_N number.
        let plan = explain("SELECT humidity + 1 INVISIBLE, humidity + 2 FROM demo");
        assert!(
            plan.starts_with("Project: (humidity + 2) AS kuiper_field_1\n"),
            "{plan}"
        );
    }

    #[test]
    fn conditions_limits_and_having_are_checked_where_written() {
        assert_eq!(
            error("SELECT * FROM demo WHERE temperature"),
            "WHERE needs a boolean condition, got float at 1:26"
        );
        assert_eq!(
            error("SELECT device FROM demo HAVING device = 'a'"),
            "HAVING needs GROUP BY at 1:32"
        );
        assert_eq!(
            error("SELECT * FROM demo LIMIT 1 OFFSET 2"),
            "only LIMIT n is supported (no OFFSET) at 1:26"
        );
    }
}
