//! The cluster as the source and sink see it: partition leaders from metadata, one connection
//! per broker, and the requests they make (produce, fetch, list offsets, and a group's offsets
//! at its coordinator).
//!
//! A request that fails on the connection drops it (the next request connects again) and is
//! tried again, up to `maxAttempts` tries; errors that say the metadata is stale (not the
//! leader, unknown partition) refresh it first. The caller decides what a final failure means.
//! Public so that tests and benchmarks can produce and read a topic without the connector.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FindCoordinatorRequest, GroupId, ListOffsetsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, TopicName,
    create_topics_request::CreatableTopic,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use kafka_protocol::protocol::StrBytes;

use super::config::Connection;
use super::wire::{Conn, Request};

/// Runs one try (`$try`, an awaited expression) until it succeeds or [`Client::again`] says
/// to stop.
macro_rules! with_retries {
    ($client:expr, $topic:expr, $try:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            match $try {
                Ok(v) => break Ok(v),
                Err(e) if !$client.again($topic, tries, &e) => break Err(e),
                Err(_) => {}
            }
        }
    }};
}

/// What went wrong with a request, after its tries.
#[derive(Debug)]
pub struct KafkaError(pub String);

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, KafkaError>;

/// One partition's answer to a fetch.
#[derive(Debug)]
pub struct Fetched {
    /// The partition.
    pub partition: i32,
    /// Its record batches, whole ones only.
    pub records: Option<Bytes>,
    /// The error code (0: none; 1: the offset is out of range).
    pub error: i16,
}

/// Kafka's error code for a fetch offset outside the kept log.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;

/// ListOffsets' timestamps that mean the first and the next offset of a partition.
pub const EARLIEST: i64 = -2;
/// See [`EARLIEST`].
pub const LATEST: i64 = -1;

/// A client of one cluster, used by one source or sink task.
#[derive(Debug)]
pub struct Client {
    settings: Connection,
    /// Open connections by broker id; bootstrap connections use negative ids.
    conns: HashMap<i32, Conn>,
    /// Broker addresses by id, from metadata.
    brokers: HashMap<i32, String>,
    /// Leader broker of each partition of the topics asked about.
    leaders: HashMap<(String, i32), i32>,
    /// Partition count of each topic asked about.
    partitions: HashMap<String, i32>,
}

impl Client {
    /// A client; it connects on the first request.
    pub fn new(settings: Connection) -> Client {
        Client {
            settings,
            conns: HashMap::new(),
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            partitions: HashMap::new(),
        }
    }

    /// The connection to broker `node` (a bootstrap broker when negative), opened if needed.
    async fn conn(&mut self, node: i32) -> Result<&mut Conn> {
        if !self.conns.contains_key(&node) {
            let address = if node < 0 {
                let i = usize::try_from(-node - 1).unwrap_or(0);
                self.settings.brokers[i % self.settings.brokers.len()].clone()
            } else {
                self.brokers
                    .get(&node)
                    .cloned()
                    .ok_or_else(|| KafkaError(format!("broker {node} is not in the metadata")))?
            };
            let conn = Conn::connect(&address, &self.settings)
                .await
                .map_err(KafkaError)?;
            self.conns.insert(node, conn);
        }
        Ok(self.conns.get_mut(&node).expect("inserted above"))
    }

    /// Sends `request` to broker `node`; a failed exchange closes that connection.
    async fn send<R: Request>(&mut self, node: i32, request: &R) -> Result<R::Response> {
        let conn = self.conn(node).await?;
        let sent = conn.send(request).await;
        if sent.is_err() {
            self.conns.remove(&node);
        }
        sent.map_err(KafkaError)
    }

    /// Reads the metadata of `topic` from a bootstrap broker (trying each in turn): its
    /// partitions, their leaders, and every broker's address.
    pub async fn refresh(&mut self, topic: &str) -> Result<i32> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
            ]))
            // eKuiper's writer lets the broker create a missing topic (if it is configured to).
            .with_allow_auto_topic_creation(true);
        let mut last = None;
        for i in 0..self.settings.brokers.len() {
            let node = -(i as i32) - 1;
            match self.send(node, &request).await {
                Ok(response) => {
                    for b in &response.brokers {
                        let address = if b.host.contains(':') {
                            format!("[{}]:{}", b.host.as_str(), b.port)
                        } else {
                            format!("{}:{}", b.host.as_str(), b.port)
                        };
                        if self.brokers.get(&b.node_id.0) != Some(&address) {
                            self.conns.remove(&b.node_id.0);
                            self.brokers.insert(b.node_id.0, address);
                        }
                    }
                    let Some(t) = response
                        .topics
                        .iter()
                        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
                    else {
                        return Err(KafkaError(format!("no metadata for topic \"{topic}\"")));
                    };
                    if let Some(e) = t.error_code.err() {
                        return Err(KafkaError(format!("topic \"{topic}\": {e}")));
                    }
                    if t.partitions.is_empty() {
                        return Err(KafkaError(format!("topic \"{topic}\" has no partitions")));
                    }
                    for p in &t.partitions {
                        self.leaders
                            .insert((topic.to_string(), p.partition_index), p.leader_id.0);
                    }
                    let count = t.partitions.len() as i32;
                    self.partitions.insert(topic.to_string(), count);
                    return Ok(count);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError("no brokers configured".into())))
    }

    /// The partition count of `topic`, from metadata read before or now.
    pub async fn partition_count(&mut self, topic: &str) -> Result<i32> {
        match self.partitions.get(topic) {
            Some(n) => Ok(*n),
            None => self.refresh(topic).await,
        }
    }

    /// The leader of a partition, from metadata read before or now.
    async fn leader(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            self.refresh(topic).await?;
        }
        match self.leaders.get(&key) {
            Some(leader) if *leader >= 0 => Ok(*leader),
            _ => Err(KafkaError(format!(
                "partition {partition} of \"{topic}\" has no leader"
            ))),
        }
    }

    /// After failed try number `tries`: whether to try again (up to `maxAttempts` tries).
    /// Metadata is read again before the next try, as most failures (a lost connection, a
    /// moved leader) are cured by that.
    fn again(&mut self, topic: &str, tries: u32, error: &KafkaError) -> bool {
        if tries >= self.settings.max_attempts {
            return false;
        }
        tracing::debug!("kafka: try {tries} failed: {error}; trying again");
        self.leaders.retain(|(t, _), _| t != topic);
        self.partitions.remove(topic);
        true
    }

    /// Writes one record batch (already encoded) to a partition; `acks` as eKuiper's
    /// `requiredACKs`. With acks 0 the broker does not answer.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<()> {
        with_retries!(
            self,
            topic,
            self.try_produce(topic, partition, records.clone(), acks)
                .await
        )
    }

    async fn try_produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<()> {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]);
        let node = self.leader(topic, partition).await?;
        if acks == 0 {
            let conn = self.conn(node).await?;
            let sent = conn.send_only(&request).await;
            if sent.is_err() {
                self.conns.remove(&node);
            }
            return sent.map_err(KafkaError);
        }
        let response = self.send(node, &request).await?;
        for t in &response.responses {
            for p in &t.partition_responses {
                if let Some(e) = p.error_code.err() {
                    let detail = p
                        .error_message
                        .as_ref()
                        .map(|m| format!(" ({})", m.as_str()))
                        .unwrap_or_default();
                    return Err(KafkaError(format!(
                        "produce to \"{topic}\" partition {partition}: {e}{detail}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fetches from each of `positions` (partition, next offset) of `topic`, waiting up to
    /// `max_wait_ms` for data. Partitions are asked of their leaders, one request per leader.
    pub async fn fetch(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<Vec<Fetched>> {
        let mut by_leader: HashMap<i32, Vec<(i32, i64)>> = HashMap::new();
        for &(partition, offset) in positions {
            let leader = self.leader(topic, partition).await?;
            by_leader
                .entry(leader)
                .or_default()
                .push((partition, offset));
        }
        let mut out = Vec::new();
        for (node, parts) in by_leader {
            let request = FetchRequest::default()
                .with_max_wait_ms(max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|&(p, offset)| {
                                    FetchPartition::default()
                                        .with_partition(p)
                                        .with_fetch_offset(offset)
                                        .with_partition_max_bytes(max_bytes)
                                })
                                .collect(),
                        ),
                ]);
            let response = match self.send(node, &request).await {
                Ok(r) => r,
                Err(e) => {
                    self.leaders.clear();
                    return Err(e);
                }
            };
            if let Some(e) = response.error_code.err() {
                return Err(KafkaError(format!("fetch from \"{topic}\": {e}")));
            }
            for t in response.responses {
                for p in t.partitions {
                    if p.error_code != 0 && p.error_code != OFFSET_OUT_OF_RANGE {
                        // A moved leader or a partition being created: read metadata again.
                        self.leaders.clear();
                        let e = p.error_code.err().map(|e| e.to_string());
                        return Err(KafkaError(format!(
                            "fetch from \"{topic}\" partition {}: {}",
                            p.partition_index,
                            e.unwrap_or_else(|| format!("error code {}", p.error_code))
                        )));
                    }
                    out.push(Fetched {
                        partition: p.partition_index,
                        records: p.records,
                        error: p.error_code,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The offset at `timestamp` ([`EARLIEST`] or [`LATEST`]) of a partition.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64> {
        with_retries!(
            self,
            topic,
            self.try_list_offset(topic, partition, timestamp).await
        )
    }

    async fn try_list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64> {
        let node = self.leader(topic, partition).await?;
        let request = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ]);
        let response = self.send(node, &request).await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| KafkaError(format!("no offsets for partition {partition}")))?;
        if let Some(e) = p.error_code.err() {
            return Err(KafkaError(format!(
                "offsets of \"{topic}\" partition {partition}: {e}"
            )));
        }
        Ok(p.offset)
    }

    /// The broker coordinating `group`.
    async fn coordinator(&mut self, group: &str) -> Result<i32> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let response = self.send(-1, &request).await?;
        if let Some(e) = response.error_code.err() {
            return Err(KafkaError(format!("coordinator of group \"{group}\": {e}")));
        }
        let node = response.node_id.0;
        let address = format!("{}:{}", response.host.as_str(), response.port);
        if self.brokers.get(&node) != Some(&address) {
            self.conns.remove(&node);
            self.brokers.insert(node, address);
        }
        Ok(node)
    }

    /// The offsets `group` committed for `partitions` of `topic` (none: not committed yet).
    pub async fn committed(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>> {
        with_retries!(
            self,
            topic,
            self.try_committed(group, topic, partitions).await
        )
    }

    async fn try_committed(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>> {
        let node = self.coordinator(group).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions.to_vec()),
            ]));
        let response = self.send(node, &request).await?;
        if let Some(e) = response.error_code.err() {
            return Err(KafkaError(format!("offsets of group \"{group}\": {e}")));
        }
        let mut out = HashMap::new();
        for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            if let Some(e) = p.error_code.err() {
                return Err(KafkaError(format!(
                    "offset of group \"{group}\" partition {}: {e}",
                    p.partition_index
                )));
            }
            if p.committed_offset >= 0 {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
        Ok(out)
    }

    /// Commits `offsets` (partition, next offset to read) of `topic` for `group`, as a
    /// consumer outside group membership (generation -1), the way a standalone consumer does.
    pub async fn commit(&mut self, group: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<()> {
        with_retries!(self, topic, self.try_commit(group, topic, offsets).await)
    }

    async fn try_commit(&mut self, group: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<()> {
        let node = self.coordinator(group).await?;
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|&(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                            })
                            .collect(),
                    ),
            ]);
        let response = self.send(node, &request).await?;
        for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            if let Some(e) = p.error_code.err() {
                return Err(KafkaError(format!(
                    "commit of group \"{group}\" partition {}: {e}",
                    p.partition_index
                )));
            }
        }
        Ok(())
    }
}

impl Client {
    /// Creates `topic` with `partitions` partitions (one replica each) through the first
    /// bootstrap broker. Not used by the connector (eKuiper's leaves topic creation to the
    /// broker); for tests and tools.
    pub async fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ]);
        let response = self.send(-1, &request).await?;
        for t in &response.topics {
            if let Some(e) = t.error_code.err() {
                return Err(KafkaError(format!("create topic \"{topic}\": {e}")));
            }
        }
        Ok(())
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}
