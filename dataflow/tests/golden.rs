//! SQL golden tests: every `tests/sql/*.case` file at the workspace root runs through the real
//! engine on 1 and on 2 workers, fed through the memory source, results read from a memory sink.
//!
//! Case format (sections start with `-- `): `stream` (1+ CREATE STREAM lines; input goes to the
//! first stream's DATASOURCE topic), `rule` (the SQL), `options` (rule options JSON), `input`
//! (one JSON message per line, malformed lines allowed), `output` (expected rows, one JSON object
//! per line, compared as a multiset with numbers compared by value), `exceptions` (total failed
//! rows), or `error` (the exact compile error instead of input/output). Lines `@stream {json}` feed
//! another stream of the case (joins). Tables (`CREATE TABLE`
//! lines in `stream`) get rows from `@name {json}` lines in `input`: the harness waits until
//! the rule has read and joined every stream row sent before, then applies the table row and
//! waits until every arrangement of the table holds it,
//! so table updates land exactly between the stream rows around them.
//!
//! `QUIVER_GOLDEN_REGENERATE=1 cargo nextest run -p quiver-dataflow --test golden` rewrites the
//! output and exceptions sections from what the engine produced (review the diff!).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::memory::MemoryPayload;
use quiver_dataflow::{Action, Engine, RuleSpec};
use serde_json::Value;

#[derive(Debug, Default, Clone)]
struct Case {
    streams: Vec<String>,
    rule: String,
    options: Option<String>,
    input: Vec<String>,
    output: Option<Vec<String>>,
    exceptions: Option<u64>,
    error: Option<String>,
    /// Section order and raw text, for regeneration.
    sections: Vec<(String, Vec<String>)>,
    header: Vec<String>,
}

fn parse_case(text: &str) -> Case {
    let mut case = Case::default();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- ") {
            if let Some(sec) = current.take() {
                case.sections.push(sec);
            }
            current = Some((name.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line.to_string());
        } else {
            case.header.push(line.to_string());
        }
    }
    if let Some(sec) = current.take() {
        case.sections.push(sec);
    }
    let nonblank = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .cloned()
            .collect()
    };
    for (name, lines) in &case.sections.clone() {
        match name.as_str() {
            "stream" => case.streams.extend(nonblank(lines)),
            "rule" => case.rule = nonblank(lines).join("\n"),
            "options" => case.options = Some(nonblank(lines).join("\n")),
            "input" => case.input = nonblank(lines),
            "output" => case.output = Some(nonblank(lines)),
            "exceptions" => {
                case.exceptions = nonblank(lines).first().map(|l| {
                    l.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("exceptions must be a number, got {l}"))
                })
            }
            "error" => case.error = Some(nonblank(lines).join("\n")),
            other => panic!("unknown section \"{other}\""),
        }
    }
    case
}

/// Canonical text of a row: sorted keys, numbers by value (3 == 3.0).
fn canonical(v: &Value) -> String {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if f == f.trunc() && f.abs() < 1e15 {
                    Value::from(f as i64)
                } else {
                    Value::from(f)
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), norm(v)))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    norm(v).to_string()
}

struct Outcome {
    rows: Vec<String>,
    exceptions: u64,
    status: String,
}

fn run_case(case: &Case, workers: usize) -> Result<Outcome, String> {
    let rt = common::runtime();
    let engine = common::engine(&rt, workers);
    let result = rt.block_on(run_on(&engine, case));
    engine.shutdown();
    result
}

async fn run_on(engine: &Engine, case: &Case) -> Result<Outcome, String> {
    let mut input_topic = None;
    let mut streams = std::collections::HashMap::new();
    for s in &case.streams {
        let def = engine.create_stream(s).map_err(|e| e.to_string())?;
        if def.kind == quiver_compiler::StreamKind::Stream {
            input_topic.get_or_insert(def.options.datasource.clone());
            streams.insert(def.name.clone(), def.options.datasource.clone());
        }
    }
    let input_topic = input_topic.ok_or("a case needs a stream")?;
    let mut tables = std::collections::HashMap::new();
    for s in &case.streams {
        if s.trim_start().to_uppercase().starts_with("CREATE TABLE") {
            let def = quiver_compiler::parse_create(s).map_err(|e| e.to_string())?;
            tables.insert(def.name.clone(), def.options.datasource.clone());
        }
    }
    let bus = engine.connectors().memory().clone();
    let mut out = bus.subscribe("__golden/out");
    let options = match &case.options {
        Some(o) => serde_json::from_str::<serde_json::Map<String, Value>>(o)
            .map_err(|e| format!("bad options JSON: {e}"))?,
        None => Default::default(),
    };
    engine
        .create_rule(RuleSpec {
            id: "golden".into(),
            name: "golden".into(),
            sql: case.rule.clone(),
            actions: vec![Action {
                sink_type: "memory".into(),
                props: serde_json::json!({"topic": "__golden/out"}),
            }],
            options,
        })
        .map_err(|e| e.to_string())?;
    let mut sent = 0u64;
    for line in &case.input {
        if let Some(rest) = line.strip_prefix('@') {
            let (name, row) = rest
                .split_once(' ')
                .ok_or("a table row is `@name {json}`")?;
            if let Some(topic) = streams.get(name) {
                // A row of another stream (joins): it goes to that stream's topic in order.
                bus.publish_json(topic, row.as_bytes().to_vec()).await;
                continue;
            }
            let topic = tables
                .get(name)
                .ok_or_else(|| format!("no table \"{name}\" in the stream section"))?;
            wait_for(|| source_rows(engine) >= sent && engine.rule_rows_in_flight("golden") == 0)
                .await?;
            let before = engine.table_applied(name).unwrap_or(0);
            bus.publish_json(topic, row.as_bytes().to_vec()).await;
            wait_for(|| engine.table_applied(name).unwrap_or(0) > before).await?;
            continue;
        }
        sent += 1;
        bus.publish_json(&input_topic, line.as_bytes().to_vec())
            .await;
    }
    for topic in streams.values() {
        bus.close(topic);
    }
    let finished = engine
        .wait_finished("golden", Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    if !finished {
        return Err("the rule did not finish within 30 s after its input ended".into());
    }
    let mut rows = Vec::new();
    while let Ok(msg) = out.try_recv() {
        if let MemoryPayload::Batch(b) = msg.payload {
            rows.extend(
                batch_to_rows(&b, false)
                    .into_iter()
                    .map(|r| canonical(&Value::Object(r))),
            );
        }
    }
    let status = engine.rule_status("golden").map_err(|e| e.to_string())?;
    let (exceptions, _) = common::exceptions(engine, "golden");
    rows.sort();
    let status = format!(
        "{} {} {:?}",
        status.status,
        status.message,
        status
            .metrics
            .iter()
            .filter(|(k, _)| k.contains("records") || k.contains("exception"))
            .collect::<Vec<_>>()
    );
    Ok(Outcome {
        rows,
        exceptions,
        status,
    })
}

/// Rows the golden rule's source has read so far.
fn source_rows(engine: &Engine) -> u64 {
    engine
        .rule_status("golden")
        .map(|s| {
            s.metrics
                .iter()
                .filter(|(k, _)| k.starts_with("source_") && k.ends_with("_records_in_total"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Polls `cond` until it holds, for up to 10 s.
async fn wait_for(mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        if std::time::Instant::now() > deadline {
            return Err("timed out waiting for the engine".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    files.sort();
    files
}

fn check(case: &Case, workers: usize) -> Result<Option<Outcome>, String> {
    let result = run_case(case, workers);
    if let Some(expected) = &case.error {
        return match result {
            Err(actual) if &actual == expected => Ok(None),
            Err(actual) => Err(format!(
                "expected error\n  {expected}\ngot error\n  {actual}"
            )),
            Ok(_) => Err(format!("expected error\n  {expected}\nbut the rule ran")),
        };
    }
    let outcome = result?;
    let mut expected: Vec<String> = case
        .output
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            canonical(
                &serde_json::from_str(l).unwrap_or_else(|e| panic!("bad expected row {l}: {e}")),
            )
        })
        .collect();
    expected.sort();
    if std::env::var_os("QUIVER_GOLDEN_REGENERATE").is_some() {
        return Ok(Some(outcome));
    }
    if outcome.rows != expected {
        return Err(format!(
            "rows differ on {workers} worker(s)\nexpected:\n  {}\nactual:\n  {}\nstatus: {}",
            expected.join("\n  "),
            outcome.rows.join("\n  "),
            outcome.status
        ));
    }
    let want = case.exceptions.unwrap_or(0);
    if outcome.exceptions != want {
        return Err(format!(
            "exceptions on {workers} worker(s): expected {want}, got {}",
            outcome.exceptions
        ));
    }
    Ok(Some(outcome))
}

fn regenerate(path: &Path, case: &Case, outcome: &Outcome) {
    let mut text = case.header.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let mut wrote_output = false;
    for (name, lines) in &case.sections {
        match name.as_str() {
            "output" | "exceptions" => {
                if !wrote_output {
                    text.push_str("-- output\n");
                    for r in &outcome.rows {
                        text.push_str(r);
                        text.push('\n');
                    }
                    text.push_str(&format!("-- exceptions\n{}\n", outcome.exceptions));
                    wrote_output = true;
                }
            }
            _ => {
                text.push_str(&format!("-- {name}\n"));
                for l in lines {
                    text.push_str(l);
                    text.push('\n');
                }
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn golden_cases() {
    let files = case_files();
    assert!(!files.is_empty(), "no golden cases found");
    let filter = std::env::var("QUIVER_GOLDEN_FILTER").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let case = parse_case(&std::fs::read_to_string(path).unwrap());
        ran += 1;
        for workers in [1, 2] {
            match check(&case, workers) {
                Ok(Some(outcome)) if std::env::var_os("QUIVER_GOLDEN_REGENERATE").is_some() => {
                    if workers == 1 {
                        regenerate(path, &case, &outcome);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    break;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
