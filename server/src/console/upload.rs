//! `POST`/`PUT /console/plugins/{type}/{name}`: install or update a plugin from a zip sent as
//! the request body (the console's upload; `/plugins/{type}` installs from a URL).
//!
//! The body is bounded like a downloaded package ([`MAX_ZIP_BYTES`]) and then goes through the
//! same checks as one: the same authentication, unpacking limits and ABI checks.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;

use crate::api::limits::{self, Limits};
use crate::api::{ApiError, AppState, State, plugins};
use crate::plugins::package::MAX_ZIP_BYTES;

/// The upload route, under the REST limits but with a plugin package's body size.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/console/plugins/{type}/{name}", post(install).put(update))
        .with_state(state);
    limits::apply(
        routes,
        Limits {
            body: MAX_ZIP_BYTES as usize,
            ..Limits::default()
        },
    )
}

/// `POST /console/plugins/{type}/{name}` with the zip as the body.
async fn install(
    state: State,
    Path((segment, name)): Path<(String, String)>,
    zip: Bytes,
) -> Result<(StatusCode, String), ApiError> {
    let kind = plugins::kind(&segment)?;
    let installed = state.plugins.install_zip(kind, &name, zip.to_vec()).await?;
    Ok(plugins::created(&installed))
}

/// `PUT /console/plugins/{type}/{name}` with the zip as the body.
async fn update(
    state: State,
    Path((segment, name)): Path<(String, String)>,
    zip: Bytes,
) -> Result<String, ApiError> {
    let kind = plugins::kind(&segment)?;
    let (installed, rules) = state.plugins.update_zip(kind, &name, zip.to_vec()).await?;
    Ok(plugins::updated(&installed, &rules))
}
