//! `POST /rules/bulkstart` and `POST /rules/bulkstop`: many rules in one call, by id
//! (`[{"id": "r1"}, ...]`) or by tags (`{"tags": ["t1"]}`, every rule having all of them).
//! Not atomic, as in eKuiper: each rule gets its own result, and one failure stops no other.

use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, State};

/// The most rules one call names: a bulk call is a loop on the server; the bound keeps one
/// request's work and answer small.
pub const MAX_BULK_RULES: usize = 10_000;

/// One rule named in a bulk body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRef {
    id: String,
}

/// `{"tags": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByTags {
    #[serde(alias = "keys")]
    tags: Vec<String>,
}

/// One rule's outcome.
#[derive(Debug, Serialize)]
pub struct BulkResult {
    /// The rule id.
    id: String,
    /// Whether the rule was started (stopped).
    success: bool,
    /// Why not, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The ids a bulk body names.
fn ids(state: &State, raw: &str) -> Result<Vec<String>, ApiError> {
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    let ids: Vec<String> = if value.is_array() {
        let refs: Vec<RuleRef> = serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid request body: {e}; expected [{{\"id\": \"rule1\"}}, ...]"
            ))
        })?;
        refs.into_iter().map(|r| r.id).collect()
    } else {
        let b: ByTags = serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid request body: {e}; expected [{{\"id\": \"rule1\"}}, ...] or {{\"tags\": [\"t1\"]}}"
            ))
        })?;
        super::tags::tagged(state, &b.tags)?
    };
    if ids.len() > MAX_BULK_RULES {
        return Err(ApiError::bad_request(format!(
            "{} rules is above the limit of {MAX_BULK_RULES} per call",
            ids.len()
        )));
    }
    Ok(ids)
}

fn each(
    state: &State,
    raw: &str,
    op: impl Fn(&str) -> Result<(), ApiError>,
) -> Result<Json<Vec<BulkResult>>, ApiError> {
    let results = ids(state, raw)?
        .into_iter()
        .map(|id| {
            let error = op(&id)
                .err()
                .map(|e| crate::security::mask::mask_text(&e.message).into_owned());
            BulkResult {
                success: error.is_none(),
                id,
                error,
            }
        })
        .collect();
    Ok(Json(results))
}

/// `POST /rules/bulkstart`.
pub async fn start(state: State, raw: String) -> Result<Json<Vec<BulkResult>>, ApiError> {
    each(&state, &raw, |id| {
        state.engine.start_rule(id)?;
        state.catalog.set_running(id, true)?;
        Ok(())
    })
}

/// `POST /rules/bulkstop`.
pub async fn stop(state: State, raw: String) -> Result<Json<Vec<BulkResult>>, ApiError> {
    each(&state, &raw, |id| {
        state.engine.stop_rule(id)?;
        state.catalog.set_running(id, false)?;
        Ok(())
    })
}
