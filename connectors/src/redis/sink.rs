//! The `redis` sink: writes each result row to Redis, eKuiper's way (see [`super::commands`]
//! for what a row becomes).
//!
//! - A batch is one pipeline: every row's command goes out in one write and the answers come
//!   back in one read, so a batch costs one round trip whatever its size.
//! - A row that cannot be written (no key, a bad row kind, a Redis error such as WRONGTYPE)
//!   fails alone: the batch's other rows are written, and the batch's error counts the failed
//!   rows and quotes the first (the rule keeps running).
//! - `sendSingle` changes nothing, since rows are written one by one anyway. A `dataTemplate`
//!   must render a JSON object (a row) or an array of them, which are then written as rows.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::{Map, Value};

use super::link::{Link, outcome};
use super::sink_config::RedisSinkConfig;
use crate::codec::encode;
use crate::{ConnectorError, Sink};

/// Writes result rows to Redis.
#[derive(Debug)]
pub struct RedisSink {
    config: RedisSinkConfig,
    link: Link,
}

impl RedisSink {
    /// A sink with `config`; it connects when the rule starts.
    pub fn new(config: RedisSinkConfig) -> Result<Self, ConnectorError> {
        let link = Link::new(config.server.clone())?;
        Ok(RedisSink { config, link })
    }

    /// The settings this sink was created with.
    pub fn config(&self) -> &RedisSinkConfig {
        &self.config
    }

    /// Writes `n` rows (values in `rows`, JSON text in `json`, each as the config needs).
    async fn write(
        &mut self,
        n: usize,
        rows: &[Map<String, Value>],
        json: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        if n == 0 {
            return Ok(());
        }
        let plan = self.config.plan(n, rows, json);
        let answers = if plan.row_of.is_empty() {
            Vec::new()
        } else {
            self.link.send(plan.pipe).await?
        };
        outcome(n, &answers, &plan.row_of, plan.failures)
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        // A server that is down now may be up by the first batch: each batch reconnects, so
        // only the warning is kept.
        if let Err(e) = self.link.connect().await {
            tracing::warn!(
                "redis sink: {e}; connecting again at the first batch ({})",
                self.link.server().address()
            );
        }
        Ok(())
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let rows = if self.config.needs_rows() {
            encode::batch_to_rows(batch, false)
        } else {
            Vec::new()
        };
        let json = if self.config.needs_json() {
            encode::batch_to_json_objects(batch, false)
        } else {
            Vec::new()
        };
        self.write(batch.num_rows(), &rows, &json).await
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    /// Operator errors under `sendError` (bare text): written as `{"error": text}` rows, as
    /// eKuiper hands them to a sink that takes rows.
    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let rows: Vec<Map<String, Value>> = payloads
            .iter()
            .map(|p| {
                let text = String::from_utf8_lossy(p).into_owned();
                Map::from_iter([("error".to_string(), Value::String(text))])
            })
            .collect();
        self.write(rows.len(), &rows, &[]).await
    }

    /// `dataTemplate` output: each payload must be a row (a JSON object) or a list of rows.
    async fn collect_rendered(
        &mut self,
        _batch: &RecordBatch,
        payloads: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        let mut rows = Vec::new();
        for p in payloads {
            match serde_json::from_slice::<Value>(p) {
                Ok(Value::Object(row)) => rows.push(row),
                Ok(Value::Array(items)) if items.iter().all(Value::is_object) => {
                    rows.extend(items.into_iter().filter_map(|v| match v {
                        Value::Object(row) => Some(row),
                        _ => None,
                    }));
                }
                _ => {
                    return Err(ConnectorError::Io {
                        connector: "redis",
                        reason: format!(
                            "the dataTemplate output must be a JSON object or an array of \
                             objects, got {}",
                            String::from_utf8_lossy(&p[..p.len().min(100)])
                        ),
                    });
                }
            }
        }
        self.write(rows.len(), &rows, &[]).await
    }
}
