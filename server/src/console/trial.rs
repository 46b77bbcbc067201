//! `GET /console/ruletest/{id}/events`: a rule test's result rows as server-sent events on the
//! REST port.
//!
//! The same rows `ws://<push listener>/test/{id}` sends, read from the same hub endpoint, so a
//! browser page gets them from the origin it was served from, with its token in a header
//! (a browser WebSocket can send neither). The stream counts as a client of the test, so the
//! test's idle timeout works as with a WebSocket viewer.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::Semaphore;

use crate::api::{ApiError, State};
use crate::ruletest::WS_PREFIX;

/// `GET /console/ruletest/{id}/events`: `result` events with each result's JSON, then a
/// `closed` event when the test is deleted or ends.
pub async fn stream(
    state: State,
    Extension(streams): Extension<Arc<Semaphore>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if !state.tests.ids().contains(&id) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("test rule \"{id}\" not found"),
        });
    }
    let permit = super::stream_permit(&streams)?;
    let client = state
        .engine
        .connectors()
        .websocket()
        .join(&format!("{WS_PREFIX}{id}"));
    let stream = futures_util::stream::unfold(Some((client, permit)), |open| async move {
        let (mut client, permit) = open?;
        match client.next().await {
            Some(payload) => {
                let data = String::from_utf8_lossy(&payload.data).into_owned();
                let event = Event::default().event("result").data(data);
                Some((Ok(event), Some((client, permit))))
            }
            None => Some((Ok(Event::default().event("closed").data("")), None)),
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
