//! `/plugins`: install (from a zip URL), list, describe and delete native plugins, and list
//! the SQL functions they provide (`/plugins/udfs`). eKuiper's paths and bodies.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, State};
use crate::plugins::{PluginError, PluginManager, kind_of};
use quiver_plugin_abi::ffi::PluginKind;

/// Body of `POST /plugins/{type}`.
#[derive(Debug, Deserialize)]
pub struct InstallBody {
    /// The plugin's name (`mysql`).
    pub name: String,
    /// Where the zip is: `https://…/x.zip`, `http://…/x.zip` or `file:///…/x.zip`.
    pub file: String,
    /// The zip's SHA-256 (64 hex digits): a package with another digest is refused before
    /// anything is unpacked or written. Quiver's addition to eKuiper's body.
    #[serde(default)]
    pub sha256: Option<String>,
    /// eKuiper's parameters for `install.sh`; accepted and ignored, as the script never runs.
    #[serde(default, rename = "shellParas")]
    pub shell_paras: Vec<String>,
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let status = match &e {
            PluginError::Invalid(_) => StatusCode::BAD_REQUEST,
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::Conflict(_) => StatusCode::CONFLICT,
            PluginError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// The plugin kind a path segment names (`sources`, `sinks`, `functions`), or 404.
pub(crate) fn kind(segment: &str) -> Result<PluginKind, ApiError> {
    kind_of(segment).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("unknown plugin type \"{segment}\"; use sources, sinks or functions"),
    })
}

/// `POST /plugins/{type}`.
pub async fn install(
    state: State,
    Path(segment): Path<String>,
    raw: String,
) -> Result<(StatusCode, String), ApiError> {
    let kind = kind(&segment)?;
    let body: InstallBody = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"name\": \"...\", \"file\": \"http://.../x.zip\"}}"
        ))
    })?;
    if !body.shell_paras.is_empty() {
        tracing::warn!(plugin = %body.name, "shellParas ignored: install.sh is never run");
    }
    let installed = state
        .plugins
        .install_checked(kind, &body.name, &body.file, body.sha256.as_deref())
        .await?;
    Ok(created(&installed))
}

/// The answer to an install.
pub(crate) fn created(installed: &crate::plugins::Installed) -> (StatusCode, String) {
    (
        StatusCode::CREATED,
        format!(
            "plugin {} is created (version {})",
            installed.name, installed.version
        ),
    )
}

/// The answer to an update that moved `rules` to the new version.
pub(crate) fn updated(installed: &crate::plugins::Installed, rules: &[String]) -> String {
    format!(
        "plugin {} is updated to version {}{}",
        installed.name,
        installed.version,
        if rules.is_empty() {
            String::new()
        } else {
            format!("; rules moved to it: {}", rules.join(", "))
        }
    )
}

/// `PUT /plugins/{type}/{name}`: installs a new version; the rules using the plugin move
/// to it without a server restart.
pub async fn update(
    state: State,
    Path((segment, name)): Path<(String, String)>,
    raw: String,
) -> Result<String, ApiError> {
    let kind = kind(&segment)?;
    let body: InstallBody = serde_json::from_str(&raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"name\": \"{name}\", \"file\": \"http://.../x.zip\"}}"
        ))
    })?;
    if body.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names plugin \"{}\" but the path names \"{name}\"",
            body.name
        )));
    }
    let (installed, rules) = state
        .plugins
        .update(kind, &name, &body.file, body.sha256.as_deref())
        .await?;
    Ok(updated(&installed, &rules))
}

/// `GET /plugins/{type}`: the names.
pub async fn list(
    state: State,
    Path(segment): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(state.plugins.list(kind(&segment)?)))
}

/// `GET /plugins/{type}/{name}`.
pub async fn describe(
    state: State,
    Path((segment, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind(&segment)?;
    let installed = state.plugins.get(kind, &name).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("plugin \"{name}\" not found"),
    })?;
    let mut described = PluginManager::describe(&installed);
    crate::security::mask::mask_value(&mut described);
    Ok(Json(described))
}

/// `DELETE /plugins/{type}/{name}`.
pub async fn delete(
    state: State,
    Path((segment, name)): Path<(String, String)>,
) -> Result<String, ApiError> {
    state.plugins.delete(kind(&segment)?, &name).await?;
    Ok(format!("plugin {name} is deleted"))
}

/// `GET /plugins/udfs`: the SQL functions plugins provide.
pub async fn udfs(state: State) -> Json<Vec<String>> {
    Json(state.plugins.list(PluginKind::Function))
}

/// `GET /plugins/udfs/{name}`: `{"name", "plugin"}` as eKuiper answers.
pub async fn udf(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    match state.plugins.get(PluginKind::Function, &name) {
        Some(p) => Ok(Json(json!({"name": p.name, "plugin": p.name}))),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("function \"{name}\" not found"),
        }),
    }
}
