//! quiver-plugin-abi 1.1.0's interface, before the sink's epoch methods (1.2): a test fixture,
//! not for use. A sink built against it has no `transactional`, `committed_epoch` or
//! `commit_epoch` in its vtable; the server must load it, run it at qos 0 and 1, and refuse it
//! at qos 2.
#![allow(non_local_definitions, missing_docs)]

pub mod ffi {
    // `#[sabi_trait]` and `StableAbi` expand to unsafe impls and blocks (vtables over erased
    // pointers); abi_stable's layout check is what makes them sound across the boundary.
    #![allow(unsafe_code)]

    use std::ffi::c_void;

    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
    use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

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
        fn provision(
            &mut self,
            datasource: RStr<'_>,
            config_json: RStr<'_>,
        ) -> RResult<(), FfiError>;

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
}
