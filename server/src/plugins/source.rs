//! Source plugins behind the same [`Source`] trait as built-in sources.
//!
//! The plugin's messages are JSON (rows), handed to the workers undecoded like MQTT payloads,
//! so the stream's schema and decoder apply as for any other source. Every call into the
//! plugin runs on tokio's blocking pool: a push source blocks in `poll` until it has data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quiver_connectors::{
    ConnectorError, RawMessage, Source, SourceEvent, SourceFactory, SourceOutput, SourceSpec,
};
use quiver_plugin_abi::ffi::{FfiError, FfiPoll, SourceBox};
use serde_json::{Map, Value};

use super::loader::LoadedPlugin;

/// How long to wait after an idle poll when the stream sets no `interval` (ms).
const DEFAULT_INTERVAL_MS: u64 = 1000;

/// Makes instances of one source plugin.
#[derive(Debug)]
pub struct PluginSourceFactory {
    /// The loaded library.
    pub plugin: Arc<LoadedPlugin>,
    /// The `default` section of the package's `name.yaml`, under the stream's profile.
    pub defaults: Map<String, Value>,
}

impl SourceFactory for PluginSourceFactory {
    fn create(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, ConnectorError> {
        let name = self.plugin.name;
        let config_error = |reason: String| ConnectorError::Config {
            connector: name,
            reason,
        };
        let mut config = self.defaults.clone();
        config.extend(spec.props.clone());
        let interval = match config.get("interval") {
            None => DEFAULT_INTERVAL_MS,
            Some(v) => v.as_u64().ok_or_else(|| {
                config_error(format!("\"interval\" must be milliseconds, not {v}"))
            })?,
        };
        let mut source = self
            .plugin
            .new_source()
            .map_err(|e| config_error(e.to_string()))?;
        let config_json = Value::Object(config).to_string();
        source
            .provision(spec.datasource.as_str().into(), config_json.as_str().into())
            .into_result()
            .map_err(|e| config_error(e.message.to_string()))?;
        Ok(Box::new(PluginSource {
            name,
            topic: spec.datasource.as_str().into(),
            interval: Duration::from_millis(interval),
            source: Some(source),
        }))
    }
}

/// One instance of a source plugin.
struct PluginSource {
    name: &'static str,
    /// The DATASOURCE, reported as `meta(topic)`.
    topic: Arc<str>,
    interval: Duration,
    /// Taken while a call runs on the blocking pool.
    source: Option<SourceBox>,
}

impl PluginSource {
    /// Runs `f` on the source on the blocking pool and puts the source back.
    async fn call<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut SourceBox) -> Result<T, FfiError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let name = self.name;
        let mut source = self.source.take().ok_or_else(|| ConnectorError::Fatal {
            connector: name.to_string(),
            reason: "the source was lost by an earlier failure".into(),
        })?;
        let (source, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut source);
            (source, r)
        })
        .await
        .map_err(|e| ConnectorError::Fatal {
            connector: name.to_string(),
            reason: format!("plugin call failed: {e}"),
        })?;
        self.source = Some(source);
        result.map_err(|e| {
            if e.fatal {
                ConnectorError::Fatal {
                    connector: name.to_string(),
                    reason: e.message.to_string(),
                }
            } else {
                ConnectorError::Io {
                    connector: name,
                    reason: e.message.to_string(),
                }
            }
        })
    }
}

#[async_trait]
impl Source for PluginSource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        self.call(|s| s.connect().into_result()).await?;
        let result = loop {
            match self.call(|s| s.poll().into_result()).await {
                Ok(FfiPoll::Data(bytes)) => {
                    let message = RawMessage::new(bytes.into_vec(), self.topic.clone());
                    if let Err(e) = out.send(SourceEvent::Raw(vec![message])).await {
                        break Err(e);
                    }
                }
                Ok(FfiPoll::Idle) => tokio::time::sleep(self.interval).await,
                Ok(FfiPoll::End) => break Ok(()),
                // A failed poll is reported and retried after the interval; a panic ends it.
                Err(e @ ConnectorError::Fatal { .. }) => break Err(e),
                Err(e) => {
                    tracing::warn!(source = self.name, "poll failed: {e}");
                    tokio::time::sleep(self.interval).await;
                }
            }
        };
        if let Err(e) = self.call(|s| s.close().into_result()).await {
            tracing::warn!(source = self.name, "close failed: {e}");
        }
        result
    }
}
