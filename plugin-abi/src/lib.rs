//! The stable plugin interface of Quiver.
//!
//! Placeholder: the ABI-stable interface (`abi_stable` root module, Arrow C Data Interface
//! batches) arrives with the plugins issue. This crate must keep depending on nothing of ours.

/// The plugin ABI major version a server accepts; bumped only on incompatible changes.
pub const ABI_MAJOR: u32 = 0;
