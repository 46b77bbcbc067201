//! The plugin author's SDK: implement [`Sink`] or [`Function`] on a plain Rust type and
//! export it with [`export_plugin!`](crate::export_plugin).
//!
//! ```
//! use quiver_plugin_abi::sdk::{Config, Error, Sink, Tuple};
//!
//! #[derive(Default)]
//! struct Print;
//!
//! impl Sink for Print {
//!     fn provision(&mut self, _config: &Config) -> Result<(), Error> { Ok(()) }
//!     fn collect(&mut self, tuple: &Tuple<'_>) -> Result<(), Error> {
//!         println!("{:?}", tuple.value("temperature"));
//!         Ok(())
//!     }
//! }
//!
//! quiver_plugin_abi::export_plugin! { name: "print", kind: sink, version: "1.0.0", factory: Print::default }
//! ```
//!
//! The arrow types are those of the arrow major picked by the crate feature (`arrow-60`, the
//! default, or `arrow-59`), re-exported as [`arrow`].
// The C Data Interface hand-over needs raw pointers; every unsafe block says why it is sound.
#![allow(unsafe_code)]

pub mod converter;
mod tuple;

#[cfg(all(feature = "arrow-59", not(feature = "arrow-60")))]
pub use arrow59 as arrow;
#[cfg(feature = "arrow-60")]
pub use arrow60 as arrow;
pub use serde_json;

pub use converter::Converter;
pub use tuple::{Tuple, cell_value, tuples};

pub use crate::SqlType;

use arrow::array::{Array, ArrayRef, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::record_batch::RecordBatch;

/// A sink's or source's configuration: the action's properties as JSON.
pub type Config = serde_json::Map<String, serde_json::Value>;

/// Any error; its text reaches the rule's status and metrics.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A sink: eKuiper's `api.Sink` (a tuple collector) in Rust.
///
/// Implement [`Sink::collect`] to see one row at a time, or [`Sink::collect_list`] to see
/// each batch as an arrow [`RecordBatch`] (a window's output or a `batchSize` batch arrives as
/// one call). Calls come from one thread at a time and may block.
pub trait Sink: Send + 'static {
    /// Reads the action's properties; an error refuses the rule at creation.
    fn provision(&mut self, config: &Config) -> Result<(), Error>;

    /// Connects before the first batch.
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Writes one row. Only called by the default [`Sink::collect_list`].
    fn collect(&mut self, tuple: &Tuple<'_>) -> Result<(), Error> {
        let _ = tuple;
        Err("this sink implements neither collect nor collect_list".into())
    }

    /// Writes one batch; by default, each row through [`Sink::collect`].
    fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        tuples(batch).try_for_each(|t| self.collect(&t))
    }

    /// Flushes and releases resources when the rule stops.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// True when the sink implements [`Sink::committed_epoch`] and [`Sink::commit_epoch`],
    /// writing a checkpoint's rows together with its epoch in one transaction of its far end:
    /// what exactly-once delivery (rule option `qos` 2) needs. Asked once, after `provision`.
    fn transactional(&self) -> bool {
        false
    }

    /// The last epoch [`Sink::commit_epoch`] recorded for `id` at the far end; 0 when it has
    /// recorded none. `id` names the rule's sink (rule id and sink node).
    fn committed_epoch(&mut self, id: &str) -> Result<u64, Error> {
        let _ = id;
        Err("this sink does not write epochs in transactions (qos 2)".into())
    }

    /// Writes `batches` and records `epoch` as `id`'s last committed epoch, in one transaction
    /// of the far end: all of it lands or none of it does. A batch the far end refuses (a
    /// constraint, a type) is left out and named in the answer, and the rest commits; an
    /// error means nothing was written, and the server calls again later with the same rows
    /// (after asking [`Sink::committed_epoch`] whether the commit landed after all).
    /// At qos 2 the server calls this instead of `collect_list`.
    fn commit_epoch(
        &mut self,
        id: &str,
        epoch: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<Refused>, Error> {
        let _ = (id, epoch, batches);
        Err("this sink does not write epochs in transactions (qos 2)".into())
    }
}

/// A batch of [`Sink::commit_epoch`] that the far end refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its index in the call's `batches`.
    pub batch: usize,
    /// Rows not written.
    pub rows: usize,
    /// The far end's reason.
    pub reason: String,
}

/// What a source's [`Source::pull`] produced.
#[derive(Debug, Clone)]
pub enum Pulled {
    /// Rows (JSON objects); decoded by the server against the stream's schema.
    Rows(Vec<serde_json::Value>),
    /// Nothing now: the server calls again after the stream's `interval` (default 1 s).
    Nothing,
    /// The input ended; the rules reading it finish.
    End,
}

/// A source: eKuiper's pull and push sources in one shape.
///
/// The server calls [`Source::pull`] on a blocking thread, over and over. A pull source
/// answers at once ([`Pulled::Nothing`] when there is no data, and the server waits the
/// stream's `interval`); a push source blocks in `pull` until it has data.
pub trait Source: Send + 'static {
    /// Reads the stream's DATASOURCE and properties (the package's `name.yaml` `default`
    /// section, overridden by the server's connection profile).
    fn provision(&mut self, datasource: &str, config: &Config) -> Result<(), Error>;

    /// Connects before the first pull.
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// The next rows.
    fn pull(&mut self) -> Result<Pulled, Error>;

    /// Releases resources when the rules stop.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A SQL function: eKuiper's `api.Function`, vectorised over arrow arrays.
pub trait Function: Send + Sync + 'static {
    /// Checks the argument types at rule creation and returns the result type; the error
    /// text is shown to the user (e.g. `expects 1 argument but got 2`).
    fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error>;

    /// Computes one result per row. Every argument has `rows` values (constants repeated).
    /// The result must have `rows` values, of the type `validate` returned (any type when it
    /// returned [`SqlType::Any`]). For an aggregate function ([`Function::is_aggregate`]) the
    /// arguments hold one group's values (a window's, per GROUP BY key) and the result holds
    /// the group's value (one value suffices), as eKuiper passes aggregates slices of values.
    fn exec(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, Error>;

    /// True for an aggregate function.
    fn is_aggregate(&self) -> bool {
        false
    }
}

/// A SQL function that thinks in rows, as eKuiper's `Exec(args []any)` does: wrap it in
/// [`Rows`] to export it (`factory: || Rows(MyFunction)`).
pub trait RowFunction: Send + Sync + 'static {
    /// As [`Function::validate`].
    fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error>;

    /// Computes one row's result from its argument values (JSON; NULL is `Value::Null`).
    /// An error fails the batch.
    fn exec(&self, args: &[serde_json::Value]) -> Result<serde_json::Value, Error>;
}

/// Runs a [`RowFunction`] as a vectorised [`Function`]: each row's values are read from the
/// arrays and the results are built into an array of the type `validate` declares.
pub struct Rows<F>(pub F);

impl<F: RowFunction> Function for Rows<F> {
    fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error> {
        self.0.validate(args)
    }

    fn exec(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, Error> {
        let types: Vec<SqlType> = args.iter().map(|a| sql_type_of(a.data_type())).collect();
        let declared = self.0.validate(&types)?;
        let values = (0..rows)
            .map(|row| {
                let row_args: Vec<serde_json::Value> =
                    args.iter().map(|a| cell_value(a.as_ref(), row)).collect();
                self.0.exec(&row_args)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        array_of(declared, &values)
    }
}

/// The SQL type of an arrow type, as [`Function::validate`] sees it.
pub fn sql_type_of(t: &arrow::datatypes::DataType) -> SqlType {
    use arrow::datatypes::DataType as D;
    match t {
        t if t.is_integer() => SqlType::Bigint,
        t if t.is_floating() => SqlType::Float,
        D::Utf8 | D::LargeUtf8 => SqlType::String,
        D::Boolean => SqlType::Boolean,
        D::Timestamp(..) => SqlType::Datetime,
        D::Binary | D::LargeBinary => SqlType::Bytea,
        D::List(_) | D::LargeList(_) => SqlType::Array,
        D::Struct(_) => SqlType::Struct,
        _ => SqlType::Any,
    }
}

/// Builds an array of `t` from JSON values; for types without a plain column form (`any`,
/// lists, records), the type follows the values: numbers, strings or booleans, else JSON text.
fn array_of(t: SqlType, values: &[serde_json::Value]) -> Result<ArrayRef, Error> {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use serde_json::Value;

    let t = match t {
        SqlType::Any | SqlType::Array | SqlType::Struct | SqlType::Bytea => {
            let present = || values.iter().filter(|v| !v.is_null());
            if present().all(|v| v.is_i64()) {
                SqlType::Bigint
            } else if present().all(Value::is_number) {
                SqlType::Float
            } else if present().all(Value::is_boolean) {
                SqlType::Boolean
            } else {
                SqlType::String
            }
        }
        t => t,
    };
    let wrong =
        |v: &Value| -> Error { format!("returned {v} where it declared {}", t.name()).into() };
    Ok(match t {
        SqlType::Bigint | SqlType::Datetime => {
            let ints = values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    v => v.as_i64().map(Some).ok_or_else(|| wrong(v)),
                })
                .collect::<Result<Vec<_>, Error>>()?;
            if t == SqlType::Datetime {
                Arc::new(TimestampMillisecondArray::from(ints))
            } else {
                Arc::new(Int64Array::from(ints))
            }
        }
        SqlType::Float => Arc::new(Float64Array::from(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    v => v.as_f64().map(Some).ok_or_else(|| wrong(v)),
                })
                .collect::<Result<Vec<_>, Error>>()?,
        )),
        SqlType::Boolean => Arc::new(BooleanArray::from(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    v => v.as_bool().map(Some).ok_or_else(|| wrong(v)),
                })
                .collect::<Result<Vec<_>, Error>>()?,
        )),
        _ => Arc::new(StringArray::from(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect::<Vec<_>>(),
        )),
    })
}

/// What [`export_plugin!`](crate::export_plugin) expands to; not for direct use.
#[doc(hidden)]
pub mod __private {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use abi_stable::prefix_type::PrefixTypeTrait;
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};

    use super::*;
    use crate::ffi::{
        FfiArrowBatch, FfiArrowOut, FfiError, FfiFunction, FfiPoll, FfiRefused, FfiSink, FfiSource,
        FunctionBox, PluginKind, PluginMod, PluginModRef, SinkBox, SourceBox,
    };

    /// An error that lets the rule go on.
    fn error(message: impl Into<String>) -> FfiError {
        FfiError {
            message: RString::from(message.into()),
            fatal: false,
        }
    }

    /// The error of a panic, which stops the rule.
    fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> FfiError {
        FfiError {
            message: RString::from(format!(
                "plugin panicked in {what}: {}",
                panic_message(panic)
            )),
            fatal: true,
        }
    }

    /// Runs `f`, turning an error or a panic into `RErr` with its message.
    pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> RResult<T, FfiError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(v)) => RResult::ROk(v),
            Ok(Err(e)) => RResult::RErr(error(e.to_string())),
            Err(panic) => RResult::RErr(panicked(what, &*panic)),
        }
    }

    fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = panic.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = panic.downcast_ref::<String>() {
            s.clone()
        } else {
            "(no message)".to_string()
        }
    }

    /// Takes the batch the host passed.
    ///
    /// # Safety
    /// `batch` must point to a valid C Data Interface struct array and its schema, as the
    /// server passes them for the duration of the call.
    pub(crate) unsafe fn import(batch: FfiArrowBatch) -> Result<RecordBatch, Error> {
        if batch.array.is_null() || batch.schema.is_null() {
            return Err("the server passed a null batch".into());
        }
        // SAFETY: the caller guarantees a valid FFI_ArrowArray; from_raw moves it out and
        // leaves the host's struct released, as the ownership rule of FfiArrowBatch says.
        let array = unsafe { FFI_ArrowArray::from_raw(batch.array.cast::<FFI_ArrowArray>()) };
        // SAFETY: the schema stays valid and owned by the host for the whole call.
        let schema = unsafe { &*batch.schema.cast::<FFI_ArrowSchema>() };
        // SAFETY: array and schema describe the same data (the host exported them together).
        let data = unsafe { arrow::ffi::from_ffi(array, schema) }?;
        Ok(RecordBatch::from(StructArray::from(data)))
    }

    /// Exports `data` into the result slot the host passed (the FfiArrowOut contract).
    pub(crate) fn write_out(out: FfiArrowOut, data: &arrow::array::ArrayData) -> Result<(), Error> {
        let (array, schema) = arrow::ffi::to_ffi(data)?;
        if out.array.is_null() || out.schema.is_null() {
            return Err("the server passed a null result slot".into());
        }
        // SAFETY: `out` points to empty structs the server owns and reads after the call;
        // writing without dropping the empties leaks nothing (they own nothing).
        unsafe {
            std::ptr::write(out.array.cast::<FFI_ArrowArray>(), array);
            std::ptr::write(out.schema.cast::<FFI_ArrowSchema>(), schema);
        }
        Ok(())
    }

    /// The author's value, dropped under `catch_unwind`: the server drops plugin objects
    /// through the vtable, and a panic escaping a drop would abort the server.
    pub(crate) struct Guarded<T>(std::mem::ManuallyDrop<T>);

    impl<T> Guarded<T> {
        pub(crate) fn new(value: T) -> Self {
            Guarded(std::mem::ManuallyDrop::new(value))
        }
    }

    impl<T> std::ops::Deref for Guarded<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T> std::ops::DerefMut for Guarded<T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.0
        }
    }

    impl<T> Drop for Guarded<T> {
        fn drop(&mut self) {
            // SAFETY: the value is dropped exactly once, here, and never used afterwards.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                std::mem::ManuallyDrop::drop(&mut self.0)
            }));
            if dropped.is_err() {
                // Nothing to report to: the server is done with this object.
                eprintln!("quiver plugin: a plugin object panicked while being dropped");
            }
        }
    }

    /// The sink adapter: an SDK sink behind the stable vtable.
    struct SinkAdapter<S> {
        sink: Guarded<S>,
        /// Set after a panic: the sink's state is unknown, so it is not called again.
        poisoned: Option<String>,
    }

    impl<S: Sink> SinkAdapter<S> {
        fn call<T>(
            &mut self,
            what: &str,
            f: impl FnOnce(&mut S) -> Result<T, Error>,
        ) -> RResult<T, FfiError> {
            if let Some(p) = &self.poisoned {
                return RResult::RErr(FfiError {
                    message: RString::from(format!("sink is unusable after: {p}")),
                    fatal: true,
                });
            }
            let sink: &mut S = &mut self.sink;
            match catch_unwind(AssertUnwindSafe(|| f(sink))) {
                Ok(Ok(v)) => RResult::ROk(v),
                Ok(Err(e)) => RResult::RErr(error(e.to_string())),
                Err(panic) => {
                    let e = panicked(what, &*panic);
                    self.poisoned = Some(e.message.to_string());
                    RResult::RErr(e)
                }
            }
        }
    }

    impl<S: Sink> FfiSink for SinkAdapter<S> {
        fn provision(&mut self, config_json: RStr<'_>) -> RResult<(), FfiError> {
            let config: Config = match serde_json::from_str(config_json.as_str()) {
                Ok(c) => c,
                Err(e) => return RResult::RErr(error(format!("config is not a JSON object: {e}"))),
            };
            self.call("provision", |s| s.provision(&config))
        }

        fn connect(&mut self) -> RResult<(), FfiError> {
            self.call("connect", |s| s.connect())
        }

        fn collect_list(&mut self, batch: FfiArrowBatch) -> RResult<(), FfiError> {
            // Take the batch first, so it is released here whatever happens next.
            // SAFETY: the server passes a valid batch for the duration of the call.
            let batch = match catch_unwind(|| unsafe { import(batch) }) {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return RResult::RErr(error(format!("cannot read the batch: {e}"))),
                Err(panic) => return RResult::RErr(panicked("reading the batch", &*panic)),
            };
            self.call("collect_list", |s| s.collect_list(&batch))
        }

        fn close(&mut self) -> RResult<(), FfiError> {
            self.call("close", |s| s.close())
        }

        fn transactional(&self) -> bool {
            // A poisoned sink is never called again, so it cannot take part either.
            self.poisoned.is_none()
                && catch_unwind(AssertUnwindSafe(|| self.sink.transactional())).unwrap_or(false)
        }

        fn committed_epoch(&mut self, id: RStr<'_>) -> RResult<u64, FfiError> {
            self.call("committed_epoch", |s| s.committed_epoch(id.as_str()))
        }

        fn commit_epoch(
            &mut self,
            id: RStr<'_>,
            epoch: u64,
            batches: RSlice<'_, FfiArrowBatch>,
        ) -> RResult<RVec<FfiRefused>, FfiError> {
            // Take every batch first, so each is released here whatever happens next.
            let taken = catch_unwind(|| {
                batches
                    .iter()
                    // SAFETY: the server passes valid batches for the duration of the call.
                    .map(|b| unsafe { import(*b) })
                    .collect::<Result<Vec<_>, Error>>()
            });
            let batches = match taken {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return RResult::RErr(error(format!("cannot read a batch: {e}"))),
                Err(panic) => return RResult::RErr(panicked("reading the batches", &*panic)),
            };
            self.call("commit_epoch", |s| {
                let refused = s.commit_epoch(id.as_str(), epoch, &batches)?;
                Ok(refused
                    .into_iter()
                    .map(|r| FfiRefused {
                        batch: r.batch as u64,
                        rows: r.rows as u64,
                        reason: RString::from(r.reason),
                    })
                    .collect())
            })
        }
    }

    /// Makes a boxed sink from the author's factory.
    pub fn new_sink<S: Sink>(factory: impl FnOnce() -> S) -> RResult<SinkBox, FfiError> {
        guard("the sink factory", || {
            Ok(SinkBox::from_value(
                SinkAdapter {
                    sink: Guarded::new(factory()),
                    poisoned: None,
                },
                TD_Opaque,
            ))
        })
    }

    /// The source adapter: an SDK source behind the stable vtable.
    struct SourceAdapter<S> {
        source: Guarded<S>,
        /// Set after a panic: the source's state is unknown, so it is not called again.
        poisoned: Option<String>,
    }

    impl<S: Source> SourceAdapter<S> {
        fn call<T>(
            &mut self,
            what: &str,
            f: impl FnOnce(&mut S) -> Result<T, Error>,
        ) -> RResult<T, FfiError> {
            if let Some(p) = &self.poisoned {
                return RResult::RErr(FfiError {
                    message: RString::from(format!("source is unusable after: {p}")),
                    fatal: true,
                });
            }
            let source: &mut S = &mut self.source;
            match catch_unwind(AssertUnwindSafe(|| f(source))) {
                Ok(Ok(v)) => RResult::ROk(v),
                Ok(Err(e)) => RResult::RErr(error(e.to_string())),
                Err(panic) => {
                    let e = panicked(what, &*panic);
                    self.poisoned = Some(e.message.to_string());
                    RResult::RErr(e)
                }
            }
        }
    }

    impl<S: Source> FfiSource for SourceAdapter<S> {
        fn provision(
            &mut self,
            datasource: RStr<'_>,
            config_json: RStr<'_>,
        ) -> RResult<(), FfiError> {
            let config: Config = match serde_json::from_str(config_json.as_str()) {
                Ok(c) => c,
                Err(e) => return RResult::RErr(error(format!("config is not a JSON object: {e}"))),
            };
            self.call("provision", |s| s.provision(datasource.as_str(), &config))
        }

        fn connect(&mut self) -> RResult<(), FfiError> {
            self.call("connect", |s| s.connect())
        }

        fn poll(&mut self) -> RResult<FfiPoll, FfiError> {
            self.call("pull", |s| {
                Ok(match s.pull()? {
                    Pulled::Rows(rows) => {
                        FfiPoll::Data(serde_json::to_vec(&serde_json::Value::Array(rows))?.into())
                    }
                    Pulled::Nothing => FfiPoll::Idle,
                    Pulled::End => FfiPoll::End,
                })
            })
        }

        fn close(&mut self) -> RResult<(), FfiError> {
            self.call("close", |s| s.close())
        }
    }

    /// Makes a boxed source from the author's factory.
    pub fn new_source<S: Source>(factory: impl FnOnce() -> S) -> RResult<SourceBox, FfiError> {
        guard("the source factory", || {
            Ok(SourceBox::from_value(
                SourceAdapter {
                    source: Guarded::new(factory()),
                    poisoned: None,
                },
                TD_Opaque,
            ))
        })
    }

    /// The root module of a source plugin.
    pub fn source_module(
        name: &'static str,
        version: &'static str,
        new_source: extern "C" fn() -> RResult<SourceBox, FfiError>,
    ) -> PluginModRef {
        PluginMod {
            abi_major: crate::ABI_MAJOR,
            name: RStr::from_str(name),
            kind: PluginKind::Source,
            version: RStr::from_str(version),
            new_sink: None,
            new_source: Some(new_source),
            new_function: None,
        }
        .leak_into_prefix()
    }

    /// The function adapter: an SDK function behind the stable vtable.
    struct FunctionAdapter<F>(Guarded<F>);

    impl<F: Function> FfiFunction for FunctionAdapter<F> {
        fn validate(&self, args_json: RStr<'_>) -> RResult<RString, FfiError> {
            guard("validate", || {
                let names: Vec<String> = serde_json::from_str(args_json.as_str())?;
                let args = names
                    .iter()
                    .map(|n| SqlType::parse(n).unwrap_or(SqlType::Any))
                    .collect::<Vec<_>>();
                Ok(RString::from(self.0.validate(&args)?.name()))
            })
        }

        fn exec(&self, args: FfiArrowBatch, rows: u64, out: FfiArrowOut) -> RResult<(), FfiError> {
            guard("exec", || {
                // SAFETY: the server passes a valid batch for the duration of the call.
                let batch = unsafe { import(args) }?;
                let rows = usize::try_from(rows)?;
                let result = self.0.exec(batch.columns(), rows)?;
                // An aggregate answers once for the whole group.
                if result.len() != rows && !(self.0.is_aggregate() && result.len() == 1) {
                    return Err(format!(
                        "the function returned {} values for {rows} rows",
                        result.len()
                    )
                    .into());
                }
                write_out(out, &result.to_data())
            })
        }

        fn is_aggregate(&self) -> bool {
            catch_unwind(AssertUnwindSafe(|| self.0.is_aggregate())).unwrap_or(false)
        }
    }

    /// Makes the boxed function from the author's factory.
    pub fn new_function<F: Function>(
        factory: impl FnOnce() -> F,
    ) -> RResult<FunctionBox, FfiError> {
        guard("the function factory", || {
            Ok(FunctionBox::from_value(
                FunctionAdapter(Guarded::new(factory())),
                TD_Opaque,
            ))
        })
    }

    /// The root module of a sink plugin.
    pub fn sink_module(
        name: &'static str,
        version: &'static str,
        new_sink: extern "C" fn() -> RResult<SinkBox, FfiError>,
    ) -> PluginModRef {
        PluginMod {
            abi_major: crate::ABI_MAJOR,
            name: RStr::from_str(name),
            kind: PluginKind::Sink,
            version: RStr::from_str(version),
            new_sink: Some(new_sink),
            new_source: None,
            new_function: None,
        }
        .leak_into_prefix()
    }

    /// The root module of a function plugin.
    pub fn function_module(
        name: &'static str,
        version: &'static str,
        new_function: extern "C" fn() -> RResult<FunctionBox, FfiError>,
    ) -> PluginModRef {
        PluginMod {
            abi_major: crate::ABI_MAJOR,
            name: RStr::from_str(name),
            kind: PluginKind::Function,
            version: RStr::from_str(version),
            new_sink: None,
            new_source: None,
            new_function: Some(new_function),
        }
        .leak_into_prefix()
    }
}

/// Exports a plugin: its name (the action type, stream `TYPE` or SQL function name), kind
/// (`sink`, `source` or `function`), version and factory (a function or closure returning a new instance).
///
/// Use it once per plugin crate, which is built as a `cdylib`. Every call the server makes
/// into the plugin is wrapped in `catch_unwind`: a panic becomes an error of the rule.
///
/// ```
/// # use quiver_plugin_abi::sdk::{Config, Error, Sink};
/// # #[derive(Default)]
/// # struct MysqlSink;
/// # impl Sink for MysqlSink {
/// #     fn provision(&mut self, _config: &Config) -> Result<(), Error> { Ok(()) }
/// # }
/// quiver_plugin_abi::export_plugin! {
///     name: "mysql",
///     kind: sink,
///     version: "1.0.0",
///     factory: MysqlSink::default,
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (name: $name:literal, kind: sink, version: $version:expr, factory: $factory:expr $(,)?) => {
        extern "C" fn __quiver_new_sink()
        -> $crate::__private_abi::RResult<$crate::ffi::SinkBox, $crate::ffi::FfiError> {
            $crate::sdk::__private::new_sink(|| ($factory)())
        }
        fn __quiver_root_module() -> $crate::ffi::PluginModRef {
            $crate::sdk::__private::sink_module($name, $version, __quiver_new_sink)
        }
        $crate::__export_root_module!(__quiver_root_module);
    };
    (name: $name:literal, kind: source, version: $version:expr, factory: $factory:expr $(,)?) => {
        extern "C" fn __quiver_new_source()
        -> $crate::__private_abi::RResult<$crate::ffi::SourceBox, $crate::ffi::FfiError> {
            $crate::sdk::__private::new_source(|| ($factory)())
        }
        fn __quiver_root_module() -> $crate::ffi::PluginModRef {
            $crate::sdk::__private::source_module($name, $version, __quiver_new_source)
        }
        $crate::__export_root_module!(__quiver_root_module);
    };
    (name: $name:literal, kind: function, version: $version:expr, factory: $factory:expr $(,)?) => {
        extern "C" fn __quiver_new_function()
        -> $crate::__private_abi::RResult<$crate::ffi::FunctionBox, $crate::ffi::FfiError> {
            $crate::sdk::__private::new_function(|| ($factory)())
        }
        fn __quiver_root_module() -> $crate::ffi::PluginModRef {
            $crate::sdk::__private::function_module($name, $version, __quiver_new_function)
        }
        $crate::__export_root_module!(__quiver_root_module);
    };
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::sync::{Arc, Mutex};

    use arrow::array::{Float64Array, Int64Array};
    use arrow::ffi::{from_ffi, to_ffi};

    use super::*;
    use crate::ffi::{FfiArrowBatch, FfiArrowOut, FfiError};

    #[derive(Default)]
    struct Recorder {
        rows: Arc<Mutex<Vec<serde_json::Value>>>,
        prefix: String,
    }

    impl Sink for Recorder {
        fn provision(&mut self, config: &Config) -> Result<(), Error> {
            self.prefix = config
                .get("prefix")
                .and_then(|p| p.as_str())
                .ok_or("needs prefix")?
                .into();
            Ok(())
        }

        fn collect(&mut self, tuple: &Tuple<'_>) -> Result<(), Error> {
            let n = tuple.value("n").and_then(|v| v.as_i64()).unwrap_or(0);
            if n < 0 {
                panic!("negative {n}");
            }
            let row = serde_json::json!({"id": format!("{}{n}", self.prefix)});
            self.rows.lock().expect("rows").push(row);
            Ok(())
        }
    }

    fn batch(values: Vec<i64>) -> RecordBatch {
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(values)) as ArrayRef)])
            .expect("batch")
    }

    /// Calls `collect_list` the way the server does; returns whether the array was taken.
    fn send(sink: &mut crate::ffi::SinkBox, b: RecordBatch) -> (Result<(), FfiError>, bool) {
        let (mut array, schema) = to_ffi(&StructArray::from(b).to_data()).expect("export");
        let r = sink
            .collect_list(FfiArrowBatch {
                array: (&raw mut array).cast::<c_void>(),
                schema: (&raw const schema).cast::<c_void>(),
            })
            .into_result();
        (r, array.is_released())
    }

    #[test]
    fn a_sink_gets_rows_and_a_panic_becomes_a_fatal_error() {
        let rows = Arc::new(Mutex::new(Vec::new()));
        let seen = rows.clone();
        let mut sink = __private::new_sink(move || Recorder {
            rows: seen,
            prefix: String::new(),
        })
        .into_result()
        .expect("sink");
        let e = sink
            .provision("{}".into())
            .into_result()
            .expect_err("no prefix");
        assert!(!e.fatal && e.message.as_str() == "needs prefix", "{e:?}");
        sink.provision(r#"{"prefix": "r"}"#.into())
            .into_result()
            .expect("provision");
        let (r, taken) = send(&mut sink, batch(vec![1, 2]));
        r.expect("collect");
        assert!(taken, "the plugin takes the array out of the host's struct");
        assert_eq!(
            *rows.lock().expect("rows"),
            [
                serde_json::json!({"id": "r1"}),
                serde_json::json!({"id": "r2"})
            ]
        );
        let (r, _) = send(&mut sink, batch(vec![3, -1]));
        let e = r.expect_err("panics");
        assert!(e.fatal, "{e:?}");
        assert!(
            e.message
                .as_str()
                .contains("plugin panicked in collect_list: negative -1"),
            "{e:?}"
        );
        // After a panic the sink is never called again.
        let e = sink.close().into_result().expect_err("poisoned");
        assert!(e.fatal && e.message.as_str().contains("unusable"), "{e:?}");
    }

    /// Each committed epoch and the values it wrote.
    type Ledger = Arc<Mutex<Vec<(u64, Vec<i64>)>>>;

    /// Keeps each epoch's rows, refusing batches with a negative value, as a database would
    /// roll back a batch that breaks a constraint.
    #[derive(Default)]
    struct Epochs {
        committed: Ledger,
    }

    impl Sink for Epochs {
        fn provision(&mut self, _config: &Config) -> Result<(), Error> {
            Ok(())
        }

        fn transactional(&self) -> bool {
            true
        }

        fn committed_epoch(&mut self, id: &str) -> Result<u64, Error> {
            assert_eq!(id, "rule/sink");
            Ok(self
                .committed
                .lock()
                .expect("epochs")
                .last()
                .map_or(0, |e| e.0))
        }

        fn commit_epoch(
            &mut self,
            id: &str,
            epoch: u64,
            batches: &[RecordBatch],
        ) -> Result<Vec<Refused>, Error> {
            assert_eq!(id, "rule/sink");
            let mut refused = Vec::new();
            let mut rows = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                let n = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or("bigint")?;
                if n.values().iter().any(|v| *v < 0) {
                    refused.push(Refused {
                        batch: i,
                        rows: b.num_rows(),
                        reason: "negative".into(),
                    });
                } else {
                    rows.extend(n.values().iter().copied());
                }
            }
            self.committed.lock().expect("epochs").push((epoch, rows));
            Ok(refused)
        }
    }

    /// Calls `commit_epoch` the way the server does; returns the answer and whether each
    /// array was taken.
    fn commit(
        sink: &mut crate::ffi::SinkBox,
        epoch: u64,
        batches: Vec<RecordBatch>,
    ) -> (
        Result<abi_stable::std_types::RVec<crate::ffi::FfiRefused>, FfiError>,
        Vec<bool>,
    ) {
        let mut exported: Vec<(FFI_ArrowArray, FFI_ArrowSchema)> = batches
            .into_iter()
            .map(|b| to_ffi(&StructArray::from(b).to_data()).expect("export"))
            .collect();
        let ffi: Vec<FfiArrowBatch> = exported
            .iter_mut()
            .map(|(array, schema)| FfiArrowBatch {
                array: (array as *mut FFI_ArrowArray).cast::<c_void>(),
                schema: (schema as *const FFI_ArrowSchema).cast::<c_void>(),
            })
            .collect();
        let r = sink
            .commit_epoch("rule/sink".into(), epoch, ffi.as_slice().into())
            .into_result();
        (r, exported.iter().map(|(a, _)| a.is_released()).collect())
    }

    #[test]
    fn epochs_reach_a_transactional_sink_and_refusals_come_back_by_batch() {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let seen = committed.clone();
        let mut sink = __private::new_sink(move || Epochs { committed: seen })
            .into_result()
            .expect("sink");
        assert!(sink.transactional());
        assert_eq!(
            sink.committed_epoch("rule/sink".into()).into_result().ok(),
            Some(0)
        );
        let (r, taken) = commit(
            &mut sink,
            3,
            vec![batch(vec![1, 2]), batch(vec![-1]), batch(vec![4])],
        );
        let refused = r.expect("committed");
        assert_eq!(
            refused.as_slice(),
            [crate::ffi::FfiRefused {
                batch: 1,
                rows: 1,
                reason: "negative".into()
            }]
        );
        assert_eq!(taken, [true, true, true], "the plugin takes every array");
        assert_eq!(*committed.lock().expect("epochs"), [(3, vec![1, 2, 4])]);
        assert_eq!(
            sink.committed_epoch("rule/sink".into()).into_result().ok(),
            Some(3)
        );
    }

    #[test]
    fn a_sink_without_epochs_says_so() {
        let mut sink = __private::new_sink(Recorder::default)
            .into_result()
            .expect("sink");
        assert!(!sink.transactional());
        let (r, taken) = commit(&mut sink, 1, vec![batch(vec![1])]);
        let e = r.expect_err("not transactional");
        assert!(!e.fatal && e.message.as_str().contains("qos 2"), "{e:?}");
        assert_eq!(
            taken,
            [true],
            "the adapter takes the arrays before it asks the sink"
        );
        let e = sink
            .committed_epoch("rule/sink".into())
            .into_result()
            .expect_err("not transactional");
        assert!(!e.fatal, "{e:?}");
    }

    struct Half;

    impl Function for Half {
        fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error> {
            match args {
                [SqlType::Bigint] => Ok(SqlType::Float),
                _ => Err(format!("expects a bigint but got {args:?}").into()),
            }
        }

        fn exec(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, Error> {
            let x = args[0]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or("bigint")?;
            Ok(Arc::new(
                (0..rows)
                    .map(|i| x.value(i) as f64 / 2.0)
                    .collect::<Float64Array>(),
            ))
        }
    }

    struct Greet;

    impl RowFunction for Greet {
        fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error> {
            match args.len() {
                1 => Ok(SqlType::String),
                n => Err(format!("expects 1 argument but got {n}").into()),
            }
        }

        fn exec(&self, args: &[serde_json::Value]) -> Result<serde_json::Value, Error> {
            Ok(match &args[0] {
                serde_json::Value::Null => serde_json::Value::Null,
                v => format!("hello {v}").into(),
            })
        }
    }

    #[test]
    fn a_row_function_runs_row_by_row() {
        let names: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
        ]));
        let out = Rows(Greet).exec(&[names], 3).expect("exec");
        let out = out
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("string");
        let got: Vec<Option<&str>> = out.iter().collect();
        assert_eq!(got, [Some("hello \"a\""), None, Some("hello \"b\"")]);
        assert_eq!(
            array_of(SqlType::Any, &[1.into(), serde_json::Value::Null])
                .expect("ints")
                .data_type(),
            &arrow::datatypes::DataType::Int64
        );
        let err = array_of(SqlType::Bigint, &["x".into()]).expect_err("not a number");
        assert_eq!(err.to_string(), "returned \"x\" where it declared bigint");
    }

    #[test]
    fn a_function_validates_and_runs_over_the_c_data_interface() {
        let f = __private::new_function(|| Half)
            .into_result()
            .expect("function");
        assert_eq!(
            f.validate(r#"["bigint"]"#.into())
                .into_result()
                .expect("valid")
                .as_str(),
            "float"
        );
        let e = f
            .validate(r#"["string"]"#.into())
            .into_result()
            .expect_err("invalid");
        assert!(e.message.as_str().starts_with("expects a bigint"), "{e:?}");
        assert!(!f.is_aggregate());

        let (mut args, args_schema) =
            to_ffi(&StructArray::from(batch(vec![1, 4, 7])).to_data()).expect("export");
        let mut out = FFI_ArrowArray::empty();
        let mut out_schema = FFI_ArrowSchema::empty();
        f.exec(
            FfiArrowBatch {
                array: (&raw mut args).cast::<c_void>(),
                schema: (&raw const args_schema).cast::<c_void>(),
            },
            3,
            FfiArrowOut {
                array: (&raw mut out).cast::<c_void>(),
                schema: (&raw mut out_schema).cast::<c_void>(),
            },
        )
        .into_result()
        .expect("exec");
        // SAFETY: exec succeeded, so `out` and `out_schema` hold an exported array.
        let data = unsafe { from_ffi(out, &out_schema) }.expect("import");
        let result = arrow::array::make_array(data);
        let result = result
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("float");
        assert_eq!(result.values().to_vec(), [0.5, 2.0, 3.5]);
    }
}
