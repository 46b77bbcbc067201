//! Sink plugins behind the same [`Sink`] trait as built-in sinks, so the engine cannot tell
//! them apart (and they get `batchSize`, `lingerInterval`, `sendSingle` and the rest for free).
//!
//! Plugin calls may block: quick ones run inline, the others where tokio allows blocking (see
//! `PluginSink::call`). Batches cross through the Arrow C Data Interface without copying.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, StructArray};
use arrow::ffi::to_ffi;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use quiver_connectors::{ConnectorError, Sink, SinkFactory};
use quiver_plugin_abi::ffi::{FfiArrowBatch, FfiError, SinkBox};
use serde_json::Value;

use super::loader::LoadedPlugin;

/// Makes instances of one sink plugin.
#[derive(Debug)]
pub struct PluginSinkFactory {
    /// The loaded library.
    pub plugin: Arc<LoadedPlugin>,
}

impl SinkFactory for PluginSinkFactory {
    fn create(&self, props: &Value) -> Result<Box<dyn Sink>, ConnectorError> {
        let name = self.plugin.name;
        let mut sink = self.plugin.new_sink().map_err(|e| ConnectorError::Config {
            connector: name,
            reason: e.to_string(),
        })?;
        let config = match props {
            Value::Null => "{}".to_string(),
            other => other.to_string(),
        };
        sink.provision(config.as_str().into())
            .into_result()
            .map_err(|e| ConnectorError::Config {
                connector: name,
                reason: e.message.to_string(),
            })?;
        Ok(Box::new(PluginSink {
            name,
            sink: Some(sink),
            blocking: false,
        }))
    }
}

/// One instance of a sink plugin, for one rule action.
struct PluginSink {
    name: &'static str,
    /// Taken while a call runs on the blocking pool; `None` after a call failed to return.
    sink: Option<SinkBox>,
    /// Set once a call took longer than [`SLOW_CALL`]: the plugin may block.
    blocking: bool,
}

/// A `collect_list` slower than this marks the sink as one that may block.
const SLOW_CALL: Duration = Duration::from_millis(1);

fn error(name: &'static str, e: FfiError) -> ConnectorError {
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
}

impl PluginSink {
    /// Runs `f` on the sink and puts the sink back.
    ///
    /// Where it runs (measured with the noop plugin: the boundary itself costs 1-3 us a batch,
    /// `block_in_place` another 8-12 us):
    /// - `collect_list` of a sink whose calls have been quick runs inline on the async thread;
    ///   a call over [`SLOW_CALL`] marks the sink as blocking;
    /// - calls that may block (`connect`, `close`, and every call of a blocking sink) run in
    ///   `block_in_place` on a multi-threaded runtime (quiverd's), where tokio first hands this
    ///   thread's other tasks to another thread, and on the blocking pool elsewhere.
    async fn call(
        &mut self,
        may_block: bool,
        f: impl FnOnce(&mut SinkBox) -> Result<(), FfiError> + Send + 'static,
    ) -> Result<(), ConnectorError> {
        let name = self.name;
        let mut sink = self.sink.take().ok_or_else(|| ConnectorError::Fatal {
            connector: name.to_string(),
            reason: "the sink was lost by an earlier failure".into(),
        })?;
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let result = if multi_thread && !may_block && !self.blocking {
            let started = Instant::now();
            let r = f(&mut sink);
            if started.elapsed() > SLOW_CALL {
                tracing::debug!(
                    sink = name,
                    "plugin sink is slow; its calls move off the async threads"
                );
                self.blocking = true;
            }
            self.sink = Some(sink);
            r
        } else if multi_thread {
            let r = tokio::task::block_in_place(|| f(&mut sink));
            self.sink = Some(sink);
            r
        } else {
            let (sink, r) = tokio::task::spawn_blocking(move || {
                let r = f(&mut sink);
                (sink, r)
            })
            .await
            .map_err(|e| ConnectorError::Fatal {
                connector: name.to_string(),
                reason: format!("plugin call failed: {e}"),
            })?;
            self.sink = Some(sink);
            r
        };
        result.map_err(|e| error(name, e))
    }
}

#[async_trait]
impl Sink for PluginSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        self.call(true, |s| s.connect().into_result()).await
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let name = self.name;
        // Cheap: a RecordBatch is a list of Arcs; the column buffers are shared, not copied.
        let array = StructArray::from(batch.clone());
        let (mut ffi_array, ffi_schema) =
            to_ffi(&array.to_data()).map_err(|e| ConnectorError::Io {
                connector: name,
                reason: format!("cannot export the batch: {e}"),
            })?;
        self.call(false, move |s| {
            // The plugin moves the array out of `ffi_array` (leaving it released); the schema
            // stays ours and is dropped after the call. If the plugin did not take the array,
            // dropping `ffi_array` here releases it.
            let batch = FfiArrowBatch {
                array: (&raw mut ffi_array).cast::<c_void>(),
                schema: (&raw const ffi_schema).cast::<c_void>(),
            };
            let r = s.collect_list(batch).into_result();
            drop(ffi_array);
            drop(ffi_schema);
            r
        })
        .await
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.call(true, |s| s.close().into_result()).await
    }
}
