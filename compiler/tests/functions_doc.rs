//! docs/functions.md must match the registry: a function added without regenerating the doc
//! fails here. `QUIVER_REGENERATE_DOCS=1 cargo test -p quiver-compiler --test functions_doc`
//! rewrites it.

use std::path::Path;

use quiver_compiler::Registry;

#[test]
fn function_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/functions.md");
    let generated = Registry::builtin().reference_markdown();
    if std::env::var_os("QUIVER_REGENERATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/functions.md is out of date; run QUIVER_REGENERATE_DOCS=1 cargo test -p quiver-compiler --test functions_doc"
    );
}

#[test]
fn every_function_documents_itself() {
    for (doc, names) in Registry::builtin().catalogue() {
        assert!(!doc.syntax.is_empty(), "{names:?} has no syntax");
        assert!(!doc.description.is_empty(), "{names:?} has no description");
        assert!(!doc.example.is_empty(), "{names:?} has no example");
    }
}
