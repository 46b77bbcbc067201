//! `/metadata/sources`, `/metadata/sinks`: what eKuiper's dashboard reads to draw its stream and
//! action forms, and the source connection profiles (confKeys) it edits.
//!
//! Built-in connectors are rendered from their property tables (`quiver_connectors::spec`),
//! the same tables the connectors validate with. Plugins are rendered from the metadata file
//! they ship (`name.json`, eKuiper's layout); the plugin ABI itself declares no properties, so
//! a plugin without that file is listed with none.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use quiver_connectors::spec::{self, ConnectorSpec, PropertySpec, Role};
use quiver_plugin_abi::ffi::PluginKind;
use serde_json::{Map, Value, json};

use super::{ApiError, State};
use crate::security::mask;

/// The most REST-made confKeys kept, over all source types.
pub const MAX_CONF_KEYS: usize = 1024;

/// The longest confKey name.
pub const MAX_CONF_KEY_NAME: usize = 128;

fn not_found(message: String) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message,
    }
}

/// eKuiper's `about` of a built-in connector.
fn about(description: &str, installed: bool) -> Value {
    json!({
        "trial": false,
        "installed": installed,
        "author": {"name": "Quiver", "email": "", "company": "", "website": ""},
        "helpUrl": {"en_US": "https://ekuiper.org/docs/en/latest/"},
        "description": {"en_US": description},
    })
}

/// One property as eKuiper's metadata files write it; `note` is added to its hint.
fn field(p: &PropertySpec, note: &str) -> Value {
    let mut hint = format!("{}{note}", p.help);
    match p.support {
        spec::Support::Read => {}
        spec::Support::Runtime => hint.push_str(" (read by the rule runtime)"),
        spec::Support::Ignored => hint.push_str(" (accepted and ignored by this build)"),
    }
    json!({
        "name": p.name,
        "default": p.default_value().unwrap_or(Value::Null),
        "optional": !p.required,
        "control": p.kind.control(),
        "type": p.kind.type_name(),
        "hint": {"en_US": hint},
        "label": {"en_US": p.name},
    })
}

/// The fields of a source type's profiles: the source's properties, then the ones only its
/// lookup tables read (a type may be both; `redis` is a lookup table only).
fn source_fields(name: &str) -> Option<(&'static str, Vec<Value>)> {
    let source = spec::source(name);
    let lookup = spec::lookup(name);
    let about = source.or(lookup)?.about;
    let mut fields: Vec<Value> = source
        .into_iter()
        .flat_map(|s| s.properties())
        .map(|p| field(p, ""))
        .collect();
    let lookup_only = lookup
        .into_iter()
        .flat_map(|l| l.properties())
        .filter(|p| source.is_none_or(|s| s.property(p.name).is_none()));
    let note = if source.is_some() {
        " (lookup tables only)"
    } else {
        ""
    };
    fields.extend(lookup_only.map(|p| field(p, note)));
    Some((about, fields))
}

/// Built-in source types and lookup-table-only types, by the names streams and tables use.
fn source_type_names() -> impl Iterator<Item = &'static ConnectorSpec> {
    let lookup_only = spec::lookups()
        .iter()
        .filter(|l| spec::source(l.name).is_none());
    spec::sources().iter().chain(lookup_only)
}

fn plugin_kind(role: Role) -> PluginKind {
    match role {
        Role::Source => PluginKind::Source,
        Role::Sink => PluginKind::Sink,
    }
}

/// A plugin's metadata file, masked, or an empty description when it shipped none.
fn plugin_meta(state: &State, role: Role, name: &str) -> Option<Value> {
    let installed = state.plugins.get(plugin_kind(role), name)?;
    let mut meta = match installed.metadata {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let what = match role {
        Role::Source => "source",
        Role::Sink => "sink",
    };
    meta.entry("about").or_insert_with(|| {
        about(
            &format!("{what} plugin {name} (its package ships no metadata file)"),
            true,
        )
    });
    meta.entry("libs").or_insert_with(|| json!([]));
    meta.entry("properties").or_insert_with(|| match role {
        Role::Source => json!({"default": []}),
        Role::Sink => json!([]),
    });
    let mut meta = Value::Object(meta);
    mask::mask_value(&mut meta);
    Some(meta)
}

fn list(state: &State, role: Role) -> Json<Value> {
    let builtins: Vec<&ConnectorSpec> = match role {
        Role::Source => source_type_names().collect(),
        Role::Sink => spec::sinks().iter().collect(),
    };
    let mut items: Vec<Value> = builtins
        .iter()
        .map(|s| json!({"name": s.name, "about": about(s.about, true)}))
        .collect();
    for name in state.plugins.list(plugin_kind(role)) {
        if let Some(meta) = plugin_meta(state, role, &name) {
            items.push(json!({"name": name, "about": meta["about"].clone()}));
        }
    }
    Json(Value::Array(items))
}

/// `GET /metadata/sources`: every source type, `[{"name", "about"}]`.
pub async fn sources(state: State) -> Json<Value> {
    list(&state, Role::Source)
}

/// `GET /metadata/sinks`: every sink type, `[{"name", "about"}]`.
pub async fn sinks(state: State) -> Json<Value> {
    list(&state, Role::Sink)
}

/// `GET /metadata/sources/{name}`: `{"about", "libs", "properties": {"default": [field]}}`.
pub async fn source(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    if let Some((description, fields)) = source_fields(&name) {
        return Ok(Json(json!({
            "about": about(description, true),
            "libs": [],
            "properties": {"default": fields},
        })));
    }
    plugin_meta(&state, Role::Source, &name)
        .map(Json)
        .ok_or_else(|| not_found(format!("unknown source type \"{name}\"")))
}

/// `GET /metadata/sinks/{name}`: `{"about", "libs", "properties": [field]}`.
pub async fn sink(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    if let Some(s) = spec::sink(&name) {
        return Ok(Json(json!({
            "about": about(s.about, true),
            "libs": [],
            "properties": s.properties().map(|p| field(p, "")).collect::<Vec<_>>(),
        })));
    }
    plugin_meta(&state, Role::Sink, &name)
        .map(Json)
        .ok_or_else(|| not_found(format!("unknown sink type \"{name}\"")))
}

/// The profile key of source type `name`: the built-in's (lower case, as the parser folds
/// `TYPE`) or an installed source plugin's.
fn source_type(state: &State, name: &str) -> Result<String, ApiError> {
    if let Some(s) = spec::source(name).or(spec::lookup(name)) {
        return Ok(s.name.to_ascii_lowercase());
    }
    if state.plugins.get(PluginKind::Source, name).is_some() {
        return Ok(name.to_ascii_lowercase());
    }
    Err(not_found(format!("unknown source type \"{name}\"")))
}

/// `GET /metadata/sources/yaml/{name}`: the profiles of a source type, `{confKey: {props}}`,
/// secrets masked.
pub async fn source_conf_keys(
    state: State,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let source_type = source_type(&state, &name)?;
    let mut merged = state.profiles.merged(&state.catalog)?;
    let by_name: Map<String, Value> = merged
        .remove(&source_type)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::Object(v)))
        .collect();
    // Sorted by name: the engine's map has no order.
    let sorted: std::collections::BTreeMap<String, Value> = by_name.into_iter().collect();
    let mut out = json!(sorted);
    mask::mask_value(&mut out);
    Ok(Json(out))
}

fn check_conf_key_name(name: &str) -> Result<(), ApiError> {
    if crate::connections::is_name(name, MAX_CONF_KEY_NAME) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "confKey \"{name}\" must be 1 to {MAX_CONF_KEY_NAME} letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Refuses a property that neither the built-in source's table nor its lookup table's lists,
/// naming it. Types without a table (plugins) pass.
fn check_props(name: &str, props: &Map<String, Value>) -> Result<(), ApiError> {
    let tables: Vec<&ConnectorSpec> = spec::source(name)
        .into_iter()
        .chain(spec::lookup(name))
        .collect();
    let Some(first) = tables.first() else {
        return Ok(());
    };
    match props
        .keys()
        .find(|k| tables.iter().all(|t| t.property(k).is_none()))
    {
        Some(key) => Err(ApiError::bad_request(format!(
            "{} source: unknown property \"{key}\"; see GET /metadata/sources/{}",
            first.name, first.name
        ))),
        None => Ok(()),
    }
}

/// `PUT /metadata/sources/{name}/confKeys/{confKey}`: saves a profile; the body is its
/// properties. `******` where the stored profile has a secret keeps the stored secret.
pub async fn put_source_conf_key(
    state: State,
    Path((name, conf_key)): Path<(String, String)>,
    raw: String,
) -> Result<(StatusCode, String), ApiError> {
    let source_type = source_type(&state, &name)?;
    check_conf_key_name(&conf_key)?;
    let stored = state
        .catalog
        .conf_keys()?
        .into_iter()
        .find(|(t, n, _)| *t == source_type && *n == conf_key)
        .map(|(_, _, props)| props);
    let raw = match stored.as_deref().and_then(|s| mask::unmask_json(&raw, s)) {
        Some(restored) => restored,
        None => raw,
    };
    let props: Map<String, Value> = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON object of properties: {}",
            mask::mask_text(&e.to_string())
        ))
    })?;
    check_props(&source_type, &props)?;
    if stored.is_none() && state.catalog.conf_keys()?.len() >= MAX_CONF_KEYS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CONF_KEYS} confKeys can be made over REST; delete one first"
        )));
    }
    let text = Value::Object(props.clone()).to_string();
    state.catalog.put_conf_key(&source_type, &conf_key, &text)?;
    state
        .engine
        .set_source_profile(&source_type, &conf_key, Some(props));
    Ok((
        StatusCode::OK,
        format!("confKey \"{conf_key}\" of source {name} is saved"),
    ))
}

/// `DELETE /metadata/sources/{name}/confKeys/{confKey}`: removes a REST-made profile; the
/// `--config` file's profile of that name, if any, is in force again.
pub async fn delete_source_conf_key(
    state: State,
    Path((name, conf_key)): Path<(String, String)>,
) -> Result<(StatusCode, String), ApiError> {
    let source_type = source_type(&state, &name)?;
    if !state.catalog.delete_conf_key(&source_type, &conf_key)? {
        return Err(if state.profiles.in_file(&source_type, &conf_key) {
            ApiError::bad_request(format!(
                "confKey \"{conf_key}\" of source {name} comes from the --config file; \
                 edit that file to remove it"
            ))
        } else {
            not_found(format!("no confKey \"{conf_key}\" of source {name}"))
        });
    }
    state.engine.set_source_profile(
        &source_type,
        &conf_key,
        state.profiles.file_profile(&source_type, &conf_key),
    );
    Ok((
        StatusCode::OK,
        format!("confKey \"{conf_key}\" of source {name} is deleted"),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The OpenAPI document's enums of source and sink names are the property tables' names,
    /// so a connector added to the tables cannot be missing from the API description.
    #[test]
    fn openapi_enums_list_every_built_in_connector() {
        let doc: Value = serde_json::from_str(super::super::openapi::DOCUMENT).expect("JSON");
        let names = |path: &str| -> Vec<String> {
            let params = doc["paths"][path]["parameters"].as_array().expect(path);
            let name = params
                .iter()
                .find(|p| p["name"] == "name")
                .expect("a name parameter");
            name["schema"]["enum"]
                .as_array()
                .expect("an enum")
                .iter()
                .map(|v| v.as_str().expect("a name").to_string())
                .collect()
        };
        let sources: Vec<String> = super::source_type_names()
            .map(|s| s.name.to_string())
            .collect();
        let sinks: Vec<String> = super::spec::sinks()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        for path in [
            "/metadata/sources/{name}",
            "/metadata/sources/yaml/{name}",
            "/metadata/sources/{name}/confKeys/{confKey}",
        ] {
            assert_eq!(names(path), sources, "{path}");
        }
        assert_eq!(names("/metadata/sinks/{name}"), sinks);
    }
}
