//! `/streams`: create, list, describe, update, drop, schema.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use quiver_compiler::ddl::StreamDef;
use quiver_compiler::types::FieldType;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, State};

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

/// `POST /streams`.
pub async fn create(state: State, raw: String) -> Result<(StatusCode, String), ApiError> {
    let b = body(&raw)?;
    let def = state.engine.create_stream(&b.sql)?;
    if let Err(e) = state.catalog.put_stream(&def.name, &def.sql) {
        let _ = state.engine.drop_stream(&def.name);
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        format!("Stream {} is created.", def.name),
    ))
}

/// `GET /streams`: the stream names.
pub async fn list(state: State) -> Json<Vec<String>> {
    Json(state.engine.stream_names())
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
    let options: Map<String, Value> = def
        .options
        .raw
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "Name": def.name,
        "StreamFields": if fields.is_empty() { Value::Null } else { Value::Array(fields) },
        "Options": options,
    })
}

fn find(state: &State, name: &str) -> Result<StreamDef, ApiError> {
    state.engine.stream(name).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("stream \"{name}\" not found"),
    })
}

/// `GET /streams/{name}`: eKuiper's describe shape.
pub async fn describe(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe_json(&find(&state, &name)?)))
}

/// `GET /streams/{name}/schema`: field name to type.
pub async fn schema(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let def = find(&state, &name)?;
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
    let b = body(&raw)?;
    let new =
        quiver_compiler::parse_create(&b.sql).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if new.name != name {
        return Err(ApiError::bad_request(format!(
            "the statement defines stream \"{}\", not \"{name}\"",
            new.name
        )));
    }
    let old = find(&state, &name)?;
    state.engine.drop_stream(&name)?;
    if let Err(e) = state.engine.create_stream(&b.sql) {
        state
            .engine
            .create_stream(&old.sql)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Err(e.into());
    }
    state.catalog.put_stream(&name, &new.sql)?;
    Ok(format!("Stream {name} is updated."))
}

/// `DELETE /streams/{name}`.
pub async fn drop(state: State, Path(name): Path<String>) -> Result<String, ApiError> {
    state.engine.drop_stream(&name)?;
    state.catalog.delete_stream(&name)?;
    Ok(format!("Stream {name} is dropped."))
}
