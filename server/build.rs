//! Links quiverd with packed relative relocations (`-z pack-relative-relocs`, DT_RELR) where
//! the toolchain supports them.
//!
//! quiverd is a position-independent executable with about 100,000 relative relocations. As
//! RELA entries they take 2.4 MB that the loader reads at every start, which stayed resident:
//! about 3 MB of the idle server's 16 MB RSS. Packed, they take 33 KB (BENCHMARKS.md,
//! "Idle RSS"). The executable stays position-independent, so ASLR is unchanged.
//!
//! It needs GNU ld 2.38+ (or lld 15+) at build time, and the binary then needs glibc 2.36+ to
//! start (GNU ld adds a `GLIBC_ABI_DT_RELR` requirement). The probe links an empty program with
//! the option and warnings made fatal, so an older toolchain (which warns and ignores it)
//! builds quiverd as before. Only native builds with the default linker are probed: the probe
//! runs `cc`, which is what rustc links with then. `QUIVER_NO_RELR=1` turns it off, for a
//! binary meant to run on an older glibc than the build machine's.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["QUIVER_NO_RELR", "RUSTC_LINKER", "CC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let native = std::env::var("HOST").is_ok_and(|host| host == target);
    let default_linker = std::env::var_os("RUSTC_LINKER").is_none();
    let opted_out = std::env::var_os("QUIVER_NO_RELR").is_some_and(|v| v != "0");
    if target.contains("linux-gnu")
        && native
        && default_linker
        && !opted_out
        && linker_packs_relocations()
    {
        println!("cargo:rustc-link-arg-bin=quiverd={FLAG}");
    }
}

/// True when `cc`, rustc's default linker on linux-gnu, links a position-independent program
/// with [`FLAG`] without a warning.
fn linker_packs_relocations() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr_probe.c");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    Command::new("cc")
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
