//! The websocket sink: each result (one JSON array per batch, or one object per row with
//! `sendSingle`) goes to every client connected to the path (server mode, see [`super::hub`]
//! for slow clients) or over the sink's own connection out (client mode).
//!
//! In client mode a driver task owns the connection and reconnects with backoff;
//! `collect_list` hands it messages through a queue of [`SEND_QUEUE`], so a sink whose server
//! is away waits (back-pressure) instead of buffering without limit. A message whose write
//! failed is sent again on the next connection; one written into a connection the server had
//! already dropped, before that was noticed, is lost (WebSocket has no acknowledgements).

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::Reconnect;
use super::SEND_QUEUE;
use super::client::{self, Connection};
use super::config::{ClientTarget, WebsocketMode, WebsocketSinkConfig};
use super::hub::{HubSink, WebsocketHub, WsPayload};
use crate::mqtt::{ConnectionState, DisconnectOnDrop};
use crate::{ConnectorError, Sink};

/// How long `close` waits for queued messages to go out before dropping the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes result batches to websocket clients or a websocket server.
#[derive(Debug)]
pub struct WebsocketSink {
    config: WebsocketSinkConfig,
    hub: WebsocketHub,
    state: Arc<ConnectionState>,
    /// Server mode, once connected.
    endpoint: Option<HubSink>,
    /// Client mode, once connected: the driver's queue and task.
    driver: Option<(mpsc::Sender<WsPayload>, JoinHandle<()>)>,
}

impl WebsocketSink {
    /// A sink with `config`; server mode serves its path on `hub`.
    pub fn new(hub: WebsocketHub, config: WebsocketSinkConfig) -> Self {
        WebsocketSink {
            config,
            hub,
            state: Arc::default(),
            endpoint: None,
            driver: None,
        }
    }

    /// The live state of the client-mode connection (always disconnected in server mode).
    pub fn status(&self) -> Arc<ConnectionState> {
        self.state.clone()
    }

    async fn send(&mut self, payload: Vec<u8>) -> Result<(), ConnectorError> {
        if self.endpoint.is_none() && self.driver.is_none() {
            self.connect().await?;
        }
        let payload = WsPayload::new(payload);
        if let Some(endpoint) = &self.endpoint {
            endpoint.broadcast(&payload);
            return Ok(());
        }
        let (tx, _) = self.driver.as_ref().expect("connected above");
        tx.send(payload).await.map_err(|_| ConnectorError::Io {
            connector: "websocket",
            reason: format!(
                "sink {}: the connection task stopped; message not sent",
                self.config_label()
            ),
        })
    }

    fn config_label(&self) -> String {
        match &self.config.mode {
            WebsocketMode::Server { path } => path.clone(),
            WebsocketMode::Client(t) => t.url(),
        }
    }
}

#[async_trait]
impl Sink for WebsocketSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        if self.endpoint.is_some() || self.driver.is_some() {
            return Ok(());
        }
        match &self.config.mode {
            WebsocketMode::Server { path } => {
                let endpoint = self.hub.open_sink(path);
                if self.config.check_connection && endpoint.clients() == 0 {
                    return Err(ConnectorError::Io {
                        connector: "websocket",
                        reason: format!(
                            "sink {path}: no websocket client is connected (checkConnection)"
                        ),
                    });
                }
                self.endpoint = Some(endpoint);
            }
            WebsocketMode::Client(target) => {
                // With checkConnection the first connection is made here, so a server that
                // cannot be reached fails the rule's start.
                let first = if self.config.check_connection {
                    let ws =
                        client::connect(target)
                            .await
                            .map_err(|reason| ConnectorError::Io {
                                connector: "websocket",
                                reason: format!(
                                    "sink {}: {reason} (checkConnection)",
                                    target.url()
                                ),
                            })?;
                    self.state.set_connected();
                    Some(ws)
                } else {
                    None
                };
                let (tx, rx) = mpsc::channel(SEND_QUEUE);
                let task = tokio::spawn(drive(target.clone(), first, rx, self.state.clone()));
                self.driver = Some((tx, task));
            }
        }
        Ok(())
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = &self.config;
        let messages = c
            .format
            .messages(batch, c.send_single, c.send_nil, c.omit_if_empty)?;
        for payload in messages {
            self.send(payload).await?;
        }
        Ok(())
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let c = &self.config;
        for p in c.format.payloads(payloads, c.send_single)? {
            self.send(p).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.endpoint = None;
        if let Some((tx, mut task)) = self.driver.take() {
            // The driver sends what is queued, then closes the connection.
            drop(tx);
            if tokio::time::timeout(CLOSE_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(
                    "websocket sink {}: queued messages not sent within {CLOSE_TIMEOUT:?}; \
                     closing anyway",
                    self.config_label()
                );
                task.abort();
            }
        }
        self.state.set_disconnected();
        Ok(())
    }
}

impl Drop for WebsocketSink {
    fn drop(&mut self) {
        if let Some((_, task)) = self.driver.take() {
            task.abort();
        }
    }
}

/// Owns the client-mode connection: sends what the sink queues, reconnecting with backoff,
/// until the sink closes its queue.
async fn drive(
    target: ClientTarget,
    mut ws: Option<Connection>,
    mut rx: mpsc::Receiver<WsPayload>,
    state: Arc<ConnectionState>,
) {
    let _disconnect = DisconnectOnDrop(state.clone());
    let mut reconnect = Reconnect::new(format!("websocket sink {}", target.url()), state);
    // A message whose write failed, sent first on the next connection.
    let mut pending: Option<WsPayload> = None;
    loop {
        let conn = match ws.as_mut() {
            Some(conn) => conn,
            None => {
                // Connect only once there is something to send, as the queue may stay empty.
                if pending.is_none() {
                    match rx.recv().await {
                        Some(p) => pending = Some(p),
                        None => return,
                    }
                }
                match client::connect(&target).await {
                    Ok(conn) => {
                        reconnect.connected();
                        ws.insert(conn)
                    }
                    Err(reason) => {
                        reconnect.failed(reason).await;
                        continue;
                    }
                }
            }
        };
        let result = match pending.take() {
            Some(p) => conn
                .send(message(&p))
                .await
                .map_err(|e| (Some(p), e.to_string())),
            None => tokio::select! {
                next = rx.recv() => match next {
                    Some(p) => conn.send(message(&p)).await.map_err(|e| (Some(p), e.to_string())),
                    None => {
                        // The sink closed: everything queued went out.
                        let _ = conn.close(None).await;
                        return;
                    }
                },
                // The server's messages are read only to see pings, closes and errors.
                incoming = conn.next() => match incoming {
                    Some(Ok(Message::Close(_))) | None => {
                        Err((None, "the server closed the connection".to_string()))
                    }
                    Some(Err(e)) => Err((None, format!("connection lost: {e}"))),
                    Some(Ok(_)) => Ok(()),
                },
            },
        };
        if let Err((unsent, reason)) = result {
            pending = unsent;
            ws = None;
            reconnect.failed(reason).await;
        }
    }
}

/// The websocket message of a payload: text when it is UTF-8, else binary.
fn message(p: &WsPayload) -> Message {
    if p.text {
        match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(p.data.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(p.data.clone()),
        }
    } else {
        Message::Binary(p.data.clone())
    }
}
