//! Property tests (stable Rust's stand-in for fuzzing, see docs/fuzzing.md) of the sinks'
//! `dataTemplate` renderer: any template text compiles or is refused, and any compiled
//! template renders any row (or list of rows) or fails with an error, never a panic, a stack
//! overflow or a long stall.
//!
//! Templates come from a generator of Go text/template actions over the row's fields
//! (`{{.a}}`, `{{range}}`, `{{if}}`, `{{with}}`, pipelines, `json`, `printf`, `define` and
//! `template`), from soups of their pieces and from arbitrary text. The normal run is small
//! and seeded; `QUIVER_FUZZ_CASES=N` and `QUIVER_FUZZ_SEED=S` make long runs.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quiver_dataflow::sinkprops::DataTemplate;
use serde_json::{Value, json};

/// Cases per property in the normal test run.
const DEFAULT_CASES: u32 = 400;

/// The longest one template may take to compile and render.
const MAX_CASE_TIME: Duration = Duration::from_secs(2);

/// A seeded runner with `QUIVER_FUZZ_CASES` cases.
fn seeded_runner() -> TestRunner {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&var("QUIVER_FUZZ_SEED").unwrap_or(0).to_le_bytes());
    let cases = var("QUIVER_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as u32);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// The data a sink renders: one row, or the list of rows of a batch.
fn data() -> Vec<Value> {
    let row = json!({
        "device": "d1", "temperature": 21.5, "humidity": 40, "on": true, "none": null,
        "tags": ["a", "b"], "loc": {"lat": 1.5, "lng": -2}, "big": i64::MAX, "neg": -7,
        "text": "{{.device}} <b>&\"'"
    });
    vec![
        row.clone(),
        json!([row.clone(), row]),
        json!([]),
        json!({}),
        json!(null),
    ]
}

fn field() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        ".",
        ".device",
        ".temperature",
        ".humidity",
        ".on",
        ".none",
        ".tags",
        ".loc",
        ".loc.lat",
        ".big",
        ".neg",
        ".text",
        ".nosuch",
        ".nosuch.deeper",
        "$",
        "$x",
        "1",
        "-1",
        "\"s\"",
        "true",
        "nil",
        "0.5",
    ])
    .prop_map(str::to_string)
}

/// Pipelines: a field, or a function applied to fields.
fn pipeline() -> impl Strategy<Value = String> {
    let func = proptest::sample::select(vec![
        "json",
        "printf \"%v\"",
        "printf \"%d %s\"",
        "len",
        "index",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "print",
        "println",
        "html",
        "js",
        "urlquery",
        "call",
        "slice",
        "nosuchfn",
    ]);
    prop_oneof![
        3 => field(),
        2 => (func, proptest::collection::vec(field(), 0..3))
            .prop_map(|(f, args)| format!("{f} {}", args.join(" "))),
        1 => (field(), proptest::sample::select(vec!["json", "len", "print", "html"]))
            .prop_map(|(a, f)| format!("{a} | {f}")),
        1 => field().prop_map(|a| format!("$x := {a}")),
    ]
}

fn template() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        "[a-z ,:{}\"]{0,6}",
        pipeline().prop_map(|p| format!("{{{{{p}}}}}")),
        pipeline().prop_map(|p| format!("{{{{- {p} -}}}}")),
    ];
    text.prop_recursive(4, 32, 4, |inner| {
        let body = proptest::collection::vec(inner, 0..4).prop_map(|v| v.concat());
        prop_oneof![
            body.clone(),
            (pipeline(), body.clone())
                .prop_map(|(p, b)| format!("{{{{range {p}}}}}{b}{{{{end}}}}")),
            (pipeline(), body.clone()).prop_map(|(p, b)| format!(
                "{{{{range $i, $v := {p}}}}}{b}{{{{$i}}}}{{{{$v}}}}{{{{end}}}}"
            )),
            (pipeline(), body.clone(), body.clone())
                .prop_map(|(p, a, b)| format!("{{{{if {p}}}}}{a}{{{{else}}}}{b}{{{{end}}}}")),
            (pipeline(), body.clone()).prop_map(|(p, b)| format!("{{{{with {p}}}}}{b}{{{{end}}}}")),
            (body.clone(), body).prop_map(|(d, b)| format!(
                "{{{{define \"t\"}}}}{d}{{{{end}}}}{b}{{{{template \"t\" .}}}}"
            )),
        ]
    })
}

/// Pieces of template syntax in any order: reaches the parser's error paths.
fn soup() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(vec![
        "{{", "}}", "{{-", "-}}", "range", "end", "if", "else", "with", "define", "template",
        "block", "\"t\"", ".", ".a", "$", "$x", ":=", "=", "|", "(", ")", "json", "printf",
        "\"%v\"", "/*", "*/", " ", "x", "nil", "break", "continue", "`", "'", "\\",
    ]);
    proptest::collection::vec(piece, 0..30).prop_map(|p| p.concat())
}

fn run_templates(name: &str, strategy: impl Strategy<Value = String>) {
    let data = data();
    let compiled = std::cell::Cell::new(0u64);
    let trace = std::env::var_os("QUIVER_FUZZ_TRACE").is_some();
    let result = seeded_runner().run(&strategy, |text| {
        if trace {
            eprintln!("{name}: {text:?}");
        }
        let start = Instant::now();
        if let Ok(t) = DataTemplate::compile(&text) {
            compiled.set(compiled.get() + 1);
            for value in &data {
                // Ok or an error message are both fine; a panic fails the property.
                let _ = t.render(value);
            }
        }
        prop_assert!(
            start.elapsed() < MAX_CASE_TIME,
            "took {:?}",
            start.elapsed()
        );
        Ok::<(), TestCaseError>(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("{name}: {} templates compiled", compiled.get());
}

#[test]
fn templates_never_panic() {
    run_templates("templates", template());
}

#[test]
fn template_soup_and_any_text_never_panics() {
    run_templates("template soup", prop_oneof![soup(), any::<String>()]);
}

/// Inputs the properties found, kept as cases: each is refused at once.
#[test]
fn found_templates_are_refused() {
    // gtmpl's lexer spun forever on a text ending inside an action with a `-`.
    for text in [
        "{{-",
        "x{{-",
        "{{ -",
        "{{ .a - ",
        "{{ \"}}\" -",
        "{{ x -\t",
        "{{.a}} {{ -",
    ] {
        let start = Instant::now();
        let err = DataTemplate::compile(text).err().expect(text).to_string();
        assert!(err.contains("unclosed action"), "{text}: {err}");
        assert!(start.elapsed() < MAX_CASE_TIME, "{text}");
    }
    // Still fine: a dash after a closed action, and `}}` inside a string.
    for text in ["{{.device}} -", "{{ \"}}\" }} -", "{{/* }} */}} -"] {
        let rendered = DataTemplate::compile(text)
            .expect(text)
            .render(&json!({"device": "d"}));
        assert!(rendered.expect(text).ends_with(b" -"), "{text}");
    }
}
