//! Binding: sqlparser's AST of a rule query becomes a typed [`LogicalPlan`].
//!
//! Names are resolved against the catalog (fields of schema streams checked, with a
//! "did you mean"; schemaless fields resolved at run time), functions are looked up in the
//! registry and their arguments checked, and every error carries the position it refers to.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use sqlparser::ast::{
    self as ast, AccessExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    SelectItem, SetExpr, Spanned, Subscript, TableFactor, UnaryOperator, Value,
};
use sqlparser::parser::Parser;

use crate::analytic::{AnalyticCall, AnalyticKind, analytic_column};
use crate::ddl::StreamDef;
use crate::dialect::EkuiperDialect;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::eval::Literal;
use crate::eval::ops::BinaryOp;
use crate::expr::{Expr, RuleValue};
use crate::functions::{ArgInfo, Registry};
use crate::plan::{JoinKind, LogicalPlan, ProjectItem, RulePlan, Scan, TableJoin};
use crate::types::SqlType;
use crate::window::{
    AggCall, AggKind, AggregateSpec, Carry, SortKey, WINDOW_END, WINDOW_START, WindowKind,
    WindowSpec, agg_column, unit_ms,
};

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

fn pos_of(node: &impl Spanned) -> Option<Pos> {
    Pos::from_location(node.span().start)
}

/// Compiles a rule's SQL against the catalog and function registry.
pub fn compile_rule(
    sql: &str,
    catalog: &dyn StreamCatalog,
    registry: &Registry,
) -> Result<RulePlan> {
    let (masked, whens) = extract_over_whens(sql)?;
    let mut parser = Parser::new(&EkuiperDialect)
        .try_with_sql(&masked)
        .map_err(CompileError::from_parser)?;
    let stmt = parser
        .parse_statement()
        .map_err(CompileError::from_parser)?;
    // Allow one trailing semicolon, nothing else.
    while parser.consume_token(&sqlparser::tokenizer::Token::SemiColon) {}
    let next = parser.peek_token();
    if next.token != sqlparser::tokenizer::Token::EOF {
        return Err(CompileError::at(
            format!(
                "syntax error: unexpected \"{}\" after the query",
                next.token
            ),
            Pos::from_location(next.span.start),
        ));
    }
    let ast::Statement::Query(query) = stmt else {
        return Err(CompileError::at(
            "a rule must be a SELECT statement",
            Some(Pos { line: 1, column: 1 }),
        ));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(CompileError::at(
            "a rule must be a single SELECT",
            pos_of(query.body.as_ref()),
        ));
    };
    if select.distinct.is_some() {
        return Err(CompileError::at(
            "DISTINCT is not part of eKuiper's SQL",
            pos_of(select.as_ref()),
        ));
    }
    let (scan, join_refs) = bind_from(select, catalog)?;
    let mut binder = Binder {
        scan: &scan,
        registry,
        aliases: HashMap::new(),
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
    // Aliases may be referenced by other SELECT fields (not by WHERE), as in eKuiper.
    let mut aliases = HashMap::new();
    for item in &select.projection {
        if let SelectItem::ExprWithAlias { expr, alias } = item {
            aliases
                .entry(alias.value.to_lowercase())
                .or_insert_with(|| expr.clone());
        }
    }
    let mut plan = LogicalPlan::Scan(scan.clone());
    let mut steps = Vec::new();
    let mut streams = Vec::new();
    for j in join_refs.iter().filter(|j| j.stream) {
        let (left_keys, right_keys, residual) = match j.on {
            Some(on_ast) => {
                let on = binder.expr(on_ast)?;
                check_condition("ON", &on, on_ast)?;
                split_on(on, &j.table.qualifier, false, None)
            }
            None => (Vec::new(), Vec::new(), None),
        };
        streams.push(crate::plan::JoinedStream {
            name: j.table.name.clone(),
            qualifier: j.table.qualifier.clone(),
            schema: j.table.schema.clone(),
        });
        steps.push(crate::plan::JoinStep {
            kind: j.kind,
            right: streams.len(),
            left_keys,
            right_keys,
            residual,
        });
    }
    if let Some(first) = join_refs.iter().find(|j| j.stream)
        && !select_has_window(select)
    {
        return Err(CompileError::at(
            format!(
                "joining stream \"{}\" to another stream needs a window in GROUP BY (e.g. TUMBLINGWINDOW(ss, 10))",
                first.table.name
            ),
            first.pos,
        ));
    }
    if !steps.is_empty() {
        plan = LogicalPlan::JoinStreams {
            input: Box::new(plan),
            join: Box::new(crate::plan::StreamJoins { streams, steps }),
        };
    }
    for j in join_refs.iter().filter(|j| !j.stream) {
        let on_ast = j.on.expect("table joins have ON");
        let on = binder.expr(on_ast)?;
        check_condition("ON", &on, on_ast)?;
        let (stream_keys, table_keys, residual) =
            split_on(on, &j.table.qualifier, true, j.table.lookup_key.as_deref());
        if let Some(key) = &j.table.lookup_key
            && stream_keys.is_empty()
        {
            return Err(CompileError::at(
                format!(
                    "joining lookup table \"{}\" needs ON <stream value> = {}.{key} (its KEY)",
                    j.table.name, j.table.qualifier
                ),
                pos_of(on_ast),
            ));
        }
        if stream_keys.is_empty() {
            return Err(CompileError::at(
                "the ON condition of a table join needs at least one stream.column = table.column",
                pos_of(on_ast),
            ));
        }
        plan = LogicalPlan::JoinTable {
            input: Box::new(plan),
            join: Box::new(TableJoin {
                table: j.table.name.clone(),
                qualifier: j.table.qualifier.clone(),
                schema: j.table.schema.clone(),
                left: j.kind == JoinKind::Left,
                stream_keys,
                table_keys,
                residual,
                lookup: j.table.lookup_key.is_some(),
            }),
        };
    }
    if let Some(selection) = &select.selection {
        binder.hit_cached = true;
        let predicate = binder.expr(selection);
        binder.hit_cached = false;
        let predicate = predicate?;
        check_condition("WHERE", &predicate, selection)?;
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }

    // GROUP BY: at most one window function plus key expressions.
    let mut window_call: Option<&ast::Function> = None;
    let mut key_exprs: Vec<&ast::Expr> = Vec::new();
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => {
            for e in exprs {
                match e {
                    ast::Expr::Function(f) if is_window_name(&f.name.to_string()) => {
                        if window_call.is_some() {
                            return Err(CompileError::at(
                                "GROUP BY may have only one window",
                                pos_of(e),
                            ));
                        }
                        window_call = Some(f);
                    }
                    other => key_exprs.push(other),
                }
            }
        }
        GroupByExpr::All(_) => {
            return Err(CompileError::at(
                "GROUP BY ALL is not part of eKuiper's SQL",
                pos_of(select.as_ref()),
            ));
        }
    }
    let window = match window_call {
        Some(f) => Some(binder.window(f)?),
        None => None,
    };
    // A join's window keeps the streams' raw rows and joins them when it closes; conditions
    // that decide window bounds row by row would need the joined row before the join.
    if let (Some(w), true, Some(f)) = (&window, join_refs.iter().any(|j| j.stream), window_call)
        && (matches!(w.kind, WindowKind::State { .. }) || w.trigger.is_some())
    {
        return Err(CompileError::at(
            "a stream join works with TUMBLING, HOPPING, SLIDING (without OVER (WHEN ...)), SESSION and COUNT windows",
            pos_of(&f.name),
        ));
    }
    if window.is_none()
        && let Some(first) = key_exprs.first()
    {
        return Err(CompileError::at(
            "GROUP BY needs a window function such as TUMBLINGWINDOW(ss, 10)",
            pos_of(*first),
        ));
    }
    let keys = key_exprs
        .iter()
        .map(|e| binder.expr(e))
        .collect::<Result<Vec<_>>>()?;

    // Everything after grouping may use aggregates and window functions.
    binder.aggs = Some(Vec::new());
    binder.window = window.is_some();
    binder.aliases = aliases;
    let items = binder.projection(&select.projection)?;
    let aliases = std::mem::take(&mut binder.aliases);
    let having = match &select.having {
        Some(h) => {
            binder.hit_cached = true;
            let bound = binder.expr(h);
            binder.hit_cached = false;
            let bound = bound?;
            check_condition("HAVING", &bound, h)?;
            Some(bound)
        }
        None => None,
    };
    binder.aliases = aliases;
    let mut sort_keys = Vec::new();
    if let Some(order) = &query.order_by {
        let ast::OrderByKind::Expressions(list) = &order.kind else {
            return Err(CompileError::at(
                "ORDER BY ALL is not part of eKuiper's SQL",
                pos_of(order),
            ));
        };
        for o in list {
            sort_keys.push(SortKey {
                expr: binder.expr(&o.expr)?,
                ascending: !matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
            });
        }
    }
    let limit = match &query.limit_clause {
        Some(ast::LimitClause::LimitOffset {
            limit: Some(n),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => Some(limit_value(n)?),
        Some(other) => {
            return Err(CompileError::at(
                "only LIMIT n is supported (no OFFSET)",
                pos_of(other),
            ));
        }
        None => None,
    };
    let aggs = binder.aggs.take().unwrap_or_default();

    match window {
        Some(window) => {
            let mut carry = Vec::new();
            let mut all = false;
            let mut note = |e: &Expr| collect_carry(e, &mut carry);
            for item in &items {
                match item {
                    ProjectItem::Wildcard { .. } => all = true,
                    ProjectItem::Expr { expr, .. }
                    | ProjectItem::Unnest { expr, .. }
                    | ProjectItem::Spread { expr } => note(expr),
                }
            }
            if let Some(h) = &having {
                note(h);
            }
            for rn in &binder.row_numbers {
                rn.partition.iter().for_each(&mut note);
                rn.order.iter().for_each(|k| note(&k.expr));
            }
            for k in &sort_keys {
                note(&k.expr);
            }
            plan = LogicalPlan::Aggregate {
                input: Box::new(plan),
                spec: Box::new(AggregateSpec {
                    window,
                    keys,
                    aggs,
                    carry: if all {
                        Carry::All
                    } else {
                        Carry::Columns(carry)
                    },
                    grouped: binder.agg_hits,
                }),
            };
        }
        None if !aggs.is_empty() => {
            // eKuiper computes aggregates of a window-less rule on each row by itself.
            plan = LogicalPlan::Aggregate {
                input: Box::new(plan),
                spec: Box::new(AggregateSpec {
                    window: WindowSpec {
                        kind: WindowKind::Rows,
                        filter: None,
                        trigger: None,
                        state: None,
                        partition: Vec::new(),
                        text: "per row".to_string(),
                    },
                    keys: Vec::new(),
                    aggs,
                    carry: Carry::All,
                    grouped: false,
                }),
            };
        }
        None => {}
    }
    if let Some(predicate) = having {
        if plan.aggregate().is_none() {
            return Err(CompileError::at(
                "HAVING needs GROUP BY",
                select.having.as_ref().and_then(pos_of_expr),
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
        plan = above_scan(plan, analytics);
    }
    Ok(RulePlan {
        sql: sql.to_string(),
        plan,
    })
}

fn pos_of_expr(e: &ast::Expr) -> Option<Pos> {
    pos_of(e)
}

/// True when GROUP BY has a window function.
fn select_has_window(select: &ast::Select) -> bool {
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs
            .iter()
            .any(|e| matches!(e, ast::Expr::Function(f) if is_window_name(&f.name.to_string()))),
        _ => false,
    }
}

/// Puts the analytic node right above the scan: eKuiper evaluates analytic functions first.
fn above_scan(plan: LogicalPlan, calls: Vec<AnalyticCall>) -> LogicalPlan {
    match plan {
        LogicalPlan::Scan(_) => LogicalPlan::Analytic {
            input: Box::new(plan),
            calls,
        },
        LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
            input: Box::new(above_scan(*input, calls)),
            predicate,
        },
        LogicalPlan::Project { input, items } => LogicalPlan::Project {
            input: Box::new(above_scan(*input, calls)),
            items,
        },
        LogicalPlan::Aggregate { input, spec } => LogicalPlan::Aggregate {
            input: Box::new(above_scan(*input, calls)),
            spec,
        },
        LogicalPlan::Analytic { input, calls: c } => LogicalPlan::Analytic {
            input: Box::new(above_scan(*input, calls)),
            calls: c,
        },
        LogicalPlan::JoinTable { input, join } => LogicalPlan::JoinTable {
            input: Box::new(above_scan(*input, calls)),
            join,
        },
        LogicalPlan::Sort { input, keys } => LogicalPlan::Sort {
            input: Box::new(above_scan(*input, calls)),
            keys,
        },
        LogicalPlan::JoinStreams { input, join } => LogicalPlan::JoinStreams {
            input: Box::new(above_scan(*input, calls)),
            join,
        },
        LogicalPlan::RowNumber { input, specs } => LogicalPlan::RowNumber {
            input: Box::new(above_scan(*input, calls)),
            specs,
        },
        LogicalPlan::Limit { input, n } => LogicalPlan::Limit {
            input: Box::new(above_scan(*input, calls)),
            n,
        },
    }
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

/// Input columns an expression over result rows reads (they are carried from each group's
/// first row). Aggregate results and window bounds are computed, not carried.
fn collect_carry(e: &Expr, out: &mut Vec<String>) {
    e.visit(&mut |x| {
        let name = match x {
            Expr::Column { name, .. } => name.clone(),
            Expr::Meta(key) => format!("{}{key}", crate::expr::META_PREFIX),
            _ => return,
        };
        if name.starts_with("__agg_") || name == WINDOW_START || name == WINDOW_END {
            return;
        }
        if !out.contains(&name) {
            out.push(name);
        }
    });
}

/// eKuiper's window function names.
const WINDOWS: &[&str] = &[
    "tumblingwindow",
    "hoppingwindow",
    "slidingwindow",
    "sessionwindow",
    "countwindow",
    "statewindow",
];

fn is_window_name(name: &str) -> bool {
    WINDOWS.contains(&name.to_ascii_lowercase().as_str())
}

/// sqlparser cannot parse eKuiper's `OVER ([PARTITION BY ...] WHEN cond)`: cut each `WHEN cond`
/// out of the text (replacing it with spaces, so every other position stays right; the rest,
/// `OVER (PARTITION BY k)` or `OVER ()`, parses) and parse the conditions on their own, padded
/// so their positions are right too. Returns each condition with the position of its `OVER`.
fn extract_over_whens(sql: &str) -> Result<(String, Vec<(Pos, ast::Expr)>)> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&EkuiperDialect, sql)
        .tokenize_with_location()
        .map_err(|e| CompileError::at(e.message.clone(), Pos::from_location(e.location)))?;
    let significant: Vec<&sqlparser::tokenizer::TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is_word =
        |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    // Byte offsets of line starts, to turn token locations into offsets.
    let mut line_starts = vec![0usize];
    for (i, ch) in sql.char_indices() {
        if ch == '\n' {
            line_starts.push(i + 1);
        }
    }
    let offset = |loc: sqlparser::tokenizer::Location| -> usize {
        let start = line_starts
            .get((loc.line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((loc.column as usize).saturating_sub(1))
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let blank = |s: &str| -> String {
        s.chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect()
    };
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut found = Vec::new();
    for (k, tok) in significant.iter().enumerate() {
        if !is_word(&tok.token, "over")
            || significant.get(k + 1).map(|t| &t.token) != Some(&Token::LParen)
        {
            continue;
        }
        // Inside the parentheses: the WHEN at depth 1 and the closing parenthesis.
        let mut depth = 0usize;
        let mut when = None;
        let mut close = None;
        for t in &significant[k + 1..] {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(*t);
                        break;
                    }
                }
                _ if depth == 1 && when.is_none() && is_word(&t.token, "when") => when = Some(*t),
                _ => {}
            }
        }
        let (Some(when), Some(close)) = (when, close) else {
            if close.is_none() {
                return Err(CompileError::at(
                    "OVER ( is missing its closing parenthesis",
                    Pos::from_location(tok.span.start),
                ));
            }
            continue;
        };
        let when_at = offset(when.span.start);
        let cond_from = offset(when.span.end);
        let close_at = offset(close.span.start);
        let padded = format!("{}{}", blank(&sql[..cond_from]), &sql[cond_from..close_at]);
        let cond = Parser::new(&EkuiperDialect)
            .try_with_sql(&padded)
            .and_then(|mut p| p.parse_expr())
            .map_err(CompileError::from_parser)?;
        let pos = Pos::from_location(tok.span.start).unwrap_or(Pos { line: 1, column: 1 });
        found.push((pos, cond));
        cuts.push((when_at, close_at));
    }
    let mut masked = String::with_capacity(sql.len());
    let mut at = 0;
    for (from, to) in cuts {
        masked.push_str(&sql[at..from]);
        masked.push_str(&blank(&sql[from..to]));
        at = to;
    }
    masked.push_str(&sql[at..]);
    Ok((masked, found))
}

/// A table joined to the stream, as written.
struct JoinRef<'q> {
    table: TableRef,
    kind: JoinKind,
    /// True when the joined source is a stream (joined inside the window).
    stream: bool,
    /// The ON condition (`None` for CROSS JOIN).
    on: Option<&'q ast::Expr>,
    /// Where the joined name is.
    pos: Option<Pos>,
}

/// A joined table as the binder resolves names against it.
#[derive(Debug, Clone)]
struct TableRef {
    name: String,
    /// The alias, else the name: joined columns are called `qualifier.column`.
    qualifier: String,
    schema: Option<SchemaRef>,
    /// The `KEY` of a lookup table (`KIND="lookup"`), `None` for a scan table.
    lookup_key: Option<String>,
}

fn bind_from<'q>(
    select: &'q ast::Select,
    catalog: &dyn StreamCatalog,
) -> Result<(Scan, Vec<JoinRef<'q>>)> {
    let Some(from) = select.from.first() else {
        return Err(CompileError::at(
            "a rule needs FROM and a stream",
            pos_of(select),
        ));
    };
    if select.from.len() > 1 {
        return Err(CompileError::at(
            "only one stream may follow FROM (join others with JOIN ... ON)",
            pos_of(&select.from[1]),
        ));
    }
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(CompileError::at(
            "FROM must name a stream",
            pos_of(&from.relation),
        ));
    };
    let lookup = |name: &ast::ObjectName, what: &str| -> Result<StreamDef> {
        let n = name.to_string().trim_matches('`').to_string();
        catalog.stream(&n).cloned().ok_or_else(|| {
            let names = catalog.stream_names();
            CompileError::at(format!("unknown {what} \"{n}\""), pos_of(name))
                .with_hint(did_you_mean(&n, names.iter().map(String::as_str)))
        })
    };
    let def = lookup(name, "stream")?;
    if def.kind == crate::ddl::StreamKind::Table {
        return Err(CompileError::at(
            format!(
                "FROM needs a stream; \"{}\" is a table (join it to a stream with JOIN ... ON)",
                def.name
            ),
            pos_of(name),
        ));
    }
    let mut joins = Vec::new();
    for join in &from.joins {
        let TableFactor::Table {
            name: tname,
            alias: talias,
            ..
        } = &join.relation
        else {
            return Err(CompileError::at("JOIN must name a table", pos_of(join)));
        };
        let tdef = lookup(tname, "stream or table")?;
        let stream = tdef.kind != crate::ddl::StreamKind::Table;
        use ast::{JoinConstraint, JoinOperator as J};
        let (kind, constraint) = match &join.join_operator {
            J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
            J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
            J::Right(c) | J::RightOuter(c) if stream => (JoinKind::Right, Some(c)),
            J::FullOuter(c) if stream => (JoinKind::Full, Some(c)),
            J::CrossJoin(c) if stream => (JoinKind::Cross, Some(c)),
            other => {
                return Err(CompileError::at(
                    format!(
                        "a stream joins a table with INNER or LEFT JOIN, not {}",
                        format!("{other:?}")
                            .split('(')
                            .next()
                            .unwrap_or("this join")
                    ),
                    pos_of(join),
                ));
            }
        };
        let on = match (kind, constraint) {
            (JoinKind::Cross, Some(JoinConstraint::None | JoinConstraint::Natural) | None) => None,
            (JoinKind::Cross, Some(_)) => {
                return Err(CompileError::at(
                    "CROSS JOIN takes no ON condition",
                    pos_of(join),
                ));
            }
            (_, Some(JoinConstraint::On(on))) => Some(on),
            _ => {
                return Err(CompileError::at(
                    if stream {
                        "a stream join needs ON with its condition (or CROSS JOIN)"
                    } else {
                        "a table join needs ON with the matching columns"
                    },
                    pos_of(join),
                ));
            }
        };
        let qualifier = talias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| tdef.name.clone());
        joins.push(JoinRef {
            table: TableRef {
                name: tdef.name.clone(),
                qualifier,
                schema: tdef.arrow_schema(),
                lookup_key: tdef
                    .options
                    .raw
                    .get("KIND")
                    .filter(|k| k.eq_ignore_ascii_case("lookup"))
                    .and(tdef.options.key.clone()),
            },
            kind,
            stream,
            on,
            pos: pos_of(tname),
        });
    }
    Ok((
        Scan {
            stream: def.name.clone(),
            alias: alias.as_ref().map(|a| a.name.value.clone()),
            schema: def.arrow_schema(),
        },
        joins,
    ))
}

/// Splits a bound ON condition into equi-join key pairs (stream side, table side) and the
/// rest. A side belongs to the table when every column it reads is one of the table's;
/// `strip` rewrites the table side over the table's own column names. A lookup table
/// (`lookup_key`) is joined by its KEY only: the first equality with that column is the key
/// pair, every other condition is checked on the fetched rows.
fn split_on(
    on: Expr,
    qualifier: &str,
    strip: bool,
    lookup_key: Option<&str>,
) -> (Vec<Expr>, Vec<Expr>, Option<Expr>) {
    let own = |e: Expr| {
        if strip {
            unqualify(e, &format!("{qualifier}."))
        } else {
            e
        }
    };
    let prefix = format!("{qualifier}.");
    let side = |e: &Expr| -> (bool, bool) {
        let (mut table, mut stream) = (false, false);
        e.visit(&mut |x| match x {
            Expr::Column { name, .. } if name.starts_with(&prefix) => table = true,
            Expr::Column { .. } | Expr::Meta(_) => stream = true,
            _ => {}
        });
        (table, stream)
    };
    let mut conjuncts = Vec::new();
    fn flatten(e: Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                flatten(*left, out);
                flatten(*right, out);
            }
            other => out.push(other),
        }
    }
    flatten(on, &mut conjuncts);
    let (mut skeys, mut tkeys, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for c in conjuncts {
        if let Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } = &c
        {
            // A lookup table answers one key: the table side must be its KEY column itself.
            let usable = |table_side: &Expr| match lookup_key {
                None => true,
                Some(key) => {
                    skeys.is_empty()
                        && matches!(table_side, Expr::Column { name, .. }
                            if name.strip_prefix(&prefix).is_some_and(|n| n.eq_ignore_ascii_case(key)))
                }
            };
            match (side(left), side(right)) {
                ((false, true), (true, false)) if usable(right) => {
                    skeys.push((**left).clone());
                    tkeys.push(own((**right).clone()));
                    continue;
                }
                ((true, false), (false, true)) if usable(left) => {
                    skeys.push((**right).clone());
                    tkeys.push(own((**left).clone()));
                    continue;
                }
                _ => {}
            }
        }
        rest.push(c);
    }
    let residual = rest.into_iter().reduce(|a, b| Expr::Binary {
        op: BinaryOp::And,
        left: Box::new(a),
        right: Box::new(b),
    });
    (skeys, tkeys, residual)
}

/// The expression over the table's own column names (`t.a` becomes `a`), at any depth.
fn unqualify(mut e: Expr, prefix: &str) -> Expr {
    e.visit_mut(&mut |x| {
        if let Expr::Column { name, .. } = x
            && let Some(rest) = name.strip_prefix(prefix)
        {
            *name = rest.to_string();
        }
    });
    e
}

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
    row_numbers: Vec<crate::plan::RowNumberSpec>,
}

impl Binder<'_> {
    fn schema(&self) -> Option<&SchemaRef> {
        self.scan.schema.as_ref()
    }

    fn is_stream_name(&self, name: &str) -> bool {
        name == self.scan.stream || self.scan.alias.as_deref() == Some(name)
    }

    /// The joined table called `name` (by alias or name).
    fn table_named(&self, name: &str) -> Option<&TableRef> {
        self.tables
            .iter()
            .find(|t| t.qualifier == name || t.name == name)
    }

    /// A column of a joined table: `qualifier.column` in joined rows.
    fn table_field(&self, table: &TableRef, name: &str, pos: Option<Pos>) -> Result<Expr> {
        let Some(schema) = &table.schema else {
            return Ok(Expr::Column {
                name: format!("{}.{name}", table.qualifier),
                ty: SqlType::Any,
            });
        };
        match schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        {
            Some(f) => Ok(Expr::Column {
                name: format!("{}.{}", table.qualifier, f.name()),
                ty: SqlType::Known(f.data_type().clone()),
            }),
            None => Err(CompileError::at(
                format!("unknown field \"{name}\" in table \"{}\"", table.name),
                pos,
            )
            .with_hint(did_you_mean(
                name,
                schema.fields().iter().map(|f| f.name().as_str()),
            ))),
        }
    }

    fn column(&mut self, ident: &ast::Ident) -> Result<Expr> {
        let key = ident.value.to_lowercase();
        if !self.resolving.contains(&key)
            && let Some(aliased) = self.aliases.get(&key).cloned()
        {
            self.resolving.push(key);
            let bound = self.expr(&aliased);
            self.resolving.pop();
            return bound;
        }
        self.field(&ident.value, Pos::from_location(ident.span.start))
    }

    fn field(&self, name: &str, pos: Option<Pos>) -> Result<Expr> {
        match self.schema() {
            None => Ok(Expr::Column {
                name: name.to_string(),
                ty: SqlType::Any,
            }),
            Some(schema) => {
                let found = schema
                    .fields()
                    .iter()
                    .find(|f| f.name() == name)
                    .or_else(|| {
                        schema
                            .fields()
                            .iter()
                            .find(|f| f.name().eq_ignore_ascii_case(name))
                    });
                let in_table = || {
                    self.tables.iter().find(|t| {
                        t.schema.as_ref().is_some_and(|s| {
                            s.fields()
                                .iter()
                                .any(|f| f.name().eq_ignore_ascii_case(name))
                        })
                    })
                };
                match found {
                    Some(f) => Ok(Expr::Column {
                        name: f.name().clone(),
                        ty: SqlType::Known(f.data_type().clone()),
                    }),
                    None if in_table().is_some() => {
                        let t = in_table().expect("checked").clone();
                        self.table_field(&t, name, pos)
                    }
                    None => Err(CompileError::at(
                        format!(
                            "unknown field \"{name}\" in stream \"{}\"",
                            self.scan.stream
                        ),
                        pos,
                    )
                    .with_hint(did_you_mean(
                        name,
                        schema.fields().iter().map(|f| f.name().as_str()),
                    ))),
                }
            }
        }
    }

    fn projection(&mut self, items: &[SelectItem]) -> Result<Vec<ProjectItem>> {
        let mut out = Vec::with_capacity(items.len());
        let mut unnamed = 0usize;
        for item in items {
            match item {
                SelectItem::Wildcard(opts) => {
                    let mut replace = Vec::new();
                    if let Some(r) = &opts.opt_replace {
                        for item in &r.items {
                            replace.push((item.column_name.value.clone(), self.expr(&item.expr)?));
                        }
                    }
                    let except = opts
                        .opt_except
                        .as_ref()
                        .map(|e| {
                            std::iter::once(&e.first_element)
                                .chain(e.additional_elements.iter())
                                .map(|i| i.value.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(ProjectItem::Wildcard { except, replace });
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let name = kind.to_string();
                    let name = name.trim_end_matches(".*");
                    if !self.is_stream_name(name) {
                        return Err(CompileError::at(
                            format!("unknown stream \"{name}\""),
                            pos_of(item),
                        ));
                    }
                    out.push(ProjectItem::Wildcard {
                        except: Vec::new(),
                        replace: Vec::new(),
                    });
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }
                    if unnest_arg(e).is_some() =>
                {
                    let arg = unnest_arg(e).expect("guarded");
                    if out.iter().any(|i| matches!(i, ProjectItem::Unnest { .. })) {
                        return Err(CompileError::at("only one unnest per SELECT", pos_of(e)));
                    }
                    let name = match item {
                        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                        _ => "unnest".to_string(),
                    };
                    let expr = self.expr(arg)?;
                    if let SqlType::Known(t) = expr.sql_type()
                        && !matches!(
                            t,
                            arrow::datatypes::DataType::List(_) | arrow::datatypes::DataType::Null
                        )
                    {
                        return Err(CompileError::at(
                            format!(
                                "function \"unnest\" needs an array, got {}",
                                crate::types::type_name(&t)
                            ),
                            pos_of(e),
                        ));
                    }
                    out.push(ProjectItem::Unnest { expr, name });
                }
                SelectItem::UnnamedExpr(e) if is_call(e, "extract") => {
                    let arg = single_arg(e).ok_or_else(|| {
                        CompileError::at("function \"extract\" expects 1 argument", pos_of(e))
                    })?;
                    let bound = self.expr(arg)?;
                    if let SqlType::Known(t) = bound.sql_type()
                        && !matches!(
                            t,
                            arrow::datatypes::DataType::Struct(_)
                                | arrow::datatypes::DataType::Null
                        )
                    {
                        return Err(CompileError::at(
                            format!(
                                "function \"extract\" needs an object, got {}",
                                crate::types::type_name(&t)
                            ),
                            pos_of(e),
                        ));
                    }
                    out.push(ProjectItem::Spread { expr: bound });
                }
                SelectItem::UnnamedExpr(e) if is_call(e, "changed_cols") => {
                    let bound = self.expr(e)?;
                    out.push(ProjectItem::Spread { expr: bound });
                }
                SelectItem::UnnamedExpr(e) => {
                    let bound = self.expr(e)?;
                    let name = match self.natural_name(e) {
                        Some(n) => n,
                        None => {
                            let n = format!("kuiper_field_{unnamed}");
                            unnamed += 1;
                            n
                        }
                    };
                    out.push(ProjectItem::Expr { expr: bound, name });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    // The alias itself is being defined: its own name refers to the column.
                    let key = alias.value.to_lowercase();
                    self.resolving.push(key);
                    let bound = self.expr(expr);
                    self.resolving.pop();
                    out.push(ProjectItem::Expr {
                        expr: bound?,
                        name: alias.value.clone(),
                    });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(CompileError::at("one alias per field", pos_of(expr)));
                }
            }
        }
        Ok(out)
    }

    /// eKuiper's output name of an unaliased field: a column's name, or a function's name.
    fn natural_name(&self, e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Identifier(i) => Some(i.value.clone()),
            ast::Expr::CompoundIdentifier(parts)
                if parts.len() == 2
                    && (self.is_stream_name(&parts[0].value)
                        || self.table_named(&parts[0].value).is_some()) =>
            {
                Some(parts[1].value.clone())
            }
            ast::Expr::Function(f) => Some(f.name.to_string().to_lowercase()),
            ast::Expr::Nested(inner) => self.natural_name(inner),
            _ => None,
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let pos = pos_of(e);
        Ok(match e {
            ast::Expr::Identifier(ident) => self.column(ident)?,
            ast::Expr::CompoundIdentifier(parts) => {
                let (first, rest) = parts.split_first().expect("compound identifier has parts");
                if !rest.is_empty()
                    && let Some(table) = self.table_named(&first.value).cloned()
                {
                    let mut base = self.table_field(
                        &table,
                        &rest[0].value,
                        Pos::from_location(rest[0].span.start),
                    )?;
                    for p in &rest[1..] {
                        base = Expr::Field {
                            base: Box::new(base),
                            name: p.value.clone(),
                        };
                    }
                    return Ok(base);
                }
                let mut base = if rest.is_empty() {
                    self.column(first)?
                } else if self.is_stream_name(&first.value)
                    && self.field(&first.value, None).is_err()
                {
                    // `demo.a`: the stream qualifier, then the column.
                    let col = &rest[0];
                    let mut base = self.column(col)?;
                    for p in &rest[1..] {
                        base = Expr::Field {
                            base: Box::new(base),
                            name: p.value.clone(),
                        };
                    }
                    return Ok(base);
                } else {
                    self.column(first)?
                };
                for p in rest {
                    base = Expr::Field {
                        base: Box::new(base),
                        name: p.value.clone(),
                    };
                }
                base
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut base = self.expr(root)?;
                for access in access_chain {
                    base = self.access(base, access)?;
                }
                base
            }
            ast::Expr::Nested(inner) => self.expr(inner)?,
            ast::Expr::Value(v) => Expr::Literal(literal(&v.value, pos)?),
            ast::Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Not(Box::new(self.expr(expr)?)),
                UnaryOperator::Plus => self.expr(expr)?,
                UnaryOperator::Minus => match self.expr(expr)? {
                    Expr::Literal(Literal::Int(i)) => Expr::Literal(Literal::Int(i.wrapping_neg())),
                    Expr::Literal(Literal::Float(f)) => Expr::Literal(Literal::Float(-f)),
                    other => Expr::Negate(Box::new(other)),
                },
                other => {
                    return Err(CompileError::at(
                        format!("unsupported operator \"{other}\""),
                        pos,
                    ));
                }
            },
            ast::Expr::BinaryOp { left, op, right } => {
                if *op == ast::BinaryOperator::Arrow {
                    let base = self.expr(left)?;
                    return self.arrow_path(base, right);
                }
                let op = binary_op(op).ok_or_else(|| {
                    CompileError::at(format!("unsupported operator \"{op}\""), pos)
                })?;
                let l = self.expr(left)?;
                let r = self.expr(right)?;
                check_operands(op, &l, &r, pos)?;
                Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                }
            }
            ast::Expr::IsNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: false,
            },
            ast::Expr::IsNotNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: true,
            },
            ast::Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => Expr::InList {
                expr: Box::new(self.expr(expr)?),
                list: list.iter().map(|e| self.expr(e)).collect::<Result<_>>()?,
                negated: *negated,
            },
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: Box::new(self.expr(expr)?),
                low: Box::new(self.expr(low)?),
                high: Box::new(self.expr(high)?),
                negated: *negated,
            },
            ast::Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => Expr::Like {
                expr: Box::new(self.expr(expr)?),
                pattern: Box::new(self.expr(pattern)?),
                negated: *negated,
            },
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
                branches: conditions
                    .iter()
                    .map(|c| Ok((self.expr(&c.condition)?, self.expr(&c.result)?)))
                    .collect::<Result<_>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
            },
            ast::Expr::Function(f) => self.function(f)?,
            other => {
                return Err(CompileError::at(
                    format!("unsupported expression \"{other}\""),
                    pos,
                ));
            }
        })
    }

    fn access(&mut self, base: Expr, access: &AccessExpr) -> Result<Expr> {
        Ok(match access {
            AccessExpr::Dot(ast::Expr::Identifier(i)) => Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            },
            AccessExpr::Dot(other) => {
                return Err(CompileError::at(
                    format!("expected a field name after \".\", found \"{other}\""),
                    pos_of(other),
                ));
            }
            AccessExpr::Subscript(Subscript::Index { index }) => Expr::Index {
                base: Box::new(base),
                index: Box::new(self.expr(index)?),
            },
            AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            }) => {
                if let Some(s) = stride {
                    return Err(CompileError::at("slices take no stride", pos_of(s)));
                }
                Expr::Slice {
                    base: Box::new(base),
                    start: lower_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                    end: upper_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                }
            }
        })
    }

    /// The right side of `->`: a key, a dotted path, or a key followed by subscripts.
    fn arrow_path(&mut self, base: Expr, right: &ast::Expr) -> Result<Expr> {
        match right {
            ast::Expr::Identifier(i) => Ok(Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            }),
            ast::Expr::CompoundIdentifier(parts) => {
                Ok(parts.iter().fold(base, |b, p| Expr::Field {
                    base: Box::new(b),
                    name: p.value.clone(),
                }))
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut b = self.arrow_path(base, root)?;
                for a in access_chain {
                    b = self.access(b, a)?;
                }
                Ok(b)
            }
            // `a -> b -> c` re-associated by sqlparser as `a -> (b -> c)` in some shapes.
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Arrow,
                right: r2,
            } => {
                let b = self.arrow_path(base, left)?;
                self.arrow_path(b, r2)
            }
            ast::Expr::Nested(inner) => self.arrow_path(base, inner),
            other => Err(CompileError::at(
                format!("expected a key after \"->\", found \"{other}\""),
                pos_of(other),
            )),
        }
    }

    fn function(&mut self, f: &ast::Function) -> Result<Expr> {
        let pos = pos_of(&f.name);
        let name = f.name.to_string().to_lowercase();
        if let Some(kind) = AnalyticKind::from_name(&name) {
            return self.analytic(kind, f, pos);
        }
        if name == "row_number" && f.over.is_some() && f.filter.is_none() {
            return self.row_number_over(f, pos);
        }
        if f.over.is_some() || f.filter.is_some() {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" takes no OVER or FILTER clause (only analytic functions and windows do)"
                ),
                pos,
            ));
        }
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => list.args.iter().collect(),
            FunctionArguments::Subquery(q) => {
                return Err(CompileError::at(
                    "subqueries are not supported",
                    pos_of(q.as_ref()),
                ));
            }
        };
        if name == "meta" || name == "mqtt" {
            return meta_key(&args, pos);
        }
        if let Some(special) = self.context_function(&name, args.len(), pos)? {
            return Ok(special);
        }
        if let Some(hit) = self.hit_function(&name, args.len(), pos)? {
            return Ok(hit);
        }
        if name == "unnest" || name == "extract" {
            return Err(CompileError::at(
                format!("{name}(...) must be a whole SELECT field, e.g. SELECT {name}(x) FROM s"),
                pos,
            ));
        }
        if let Some(kind) = AggKind::from_name(&name) {
            return self.aggregate(kind, &args, pos);
        }
        if name == "window_start" || name == "window_end" {
            if !args.is_empty() {
                return Err(CompileError::at(
                    format!("function \"{name}\" takes no arguments"),
                    pos,
                ));
            }
            if !self.window || self.aggs.is_none() || self.in_aggregate {
                return Err(CompileError::at(
                    format!("function \"{name}\" can only be used with a window in GROUP BY"),
                    pos,
                ));
            }
            return Ok(Expr::Column {
                name: if name == "window_start" {
                    WINDOW_START
                } else {
                    WINDOW_END
                }
                .to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            });
        }
        if is_window_name(&name) {
            return Err(CompileError::at(
                format!("window function \"{name}\" belongs in GROUP BY"),
                pos,
            ));
        }
        let Some(func) = self.registry.get(&name).cloned() else {
            return Err(
                CompileError::at(format!("unknown function \"{name}\""), pos)
                    .with_hint(did_you_mean(&name, self.registry.names())),
            );
        };
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => bound.push(self.expr(e)?),
                other => {
                    return Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to \"{name}\""),
                        pos_of(other),
                    ));
                }
            }
        }
        let infos: Vec<ArgInfo> = bound.iter().map(ArgInfo::of).collect();
        let ty = func
            .return_type(&infos)
            .map_err(|reason| CompileError::at(format!("function \"{name}\" {reason}"), pos))?;
        if func.is_aggregate() {
            return self.custom_aggregate(func, bound, ty, pos);
        }
        Ok(Expr::Call { func, args: bound })
    }
}

impl Binder<'_> {
    /// `last_hit_count()`, `last_hit_time()` and their `last_agg_hit_*` forms (see
    /// [`crate::hit`]): row-level forms in rules without a window (and in WHERE or a sliding
    /// window's WHEN), `agg` forms in the SELECT and HAVING of window rules, as in eKuiper.
    fn hit_function(&mut self, name: &str, args: usize, pos: Option<Pos>) -> Result<Option<Expr>> {
        use crate::hit::{HitSite, HitValue};
        let (what, agg) = match name {
            "last_hit_count" => (HitValue::Count, false),
            "last_hit_time" => (HitValue::Time, false),
            "last_agg_hit_count" => (HitValue::Count, true),
            "last_agg_hit_time" => (HitValue::Time, true),
            _ => return Ok(None),
        };
        if args != 0 {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no arguments"),
                pos,
            ));
        }
        let window_results = self.window && self.aggs.is_some();
        if agg && !window_results {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" can only be used in the SELECT or HAVING of a rule with a window; use {} on rows",
                    name.replace("_agg", "")
                ),
                pos,
            ));
        }
        if !agg && window_results {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" is not supported over a window's results (only in WHERE or a sliding window's OVER (WHEN ...)); use {}",
                    name.replace("last_", "last_agg_")
                ),
                pos,
            ));
        }
        self.agg_hits |= agg;
        let time = Expr::Column {
            name: if agg {
                WINDOW_END
            } else {
                crate::window::TS_COLUMN
            }
            .to_string(),
            ty: SqlType::Known(arrow::datatypes::DataType::Int64),
        };
        Ok(Some(Expr::Hit {
            site: std::sync::Arc::new(HitSite::new(what, agg)),
            cached: self.hit_cached,
            time: Box::new(time),
        }))
    }

    /// `row_number() OVER ([PARTITION BY ...] [ORDER BY ...])`: numbers within each partition
    /// of a window's emission; 1 on rows (each row is its own emission).
    fn row_number_over(&mut self, f: &ast::Function, pos: Option<Pos>) -> Result<Expr> {
        if matches!(&f.args, FunctionArguments::List(l) if !l.args.is_empty()) {
            return Err(CompileError::at(
                "function \"row_number\" takes no arguments",
                pos,
            ));
        }
        let spec = match &f.over {
            Some(ast::WindowType::WindowSpec(spec)) if spec.window_frame.is_none() => spec,
            _ => {
                return Err(CompileError::at(
                    "the OVER clause of \"row_number\" takes only PARTITION BY and ORDER BY",
                    pos,
                ));
            }
        };
        let partition = spec
            .partition_by
            .iter()
            .map(|e| self.expr(e))
            .collect::<Result<Vec<_>>>()?;
        let mut order = Vec::new();
        for o in &spec.order_by {
            order.push(SortKey {
                expr: self.expr(&o.expr)?,
                ascending: !matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
            });
        }
        if !(self.window && self.aggs.is_some()) {
            return Ok(Expr::Literal(Literal::Int(1)));
        }
        let column = format!("__rownum_{}", self.row_numbers.len());
        self.row_numbers.push(crate::plan::RowNumberSpec {
            partition,
            order,
            column: column.clone(),
        });
        Ok(Expr::Column {
            name: column,
            ty: SqlType::Known(arrow::datatypes::DataType::Int64),
        })
    }

    /// Functions that read the rule, the window or the row's place rather than arguments:
    /// `rule_id()`, `rule_start()`, `row_number()`, `event_time()`, `window_trigger()`.
    fn context_function(&self, name: &str, args: usize, pos: Option<Pos>) -> Result<Option<Expr>> {
        let expr = match name {
            "rule_id" => Expr::Rule(RuleValue::Id),
            "rule_start" => Expr::Rule(RuleValue::Start),
            // Within a window's result rows a batch is one emission; elsewhere every row is its
            // own emission, so it is always the first.
            "row_number" if self.window && self.aggs.is_some() => Expr::RowNumber,
            "row_number" => Expr::Literal(Literal::Int(1)),
            // In a window's results: the window's end (its trigger time); on rows: the row's
            // time (event time, or arrival).
            "event_time" | "window_trigger" if self.window && self.aggs.is_some() => Expr::Column {
                name: WINDOW_END.to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            },
            "event_time" => Expr::Column {
                name: crate::window::TS_COLUMN.to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            },
            "window_trigger" => {
                return Err(CompileError::at(
                    "function \"window_trigger\" can only be used with a window in GROUP BY",
                    pos,
                ));
            }
            _ => return Ok(None),
        };
        if args != 0 {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no arguments"),
                pos,
            ));
        }
        Ok(Some(expr))
    }

    /// The `WHEN` condition of the first OVER clause after `pos` (the function's name).
    fn take_when(&mut self, pos: Option<Pos>) -> Option<(Pos, ast::Expr)> {
        let after = pos.map_or((0, 0), |p| (p.line, p.column));
        let i = self
            .whens
            .iter()
            .position(|(p, _)| (p.line, p.column) > after)?;
        Some(self.whens.remove(i))
    }

    /// Binds an analytic call: arguments, PARTITION BY and WHEN on raw rows; the call becomes
    /// a reference to its hidden column.
    fn analytic(
        &mut self,
        kind: AnalyticKind,
        f: &ast::Function,
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = kind.name();
        if f.filter.is_some() {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no FILTER"),
                pos,
            ));
        }
        let when = if f.over.is_some() {
            self.take_when(pos)
        } else {
            None
        };
        let mut partition = Vec::new();
        match &f.over {
            None => {}
            Some(ast::WindowType::WindowSpec(spec))
                if spec.order_by.is_empty() && spec.window_frame.is_none() =>
            {
                for e in &spec.partition_by {
                    partition.push(self.expr(e)?);
                }
            }
            Some(_) => {
                return Err(CompileError::at(
                    format!("the OVER clause of \"{name}\" takes only PARTITION BY and WHEN"),
                    pos,
                ));
            }
        }
        let when = match when {
            Some((_, cond)) => {
                let bound = self.expr(&cond)?;
                check_condition("WHEN", &bound, &cond)?;
                Some(bound)
            }
            None => None,
        };
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::List(list) => list.args.iter().collect(),
            _ => Vec::new(),
        };
        let mut bound = Vec::with_capacity(args.len());
        let mut names = Vec::new();
        for (k, a) in args.into_iter().enumerate() {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                    if kind == AnalyticKind::ChangedCols && k >= 2 =>
                {
                    let Some(schema) = self.schema().cloned() else {
                        return Err(CompileError::at(
                            "changed_cols(..., *) needs a stream with a schema; list the columns",
                            pos,
                        ));
                    };
                    for field in schema.fields() {
                        names.push(field.name().clone());
                        bound.push(Expr::Column {
                            name: field.name().clone(),
                            ty: SqlType::Known(field.data_type().clone()),
                        });
                    }
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    if kind == AnalyticKind::ChangedCols && k >= 2 {
                        names.push(
                            self.natural_name(e)
                                .unwrap_or_else(|| format!("kuiper_field_{}", k - 2)),
                        );
                    }
                    bound.push(self.expr(e)?)
                }
                other => {
                    return Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to \"{name}\""),
                        pos_of(other),
                    ));
                }
            }
        }
        let (min, max) = kind.arity();
        if bound.len() < min || bound.len() > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" expects {want} argument(s), got {}",
                    bound.len()
                ),
                pos,
            ));
        }
        if kind == AnalyticKind::ChangedCols {
            let Expr::Literal(Literal::String(prefix)) = &bound[0] else {
                return Err(CompileError::at(
                    "the first argument of \"changed_cols\" must be a string prefix",
                    pos,
                ));
            };
            names = names.iter().map(|n| format!("{prefix}{n}")).collect();
        }
        let flag_at = match kind {
            AnalyticKind::ChangedCol | AnalyticKind::HadChanged => Some(0),
            AnalyticKind::ChangedCols => Some(1),
            AnalyticKind::Lag => Some(3).filter(|i| *i < bound.len()),
            _ => None,
        };
        if let Some(i) = flag_at
            && !matches!(bound[i], Expr::Literal(Literal::Bool(_)))
        {
            return Err(CompileError::at(
                format!("argument {} of \"{name}\" must be true or false", i + 1),
                pos,
            ));
        }
        if kind == AnalyticKind::Lag
            && let Some(offset) = bound.get(1)
            && !matches!(offset, Expr::Literal(Literal::Int(n)) if *n >= 1)
        {
            return Err(CompileError::at(
                "the offset of \"lag\" must be a positive integer",
                pos,
            ));
        }
        let types: Vec<SqlType> = bound.iter().map(Expr::sql_type).collect();
        let ty = kind.return_type(&types);
        let call = AnalyticCall {
            kind,
            args: bound,
            partition,
            when,
            ty: ty.clone(),
            names,
        };
        self.analytics.push(call);
        Ok(Expr::Column {
            name: analytic_column(self.analytics.len() - 1),
            ty,
        })
    }

    /// A plugin's aggregate function: like the built-in aggregates, its arguments are raw-row
    /// values and the call becomes a reference to its result column.
    fn custom_aggregate(
        &mut self,
        func: std::sync::Arc<dyn crate::functions::ScalarFunction>,
        args: Vec<Expr>,
        ty: SqlType,
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = func.name();
        if args.iter().any(|a| {
            let mut nested = false;
            a.visit(&mut |x| {
                nested |= matches!(x, Expr::Column { name, .. } if name.starts_with("__agg_"))
            });
            nested
        }) || self.in_aggregate
        {
            return Err(CompileError::at(
                format!("aggregate function \"{name}\" cannot be nested in another aggregate"),
                pos,
            ));
        }
        let Some(aggs) = self.aggs.as_mut() else {
            return Err(CompileError::at(
                format!(
                    "aggregate function \"{name}\" is not allowed here (only in SELECT, HAVING and ORDER BY)"
                ),
                pos,
            ));
        };
        aggs.push(AggCall {
            kind: AggKind::Custom,
            args,
            whole_row: false,
            ty: ty.clone(),
            custom: Some(func),
        });
        Ok(Expr::Column {
            name: agg_column(aggs.len() - 1),
            ty,
        })
    }

    /// Binds an aggregate call: its arguments are bound on raw rows and the call becomes a
    /// reference to the aggregate's result column.
    fn aggregate(
        &mut self,
        kind: AggKind,
        args: &[&FunctionArg],
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = kind.name();
        if self.in_aggregate {
            return Err(CompileError::at(
                format!("aggregate function \"{name}\" cannot be nested in another aggregate"),
                pos,
            ));
        }
        if self.aggs.is_none() {
            return Err(CompileError::at(
                format!(
                    "aggregate function \"{name}\" is not allowed here (only in SELECT, HAVING and ORDER BY)"
                ),
                pos,
            ));
        }
        let star = matches!(args, [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]);
        if star && !matches!(kind, AggKind::Count | AggKind::Collect | AggKind::MergeAgg) {
            return Err(CompileError::at(
                format!("function \"{name}\" does not take *"),
                pos,
            ));
        }
        let mut bound = Vec::new();
        if !star {
            self.in_aggregate = true;
            let mut result = Ok(());
            for a in args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => match self.expr(e) {
                        Ok(b) => bound.push(b),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    },
                    other => {
                        result = Err(CompileError::at(
                            format!("unsupported argument \"{other}\" to \"{name}\""),
                            pos_of(*other),
                        ));
                        break;
                    }
                }
            }
            self.in_aggregate = false;
            result?;
            let (min, max) = kind.arity();
            if bound.len() < min || bound.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(CompileError::at(
                    format!(
                        "function \"{name}\" expects {want} argument(s), got {}",
                        bound.len()
                    ),
                    pos,
                ));
            }
            check_aggregate_args(kind, &bound, pos)?;
        }
        let ty = kind.return_type(&bound.first().map_or(SqlType::Any, Expr::sql_type));
        let call = AggCall {
            kind,
            args: bound,
            whole_row: (star && kind != AggKind::Count) || kind == AggKind::Deduplicate,
            ty: ty.clone(),
            custom: None,
        };
        let aggs = self.aggs.as_mut().expect("checked above");
        // The same call twice (often through an alias) is computed once.
        let text = call.to_string();
        let index = match aggs.iter().position(|a| a.to_string() == text) {
            Some(i) => i,
            None => {
                aggs.push(call);
                aggs.len() - 1
            }
        };
        Ok(Expr::Column {
            name: agg_column(index),
            ty,
        })
    }

    /// Binds the window function of GROUP BY with its FILTER and OVER modifiers.
    fn window(&mut self, f: &ast::Function) -> Result<WindowSpec> {
        let pos = pos_of(&f.name);
        let trigger = if f.over.is_some() {
            self.take_when(pos)
        } else {
            None
        };
        let name = f.name.to_string().to_lowercase();
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to {name}"),
                        pos_of(other),
                    )),
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let int_arg = |i: usize| -> Result<u64> {
            let e = args[i];
            if let ast::Expr::Value(v) = e
                && let Value::Number(n, _) = &v.value
                && let Ok(n) = n.parse::<u64>()
                && n > 0
            {
                return Ok(n);
            }
            Err(CompileError::at(
                format!("{name} needs a positive integer here, got {e}"),
                pos_of(e),
            ))
        };
        let unit = || -> Result<u64> {
            let e = args[0];
            let text = match e {
                ast::Expr::Identifier(i) => i.value.clone(),
                ast::Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            unit_ms(&text).ok_or_else(|| {
                CompileError::at(
                    format!(
                        "invalid time unit \"{text}\" of {name}: use one of DD, HH, MI, SS, MS"
                    ),
                    pos_of(e),
                )
            })
        };
        let arity = |min: usize, max: usize| -> Result<()> {
            if args.len() < min || args.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else {
                    format!("{min} or {max}")
                };
                return Err(CompileError::at(
                    format!("{name} expects {want} arguments, got {}", args.len()),
                    pos,
                ));
            }
            Ok(())
        };
        let mut state = None;
        let kind = match name.as_str() {
            "tumblingwindow" => {
                arity(2, 2)?;
                WindowKind::Tumbling {
                    size: unit()? * int_arg(1)?,
                }
            }
            "hoppingwindow" => {
                arity(3, 3)?;
                let u = unit()?;
                WindowKind::Hopping {
                    size: u * int_arg(1)?,
                    hop: u * int_arg(2)?,
                }
            }
            "slidingwindow" => {
                arity(2, 3)?;
                let u = unit()?;
                let delay = if args.len() == 3 { u * int_arg(2)? } else { 0 };
                WindowKind::Sliding {
                    size: u * int_arg(1)?,
                    delay,
                }
            }
            "sessionwindow" => {
                arity(3, 3)?;
                let u = unit()?;
                WindowKind::Session {
                    max: u * int_arg(1)?,
                    timeout: u * int_arg(2)?,
                }
            }
            "countwindow" => {
                arity(1, 2)?;
                let size = int_arg(0)?;
                let step = if args.len() == 2 { int_arg(1)? } else { size };
                if step > size {
                    return Err(CompileError::at(
                        format!(
                            "the step of countwindow ({step}) must not exceed its size ({size})"
                        ),
                        pos_of(args[1]),
                    ));
                }
                WindowKind::Count { size, step }
            }
            "statewindow" => {
                arity(1, 2)?;
                let begin = self.expr(args[0])?;
                check_condition("STATEWINDOW", &begin, args[0])?;
                let emit = if args.len() == 2 {
                    let e = self.expr(args[1])?;
                    check_condition("STATEWINDOW", &e, args[1])?;
                    e
                } else {
                    begin.clone()
                };
                state = Some((begin, emit));
                WindowKind::State {
                    single: args.len() == 1,
                }
            }
            _ => unreachable!("only window names reach here"),
        };
        let filter = match &f.filter {
            Some(cond) => {
                let bound = self.expr(cond)?;
                check_condition("FILTER", &bound, cond)?;
                Some(bound)
            }
            None => None,
        };
        let mut partition = Vec::new();
        match &f.over {
            None => {}
            // What is left of `OVER (WHEN ...)` once the condition is cut out.
            Some(ast::WindowType::WindowSpec(spec))
                if trigger.is_some()
                    && spec.partition_by.is_empty()
                    && spec.order_by.is_empty()
                    && spec.window_frame.is_none() => {}
            Some(ast::WindowType::WindowSpec(spec)) if matches!(kind, WindowKind::State { .. }) => {
                if !spec.order_by.is_empty() || spec.window_frame.is_some() {
                    return Err(CompileError::at(
                        "a state window's OVER takes only PARTITION BY",
                        pos,
                    ));
                }
                for e in &spec.partition_by {
                    partition.push(self.expr(e)?);
                }
            }
            Some(_) => {
                return Err(CompileError::at(
                    format!(
                        "{name} takes no OVER clause (OVER (PARTITION BY ...) is for STATEWINDOW, OVER (WHEN ...) for SLIDINGWINDOW)"
                    ),
                    pos,
                ));
            }
        }
        let trigger = match trigger {
            Some((tpos, cond)) => {
                if !matches!(kind, WindowKind::Sliding { .. }) {
                    return Err(CompileError::at(
                        format!("OVER (WHEN ...) is only for SLIDINGWINDOW, not {name}"),
                        Some(tpos),
                    ));
                }
                self.hit_cached = true;
                let bound = self.expr(&cond);
                self.hit_cached = false;
                let bound = bound?;
                check_condition("OVER (WHEN ...)", &bound, &cond)?;
                Some(bound)
            }
            None => None,
        };
        Ok(WindowSpec {
            kind,
            filter,
            trigger,
            state,
            partition,
            text: format!("{f}"),
        })
    }
}

/// Plan-time checks of aggregate arguments whose types or values are known.
fn check_aggregate_args(kind: AggKind, args: &[Expr], pos: Option<Pos>) -> Result<()> {
    use arrow::datatypes::DataType;
    let name = kind.name();
    let numeric_only = matches!(
        kind,
        AggKind::Avg
            | AggKind::Sum
            | AggKind::Median
            | AggKind::Stddev
            | AggKind::Stddevs
            | AggKind::Var
            | AggKind::Vars
            | AggKind::PercentileCont
            | AggKind::PercentileDisc
    );
    if numeric_only
        && let SqlType::Known(t) = args[0].sql_type()
        && !crate::types::is_numeric(&t)
        && t != DataType::Null
    {
        return Err(CompileError::at(
            format!(
                "function \"{name}\" needs a number, got {}",
                crate::types::type_name(&t)
            ),
            pos,
        ));
    }
    match kind {
        AggKind::PercentileCont | AggKind::PercentileDisc => match &args[1] {
            Expr::Literal(Literal::Float(p)) if (0.0..=1.0).contains(p) => Ok(()),
            Expr::Literal(Literal::Int(p)) if (0..=1).contains(p) => Ok(()),
            _ => Err(CompileError::at(
                format!(
                    "the second argument of \"{name}\" must be a number literal between 0 and 1"
                ),
                pos,
            )),
        },
        AggKind::LastValue | AggKind::Deduplicate => match &args[1] {
            Expr::Literal(Literal::Bool(_)) => Ok(()),
            _ => Err(CompileError::at(
                format!("the second argument of \"{name}\" must be true or false"),
                pos,
            )),
        },
        _ => Ok(()),
    }
}

/// True when `e` is a call of `name`.
fn is_call(e: &ast::Expr, name: &str) -> bool {
    matches!(e, ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(name))
}

/// The argument of a top-level `unnest(x)` call.
fn unnest_arg(e: &ast::Expr) -> Option<&ast::Expr> {
    if !is_call(e, "unnest") {
        return None;
    }
    single_arg(e)
}

/// The one argument of a call.
fn single_arg(e: &ast::Expr) -> Option<&ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    match &f.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => Some(x),
            _ => None,
        },
        _ => None,
    }
}

fn meta_key(args: &[&FunctionArg], pos: Option<Pos>) -> Result<Expr> {
    let key = match args {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(i)))] => i.value.clone(),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))] => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if key.is_empty() {
        return Err(CompileError::at(
            "function \"meta\" expects a meta reference such as meta(topic)",
            pos,
        ));
    }
    Ok(Expr::Meta(key))
}

fn literal(v: &Value, pos: Option<Pos>) -> Result<Literal> {
    Ok(match v {
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Literal::Int(i),
            Err(_) => Literal::Float(
                n.parse::<f64>()
                    .map_err(|_| CompileError::at(format!("invalid number \"{n}\""), pos))?,
            ),
        },
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Literal::String(s.clone()),
        Value::Boolean(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        other => {
            return Err(CompileError::at(
                format!("unsupported literal {other}"),
                pos,
            ));
        }
    })
}

fn binary_op(op: &ast::BinaryOperator) -> Option<BinaryOp> {
    use ast::BinaryOperator as B;
    Some(match op {
        B::Plus => BinaryOp::Add,
        B::Minus => BinaryOp::Sub,
        B::Multiply => BinaryOp::Mul,
        B::Divide => BinaryOp::Div,
        B::Modulo => BinaryOp::Mod,
        B::BitwiseAnd => BinaryOp::BitAnd,
        B::BitwiseOr => BinaryOp::BitOr,
        B::BitwiseXor => BinaryOp::BitXor,
        B::Eq => BinaryOp::Eq,
        B::NotEq => BinaryOp::NotEq,
        B::Lt => BinaryOp::Lt,
        B::LtEq => BinaryOp::LtEq,
        B::Gt => BinaryOp::Gt,
        B::GtEq => BinaryOp::GtEq,
        B::And => BinaryOp::And,
        B::Or => BinaryOp::Or,
        _ => return None,
    })
}

/// Plan-time type check of an operator whose operand types are both known.
fn check_operands(op: BinaryOp, l: &Expr, r: &Expr, pos: Option<Pos>) -> Result<()> {
    use arrow::datatypes::DataType;
    let (SqlType::Known(lt), SqlType::Known(rt)) = (l.sql_type(), r.sql_type()) else {
        return Ok(());
    };
    if lt == DataType::Null || rt == DataType::Null {
        return Ok(());
    }
    let num = |t: &DataType| crate::types::is_numeric(t);
    let ok = if op.is_arithmetic() {
        num(&lt) && num(&rt)
    } else if op.is_bitwise() {
        lt.is_integer() && rt.is_integer()
    } else if op.is_comparison() {
        (num(&lt) && num(&rt))
            || lt == rt
            || matches!((&lt, &rt), (DataType::Timestamp(..), t) | (t, DataType::Timestamp(..)) if t.is_integer())
    } else {
        lt == DataType::Boolean && rt == DataType::Boolean
    };
    if ok {
        Ok(())
    } else {
        Err(CompileError::at(
            format!(
                "invalid operation {} {} {}",
                crate::types::type_name(&lt),
                op.symbol(),
                crate::types::type_name(&rt)
            ),
            pos,
        ))
    }
}
