//! The `redisPub` sink: publishes results to a Redis channel, eKuiper's way.
//!
//! - A batch is one message holding a JSON array of its rows; with `sendSingle` each row is a
//!   message of its own holding a JSON object. A `dataTemplate`'s output is published as it
//!   is, one message per rendered payload.
//! - The messages of a batch are pipelined: one round trip per batch.
//! - A failed PUBLISH counts as the batch's error (the rule keeps running).

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use super::link::{Link, outcome};
use super::pubsub_config::RedisPubConfig;
use crate::{ConnectorError, Sink};

/// Publishes result batches to a Redis channel.
#[derive(Debug)]
pub struct RedisPubSink {
    config: RedisPubConfig,
    link: Link,
}

impl RedisPubSink {
    /// A sink with `config`; it connects when the rule starts.
    pub fn new(config: RedisPubConfig) -> Result<Self, ConnectorError> {
        let link = Link::new(config.server.clone())?;
        Ok(RedisPubSink { config, link })
    }

    /// Publishes each payload to the channel in one pipeline.
    async fn publish(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for p in payloads {
            pipe.cmd("PUBLISH")
                .arg(&self.config.channel)
                .arg(p.as_slice());
        }
        let answers = self.link.send(pipe).await?;
        let row_of: Vec<usize> = (0..payloads.len()).collect();
        outcome(payloads.len(), &answers, &row_of, Vec::new())
    }
}

#[async_trait]
impl Sink for RedisPubSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        // As the redis sink: a server that is down now is tried again at each batch.
        if let Err(e) = self.link.connect().await {
            tracing::warn!("redisPub sink: {e}; connecting again at the first batch");
        }
        Ok(())
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = &self.config;
        let messages = c
            .format
            .messages(batch, c.send_single, false, c.omit_if_empty)?;
        self.publish(&messages).await
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let messages = self
            .config
            .format
            .payloads(payloads, self.config.send_single)?;
        self.publish(&messages).await
    }
}
