//! `GET /metadata/operators`: the operator node types a graph rule may use, in the shape of
//! eKuiper's operator metadata (`about`, `properties`, `node`) for graph editors, rendered from
//! the table the graph-rule parser accepts (`quiver_compiler::graph::operators`).

use axum::Json;
use quiver_compiler::graph::operators::{OPERATORS, OperatorSpec};
use serde_json::{Value, json};

/// One operator's metadata.
fn render(spec: &OperatorSpec) -> Value {
    let properties: Vec<Value> = spec
        .props
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "default": serde_json::from_str::<Value>(p.example).unwrap_or(Value::Null),
                "optional": p.optional,
                "control": if p.kind.starts_with("list") { "list" } else { "text" },
                "type": p.kind,
                "hint": {"en_US": p.hint},
                "label": {"en_US": p.name},
            })
        })
        .collect();
    json!({
        "name": spec.name,
        "about": {
            "trial": false,
            "author": {"name": "Quiver", "email": "", "company": "", "website": ""},
            "helpUrl": {"en_US": "https://ekuiper.org/docs/en/latest/guide/rules/graph_rule.html"},
            "description": {"en_US": spec.description},
        },
        "properties": properties,
        "node": {
            "display": true,
            "category": "op",
            "input": {"type": "any", "rowType": "any", "collectionType": "any"},
            "output": {"type": "same", "strategy": "keep"},
            "label": {"en": spec.name},
        },
    })
}

/// `GET /metadata/operators`: every operator node type with its props.
pub async fn list() -> Json<Value> {
    Json(Value::Array(OPERATORS.iter().map(render).collect()))
}
