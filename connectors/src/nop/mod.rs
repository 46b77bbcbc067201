//! The `nop` sink (eKuiper's): accepts every result and drops it, for trying rules and
//! measuring them without a destination. With `log: true` it logs them like the `log` sink.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use crate::log::{LogSink, LogSinkConfig};
use crate::props::action_props;
use crate::{ConnectorError, Sink};

/// Settings of a nop sink.
#[derive(Debug, Clone, Default)]
pub struct NopSinkConfig {
    /// Log each result instead of dropping it silently (`log`, default false).
    pub log: bool,
    /// With `log`: one line per row (`sendSingle`).
    pub send_single: bool,
}

impl NopSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let props = action_props("nop", props)?;
        props.refuse_unknown_sink_keys("nop sink", &crate::spec::sink_spec("nop").accepted())?;
        // Dropping an empty batch or not is the same for a sink that drops everything.
        props.boolean("omitifempty")?;
        Ok(NopSinkConfig {
            log: props.boolean("log")?.unwrap_or(false),
            send_single: props.boolean("sendsingle")?.unwrap_or(false),
        })
    }
}

/// Drops (or logs) every result.
#[derive(Debug)]
pub struct NopSink {
    log: Option<LogSink>,
}

impl NopSink {
    /// A nop sink.
    pub fn new(config: NopSinkConfig) -> Self {
        NopSink {
            log: config.log.then(|| {
                LogSink::new(LogSinkConfig {
                    send_single: config.send_single,
                    ..LogSinkConfig::default()
                })
            }),
        }
    }
}

#[async_trait]
impl Sink for NopSink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        match &mut self.log {
            Some(log) => log.collect_list(batch).await,
            None => Ok(()),
        }
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        match &mut self.log {
            Some(log) => log.collect_payloads(payloads).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties() {
        assert!(!NopSinkConfig::parse(&json!({})).unwrap().log);
        assert!(NopSinkConfig::parse(&json!({"log": "true"})).unwrap().log);
        let e = NopSinkConfig::parse(&json!({"lg": true})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid nop configuration: nop sink: unknown property \"lg\""
        );
        assert!(NopSinkConfig::parse(&json!({"log": 1})).is_err());
    }
}
