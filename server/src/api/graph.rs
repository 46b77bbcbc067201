//! Graph rules over REST: eKuiper's `"graph"` rule form (`pkg/def/rule.go`) becomes the SQL and
//! actions of an ordinary rule, so status, explain, metrics and sinks work as for SQL rules.
//! The translation itself is the compiler's ([`quiver_compiler::graph`]); this module gives it
//! the engine's streams, and names the node when the built query or a sink is refused.

use std::collections::HashMap;

use quiver_compiler::StreamDef;
use quiver_compiler::graph::compile_graph;
use quiver_dataflow::{Action, Engine, EngineError};
use serde_json::Value;

use super::ApiError;

/// The SELECT and the actions (one per sink node) of the rule `graph`, against the engine's
/// streams plus `extra` (those an import is about to create).
pub fn translate(
    graph: &Value,
    engine: &Engine,
    extra: &[StreamDef],
) -> Result<(String, Vec<Action>), ApiError> {
    let mut catalog: HashMap<String, StreamDef> = engine
        .stream_names()
        .into_iter()
        .chain(engine.table_names())
        .filter_map(|n| Some((n.clone(), engine.stream(&n)?)))
        .collect();
    for def in extra {
        catalog.insert(def.name.clone(), def.clone());
    }
    let bad = |e: quiver_compiler::graph::GraphError| ApiError::bad_request(e.to_string());
    let query = compile_graph(graph, &catalog).map_err(bad)?;
    match engine.compile_with(&query.sql, extra) {
        Err(EngineError::Compile(e)) => return Err(bad(query.locate(&e))),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let mut actions = Vec::new();
    for sink in query.sinks {
        let action = Action {
            sink_type: sink.sink_type,
            props: sink.props,
        };
        engine
            .validate_action(&action)
            .map_err(|e| ApiError::bad_request(format!("graph node \"{}\": {e}", sink.node)))?;
        actions.push(action);
    }
    Ok((query.sql, actions))
}
