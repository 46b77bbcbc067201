//! The `simulator` source (eKuiper's): replays a list of rows from its profile at a fixed
//! interval, once or in a loop, for trying rules without a device.
//!
//! - `data`: the rows (a list of objects, or one object); default eKuiper's sample row
//!   `{"temperature": 22.5, "humidity": 50}`.
//! - `interval`: milliseconds (or a duration such as `"1s"`) between two rows; default 10.
//!   The first row goes out at once.
//! - `loop`: start again after the last row (default true, eKuiper's shipped profile); when
//!   false the input ends after one pass, so the rule finishes.
//!
//! Each row reaches the rule as a JSON message, decoded like any other source's, with the
//! stream's `DATASOURCE` as its topic.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::props::Props;
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

const CONNECTOR: &str = "simulator";

/// eKuiper's shipped default interval (`etc/sources/simulator.yaml`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

/// The most rows a profile may hold: they are kept in memory and replayed.
pub const MAX_ROWS: usize = 100_000;

/// Settings of a simulator source.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The rows to replay, each as JSON text.
    pub rows: Vec<bytes::Bytes>,
    /// The wait between two rows.
    pub interval: Duration,
    /// Replay from the start after the last row.
    pub looping: bool,
    /// The topic the rows carry (`DATASOURCE`, may be empty).
    pub topic: Arc<str>,
}

impl SimulatorConfig {
    /// Validates the stream's profile.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new(CONNECTOR, props);
        p.refuse_unknown(
            "simulator source",
            &crate::spec::source_spec(CONNECTOR).accepted(),
        )?;
        let rows: Vec<Value> = match p.get("data") {
            None => vec![json!({"temperature": 22.5, "humidity": 50})],
            Some((_, Value::Array(items))) => items.clone(),
            Some((_, obj @ Value::Object(_))) => vec![obj.clone()],
            Some((name, other)) => {
                return Err(p.error(format!(
                    "\"{name}\" must be a list of rows (objects), got {other}"
                )));
            }
        };
        if rows.is_empty() {
            return Err(p.error("\"data\" must hold at least one row".into()));
        }
        if rows.len() > MAX_ROWS {
            return Err(p.error(format!(
                "\"data\" holds {} rows, above the limit of {MAX_ROWS}",
                rows.len()
            )));
        }
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, row)| match row {
                Value::Object(_) => Ok(bytes::Bytes::from(row.to_string())),
                other => Err(p.error(format!("\"data\" row {i} must be an object, got {other}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let interval = match p.duration("interval")? {
            None if p.get("interval").is_some() => {
                return Err(p.error("\"interval\" must be at least 1 ms".into()));
            }
            None => DEFAULT_INTERVAL,
            Some(d) => d,
        };
        Ok(SimulatorConfig {
            rows,
            interval,
            looping: p.boolean("loop")?.unwrap_or(true),
            topic: datasource.into(),
        })
    }
}

/// Replays the profile's rows.
#[derive(Debug)]
pub struct SimulatorSource {
    config: SimulatorConfig,
}

impl SimulatorSource {
    /// A source with `config`.
    pub fn new(config: SimulatorConfig) -> Self {
        SimulatorSource { config }
    }
}

#[async_trait]
impl Source for SimulatorSource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let mut ticker = tokio::time::interval(self.config.interval);
        // A slow rule delays the next row rather than bunching the missed ones together.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            for row in &self.config.rows {
                ticker.tick().await;
                let message = RawMessage::new(row.clone(), self.config.topic.clone());
                out.send(SourceEvent::Raw(vec![message])).await?;
            }
            if !self.config.looping {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(props: Value) -> Result<SimulatorConfig, String> {
        SimulatorConfig::parse("sim", props.as_object().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse(json!({})).unwrap();
        assert_eq!(c.rows, [r#"{"humidity":50,"temperature":22.5}"#]);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert!(c.looping);
        let c = parse(json!({"data": {"a": 1}, "interval": "1s", "loop": false})).unwrap();
        assert_eq!(c.rows, [r#"{"a":1}"#]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert!(!c.looping);
        assert!(
            parse(json!({"data": []}))
                .unwrap_err()
                .contains("at least one row")
        );
        assert!(parse(json!({"data": [1]})).unwrap_err().contains("row 0"));
        assert!(parse(json!({"interval": 0})).unwrap_err().contains("1 ms"));
        assert_eq!(
            parse(json!({"dat": []})).unwrap_err(),
            "invalid simulator configuration: simulator source: unknown property \"dat\""
        );
    }
}
