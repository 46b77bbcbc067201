//! `/`, `/ping` and `/metrics`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use quiver_dataflow::metrics::names;

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

/// `GET /metrics`: every rule's metrics in Prometheus text format with eKuiper's names
/// (`internal/topo/node/metric/prometheus.go`): `kuiper_<type>_<metric>` for each node type
/// (`source`, `op`, `sink`) with labels `rule`, `type`, `op` (the node id: `demo`, `2_project`,
/// `mqtt_0`) and `op_instance`, plus `kuiper_rule_status` (1 running, 0 stopped, -1 stopped by
/// error, as eKuiper's dashboard reads it).
pub async fn metrics(state: State) -> impl IntoResponse {
    let mut families = Families::default();
    for id in state.engine.rule_ids() {
        let Ok(status) = state.engine.rule_status(&id) else {
            continue;
        };
        let rule = escape(&id);
        let value = match status.status.as_str() {
            "running" => 1,
            "stopped by error" => -1,
            _ => 0,
        };
        families.add(
            "kuiper_rule_status",
            "gauge",
            format!("{{rule=\"{rule}\"}} {value}"),
        );
        for (key, value) in &status.metrics {
            let Some(v) = value.as_f64() else { continue };
            let Some((node, metric, kind)) = exported(key) else {
                continue;
            };
            let Some((node_type, op)) = ["source", "op", "sink"]
                .iter()
                .find_map(|t| node.strip_prefix(t)?.strip_prefix('_').map(|op| (*t, op)))
            else {
                continue;
            };
            families.add(
                &format!("kuiper_{node_type}_{metric}"),
                kind,
                format!(
                    "{{rule=\"{rule}\",type=\"{node_type}\",op=\"{}\",op_instance=\"0\"}} {v}",
                    escape(op)
                ),
            );
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        families.render(),
    )
}

/// The metrics eKuiper exports to Prometheus and their types; the others (times and texts of
/// the last invocation and exception) stay in the JSON status only.
const EXPORTED: [(&str, &str); 6] = [
    (names::RECORDS_IN, "counter"),
    (names::RECORDS_OUT, "counter"),
    (names::MESSAGES_PROCESSED, "counter"),
    (names::EXCEPTIONS, "counter"),
    (names::PROCESS_LATENCY_US, "gauge"),
    (names::BUFFER_LENGTH, "gauge"),
];

/// Splits a status key `<node>_0_<metric>` into its node, metric and Prometheus type, for the
/// metrics eKuiper exports. Node names may themselves end in `_0` (`sink_log_0`).
fn exported(key: &str) -> Option<(&str, &'static str, &'static str)> {
    EXPORTED.iter().find_map(|(metric, kind)| {
        let node = key.strip_suffix(metric)?.strip_suffix("_0_")?;
        Some((node, *metric, *kind))
    })
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Samples grouped by metric family, as the text format requires (one `# TYPE` line, then
/// every sample of the family together).
#[derive(Default)]
struct Families(std::collections::BTreeMap<String, (&'static str, Vec<String>)>);

impl Families {
    fn add(&mut self, family: &str, kind: &'static str, sample: String) {
        self.0
            .entry(family.to_string())
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(sample);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (family, (kind, samples)) in &self.0 {
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            for s in samples {
                out.push_str(family);
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
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
