//! The ABI-stable interface: the types that cross the boundary between `quiverd` and a plugin.
//!
//! Nothing here mentions arrow: batches cross as raw Arrow C Data Interface pointers, so a
//! plugin may use any arrow version. Configs and signatures cross as JSON text, errors as
//! strings.
//!
//! Evolution: add a method after the `#[sabi(last_prefix_field)]` one (or a field after the
//! root module's) and bump the crate's minor version. Such a method must have a default body:
//! abi_stable makes it an optional vtable entry and runs the default when a plugin's vtable
//! lacks it (a method without one gets an entry whose accessor panics when absent).
//! abi_stable's layout check itself refuses a plugin whose vtables have fewer entries than
//! the server's, so the previous minor's changed types are kept, frozen, in a module
//! ([`v1_1`]); the loader accepts a plugin that matches them and reads it through the current
//! types. Anything else is refused with a precise report. History: 1.1 added source plugins
//! (in the root module's prefix: 1.0 plugins are refused), 1.2 the sink's epoch methods
//! (`transactional`, `committed_epoch`, `commit_epoch`).
// `#[sabi_trait]` and `StableAbi` expand to unsafe impls and blocks (vtables over erased
// pointers); abi_stable's layout check is what makes them sound across the boundary.
#![allow(unsafe_code)]

use std::ffi::c_void;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

pub mod v1_1;

/// One batch as two Arrow C Data Interface structs, passed by pointer.
///
/// Ownership: the callee moves the array out (`FFI_ArrowArray::from_raw`), leaving the
/// caller's struct released; the schema stays with the caller, which frees it after the call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiArrowBatch {
    /// A `*mut FFI_ArrowArray` holding a struct array, one child per column.
    pub array: *mut c_void,
    /// A `*const FFI_ArrowSchema` of that struct array.
    pub schema: *const c_void,
}

/// Where a callee writes an array it returns: empty C Data Interface structs owned by the
/// caller, which the callee overwrites (`std::ptr::write`) with its array and schema.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiArrowOut {
    /// A `*mut FFI_ArrowArray` to fill.
    pub array: *mut c_void,
    /// A `*mut FFI_ArrowSchema` to fill.
    pub schema: *mut c_void,
}

/// An error a plugin returns: its message, and whether it must stop the rule.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    /// What went wrong, with context.
    pub message: RString,
    /// True when the plugin panicked: its state is unknown, so the rule using it fails
    /// instead of counting an exception and going on.
    pub fatal: bool,
}

/// What a plugin provides.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A source (a stream `TYPE`).
    Source,
    /// A sink (a rule action).
    Sink,
    /// A SQL function.
    Function,
}

impl PluginKind {
    /// The folder name under `plugins/` (`sources`, `sinks`, `functions`).
    pub fn folder(self) -> &'static str {
        match self {
            PluginKind::Source => "sources",
            PluginKind::Sink => "sinks",
            PluginKind::Function => "functions",
        }
    }
}

/// A sink instance as the server drives it: one per rule action.
#[sabi_trait]
pub trait FfiSink: Send {
    /// Configures the sink from the action's properties (a JSON object as text).
    fn provision(&mut self, config_json: RStr<'_>) -> RResult<(), FfiError>;

    /// Connects before the first batch.
    fn connect(&mut self) -> RResult<(), FfiError>;

    /// Writes one batch of result rows; the callee takes the array (see [`FfiArrowBatch`]).
    fn collect_list(&mut self, batch: FfiArrowBatch) -> RResult<(), FfiError>;

    /// Flushes and releases resources when the rule stops.
    #[sabi(last_prefix_field)]
    fn close(&mut self) -> RResult<(), FfiError>;

    // Since 1.2: exactly-once delivery (rule option `qos` 2). A plugin built against an older
    // interface has no vtable entries for these; abi_stable then runs the default body below
    // instead of calling into the plugin (a method after the prefix with a default body is an
    // optional vtable field; one without would panic when absent). So an old plugin answers
    // `transactional() == false`, and the server refuses it at qos 2.

    /// True when the sink implements [`FfiSink::committed_epoch`] and
    /// [`FfiSink::commit_epoch`]; asked once per instance, after `provision`.
    fn transactional(&self) -> bool {
        false
    }

    /// The last epoch [`FfiSink::commit_epoch`] recorded for `id` at the far end (0: none).
    fn committed_epoch(&mut self, id: RStr<'_>) -> RResult<u64, FfiError> {
        let _ = id;
        RResult::RErr(not_transactional())
    }

    /// Writes `batches` and records `epoch` as `id`'s last committed epoch in one transaction
    /// of the far end: all of it lands or none of it does. The callee takes each batch's array
    /// as [`FfiSink::collect_list`] does (see [`FfiArrowBatch`]); the slice itself stays the
    /// caller's. A batch the far end refuses is left out and named in the answer; an error
    /// means nothing was written, and the call may be repeated.
    fn commit_epoch(
        &mut self,
        id: RStr<'_>,
        epoch: u64,
        batches: RSlice<'_, FfiArrowBatch>,
    ) -> RResult<RVec<FfiRefused>, FfiError> {
        let _ = (id, epoch, batches);
        RResult::RErr(not_transactional())
    }
}

/// A batch of [`FfiSink::commit_epoch`] that the far end refused.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiRefused {
    /// Its index in the call's `batches`.
    pub batch: u64,
    /// Rows not written.
    pub rows: u64,
    /// The far end's reason.
    pub reason: RString,
}

/// The answer of an epoch call to a sink that does not implement epochs.
pub fn not_transactional() -> FfiError {
    FfiError {
        message: RString::from("this sink plugin does not write epochs in transactions (qos 2)"),
        fatal: false,
    }
}

/// A boxed sink behind the stable vtable.
pub type SinkBox = FfiSink_TO<'static, RBox<()>>;

/// What a source's `poll` produced.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum FfiPoll {
    /// One message: a JSON object or array of objects (rows), as UTF-8 bytes. The server
    /// decodes it against the stream's schema, as it does MQTT payloads.
    Data(RVec<u8>),
    /// Nothing now; the server polls again after the stream's `interval`.
    Idle,
    /// The input ended; the rules reading it finish.
    End,
}

/// A source instance as the server drives it: one per rule (or per shared stream).
#[sabi_trait]
pub trait FfiSource: Send {
    /// Configures the source from the stream's DATASOURCE and properties (JSON object text).
    fn provision(&mut self, datasource: RStr<'_>, config_json: RStr<'_>) -> RResult<(), FfiError>;

    /// Connects before the first poll.
    fn connect(&mut self) -> RResult<(), FfiError>;

    /// The next message. May block until there is one (a push source) or answer
    /// [`FfiPoll::Idle`] at once (a pull source); the server calls it on a blocking thread.
    fn poll(&mut self) -> RResult<FfiPoll, FfiError>;

    /// Releases resources when the rules stop.
    #[sabi(last_prefix_field)]
    fn close(&mut self) -> RResult<(), FfiError>;
}

/// A boxed source behind the stable vtable.
pub type SourceBox = FfiSource_TO<'static, RBox<()>>;

/// A SQL function as the server calls it.
#[sabi_trait]
pub trait FfiFunction: Send + Sync {
    /// Checks the argument types at rule creation. `args_json` is a JSON array of type names
    /// (`"bigint"`, `"float"`, `"string"`, `"boolean"`, `"datetime"`, `"bytea"`, `"array"`,
    /// `"struct"`, `"any"`); the answer is the result's type name.
    fn validate(&self, args_json: RStr<'_>) -> RResult<RString, FfiError>;

    /// Evaluates the function over `rows` rows. `args` is a struct array with one child per
    /// argument (the callee takes it); the result array is written to `out`.
    fn exec(&self, args: FfiArrowBatch, rows: u64, out: FfiArrowOut) -> RResult<(), FfiError>;

    /// True for an aggregate function (each argument is a group's values).
    #[sabi(last_prefix_field)]
    fn is_aggregate(&self) -> bool;
}

/// A boxed function behind the stable vtable.
pub type FunctionBox = FfiFunction_TO<'static, RBox<()>>;

/// The root module every plugin exports: who it is and how to make its parts.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin ABI major the plugin was built against ([`crate::ABI_MAJOR`]).
    pub abi_major: u32,
    /// The plugin's name (the action type, function name or stream `TYPE`).
    pub name: RStr<'static>,
    /// What it provides.
    pub kind: PluginKind,
    /// The plugin's own version (`1.0.0`).
    pub version: RStr<'static>,
    /// Makes a sink instance (sink plugins).
    pub new_sink: Option<extern "C" fn() -> RResult<SinkBox, FfiError>>,
    /// Makes a source instance (source plugins).
    pub new_source: Option<extern "C" fn() -> RResult<SourceBox, FfiError>>,
    /// Makes the function (function plugins).
    #[sabi(last_prefix_field)]
    pub new_function: Option<extern "C" fn() -> RResult<FunctionBox, FfiError>>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "quiver_plugin";
    const NAME: &'static str = "quiver_plugin";
    // quiver-plugin-abi's own version: abi_stable refuses a plugin whose major differs.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A custom format (eKuiper's `custom` converter) for one message type: payloads to rows and
/// rows to payloads. The server calls it from several threads at once.
#[sabi_trait]
pub trait FfiConverter: Send + Sync {
    /// Decodes one payload into rows: a struct array (one child per field) written to `out`.
    fn decode(&self, payload: RSlice<'_, u8>, out: FfiArrowOut) -> RResult<(), FfiError>;

    /// Encodes each row of `batch` (the callee takes the array) into one payload.
    #[sabi(last_prefix_field)]
    fn encode(&self, batch: FfiArrowBatch) -> RResult<RVec<RVec<u8>>, FfiError>;
}

/// A boxed converter behind the stable vtable.
pub type ConverterBox = FfiConverter_TO<'static, RBox<()>>;

/// The root module of a custom format library, registered with `POST /schemas/custom`.
///
/// A root module of its own rather than a new [`PluginKind`]: a variant added to that enum
/// would change the layout every installed plugin was checked against.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ConverterModRef)))]
#[sabi(missing_field(option))]
pub struct ConverterMod {
    /// The plugin ABI major the library was built against ([`crate::ABI_MAJOR`]).
    pub abi_major: u32,
    /// The library's own version (`1.0.0`).
    pub version: RStr<'static>,
    /// Makes the converter of message type `message` (the part of `SCHEMAID` after the dot);
    /// an error names the types the library knows.
    #[sabi(last_prefix_field)]
    pub new_converter: extern "C" fn(message: RStr<'_>) -> RResult<ConverterBox, FfiError>,
}

impl RootModule for ConverterModRef {
    declare_root_module_statics! {ConverterModRef}
    const BASE_NAME: &'static str = "quiver_converter";
    const NAME: &'static str = "quiver_converter";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
