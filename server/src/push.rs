//! The shared HTTP push listener behind `httppush` streams (eKuiper's `httppush` source).
//!
//! One listener (default `127.0.0.1:10081`) for all streams: a stream's DATASOURCE is the URL
//! path, and `POST <path>` with a JSON object or array body feeds every rule of that stream.
//! The request completes once the rules have queued the message: a slow rule slows its
//! clients instead of growing a queue.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use quiver_connectors::memory::MemoryBus;

/// Largest accepted body.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The push router.
pub fn router(bus: MemoryBus) -> Router {
    Router::new()
        .route("/{*path}", post(push))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(bus))
}

async fn push(State(bus): State<Arc<MemoryBus>>, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let path = uri.path();
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return (StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"));
    }
    if bus.subscribers(path) == 0 {
        return (
            StatusCode::NOT_FOUND,
            format!("no running rule reads a stream with DATASOURCE \"{path}\""),
        );
    }
    bus.publish_json(path, body.to_vec()).await;
    (StatusCode::OK, String::new())
}
