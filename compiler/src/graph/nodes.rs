//! Operator nodes: each node type's props (eKuiper's `internal/topo/graph/node.go`) checked and
//! turned into the clause pieces it stands for. Unknown props are refused, never ignored.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sqlparser::ast::{Expr, Ident, SelectItem};

use super::GraphError;
use super::fragment::{self, Fragment};

/// What one operator node does.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// `function`: a scalar call added to each row as a named field.
    Function(Fragment<SelectItem>),
    /// `aggfunc`: an aggregate call over a window or group, as a named field.
    AggFunc(Fragment<SelectItem>),
    /// `filter`: a condition.
    Filter(Fragment<Expr>),
    /// `pick`: the output fields.
    Pick(Vec<Fragment<SelectItem>>),
    /// `window`: the window function for GROUP BY.
    Window(WindowKind, Fragment<Expr>),
    /// `join`: FROM `from` JOIN ...
    Join(String, Vec<JoinSpec>),
    /// `groupby`: the grouping keys.
    GroupBy(Vec<Fragment<Expr>>),
    /// `orderby`: sort keys, `true` for descending.
    OrderBy(Vec<(Fragment<Expr>, bool)>),
}

impl Op {
    /// The node type, as eKuiper names it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Op::Function(_) => "function",
            Op::AggFunc(_) => "aggfunc",
            Op::Filter(_) => "filter",
            Op::Pick(_) => "pick",
            Op::Window(..) => "window",
            Op::Join(..) => "join",
            Op::GroupBy(_) => "groupby",
            Op::OrderBy(_) => "orderby",
        }
    }
}

/// The window types of eKuiper's `window` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WindowKind {
    Tumbling,
    Hopping,
    Sliding,
    Session,
    Count,
}

/// One join of a `join` node.
#[derive(Debug, Clone)]
pub(super) struct JoinSpec {
    /// `INNER`, `LEFT`, `RIGHT`, `FULL` or `CROSS`.
    pub keyword: &'static str,
    /// The joined stream or table.
    pub name: String,
    /// The condition (none for CROSS).
    pub on: Option<Fragment<Expr>>,
}

/// Parses operator node `node` of type `node_type`. Node types Quiver cannot run are refused
/// with the reason.
pub(super) fn operator(
    node: &str,
    node_type: &str,
    props: &Map<String, Value>,
) -> Result<Op, GraphError> {
    let err = |m: String| GraphError::at(node, m);
    match node_type.to_ascii_lowercase().as_str() {
        "function" => Ok(Op::Function(call(
            node,
            &typed::<ExprProps>(node, props)?.expr,
        )?)),
        "aggfunc" => Ok(Op::AggFunc(call(
            node,
            &typed::<ExprProps>(node, props)?.expr,
        )?)),
        "filter" => {
            let p: ExprProps = typed(node, props)?;
            Ok(Op::Filter(
                fragment::expr(&p.expr).map_err(|e| err(format!("expr: {e}")))?,
            ))
        }
        "pick" => {
            let p: PickProps = typed(node, props)?;
            Ok(Op::Pick(list(
                node,
                "field",
                &p.fields,
                fragment::select_item,
            )?))
        }
        "window" => window(node, typed(node, props)?),
        "join" => join(node, typed(node, props)?),
        "groupby" => {
            let p: GroupByProps = typed(node, props)?;
            Ok(Op::GroupBy(list(
                node,
                "dimension",
                &p.dimensions,
                fragment::expr,
            )?))
        }
        "orderby" => orderby(node, typed(node, props)?),
        "switch" => Err(err(
            "switch nodes route rows to several branches, which one SELECT cannot do; Quiver \
             does not run them (write one rule per branch with the case as a filter)"
                .into(),
        )),
        "script" => Err(err(
            "script nodes run JavaScript, which Quiver does not embed; use SQL functions".into(),
        )),
        "watermark" => Err(err(
            "watermark nodes are not supported; set the rule option isEventTime and the \
             stream's TIMESTAMP instead"
                .into(),
        )),
        _ => Err(err(format!(
            "unknown operator type \"{node_type}\"; the operator types are {}",
            super::operators::names()
        ))),
    }
}

/// A non-empty list of texts, each parsed alone; errors say which `what` (field, dimension).
fn list<T>(
    node: &str,
    what: &str,
    texts: &[String],
    parse: fn(&str) -> Result<Fragment<T>, String>,
) -> Result<Vec<Fragment<T>>, GraphError> {
    if texts.is_empty() {
        return Err(GraphError::at(node, format!("needs at least one {what}")));
    }
    texts
        .iter()
        .map(|t| parse(t).map_err(|e| GraphError::at(node, format!("{what} \"{t}\": {e}"))))
        .collect()
}

/// Props with only `expr`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprProps {
    expr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PickProps {
    fields: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupByProps {
    dimensions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowProps {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    unit: Option<String>,
    size: u64,
    #[serde(default)]
    interval: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinProps {
    from: String,
    joins: Vec<JoinProp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinProp {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    on: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderByProps {
    sorts: Vec<SortProp>,
}

/// eKuiper's code reads `desc` (a bool); its docs write `order` ("asc" or "desc"): both work.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SortProp {
    field: String,
    #[serde(default)]
    desc: Option<bool>,
    #[serde(default)]
    order: Option<String>,
}

fn typed<T: DeserializeOwned>(node: &str, props: &Map<String, Value>) -> Result<T, GraphError> {
    serde_json::from_value(Value::Object(props.clone()))
        .map_err(|e| GraphError::at(node, format!("invalid props: {e}")))
}

/// A `function`/`aggfunc` expression: one call, named by its alias or else by the function
/// name (as eKuiper's `parseFunc` names it), so a later pick can refer to it.
fn call(node: &str, text: &str) -> Result<Fragment<SelectItem>, GraphError> {
    let f = fragment::select_item(text).map_err(|e| GraphError::at(node, format!("expr: {e}")))?;
    let named = |item: SelectItem| -> Option<SelectItem> {
        match item {
            SelectItem::ExprWithAlias {
                expr: expr @ Expr::Function(_),
                alias,
            } => Some(SelectItem::ExprWithAlias { expr, alias }),
            SelectItem::UnnamedExpr(Expr::Function(f)) => {
                let alias = Ident::new(f.name.to_string().to_lowercase());
                Some(SelectItem::ExprWithAlias {
                    expr: Expr::Function(f),
                    alias,
                })
            }
            _ => None,
        }
    };
    match (named(f.ast), named(f.printable)) {
        (Some(ast), Some(printable)) => Ok(Fragment { ast, printable }),
        _ => Err(GraphError::at(
            node,
            format!("expr \"{text}\" must be a function call, e.g. \"abs(temperature) AS t\""),
        )),
    }
}

fn window(node: &str, p: WindowProps) -> Result<Op, GraphError> {
    let err = |m: String| GraphError::at(node, m);
    if p.size == 0 {
        return Err(err("window size must be above 0".into()));
    }
    let kind = match p.kind.to_ascii_lowercase().as_str() {
        "tumblingwindow" => WindowKind::Tumbling,
        "hoppingwindow" => WindowKind::Hopping,
        "slidingwindow" => WindowKind::Sliding,
        "sessionwindow" => WindowKind::Session,
        "countwindow" => WindowKind::Count,
        other => {
            return Err(err(format!(
                "unknown window type \"{other}\"; the types are tumblingwindow, hoppingwindow, \
                 slidingwindow, sessionwindow and countwindow"
            )));
        }
    };
    let (size, interval) = (p.size, p.interval);
    let unit = match (kind, p.unit.as_deref()) {
        (WindowKind::Count, None | Some("")) => String::new(),
        (WindowKind::Count, Some(u)) => {
            return Err(err(format!(
                "unit \"{u}\" does not apply to a countwindow (it counts rows)"
            )));
        }
        (_, Some(u))
            if ["dd", "hh", "mi", "ss", "ms"].contains(&u.to_ascii_lowercase().as_str()) =>
        {
            u.to_ascii_lowercase()
        }
        (_, u) => {
            return Err(err(format!(
                "unit {} is not a time unit; use dd, hh, mi, ss or ms",
                u.map_or("(missing)".to_string(), |u| format!("\"{u}\""))
            )));
        }
    };
    // The same checks as eKuiper's `parseWindow` (`planner_graph.go`).
    let text = match kind {
        WindowKind::Tumbling | WindowKind::Sliding => {
            if interval != 0 && interval != size {
                return Err(err(format!(
                    "a {} has no interval other than its size",
                    p.kind
                )));
            }
            let f = if kind == WindowKind::Tumbling {
                "TUMBLINGWINDOW"
            } else {
                "SLIDINGWINDOW"
            };
            format!("{f}({unit}, {size})")
        }
        WindowKind::Hopping => {
            if interval == 0 || interval > size {
                return Err(err(
                    "a hoppingwindow needs an interval above 0 and at most its size".into(),
                ));
            }
            format!("HOPPINGWINDOW({unit}, {size}, {interval})")
        }
        WindowKind::Session => {
            if interval == 0 {
                return Err(err(
                    "a sessionwindow needs an interval (its timeout) above 0".into(),
                ));
            }
            format!("SESSIONWINDOW({unit}, {size}, {interval})")
        }
        WindowKind::Count => {
            if interval > size {
                return Err(err(
                    "a countwindow's interval must be at most its size".into()
                ));
            }
            if interval == 0 || interval == size {
                format!("COUNTWINDOW({size})")
            } else {
                format!("COUNTWINDOW({size}, {interval})")
            }
        }
    };
    let call = fragment::expr(&text).map_err(err)?;
    Ok(Op::Window(kind, call))
}

fn join(node: &str, p: JoinProps) -> Result<Op, GraphError> {
    let err = |m: String| GraphError::at(node, m);
    if p.joins.is_empty() {
        return Err(err("join needs at least one entry in joins".into()));
    }
    let mut joins = Vec::new();
    for j in p.joins {
        let keyword = match j.kind.to_ascii_lowercase().as_str() {
            "inner" => "INNER",
            "left" => "LEFT",
            "right" => "RIGHT",
            "full" => "FULL",
            "cross" => "CROSS",
            other => {
                return Err(err(format!(
                    "join \"{}\": unknown join type \"{other}\"; use inner, left, right, full or cross",
                    j.name
                )));
            }
        };
        let on = match (keyword, j.on.as_deref()) {
            ("CROSS", None | Some("")) => None,
            ("CROSS", Some(_)) => {
                return Err(err(format!(
                    "join \"{}\": a cross join takes no on condition",
                    j.name
                )));
            }
            (_, None | Some("")) => {
                return Err(err(format!(
                    "join \"{}\": on is required for a {} join",
                    j.name, j.kind
                )));
            }
            (_, Some(on)) => {
                Some(fragment::expr(on).map_err(|e| err(format!("join \"{}\": on: {e}", j.name)))?)
            }
        };
        joins.push(JoinSpec {
            keyword,
            name: j.name,
            on,
        });
    }
    Ok(Op::Join(p.from, joins))
}

fn orderby(node: &str, p: OrderByProps) -> Result<Op, GraphError> {
    let err = |m: String| GraphError::at(node, m);
    if p.sorts.is_empty() {
        return Err(err("orderby needs at least one entry in sorts".into()));
    }
    let mut keys = Vec::new();
    for s in p.sorts {
        let by_order = match s.order.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("asc") => Some(false),
            Some("desc") => Some(true),
            Some(other) => {
                return Err(err(format!(
                    "sort \"{}\": order \"{other}\" is not asc or desc",
                    s.field
                )));
            }
        };
        let desc = match (s.desc, by_order) {
            (Some(a), Some(b)) if a != b => {
                return Err(err(format!(
                    "sort \"{}\": desc and order disagree",
                    s.field
                )));
            }
            (a, b) => a.or(b).unwrap_or(false),
        };
        let key =
            fragment::expr(&s.field).map_err(|e| err(format!("sort \"{}\": {e}", s.field)))?;
        keys.push((key, desc));
    }
    Ok(Op::OrderBy(keys))
}
