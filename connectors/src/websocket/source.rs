//! The websocket source: in server mode a subscription to the hub's bus at the path (messages
//! of the clients connected there), in client mode a connection out that is read until the
//! rule stops, reconnecting after failures.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::Reconnect;
use super::client::{self, Connection};
use super::config::{ClientTarget, WebsocketMode, WebsocketSourceConfig};
use super::hub::WebsocketHub;
use crate::memory::{MemorySource, MemorySourceConfig};
use crate::mqtt::{ConnectionState, DisconnectOnDrop};
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// Messages gathered into one event when they are already buffered.
const MAX_GATHER: usize = 1024;

/// Reads a websocket path (server mode) or connection (client mode).
#[derive(Debug)]
pub struct WebsocketSource {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Server(MemorySource),
    Client {
        target: ClientTarget,
        state: Arc<ConnectionState>,
    },
}

impl WebsocketSource {
    /// A source with `config`. In server mode it subscribes at once on `hub`, so the path is
    /// open to clients from the rule's creation.
    pub fn new(hub: &WebsocketHub, config: WebsocketSourceConfig) -> Result<Self, ConnectorError> {
        let inner = match config.mode {
            WebsocketMode::Server { path } => Inner::Server(MemorySource::new(
                hub.incoming().clone(),
                MemorySourceConfig::parse(&path, &Default::default())?,
            )),
            WebsocketMode::Client(target) => Inner::Client {
                target,
                state: Arc::default(),
            },
        };
        Ok(WebsocketSource { inner })
    }
}

#[async_trait]
impl Source for WebsocketSource {
    fn connection(&self) -> Option<Arc<ConnectionState>> {
        match &self.inner {
            Inner::Server(_) => None,
            Inner::Client { state, .. } => Some(state.clone()),
        }
    }

    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        match &mut self.inner {
            Inner::Server(source) => source.run(out).await,
            Inner::Client { target, state } => run_client(target, state, &out).await,
        }
    }
}

/// Connects, reads until the connection ends, and connects again, until the rule stops.
async fn run_client(
    target: &ClientTarget,
    state: &Arc<ConnectionState>,
    out: &SourceOutput,
) -> Result<(), ConnectorError> {
    let _disconnect = DisconnectOnDrop(state.clone());
    let topic: Arc<str> = target.path.as_str().into();
    let mut reconnect = Reconnect::new(format!("websocket source {}", target.url()), state.clone());
    loop {
        let reason = match client::connect(target).await {
            Ok(mut ws) => {
                reconnect.connected();
                read(&mut ws, &topic, out).await?
            }
            Err(reason) => reason,
        };
        reconnect.failed(reason).await;
    }
}

/// Forwards the connection's messages until it ends; returns why it ended. Fails only when
/// the rule has stopped.
async fn read(
    ws: &mut Connection,
    topic: &Arc<str>,
    out: &SourceOutput,
) -> Result<String, ConnectorError> {
    loop {
        let first = ws.next().await;
        let mut raw = Vec::new();
        let mut next = Some(first);
        let mut ended = None;
        while let Some(item) = next.take() {
            match item {
                Some(Ok(Message::Text(text))) => {
                    raw.push(RawMessage::new(bytes::Bytes::from(text), topic.clone()))
                }
                Some(Ok(Message::Binary(data))) => raw.push(RawMessage::new(data, topic.clone())),
                Some(Ok(Message::Close(frame))) => {
                    ended = Some(match frame {
                        Some(f) => format!("the server closed the connection ({})", f.code),
                        None => "the server closed the connection".to_string(),
                    });
                }
                // Pings are answered by the protocol layer; pongs and raw frames carry nothing.
                Some(Ok(_)) => {}
                Some(Err(e)) => ended = Some(format!("connection lost: {e}")),
                None => ended = Some("connection closed".to_string()),
            }
            if ended.is_none() && raw.len() < MAX_GATHER {
                // Only what is already buffered: a message is never held back to fill an event.
                next = ws.next().now_or_never();
            }
        }
        if !raw.is_empty() {
            out.send(SourceEvent::Raw(raw)).await?;
        }
        if let Some(reason) = ended {
            return Ok(reason);
        }
    }
}
