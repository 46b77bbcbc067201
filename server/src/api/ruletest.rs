//! eKuiper's rule test run: `POST /ruletest`, `POST /ruletest/{id}/start`,
//! `DELETE /ruletest/{id}` (see [`crate::ruletest`]). Results go to WebSocket clients of
//! `/test/{id}` on the push listener, whose port the create answer gives.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, State};
use crate::ruletest::{RuleTestError, TestDef};

impl From<RuleTestError> for ApiError {
    fn from(e: RuleTestError) -> Self {
        match e {
            RuleTestError::Engine(e) => e.into(),
            RuleTestError::Invalid(_) => ApiError::bad_request(e.to_string()),
            RuleTestError::NotFound(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                message: e.to_string(),
            },
            RuleTestError::TooMany => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
            },
        }
    }
}

/// `POST /ruletest`: `{id, sql, mockSource, sinkProps}` → `{"id", "port"}`.
pub async fn create(state: State, raw: String) -> Result<Json<Value>, ApiError> {
    let def: TestDef = serde_json::from_str(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid test rule JSON: {e}")))?;
    let id = state.tests.create(def)?;
    Ok(Json(json!({ "id": id, "port": state.tests.port() })))
}

/// `POST /ruletest/{id}/start`.
pub async fn start(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    state.tests.start(&id)?;
    Ok(format!("Test rule {id} was started"))
}

/// `DELETE /ruletest/{id}`.
pub async fn delete(state: State, Path(id): Path<String>) -> Result<String, ApiError> {
    state.tests.delete(&id)?;
    Ok(format!("Test rule {id} was stopped."))
}
