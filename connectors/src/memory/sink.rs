//! The memory sink: publishes each result batch to a memory topic.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use super::{MemoryBus, MemoryPayload};
use crate::{ConnectorError, Sink};

/// Settings of a memory sink.
#[derive(Debug, Clone)]
pub struct MemorySinkConfig {
    /// The topic to publish to (no wildcards).
    pub topic: String,
}

impl MemorySinkConfig {
    /// Validates the action's properties: `{"topic": "..."}`.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let topic = props
            .get("topic")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConnectorError::Config {
                connector: "memory",
                reason: "\"topic\" is required".into(),
            })?;
        if topic.contains('+') || topic.contains('#') {
            return Err(ConnectorError::Config {
                connector: "memory",
                reason: format!("sink topic \"{topic}\" must not contain wildcards"),
            });
        }
        Ok(MemorySinkConfig {
            topic: topic.to_string(),
        })
    }
}

/// Publishes batches to the memory bus.
#[derive(Debug)]
pub struct MemorySink {
    bus: MemoryBus,
    config: MemorySinkConfig,
}

impl MemorySink {
    /// A sink publishing on `bus`.
    pub fn new(bus: MemoryBus, config: MemorySinkConfig) -> Self {
        MemorySink { bus, config }
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        self.bus
            .publish(&self.config.topic, MemoryPayload::Batch(batch.clone()))
            .await;
        Ok(())
    }
}
