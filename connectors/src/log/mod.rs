//! The `log` sink: writes each result as JSON to the server log (eKuiper's `log` action).

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use crate::codec::sink_format::SinkFormat;
use crate::{ConnectorError, Sink};

/// Settings of a log sink.
#[derive(Debug, Clone, Default)]
pub struct LogSinkConfig {
    /// Log one line per row instead of one JSON array per emission (`sendSingle`).
    pub send_single: bool,
    /// `format` (with `delimiter`, `hasHeader`, `fields`); no compression, the log is text.
    pub format: std::sync::Arc<SinkFormat>,
}

impl LogSinkConfig {
    /// Reads the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let send_single = match props.get("sendSingle") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ConnectorError::Config {
                    connector: "log",
                    reason: format!("\"sendSingle\" must be a boolean, got {other}"),
                });
            }
        };
        let format = SinkFormat::parse(&crate::props::action_props("log", props)?, false)?;
        Ok(LogSinkConfig {
            send_single,
            format: std::sync::Arc::new(format),
        })
    }
}

/// Logs results at info level under the `quiver::sink::log` target.
#[derive(Debug)]
pub struct LogSink {
    config: LogSinkConfig,
}

impl LogSink {
    /// A log sink.
    pub fn new(config: LogSinkConfig) -> Self {
        LogSink { config }
    }
}

#[async_trait]
impl Sink for LogSink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = &self.config;
        for m in c.format.messages(batch, c.send_single, false, false)? {
            tracing::info!(target: "quiver::sink::log", "{}", String::from_utf8_lossy(&m));
        }
        Ok(())
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let c = &self.config;
        for p in &c.format.payloads(payloads, c.send_single)? {
            tracing::info!(target: "quiver::sink::log", "{}", String::from_utf8_lossy(p));
        }
        Ok(())
    }
}
