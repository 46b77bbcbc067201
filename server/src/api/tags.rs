//! Rule tags (eKuiper's `/rules/{id}/tags` and `/rules/tags/match`). Tags live in the rule's
//! JSON in the catalog, as eKuiper keeps them, so `GET /rules/{id}` shows them and they
//! survive a restart.

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, State};

/// The most tags one rule (or one request) carries: tags are labels for grouping rules, a
/// handful each; the bound keeps a rule's JSON and a match request small.
pub const MAX_TAGS: usize = 100;

/// The longest tag, bytes.
pub const MAX_TAG_BYTES: usize = 256;

/// Body of the tag routes: `{"tags": [...]}`; `keys` is the name eKuiper's documentation uses
/// for deleting and matching, accepted as the same field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    #[serde(alias = "keys")]
    tags: Vec<String>,
}

/// Checks a list of tags against the bounds; used for rule bodies too.
pub fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "{} tags is above the limit of {MAX_TAGS}",
            tags.len()
        )));
    }
    if let Some(t) = tags
        .iter()
        .find(|t| t.len() > MAX_TAG_BYTES || t.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "a tag must have 1 to {MAX_TAG_BYTES} bytes, got {}",
            t.len()
        )));
    }
    Ok(())
}

fn body(raw: &str) -> Result<Vec<String>, ApiError> {
    let b: TagsBody = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid request body: {e}; expected {{\"tags\": [\"t1\", ...]}}"
        ))
    })?;
    check_tags(&b.tags)?;
    Ok(b.tags)
}

fn edit(
    state: &State,
    id: &str,
    change: impl FnOnce(Vec<String>) -> Vec<String>,
) -> Result<String, ApiError> {
    let mut over = false;
    let tags = state.catalog.edit_rule_tags(id, |old| {
        let new = change(old.clone());
        if new.len() > MAX_TAGS {
            over = true;
            return old;
        }
        new
    })?;
    if over {
        return Err(ApiError::bad_request(format!(
            "the rule would have more than {MAX_TAGS} tags"
        )));
    }
    match tags {
        Some(_) => Ok(format!("Rule {id} tags were updated.")),
        None => Err(super::rules::not_found(id)),
    }
}

/// `PUT /rules/{id}/tags`: replaces the rule's tags.
pub async fn reset(state: State, Path(id): Path<String>, raw: String) -> Result<String, ApiError> {
    let tags = body(&raw)?;
    edit(&state, &id, |_| dedup(tags))
}

/// `PATCH /rules/{id}/tags`: adds tags the rule does not have yet.
pub async fn add(state: State, Path(id): Path<String>, raw: String) -> Result<String, ApiError> {
    let tags = body(&raw)?;
    edit(&state, &id, |mut old| {
        old.extend(tags);
        dedup(old)
    })
}

/// `DELETE /rules/{id}/tags`: removes the tags named in `keys` (or `tags`).
pub async fn remove(state: State, Path(id): Path<String>, raw: String) -> Result<String, ApiError> {
    let tags = body(&raw)?;
    edit(&state, &id, |old| {
        old.into_iter().filter(|t| !tags.contains(t)).collect()
    })
}

/// `GET /rules/tags/match`: `{"rules": [ids]}` of the rules having every tag asked for.
pub async fn matching(state: State, raw: String) -> Result<Json<Value>, ApiError> {
    let wanted = body(&raw)?;
    Ok(Json(json!({ "rules": tagged(&state, &wanted)? })))
}

/// The ids of the rules having every one of `wanted` (at least one: an empty list would
/// name every rule, and a bulk stop of every rule should not be one typo away).
pub fn tagged(state: &State, wanted: &[String]) -> Result<Vec<String>, ApiError> {
    check_tags(wanted)?;
    if wanted.is_empty() {
        return Err(ApiError::bad_request("name at least one tag"));
    }
    Ok(state
        .catalog
        .rules()?
        .into_iter()
        .filter(|r| {
            let tags = stored_tags(&r.json);
            wanted.iter().all(|w| tags.contains(w))
        })
        .map(|r| r.id)
        .collect())
}

/// The tags in a stored rule's JSON.
pub fn stored_tags(json: &str) -> Vec<String> {
    serde_json::from_str(json)
        .map(|m| crate::catalog::rule_tags(&m))
        .unwrap_or_default()
}

/// `tags` in first-seen order without repeats.
fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}
