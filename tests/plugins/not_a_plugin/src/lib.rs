//! A shared library that is not a Quiver plugin: it has no abi_stable root module.

/// Adds two numbers (some symbol, so the library is not empty).
#[unsafe(no_mangle)]
pub extern "C" fn not_a_plugin_add(a: i32, b: i32) -> i32 {
    a + b
}
