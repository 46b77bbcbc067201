//! The MQTT sink: publishes each result batch as JSON, eKuiper's shape.
//!
//! A driver task owns the rumqttc event loop and reconnects with backoff; `collect_list` hands
//! publishes to it through a bounded queue, so a sink whose broker is away waits (back-pressure)
//! instead of buffering without limit. Messages the client had queued when the connection broke
//! are dropped (clean session), as eKuiper does without `enableCache`. With the host's sink
//! cache (`enableCache`), publishes fail at once while the client is not connected, so the
//! cache keeps them and sends them again after the reconnection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::client::{self, Client, Event, EventLoop, Failure};
use super::shared::Lease;
use super::{ConnectionState, DisconnectOnDrop, MqttConnections, MqttSinkConfig, Reconnects};
use crate::{ConnectorError, Sink};

/// How long `close` waits for queued publishes to go out before dropping the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes result batches to an MQTT topic.
#[derive(Debug)]
pub struct MqttSink {
    config: MqttSinkConfig,
    state: Arc<ConnectionState>,
    client: Option<Client>,
    driver: Option<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
    /// Refuse publishes while disconnected (the host caches them, `enableCache`).
    fail_fast: bool,
    /// The named connection whose client it shares (`connectionSelector`).
    shared: Option<Lease>,
}

impl MqttSink {
    /// A sink with `config`; it connects in [`Sink::connect`] (or on the first batch).
    pub fn new(config: MqttSinkConfig) -> Self {
        MqttSink {
            config,
            state: Arc::default(),
            client: None,
            driver: None,
            closing: Arc::default(),
            fail_fast: false,
            shared: None,
        }
    }

    /// A sink with `config` that publishes through the client of the connection its
    /// `connectionSelector` names, looked up in `connections`.
    pub fn with_connections(
        config: MqttSinkConfig,
        connections: &MqttConnections,
    ) -> Result<Self, ConnectorError> {
        let Some(id) = &config.connection else {
            return Ok(MqttSink::new(config));
        };
        let lease = connections.lease(id)?;
        let mut sink = MqttSink::new(MqttSinkConfig {
            broker: lease.broker().clone(),
            ..config
        });
        sink.state = lease.state();
        sink.shared = Some(lease);
        Ok(sink)
    }

    /// The live connection state, updated by the driver task.
    pub fn status(&self) -> Arc<ConnectionState> {
        self.state.clone()
    }

    /// The settings this sink was created with.
    pub fn config(&self) -> &MqttSinkConfig {
        &self.config
    }

    /// Queues one message, waiting while the client's queue is full.
    async fn publish(&mut self, payload: Vec<u8>) -> Result<(), ConnectorError> {
        if self.client.is_none() {
            self.connect().await?;
        }
        if self.fail_fast && !self.state.is_connected() {
            return Err(ConnectorError::Io {
                connector: "mqtt",
                reason: format!(
                    "sink {}: not connected to {}; message kept in the sink cache",
                    self.config.topic, self.config.broker
                ),
            });
        }
        let client = self.client.as_ref().expect("connected above");
        client
            .publish(
                self.config.topic.as_str(),
                self.config.qos,
                self.config.retained,
                payload,
            )
            .await
            .map_err(|_| ConnectorError::Io {
                connector: "mqtt",
                reason: format!(
                    "sink {}: the client stopped; message not published",
                    self.config.topic
                ),
            })
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        if self.client.is_some() {
            return Ok(());
        }
        if let Some(lease) = &self.shared {
            self.client = Some(lease.client());
            return Ok(());
        }
        let config = &self.config;
        let (client, eventloop) = client::connect(&client::Connect {
            broker: &config.broker,
            client_id: &config.client_id,
            credentials: config.credentials.as_ref(),
            tls: config.tls.as_ref(),
            protocol: config.protocol,
            durable: false,
        });
        self.closing.store(false, Ordering::Release);
        self.driver = Some(tokio::spawn(drive(
            eventloop,
            self.state.clone(),
            self.closing.clone(),
            format!("{} ({})", config.topic, config.broker),
        )));
        self.client = Some(client);
        Ok(())
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = &self.config;
        let messages = c
            .format
            .messages(batch, c.send_single, c.send_nil, c.omit_if_empty)?;
        for payload in messages {
            self.publish(payload).await?;
        }
        Ok(())
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    fn fail_fast(&mut self) {
        self.fail_fast = true;
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let c = &self.config;
        for p in c.format.payloads(payloads, c.send_single)? {
            self.publish(p).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if self.shared.is_some() {
            // The connection's client stays up for its other users.
            self.client = None;
            return Ok(());
        }
        self.closing.store(true, Ordering::Release);
        if let Some(client) = self.client.take() {
            // Queued after every publish, so those go out first.
            client.try_disconnect();
        }
        if let Some(mut driver) = self.driver.take()
            && tokio::time::timeout(CLOSE_TIMEOUT, &mut driver)
                .await
                .is_err()
        {
            tracing::warn!(
                "mqtt sink {}: queued messages not sent within {CLOSE_TIMEOUT:?}; closing anyway",
                self.config.topic
            );
            driver.abort();
        }
        self.state.set_disconnected();
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// Runs the event loop until the sink disconnects, reconnecting with backoff on errors.
async fn drive(
    mut eventloop: EventLoop,
    state: Arc<ConnectionState>,
    closing: Arc<AtomicBool>,
    label: String,
) {
    let _disconnect = DisconnectOnDrop(state.clone());
    let mut reconnects = Reconnects::new(format!("mqtt sink {label}"));
    loop {
        match eventloop.poll().await {
            Ok(Event::Connected) => reconnects.connected(&state),
            Ok(Event::Disconnected) => return,
            Ok(_) => {}
            Err(Failure::RequestsDone) => return,
            Err(_) if closing.load(Ordering::Acquire) => return,
            Err(Failure::Error(reason)) => reconnects.failed(&state, reason).await,
        }
    }
}
