//! The topology of a graph rule: every node known and connected, no cycle, and the whole
//! reduced to sources -> one chain of operators -> sinks, the shape of one SELECT. Each
//! operator's input must be what eKuiper's `internal/topo/graph/io.go` allows (rows,
//! a window's rows, groups), checked along the chain as eKuiper's planner does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use super::nodes::{self, Op, WindowKind};
use super::{GraphError, GraphSink, RuleGraph};
use crate::bind::StreamCatalog;
use crate::ddl::StreamKind;

/// A source node: the stream or table it reads.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// The node's name.
    pub node: String,
    /// The stream or table (`props.sourceName`).
    pub stream: String,
    /// A table (read by a join), not a stream.
    pub table: bool,
}

/// A graph reduced to the shape of one SELECT.
#[derive(Debug)]
pub(super) struct Plan {
    /// The source nodes, in `topo.sources` order.
    pub sources: Vec<Source>,
    /// The operators from the sources to the sinks.
    pub chain: Vec<(String, Op)>,
    /// The sink nodes the last node feeds.
    pub sinks: Vec<GraphSink>,
}

/// Checks `graph` and reduces it to a [`Plan`].
pub(super) fn plan(graph: &RuleGraph, catalog: &dyn StreamCatalog) -> Result<Plan, GraphError> {
    if graph.nodes.is_empty() {
        return Err(GraphError::graph("nodes is empty"));
    }
    // Every node on its own first, so an unsupported node is named before any shape error.
    let mut sources = BTreeMap::new();
    let mut ops = BTreeMap::new();
    let mut sinks = BTreeMap::new();
    for (name, n) in &graph.nodes {
        match n.kind.as_str() {
            "source" => {
                sources.insert(name.clone(), source(name, n, catalog)?);
            }
            "operator" => {
                ops.insert(name.clone(), nodes::operator(name, &n.node_type, &n.props)?);
            }
            "sink" => {
                if n.node_type.trim().is_empty() {
                    return Err(GraphError::at(
                        name,
                        "a sink node needs nodeType, the sink type",
                    ));
                }
                sinks.insert(
                    name.clone(),
                    GraphSink {
                        node: name.clone(),
                        sink_type: n.node_type.clone(),
                        props: Value::Object(n.props.clone()),
                    },
                );
            }
            other => {
                return Err(GraphError::at(
                    name,
                    format!(
                        "unknown node type \"{other}\"; a node is a source, an operator or a sink"
                    ),
                ));
            }
        }
    }
    let edges = edges(graph, &sources, &sinks)?;
    check_sources_listed(graph, &sources)?;
    check_acyclic(graph, &edges)?;
    check_connected(graph, &edges)?;

    let preds = predecessors(&edges);
    let (chain_names, sink_names) = chain(&ops, &sources, &sinks, &edges, &preds)?;
    let mut chain = Vec::new();
    for name in chain_names {
        let op = ops.remove(&name).expect("a chain holds operators");
        chain.push((name, op));
    }
    let sources: Vec<Source> = graph
        .topo
        .sources
        .iter()
        .map(|s| sources[s].clone())
        .collect();
    check_source_edges(&sources, &chain, &edges)?;
    check_chain(&chain, &sources)?;
    Ok(Plan {
        sources,
        chain,
        sinks: sink_names.iter().map(|s| sinks[s].clone()).collect(),
    })
}

/// A source node refers to a stream or table by `sourceName` (eKuiper's `SourceMeta`).
fn source(
    name: &str,
    n: &super::GraphNode,
    catalog: &dyn StreamCatalog,
) -> Result<Source, GraphError> {
    let err = |m: String| GraphError::at(name, m);
    let mut props = n.props.clone();
    let stream = match props.remove("sourceName") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(err("props.sourceName must be a stream or table name".into())),
        None => {
            return Err(err(
                "a source node without props.sourceName defines its source inline, which Quiver \
                 does not support yet: create the stream (POST /streams) and name it in \
                 props.sourceName"
                    .into(),
            ));
        }
    };
    let want_table = match props.remove("sourceType") {
        None => false,
        Some(Value::String(s)) if s == "stream" => false,
        Some(Value::String(s)) if s == "table" => true,
        Some(other) => {
            return Err(err(format!(
                "props.sourceType {other} is neither \"stream\" nor \"table\""
            )));
        }
    };
    if let Some(k) = props.keys().next() {
        return Err(err(format!(
            "props.{k} cannot be set on a source that names \"{stream}\": the stream's definition \
             holds its source properties (only sourceName and sourceType go here)"
        )));
    }
    let Some(def) = catalog.stream(&stream) else {
        return Err(err(format!(
            "no stream or table \"{stream}\" (props.sourceName)"
        )));
    };
    let table = def.kind == StreamKind::Table;
    if table != want_table {
        return Err(err(format!(
            "\"{stream}\" is a {}, not a {} (props.sourceType)",
            if table { "table" } else { "stream" },
            if want_table { "table" } else { "stream" },
        )));
    }
    // eKuiper checks the node's type against the stream's (`planner_graph.go`, parseSource).
    if !n.node_type.eq_ignore_ascii_case(&def.options.source_type) {
        return Err(err(format!(
            "nodeType \"{}\" does not match the type \"{}\" of \"{stream}\"",
            n.node_type, def.options.source_type
        )));
    }
    Ok(Source {
        node: name.to_string(),
        stream,
        table,
    })
}

/// Each node's successors, checked: known names, no switch branches, no edge into a source or
/// out of a sink, and an edge out of every source and operator.
fn edges(
    graph: &RuleGraph,
    sources: &BTreeMap<String, Source>,
    sinks: &BTreeMap<String, GraphSink>,
) -> Result<BTreeMap<String, Vec<String>>, GraphError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (from, tos) in &graph.topo.edges {
        if !graph.nodes.contains_key(from) {
            return Err(GraphError::graph(format!(
                "topo.edges names unknown node \"{from}\""
            )));
        }
        if sinks.contains_key(from) {
            return Err(GraphError::at(from, "a sink has no outgoing edges"));
        }
        let list = out.entry(from.clone()).or_default();
        for to in tos {
            let to = match to {
                Value::String(s) => s,
                Value::Array(_) => {
                    return Err(GraphError::at(
                        from,
                        "has branch outputs (an array in topo.edges), which only a switch node \
                         has; Quiver does not run switch nodes",
                    ));
                }
                other => {
                    return Err(GraphError::at(
                        from,
                        format!("topo.edges lists {other}, not a node name"),
                    ));
                }
            };
            if !graph.nodes.contains_key(to) {
                return Err(GraphError::at(
                    from,
                    format!("has an edge to unknown node \"{to}\""),
                ));
            }
            if sources.contains_key(to) {
                return Err(GraphError::at(
                    from,
                    format!("has an edge into source node \"{to}\""),
                ));
            }
            if list.contains(to) {
                return Err(GraphError::at(
                    from,
                    format!("lists node \"{to}\" twice in topo.edges"),
                ));
            }
            list.push(to.clone());
        }
    }
    for name in graph.nodes.keys() {
        if !sinks.contains_key(name) && out.get(name).is_none_or(Vec::is_empty) {
            return Err(GraphError::at(
                name,
                "has no outgoing edge; every path must end in a sink",
            ));
        }
    }
    Ok(out)
}

fn check_sources_listed(
    graph: &RuleGraph,
    sources: &BTreeMap<String, Source>,
) -> Result<(), GraphError> {
    if graph.topo.sources.is_empty() {
        return Err(GraphError::graph("topo.sources names no source node"));
    }
    let mut seen = BTreeSet::new();
    for s in &graph.topo.sources {
        let Some(n) = graph.nodes.get(s) else {
            return Err(GraphError::graph(format!(
                "topo.sources names unknown node \"{s}\""
            )));
        };
        if !sources.contains_key(s) {
            return Err(GraphError::at(
                s,
                format!("is listed in topo.sources but is a {} node", n.kind),
            ));
        }
        if !seen.insert(s) {
            return Err(GraphError::at(s, "is listed twice in topo.sources"));
        }
    }
    for s in sources.keys() {
        if !seen.contains(s) {
            return Err(GraphError::at(
                s,
                "is a source node but not listed in topo.sources",
            ));
        }
    }
    Ok(())
}

fn check_acyclic(
    graph: &RuleGraph,
    edges: &BTreeMap<String, Vec<String>>,
) -> Result<(), GraphError> {
    let mut indegree: BTreeMap<&str, usize> = graph.nodes.keys().map(|k| (k.as_str(), 0)).collect();
    for tos in edges.values() {
        for t in tos {
            *indegree.get_mut(t.as_str()).expect("edges are checked") += 1;
        }
    }
    let mut ready: VecDeque<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut done = 0;
    while let Some(n) = ready.pop_front() {
        done += 1;
        for t in edges.get(n).into_iter().flatten() {
            let d = indegree.get_mut(t.as_str()).expect("edges are checked");
            *d -= 1;
            if *d == 0 {
                ready.push_back(t);
            }
        }
    }
    if done < graph.nodes.len() {
        let on_cycle = indegree
            .iter()
            .find(|(_, d)| **d > 0)
            .map(|(k, _)| *k)
            .unwrap_or_default();
        return Err(GraphError::at(
            on_cycle,
            "is on a cycle; a graph rule must be acyclic",
        ));
    }
    Ok(())
}

fn check_connected(
    graph: &RuleGraph,
    edges: &BTreeMap<String, Vec<String>>,
) -> Result<(), GraphError> {
    let mut seen: BTreeSet<&str> = graph.topo.sources.iter().map(String::as_str).collect();
    let mut todo: Vec<&str> = seen.iter().copied().collect();
    while let Some(n) = todo.pop() {
        for t in edges.get(n).into_iter().flatten() {
            if seen.insert(t) {
                todo.push(t);
            }
        }
    }
    match graph.nodes.keys().find(|k| !seen.contains(k.as_str())) {
        Some(n) => Err(GraphError::at(n, "is not connected to any source")),
        None => Ok(()),
    }
}

fn predecessors(edges: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut preds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (from, tos) in edges {
        for t in tos {
            preds.entry(t.clone()).or_default().push(from.clone());
        }
    }
    preds
}

/// The operators as one chain, and the sinks its last node (or the one source) feeds.
fn chain(
    ops: &BTreeMap<String, Op>,
    sources: &BTreeMap<String, Source>,
    sinks: &BTreeMap<String, GraphSink>,
    edges: &BTreeMap<String, Vec<String>>,
    preds: &BTreeMap<String, Vec<String>>,
) -> Result<(Vec<String>, Vec<String>), GraphError> {
    let op_preds = |n: &str| -> Vec<&String> {
        preds
            .get(n)
            .into_iter()
            .flatten()
            .filter(|p| ops.contains_key(*p))
            .collect()
    };
    let mut chain = Vec::new();
    let last = if ops.is_empty() {
        if sources.len() > 1 {
            return Err(GraphError::graph(
                "several sources and no operator: sources meet only in a join node",
            ));
        }
        sources
            .keys()
            .next()
            .expect("a checked graph has a source")
            .clone()
    } else {
        let starts: Vec<&String> = ops.keys().filter(|o| op_preds(o).is_empty()).collect();
        if let [a, b, ..] = starts.as_slice() {
            return Err(GraphError::at(
                b,
                format!(
                    "starts a second branch beside \"{a}\"; a graph rule runs as one SELECT, so \
                     its operators must form one chain"
                ),
            ));
        }
        let mut cur = starts[0].clone();
        loop {
            chain.push(cur.clone());
            let next: Vec<&String> = edges[&cur]
                .iter()
                .filter(|t| ops.contains_key(*t))
                .collect();
            match next.as_slice() {
                [] => break,
                [n] => {
                    if let Some(s) = edges[&cur].iter().find(|t| sinks.contains_key(*t)) {
                        return Err(GraphError::at(
                            &cur,
                            format!(
                                "feeds sink \"{s}\" and operator \"{n}\"; one SELECT has one output, \
                                 so only the last operator feeds sinks"
                            ),
                        ));
                    }
                    if let [a, b, ..] = op_preds(n).as_slice() {
                        return Err(GraphError::at(
                            n,
                            format!(
                                "has two operator inputs, \"{a}\" and \"{b}\"; branches cannot merge in one SELECT"
                            ),
                        ));
                    }
                    cur = (*n).clone();
                }
                [a, b, ..] => {
                    return Err(GraphError::at(
                        &cur,
                        format!(
                            "fans out to operators \"{a}\" and \"{b}\"; a graph rule runs as one \
                             SELECT, so only the last operator may fan out, to sinks"
                        ),
                    ));
                }
            }
        }
        cur
    };
    let out = edges[&last].clone();
    for s in &out {
        if let Some(p) = preds[s].iter().find(|p| **p != last) {
            return Err(GraphError::at(
                s,
                format!("is fed by \"{p}\" and \"{last}\"; a sink takes the rule's one output"),
            ));
        }
    }
    Ok((chain, out))
}

/// A stream feeds the first operator; a table feeds the join node.
fn check_source_edges(
    sources: &[Source],
    chain: &[(String, Op)],
    edges: &BTreeMap<String, Vec<String>>,
) -> Result<(), GraphError> {
    let Some((first, _)) = chain.first() else {
        return Ok(());
    };
    let join = chain
        .iter()
        .find(|(_, op)| matches!(op, Op::Join(..)))
        .map(|(n, _)| n);
    for s in sources {
        for t in &edges[&s.node] {
            let ok = if s.table { Some(t) == join } else { t == first };
            if !ok {
                let want = if s.table {
                    match join {
                        Some(j) => format!("a table is read by the join, so connect it to \"{j}\""),
                        None => {
                            "a table is read by a join node, and the graph has none".to_string()
                        }
                    }
                } else {
                    format!("a stream feeds the first operator, \"{first}\"")
                };
                return Err(GraphError::at(&s.node, format!("feeds \"{t}\"; {want}")));
            }
        }
    }
    Ok(())
}

/// What flows between two operators (eKuiper's `IOType`, reduced to what matters here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Single rows.
    Rows,
    /// A window's rows (a non-grouped collection).
    Window,
    /// Groups (after groupby or aggfunc).
    Groups,
}

/// Each operator gets the input eKuiper allows it, and the order of the chain is one that a
/// single SELECT evaluates the same way.
fn check_chain(chain: &[(String, Op)], sources: &[Source]) -> Result<(), GraphError> {
    let mut flow = Flow::Rows;
    let mut row_filter: Option<&str> = None;
    let mut pick: Option<&str> = None;
    let mut order: Option<&str> = None;
    for (i, (name, op)) in chain.iter().enumerate() {
        let err = |m: String| Err(GraphError::at(name, m));
        let after = |what: &str| match flow {
            Flow::Rows => format!("{what}, but it gets single rows: put a window before it"),
            Flow::Window => format!("{what}, but it gets a window's rows"),
            Flow::Groups => format!("{what}, but it gets groups (after groupby or aggfunc)"),
        };
        if let Some(p) = pick
            && !matches!(op, Op::OrderBy(_))
        {
            return err(format!(
                "comes after pick \"{p}\"; the pick is the rule's output, so only an orderby may follow it"
            ));
        }
        if let Some(o) = order
            && matches!(
                op,
                Op::Window(..) | Op::Join(..) | Op::GroupBy(_) | Op::AggFunc(_) | Op::OrderBy(_)
            )
        {
            return err(format!(
                "comes after orderby \"{o}\"; one SELECT sorts its result last, so a {} cannot follow the sort",
                op.name()
            ));
        }
        match op {
            Op::Window(kind, _) => {
                if flow != Flow::Rows {
                    return err(after("a window reads single rows"));
                }
                if let Some(f) = row_filter
                    && matches!(kind, WindowKind::Count | WindowKind::Sliding)
                {
                    return Err(GraphError::at(
                        f,
                        format!(
                            "filters rows before the {} \"{name}\", which then counts only the \
                             rows that pass; one SELECT filters a count or sliding window's \
                             rows after the window, so move the filter after the window",
                            if *kind == WindowKind::Count {
                                "countwindow"
                            } else {
                                "slidingwindow"
                            }
                        ),
                    ));
                }
                flow = Flow::Window;
            }
            Op::Join(..) => {
                if chain[..i]
                    .iter()
                    .any(|(_, op)| !matches!(op, Op::Window(..)))
                {
                    return err(
                        "a join follows its sources, or the window they feed, directly".into(),
                    );
                }
                flow = if flow == Flow::Rows {
                    Flow::Rows
                } else {
                    Flow::Window
                };
            }
            Op::GroupBy(_) => {
                if flow != Flow::Window {
                    return err(after("groupby groups a window's rows"));
                }
                flow = Flow::Groups;
            }
            Op::AggFunc(_) => {
                if flow == Flow::Rows {
                    return err(after("aggfunc aggregates a window's rows or groups"));
                }
                flow = Flow::Groups;
            }
            Op::Function(_) => {
                if flow == Flow::Groups {
                    return err(after("function works on rows; use aggfunc on groups"));
                }
            }
            Op::OrderBy(_) => {
                if flow == Flow::Rows {
                    return err(after("orderby sorts a window's rows"));
                }
                order = Some(name);
            }
            Op::Filter(_) => {
                if flow == Flow::Rows {
                    row_filter = Some(name);
                }
            }
            Op::Pick(_) => pick = Some(name),
        }
    }
    if sources.len() > 1 && !chain.iter().any(|(_, op)| matches!(op, Op::Join(..))) {
        return Err(GraphError::graph(format!(
            "sources \"{}\" and \"{}\" meet without a join node; Quiver merges sources only by a join",
            sources[0].node, sources[1].node
        )));
    }
    Ok(())
}
