//! The parts of the interface that quiver-plugin-abi 1.2 changed, frozen as 1.1 had them: the
//! sink's vtable before its epoch methods, and the root module that returns it.
//!
//! abi_stable refuses a library whose prefix types (vtables, root modules) have fewer fields
//! than the loader's, so a server of 1.2 cannot load a 1.1 plugin as it is. The loader checks
//! such a plugin against these types instead and then reads it through the current ones: every
//! field 1.2 added comes after the 1.1 fields, and its accessor tests the plugin's own
//! field-accessibility bits, which mark only the fields the plugin was built with, so the
//! server runs the method's default body (`transactional() == false`) instead of reading past
//! the plugin's vtable. Types that did not change are shared with [`super`].
// `#[sabi_trait]` and `StableAbi` expand to unsafe impls and blocks (vtables over erased
// pointers); abi_stable's layout check is what makes them sound across the boundary.
#![allow(unsafe_code)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RStr};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

use super::{FfiArrowBatch, FfiError, FunctionBox, PluginKind, SourceBox};

/// [`super::FfiSink`] as 1.1 had it.
#[sabi_trait]
pub trait FfiSink: Send {
    /// Configures the sink from the action's properties (a JSON object as text).
    fn provision(&mut self, config_json: RStr<'_>) -> RResult<(), FfiError>;

    /// Connects before the first batch.
    fn connect(&mut self) -> RResult<(), FfiError>;

    /// Writes one batch of result rows; the callee takes the array.
    fn collect_list(&mut self, batch: FfiArrowBatch) -> RResult<(), FfiError>;

    /// Flushes and releases resources when the rule stops.
    #[sabi(last_prefix_field)]
    fn close(&mut self) -> RResult<(), FfiError>;
}

/// A boxed 1.1 sink.
pub type SinkBox = FfiSink_TO<'static, RBox<()>>;

/// [`super::PluginMod`] as 1.1 had it (its sink is a 1.1 sink).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin ABI major the plugin was built against.
    pub abi_major: u32,
    /// The plugin's name.
    pub name: RStr<'static>,
    /// What it provides.
    pub kind: PluginKind,
    /// The plugin's own version.
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
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
