//! Property tests (stable Rust's stand-in for fuzzing, see docs/fuzzing.md): the rule SQL
//! parser and binder (`compile_rule`) and the stream DDL parser (`parse_create`,
//! `parse_statement`) answer every input with a plan or an error, never a panic, and within a
//! bounded time.
//!
//! Inputs come from generators shaped like eKuiper SQL (so most cases get past the tokenizer
//! and reach the binder), from soups of its tokens, and from arbitrary text. The normal run is
//! small and seeded (the same cases every time); `QUIVER_FUZZ_CASES=N` runs N cases per
//! property and `QUIVER_FUZZ_SEED=S` picks other cases, for long runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quiver_compiler::{Registry, StreamDef, compile_rule, parse_create, parse_statement};

/// Cases per property in the normal test run.
const DEFAULT_CASES: u32 = 300;

/// The longest one input may take (a debug build on a loaded 2-core machine).
const MAX_CASE_TIME: Duration = Duration::from_secs(2);

/// A seeded runner with `QUIVER_FUZZ_CASES` cases (default [`DEFAULT_CASES`]).
fn runner() -> TestRunner {
    let cases = std::env::var("QUIVER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("QUIVER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    )
}

/// Runs `check` on one input in its own thread (a 2 MiB stack, as a tokio worker has) and
/// waits at most [`MAX_CASE_TIME`]: a hang fails the property instead of the whole test run.
/// Returns whether the input was accepted, or why the case failed.
fn run_case(check: &Check, input: &str) -> Result<bool, String> {
    let (done, wait) = std::sync::mpsc::channel();
    let (check, owned) = (check.clone(), input.to_string());
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            // A panic drops `done` without sending, which `recv_timeout` reports.
            let _ = done.send(check(&owned));
        })
        .expect("spawn a case thread");
    match wait.recv_timeout(MAX_CASE_TIME) {
        Ok(accepted) => Ok(accepted),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("no answer within {MAX_CASE_TIME:?}"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err("panicked".to_string()),
    }
}

/// What a property checks on one input; true when the input was accepted.
type Check = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Runs `check` on `QUIVER_FUZZ_CASES` inputs; prints how many were accepted, for the
/// figures in docs/fuzzing.md. `QUIVER_FUZZ_TRACE=1` prints each input before it runs.
fn run_property<S: Strategy<Value = String>>(name: &str, strategy: S, check: Check) {
    let accepted = std::cell::Cell::new(0u64);
    let total = std::cell::Cell::new(0u64);
    let trace = std::env::var_os("QUIVER_FUZZ_TRACE").is_some();
    let result = runner().run(&strategy, |input| {
        if trace {
            eprintln!("{name}: {input:?}");
        }
        let ok = run_case(&check, &input).map_err(TestCaseError::fail)?;
        total.set(total.get() + 1);
        accepted.set(accepted.get() + u64::from(ok));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!(
        "{name}: {} inputs, {} accepted",
        total.get(),
        accepted.get()
    );
}

/// Streams and tables of every kind the binder distinguishes (typed, schemaless, scan and
/// lookup tables).
fn catalog() -> HashMap<String, StreamDef> {
    let ddl = [
        r#"CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT,
           tags ARRAY(STRING), loc STRUCT(lat FLOAT, lng FLOAT), raw BYTEA, on BOOLEAN,
           at DATETIME) WITH (DATASOURCE="demo", FORMAT="JSON", TIMESTAMP="ts")"#,
        r#"CREATE STREAM free () WITH (DATASOURCE="free")"#,
        r#"CREATE STREAM other (device STRING, level BIGINT) WITH (DATASOURCE="other")"#,
        r#"CREATE TABLE devices (id STRING, location STRING)
           WITH (DATASOURCE="devices", TYPE="memory", KEY="id", KIND="lookup")"#,
        r#"CREATE TABLE places (id STRING, city STRING) WITH (DATASOURCE="places", TYPE="file")"#,
    ];
    let mut streams = HashMap::new();
    for def in ddl.map(|text| parse_create(text).expect("test DDL parses")) {
        streams.insert(def.name.clone(), def);
    }
    streams
}

const COLUMNS: &[&str] = &[
    "device",
    "temperature",
    "humidity",
    "ts",
    "tags",
    "loc",
    "raw",
    "on",
    "at",
    "level",
    "id",
    "city",
    "location",
    "nosuch",
    "*",
    "demo.device",
    "other.level",
    "devices.location",
    "d.device",
    "`temperature`",
];

/// Literals, including the edges: huge and negative numbers, empty and odd strings.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-3i64..40).prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-zA-Z0-9 %_\\\\'\"é\u{1F600}]{0,8}"
            .prop_map(|s| format!("\"{}\"", s.replace('"', "\\\""))),
        "[a-z%_']{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
        Just("9223372036854775808".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
    ]
}

/// Function names: every registered one, plus unknown ones and the window functions.
fn function_name() -> BoxedStrategy<String> {
    let mut names: Vec<String> = Registry::builtin().names().map(str::to_string).collect();
    names.sort();
    names.extend(
        [
            "nosuchfn",
            "TUMBLINGWINDOW",
            "COUNTWINDOW",
            "window_start",
            "meta",
        ]
        .map(str::to_string),
    );
    proptest::sample::select(names).boxed()
}

/// Expressions of the rule language, nested up to a few levels (the depth limit is tested by
/// the long-chain cases below).
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => proptest::sample::select(COLUMNS).prop_map(str::to_string),
        2 => literal(),
    ];
    leaf.prop_recursive(4, 48, 4, |inner| {
        let binop = proptest::sample::select(vec![
            "+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "LIKE",
            "||", "&", "|", "^", "->", "IN", "NOT IN",
        ]);
        prop_oneof![
            (inner.clone(), binop, inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (
                function_name(),
                proptest::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("CASE {a} WHEN {b} THEN {c} END")),
            (inner.clone(), -3i64..5).prop_map(|(a, i)| format!("{a}[{i}]")),
            (inner.clone(), -3i64..5, -3i64..5).prop_map(|(a, i, j)| format!("{a}[{i}:{j}]")),
            (
                inner.clone(),
                proptest::collection::vec(inner.clone(), 1..3)
            )
                .prop_map(|(a, l)| format!("{a} IN ({})", l.join(", "))),
            inner.clone().prop_map(|a| format!("{a} IS NULL")),
            (inner.clone(), "[A-Z]{3,8}").prop_map(|(a, t)| format!("cast({a}, \"{t}\")")),
            (inner.clone(), inner)
                .prop_map(|(a, b)| format!("count(*) OVER (PARTITION BY {a} WHEN {b})")),
        ]
    })
}

/// Window calls with sizes at the edges (zero, negative, above the limits).
fn window() -> impl Strategy<Value = String> {
    let unit = proptest::sample::select(vec!["ms", "ss", "mi", "hh", "dd", "xx"]);
    let n = prop_oneof![1i64..20, Just(0), Just(-1), Just(i64::MAX), Just(1 << 40)];
    prop_oneof![
        (unit.clone(), n.clone()).prop_map(|(u, a)| format!("TUMBLINGWINDOW({u}, {a})")),
        (unit.clone(), n.clone(), n.clone())
            .prop_map(|(u, a, b)| format!("HOPPINGWINDOW({u}, {a}, {b})")),
        (unit.clone(), n.clone()).prop_map(|(u, a)| format!("SLIDINGWINDOW({u}, {a})")),
        (unit.clone(), n.clone(), n.clone())
            .prop_map(|(u, a, b)| format!("SLIDINGWINDOW({u}, {a}, {b})")),
        (unit, n.clone(), n.clone()).prop_map(|(u, a, b)| format!("SESSIONWINDOW({u}, {a}, {b})")),
        (n.clone(), n).prop_map(|(a, b)| format!("COUNTWINDOW({a}, {b})")),
    ]
}

/// Whole rules: SELECT ... FROM a stream, optionally a join, WHERE, GROUP BY, HAVING, ORDER BY.
fn rule_sql() -> impl Strategy<Value = String> {
    let from = proptest::sample::select(vec![
        "demo",
        "free",
        "other",
        "devices",
        "nosuch",
        "demo AS d",
        "demo INNER JOIN other ON demo.device = other.device",
        "demo LEFT JOIN devices ON demo.device = devices.id",
        "demo JOIN places ON demo.device = places.id",
        "demo FULL JOIN other ON true",
    ]);
    let items = proptest::collection::vec(
        (expr(), proptest::option::of("[a-z]{1,4}")).prop_map(|(e, a)| match a {
            Some(a) => format!("{e} AS {a}"),
            None => e,
        }),
        1..4,
    );
    (
        items,
        from,
        proptest::option::of(expr()),
        proptest::option::of((window(), proptest::collection::vec(expr(), 0..2))),
        proptest::option::of(expr()),
        proptest::option::of((expr(), any::<bool>())),
    )
        .prop_map(|(items, from, filter, group, having, order)| {
            let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
            if let Some(f) = filter {
                sql += &format!(" WHERE {f}");
            }
            if let Some((w, keys)) = group {
                let mut parts = vec![w];
                parts.extend(keys);
                sql += &format!(" GROUP BY {}", parts.join(", "));
            }
            if let Some(h) = having {
                sql += &format!(" HAVING {h}");
            }
            if let Some((o, desc)) = order {
                sql += &format!(" ORDER BY {o} {}", if desc { "DESC" } else { "ASC" });
            }
            sql
        })
}

/// Sequences of the language's tokens in any order: reaches the parser's error paths.
fn token_soup(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(vocabulary), 0..40)
        .prop_map(|tokens| tokens.join(" "))
}

const SQL_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "JOIN",
    "LEFT",
    "ON",
    "AS",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "OVER",
    "PARTITION",
    "FILTER",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "->",
    ".",
    "'",
    "\"",
    "`",
    "demo",
    "device",
    "1",
    "0",
    "-1",
    "1.5",
    "\"x\"",
    "TUMBLINGWINDOW",
    "ss",
    "count",
    "lag",
    "NOT",
    "AND",
    "OR",
    "IN",
    "BETWEEN",
    "LIKE",
    "ESCAPE",
    "IS",
    "NULL",
    "INVISIBLE",
    "UNION",
    "WITH",
    ";",
    "$$",
];

/// The stream options eKuiper documents, and one it does not.
const DDL_OPTIONS: &[&str] = &[
    "DATASOURCE",
    "FORMAT",
    "KEY",
    "TYPE",
    "KIND",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "SHARED",
    "CONF_KEY",
    "DELIMITER",
    "SCHEMAID",
    "STRICT_VALIDATION",
    "RETAIN_SIZE",
    "NOSUCH",
];

const DDL_TOKENS: &[&str] = &[
    "CREATE", "STREAM", "TABLE", "DROP", "DESCRIBE", "SHOW", "STREAMS", "TABLES", "EXPLAIN",
    "WITH", "(", ")", ",", "=", "\"", "'", "demo", "s", "BIGINT", "FLOAT", "STRING", "BOOLEAN",
    "DATETIME", "BYTEA", "ARRAY", "STRUCT", "\"json\"", "\"x\"", "true", "1", "-", "`a b`", ";",
];

/// Column types, nested past the type nesting limit (32) now and then.
fn column_type() -> impl Strategy<Value = String> {
    let scalar = proptest::sample::select(vec![
        "BIGINT", "FLOAT", "STRING", "BOOLEAN", "DATETIME", "BYTEA", "INT", "DOUBLE",
    ])
    .prop_map(str::to_string);
    let nested = scalar.prop_recursive(6, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| format!("ARRAY({t})")),
            proptest::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|fields| {
                let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n} {t}")).collect();
                format!("STRUCT({})", fields.join(", "))
            }),
        ]
    });
    prop_oneof![
        8 => nested,
        1 => (25usize..40).prop_map(|n| format!("{}BIGINT{}", "ARRAY(".repeat(n), ")".repeat(n))),
    ]
}

fn ddl_sql() -> impl Strategy<Value = String> {
    let option_name = proptest::sample::select(DDL_OPTIONS);
    let option_value = prop_oneof![
        proptest::sample::select(vec![
            "json",
            "binary",
            "delimited",
            "mqtt",
            "memory",
            "file",
            "lookup",
            "scan",
            "true",
            "false",
            "ts",
            "device",
            "",
            "-1",
            "99999999999999999999",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,6}",
    ];
    (
        proptest::sample::select(vec!["STREAM", "TABLE"]),
        "[a-z][a-z0-9_]{0,5}",
        proptest::collection::vec(("[a-z][a-z_]{0,4}", column_type()), 0..5),
        proptest::collection::vec((option_name, option_value), 0..5),
    )
        .prop_map(|(kind, name, fields, options)| {
            let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n} {t}")).collect();
            let options: Vec<String> = options
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
                .collect();
            format!(
                "CREATE {kind} {name} ({}) WITH ({})",
                fields.join(", "),
                options.join(", ")
            )
        })
}

/// `compile_rule` over the test catalog; a compiled plan must also print itself (the explain
/// endpoint).
fn compiles() -> Check {
    let catalog = catalog();
    Arc::new(
        move |sql| match compile_rule(sql, &catalog, Registry::builtin()) {
            Ok(plan) => !plan.explain().is_empty(),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        },
    )
}

/// Numeric expressions over the demo stream's numeric columns, with functions that take
/// numbers: well typed, so the binder accepts most and the plans are built and printed.
fn typed_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        proptest::sample::select(vec!["temperature", "humidity", "ts", "loc->lat"])
            .prop_map(str::to_string),
        (-3i64..100).prop_map(|i| i.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f:.3}")),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        let op = proptest::sample::select(vec!["+", "-", "*", "/", "%"]);
        let func = proptest::sample::select(vec!["abs", "round", "ceil", "floor", "sqrt", "exp"]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            (func, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} > {b} THEN {c} ELSE 0 END")),
        ]
    })
}

/// Well-typed rules over the demo stream: projections, filters, windowed aggregates.
fn typed_rule_sql() -> impl Strategy<Value = String> {
    let agg = proptest::sample::select(vec!["sum", "avg", "max", "min", "count"]);
    let window = prop_oneof![
        (1i64..60).prop_map(|n| format!("TUMBLINGWINDOW(ss, {n})")),
        (2i64..60).prop_map(|n| format!("HOPPINGWINDOW(ss, {n}, 1)")),
        (1i64..100).prop_map(|n| format!("COUNTWINDOW({n})")),
        (1i64..60).prop_map(|n| format!("SLIDINGWINDOW(ss, {n})")),
    ];
    prop_oneof![
        (typed_expr(), typed_expr(), typed_expr()).prop_map(|(a, b, c)| format!(
            "SELECT device, {a} AS a, {b} AS b FROM demo WHERE {c} > 0"
        )),
        (
            agg,
            typed_expr(),
            window,
            proptest::option::of(typed_expr())
        )
            .prop_map(|(f, a, w, having)| {
                let having = having.map_or(String::new(), |h| format!(" HAVING {f}({h}) > 1"));
                format!("SELECT device, {f}({a}) AS v FROM demo GROUP BY device, {w}{having}")
            }),
    ]
}

#[test]
fn compile_rule_never_panics_on_rule_shaped_sql() {
    run_property("compile_rule (rules)", rule_sql(), compiles());
}

#[test]
fn compile_rule_never_panics_on_well_typed_rules() {
    run_property("compile_rule (typed rules)", typed_rule_sql(), compiles());
}

#[test]
fn compile_rule_never_panics_on_token_soup_or_any_text() {
    let strategy = prop_oneof![
        token_soup(SQL_TOKENS).prop_map(|s| format!("SELECT {s}")),
        token_soup(SQL_TOKENS),
        any::<String>(),
        "SELECT [ -~]{0,60} FROM demo",
    ];
    run_property("compile_rule (soup)", strategy, compiles());
}

#[test]
fn parse_create_never_panics() {
    run_property(
        "parse_create",
        ddl_sql(),
        Arc::new(|sql| parse_create(sql).is_ok()),
    );
}

#[test]
fn parse_statement_never_panics_on_token_soup_or_any_text() {
    let strategy = prop_oneof![
        token_soup(DDL_TOKENS),
        token_soup(DDL_TOKENS)
            .prop_map(|s| format!("CREATE STREAM s ({s}) WITH (DATASOURCE=\"x\")")),
        any::<String>(),
    ];
    run_property(
        "parse_statement",
        strategy,
        Arc::new(|sql| parse_statement(sql).is_ok()),
    );
}

/// Inputs at the limits: each is refused with an error, quickly, not a stack overflow.
#[test]
fn deep_and_long_inputs_are_refused() {
    let deep_sql = [
        format!("SELECT {}1{} FROM demo", "(".repeat(5000), ")".repeat(5000)),
        format!("SELECT {}1 FROM demo", "1 + ".repeat(20_000)),
        format!(
            "SELECT {}1{} FROM demo",
            "abs(".repeat(3000),
            ")".repeat(3000)
        ),
        format!("SELECT {}1{} FROM demo", "[".repeat(3000), "]".repeat(3000)),
        format!("SELECT {} FROM demo", "NOT ".repeat(20_000) + "true"),
        format!(
            "SELECT {} FROM demo",
            "CASE WHEN true THEN ".repeat(2000) + "1"
        ),
        format!("SELECT 1 FROM demo WHERE {}", "- ".repeat(20_000) + "1"),
    ];
    let compiles = compiles();
    for sql in &deep_sql {
        assert_eq!(run_case(&compiles, sql), Ok(false), "{} bytes", sql.len());
    }
    let deep_ddl = [
        format!(
            "CREATE STREAM s (a {}BIGINT{}) WITH (DATASOURCE=\"x\")",
            "ARRAY(".repeat(50_000),
            ")".repeat(50_000)
        ),
        format!(
            "CREATE STREAM s (a {}b BIGINT{}) WITH (DATASOURCE=\"x\")",
            "STRUCT(x ".repeat(50_000),
            ")".repeat(50_000)
        ),
    ];
    let parses: Check = Arc::new(|sql| parse_create(sql).is_ok());
    for sql in &deep_ddl {
        assert_eq!(run_case(&parses, sql), Ok(false), "{} bytes", sql.len());
    }
}

/// Inputs the properties found, kept as cases: each must be answered (with an error) in time.
#[test]
fn found_inputs_are_answered() {
    let compiles = compiles();
    for sql in [
        // An unclosed CASE made the nesting check loop forever (found by the rule generator:
        // `--0.0` started a comment that swallowed the END).
        "SELECT CASE a WHEN 1 THEN 2",
        "SELECT CASE `temperature` WHEN * IS NULL THEN --0.0 END FROM demo",
        "SELECT (CASE WHEN true THEN (1",
        // An OVER (... WHEN ...) inside another one's condition cut overlapping text and
        // panicked slicing it.
        "SELECT count(*) OVER (PARTITION BY device WHEN CASE device WHEN count(*) \
         OVER (PARTITION BY device WHEN true) THEN true END) FROM demo",
    ] {
        assert_eq!(run_case(&compiles, sql), Ok(false), "{sql}");
    }
}
