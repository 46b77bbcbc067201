//! SQL golden tests: every `tests/sql/<folder>/*.case` file at the workspace root runs through
//! the real engine on 1 and on 2 workers, and on a cluster of 2 processes (1 worker each, over
//! loopback TCP), fed through the memory source, results read from a memory sink. The case
//! format, the folders and the environment variables (`QUIVER_GOLDEN_FILTER`,
//! `QUIVER_GOLDEN_REGENERATE`) are described in `tests/sql/README.md`.

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
    /// The expected `Engine::explain` text, compared whole.
    plan: Option<String>,
    /// The expected sink emissions, one JSON array of rows each.
    emissions: Option<Vec<String>>,
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
            // Blank lines are kept: the explain text may separate its plans with one.
            "plan" => case.plan = Some(plan_text(&lines.join("\n"))),
            "emissions" => case.emissions = Some(nonblank(lines)),
            other => panic!("unknown section \"{other}\""),
        }
    }
    assert!(
        case.error.is_none() || case.plan.is_none(),
        "a case with an error section has no rule to explain, so no plan section"
    );
    case
}

/// The explain text as compared: trailing spaces of each line and blank lines around it
/// dropped, so an editor that trims lines does not break a case.
fn plan_text(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// Canonical text of a row: sorted keys, numbers by value (3 == 3.0).
/// One emission as text: its rows in canonical form, sorted, as a JSON array.
fn canonical_emission(rows: &[Value]) -> String {
    let mut rows: Vec<String> = rows.iter().map(canonical).collect();
    rows.sort();
    format!("[{}]", rows.join(","))
}

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
    /// Each sink emission's rows as one canonical array, sorted (2 workers may interleave
    /// emissions of a window-less rule).
    emissions: Vec<String>,
    exceptions: u64,
    status: String,
    plan: String,
}

fn run_case(case: &Case, workers: usize) -> Result<Outcome, String> {
    let rt = common::runtime();
    let engine = common::engine(&rt, workers);
    let result = rt.block_on(run_on(std::slice::from_ref(&engine), case, "golden"));
    engine.shutdown();
    result
}

/// Runs `case` as rule `id` on `engines`: one engine, or a cluster's processes (the leader
/// first, which takes every call; the followers are waited for and their counters checked).
async fn run_on(engines: &[Engine], case: &Case, id: &str) -> Result<Outcome, String> {
    let engine = &engines[0];
    let out_topic = format!("__golden/out/{id}");
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
    let mut out = bus.subscribe(&out_topic);
    let options = match &case.options {
        Some(o) => serde_json::from_str::<serde_json::Map<String, Value>>(o)
            .map_err(|e| format!("bad options JSON: {e}"))?,
        None => Default::default(),
    };
    engine
        .create_rule(RuleSpec {
            id: id.into(),
            name: id.into(),
            // "golden" in the SQL is the rule's id (`rule_id() = "golden"`), as in its rows
            // (see `as_golden`): a cluster run gives each case an id of its own.
            sql: case.rule.replace("\"golden\"", &format!("\"{id}\"")),
            actions: vec![Action {
                sink_type: "memory".into(),
                props: serde_json::json!({"topic": out_topic}),
            }],
            options,
        })
        .map_err(|e| e.to_string())?;
    let plan = plan_text(&engine.explain(id).map_err(|e| e.to_string())?);
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
            wait_for(|| source_rows(engine, id) >= sent && engine.rule_rows_in_flight(id) == 0)
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
    // A follower's sinks write its share: the output is whole once every process finished.
    for (process, engine) in engines.iter().enumerate() {
        let finished = engine
            .wait_finished(id, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        if !finished {
            return Err(format!(
                "the rule did not finish within 30 s after its input ended (process {process})"
            ));
        }
    }
    for follower in &engines[1..] {
        wait_for(|| reported_in_full(engine, follower, id))
            .await
            .map_err(|_| "the leader never got the follower's final counters".to_string())?;
    }
    let mut rows = Vec::new();
    let mut emissions = Vec::new();
    while let Ok(msg) = out.try_recv() {
        if let MemoryPayload::Batch(b) = msg.payload {
            let emission: Vec<Value> = batch_to_rows(&b, false)
                .into_iter()
                .map(|row| Value::Object(as_golden(row, id)))
                .collect();
            rows.extend(emission.iter().map(canonical));
            emissions.push(canonical_emission(&emission));
        }
    }
    emissions.sort();
    let status = engine.rule_status(id).map_err(|e| e.to_string())?;
    let (exceptions, _) = common::exceptions(engine, id);
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
        emissions,
        exceptions,
        status,
        plan,
    })
}

/// `row` as the case expects it: a value that is the rule's id (`rule_id()`) reads "golden",
/// the id every case's rule has on one process (a cluster run gives each case its own).
fn as_golden(mut row: serde_json::Map<String, Value>, id: &str) -> serde_json::Map<String, Value> {
    for v in row.values_mut() {
        if v.as_str() == Some(id) {
            *v = Value::from("golden");
        }
    }
    row
}

/// True once the leader's status holds `follower`'s counters of rule `id` as they are now
/// (a follower reports every second): every node's records in and out, listed per process.
fn reported_in_full(leader: &Engine, follower: &Engine, id: &str) -> bool {
    let (Ok(theirs), Ok(ours), Some((process, _))) = (
        follower.rule_status(id),
        leader.rule_status(id),
        follower.cluster_process(),
    ) else {
        return false;
    };
    let ours: BTreeMap<String, Value> = ours.metrics.into_iter().collect();
    theirs
        .metrics
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("process_")
                && (k.ends_with("_0_records_in_total") || k.ends_with("_0_records_out_total"))
        })
        .all(|(k, v)| {
            ours.get(&format!("process_{process}_{}", k.replacen("_0_", "_", 1))) == Some(v)
        })
}

/// Rows rule `id`'s source has read so far.
fn source_rows(engine: &Engine, id: &str) -> u64 {
    engine
        .rule_status(id)
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

/// Every case under `tests/sql`, sorted, with its name: the path below `tests/sql` without
/// `.case` (`windows/500_tumbling_event_avg`).
fn case_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|x| x == "case") {
                files.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut cases: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            (name, path)
        })
        .collect();
    cases.sort();
    cases
}

/// The layout rules of `tests/sql/README.md` that a harness can check.
fn misplaced(name: &str, case: &Case) -> Option<String> {
    let Some((folder, _)) = name.split_once('/') else {
        return Some("a case belongs in a folder of tests/sql (see its README)".into());
    };
    if case.error.is_some() && folder != "errors" {
        return Some("a case with an error section belongs in tests/sql/errors".into());
    }
    None
}

/// The output section in canonical form, sorted as the outcome's rows are.
fn expected_rows(case: &Case) -> Vec<String> {
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
    expected
}

fn check(case: &Case, workers: usize) -> Result<Option<Outcome>, String> {
    let result = run_case(case, workers);
    check_outcome(case, result, &format!("{workers} worker(s)"), true)
}

/// Compares a run's `result` with what `case` expects; `on` names where it ran, for the
/// messages. `plans`: compare the plan too (a cluster's plans differ by design: an event-time
/// window spreads its groups over the processes).
fn check_outcome(
    case: &Case,
    result: Result<Outcome, String>,
    on: &str,
    plans: bool,
) -> Result<Option<Outcome>, String> {
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
    let expected = expected_rows(case);
    if std::env::var_os("QUIVER_GOLDEN_REGENERATE").is_some() {
        return Ok(Some(outcome));
    }
    if outcome.rows != expected {
        return Err(format!(
            "rows differ on {on}\nexpected:\n  {}\nactual:\n  {}\nstatus: {}",
            expected.join("\n  "),
            outcome.rows.join("\n  "),
            outcome.status
        ));
    }
    let want = case.exceptions.unwrap_or(0);
    if outcome.exceptions != want {
        return Err(format!(
            "exceptions on {on}: expected {want}, got {}",
            outcome.exceptions
        ));
    }
    if let Some(lines) = &case.emissions {
        let mut expected: Vec<String> = lines
            .iter()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Array(rows)) => canonical_emission(&rows),
                _ => panic!("an emission is a JSON array of rows, got {l}"),
            })
            .collect();
        expected.sort();
        if outcome.emissions != expected {
            return Err(format!(
                "emissions differ on {on}\nexpected:\n  {}\nactual:\n  {}",
                expected.join("\n  "),
                outcome.emissions.join("\n  ")
            ));
        }
    }
    if let Some(plan) = case.plan.as_ref().filter(|_| plans)
        && &outcome.plan != plan
    {
        return Err(format!(
            "plan differs on {on}\nexpected:\n{plan}\nactual:\n{}",
            outcome.plan
        ));
    }
    Ok(Some(outcome))
}

fn regenerate(path: &Path, case: &Case, outcome: &Outcome) {
    let mut text = case.header.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    // Rows that still match keep their hand-written text, so the diff shows only what changed.
    let keep_output =
        expected_rows(case) == outcome.rows && case.exceptions.unwrap_or(0) == outcome.exceptions;
    let mut wrote_output = false;
    for (name, lines) in &case.sections {
        match name.as_str() {
            "output" | "exceptions" if !keep_output => {
                if wrote_output {
                    continue;
                }
                text.push_str("-- output\n");
                for r in &outcome.rows {
                    text.push_str(r);
                    text.push('\n');
                }
                text.push_str(&format!("-- exceptions\n{}\n", outcome.exceptions));
                wrote_output = true;
            }
            "plan" => {
                assert!(
                    !outcome.plan.lines().any(|l| l.starts_with("-- ")),
                    "a plan line starting with \"-- \" would read as a section"
                );
                text.push_str("-- plan\n");
                text.push_str(&outcome.plan);
                text.push('\n');
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
    let regenerating = std::env::var_os("QUIVER_GOLDEN_REGENERATE").is_some();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, path) in &files {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let case = parse_case(&std::fs::read_to_string(path).unwrap());
        ran += 1;
        if let Some(problem) = misplaced(name, &case) {
            failures.push(format!("{name}: {problem}"));
            continue;
        }
        let mut outcomes = Vec::new();
        for workers in [1, 2] {
            match check(&case, workers) {
                Ok(outcome) => outcomes.extend(outcome),
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    break;
                }
            }
        }
        if regenerating && let [one, two] = outcomes.as_slice() {
            // One plan section serves both worker counts, so they must agree.
            if case.plan.is_some() && one.plan != two.plan {
                failures.push(format!(
                    "{name}: plan differs between 1 and 2 workers\n1 worker:\n{}\n2 workers:\n{}",
                    one.plan, two.plan
                ));
            } else {
                regenerate(path, &case, one);
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

/// Processes of the cluster [`golden_cases_on_a_cluster`] runs the cases on.
const PROCESSES: usize = 2;

/// Every case on one cluster of [`PROCESSES`] processes (1 worker each, in this OS process,
/// over loopback TCP): the same rows, exceptions and emissions as on one process. Each case's
/// rule and streams are dropped after it. A case that uses what a cluster refuses (tables,
/// stream joins, ...) is counted, not run; most cases must run.
#[test]
fn golden_cases_on_a_cluster() {
    if std::env::var_os("QUIVER_GOLDEN_REGENERATE").is_some() {
        return; // Regeneration writes what one process produces.
    }
    let files = case_files();
    let filter = std::env::var("QUIVER_GOLDEN_FILTER").ok();
    let rt = common::runtime();
    let engines = common::cluster(&rt, PROCESSES);
    let mut failures = Vec::new();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut picked, mut ran) = (0, 0);
    for (n, (name, path)) in files.iter().enumerate() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let case = parse_case(&std::fs::read_to_string(path).unwrap());
        if misplaced(name, &case).is_some() {
            continue; // `golden_cases` reports it.
        }
        picked += 1;
        let id = format!("golden{n}");
        let result = rt.block_on(run_on(&engines, &case, &id));
        // Dropped in every process, so the next case starts from an empty catalog.
        let _ = engines[0].delete_rule(&id);
        for s in &case.streams {
            if let Ok(def) = quiver_compiler::parse_create(s) {
                let _ = engines[0].drop_stream(&def.name);
            }
        }
        match result {
            Err(e) if e.contains("not supported in cluster mode") => {
                refused.entry(e).or_default().push(name.clone());
                continue;
            }
            result => {
                ran += 1;
                if let Err(e) = check_outcome(
                    &case,
                    result,
                    &format!("a {PROCESSES}-process cluster"),
                    false,
                ) {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    // A process's shutdown waits for the others' network threads: all at once.
    std::thread::scope(|s| {
        for e in &engines {
            s.spawn(|| e.shutdown());
        }
    });
    let refusals: Vec<String> = refused
        .iter()
        .map(|(why, cases)| format!("{} case(s): {why}", cases.len()))
        .collect();
    eprintln!(
        "{ran} of {picked} golden cases ran on a {PROCESSES}-process cluster; refused there:\n  {}",
        refusals.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} golden cases failed on a {PROCESSES}-process cluster:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Refusals must stay the exception, or this test would pass by running nothing.
    assert!(
        ran * 4 >= picked * 3,
        "only {ran} of {picked} golden cases ran on a cluster; refused:\n  {}",
        refusals.join("\n  ")
    );
}
