//! REST errors: each engine error maps to one status, with eKuiper's `{"error", "message"}` body.
//! Messages are masked ([`crate::security::mask::mask_text`]) on the way out: an error never
//! shows a password.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_dataflow::EngineError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the user.
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The same error with every one of `secrets` (the request's secret values) masked.
    pub fn scrubbed(self, secrets: &[String]) -> Self {
        ApiError {
            status: self.status,
            message: crate::security::mask::scrub(&self.message, secrets),
        }
    }

    /// 500 for failures of the server itself (the catalog file).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Compile(_) | EngineError::Invalid(_) | EngineError::Connector(_) => {
                StatusCode::BAD_REQUEST
            }
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Duplicate(_) | EngineError::InUse(_) => StatusCode::CONFLICT,
            EngineError::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        tracing::error!("{e}");
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::NOT_FOUND => 1002,
            StatusCode::CONFLICT => 1003,
            StatusCode::INTERNAL_SERVER_ERROR => 1004,
            _ => 1000,
        };
        (
            self.status,
            Json(serde_json::json!({
                "error": code,
                "message": crate::security::mask::mask_text(&self.message),
            })),
        )
            .into_response()
    }
}
