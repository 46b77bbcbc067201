//! `/`, `/ping` and `/metrics`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::State;

/// `GET /`: version, os and uptime, as eKuiper answers.
pub async fn info(state: State) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "upTimeSeconds": state.started.elapsed().as_secs(),
    }))
}

/// `GET /ping`.
pub async fn ping() -> &'static str {
    ""
}

/// `GET /metrics`: every rule's metrics in Prometheus text format, eKuiper's metric names.
pub async fn metrics(state: State) -> impl IntoResponse {
    let mut out = String::new();
    for id in state.engine.rule_ids() {
        let Ok(status) = state.engine.rule_status(&id) else {
            continue;
        };
        let running = u8::from(status.status == "running");
        out.push_str(&format!(
            "kuiper_rule_status{{rule=\"{}\"}} {running}\n",
            escape(&id)
        ));
        for (key, value) in status.metrics {
            let Some(v) = value.as_f64() else { continue };
            // key = <node>_0_<metric>; node names may themselves end in `_0`.
            let Some((node, metric)) = quiver_dataflow::metrics::names::ALL.iter().find_map(|m| {
                key.strip_suffix(m)
                    .and_then(|rest| rest.strip_suffix("_0_"))
                    .map(|node| (node, *m))
            }) else {
                continue;
            };
            out.push_str(&format!(
                "kuiper_{metric}{{rule=\"{}\",op=\"{}\",instance=\"0\"}} {v}\n",
                escape(&id),
                escape(node)
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metadata/functions`: the function catalogue (the same list as docs/functions.md).
pub async fn functions() -> Json<Value> {
    let list: Vec<Value> = quiver_compiler::Registry::builtin()
        .catalogue()
        .into_iter()
        .map(|(doc, names)| {
            json!({
                "name": names[0],
                "aliases": &names[1..],
                "type": doc.category,
                "syntax": doc.syntax,
                "hint": doc.description,
                "example": doc.example,
            })
        })
        .collect();
    Json(Value::Array(list))
}
