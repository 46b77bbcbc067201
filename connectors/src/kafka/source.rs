//! The Kafka source: reads the stream's topic and hands each record's value to the rule
//! undecoded, with the topic for `meta(topic)`.
//!
//! - With `groupID`, every partition of the topic is read from the offsets the group committed
//!   (`offsetReset` where it has none), and after each fetch's messages are handed to the rule
//!   the next offsets are committed, so a restarted rule resumes where it stopped: at least
//!   once (what was handed over but not yet committed when it stopped is read again), nothing
//!   lost. The commits are made outside group membership (generation -1), so two rules with
//!   the same group each read every partition instead of sharing them.
//! - Without it, only `partition` is read, from `offsetReset`, and nothing is committed.
//! - Connection failures are logged and retried with exponential backoff (100 ms doubling to
//!   5 s); the positions reached are kept across reconnects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::client::{Client, EARLIEST, KafkaError, LATEST, OFFSET_OUT_OF_RANGE};
use super::config::{KafkaSourceConfig, OffsetReset};
use super::records;
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};
use async_trait::async_trait;

/// How long a fetch waits at the broker for new messages before answering empty.
const FETCH_WAIT_MS: i32 = 500;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Reads a Kafka topic. Runs until its task is dropped; failures are retried forever (see the
/// module doc), only a stopped rule ends it.
#[derive(Debug)]
pub struct KafkaSource {
    config: KafkaSourceConfig,
    /// The next offset to read of each partition, kept across reconnects.
    positions: BTreeMap<i32, i64>,
    /// What the group has committed, as far as this source knows: a commit that failed is
    /// made again after the reconnect.
    committed: BTreeMap<i32, i64>,
    /// The connection's state, shown in the rule status as for MQTT.
    state: Arc<crate::mqtt::ConnectionState>,
}

impl KafkaSource {
    /// A source with `config`; it connects when it runs.
    pub fn new(config: KafkaSourceConfig) -> Self {
        KafkaSource {
            config,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            state: Arc::default(),
        }
    }

    /// The settings this source was created with.
    pub fn config(&self) -> &KafkaSourceConfig {
        &self.config
    }

    /// Where each partition starts: the group's committed offset, else `offsetReset`.
    async fn start(&mut self, client: &mut Client) -> Result<(), KafkaError> {
        let topic = &self.config.topic;
        let partitions: Vec<i32> = match &self.config.group {
            Some(_) => (0..client.refresh(topic).await?).collect(),
            None => vec![self.config.partition],
        };
        let committed = match &self.config.group {
            Some(group) => client.committed(group, topic, &partitions).await?,
            None => Default::default(),
        };
        self.committed
            .extend(committed.iter().map(|(p, o)| (*p, *o)));
        for p in partitions {
            if self.positions.contains_key(&p) {
                continue;
            }
            let offset = match committed.get(&p) {
                Some(o) => *o,
                None => self.reset(client, p).await?,
            };
            self.positions.insert(p, offset);
        }
        Ok(())
    }

    /// The offset `offsetReset` names for partition `p`.
    async fn reset(&self, client: &mut Client, p: i32) -> Result<i64, KafkaError> {
        let at = match self.config.offset_reset {
            OffsetReset::Earliest => EARLIEST,
            OffsetReset::Latest => LATEST,
        };
        client.list_offset(&self.config.topic, p, at).await
    }

    /// One connection's life: start, then fetch, hand over and commit until something fails.
    /// `Ok` never returns; a stopped rule is `Closed`.
    async fn session(
        &mut self,
        out: &SourceOutput,
        topic_name: &Arc<str>,
        connected: &mut bool,
    ) -> Result<(), Failure> {
        let mut client = Client::new(self.config.connection.clone());
        self.start(&mut client).await?;
        self.state.set_connected();
        if !*connected {
            tracing::info!(
                "kafka source {} connected to {}",
                self.config.topic,
                self.config.connection.brokers.join(",")
            );
            *connected = true;
        }
        let topic = self.config.topic.clone();
        let max_bytes = self.config.max_bytes as i32;
        loop {
            let positions: Vec<(i32, i64)> = self.positions.iter().map(|(p, o)| (*p, *o)).collect();
            let fetched = client
                .fetch(&topic, &positions, max_bytes, FETCH_WAIT_MS)
                .await?;
            let mut batch = Vec::new();
            for f in fetched {
                let Some(position) = self.positions.get(&f.partition).copied() else {
                    continue;
                };
                if f.error == OFFSET_OUT_OF_RANGE {
                    let offset = self.reset(&mut client, f.partition).await?;
                    tracing::warn!(
                        "kafka source {topic}: offset {position} of partition {} is no longer \
                         kept; going on from {offset} (offsetReset)",
                        f.partition
                    );
                    self.positions.insert(f.partition, offset);
                    continue;
                }
                let Some(data) = f.records else { continue };
                let messages = records::decode(data.clone(), position)
                    .map_err(|e| Failure::Kafka(KafkaError(format!("{topic}: {e}"))))?;
                batch.extend(
                    messages
                        .into_iter()
                        .map(|(_, m)| RawMessage::new(m.value, topic_name.clone())),
                );
                let next = records::next_offset(&data).unwrap_or(position);
                if next > position {
                    self.positions.insert(f.partition, next);
                }
            }
            if !batch.is_empty() {
                out.send(SourceEvent::Raw(batch))
                    .await
                    .map_err(|_| Failure::Closed)?;
            }
            // Committed only once the messages are with the rule: at least once.
            if let Some(group) = &self.config.group {
                let moved: Vec<(i32, i64)> = self
                    .positions
                    .iter()
                    .filter(|(p, o)| self.committed.get(p) != Some(o))
                    .map(|(p, o)| (*p, *o))
                    .collect();
                if !moved.is_empty() {
                    client.commit(group, &topic, &moved).await?;
                    self.committed.extend(moved);
                }
            }
        }
    }
}

/// Why a session ended.
enum Failure {
    /// The rule stopped.
    Closed,
    /// The cluster failed; try again after a backoff.
    Kafka(KafkaError),
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        Failure::Kafka(e)
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn connection(&self) -> Option<Arc<crate::mqtt::ConnectionState>> {
        Some(self.state.clone())
    }

    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let _disconnect = crate::mqtt::DisconnectOnDrop(self.state.clone());
        let topic: Arc<str> = Arc::from(self.config.topic.as_str());
        let mut failures = 0u32;
        let mut connected = false;
        loop {
            match self.session(&out, &topic, &mut connected).await {
                Ok(()) => {}
                Err(Failure::Closed) => return Err(ConnectorError::Closed),
                Err(Failure::Kafka(e)) => {
                    self.state.set_error(e.to_string());
                    // A session that had worked starts the backoff over.
                    failures = if connected { 1 } else { failures + 1 };
                    connected = false;
                    let delay = FIRST_BACKOFF
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(MAX_BACKOFF);
                    if failures == 1 {
                        tracing::warn!(
                            "kafka source {}: {e}; retrying with backoff up to {MAX_BACKOFF:?}",
                            self.config.topic
                        );
                    } else {
                        tracing::debug!(
                            "kafka source {}: attempt {failures} failed: {e}; retrying in {delay:?}",
                            self.config.topic
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
