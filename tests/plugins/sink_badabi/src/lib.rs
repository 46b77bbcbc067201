//! A sink plugin that claims plugin ABI major `ABI_MAJOR + 1`, as a plugin built against a
//! future incompatible quiver-plugin-abi would; the server must refuse it by name. It builds
//! its root module by hand from the raw interface (`quiver_plugin_abi::ffi`).

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::RStr;
use quiver_plugin_abi::ffi::{PluginKind, PluginMod, PluginModRef};

#[export_root_module]
fn root() -> PluginModRef {
    PluginMod {
        abi_major: quiver_plugin_abi::ABI_MAJOR + 1,
        name: RStr::from_str("future"),
        kind: PluginKind::Sink,
        version: RStr::from_str("1.0.0"),
        new_sink: None,
        new_source: None,
        new_function: None,
    }
    .leak_into_prefix()
}
