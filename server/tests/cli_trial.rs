//! The `quiver` CLI's rule tests against a real quiverd: `test rule -f` prints a test's rows as
//! they arrive and deletes the test when interrupted; `query`, driven through a pseudo-terminal
//! as a person types, runs a SELECT on a live stream, prints its rows and returns to the
//! prompt on Enter.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Server, temp_dir};
use serde_json::{Value, json};

/// How long a test waits for what it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Sends SIGINT to `child`, as Ctrl-C in its terminal would.
fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The lines `child` prints on stdout, read on a thread.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit and returns its exit code.
fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("an exit code");
        }
        assert!(Instant::now() < deadline, "quiver did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_rule_prints_rows_as_they_arrive_and_deletes_the_test_on_ctrl_c() {
    let dir = temp_dir("cli-test-rule");
    let server = Server::start(&dir);
    server.create_stream(
        r#"CREATE STREAM readings (device STRING, t BIGINT) WITH (DATASOURCE="r", TYPE="memory", FORMAT="json")"#,
    );
    let file = dir.join("test.json");
    let test = json!({
        "id": "cli-t1",
        "sql": "SELECT device, t * 2 AS twice FROM readings WHERE t > 1",
        "mockSource": {"readings": {"data": [
            {"device": "a", "t": 1}, {"device": "b", "t": 2}, {"device": "c", "t": 3}
        ], "interval": 10}},
        "sinkProps": {"sendSingle": true}
    });
    std::fs::write(&file, test.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["--host", &format!("http://{}", server.addr()), "--json"])
        .args(["test", "rule", "-f", file.to_str().unwrap()])
        .env_remove("QUIVER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quiver runs");
    let lines = stdout_lines(&mut child);
    let mut rows: Vec<Value> = (0..2)
        .map(|_| {
            let line = lines.recv_timeout(PATIENCE).expect("a result row");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect();
    rows.sort_by_key(|r| r["twice"].as_i64());
    assert_eq!(
        rows,
        [
            json!({"device": "b", "twice": 4}),
            json!({"device": "c", "twice": 6})
        ]
    );
    // The test is open until quiver is interrupted; then quiver deletes it and exits 0.
    assert_eq!(server.call("POST", "/ruletest/cli-t1/start", None).0, 200);
    interrupt(&child);
    assert_eq!(exit_code(&mut child), 0);
    assert_eq!(server.call("DELETE", "/ruletest/cli-t1", None).0, 404);

    // A test the server refuses exits 1 with its message; nothing is left open.
    std::fs::write(
        &file,
        json!({"id": "cli-t2", "sql": "SELEKT 1"}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["--host", &format!("http://{}", server.addr())])
        .args(["test", "rule", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELEKT"));
    assert_eq!(server.call("DELETE", "/ruletest/cli-t2", None).0, 404);
}

#[test]
fn query_runs_a_select_on_a_live_stream_through_a_terminal() {
    let dir = temp_dir("cli-query");
    let server = Server::start(&dir);
    server.create_stream(
        r#"CREATE STREAM pushed (a BIGINT) WITH (DATASOURCE="/q", TYPE="httppush", FORMAT="json")"#,
    );
    // `script` gives quiver a pseudo-terminal; what is written to its stdin is typed there.
    let command = format!(
        "{} --host http://{} query",
        env!("CARGO_BIN_EXE_quiver"),
        server.addr()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("QUIVER_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs");
    let lines = stdout_lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "SELECT a * 10 AS big FROM pushed WHERE a > 0").unwrap();
    // Rows pushed before the test has started are not the test's; push until one prints.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    'wait: loop {
        assert!(Instant::now() < deadline, "no row printed; saw {seen:?}");
        server.push("/q", r#"{"a": 4}"#);
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            if line.contains(r#"{"big":40}"#) {
                break 'wait;
            }
            seen.push(line);
        }
    }
    // Enter stops the query and deletes its test: pushed rows then go nowhere.
    writeln!(stdin).unwrap();
    // A bad query is reported at the prompt, which stays open.
    writeln!(stdin, "SELECT nope FROM missing").unwrap();
    writeln!(stdin, "exit").unwrap();
    assert_eq!(exit_code(&mut child), 0);
    // Everything printed up to the exit (the reading thread ends at the pipe's end).
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("missing")),
        "the error of the bad query: {rest:?}"
    );
}
