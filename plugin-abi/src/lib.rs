//! The stable plugin interface of Quiver, and the SDK plugin authors write against.
//!
//! Two layers:
//! - [`ffi`]: the ABI-stable types (`abi_stable` root module, `#[sabi_trait]` sink and
//!   function). They never mention arrow: batches cross as Arrow C Data Interface pointers, so
//!   a plugin may use another arrow version than the server.
//! - `sdk` (with the `arrow-60` or `arrow-59` feature): plain Rust traits in eKuiper's shape
//!   ([`sdk::Sink`]: provision/connect/collect/collect_list/close; [`sdk::Function`]:
//!   validate/exec/is_aggregate), a row view ([`sdk::Tuple`]) and [`export_plugin!`], which
//!   wraps every exported call in `catch_unwind` so a panic becomes an error of the rule
//!   instead of aborting the server.
//!
//! The crate's major version is the plugin ABI major ([`ABI_MAJOR`]): a server loads plugins
//! built against any `quiver-plugin-abi` of its major and refuses others with both versions
//! in the message. This crate depends on nothing of Quiver's.
#![deny(missing_docs)]
// `#[sabi_trait]` expands to impls that rustc's non_local_definitions lint flags.
#![allow(non_local_definitions)]

pub mod ffi;
#[cfg(any(feature = "arrow-60", feature = "arrow-59"))]
pub mod sdk;

/// The plugin author's guide, so that `cargo test --doc` keeps its examples compiling.
#[cfg(all(doctest, any(feature = "arrow-60", feature = "arrow-59")))]
#[doc = include_str!("../../docs/plugins.md")]
struct PluginGuide;

/// The plugin ABI major version this crate speaks: the crate's major version.
pub const ABI_MAJOR: u32 = 1;

/// The full `quiver-plugin-abi` version this crate is.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// abi_stable's root module symbol (`abi_stable::library::ROOT_MODULE_LOADER_NAME`), spelled
/// out because [`__export_root_module!`] must write it in an attribute; a unit test keeps the
/// two equal.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// What the export macros expand to; not for direct use.
#[doc(hidden)]
pub mod __private_abi {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RStr, RString};
}

/// Exports `$f` (a `fn() -> PluginModRef`) as the library's root module, as abi_stable's
/// `#[export_root_module]` would, without the plugin crate depending on abi_stable.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    ($f:ident) => {
        $crate::__export_root_module!($f, $crate::ffi::PluginModRef);
    };
    ($f:ident, $module:ty) => {
        /// The root module header the server looks up.
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __QUIVER_LIB_HEADER: $crate::__private_abi::LibHeader = {
            extern "C" fn erased() -> $crate::__private_abi::RootModuleResult {
                $crate::__private_abi::__call_root_module_loader($f)
            }
            // SAFETY: `erased` returns the root module of type `$module`, the type named
            // here, and the layout is checked by the loader (CheckTypeLayout::Yes).
            unsafe {
                $crate::__private_abi::LibHeader::from_constructor::<$module>(
                    erased,
                    $crate::__private_abi::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Argument and result types of a SQL function, as named in `CREATE STREAM` schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer.
    Bigint,
    /// 64-bit float.
    Float,
    /// UTF-8 text.
    String,
    /// True or false.
    Boolean,
    /// Milliseconds since the epoch.
    Datetime,
    /// Raw bytes.
    Bytea,
    /// A list.
    Array,
    /// A record.
    Struct,
    /// Not known at rule creation (schemaless streams, mixed values).
    Any,
}

impl SqlType {
    /// The lowercase name used across the boundary.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Bigint => "bigint",
            SqlType::Float => "float",
            SqlType::String => "string",
            SqlType::Boolean => "boolean",
            SqlType::Datetime => "datetime",
            SqlType::Bytea => "bytea",
            SqlType::Array => "array",
            SqlType::Struct => "struct",
            SqlType::Any => "any",
        }
    }

    /// Parses a name written by [`SqlType::name`].
    pub fn parse(name: &str) -> Option<SqlType> {
        Some(match name {
            "bigint" => SqlType::Bigint,
            "float" => SqlType::Float,
            "string" => SqlType::String,
            "boolean" => SqlType::Boolean,
            "datetime" => SqlType::Datetime,
            "bytea" => SqlType::Bytea,
            "array" => SqlType::Array,
            "struct" => SqlType::Struct,
            "any" => SqlType::Any,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_is_abi_stables() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    #[test]
    fn abi_major_is_the_crate_major() {
        assert_eq!(
            ABI_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR"),
            "bump ABI_MAJOR together with the crate's major version"
        );
    }

    #[test]
    fn sql_type_names_round_trip() {
        for t in [
            SqlType::Bigint,
            SqlType::Float,
            SqlType::String,
            SqlType::Boolean,
            SqlType::Datetime,
            SqlType::Bytea,
            SqlType::Array,
            SqlType::Struct,
            SqlType::Any,
        ] {
            assert_eq!(SqlType::parse(t.name()), Some(t));
        }
        assert_eq!(SqlType::parse("BIGINT"), None);
    }
}
