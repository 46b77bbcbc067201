//! Links quiverd with packed relative relocations (`-z pack-relative-relocs`, DT_RELR) where
//! the toolchain supports them.
//!
//! quiverd is a position-independent executable with about 100,000 relative relocations. As
//! RELA entries they take 2.4 MB that the loader reads at every start, which stayed resident:
//! about 3 MB of the idle server's 16 MB RSS. Packed, they take 33 KB (BENCHMARKS.md,
//! "Idle RSS"). The executable stays position-independent, so ASLR is unchanged.
//!
//! It needs GNU ld 2.38+ (or lld 15+) and glibc 2.36+. The probe links an empty program with
//! the option and warnings made fatal, so an older toolchain (which warns and ignores it) just
//! builds quiverd as before.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") && linker_packs_relocations() {
        println!("cargo:rustc-link-arg-bin=quiverd={FLAG}");
    }
}

/// True when the C compiler driver (rustc's linker on linux-gnu) links a program with
/// [`FLAG`] without a warning.
fn linker_packs_relocations() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr_probe.c");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    Command::new(cc)
        .arg("-pie")
        .arg("-fPIE")
        // Before the flag: ld warns about an unknown `-z` option as it parses it.
        .arg("-Wl,--fatal-warnings")
        .arg(FLAG)
        .arg(&source)
        .arg("-o")
        .arg(out.join("relr_probe"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
