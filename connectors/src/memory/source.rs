//! The memory source: a subscription on the memory bus.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{MemoryBus, MemoryPayload};
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// Messages gathered into one event when they are already queued (amortises per-event cost).
const MAX_GATHER: usize = 1024;

/// Settings of a memory source.
#[derive(Debug, Clone)]
pub struct MemorySourceConfig {
    /// The topic filter (`DATASOURCE`), wildcards allowed.
    pub topic: String,
}

impl MemorySourceConfig {
    /// Validates the stream's DATASOURCE and properties.
    pub fn parse(datasource: &str, _props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        if datasource.is_empty() {
            return Err(ConnectorError::Config {
                connector: "memory",
                reason: "DATASOURCE (the topic) is required".into(),
            });
        }
        Ok(MemorySourceConfig {
            topic: datasource.to_string(),
        })
    }
}

/// Reads a memory topic.
#[derive(Debug)]
pub struct MemorySource {
    bus: MemoryBus,
    config: MemorySourceConfig,
    rx: Option<tokio::sync::mpsc::Receiver<super::MemoryMessage>>,
}

impl MemorySource {
    /// A source on `bus`. It subscribes at once, so messages published after the rule is
    /// created are not missed while the task starts.
    pub fn new(bus: MemoryBus, config: MemorySourceConfig) -> Self {
        let rx = Some(bus.subscribe(&config.topic));
        MemorySource { bus, config, rx }
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let mut rx = match self.rx.take() {
            Some(rx) => rx,
            None => self.bus.subscribe(&self.config.topic),
        };
        // A rule that logs its input (qos 1 and 2) holds each publisher's receipt until the
        // message is logged, so a pushed request is answered only once it is safe.
        let logged = out.is_logged();
        let mut receipts = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut raw = Vec::new();
            let mut next = Some(first);
            while let Some(mut msg) = next.take() {
                if let Some(r) = msg.take_receipt() {
                    if logged {
                        receipts.push(r);
                    } else {
                        // Read: as far as a rule that keeps no log takes a message.
                        let _ = r.send(());
                    }
                }
                match msg.payload {
                    MemoryPayload::Json(payload) => raw.push(RawMessage::new(payload, msg.topic)),
                    MemoryPayload::Batch(batch) => {
                        if !raw.is_empty() {
                            out.send(SourceEvent::Raw(std::mem::take(&mut raw))).await?;
                        }
                        out.send(SourceEvent::Batch(batch)).await?;
                    }
                }
                if raw.len() < MAX_GATHER {
                    next = rx.try_recv().ok();
                }
            }
            if !raw.is_empty() {
                out.send(SourceEvent::Raw(raw)).await?;
            }
            // Logged: confirmed. (A failed send returns above: dropped unconfirmed.)
            for r in receipts.drain(..) {
                let _ = r.send(());
            }
        }
        Ok(())
    }
}
