//! eKuiper's graph rules: a rule written as a JSON DAG of source, operator and sink nodes
//! (`"graph": {"nodes": {...}, "topo": {"sources": [...], "edges": {...}}}`, eKuiper's
//! `pkg/def/rule.go` and `internal/topo/planner/planner_graph.go`) becomes the one SELECT it
//! stands for, so a graph rule runs through exactly the plans, metrics and sinks of a SQL rule.
//!
//! Stages, one file each:
//! - [`fragment`]: each expression of a node's props parsed on its own (never spliced as text);
//! - `nodes`: each operator node's props checked and turned into its clause pieces;
//! - [`operators`]: the operator node types and their props (also `GET /metadata/operators`);
//! - `shape`: the topology checked (every node known, connected, no cycle) and reduced to
//!   sources -> one chain of operators -> sinks, with eKuiper's input/output rules per node
//!   (`internal/topo/graph/io.go`);
//! - `select`: the chain as one SELECT, printed from the parsed trees and read back by the
//!   rule parser to prove the text is exactly those trees.
//!
//! Node -> SQL: a filter before grouping is WHERE, after `groupby`/`aggfunc` HAVING; `function`
//! and `aggfunc` are SELECT fields (hidden with INVISIBLE when a `pick` names the output);
//! `pick` is the SELECT list; `window` and `groupby` are GROUP BY; `orderby` is ORDER BY;
//! `join` is FROM ... JOIN. A graph that is not one SELECT is refused, naming the node.

mod fragment;
mod nodes;
pub mod operators;
mod select;
mod shape;

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bind::StreamCatalog;
use crate::error::{CompileError, Pos};

/// The `graph` of a rule: its nodes by name and how they connect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGraph {
    /// Every node by its name.
    pub nodes: BTreeMap<String, GraphNode>,
    /// The sources and edges.
    pub topo: Topo,
}

/// One node of a graph rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphNode {
    /// `source`, `operator` or `sink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The source or sink type (`mqtt`, `memory`, ...) or the operator (`filter`, ...).
    #[serde(rename = "nodeType")]
    pub node_type: String,
    /// The node's properties, different for each node type.
    #[serde(default)]
    pub props: Map<String, Value>,
    /// Where a graph editor draws the node: kept with the rule for the editor, no effect on
    /// what the rule does (eKuiper's `GraphNode.UI`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<Value>,
}

/// The edges of a graph rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topo {
    /// The names of the source nodes.
    pub sources: Vec<String>,
    /// Each node's successors; an inner array is a switch node's branch.
    #[serde(default)]
    pub edges: BTreeMap<String, Vec<Value>>,
}

/// Why a graph cannot run, naming the node where that is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct GraphError {
    /// The node at fault.
    pub node: Option<String>,
    /// What is wrong, lowercase.
    pub message: String,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "graph node \"{n}\": {}", self.message),
            None => write!(f, "graph: {}", self.message),
        }
    }
}

impl GraphError {
    /// An error of node `node`.
    pub(crate) fn at(node: &str, message: impl Into<String>) -> Self {
        GraphError {
            node: Some(node.to_string()),
            message: message.into(),
        }
    }

    /// An error of the graph as a whole.
    pub(crate) fn graph(message: impl Into<String>) -> Self {
        GraphError {
            node: None,
            message: message.into(),
        }
    }
}

/// A sink node: one action of the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSink {
    /// The node's name.
    pub node: String,
    /// The sink type (its `nodeType`).
    pub sink_type: String,
    /// Its properties.
    pub props: Value,
}

/// A graph rule as one SELECT and its sinks.
#[derive(Debug, Clone)]
pub struct GraphQuery {
    /// The SELECT, printed from the nodes' parsed expressions.
    pub sql: String,
    /// The sink nodes in the order the last node lists them.
    pub sinks: Vec<GraphSink>,
    /// Which node each byte range of `sql` came from.
    pieces: Vec<(Range<usize>, String)>,
}

impl GraphQuery {
    /// The node whose text is at `pos` of [`GraphQuery::sql`].
    pub fn node_at(&self, pos: Pos) -> Option<&str> {
        let line_start: usize = self
            .sql
            .split_inclusive('\n')
            .take((pos.line as usize).saturating_sub(1))
            .map(str::len)
            .sum();
        let offset = self.sql[line_start.min(self.sql.len())..]
            .char_indices()
            .nth((pos.column as usize).saturating_sub(1))
            .map_or(self.sql.len(), |(i, _)| line_start + i);
        self.pieces
            .iter()
            .find(|(r, _)| r.contains(&offset))
            .map(|(_, n)| n.as_str())
    }

    /// A compile error of [`GraphQuery::sql`] told about the node it comes from (positions in
    /// the generated text would mean nothing to the user).
    pub fn locate(&self, e: &CompileError) -> GraphError {
        let mut message = e.reason.clone();
        if let Some(h) = &e.hint {
            message = format!("{message}; {h}");
        }
        match e.pos.and_then(|p| self.node_at(p)) {
            Some(node) => GraphError::at(node, message),
            None => {
                // The whole text can be long (up to the SQL size limit): show its start.
                let shown: String = self.sql.chars().take(300).collect();
                let more = if shown.len() < self.sql.len() {
                    " ..."
                } else {
                    ""
                };
                GraphError::graph(format!(
                    "{message} (in the SELECT built from the graph: {shown}{more})"
                ))
            }
        }
    }
}

/// Turns a rule's `graph` into one SELECT over the streams of `catalog`, and its sinks.
pub fn compile_graph(graph: &Value, catalog: &dyn StreamCatalog) -> Result<GraphQuery, GraphError> {
    let graph: RuleGraph = serde_json::from_value(graph.clone())
        .map_err(|e| GraphError::graph(format!("invalid graph JSON: {e}")))?;
    let plan = shape::plan(&graph, catalog)?;
    select::build(&plan)
}

#[cfg(test)]
mod tests;
