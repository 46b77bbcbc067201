//! Property tests (stable Rust's stand-in for fuzzing, see docs/fuzzing.md) of the JSON
//! decoders, differential: the flat fast path ([`FlatDecoder`] inside [`JsonDecoder`]) must
//! give exactly the rows and errors arrow-json's path ([`JsonDecoder::general`]) gives, for
//! messages and for line blocks, and no decoder panics on any payload or takes long on it.
//!
//! Payloads come from a generator of flat and nearly flat objects over the schema's keys (in
//! other cases, duplicated, escaped), with values at the edges of each type, and from
//! mutations of them (cut, a byte changed) and arbitrary bytes. The normal run is small and
//! seeded; `QUIVER_FUZZ_CASES=N` and `QUIVER_FUZZ_SEED=S` make long runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quiver_connectors::RawMessage;
use quiver_connectors::codec::flat::FlatDecoder;
use quiver_connectors::codec::json::{Decoded, JsonDecoder};

/// Cases per property in the normal test run.
const DEFAULT_CASES: u32 = 400;

/// The longest one group of messages may take to decode.
const MAX_CASE_TIME: Duration = Duration::from_secs(2);

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

/// The schema the fast path serves: a column of each type it writes, and two of one (so a
/// value lands in the right one of two string columns).
fn schema() -> SchemaRef {
    let fields = [
        ("on", DataType::Boolean),
        ("device", DataType::Utf8),
        ("humidity", DataType::Int64),
        ("temperature", DataType::Float64),
        ("other", DataType::Utf8),
    ];
    Arc::new(Schema::new(
        fields.map(|(name, t)| Field::new(name, t, true)).to_vec(),
    ))
}

/// JSON number texts, valid and not, at the edges of i64 and f64.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-5i64..5).prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        proptest::sample::select(vec![
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1e308",
            "1e309",
            "-1e400",
            "1E2",
            "1e-400",
            "0.1e1",
            "-0",
            "-0.0",
            "00",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "0x10",
            "NaN",
            "Infinity",
            "123456789012345678901234567890",
            "1.0000000000000000000000001",
        ])
        .prop_map(str::to_string),
    ]
}

/// JSON string texts: plain, escaped, non-ASCII, and broken escapes.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _-]{0,10}".prop_map(|s| format!("\"{s}\"")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        proptest::sample::select(vec![
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\n\t\"\\\/""#,
            r#""\x""#,
            r#""\u12""#,
            "\"é\"",
            "\"\u{1}\"",
            "\"unterminated",
        ])
        .prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        3 => number(),
        3 => string(),
        1 => proptest::sample::select(vec!["true", "false", "null", "tru", "nul", "True"])
            .prop_map(str::to_string),
    ];
    scalar.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|kv| {
                let kv: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", kv.join(","))
            }),
        ]
    })
}

/// Keys: the schema's, in other cases, escaped, and others.
fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        "\"device\"",
        "\"temperature\"",
        "\"humidity\"",
        "\"on\"",
        "\"Device\"",
        "\"HUMIDITY\"",
        "\"dev\\u0069ce\"",
        "\"other\"",
        "\"tags\"",
        "\"\"",
        "\"é\"",
        "device",
    ])
    .prop_map(str::to_string)
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["", "", "", " ", "\t", "\r\n ", "\u{a0}"])
}

/// One payload: mostly objects, sometimes mutated, sometimes anything.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let object = (
        proptest::collection::vec((key(), value(), whitespace()), 0..6),
        whitespace(),
    )
        .prop_map(|(fields, ws)| {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}"))
                .collect();
            format!("{ws}{{{}}}{ws}", fields.join(",")).into_bytes()
        })
        .boxed();
    // Objects whose values fit the schema's types, so that whole groups reach the fast path.
    let typed = (
        proptest::option::of(string()),
        proptest::option::of(number()),
        proptest::option::of(prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            number()
        ]),
        proptest::option::of(proptest::sample::select(vec!["true", "false", "null"])),
        proptest::option::of(("\"[a-z]{1,3}\"", value())),
        whitespace(),
    )
        .prop_map(|(d, t, h, o, extra, w)| {
            let fields: Vec<String> = [
                d.map(|v| format!("\"device\":{w}{v}")),
                t.map(|v| format!("\"temperature\":{v}")),
                h.map(|v| format!("{w}\"humidity\"{w}:{v}")),
                o.map(|v| format!("\"on\":{v}{w}")),
                extra.map(|(k, v)| format!("{k}:{v}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        })
        .boxed();
    prop_oneof![
        20 => typed,
        6 => object.clone(),
        2 => (object.clone(), any::<proptest::sample::Index>())
            .prop_map(|(p, i)| p[..i.index(p.len() + 1)].to_vec()),
        2 => (object.clone(), any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(mut p, i, b)| {
            if !p.is_empty() {
                let at = i.index(p.len());
                p[at] = b;
            }
            p
        }),
        1 => object.prop_map(|p| [b"[".as_slice(), &p, b",", &p, b"]"].concat()),
        1 => value().prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

/// Every row of a decode as one batch (arrow's concat), plus the error count.
fn rows_and_errors(d: &Decoded) -> (Option<RecordBatch>, usize) {
    let batch = d.batches.first().map(|first| {
        arrow::compute::concat_batches(&first.schema(), &d.batches).expect("same schema")
    });
    (batch.filter(|b| b.num_rows() > 0), d.errors.len())
}

/// Runs `check` on every generated group of payloads, timing each.
fn run_groups(name: &str, check: impl Fn(&[RawMessage]) -> Result<(), TestCaseError>) {
    let topic: Arc<str> = Arc::from("t");
    let groups = proptest::collection::vec(payload(), 1..5);
    let cases = std::cell::Cell::new(0u64);
    let result = runner().run(&groups, |payloads| {
        let messages: Vec<RawMessage> = payloads
            .into_iter()
            .map(|p| RawMessage::new(p, topic.clone()))
            .collect();
        let start = Instant::now();
        check(&messages)?;
        prop_assert!(
            start.elapsed() < MAX_CASE_TIME,
            "took {:?}",
            start.elapsed()
        );
        cases.set(cases.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("{name}: {} groups", cases.get());
}

#[test]
fn flat_path_gives_the_rows_and_errors_of_arrow_json() {
    let fast = JsonDecoder::new(Some(schema()), false);
    let general = JsonDecoder::general(Some(schema()));
    // How many groups the fast path decoded itself (the rest it handed to arrow-json): the
    // comparison only means something if this is a good share.
    let flat = FlatDecoder::new(schema()).expect("the fast path serves this schema");
    let taken = std::cell::Cell::new(0u64);
    run_groups("messages", |messages| {
        taken.set(taken.get() + u64::from(flat.decode(messages).is_ok()));
        let a = rows_and_errors(&fast.decode(messages));
        let b = rows_and_errors(&general.decode(messages));
        prop_assert_eq!(a, b);
        Ok(())
    });
    eprintln!("messages: {} groups taken by the fast path", taken.get());
    assert!(taken.get() > 0, "the generator never reaches the fast path");
}

#[test]
fn flat_path_gives_the_rows_and_errors_of_arrow_json_on_line_blocks() {
    let fast = JsonDecoder::new(Some(schema()), false);
    let general = JsonDecoder::general(Some(schema()));
    let topic: Arc<str> = Arc::from("t");
    run_groups("lines", |messages| {
        // The payloads as the lines of one block (a file source's read), newlines inside a
        // payload included: both paths must cut the lines the same way.
        let block: Vec<u8> = messages
            .iter()
            .flat_map(|m| m.payload.iter().copied().chain([b'\n']))
            .collect();
        let block = bytes::Bytes::from(block);
        let (n_fast, a) = fast.decode_lines(&block, &topic);
        let (n_general, b) = general.decode_lines(&block, &topic);
        prop_assert_eq!(n_fast, n_general);
        prop_assert_eq!(rows_and_errors(&a), rows_and_errors(&b));
        Ok(())
    });
}

#[test]
fn schemaless_and_nested_decoding_never_panics() {
    let schemaless = JsonDecoder::new(None, true);
    let nested = JsonDecoder::new(
        Some(Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                true,
            ),
        ]))),
        true,
    );
    run_groups("schemaless", |messages| {
        schemaless.decode(messages);
        nested.decode(messages);
        Ok(())
    });
}
