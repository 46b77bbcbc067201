//! Property tests (stable Rust's stand-in for fuzzing, see docs/fuzzing.md) of the plugin
//! package reader: `package::open` on arbitrary bytes and on valid plugin zips with bytes
//! changed or cut never panics and answers quickly, whatever the zip claims about its entries.
//! The normal run is small and seeded; `QUIVER_FUZZ_CASES=N` and `QUIVER_FUZZ_SEED=S` make
//! long runs.

use std::io::Write;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quiver_server::plugins::package;

/// Cases per property in the normal test run.
const DEFAULT_CASES: u32 = 300;

/// The longest one package may take to be read (the reader caps what it inflates).
const MAX_CASE_TIME: Duration = Duration::from_secs(5);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A seeded runner with `QUIVER_FUZZ_CASES` cases.
fn runner() -> TestRunner {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&env_number("QUIVER_FUZZ_SEED").unwrap_or(0).to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases: env_number("QUIVER_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as u32),
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    )
}

/// A well-formed sink plugin zip for `memo`: the library, its JSON description and a YAML.
fn valid_zip() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("libmemo.so", opts).unwrap();
        zip.write_all(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0])
            .unwrap();
        zip.write_all(&vec![0u8; 4096]).unwrap();
        zip.start_file("memo.json", opts).unwrap();
        zip.write_all(br#"{"about": {"trial": false}, "properties": []}"#)
            .unwrap();
        zip.start_file("memo.yaml", opts).unwrap();
        zip.write_all(b"default:\n  topic: x\n").unwrap();
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// Reads `bytes` as plugin `memo`, failing the case on a panic or a slow answer.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| package::open(bytes, "memo").map(drop));
    prop_assert!(outcome.is_ok(), "package::open panicked");
    prop_assert!(
        started.elapsed() < MAX_CASE_TIME,
        "package::open took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn arbitrary_bytes_never_panic() {
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            check(&bytes)
        })
        .unwrap();
}

#[test]
fn changed_and_cut_plugin_zips_never_panic() {
    let zip = valid_zip();
    let len = zip.len();
    let edits = proptest::collection::vec((0..len, any::<u8>()), 1..16);
    runner()
        .run(&(edits, 0..=len), |(edits, cut)| {
            let mut bytes = zip.clone();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            bytes.truncate(cut.max(1));
            check(&bytes)
        })
        .unwrap();
}
