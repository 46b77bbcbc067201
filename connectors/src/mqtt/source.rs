//! The MQTT source: subscribes to the stream's topic filter and forwards publishes undecoded.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use async_trait::async_trait;

use super::client::{self, Client, Event, EventLoop, Failure};
use super::durable::{Durable, Handoff, Next};
use super::rate::Rate;
use super::redelivery::Redeliveries;
use super::shared::Lease;
use super::{Backoff, ConnectionState, DisconnectOnDrop, MqttConnections, MqttSourceConfig};
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// Messages gathered into one event when they are already buffered.
const MAX_GATHER: usize = 1024;

/// The wait between events above [`super::rate::HIGH_RATE`] messages per second (the runtime's timer
/// rounds it up to its 1 ms tick).
///
/// Each event costs the same fixed work whatever its size: a wake-up of a worker, a step of
/// the rule's dataflow, a socket read and an `epoll_wait`. Reading as soon as data arrives
/// gave events of about 6 messages at 60k msgs/s, and that fixed work was most of quiverd's
/// CPU per message. Waiting lets the kernel gather the messages instead. Below this rate
/// (the latency benchmark's 10k msgs/s among them) nothing waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// Reads an MQTT topic filter. Runs until its task is dropped; connection failures are
/// retried forever (see the module doc), only a stopped rule ends it.
#[derive(Debug)]
pub struct MqttSource {
    config: MqttSourceConfig,
    state: Arc<ConnectionState>,
    /// The named connection whose client it shares (`connectionSelector`).
    shared: Option<Lease>,
}

impl MqttSource {
    /// A source with `config`; it connects when it runs.
    pub fn new(config: MqttSourceConfig) -> Self {
        MqttSource {
            config,
            state: Arc::default(),
            shared: None,
        }
    }

    /// A source with `config` that subscribes through the client of the connection its
    /// `connectionSelector` names, looked up in `connections`.
    pub fn with_connections(
        config: MqttSourceConfig,
        connections: &MqttConnections,
    ) -> Result<Self, ConnectorError> {
        let Some(id) = &config.connection else {
            return Ok(MqttSource::new(config));
        };
        let lease = connections.lease(id)?;
        Ok(MqttSource {
            state: lease.state(),
            config: MqttSourceConfig {
                broker: lease.broker().clone(),
                ..config
            },
            shared: Some(lease),
        })
    }

    /// The live connection state, updated while the source runs.
    pub fn status(&self) -> Arc<ConnectionState> {
        self.state.clone()
    }

    /// The settings this source was created with.
    pub fn config(&self) -> &MqttSourceConfig {
        &self.config
    }
}

/// What one event of the event loop means for the source.
enum Step {
    /// Nothing to forward (acks, pings, outgoing packets).
    Nothing,
    /// The broker accepted a (new) connection.
    Connected,
    /// A message to forward, and whether the broker flagged it as sent again (DUP).
    Message(RawMessage, bool),
    /// The connection failed (why); wait before the next attempt.
    Failed(String),
}

#[async_trait]
impl Source for MqttSource {
    fn connection(&self) -> Option<Arc<ConnectionState>> {
        Some(self.status())
    }

    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        if let Some(lease) = &self.shared {
            return run_shared(lease, &self.config, out).await;
        }
        let config = &self.config;
        // A rule that logs its input (qos 1 and 2) acknowledges each message once its record is
        // synced, and keeps its session while away, so the broker sends again what was not.
        let durable = out.is_logged();
        let (client, mut eventloop) = client::connect(&client::Connect {
            broker: &config.broker,
            client_id: &config.client_id,
            credentials: config.credentials.as_ref(),
            tls: config.tls.as_ref(),
            protocol: config.protocol,
            durable,
        });
        let _disconnect = DisconnectOnDrop(self.state.clone());
        let mut logged = Redeliveries::default();
        if durable {
            // What the last run logged: a message it logged and could not acknowledge before
            // it stopped (a crash) comes back flagged DUP on the persistent session.
            let tail = out.recently_logged(super::redelivery::KEPT);
            logged.extend(Redeliveries::digests(&tail));
        }
        let mut durable =
            durable.then(|| Durable::start(client.clone(), out.clone(), config.topic.clone()));
        let mut repeats = 0u64;
        let mut backoff = Backoff::new();
        let mut failures = 0u64;
        // Messages on one topic share its name instead of allocating it per message.
        let mut topic: Option<Arc<str>> = None;
        let mut rate = Rate::new();
        loop {
            // A durable source gathers while the log thread syncs (or lingers, see
            // `pacing.rs`) instead: the broker sends at most its in-flight limit (Mosquitto's
            // 20) before our acks, so a linger here would cap the rate at that many messages
            // per timer tick, and behind a wide window it would leave the log thread's
            // lingers empty.
            if rate.high && durable.is_none() {
                tokio::time::sleep(LINGER).await;
            }
            let mut batch = Vec::new();
            let mut failed = None;
            let first = match &mut durable {
                Some(d) => tokio::select! {
                    event = eventloop.poll() => event,
                    next = d.next() => match next {
                        Next::Acks(acks) => {
                            send_acks(&mut eventloop, d, acks, &config.topic).await;
                            continue;
                        }
                        Next::Ended(e) => return Err(e),
                    },
                },
                None => eventloop.poll().await,
            };
            let mut connection = durable.as_ref().map_or(0, Durable::connection);
            let mut next = Some(first);
            // (QoS, packet id) of the batch's messages, sent again ones included, in order.
            let mut acks = Vec::new();
            while let Some(event) = next.take() {
                match self.handle(&client, event, &mut backoff, &mut failures, &mut topic) {
                    Step::Nothing => {}
                    Step::Connected => {
                        if let Some(d) = &durable {
                            d.reconnected();
                            connection = d.connection();
                        }
                    }
                    Step::Message(msg, dup) => {
                        if durable.is_some()
                            && let (Some(qos), Some(pkid)) = (msg.qos, msg.message_id)
                        {
                            acks.push((qos, pkid));
                        }
                        // Logged before the connection dropped, its ack lost with it: acked
                        // again (once its record is durable), not logged twice.
                        if durable.is_some() && dup && logged.is_repeat(&msg) {
                            repeats += 1;
                        } else {
                            batch.push(msg);
                        }
                    }
                    Step::Failed(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if batch.len() < MAX_GATHER {
                    // Only what is already buffered: never wait to fill a batch.
                    next = poll_once(eventloop.poll()).await;
                }
            }
            if !batch.is_empty() {
                rate.count(batch.len());
            }
            match &mut durable {
                Some(d) => {
                    logged.extend(Redeliveries::digests(&batch));
                    d.hand(Handoff {
                        messages: batch,
                        acks,
                        connection,
                    })
                    .await?;
                    if failed.is_some() {
                        // What came on the failed connection is not acknowledged on the next.
                        d.reconnected();
                    }
                    let acks = d.ready_acks();
                    send_acks(&mut eventloop, d, acks, &config.topic).await;
                }
                None if !batch.is_empty() => out.send(SourceEvent::Raw(batch)).await?,
                None => {}
            }
            if repeats > 0 {
                tracing::info!(
                    "mqtt source {}: {repeats} messages the broker sent again after a reconnect were logged already; acknowledged, not logged twice",
                    config.topic
                );
                repeats = 0;
            }
            if let Some(reason) = failed {
                failures += 1;
                let delay = backoff.next_delay();
                if failures == 1 {
                    tracing::warn!(
                        "mqtt source {} ({}): connection failed: {reason}; retrying every {:?} to {:?}",
                        config.topic,
                        config.broker,
                        delay,
                        super::MAX_BACKOFF,
                    );
                } else {
                    tracing::debug!(
                        "mqtt source {} ({}): attempt {failures} failed: {reason}; retrying in {delay:?}",
                        config.topic,
                        config.broker,
                    );
                }
                self.state.set_error(reason);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

impl MqttSource {
    fn handle(
        &self,
        client: &Client,
        event: Result<Event, Failure>,
        backoff: &mut Backoff,
        failures: &mut u64,
        last_topic: &mut Option<Arc<str>>,
    ) -> Step {
        let config = &self.config;
        match event {
            Ok(Event::Message {
                topic,
                payload,
                qos,
                pkid,
                dup,
            }) => Step::Message(
                RawMessage {
                    payload,
                    topic: match last_topic {
                        Some(t) if t.as_bytes() == &topic[..] => t.clone(),
                        _ => last_topic
                            .insert(Arc::from(String::from_utf8_lossy(&topic)))
                            .clone(),
                    },
                    qos: Some(qos),
                    message_id: Some(pkid),
                },
                dup,
            ),
            Ok(Event::Connected) => {
                // A clean session forgets subscriptions: subscribe on every (re)connect.
                backoff.reset();
                if *failures > 0 {
                    tracing::info!(
                        "mqtt source {} reconnected to {} after {} failed attempts",
                        config.topic,
                        config.broker,
                        failures
                    );
                } else {
                    tracing::info!(
                        "mqtt source {} connected to {}",
                        config.topic,
                        config.broker
                    );
                }
                *failures = 0;
                self.state.set_connected();
                if let Err(e) = client.try_subscribe(&config.topic, config.qos) {
                    let reason = format!("could not subscribe to \"{}\": {e}", config.topic);
                    tracing::error!("mqtt source: {reason}");
                    self.state.record_error(reason);
                }
                Step::Connected
            }
            Ok(Event::Subscribed { refused: true }) => {
                let reason = format!(
                    "the broker refused the subscription to \"{}\"",
                    config.topic
                );
                tracing::error!("mqtt source: {reason}");
                self.state.record_error(reason);
                Step::Nothing
            }
            Ok(_) => Step::Nothing,
            Err(Failure::Error(reason)) => Step::Failed(reason),
            // The client handle lives as long as this loop, so this does not happen; treat it
            // as a failure to retry rather than spin.
            Err(Failure::RequestsDone) => Step::Failed("the MQTT client stopped".into()),
        }
    }
}

/// Acknowledges `acks` (of durable messages) on the event loop's connection in one flush, or
/// through the client where the loop cannot write (MQTT 5).
async fn send_acks(
    eventloop: &mut EventLoop,
    durable: &Durable,
    acks: Vec<(u8, u16)>,
    topic: &str,
) {
    if acks.is_empty() {
        return;
    }
    match eventloop.write_acks(&acks).await {
        Ok(true) => {}
        Ok(false) => durable.ack_through_client(acks),
        // The connection failed: the next poll reconnects, and the broker sends them again.
        Err(e) => tracing::debug!("mqtt source {topic}: acks not written: {e}"),
    }
}

/// Reads the stream's filter through a shared connection's route until the rule stops.
async fn run_shared(
    lease: &Lease,
    config: &MqttSourceConfig,
    out: SourceOutput,
) -> Result<(), ConnectorError> {
    let mut subscription = lease.subscribe(&config.topic, config.qos);
    tracing::info!(
        "mqtt source {} subscribed through connection \"{}\"",
        config.topic,
        lease.id()
    );
    while let Some(first) = subscription.recv().await {
        let mut batch = vec![first];
        // Only what is already queued: never wait to fill a batch.
        while batch.len() < MAX_GATHER {
            match subscription.try_recv() {
                Some(msg) => batch.push(msg),
                None => break,
            }
        }
        out.send(SourceEvent::Raw(batch)).await?;
    }
    Err(ConnectorError::Io {
        connector: "mqtt",
        reason: format!("connection \"{}\" was closed", lease.id()),
    })
}

/// Polls `fut` once: its output if it is ready now, `None` if it would wait (it is dropped).
async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}
