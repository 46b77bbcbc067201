//! `/rules`: eKuiper's rule JSON, lifecycle and status.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_dataflow::{Action, Engine, RuleSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, State};
use crate::security::mask;

/// eKuiper's rule JSON: `sql` and `actions`, or a `graph` whose sink nodes are the actions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// Unique id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The SELECT.
    #[serde(default)]
    pub sql: Option<String>,
    /// `[{"log": {}}, {"mqtt": {...}}]`.
    #[serde(default)]
    pub actions: Option<Vec<Map<String, Value>>>,
    /// The rule as a DAG of nodes instead of `sql` and `actions` ([`super::graph`]).
    #[serde(default)]
    pub graph: Option<Value>,
    /// Rule options.
    #[serde(default)]
    pub options: Map<String, Value>,
    /// Start at once (default true).
    #[serde(default)]
    pub triggered: Option<bool>,
    /// eKuiper's rule tags (`/rules/{id}/tags`, `/rules/tags/match`, bulk start and stop).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// eKuiper's lexical version string (accepted, not enforced yet).
    #[serde(default)]
    #[allow(dead_code)]
    pub version: Option<Value>,
}

/// Rule options eKuiper defines; anything else is a typo we report.
const KNOWN_OPTIONS: &[&str] = &[
    "debug",
    "logFilename",
    "isEventTime",
    "lateTolerance",
    "concurrency",
    "bufferLength",
    "sendMetaToSink",
    "sendNilField",
    "sendError",
    "qos",
    "checkpointInterval",
    "restartStrategy",
    "cron",
    "duration",
    "cronDatetimeRange",
    "enableRuleTracer",
    "planOptimizeStrategy",
    "notifySub",
    "disableBufferFullDiscard",
    "enableSaveStateBeforeStop",
    "forceExitTimeout",
    "experiment",
];

/// Parses eKuiper's rule JSON into a rule and whether to start it; a graph rule is translated
/// against `engine`'s streams.
pub fn parse(raw: &str, engine: &Engine) -> Result<(RuleSpec, bool), ApiError> {
    parse_with(raw, engine, &[])
}

/// [`parse`], with a graph rule translated against the engine's streams plus `extra`: the
/// streams an import is about to create.
pub fn parse_with(
    raw: &str,
    engine: &Engine,
    extra: &[quiver_compiler::StreamDef],
) -> Result<(RuleSpec, bool), ApiError> {
    let body: RuleBody = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid rule JSON: {e}")))?;
    if body.id.trim().is_empty() {
        return Err(ApiError::bad_request("rule id is required"));
    }
    if let Some(tags) = &body.tags {
        super::tags::check_tags(tags)?;
    }
    for key in body.options.keys() {
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown rule option \"{key}\""
            )));
        }
    }
    let (sql, actions) = match (body.sql, body.graph, body.actions) {
        (Some(sql), None, Some(actions)) => (sql, sql_actions(&actions)?),
        (Some(_), None, None) => {
            return Err(ApiError::bad_request(
                "invalid rule JSON: missing field `actions`",
            ));
        }
        (None, Some(graph), None) => super::graph::translate(&graph, engine, extra)?,
        (None, Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "a graph rule's actions are its sink nodes; remove \"actions\"",
            ));
        }
        (Some(_), Some(_), _) => {
            return Err(ApiError::bad_request(
                "a rule has \"sql\" or \"graph\", not both",
            ));
        }
        (None, None, _) => return Err(ApiError::bad_request("a rule needs \"sql\" or \"graph\"")),
    };
    let spec = RuleSpec {
        name: body.name.clone().unwrap_or_else(|| body.id.clone()),
        id: body.id,
        sql,
        actions,
        options: body.options,
    };
    Ok((spec, body.triggered.unwrap_or(true)))
}

/// `[{"log": {}}, ...]` as actions.
fn sql_actions(list: &[Map<String, Value>]) -> Result<Vec<Action>, ApiError> {
    let mut actions = Vec::new();
    for a in list {
        if a.len() != 1 {
            return Err(ApiError::bad_request(
                "each action must be an object with one sink type, e.g. {\"log\": {}}",
            ));
        }
        let (sink_type, props) = a.iter().next().expect("one entry");
        actions.push(Action {
            sink_type: sink_type.clone(),
            props: props.clone(),
        });
    }
    Ok(actions)
}

/// `POST /rules`.
pub async fn create(state: State, raw: String) -> Result<(StatusCode, String), ApiError> {
    create_rule(state, &raw)
        .await
        .map_err(|e| e.scrubbed(&mask::secret_values(&raw)))
}

async fn create_rule(state: State, raw: &str) -> Result<(StatusCode, String), ApiError> {
    let (spec, start) = parse(raw, &state.engine)?;
    let id = spec.id.clone();
    state.engine.create_rule_with(spec, start)?;
    if let Err(e) = state.catalog.put_rule(&id, raw, start) {
        let _ = state.engine.delete_rule(&id);
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        format!("Rule {id} was created successfully."),
    ))
}

/// `POST /rules/validate`: compiles the rule without creating it.
pub async fn validate(state: State, raw: String) -> Result<Json<Value>, ApiError> {
    validate_rule(state, &raw)
        .await
        .map_err(|e| e.scrubbed(&mask::secret_values(&raw)))
}

async fn validate_rule(state: State, raw: &str) -> Result<Json<Value>, ApiError> {
    let (spec, _) = parse(raw, &state.engine)?;
    state.engine.compile(&spec.sql)?;
    state.engine.validate_options(&spec.options)?;
    for a in &spec.actions {
        state.engine.validate_action(a)?;
    }
    Ok(Json(json!({ "valid": true })))
}

/// `GET /rules`: `[{id, name, status, version, trace, tags}]` (eKuiper 2.x's list shape).
pub async fn list(state: State) -> Result<Json<Vec<Value>>, ApiError> {
    let tags: std::collections::HashMap<String, Vec<String>> = state
        .catalog
        .rules()?
        .into_iter()
        .map(|r| (r.id, super::tags::stored_tags(&r.json)))
        .collect();
    let rules = state
        .engine
        .rule_ids()
        .into_iter()
        .filter_map(|id| {
            let spec = state.engine.rule_spec(&id)?;
            let status = if state.engine.rule_running(&id) {
                "running"
            } else if state.engine.rule_waiting_for_schedule(&id) {
                quiver_dataflow::engine::WAITING_FOR_SCHEDULE
            } else {
                "stopped"
            };
            Some(json!({
                "id": &id,
                "name": spec.name,
                "status": status,
                "version": "",
                "trace": false,
                "tags": tags.get(&id).filter(|t| !t.is_empty()),
            }))
        })
        .collect();
    Ok(Json(rules))
}

/// 404 for an unknown rule.
pub(super) fn not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("rule \"{id}\" not found"),
    }
}

/// `GET /rules/{id}`: the rule JSON as submitted, its secrets masked (then re-serialized).
pub async fn show(state: State, Path(id): Path<String>) -> Result<Response, ApiError> {
    let json = state
        .catalog
        .rule_json(&id)?
        .ok_or_else(|| not_found(&id))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        mask::mask_json_text(&json).into_owned(),
    )
        .into_response())
}

/// `PUT /rules/{id}`: replaces the rule and restarts it. `******` where the stored rule has a
/// secret keeps that secret.
pub async fn update(state: State, Path(id): Path<String>, raw: String) -> Result<String, ApiError> {
    update_rule(state, id, &raw)
        .await
        .map_err(|e| e.scrubbed(&mask::secret_values(&raw)))
}

async fn update_rule(state: State, id: String, raw: &str) -> Result<String, ApiError> {
    // A body copied from `GET /rules/{id}` has `******` for the secrets: keep the stored ones.
    let restored = match state.catalog.rule_json(&id)? {
        Some(stored) => mask::unmask_json(raw, &stored),
        None => None,
    };
    let raw = restored.as_deref().unwrap_or(raw);
    let (spec, start) = parse(raw, &state.engine)?;
    if spec.id != id {
        return Err(ApiError::bad_request(format!(
            "the body is for rule \"{}\", not \"{id}\"",
            spec.id
        )));
    }
    let old = state.engine.rule_spec(&id).ok_or_else(|| not_found(&id))?;
    // Compile first, so a bad update leaves the running rule alone.
    state.engine.compile(&spec.sql)?;
    // The new definition's sinks that still cache take over what the old ones kept.
    state.engine.delete_rule_keeping_caches(&id)?;
    if let Err(e) = state.engine.create_rule_with(spec, start) {
        state
            .engine
            .create_rule(old)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Err(e.into());
    }
    state.catalog.put_rule(&id, raw, start)?;
    Ok(format!("Rule {id} was updated successfully."))
}

/// `DELETE /rules/{id}`.
pub async fn delete(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    state.engine.delete_rule(&id)?;
    state.catalog.delete_rule(&id)?;
    Ok(format!("Rule {id} is dropped."))
}

/// `POST /rules/{id}/start`.
pub async fn start(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    state.engine.start_rule(&id)?;
    state.catalog.set_running(&id, true)?;
    Ok(format!("Rule {id} was started"))
}

/// `POST /rules/{id}/stop`.
pub async fn stop(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    // `enableSaveStateBeforeStop`: the rule's checkpoint first (no lock is held meanwhile).
    state.engine.save_before_stop(&id).await;
    state.engine.stop_rule(&id)?;
    state.catalog.set_running(&id, false)?;
    Ok(format!("Rule {id} was stopped."))
}

/// `POST /rules/{id}/restart`.
pub async fn restart(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    state.engine.save_before_stop(&id).await;
    state.engine.restart_rule(&id)?;
    state.catalog.set_running(&id, true)?;
    Ok(format!("Rule {id} was restarted"))
}

/// `GET /rules/{id}/status`: eKuiper's flat shape.
pub async fn status(state: State, Path(id): Path<String>) -> Result<Response, ApiError> {
    let st = state.engine.rule_status(&id)?;
    Ok(Json(masked_status(st)).into_response())
}

/// A status with its message and string metrics (`last_exception`) masked.
fn masked_status(mut st: quiver_dataflow::RuleStatus) -> quiver_dataflow::RuleStatus {
    st.message = mask::mask_text(&st.message).into_owned();
    for (_, v) in &mut st.metrics {
        mask::mask_value(v);
    }
    st
}

/// `GET /rules/status/all`: every rule's status by id.
pub async fn status_all(state: State) -> Response {
    let all: Map<String, Value> = state
        .engine
        .rule_ids()
        .into_iter()
        .filter_map(|id| {
            let st = masked_status(state.engine.rule_status(&id).ok()?);
            Some((id, serde_json::to_value(st).ok()?))
        })
        .collect();
    Json(all).into_response()
}

/// `GET /rules/{id}/topo`: `{"sources": [...], "edges": {...}}`.
pub async fn topo(state: State, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let nodes = state.engine.rule_topology(&id)?;
    let sinks: Vec<&String> = nodes.iter().filter(|n| n.starts_with("sink_")).collect();
    // The FROM stream's source feeds the first operator; a joined stream's source decodes its
    // own rows and feeds the first operator after the decoder (the join's window).
    let sources: Vec<&String> = nodes.iter().filter(|n| n.starts_with("source_")).collect();
    let ops: Vec<&String> = nodes
        .iter()
        .filter(|n| !n.starts_with("sink_") && !n.starts_with("source_"))
        .collect();
    let mut edges = Map::new();
    for (i, s) in sources.iter().enumerate() {
        let first = ops
            .iter()
            .find(|o| i == 0 || !o.ends_with("_decoder"))
            .map(|o| json!([o]));
        edges.insert((*s).clone(), first.unwrap_or_else(|| json!(sinks)));
    }
    for pair in ops.windows(2) {
        edges.insert(pair[0].clone(), json!([pair[1]]));
    }
    if let Some(last) = ops.last() {
        edges.insert((*last).clone(), json!(sinks));
    }
    Ok(Json(json!({ "sources": sources, "edges": edges })))
}

/// `GET /rules/{id}/explain`: the compiled plan as text.
pub async fn explain(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    Ok(mask::mask_text(&state.engine.explain(&id)?).into_owned())
}

/// `GET /rules/{id}/schema`: the rule's output fields, `{name: {"type": ...}}` as eKuiper's
/// sink schema; known while the rule runs, as in eKuiper. A field whose type depends on
/// schemaless data has type `"any"`.
pub async fn schema(
    state: State,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let fields = state.engine.rule_output_fields(&id)?;
    if !state.engine.rule_running(&id) {
        return Err(ApiError::bad_request(format!(
            "rule \"{id}\" is not running; its schema is known once it has started"
        )));
    }
    Ok(Json(
        fields
            .into_iter()
            .map(|(name, ty)| (name, json!({ "type": ty.as_deref().unwrap_or("any") })))
            .collect(),
    ))
}

/// `GET /v2/rules/{id}/status`: the same fields as `/rules/{id}/status` as one JSON object
/// with native values, its keys sorted (eKuiper encodes a map there).
pub async fn status_v2(
    state: State,
    Path(id): Path<String>,
) -> Result<Json<std::collections::BTreeMap<String, Value>>, ApiError> {
    let st = masked_status(state.engine.rule_status(&id)?);
    let Value::Object(map) =
        serde_json::to_value(st).map_err(|e| ApiError::internal(e.to_string()))?
    else {
        return Err(ApiError::internal("a rule status is not an object"));
    };
    Ok(Json(map.into_iter().collect()))
}

/// Body of `PUT /rules/{id}/reset_state`: eKuiper's `{"type": 1, "params": {"streamName",
/// "input"}}`, which moves a rewindable source of a running rule to another offset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetStateBody {
    /// 1: reset a source's offset (the only type eKuiper knows).
    #[serde(rename = "type")]
    pub kind: i64,
    /// `streamName` and the source's `input` offset.
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// `PUT /rules/{id}/reset_state`: eKuiper's offset reset of a running rule's source. No Quiver
/// source keeps an offset it could rewind to, so a well-formed request is refused naming the
/// stream; never accepted and ignored.
pub async fn reset_state(
    state: State,
    Path(id): Path<String>,
    raw: String,
) -> Result<String, ApiError> {
    let body: ResetStateBody = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"type\": 1, \"params\": {{\"streamName\": \"...\", \"input\": {{...}}}}}}"
        ))
    })?;
    if body.kind != 1 {
        return Err(ApiError::bad_request(format!(
            "unknown stateType: {}; 1 (a source offset) is the only one",
            body.kind
        )));
    }
    let stream = body
        .params
        .get("streamName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("params.streamName is required"))?;
    let sources = state
        .engine
        .rule_sources(&id)
        .ok_or_else(|| not_found(&id))?;
    if !state.engine.rule_running(&id) {
        return Err(ApiError::bad_request(format!(
            "rule \"{id}\" should be running when its state is reset"
        )));
    }
    if !sources.iter().any(|s| s == stream) {
        return Err(ApiError::bad_request(format!(
            "rule \"{id}\" reads no stream \"{stream}\""
        )));
    }
    let source_type = state
        .engine
        .stream(stream)
        .map(|d| d.options.source_type)
        .unwrap_or_default();
    Err(ApiError::bad_request(format!(
        "stream \"{stream}\": its {source_type} source keeps no offset to reset (no Quiver source is rewindable)"
    )))
}
