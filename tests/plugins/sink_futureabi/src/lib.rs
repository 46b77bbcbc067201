//! A sink plugin built against quiver-plugin-abi 2.0.0 (`future_abi`), as after an
//! incompatible interface change; a server of plugin ABI 1 refuses it by version.

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::RStr;
use quiver_plugin_abi::ffi::{PluginKind, PluginMod, PluginModRef};

#[export_root_module]
fn root() -> PluginModRef {
    PluginMod {
        abi_major: 2,
        name: RStr::from_str("nextgen"),
        kind: PluginKind::Sink,
        version: RStr::from_str("1.0.0"),
        new_sink: None,
        new_source: None,
        new_function: None,
    }
    .leak_into_prefix()
}
