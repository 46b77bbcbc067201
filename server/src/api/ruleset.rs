//! `/ruleset/export` and `/ruleset/import`: every stream, table and rule as one JSON document in
//! eKuiper's ruleset format, `{"streams": {name: sql}, "tables": {name: sql}, "rules": {id:
//! rule JSON text}}`.
//!
//! An import is checked whole before anything changes: every statement parses and names a
//! known source, every rule compiles against the existing streams plus the imported ones. On
//! the first error the answer is 400 naming the item and nothing is created. Items whose name
//! already exists are left alone and not counted, as in eKuiper. Should creating an item fail
//! after the check (a table's source refusing to start), what this import created is removed
//! again.

use std::collections::BTreeMap;

use axum::Json;
use quiver_compiler::{StreamDef, StreamKind};
use quiver_dataflow::RuleSpec;
use serde::{Deserialize, Serialize};

use super::{ApiError, State};
use crate::security::mask;

/// The most items (streams, tables and rules together) one import creates: the body limit
/// bounds the bytes, this bounds the work one request does while it holds no lock.
pub const MAX_IMPORT_ITEMS: usize = 10_000;

/// eKuiper's ruleset document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    /// Stream name → `CREATE STREAM` statement.
    #[serde(default)]
    pub streams: BTreeMap<String, String>,
    /// Table name → `CREATE TABLE` statement.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Rule id → the rule's JSON, as text.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
}

/// Body of `POST /ruleset/import` and `POST /data/import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportBody {
    /// The document, as text.
    #[serde(default)]
    pub content: Option<String>,
    /// eKuiper's file URI form: refused by the ruleset import (see [`import`]); read by the
    /// data import (`file://` inside `--plugin-file-dir`, or http(s)).
    #[serde(default)]
    pub file: Option<String>,
}

/// `POST /ruleset/export`: every stream, table and rule. Rule secrets are exported as stored:
/// the document is a backup that must import again.
pub async fn export(state: State) -> Result<Json<Ruleset>, ApiError> {
    Ok(Json(snapshot(&state)?))
}

/// Every stream, table and rule as stored.
pub(super) fn snapshot(state: &State) -> Result<Ruleset, ApiError> {
    let mut set = Ruleset::default();
    for (name, sql) in state.catalog.streams()? {
        let table = quiver_compiler::parse_create(&sql).is_ok_and(|d| d.kind == StreamKind::Table);
        let map = if table {
            &mut set.tables
        } else {
            &mut set.streams
        };
        map.insert(name, sql);
    }
    for rule in state.catalog.rules()? {
        set.rules.insert(rule.id, rule.json);
    }
    Ok(set)
}

/// A checked item waiting to be created.
pub(super) enum Item {
    Stream(Box<StreamDef>),
    Rule {
        spec: RuleSpec,
        start: bool,
        json: String,
    },
}

/// `POST /ruleset/import` with `{"content": "<ruleset JSON text>"}`.
///
/// eKuiper also takes `{"file": "<URI>"}`, which makes the server fetch a file or URL; that
/// is refused here: a REST call reading server files or arbitrary URLs needs its own guard,
/// and sending the content does the same.
pub async fn import(state: State, raw: String) -> Result<String, ApiError> {
    let body: ImportBody = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"content\": \"<ruleset JSON>\"}}"
        ))
    })?;
    let content = match (body.content, body.file) {
        (Some(c), None) => c,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "\"file\" is not supported; send the ruleset itself as \"content\"",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "the body needs \"content\" (the ruleset JSON as text), and only that",
            ));
        }
    };
    let set: Ruleset = serde_json::from_str(&content).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid ruleset: {e}; expected {{\"streams\": {{}}, \"tables\": {{}}, \"rules\": {{}}}}"
        ))
    })?;
    let total = set.streams.len() + set.tables.len() + set.rules.len();
    if total > MAX_IMPORT_ITEMS {
        return Err(ApiError::bad_request(format!(
            "the ruleset has {total} items, above the limit of {MAX_IMPORT_ITEMS}"
        )));
    }
    let items = check(&state, &set, false)?;
    let counts = apply(&state, items)?;
    Ok(format!(
        "imported {} streams, {} tables and {} rules",
        counts[0], counts[1], counts[2]
    ))
}

/// Checks every item; the ones to create, streams first. Items whose name exists are skipped,
/// unless `overwrite` (a data import, which replaces them): then they are checked and kept.
pub(super) fn check(state: &State, set: &Ruleset, overwrite: bool) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    let mut defs: Vec<StreamDef> = Vec::new();
    for (map, kind, noun) in [
        (&set.streams, StreamKind::Stream, "stream"),
        (&set.tables, StreamKind::Table, "table"),
    ] {
        for (name, sql) in map {
            let fail = |m: String| ApiError::bad_request(format!("{noun} \"{name}\": {m}"));
            let def = state
                .engine
                .check_stream(sql)
                .map_err(|e| fail(e.to_string()))?;
            if def.kind != kind {
                return Err(fail(format!("the statement does not create a {noun}")));
            }
            if &def.name != name {
                return Err(fail(format!("the statement creates \"{}\"", def.name)));
            }
            if defs.iter().any(|d| &d.name == name) {
                return Err(fail("is both a stream and a table in the ruleset".into()));
            }
            if overwrite || state.engine.stream(name).is_none() {
                defs.push(def.clone());
                items.push(Item::Stream(Box::new(def)));
            }
        }
    }
    for (id, json) in &set.rules {
        let secrets = mask::secret_values(json);
        let fail =
            |m: String| ApiError::bad_request(format!("rule \"{id}\": {m}")).scrubbed(&secrets);
        let (spec, start) =
            super::rules::parse_with(json, &state.engine, &defs).map_err(|e| fail(e.message))?;
        if &spec.id != id {
            return Err(fail(format!("its JSON has id \"{}\"", spec.id)));
        }
        if !overwrite && state.engine.rule_spec(id).is_some() {
            continue;
        }
        state
            .engine
            .compile_with(&spec.sql, &defs)
            .map_err(|e| fail(e.to_string()))?;
        state
            .engine
            .validate_options(&spec.options)
            .map_err(|e| fail(e.to_string()))?;
        if spec.actions.is_empty() {
            return Err(fail("a rule needs at least one action".into()));
        }
        for a in &spec.actions {
            state
                .engine
                .validate_action(a)
                .map_err(|e| fail(e.to_string()))?;
        }
        items.push(Item::Rule {
            spec,
            start,
            json: json.clone(),
        });
    }
    Ok(items)
}

/// Creates the checked items; on a failure removes what it created. `[streams, tables, rules]`
/// created.
pub(super) fn apply(state: &State, items: Vec<Item>) -> Result<[usize; 3], ApiError> {
    let mut done: Vec<(bool, String)> = Vec::new();
    let mut counts = [0; 3];
    for item in items {
        let result = match item {
            Item::Stream(def) => create_stream(state, &def).map(|()| {
                counts[if def.kind == StreamKind::Table { 1 } else { 0 }] += 1;
                done.push((false, def.name));
            }),
            Item::Rule { spec, start, json } => {
                let id = spec.id.clone();
                create_rule(state, spec, start, &json).map(|()| {
                    counts[2] += 1;
                    done.push((true, id));
                })
            }
        };
        if let Err(e) = result {
            for (rule, name) in done.into_iter().rev() {
                if rule {
                    let _ = state.engine.delete_rule(&name);
                    let _ = state.catalog.delete_rule(&name);
                } else {
                    let _ = state.engine.drop_stream(&name);
                    let _ = state.catalog.delete_stream(&name);
                }
            }
            return Err(e);
        }
    }
    Ok(counts)
}

/// Deletes rules `rules`, then streams and tables `streams`, from the engine and the catalog.
pub(super) fn remove(state: &State, rules: &[String], streams: &[String]) -> Result<(), ApiError> {
    for id in rules {
        state.engine.delete_rule(id)?;
        state.catalog.delete_rule(id)?;
    }
    for name in streams {
        state.engine.drop_stream(name)?;
        state.catalog.delete_stream(name)?;
    }
    Ok(())
}

fn create_stream(state: &State, def: &StreamDef) -> Result<(), ApiError> {
    let named = |e: ApiError| ApiError {
        status: e.status,
        message: format!("stream \"{}\": {}", def.name, e.message),
    };
    state
        .engine
        .create_stream(&def.sql)
        .map_err(|e| named(e.into()))?;
    if let Err(e) = state.catalog.put_stream(&def.name, &def.sql) {
        let _ = state.engine.drop_stream(&def.name);
        return Err(named(e.into()));
    }
    Ok(())
}

fn create_rule(state: &State, spec: RuleSpec, start: bool, json: &str) -> Result<(), ApiError> {
    let id = spec.id.clone();
    let named = |e: ApiError| {
        ApiError {
            status: e.status,
            message: format!("rule \"{id}\": {}", e.message),
        }
        .scrubbed(&mask::secret_values(json))
    };
    state
        .engine
        .create_rule_with(spec, start)
        .map_err(|e| named(e.into()))?;
    if let Err(e) = state.catalog.put_rule(&id, json, start) {
        let _ = state.engine.delete_rule(&id);
        return Err(named(e.into()));
    }
    Ok(())
}
