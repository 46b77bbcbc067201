//! Loading one plugin file: open it, check it is a Quiver plugin of our ABI major, check its
//! layout (abi_stable), and read who it says it is.
//!
//! Libraries are never unloaded (abi_stable leaks them on purpose), so a loaded file is never
//! overwritten: an update installs a new file name.
// A plugin built against the previous minor interface is read through the current types
// (see `load`), which abi_stable only allows unchecked.
#![allow(unsafe_code)]

use std::path::Path;

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::sabi_types::VersionNumber;
use quiver_plugin_abi::ffi::{FunctionBox, PluginKind, PluginModRef, SinkBox, SourceBox, v1_1};
use quiver_plugin_abi::{ABI_MAJOR, ABI_VERSION};

use super::PluginError;

/// A loaded plugin library: its identity and its root module.
pub struct LoadedPlugin {
    /// The name it exports (action type or function name). Leaked once per loaded library,
    /// which stays mapped for the life of the process anyway.
    pub name: &'static str,
    /// What it provides.
    pub kind: PluginKind,
    /// The plugin's own version.
    pub version: String,
    module: PluginModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .finish()
    }
}

impl LoadedPlugin {
    /// A new sink instance (sink plugins).
    pub fn new_sink(&self) -> Result<SinkBox, PluginError> {
        let make = self.module.new_sink().ok_or_else(|| {
            PluginError::Invalid(format!("plugin \"{}\" provides no sink", self.name))
        })?;
        make().into_result().map_err(|e| {
            PluginError::Invalid(format!(
                "plugin \"{}\" could not make a sink: {}",
                self.name, e.message
            ))
        })
    }

    /// A new source instance (source plugins).
    pub fn new_source(&self) -> Result<SourceBox, PluginError> {
        let make = self.module.new_source().ok_or_else(|| {
            PluginError::Invalid(format!("plugin \"{}\" provides no source", self.name))
        })?;
        make().into_result().map_err(|e| {
            PluginError::Invalid(format!(
                "plugin \"{}\" could not make a source: {}",
                self.name, e.message
            ))
        })
    }

    /// The function (function plugins).
    pub fn new_function(&self) -> Result<FunctionBox, PluginError> {
        let make = self.module.new_function().ok_or_else(|| {
            PluginError::Invalid(format!("plugin \"{}\" provides no function", self.name))
        })?;
        make().into_result().map_err(|e| {
            PluginError::Invalid(format!(
                "plugin \"{}\" could not make its function: {}",
                self.name, e.message
            ))
        })
    }
}

fn rebuild_hint() -> String {
    format!("rebuild the plugin against quiver-plugin-abi {ABI_MAJOR}.*")
}

/// Loads `path` and checks it. `file` names it in messages (the zip entry or file name).
pub fn load(path: &Path, file: &str) -> Result<LoadedPlugin, PluginError> {
    let header = checked_header(path, file)?;
    let module = match header.init_root_module::<PluginModRef>() {
        Ok(m) => m,
        // abi_stable refuses vtables with fewer entries than ours; a plugin built against
        // 1.1 has such a sink vtable, and matches the frozen 1.1 types instead.
        Err(e @ LibraryError::AbiInstability(_)) => {
            if header.ensure_layout::<v1_1::PluginModRef>().is_err() {
                return Err(PluginError::Invalid(summarise(file, &e)));
            }
            // SAFETY: the plugin's root module matches the 1.1 layout, and the current types
            // differ from it only by vtable entries after the 1.1 ones. Their accessors test
            // the plugin's own field-accessibility bits, which mark only the entries it was
            // built with, so the server runs their default bodies and never reads past the
            // plugin's vtable.
            unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
                .map_err(|e| PluginError::Invalid(summarise(file, &e)))?
        }
        Err(e) => return Err(PluginError::Invalid(summarise(file, &e))),
    };
    let abi_major = module.abi_major();
    check_abi_major(file, abi_major)?;
    let name = module.name().as_str();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PluginError::Invalid(format!(
            "{file} exports an invalid plugin name \"{name}\" (letters, digits and _ only)"
        )));
    }
    Ok(LoadedPlugin {
        name: Box::leak(name.to_string().into_boxed_str()),
        kind: module.kind(),
        version: module.version().as_str().to_string(),
        module,
    })
}

/// The root module `T` of library `path` (a converter library's, say), checked as
/// [`load`] checks a plugin's.
pub fn load_module<T: abi_stable::library::RootModule>(
    path: &Path,
    file: &str,
) -> Result<T, PluginError> {
    checked_header(path, file)?
        .init_root_module::<T>()
        .map_err(|e| PluginError::Invalid(summarise(file, &e)))
}

/// A module's declared ABI major must be ours.
pub fn check_abi_major(file: &str, abi_major: u32) -> Result<(), PluginError> {
    if abi_major != ABI_MAJOR {
        return Err(PluginError::Invalid(format!(
            "{file} declares plugin ABI {abi_major}, but this server speaks plugin ABI \
             {ABI_MAJOR} (quiver-plugin-abi {ABI_VERSION}); {}",
            rebuild_hint()
        )));
    }
    Ok(())
}

/// Opens library `path` and checks the plugin ABI version it was built against, before any
/// layout check, so an incompatible library gets a short message naming both versions.
fn checked_header(
    path: &Path,
    file: &str,
) -> Result<&'static abi_stable::library::LibHeader, PluginError> {
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => {
            PluginError::Invalid(format!("{file} is not a loadable shared library: {err}"))
        }
        LibraryError::GetSymbolError { .. } => PluginError::Invalid(format!(
            "{file} is not a Quiver plugin: it has no plugin root module \
             (export one with quiver_plugin_abi::export_plugin!)"
        )),
        other => PluginError::Invalid(summarise(file, &other)),
    })?;
    // Our own check first, so an incompatible plugin gets a short message naming both
    // versions instead of abi_stable's layout dump.
    let built_against = header.version_strings();
    match VersionNumber::new(built_against) {
        Ok(v) if v.major == ABI_MAJOR => {}
        Ok(v) => {
            return Err(PluginError::Invalid(format!(
                "{file} was built against quiver-plugin-abi {v} (plugin ABI {}), but this server \
                 speaks plugin ABI {ABI_MAJOR} (quiver-plugin-abi {ABI_VERSION}); {}",
                v.major,
                rebuild_hint()
            )));
        }
        Err(e) => {
            return Err(PluginError::Invalid(format!(
                "{file} has an unreadable plugin ABI version: {e}"
            )));
        }
    }
    Ok(header)
}

/// A short account of a load failure: abi_stable's layout errors run to thousands of lines,
/// so the user gets the kind and the first `Error`/`Expected`/`Found` lines, and the full
/// text goes to the debug log.
fn summarise(file: &str, e: &LibraryError) -> String {
    let full = e.to_string();
    tracing::debug!(file, "plugin load error in full:\n{full}");
    match e {
        LibraryError::AbiInstability(_) => format!(
            "{file} does not match this server's plugin interface (quiver-plugin-abi \
             {ABI_VERSION}): {}; {}",
            first_mismatch(&full),
            rebuild_hint()
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "{file} was built against quiver-plugin-abi {actual_version}, but this server has \
             {expected_version}; {}",
            rebuild_hint()
        ),
        _ => {
            let first = full.lines().next().unwrap_or("unknown error");
            format!("{file} could not be loaded: {first}")
        }
    }
}

/// The first difference in abi_stable's layout report, as `what (expected X, found Y)`, and
/// how many more there are. The report has blocks of an `Error:` line followed by `Expected:`
/// and `Found:`, each with its value on the same line or on the indented lines below.
fn first_mismatch(report: &str) -> String {
    let errors = report
        .lines()
        .filter(|l| l.trim_start().starts_with("Error:"))
        .count();
    let mut lines = report
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("Error:"));
    let Some(what) = lines.next().and_then(|l| l.strip_prefix("Error:")) else {
        return "layout mismatch".to_string();
    };
    let (mut expected, mut found) = (Vec::new(), Vec::new());
    let mut current: Option<&mut Vec<String>> = None;
    for l in lines {
        if l.is_empty() || l.starts_with("Error:") {
            break;
        }
        if let Some(rest) = l.strip_prefix("Expected:") {
            current = Some(&mut expected);
            if let Some(c) = current.as_mut().filter(|_| !rest.trim().is_empty()) {
                c.push(rest.trim().to_string());
            }
        } else if let Some(rest) = l.strip_prefix("Found:") {
            current = Some(&mut found);
            if let Some(c) = current.as_mut().filter(|_| !rest.trim().is_empty()) {
                c.push(rest.trim().to_string());
            }
        } else if let Some(c) = current.as_mut() {
            c.push(l.to_string());
        }
    }
    // A value can span many lines (a field's whole layout); its first two say what it is.
    let short = |v: &[String]| v.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
    let mut out = format!(
        "{} (expected {}, found {})",
        what.trim(),
        short(&expected),
        short(&found)
    );
    if errors > 1 {
        out.push_str(&format!(", and {} more differences", errors - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RBoxError;

    use super::*;

    #[derive(Debug)]
    struct Dump(String);

    impl std::fmt::Display for Dump {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Dump {}

    #[test]
    fn a_layout_report_is_summarised_to_its_first_mismatch() {
        // The shape of a real report (a plugin built before `new_source` was added).
        let mut report = "Compared <this>:\n    --- the whole layout ---\n".repeat(200);
        report.push_str("\nError:incompatible type size\nExpected:\n    72\nFound:\n    64\n\n");
        report.push_str("Error:too many fields\nExpected:\n    7\nFound:\n    6\n\n");
        report.push_str(
            "Error:unexpected field\nExpected:\n    field_name:new_source\n    \
             type:Option<AFunctionPointer>\n    size:8 align:8\nFound:\n    \
             field_name:new_function\n",
        );
        let e = LibraryError::AbiInstability(RBoxError::new(Dump(report)));
        assert_eq!(
            summarise("Memo@v1.0.0.so", &e),
            format!(
                "Memo@v1.0.0.so does not match this server's plugin interface (quiver-plugin-abi \
                 {ABI_VERSION}): incompatible type size (expected 72, found 64), and 2 more \
                 differences; rebuild the plugin against quiver-plugin-abi {ABI_MAJOR}.*"
            )
        );
        // The inline form, as in older reports.
        assert_eq!(
            first_mismatch(
                "Error:unexpected field\nExpected:  field_name:_self,param_0\n\
                 Found:     field_name:_self,param_0,param_1\n"
            ),
            "unexpected field (expected field_name:_self,param_0, found \
             field_name:_self,param_0,param_1)"
        );
    }

    #[test]
    fn a_missing_file_is_not_a_loadable_library() {
        let err = load(Path::new("/nonexistent/Memo@v1.0.0.so"), "Memo@v1.0.0.so")
            .expect_err("no such file")
            .to_string();
        assert!(
            err.starts_with("Memo@v1.0.0.so is not a loadable shared library"),
            "{err}"
        );
    }
}
