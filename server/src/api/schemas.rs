//! `/schemas/{type}`: eKuiper's schema registry routes (list, create, describe, update,
//! delete) over [`crate::schemas::SchemaRegistry`]. A schema that a stream or rule uses cannot
//! be deleted, and an update must still hold every message type they name.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{ApiError, State};
use std::sync::Arc;

use quiver_connectors::codec::custom::{self, ConverterLibrary};

use crate::schemas::{
    SchemaBody, SchemaInfo, SchemaRegistry, SchemaType, rule_schemas, stream_schema,
};

/// Body of `POST /schemas/{type}` and `PUT /schemas/{type}/{name}` (eKuiper's `Info`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    /// The schema's name.
    pub name: String,
    /// The `.proto` text (protobuf), or
    #[serde(default)]
    pub content: Option<String>,
    /// where to read it: `http(s)://…` or `file:///…` (inside `--plugin-file-dir`).
    #[serde(default)]
    pub file: Option<String>,
    /// The converter plugin file (custom): `http(s)://…` or `file:///…`.
    #[serde(default, rename = "soFile")]
    pub so_file: Option<String>,
}

/// `GET /schemas/{type}`: the names.
pub async fn list(
    state: State,
    Path(segment): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(state.schemas.list(SchemaType::parse(&segment)?)?))
}

/// `GET /schemas/{type}/{name}`.
pub async fn describe(
    state: State,
    Path((segment, name)): Path<(String, String)>,
) -> Result<Json<SchemaInfo>, ApiError> {
    Ok(Json(
        state.schemas.get(SchemaType::parse(&segment)?, &name)?,
    ))
}

/// `POST /schemas/{type}`.
pub async fn create(
    state: State,
    Path(segment): Path<String>,
    raw: String,
) -> Result<(StatusCode, String), ApiError> {
    let t = SchemaType::parse(&segment)?;
    let request = parse(&raw)?;
    let body = read_body(&state, t, &request).await?;
    let schemas = state.schemas.clone();
    let name = request.name.clone();
    blocking(move || {
        schemas.check(t, &name, &body)?;
        let library = custom_library(&schemas, t, &name, &body)?;
        schemas.store(t, &name, &body, true)?;
        if let Some(library) = library {
            custom::register(&name, library);
        }
        Ok::<(), ApiError>(())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        format!("schema {}.{} is created", t.name(), request.name),
    ))
}

/// `PUT /schemas/{type}/{name}`: replaces the schema; the streams and rules using it must
/// still find their message types (running rules keep the old one until they restart).
pub async fn update(
    state: State,
    Path((segment, name)): Path<(String, String)>,
    raw: String,
) -> Result<String, ApiError> {
    let t = SchemaType::parse(&segment)?;
    let request = parse(&raw)?;
    if request.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names schema \"{}\" but the path names \"{name}\"",
            request.name
        )));
    }
    if !state.schemas.exists(t, &name) {
        state.schemas.get(t, &name)?;
    }
    let body = read_body(&state, t, &request).await?;
    let users = users(&state, t, &name)?;
    let schemas = state.schemas.clone();
    let schema = name.clone();
    blocking(move || {
        if let Some(pool) = schemas.check(t, &schema, &body)? {
            for (user, message) in &users {
                quiver_connectors::codec::protobuf::find_message(&pool, &schema, message).map_err(
                    |e| ApiError::bad_request(format!("{e}, which {user} reads or writes")),
                )?;
            }
        }
        let library = custom_library(&schemas, t, &schema, &body)?;
        if let Some(library) = &library {
            for (user, message) in &users {
                library.converter(message).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the new soFile of custom.{schema}: {e}, which {user} reads or writes"
                    ))
                })?;
            }
        }
        schemas.store(t, &schema, &body, false)?;
        // Rules started from now on use the new library; running ones keep theirs.
        if let Some(library) = library {
            custom::register(&schema, library);
        }
        Ok::<(), ApiError>(())
    })
    .await?;
    Ok(format!("schema {}.{name} is updated", t.name()))
}

/// `DELETE /schemas/{type}/{name}`: refused while a stream or rule uses the schema.
pub async fn delete(
    state: State,
    Path((segment, name)): Path<(String, String)>,
) -> Result<String, ApiError> {
    let t = SchemaType::parse(&segment)?;
    let in_use = users(&state, t, &name)?.into_iter().next();
    if let Some((user, _)) = in_use {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("schema {}.{name} is in use by {user}", t.name()),
        });
    }
    state.schemas.delete(t, &name)?;
    if t == SchemaType::Custom {
        custom::unregister(&name);
    }
    Ok(format!("schema {}.{name} is deleted", t.name()))
}

/// A custom schema's library, loaded and checked before it is stored (none for protobuf).
pub(super) fn custom_library(
    schemas: &SchemaRegistry,
    t: SchemaType,
    name: &str,
    body: &SchemaBody,
) -> Result<Option<Arc<dyn ConverterLibrary>>, ApiError> {
    match (t, body) {
        (SchemaType::Custom, SchemaBody::So(bytes)) => Ok(Some(schemas.load_custom(name, bytes)?)),
        _ => Ok(None),
    }
}

/// Runs registry work (parsing, file writes) on a blocking thread.
async fn blocking<F, E>(work: F) -> Result<(), ApiError>
where
    F: FnOnce() -> Result<(), E> + Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || work().map_err(Into::into))
        .await
        .map_err(|e| ApiError::internal(format!("schema registry task failed: {e}")))?
}

/// The streams and rules that use schema `name` of type `t`, with the message type each names.
fn users(state: &State, t: SchemaType, name: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut found = Vec::new();
    for (stream, sql) in state.catalog.streams()? {
        if let Some((schema, message)) = stream_schema(t, &sql)
            && schema == name
        {
            found.push((format!("stream \"{stream}\""), message));
        }
    }
    for rule in state.catalog.rules()? {
        for (schema, message) in rule_schemas(t, &rule.json) {
            if schema == name {
                found.push((format!("rule \"{}\"", rule.id), message));
            }
        }
    }
    Ok(found)
}

fn parse(raw: &str) -> Result<SchemaRequest, ApiError> {
    serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"name\": \"...\", \"content\": \"...\"}} or {{\"name\": \"...\", \"file\": \"http://.../x.proto\"}}"
        ))
    })
}

/// The schema's bytes: `content` as it is, `file` and `soFile` read as plugin files are
/// (bounded in size and time; `file://` only inside `--plugin-file-dir`).
pub(super) async fn read_body(
    state: &State,
    t: SchemaType,
    request: &SchemaRequest,
) -> Result<SchemaBody, ApiError> {
    let fetch = |url: &str| {
        let url = url.to_string();
        let plugins = state.plugins.clone();
        async move {
            plugins
                .fetch_url(&url)
                .await
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    };
    match (t, &request.content, &request.file, &request.so_file) {
        (SchemaType::Protobuf, Some(_), Some(_), _) => Err(ApiError::bad_request(
            "give \"content\" or \"file\", not both",
        )),
        (SchemaType::Protobuf, _, _, Some(_)) => Err(ApiError::bad_request(
            "\"soFile\" applies to custom schemas only",
        )),
        (SchemaType::Protobuf, Some(text), None, None) => Ok(SchemaBody::Proto(text.clone())),
        (SchemaType::Protobuf, None, Some(url), None) => {
            let bytes = fetch(url).await?;
            if bytes.len() > quiver_connectors::codec::protobuf::MAX_SCHEMA_BYTES {
                return Err(ApiError::bad_request(format!(
                    "{url} is above the limit of {} bytes for a schema",
                    quiver_connectors::codec::protobuf::MAX_SCHEMA_BYTES
                )));
            }
            String::from_utf8(bytes)
                .map(SchemaBody::Proto)
                .map_err(|_| ApiError::bad_request(format!("{url} is not UTF-8 text")))
        }
        (SchemaType::Protobuf, None, None, None) => Err(ApiError::bad_request(
            "a protobuf schema needs \"content\" or \"file\"",
        )),
        (SchemaType::Custom, None, None, Some(url)) => Ok(SchemaBody::So(fetch(url).await?)),
        (SchemaType::Custom, _, _, _) => Err(ApiError::bad_request(
            "a custom schema needs \"soFile\" (and no \"content\" or \"file\")",
        )),
    }
}
