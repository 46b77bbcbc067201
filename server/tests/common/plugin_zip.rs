//! Test plugin packages: a project under tests/plugins built as a cdylib and zipped in
//! eKuiper's layout, as the plugin and CLI tests install them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::repo_root;

/// Builds test plugin `project` (a directory under tests/plugins) and returns its library.
/// All test plugins share one target directory, so their dependencies build once. A release
/// build of the tests (the benchmark) builds release plugins.
pub fn build_plugin(project: &str) -> PathBuf {
    build_plugin_with(project, None)
}

/// Builds test plugin `project` with a cargo `feature`, in a target dir of its own, so
/// parallel tests reading the default build's library never see this one.
pub fn build_plugin_with(project: &str, feature: Option<&str>) -> PathBuf {
    let root = repo_root();
    let target = match feature {
        None => root.join("target").join("test-plugins"),
        Some(f) => root.join("target").join(format!("test-plugins-{f}")),
    };
    let release = !cfg!(debug_assertions);
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["build", "--quiet", "--manifest-path"])
        .arg(root.join("tests/plugins").join(project).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target);
    if let Some(f) = feature {
        cargo.args(["--features", f]);
    }
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building test plugin {project} failed");
    let profile = if release { "release" } else { "debug" };
    let lib = target.join(profile).join(format!("lib{project}.so"));
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// Writes a zip of `entries` (name in the zip, contents) to `path`.
pub fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("zip file");
    let mut zip = zip::ZipWriter::new(file);
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(data).expect("zip write");
    }
    zip.finish().expect("zip finish");
}

/// Packages a built plugin the way `scripts/package-plugin.sh` does: `Name@vX.Y.Z.so` and
/// `name.json` at the zip root.
pub fn package(dir: &Path, project: &str, name: &str, version: &str, metadata: Value) -> PathBuf {
    package_with(dir, project, None, name, version, metadata)
}

/// [`package`] of a build with a cargo feature; the zip is `name-version.zip`.
pub fn package_with(
    dir: &Path,
    project: &str,
    feature: Option<&str>,
    name: &str,
    version: &str,
    metadata: Value,
) -> PathBuf {
    let so = std::fs::read(build_plugin_with(project, feature)).expect("read library");
    let zip = match feature {
        None => dir.join(format!("{name}.zip")),
        Some(_) => dir.join(format!("{name}-{version}.zip")),
    };
    let mut cap = name.to_string();
    cap[..1].make_ascii_uppercase();
    write_zip(
        &zip,
        &[
            (&format!("{cap}@v{version}.so"), so),
            (&format!("{name}.json"), metadata.to_string().into_bytes()),
        ],
    );
    zip
}
