//! Sink plugins behind the same [`Sink`] trait as built-in sinks, so the engine cannot tell
//! them apart (and they get `batchSize`, `lingerInterval`, `sendSingle` and the rest for free).
//!
//! Plugin calls may block: quick ones run inline, the others where tokio allows blocking (see
//! `PluginSink::call`). Batches cross through the Arrow C Data Interface without copying.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, to_ffi};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use quiver_connectors::{ConnectorError, Refused, Sink, SinkFactory};
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
        // Asked once: a plugin built before quiver-plugin-abi 1.2 has no such method, and
        // abi_stable answers the default (false) without calling into it.
        let transactional = sink.transactional();
        Ok(Box::new(PluginSink {
            name,
            sink: Some(sink),
            blocking: false,
            transactional,
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
    /// The plugin writes epochs in transactions (qos 2).
    transactional: bool,
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
    async fn call<T: Send + 'static>(
        &mut self,
        may_block: bool,
        f: impl FnOnce(&mut SinkBox) -> Result<T, FfiError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
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
        let (mut ffi_array, ffi_schema) = export(self.name, batch)?;
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

    fn transactional(&self) -> bool {
        self.transactional
    }

    async fn committed_epoch(&mut self, id: &str) -> Result<u64, ConnectorError> {
        let id = id.to_string();
        self.call(true, move |s| {
            s.committed_epoch(id.as_str().into()).into_result()
        })
        .await
    }

    async fn commit_epoch(
        &mut self,
        id: &str,
        epoch: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<Refused>, ConnectorError> {
        let name = self.name;
        let mut exported = batches
            .iter()
            .map(|b| export(name, b))
            .collect::<Result<Vec<_>, _>>()?;
        let id = id.to_string();
        let refused = self
            .call(true, move |s| {
                // As in collect_list: the plugin moves each array out and the schemas stay
                // ours; whatever it did not take is released when `exported` drops.
                let ffi: Vec<FfiArrowBatch> = exported
                    .iter_mut()
                    .map(|(array, schema)| FfiArrowBatch {
                        array: std::ptr::from_mut(array).cast::<c_void>(),
                        schema: std::ptr::from_ref(schema).cast::<c_void>(),
                    })
                    .collect();
                let r = s
                    .commit_epoch(id.as_str().into(), epoch, ffi.as_slice().into())
                    .into_result();
                drop(exported);
                r
            })
            .await?;
        refused
            .into_iter()
            .map(|r| {
                let batch = usize::try_from(r.batch)
                    .ok()
                    .filter(|b| *b < batches.len())
                    .ok_or_else(|| ConnectorError::Fatal {
                        connector: name.to_string(),
                        // The epoch committed, but the plugin's answer cannot be trusted.
                        reason: format!(
                            "the plugin committed epoch {epoch} but named refused batch {} of {}",
                            r.batch,
                            batches.len()
                        ),
                    })?;
                Ok(Refused {
                    batch,
                    rows: usize::try_from(r.rows).unwrap_or(usize::MAX),
                    reason: r.reason.into_string(),
                })
            })
            .collect()
    }
}

/// A batch as C Data Interface structs for the plugin. Cheap: the column buffers are shared,
/// not copied.
fn export(
    name: &'static str,
    batch: &RecordBatch,
) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), ConnectorError> {
    to_ffi(&StructArray::from(batch.clone()).to_data()).map_err(|e| ConnectorError::Io {
        connector: name,
        reason: format!("cannot export the batch: {e}"),
    })
}
