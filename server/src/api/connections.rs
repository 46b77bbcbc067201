//! `/connections`: eKuiper's named connections. Thin handlers over [`crate::connections`];
//! answers mask secrets (`password` and the like show as `******`), and a `PUT` body copied
//! from a `GET` keeps the stored secrets where it holds `******`.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, State};
use crate::connections::{self, ConnectionError};
use crate::security::mask;

/// eKuiper's connection request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionRequest {
    /// The connection id (optional on `PUT`, where the path names it).
    #[serde(default)]
    id: Option<String>,
    /// The connection type (`mqtt`).
    typ: String,
    /// The connector's connection properties.
    #[serde(default)]
    props: Map<String, Value>,
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        let status = match &e {
            ConnectionError::Invalid(_) => StatusCode::BAD_REQUEST,
            ConnectionError::NotFound(_) => StatusCode::NOT_FOUND,
            ConnectionError::Duplicate(_) => StatusCode::CONFLICT,
            ConnectionError::Catalog(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

fn parse(raw: &str) -> Result<ConnectionRequest, ApiError> {
    serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"id\", \"typ\", \"props\"}}: {}",
            mask::mask_text(&e.to_string())
        ))
    })
}

/// Validates, stores and registers `req` as connection `id`; errors never show `secrets`.
fn save(
    state: &State,
    id: &str,
    req: &ConnectionRequest,
    replace: bool,
    secrets: &[String],
) -> Result<(), ApiError> {
    connections::put(
        &state.engine,
        &state.catalog,
        id,
        &req.typ,
        &req.props,
        replace,
    )
    .map_err(|e| ApiError::from(e).scrubbed(secrets))
}

/// The stored connection `id`: (id, type, properties as JSON text).
fn stored(state: &State, id: &str) -> Result<(String, String, String), ApiError> {
    state
        .catalog
        .connections()?
        .into_iter()
        .find(|(i, _, _)| i == id)
        .ok_or_else(|| ConnectionError::NotFound(format!("no connection \"{id}\"")).into())
}

/// `POST /connections`: creates a connection and starts dialing it.
pub async fn create(state: State, raw: String) -> Result<(StatusCode, String), ApiError> {
    let secrets = mask::secret_values(&raw);
    let req = parse(&raw).map_err(|e| e.scrubbed(&secrets))?;
    let id = req
        .id
        .clone()
        .ok_or_else(|| ApiError::bad_request("\"id\" is required"))?;
    save(&state, &id, &req, false, &secrets)?;
    Ok((
        StatusCode::CREATED,
        format!("connection \"{id}\" is created"),
    ))
}

/// `PUT /connections/{id}`: replaces a connection that no running rule uses.
pub async fn update(
    state: State,
    Path(id): Path<String>,
    raw: String,
) -> Result<(StatusCode, String), ApiError> {
    connections::check_id(&id)?;
    let stored = stored(&state, &id)?;
    let stored_body =
        json!({"props": serde_json::from_str::<Value>(&stored.2).unwrap_or_default()});
    let raw = mask::unmask_json(&raw, &stored_body.to_string()).unwrap_or(raw);
    let secrets = mask::secret_values(&raw);
    let req = parse(&raw).map_err(|e| e.scrubbed(&secrets))?;
    if let Some(body_id) = req.id.as_deref().filter(|b| *b != id) {
        return Err(ApiError::bad_request(format!(
            "the body's id \"{body_id}\" differs from the path's \"{id}\""
        )));
    }
    save(&state, &id, &req, true, &secrets)?;
    Ok((StatusCode::OK, format!("connection \"{id}\" is updated")))
}

/// `DELETE /connections/{id}`: refused while a stream or rule uses it.
pub async fn delete(
    state: State,
    Path(id): Path<String>,
) -> Result<(StatusCode, String), ApiError> {
    connections::delete(&state.engine, &state.catalog, &state.profiles, &id)?;
    Ok((StatusCode::OK, format!("connection \"{id}\" is deleted")))
}

/// `GET /connections`: every connection with its status.
pub async fn list(state: State) -> Result<Json<Vec<Value>>, ApiError> {
    let all = state.catalog.connections()?;
    Ok(Json(
        all.iter()
            .map(|(id, typ, props)| describe(&state, id, typ, props))
            .collect(),
    ))
}

/// `GET /connections/{id}`: one connection with its status.
pub async fn show(state: State, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (id, typ, props) = stored(&state, &id)?;
    Ok(Json(describe(&state, &id, &typ, &props)))
}

/// eKuiper's connection answer: id, typ, masked props, isNamed, status, err, refCount.
fn describe(state: &State, id: &str, typ: &str, props: &str) -> Value {
    let mut props = serde_json::from_str::<Value>(props).unwrap_or_else(|_| json!({}));
    mask::mask_value(&mut props);
    let mut answer = json!({"id": id, "typ": typ, "props": props, "isNamed": true});
    let status = state.engine.connectors().mqtt_connections().status(id);
    let (status, err, users) = match status {
        None => (
            "disconnected",
            Some("not registered: see the server log".to_string()),
            0,
        ),
        Some(s) if s.connection.connected => ("connected", None, s.users),
        Some(s) => match s.connection.last_error {
            Some(e) => ("disconnected", Some(e), s.users),
            None => ("connecting", None, s.users),
        },
    };
    answer["status"] = json!(status);
    if let Some(err) = err {
        answer["err"] = json!(mask::mask_text(&err));
    }
    if users > 0 {
        answer["refCount"] = json!(users);
    }
    answer
}
