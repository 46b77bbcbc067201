//! The chain of a graph rule as one SELECT.
//!
//! The text is printed from the nodes' parsed trees, then read back with the rule parser, and
//! every clause must come back as exactly the trees it was printed from, with nothing else in
//! the query. So a node's text can only ever be the one expression it parsed to.

use std::collections::BTreeSet;
use std::ops::Range;

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, JoinConstraint, JoinOperator, OrderByKind, OrderBySort,
    SelectItem, SetExpr, TableFactor,
};

use super::fragment::{self, Fragment};
use super::nodes::{JoinSpec, Op};
use super::shape::Plan;
use super::{GraphError, GraphQuery};

/// One clause piece and the node it came from.
struct Piece<'a, T> {
    frag: &'a Fragment<T>,
    node: &'a str,
}

/// The clauses of the SELECT, each piece still a parsed tree.
#[derive(Default)]
struct Clauses<'a> {
    /// SELECT fields and whether each is INVISIBLE.
    items: Vec<(Piece<'a, SelectItem>, bool)>,
    /// FROM stream, its source node, and the joins with the join node.
    from: (String, String),
    joins: Vec<(&'a JoinSpec, &'a str)>,
    wheres: Vec<Piece<'a, Expr>>,
    group: Vec<Piece<'a, Expr>>,
    havings: Vec<Piece<'a, Expr>>,
    order: Vec<(Piece<'a, Expr>, bool)>,
}

/// Builds, prints and checks the SELECT of `plan`.
pub(super) fn build(plan: &Plan) -> Result<GraphQuery, GraphError> {
    let star = fragment::select_item("*").expect("* parses");
    let mut c = Clauses {
        from: from(plan)?,
        ..Clauses::default()
    };
    let pick = plan.chain.iter().find_map(|(_, op)| match op {
        Op::Pick(items) => Some(items),
        _ => None,
    });
    // Without a pick the output is the input row plus each function's field (eKuiper's
    // function node adds a field); with a pick, the function fields serve the pick and are
    // hidden, unless the pick keeps the whole row (`*`), which in eKuiper includes them.
    let hidden = pick.is_some_and(|items| {
        !items.iter().any(|i| {
            matches!(
                i.ast,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
    });
    if pick.is_none() {
        c.items.push((
            Piece {
                frag: &star,
                node: "",
            },
            false,
        ));
    }
    let mut grouped = false;
    let mut window = None;
    for (node, op) in &plan.chain {
        let node = node.as_str();
        match op {
            Op::Function(f) | Op::AggFunc(f) => {
                grouped |= matches!(op, Op::AggFunc(_));
                c.items.push((Piece { frag: f, node }, hidden));
            }
            Op::Pick(items) => c
                .items
                .extend(items.iter().map(|frag| (Piece { frag, node }, false))),
            Op::Filter(cond) => {
                let piece = Piece { frag: cond, node };
                if grouped {
                    c.havings.push(piece);
                } else {
                    c.wheres.push(piece);
                }
            }
            Op::Window(_, call) => window = Some(Piece { frag: call, node }),
            Op::GroupBy(dims) => {
                grouped = true;
                c.group.extend(dims.iter().map(|frag| Piece { frag, node }));
            }
            Op::OrderBy(keys) => c.order.extend(
                keys.iter()
                    .map(|(frag, desc)| (Piece { frag, node }, *desc)),
            ),
            Op::Join(_, joins) => c.joins.extend(joins.iter().map(|j| (j, node))),
        }
    }
    c.group.extend(window);
    let (sql, pieces) = print(&c);
    verify(&sql, &c).map_err(|node| {
        GraphError::at(
            node,
            "its expression does not read back the same once printed into the query; write \
             the rule in SQL",
        )
    })?;
    Ok(GraphQuery {
        sql,
        sinks: plan.sinks.clone(),
        pieces,
    })
}

/// The FROM stream and its source node; with a join node, the join must name exactly the
/// graph's sources, its `from` a stream.
fn from(plan: &Plan) -> Result<(String, String), GraphError> {
    let mut seen = BTreeSet::new();
    for s in &plan.sources {
        if !seen.insert(&s.stream) {
            return Err(GraphError::at(
                &s.node,
                format!(
                    "reads \"{}\" a second time; each stream or table is read by one source node",
                    s.stream
                ),
            ));
        }
    }
    let Some((node, Op::Join(from, joins))) =
        plan.chain.iter().find(|(_, op)| matches!(op, Op::Join(..)))
    else {
        let s = &plan.sources[0];
        return Ok((s.stream.clone(), s.node.clone()));
    };
    let find = |name: &str| plan.sources.iter().find(|s| s.stream == name);
    let Some(left) = find(from).filter(|s| !s.table) else {
        return Err(GraphError::at(
            node,
            format!("from \"{from}\" is not a stream that a source node of the graph reads"),
        ));
    };
    let mut named = BTreeSet::from([from.as_str()]);
    for j in joins {
        if find(&j.name).is_none() {
            return Err(GraphError::at(
                node,
                format!(
                    "joins \"{}\", which no source node of the graph reads",
                    j.name
                ),
            ));
        }
        if !named.insert(&j.name) {
            return Err(GraphError::at(node, format!("names \"{}\" twice", j.name)));
        }
    }
    if let Some(s) = plan
        .sources
        .iter()
        .find(|s| !named.contains(s.stream.as_str()))
    {
        return Err(GraphError::at(
            &s.node,
            format!(
                "reads \"{}\", which join \"{node}\" does not name",
                s.stream
            ),
        ));
    }
    Ok((from.clone(), left.node.clone()))
}

/// A stream name as an identifier: plain when it reads back as itself (`other` does, `select`
/// does not), else in backticks.
fn ident(name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let reads_back = || {
        let Ok((q, _)) = crate::bind::parse_query(&format!("SELECT * FROM {name}")) else {
            return false;
        };
        matches!(q.body.as_ref(), SetExpr::Select(s) if s.from.len() == 1
            && s.from[0].joins.is_empty()
            && table_named(&s.from[0].relation, name))
    };
    if simple && reads_back() {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// `f` is the plain table `name`, without alias or arguments.
fn table_named(f: &TableFactor, name: &str) -> bool {
    matches!(f, TableFactor::Table { name: n, alias: None, args: None, .. }
        if n.0.len() == 1 && n.0[0].as_ident().is_some_and(|i| i.value == name))
}

/// The SQL text, and which node each byte range came from.
fn print(c: &Clauses) -> (String, Vec<(Range<usize>, String)>) {
    let mut sql = String::new();
    let mut pieces = Vec::new();
    let mut put = |sql: &mut String, text: &str, node: &str| {
        let start = sql.len();
        sql.push_str(text);
        if !node.is_empty() {
            pieces.push((start..sql.len(), node.to_string()));
        }
    };
    sql.push_str("SELECT ");
    for (i, (p, invisible)) in c.items.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        put(&mut sql, &p.frag.printable.to_string(), p.node);
        if *invisible {
            sql.push_str(" INVISIBLE");
        }
    }
    sql.push_str(" FROM ");
    put(&mut sql, &ident(&c.from.0), &c.from.1);
    for (j, node) in &c.joins {
        let mut text = format!(" {} JOIN {}", j.keyword, ident(&j.name));
        if let Some(on) = &j.on {
            text.push_str(&format!(" ON {}", on.printable));
        }
        put(&mut sql, &text, node);
    }
    let list = |sql: &mut String,
                put: &mut dyn FnMut(&mut String, &str, &str),
                kw: &str,
                ps: &[Piece<Expr>],
                sep: &str,
                wrap: bool| {
        for (i, p) in ps.iter().enumerate() {
            sql.push_str(if i == 0 { kw } else { sep });
            let text = p.frag.printable.to_string();
            if wrap {
                put(sql, &format!("({text})"), p.node);
            } else {
                put(sql, &text, p.node);
            }
        }
    };
    list(
        &mut sql,
        &mut put,
        " WHERE ",
        &c.wheres,
        " AND ",
        c.wheres.len() > 1,
    );
    list(&mut sql, &mut put, " GROUP BY ", &c.group, ", ", false);
    list(
        &mut sql,
        &mut put,
        " HAVING ",
        &c.havings,
        " AND ",
        c.havings.len() > 1,
    );
    for (i, (p, desc)) in c.order.iter().enumerate() {
        sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
        put(&mut sql, &p.frag.printable.to_string(), p.node);
        if *desc {
            sql.push_str(" DESC");
        }
    }
    (sql, pieces)
}

/// `a AND b AND c` as the parser builds it from `(a) AND (b) AND (c)`.
fn conjunction(ps: &[Piece<Expr>]) -> Option<Expr> {
    if let [one] = ps {
        return Some(one.frag.ast.clone());
    }
    let nested = |p: &Piece<Expr>| Expr::Nested(Box::new(p.frag.ast.clone()));
    let mut it = ps.iter();
    let first = nested(it.next()?);
    Some(it.fold(first, |acc, p| Expr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(nested(p)),
    }))
}

/// Reads `sql` back as a rule and checks each clause is the tree it was printed from, and that
/// nothing else is in the query. On a mismatch, names the node (or the graph, "").
fn verify<'c>(sql: &str, c: &'c Clauses<'_>) -> Result<(), &'c str> {
    let first_node = |ps: &'c [Piece<'_, Expr>]| ps.first().map_or("", |p| p.node);
    let (masked, whens) = crate::bind::extract_over_whens(sql).map_err(|_| "")?;
    if !whens.is_empty() {
        return Err("");
    }
    let (mut query, invisible) = crate::bind::parse_query(&masked).map_err(|_| "")?;
    let (mut base, _) = crate::bind::parse_query("SELECT * FROM t").expect("parses");
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err("");
    };
    let SetExpr::Select(base_select) = base.body.as_mut() else {
        unreachable!("a SELECT");
    };
    // SELECT fields.
    let want: Vec<usize> = (0..c.items.len()).filter(|&i| c.items[i].1).collect();
    if invisible != want || select.projection.len() != c.items.len() {
        return Err("");
    }
    for (got, (p, _)) in select.projection.iter().zip(&c.items) {
        if *got != p.frag.ast {
            return Err(p.node);
        }
    }
    // FROM and JOINs.
    let [twj] = select.from.as_slice() else {
        return Err("");
    };
    if !table_named(&twj.relation, &c.from.0) {
        return Err(c.from.1.as_str());
    }
    if twj.joins.len() != c.joins.len() {
        return Err(c.joins.first().map_or("", |j| j.1));
    }
    for (got, (j, node)) in twj.joins.iter().zip(&c.joins) {
        let (cons, kw) = match &got.join_operator {
            JoinOperator::Inner(x) => (x, "INNER"),
            JoinOperator::Left(x) => (x, "LEFT"),
            JoinOperator::Right(x) => (x, "RIGHT"),
            JoinOperator::FullOuter(x) => (x, "FULL"),
            JoinOperator::CrossJoin(x) => (x, "CROSS"),
            _ => return Err(node),
        };
        let on_ok = match (cons, &j.on) {
            (JoinConstraint::On(e), Some(on)) => *e == on.ast,
            (JoinConstraint::None, None) => true,
            _ => false,
        };
        if kw != j.keyword || !table_named(&got.relation, &j.name) || !on_ok || got.global {
            return Err(node);
        }
    }
    // WHERE, GROUP BY, HAVING.
    if select.selection != conjunction(&c.wheres) {
        return Err(first_node(&c.wheres));
    }
    if select.having != conjunction(&c.havings) {
        return Err(first_node(&c.havings));
    }
    match &select.group_by {
        GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => {
            if exprs.len() != c.group.len() {
                return Err(first_node(&c.group));
            }
            if let Some((_, p)) = exprs.iter().zip(&c.group).find(|(e, p)| **e != p.frag.ast) {
                return Err(p.node);
            }
        }
        _ => return Err(first_node(&c.group)),
    }
    // ORDER BY.
    let order = query.order_by.take();
    match &order {
        None if c.order.is_empty() => {}
        Some(ob) if ob.interpolate.is_none() => {
            let OrderByKind::Expressions(list) = &ob.kind else {
                return Err("");
            };
            if list.len() != c.order.len() {
                return Err(c.order.first().map_or("", |o| o.0.node));
            }
            for (got, (p, desc)) in list.iter().zip(&c.order) {
                let got_desc = match got.options.sort {
                    None | Some(OrderBySort::Asc) => false,
                    Some(OrderBySort::Desc) => true,
                    _ => return Err(p.node),
                };
                if got.expr != p.frag.ast
                    || got_desc != *desc
                    || got.options.nulls_first.is_some()
                    || got.with_fill.is_some()
                {
                    return Err(p.node);
                }
            }
        }
        _ => return Err(""),
    }
    // Nothing else: with the checked clauses replaced by a plain query's, the two are equal.
    select.projection = base_select.projection.clone();
    select.from = base_select.from.clone();
    select.selection = None;
    select.having = None;
    select.group_by = base_select.group_by.clone();
    if query != base {
        return Err("");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{RuleGraph, shape};

    /// The read-back check refuses any text that is not exactly the printed clauses.
    #[test]
    fn text_with_anything_more_or_different_is_refused() {
        let catalog: std::collections::HashMap<String, crate::StreamDef> = [crate::parse_create(
            r#"CREATE STREAM demo (a BIGINT) WITH (DATASOURCE="demo", TYPE="memory")"#,
        )
        .unwrap()]
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect();
        let graph: RuleGraph = serde_json::from_value(serde_json::json!({
            "nodes": {
                "demo": {"type": "source", "nodeType": "memory", "props": {"sourceName": "demo"}},
                "f": {"type": "operator", "nodeType": "filter", "props": {"expr": "a > 1"}},
                "out": {"type": "sink", "nodeType": "log", "props": {}},
            },
            "topo": {"sources": ["demo"], "edges": {"demo": ["f"], "f": ["out"]}}
        }))
        .unwrap();
        let plan = shape::plan(&graph, &catalog).unwrap();
        let q = build(&plan).unwrap();
        assert_eq!(q.sql, "SELECT * FROM demo WHERE a > 1");
        let star = fragment::select_item("*").unwrap();
        let Op::Filter(cond) = &plan.chain[0].1 else {
            unreachable!()
        };
        let c = Clauses {
            items: vec![(
                Piece {
                    frag: &star,
                    node: "",
                },
                false,
            )],
            from: ("demo".into(), "demo".into()),
            wheres: vec![Piece {
                frag: cond,
                node: "f",
            }],
            ..Clauses::default()
        };
        assert_eq!(verify(&q.sql, &c), Ok(()));
        assert_eq!(verify("SELECT * FROM demo WHERE a > 2", &c), Err("f"));
        assert_eq!(
            verify("SELECT * FROM demo WHERE a > 1 LIMIT 1", &c),
            Err("")
        );
        assert_eq!(
            verify("SELECT * FROM demo WHERE a > 1 ORDER BY a", &c),
            Err("")
        );
        assert_eq!(
            verify("SELECT * FROM demo AS d WHERE a > 1", &c),
            Err("demo")
        );
    }
}
