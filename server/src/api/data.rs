//! `/data/export`, `/data/import` and `/data/import/status`: eKuiper's data document, the
//! ruleset (`streams`, `tables`, `rules`) plus the sections eKuiper keeps for plugins, source,
//! sink and connection configs, services, schemas, uploads and scripts.
//!
//! Streams, tables and rules go through the ruleset import ([`super::ruleset`]). `Schema` (the
//! schema registry) and `connectionConfig` (named connections) are written before the streams
//! are checked ([`super::data_sections`]). Of the other sections Quiver has an equivalent only
//! for `nativePlugins`: an export lists the installed plugins; an import accepts the plugins
//! that are installed already and refuses the others (install them with `POST /plugins/...`
//! first). Every other section is exported empty and refused when an import fills it, naming
//! it.
//!
//! An import is checked whole before anything changes, and a failed one changes nothing: what
//! it removed is created again from a snapshot taken before. Without `?partial=1` it replaces
//! every stream, table and rule (eKuiper's reset); with it, it keeps them and replaces only
//! the ones it names.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::data_sections::{self, Kept, Undo};
use super::ruleset::{self, Ruleset};
use super::{ApiError, State};
use quiver_plugin_abi::ffi::PluginKind;

/// eKuiper's data document: section → name → JSON (or SQL) text. Serialized with every one of
/// [`SECTIONS`], empty or not, as eKuiper writes it.
pub type Configuration = BTreeMap<String, BTreeMap<String, String>>;

/// eKuiper's sections, in its order. Of these Quiver has streams, tables, rules and native
/// plugins; `sourceConfig` comes from quiverd's config file, not from an import.
pub const SECTIONS: [&str; 12] = [
    "streams",
    "tables",
    "rules",
    "nativePlugins",
    "portablePlugins",
    "sourceConfig",
    "sinkConfig",
    "connectionConfig",
    "Service",
    "Schema",
    "uploads",
    "scripts",
];

/// The sections an import may fill.
const SUPPORTED: [&str; 6] = [
    "streams",
    "tables",
    "rules",
    "nativePlugins",
    "Schema",
    "connectionConfig",
];

/// A document with every section, all empty.
fn empty() -> Configuration {
    SECTIONS
        .iter()
        .map(|s| (s.to_string(), BTreeMap::new()))
        .collect()
}

/// The errors of the last import, by section and item (eKuiper's import status); all empty
/// after an import that succeeded, or before any.
pub type ImportStatus = Mutex<Configuration>;

/// Query of `POST /data/import`.
#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    /// `1`: keep what exists and replace only what the document names.
    partial: Option<String>,
    /// `1`: eKuiper exits after the import so plugins load on restart; refused (see [`import`]).
    stop: Option<String>,
}

/// `GET /data/export`: everything, as a file to download.
pub async fn export(state: State) -> Result<Response, ApiError> {
    download(&export_all(&state, None)?)
}

/// `POST /data/export` with `["rule1", ...]`: those rules and the streams and tables they read.
pub async fn export_rules(state: State, raw: String) -> Result<Response, ApiError> {
    let ids: Vec<String> = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected a list of rule ids"
        ))
    })?;
    let mut used: std::collections::BTreeSet<String> = Default::default();
    for id in &ids {
        let sources = state
            .engine
            .rule_sources(id)
            .ok_or_else(|| super::rules::not_found(id))?;
        used.extend(sources);
    }
    let mut all = export_all(&state, Some(&Kept::new(&ids, &used)))?;
    for (section, keep) in all.iter_mut() {
        match section.as_str() {
            "rules" => keep.retain(|id, _| ids.contains(id)),
            "streams" | "tables" => keep.retain(|name, _| used.contains(name)),
            _ => {}
        }
    }
    download(&all)
}

fn download(conf: &Configuration) -> Result<Response, ApiError> {
    let body = serde_json::to_string(conf).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ekuiper_export.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The whole document: rules say `triggered` as they run now, so an import runs the same.
/// `keep` limits the schemas and connections to those the kept streams and rules use.
fn export_all(state: &State, keep: Option<&Kept>) -> Result<Configuration, ApiError> {
    let set = ruleset::snapshot(state)?;
    let running: BTreeMap<String, bool> = state
        .catalog
        .rules()?
        .into_iter()
        .map(|r| (r.id, r.running))
        .collect();
    let rules = set
        .rules
        .into_iter()
        .map(|(id, json)| {
            let json = match serde_json::from_str::<Value>(&json) {
                Ok(Value::Object(mut map)) => {
                    map.insert(
                        "triggered".into(),
                        Value::Bool(running.get(&id).copied().unwrap_or(false)),
                    );
                    Value::Object(map).to_string()
                }
                _ => json,
            };
            (id, json)
        })
        .collect();
    let mut native_plugins = BTreeMap::new();
    for (kind, word) in [
        (PluginKind::Source, "sources"),
        (PluginKind::Sink, "sinks"),
        (PluginKind::Function, "functions"),
    ] {
        for name in state.plugins.list(kind) {
            if let Some(p) = state.plugins.get(kind, &name) {
                let desc = serde_json::json!({"name": p.name, "version": p.version});
                native_plugins.insert(format!("{word}_{name}"), desc.to_string());
            }
        }
    }
    let mut all = empty();
    all.insert("streams".into(), set.streams);
    all.insert("tables".into(), set.tables);
    all.insert("rules".into(), rules);
    all.insert("nativePlugins".into(), native_plugins);
    all.insert("Schema".into(), data_sections::export_schemas(state, keep)?);
    all.insert(
        "connectionConfig".into(),
        data_sections::export_connections(state, keep)?,
    );
    Ok(all)
}

/// `GET /data/import/status`: the errors of the last import.
pub async fn import_status(state: State) -> Json<Configuration> {
    let failed = state
        .import_status
        .lock()
        .expect("import status lock")
        .clone();
    let mut all = empty();
    all.extend(failed);
    Json(all)
}

/// A `0`/`1` query flag.
fn flag(v: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match v {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "query parameter {name} must be 0 or 1, got \"{other}\""
        ))),
    }
}

/// `POST /data/import[?partial=1]` with `{"content": "<document>"}` or `{"file": "<URL>"}`.
pub async fn import(
    state: State,
    Query(q): Query<ImportQuery>,
    raw: String,
) -> Result<Json<Value>, ApiError> {
    let partial = flag(q.partial.as_deref(), "partial")?;
    if flag(q.stop.as_deref(), "stop")? {
        return Err(ApiError::bad_request(
            "stop=1 is not supported: Quiver loads plugins without a restart, so import without it",
        ));
    }
    let body: ruleset::ImportBody = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"content\": \"<data JSON>\"}} or {{\"file\": \"<URL>\"}}"
        ))
    })?;
    let content = match (body.content, body.file) {
        (Some(c), None) if !c.is_empty() => c,
        (None, Some(url)) if !url.is_empty() => {
            let bytes = state
                .plugins
                .fetch_url(&url)
                .await
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            String::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request(format!("{url} is not UTF-8 text")))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "the body needs \"content\" or \"file\", one of them",
            ));
        }
    };
    let result = match read_document(&state, &content).await {
        Ok((conf, sections)) => import_document(&state, conf, sections, partial),
        Err(e) => Err(e),
    };
    let mut status = state.import_status.lock().expect("import status lock");
    match result {
        Ok(()) => {
            status.clear();
            Ok(Json(
                serde_json::json!({ "ErrorMsg": "", "ConfigResponse": empty() }),
            ))
        }
        Err((section, item, e)) => {
            status.clear();
            if !section.is_empty() {
                status.insert(section.into(), [(item, e.message.clone())].into());
            }
            Err(e)
        }
    }
}

/// A failed import: the section and item it failed on (empty when the document itself is
/// wrong), and the error.
type Failure = (&'static str, String, ApiError);

fn whole(e: ApiError) -> Failure {
    ("", String::new(), e)
}

/// Parses the document and checks its sections; reads its schemas and connections (fetching
/// the schema files their URLs name).
async fn read_document(
    state: &State,
    content: &str,
) -> Result<(Configuration, data_sections::Sections), Failure> {
    let mut conf: Configuration = serde_json::from_str(content).map_err(|e| {
        whole(ApiError::bad_request(format!(
            "invalid data document: {e}; expected {{\"streams\": {{}}, \"tables\": {{}}, \"rules\": {{}}, ...}}"
        )))
    })?;
    for (name, map) in &conf {
        if !SECTIONS.contains(&name.as_str()) {
            return Err(whole(ApiError::bad_request(format!(
                "unknown section \"{name}\"; eKuiper's are {}",
                SECTIONS.join(", ")
            ))));
        }
        if !map.is_empty() && !SUPPORTED.contains(&name.as_str()) {
            return Err(whole(ApiError::bad_request(format!(
                "\"{name}\" is not supported by Quiver and must be empty; it names {}",
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ))));
        }
    }
    let schemas = conf.remove("Schema").unwrap_or_default();
    let conns = conf.remove("connectionConfig").unwrap_or_default();
    let sections = data_sections::read(state, &schemas, &conns).await?;
    Ok((conf, sections))
}

/// Writes the schemas and connections, checks the ruleset, then replaces what it replaces;
/// on a failure restores the snapshot and puts the schemas and connections back.
fn import_document(
    state: &State,
    conf: Configuration,
    sections: data_sections::Sections,
    partial: bool,
) -> Result<(), Failure> {
    let mut undo = Undo::default();
    let result = import_ruleset(state, conf, sections, partial, &mut undo);
    if result.is_err() {
        undo.run(state);
    }
    result
}

/// The import once the document is read: schemas and connections first, so the streams and
/// rules that name them check.
fn import_ruleset(
    state: &State,
    mut conf: Configuration,
    mut sections: data_sections::Sections,
    partial: bool,
    undo: &mut Undo,
) -> Result<(), Failure> {
    let mut take = |name: &str| conf.remove(name).unwrap_or_default();
    check_plugins(state, &take("nativePlugins"))?;
    let set = Ruleset {
        streams: take("streams"),
        tables: take("tables"),
        rules: take("rules"),
    };
    let total = set.streams.len() + set.tables.len() + set.rules.len();
    if total > ruleset::MAX_IMPORT_ITEMS {
        return Err(whole(ApiError::bad_request(format!(
            "the document has {total} items, above the limit of {}",
            ruleset::MAX_IMPORT_ITEMS
        ))));
    }
    sections.apply_schemas(state, undo)?;
    sections.apply_connections(state, undo, true)?;
    let items = ruleset::check(state, &set, true).map_err(|e| locate(&set, e))?;
    let before = ruleset::snapshot(state).map_err(whole)?;
    // What goes: everything, or (partial) what the document replaces. Rules first, so their
    // streams can go.
    let (rules, streams): (Vec<String>, Vec<String>) = if partial {
        (
            before
                .rules
                .keys()
                .filter(|id| set.rules.contains_key(*id))
                .cloned()
                .collect(),
            before
                .streams
                .keys()
                .chain(before.tables.keys())
                .filter(|n| set.streams.contains_key(*n) || set.tables.contains_key(*n))
                .cloned()
                .collect(),
        )
    } else {
        (
            before.rules.keys().cloned().collect(),
            before
                .streams
                .keys()
                .chain(before.tables.keys())
                .cloned()
                .collect(),
        )
    };
    let running: Vec<String> = state
        .catalog
        .rules()
        .map_err(|e| whole(e.into()))?
        .into_iter()
        .filter(|r| r.running)
        .map(|r| r.id)
        .collect();
    let outcome = ruleset::remove(state, &rules, &streams)
        .map_err(|e| locate(&set, e))
        .and_then(|()| sections.apply_connections(state, undo, false))
        .and_then(|()| {
            ruleset::apply(state, items)
                .map(drop)
                .map_err(|e| locate(&set, e))
        });
    if let Err(e) = outcome {
        // Schemas and connections go back first: the restored rules restart on them.
        std::mem::take(undo).run(state);
        restore(state, &before, &running);
        return Err(e);
    }
    Ok(())
}

/// Creates again what a failed import removed: whatever of `before` is missing now.
fn restore(state: &State, before: &Ruleset, running: &[String]) {
    let _ = ruleset::remove(
        state,
        &state
            .engine
            .rule_ids()
            .into_iter()
            .filter(|id| !before.rules.contains_key(id))
            .collect::<Vec<_>>(),
        &state
            .engine
            .stream_names()
            .into_iter()
            .chain(state.engine.table_names())
            .filter(|n| !before.streams.contains_key(n) && !before.tables.contains_key(n))
            .collect::<Vec<_>>(),
    );
    match ruleset::check(state, before, false) {
        Ok(items) => {
            if let Err(e) = ruleset::apply(state, items) {
                tracing::error!("restoring after a failed import: {}", e.message);
            }
        }
        Err(e) => tracing::error!("restoring after a failed import: {}", e.message),
    }
    // Each rule runs again or stays stopped as before, whatever its JSON's `triggered` says.
    for id in before.rules.keys() {
        let run = running.contains(id);
        let _ = if run {
            state.engine.start_rule(id)
        } else {
            state.engine.stop_rule(id)
        };
        let _ = state.catalog.set_running(id, run);
    }
}

/// The section and item an error of the ruleset import names (`rule "r1": ...`).
fn locate(set: &Ruleset, e: ApiError) -> Failure {
    for (section, noun, map) in [
        ("rules", "rule", &set.rules),
        ("streams", "stream", &set.streams),
        ("tables", "table", &set.tables),
        ("tables", "stream", &set.tables),
    ] {
        for name in map.keys() {
            if e.message.starts_with(&format!("{noun} \"{name}\"")) {
                return (section, name.clone(), e);
            }
        }
    }
    whole(e)
}

/// `nativePlugins` entries (`sinks_mysql`) name plugins that are installed.
fn check_plugins(state: &State, plugins: &BTreeMap<String, String>) -> Result<(), Failure> {
    for key in plugins.keys() {
        let fail = |m: String| ("nativePlugins", key.clone(), ApiError::bad_request(m));
        let (word, name) = key.split_once('_').ok_or_else(|| {
            fail(format!(
                "nativePlugins \"{key}\": expected <sources|sinks|functions>_<name>"
            ))
        })?;
        let kind = crate::plugins::kind_of(word).ok_or_else(|| {
            fail(format!(
                "nativePlugins \"{key}\": unknown plugin kind \"{word}\""
            ))
        })?;
        if state.plugins.get(kind, name).is_none() {
            return Err(fail(format!(
                "nativePlugins \"{key}\": plugin \"{name}\" is not installed; install it with POST /plugins/{word} first"
            )));
        }
    }
    Ok(())
}
