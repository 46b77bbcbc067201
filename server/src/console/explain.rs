//! `POST /console/explain`: the logical plan of a rule's SQL that is not a rule yet (the
//! editor's EXPLAIN); `GET /rules/{id}/explain` shows a created rule's plans.

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::api::limits::{self, Limits};
use crate::api::{ApiError, AppState, State};
use crate::security::mask;

/// The route, under the REST API's limits.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/console/explain", post(explain))
        .with_state(state);
    limits::apply(routes, Limits::default())
}

/// The body is the SQL (text); the answer is the plan as text, or the compile error as the
/// REST API reports it (400 with line and column).
async fn explain(state: State, sql: String) -> Result<String, ApiError> {
    let plan = state.engine.compile(&sql)?;
    Ok(format!(
        "Logical plan:\n{}",
        mask::mask_text(&plan.explain())
    ))
}
