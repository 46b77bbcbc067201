//! The shared push listener behind `httppush` streams (eKuiper's `httppush` source) and
//! server-mode `websocket` sources and sinks.
//!
//! One listener (default `127.0.0.1:10081`) for all streams: a stream's DATASOURCE is the URL
//! path.
//! - `POST <path>` with a JSON object or array body feeds every rule of that `httppush`
//!   stream. The request completes once the rules have queued the message: a slow rule slows
//!   its clients instead of growing a queue.
//! - `GET <path>` with a WebSocket upgrade connects to a server-mode websocket path, when a
//!   running rule reads it (source) or writes to it (sink). Each message the client sends
//!   feeds the rules reading the path (waiting while they are behind, as a POST does); each
//!   result of a sink on the path is written to the client, from a bounded queue of its own
//!   that drops results the client is too slow to take (see
//!   [`quiver_connectors::websocket::hub`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quiver_connectors::memory::MemoryBus;
use quiver_connectors::websocket::{MAX_MESSAGE, WebsocketHub, WsPayload};

/// Largest accepted body.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What the push routes serve.
struct Push {
    httppush: MemoryBus,
    websocket: WebsocketHub,
}

/// The push router: `httppush` bodies on `bus`, websocket connections on `hub`.
pub fn router(bus: MemoryBus, hub: WebsocketHub) -> Router {
    Router::new()
        .route("/{*path}", post(push).get(websocket))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Push {
            httppush: bus,
            websocket: hub,
        }))
}

/// How long a pushed request waits for the rules reading its path to take it (a rule whose
/// sink is away holds its input back).
const TAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn push(State(state): State<Arc<Push>>, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let bus = &state.httppush;
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
    // Answered 200 once every rule reading the path has taken the body: logged it to its input
    // log (qos 1 and 2 rules), or read it. A crash after the 200 loses nothing a qos 1 rule
    // was sent; a rule that stopped before taking it makes the answer a 503 to send again.
    let (receipt, mut confirmations) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reached = bus
        .publish_with_receipt(
            path,
            quiver_connectors::memory::MemoryPayload::Json(body),
            receipt,
        )
        .await;
    let mut taken = 0;
    let all = async {
        while confirmations.recv().await.is_some() {
            taken += 1;
        }
    };
    if tokio::time::timeout(TAKE_TIMEOUT, all).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the rules reading \"{path}\" did not take the request within {TAKE_TIMEOUT:?}; it may still be processed"
            ),
        );
    }
    if reached == 0 || taken < reached {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("a rule reading \"{path}\" stopped before it took the request; send it again"),
        );
    }
    (StatusCode::OK, String::new())
}

async fn websocket(
    State(state): State<Arc<Push>>,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = uri.path().to_string();
    if !state.websocket.is_open(&path) {
        return (
            StatusCode::NOT_FOUND,
            format!("no running rule uses the websocket path \"{path}\""),
        )
            .into_response();
    }
    let hub = state.websocket.clone();
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(hub, path, socket))
}

/// Relays one client's messages to the path's sources and the path's results to the client,
/// until either side closes.
async fn serve(hub: WebsocketHub, path: String, mut socket: WebSocket) {
    let mut client = hub.join(&path);
    loop {
        tokio::select! {
            result = client.next() => {
                let Some(payload) = result else {
                    // The server ended the path (a rule test was deleted): say so politely.
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                };
                if socket.send(message(payload)).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let data = match incoming {
                    Some(Ok(Message::Text(text))) => Bytes::from(text),
                    Some(Ok(Message::Binary(data))) => data,
                    // Pings are answered by the protocol layer.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!("websocket client of {path}: {e}");
                        break;
                    }
                };
                if hub.receive(&path, data).await == 0 {
                    tracing::debug!("websocket {path}: a message arrived while no rule reads the path; dropped");
                }
            }
        }
    }
    if client.dropped() > 0 {
        tracing::info!(
            "websocket client of {path} left; {} results were dropped for it (too slow)",
            client.dropped()
        );
    }
}

/// The websocket message of a result: text when it is UTF-8, else binary.
fn message(payload: WsPayload) -> Message {
    if payload.text
        && let Ok(text) = Utf8Bytes::try_from(payload.data.clone())
    {
        return Message::Text(text);
    }
    Message::Binary(payload.data)
}
