//! A sink plugin built against the interface as it was before source plugins (`old_abi`):
//! same crate name and version, different root module layout.

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::RStr;
use quiver_plugin_abi::ffi::{PluginKind, PluginMod, PluginModRef};

#[export_root_module]
fn root() -> PluginModRef {
    PluginMod {
        abi_major: 1,
        name: RStr::from_str("oldie"),
        kind: PluginKind::Sink,
        version: RStr::from_str("1.0.0"),
        new_sink: None,
        new_function: None,
    }
    .leak_into_prefix()
}
