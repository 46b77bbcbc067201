//! `/streams` and `/tables`: create, list, describe, update, drop, schema. The two share one
//! namespace and one implementation; each path only sees its own kind.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use quiver_compiler::ddl::StreamDef;
use quiver_compiler::types::FieldType;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, State};

use quiver_compiler::StreamKind;

fn noun(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Stream => "Stream",
        StreamKind::Table => "Table",
    }
}

/// Body of `POST /streams` and `PUT /streams/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamBody {
    /// A `CREATE STREAM` statement.
    pub sql: String,
}

fn body(raw: &str) -> Result<StreamBody, ApiError> {
    serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"sql\": \"CREATE STREAM ...\"}}"
        ))
    })
}

async fn create_kind(
    state: State,
    raw: String,
    kind: StreamKind,
) -> Result<(StatusCode, String), ApiError> {
    let b = body(&raw)?;
    let parsed =
        quiver_compiler::parse_create(&b.sql).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if parsed.kind != kind {
        return Err(ApiError::bad_request(format!(
            "this path creates a {}; the statement creates a {}",
            noun(kind).to_lowercase(),
            noun(parsed.kind).to_lowercase()
        )));
    }
    let def = state.engine.create_stream(&b.sql)?;
    if let Err(e) = state.catalog.put_stream(&def.name, &def.sql) {
        let _ = state.engine.drop_stream(&def.name);
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        format!("{} {} is created.", noun(kind), def.name),
    ))
}

/// `POST /streams`.
pub async fn create(state: State, raw: String) -> Result<(StatusCode, String), ApiError> {
    create_kind(state, raw, StreamKind::Stream).await
}

/// `POST /tables`.
pub async fn create_table(state: State, raw: String) -> Result<(StatusCode, String), ApiError> {
    create_kind(state, raw, StreamKind::Table).await
}

/// `GET /streams`: the stream names.
pub async fn list(state: State) -> Json<Vec<String>> {
    Json(state.engine.stream_names())
}

/// `[{"name", "type", "format"}]` for every stream or table of `kind`.
fn details(state: &State, kind: StreamKind) -> Json<Vec<Value>> {
    let names = match kind {
        StreamKind::Stream => state.engine.stream_names(),
        StreamKind::Table => state.engine.table_names(),
    };
    Json(
        names
            .iter()
            .filter_map(|n| state.engine.stream(n))
            .map(|d| {
                json!({
                    "name": d.name,
                    "type": d.options.source_type,
                    "format": d.options.format.to_lowercase(),
                })
            })
            .collect(),
    )
}

/// `GET /streamdetails`: each stream's name, source type and format.
pub async fn stream_details(state: State) -> Json<Vec<Value>> {
    details(&state, StreamKind::Stream)
}

/// `GET /tabledetails`: each table's name, source type and format.
pub async fn table_details(state: State) -> Json<Vec<Value>> {
    details(&state, StreamKind::Table)
}

/// Query of `GET /tables`: eKuiper's `kind` filter.
#[derive(Debug, Deserialize)]
pub struct TablesQuery {
    /// `scan` or `lookup`; every table when absent.
    pub kind: Option<String>,
}

/// `GET /tables[?kind=scan|lookup]`: the table names, of one kind when asked.
pub async fn list_tables(
    state: State,
    Query(q): Query<TablesQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let names = state.engine.table_names();
    let Some(kind) = q.kind else {
        return Ok(Json(names));
    };
    if !["scan", "lookup"].contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "kind must be \"scan\" or \"lookup\", got \"{kind}\""
        )));
    }
    Ok(Json(
        names
            .into_iter()
            .filter(|n| {
                state.engine.stream(n).is_some_and(|d| {
                    // A table without KIND is a scan table, as in eKuiper.
                    d.options
                        .raw
                        .get("KIND")
                        .map_or("scan", String::as_str)
                        .eq_ignore_ascii_case(&kind)
                })
            })
            .collect(),
    ))
}

/// eKuiper's numeric type codes in describe output (its `ast.DataType` enum).
fn type_code(t: &FieldType) -> u8 {
    match t {
        FieldType::Bigint => 1,
        FieldType::Float => 2,
        FieldType::String => 3,
        FieldType::Bytea => 4,
        FieldType::Datetime => 5,
        FieldType::Boolean => 6,
        FieldType::Array(_) => 7,
        FieldType::Struct(_) => 8,
    }
}

fn field_type_json(t: &FieldType) -> Value {
    match t {
        FieldType::Array(inner) => {
            json!({ "Type": type_code(t), "FieldType": field_type_json(inner) })
        }
        FieldType::Struct(fields) => json!({
            "StreamFields": fields
                .iter()
                .map(|(n, t)| json!({ "Name": n, "FieldType": field_type_json(t) }))
                .collect::<Vec<_>>(),
        }),
        other => json!({ "Type": type_code(other) }),
    }
}

/// eKuiper's describe shape: `{"Name", "StreamFields": [{"Name", "FieldType": {"Type": n}}],
/// "Options": {"DATASOURCE": ..., ...}}` (`StreamFields` is null for schemaless streams).
fn describe_json(def: &StreamDef) -> Value {
    let fields: Vec<Value> = def
        .columns
        .iter()
        .flatten()
        .map(|c| json!({ "Name": c.name, "FieldType": field_type_json(&c.ty) }))
        .collect();
    let mut options = Value::Object(
        def.options
            .raw
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    // Options may carry a URL with a password or a secret property.
    crate::security::mask::mask_value(&mut options);
    json!({
        "Name": def.name,
        "StreamFields": if fields.is_empty() { Value::Null } else { Value::Array(fields) },
        "Options": options,
    })
}

fn find_kind(state: &State, name: &str, kind: StreamKind) -> Result<StreamDef, ApiError> {
    state
        .engine
        .stream(name)
        .filter(|d| d.kind == kind)
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("{} \"{name}\" not found", noun(kind).to_lowercase()),
        })
}

fn find(state: &State, name: &str) -> Result<StreamDef, ApiError> {
    find_kind(state, name, StreamKind::Stream)
}

/// `GET /streams/{name}`: eKuiper's describe shape.
pub async fn describe(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe_json(&find(&state, &name)?)))
}

/// `GET /tables/{name}`: eKuiper's describe shape.
pub async fn describe_table(
    state: State,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe_json(&find_kind(
        &state,
        &name,
        StreamKind::Table,
    )?)))
}

/// `DELETE /tables/{name}`: refused while rules join the table.
pub async fn drop_table(state: State, Path(name): Path<String>) -> Result<String, ApiError> {
    find_kind(&state, &name, StreamKind::Table)?;
    state.engine.drop_stream(&name)?;
    state.catalog.delete_stream(&name)?;
    Ok(format!("Table {name} is dropped."))
}

/// `GET /streams/{name}/schema`: field name to type.
pub async fn schema(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    schema_kind(&state, &name, StreamKind::Stream)
}

/// `GET /tables/{name}/schema`: field name to type.
pub async fn table_schema(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    schema_kind(&state, &name, StreamKind::Table)
}

fn schema_kind(state: &State, name: &str, kind: StreamKind) -> Result<Json<Value>, ApiError> {
    let def = find_kind(state, name, kind)?;
    let map: Map<String, Value> = def
        .columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), json!({ "type": c.ty.ekuiper_name() })))
        .collect();
    Ok(Json(Value::Object(map)))
}

/// `PUT /streams/{name}`: replaces the definition (refused while rules use the stream).
pub async fn update(
    state: State,
    Path(name): Path<String>,
    raw: String,
) -> Result<String, ApiError> {
    update_kind(&state, &name, &raw, StreamKind::Stream)
}

/// `PUT /tables/{name}`: replaces the definition (refused while rules use the table).
pub async fn update_table(
    state: State,
    Path(name): Path<String>,
    raw: String,
) -> Result<String, ApiError> {
    update_kind(&state, &name, &raw, StreamKind::Table)
}

fn update_kind(state: &State, name: &str, raw: &str, kind: StreamKind) -> Result<String, ApiError> {
    let b = body(raw)?;
    let new =
        quiver_compiler::parse_create(&b.sql).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let noun_lower = noun(kind).to_lowercase();
    if new.name != name || new.kind != kind {
        return Err(ApiError::bad_request(format!(
            "the statement defines {} \"{}\", not {noun_lower} \"{name}\"",
            noun(new.kind).to_lowercase(),
            new.name
        )));
    }
    let old = find_kind(state, name, kind)?;
    state.engine.drop_stream(name)?;
    if let Err(e) = state.engine.create_stream(&b.sql) {
        state
            .engine
            .create_stream(&old.sql)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Err(e.into());
    }
    state.catalog.put_stream(name, &new.sql)?;
    Ok(format!("{} {name} is updated.", noun(kind)))
}

/// `DELETE /streams/{name}`.
pub async fn drop(state: State, Path(name): Path<String>) -> Result<String, ApiError> {
    find(&state, &name)?;
    state.engine.drop_stream(&name)?;
    state.catalog.delete_stream(&name)?;
    Ok(format!("Stream {name} is dropped."))
}
