//! The web console: pages served by quiverd under `/console/` on the REST port
//! (docs/console.md).
//!
//! The pages are hand-written HTML, CSS and JavaScript modules embedded in the binary
//! ([`assets`]); they call the same REST API as curl does. What the API lacks for a browser is
//! here: one server-sent-events stream of every rule's metrics ([`events`]), the results of a
//! rule test over server-sent events on the REST port ([`trial`]), the plan of SQL that is not
//! a rule yet ([`explain`]) and a plugin upload ([`upload`]).
//!
//! Invariants: nothing here runs while no browser is connected (each event stream computes its
//! snapshots itself, only while it is open); at most [`MAX_STREAMS`] event streams are open at
//! once; the static pages hold no data, so they are the only paths served without a token
//! ([`is_public`]); everything else passes the same authentication as the REST API.

mod assets;
mod events;
mod explain;
mod trial;
mod upload;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::api::AppState;

/// Event streams (`/console/events` and rule test results) open at once: each one computes
/// a snapshot per tick, so their number bounds the console's cost.
pub const MAX_STREAMS: usize = 16;

/// The URL prefix of the console.
pub const PREFIX: &str = "/console";

/// Whether a request is for the console's static files, served to anyone who reaches the
/// port: they hold no data, and the login prompt is one of them.
pub fn is_public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (path == PREFIX || path == "/console/" || path.starts_with("/console/assets/"))
}

/// The console's routes (merged beside the REST API's, under the same authentication).
pub fn router(state: Arc<AppState>) -> Router {
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    Router::new()
        .route("/console", get(assets::redirect))
        .route("/console/", get(assets::index))
        .route("/console/assets/{*file}", get(assets::file))
        .route("/console/events", get(events::stream))
        .route("/console/ruletest/{id}/events", get(trial::stream))
        .layer(axum::Extension(streams))
        .with_state(state.clone())
        .merge(explain::router(state.clone()))
        .merge(upload::router(state))
}

/// Takes one of the [`MAX_STREAMS`] permits, or answers 503.
fn stream_permit(
    streams: &Arc<Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, crate::api::ApiError> {
    streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| crate::api::ApiError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "too many console event streams: the limit is {MAX_STREAMS}; close a console tab"
            ),
        })
}
