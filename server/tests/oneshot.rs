//! `quiverd run`: the real binary over real files, asserting on its printed status and exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("quiver-oneshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Window-aligned start (a multiple of 10 s), so the windows are easy to count.
const T0: i64 = 1_700_000_000_000;
const DEVICES: i64 = 5;

/// `n` readings 1 ms apart as JSON lines, devices round-robin.
fn readings(n: i64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"device\":\"dev-{}\",\"temperature\":{},\"humidity\":{},\"ts\":{}}}\n",
                i % DEVICES,
                i % 40,
                i % 100,
                T0 + i
            )
        })
        .collect()
}

/// The same readings as [`readings`], as `device,temperature,humidity,ts` lines (the input of
/// a benchmark case reading `events.csv` in `FORMAT="delimited"`).
fn readings_delimited(n: i64) -> String {
    (0..n)
        .map(|i| format!("dev-{},{},{},{}\n", i % DEVICES, i % 40, i % 100, T0 + i))
        .collect()
}

const STREAM: &str = "CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, \
     ts BIGINT) WITH (DATASOURCE=\"events.jsonl\", TYPE=\"file\", TIMESTAMP=\"ts\")";

fn quiverd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiverd"))
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .arg("run")
        .args(args)
        .output()
        .expect("quiverd runs")
}

/// The status JSON quiverd printed on stdout.
fn status(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the status JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The rows the `log` sink wrote (to stderr), one JSON array per emission.
fn logged_rows(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split_once("quiver::sink::log: "))
        .flat_map(|(_, json)| {
            let rows: Vec<Value> = serde_json::from_str(json).expect("log line is a JSON array");
            rows
        })
        .collect()
}

#[test]
fn event_time_window_runs_to_the_end_of_the_file_on_one_and_two_workers() {
    let dir = TempDir::new("window");
    let n = 25_000;
    dir.write("events.jsonl", &readings(n));
    let rule = dir.write(
        "rule.json",
        r#"{"id": "w2",
            "sql": "SELECT device, avg(temperature), count(*), max(humidity) FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)",
            "actions": [{"log": {}}],
            "options": {"isEventTime": true, "lateTolerance": 0}}"#,
    );
    for workers in ["1", "2"] {
        let out = quiverd(
            &dir.0,
            &[
                "--stream",
                STREAM,
                "--rule",
                rule.to_str().unwrap(),
                "--workers",
                workers,
            ],
        );
        let st = status(&out);
        assert!(out.status.success(), "exit {:?}: {st:#}", out.status);
        assert_eq!(st["status"], "stopped", "{st:#}");
        // A run that finished by itself says when.
        assert!(
            st["lastStopTimestamp"].as_i64().unwrap_or(0)
                >= st["lastStartTimestamp"].as_i64().unwrap_or(i64::MAX),
            "{st:#}"
        );
        assert!(
            st["message"].as_str().unwrap().contains("input ended"),
            "{st:#}"
        );
        assert_eq!(st["source_demo_0_records_in_total"], n, "{st:#}");
        // 25 s of events: two full 10 s windows and a partial one that only the end of the
        // input closes, one row per device each.
        let windows = 3;
        assert_eq!(
            st["sink_log_0_0_records_in_total"],
            windows * DEVICES,
            "{st:#}"
        );
        let rows = logged_rows(&out);
        assert_eq!(rows.len() as i64, windows * DEVICES);
        let counted: i64 = rows.iter().map(|r| r["count"].as_i64().unwrap()).sum();
        assert_eq!(counted, n, "every event is in exactly one window");
        for r in &rows {
            // Device d sees humidity d, d + 5, ..., so its maximum is 95 + d.
            let d: i64 = r["device"].as_str().unwrap()[4..].parse().unwrap();
            assert_eq!(r["max"], 95 + d, "{r}");
        }
    }
}

#[test]
fn bare_select_over_csv_with_a_profile() {
    let dir = TempDir::new("csv");
    std::fs::create_dir(dir.0.join("data")).unwrap();
    dir.write(
        "data/in.csv",
        "device,temperature\ndev-1,25.5\ndev-2,10\ndev-3,\"30\"\ndev-4,21\n",
    );
    let config = dir.write(
        "quiver.yaml",
        &format!(
            "file:\n  default:\n    path: {}\n",
            dir.0.join("data").display()
        ),
    );
    let out = quiverd(
        &dir.0,
        &[
            "--config",
            config.to_str().unwrap(),
            "--stream",
            "CREATE STREAM demo (device STRING, temperature FLOAT) \
             WITH (DATASOURCE=\"in.csv\", TYPE=\"file\")",
            "--rule",
            "SELECT device FROM demo WHERE temperature > 20",
        ],
    );
    let st = status(&out);
    assert!(out.status.success(), "{st:#}");
    assert_eq!(st["source_demo_0_records_in_total"], 4, "{st:#}");
    // The quoted "30" travels as a string; the typed decoder still reads it into FLOAT.
    assert_eq!(st["sink_log_0_0_records_in_total"], 3, "{st:#}");
    let mut devices: Vec<String> = logged_rows(&out)
        .iter()
        .map(|r| r["device"].as_str().unwrap().to_string())
        .collect();
    devices.sort();
    assert_eq!(devices, ["dev-1", "dev-3", "dev-4"]);
}

/// The exceptions a run's status counts, over every node.
fn exceptions(st: &Value) -> i64 {
    st.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("_exceptions_total"))
        .map(|(_, v)| v.as_i64().unwrap())
        .sum()
}

/// Fixed bug: a `.csv` file in `FORMAT="delimited"` was read as CSV with a header into JSON
/// rows, which the delimited decoder then refused one by one. It is read as lines, each line a
/// delimited message, as eKuiper's `lines` file type; a header line is a message too unless
/// `ignoreStartLines` skips it, and `fileType: csv` with that format is refused by name.
#[test]
fn delimited_csv_file_is_read_as_lines() {
    let dir = TempDir::new("delimited");
    std::fs::create_dir(dir.0.join("data")).unwrap();
    dir.write(
        "data/in.csv",
        "device,temperature\ndev-1,25.5\ndev-2,10\n\ndev-3,30\r\ndev-4,21",
    );
    let config = dir.write(
        "quiver.yaml",
        &format!(
            "file:\n  default:\n    path: {data}\n  skip:\n    path: {data}\n    \
             ignoreStartLines: 1\n  csv:\n    path: {data}\n    fileType: csv\n",
            data = dir.0.join("data").display()
        ),
    );
    let run = |conf_key: &str| {
        quiverd(
            &dir.0,
            &[
                "--config",
                config.to_str().unwrap(),
                "--stream",
                &format!(
                    "CREATE STREAM demo (device STRING, temperature FLOAT) WITH \
                     (DATASOURCE=\"in.csv\", TYPE=\"file\", FORMAT=\"delimited\", \
                     DELIMITER=\",\", CONF_KEY=\"{conf_key}\")"
                ),
                "--rule",
                "SELECT device, temperature FROM demo WHERE temperature > 20",
            ],
        )
    };
    let expected = [("dev-1", 25.5), ("dev-3", 30.0), ("dev-4", 21.0)];
    let seen = |out: &Output| {
        let mut rows: Vec<(String, f64)> = logged_rows(out)
            .iter()
            .map(|r| {
                let device = r["device"].as_str().unwrap().to_string();
                (device, r["temperature"].as_f64().unwrap())
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    let expected: Vec<(String, f64)> = expected.iter().map(|(d, t)| (d.to_string(), *t)).collect();

    // The header line is a message whose "temperature" is not a number: one bad message.
    let out = run("default");
    let st = status(&out);
    assert!(out.status.success(), "{st:#}");
    assert_eq!(st["status"], "stopped", "{st:#}");
    assert_eq!(seen(&out), expected, "{st:#}");
    assert_eq!(exceptions(&st), 1, "the header line: {st:#}");

    let out = run("skip");
    let st = status(&out);
    assert!(out.status.success(), "{st:#}");
    assert_eq!(seen(&out), expected, "{st:#}");
    assert_eq!(exceptions(&st), 0, "{st:#}");

    // Refused when the rule is set up, naming both, never read as csv and left to fail.
    let out = run("csv");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"fileType\": csv") && err.contains("FORMAT \"delimited\""),
        "{err}"
    );
}

#[test]
fn missing_file_stops_the_rule_by_error() {
    let dir = TempDir::new("missing");
    let out = quiverd(
        &dir.0,
        &["--stream", STREAM, "--rule", "SELECT * FROM demo"],
    );
    let st = status(&out);
    assert_eq!(out.status.code(), Some(1), "{st:#}");
    assert_eq!(st["status"], "stopped by error");
    let message = st["message"].as_str().unwrap();
    assert!(
        message.contains("cannot open") && message.contains("events.jsonl"),
        "{message}"
    );
}

#[test]
fn setup_errors_exit_2_with_a_message() {
    let dir = TempDir::new("setup");
    let out = quiverd(
        &dir.0,
        &["--stream", STREAM, "--rule", "SELECT * FROM demoo"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown stream \"demoo\""), "{err}");
    let out = quiverd(&dir.0, &["--rule", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stream is required"));
}

/// Every end-to-end benchmark case (benches/cases/*/) runs once through its own harness
/// (`run.sh`, which checks that the rule finished and read every line) on a tiny input, so the
/// cases cannot rot between benchmark runs; the figures come from `scripts/bench.sh`.
#[test]
fn benchmark_cases_run_end_to_end_on_a_tiny_input() {
    let dir = TempDir::new("bench-cases");
    let events = dir.write("events.jsonl", &readings(2_000));
    let delimited = dir.write("events.csv", &readings_delimited(2_000));
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/cases");
    let mut ran = Vec::new();
    let mut sink_rows = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&cases).expect("benches/cases") {
        let case = entry.unwrap().path();
        if !case.join("rule.json").is_file() {
            continue;
        }
        let stream = std::fs::read_to_string(case.join("stream.sql")).expect("stream.sql");
        let input = match stream.contains("DATASOURCE=\"events.csv\"") {
            true => &delimited,
            false => &events,
        };
        let out = Command::new(cases.join("run.sh"))
            .arg(&case)
            .arg(input)
            .arg("2")
            .arg(env!("CARGO_BIN_EXE_quiverd"))
            .output()
            .expect("run benches/cases/run.sh (needs jq and GNU time)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}\n{stdout}",
            case.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(line["events"], 2_000, "{line}");
        assert!(line["sink_rows"].as_u64() > Some(0), "{line}");
        if case.join("count.sql").is_file() {
            // A case writing into MariaDB: run.sh checked the table against the sink; the
            // plain-client references load the same rows again.
            assert_eq!(line["db_rows"], line["sink_rows"], "{line}");
            let out = Command::new(cases.join("mysql_clients.sh"))
                .arg("bench_file_to_mysql_w1")
                .arg("50")
                .output()
                .expect("run benches/cases/mysql_clients.sh");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "mysql_clients.sh: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let refs: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
            assert_eq!(refs["rows"], line["db_rows"], "{refs}");
            assert_eq!(refs["per_row_rows"], 50, "{refs}");
        }
        ran.push(line["case"].as_str().unwrap_or_default().to_string());
        sink_rows.insert(
            ran.last().cloned().unwrap_or_default(),
            line["sink_rows"].clone(),
        );
    }
    // The delimited W1 reads the same readings as the JSON one: the same rows come out.
    assert_eq!(
        sink_rows.get("file_to_memory_w1_delimited"),
        sink_rows.get("file_to_memory_w1"),
        "{sink_rows:?}"
    );
    ran.sort();
    assert_eq!(
        ran,
        [
            "file_to_memory_w1",
            "file_to_memory_w1_delimited",
            "file_to_memory_w2",
            "file_to_memory_w3",
            "file_to_mysql_w1"
        ],
        "every case ran"
    );
}
