//! Issue 21, "no input brings the server down": each input that used to crash or wedge
//! `quiverd` is answered with an error naming the limit, and the server keeps serving.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, temp_dir};
use serde_json::{Value, json};

const DEMO: &str = r#"CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#;

/// The server still answers: `/ping`, the rule list, and a new rule can be made and deleted.
fn still_serving(server: &Server) {
    assert_eq!(server.call("GET", "/ping", None).0, 200);
    assert_eq!(server.json("GET", "/rules", None).0, 200);
    let rule = json!({"id": "alive", "sql": "SELECT device FROM demo", "actions": [{"log": {}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.call("GET", "/rules/alive/status", None).0, 200);
    assert_eq!(server.call("DELETE", "/rules/alive", None).0, 200);
}

/// Expects `status` and an error message containing `want`.
fn refused(answer: (u16, Value), status: u16, want: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(want),
        "{message:?} should contain {want:?}"
    );
}

fn rule(id: &str, sql: &str, actions: Value) -> Value {
    json!({"id": id, "sql": sql, "actions": actions})
}

#[test]
fn sql_and_ddl_limits_answer_400_and_the_server_keeps_serving() {
    let dir = temp_dir("limits-sql");
    let server = Server::start(&dir);
    server.create_stream(DEMO);

    // Tens of thousands of nested ARRAY( used to overflow the stack and kill the process.
    let deep_type = format!(
        "CREATE STREAM deep (a {}BIGINT{}) WITH (DATASOURCE=\"d\", TYPE=\"memory\")",
        "ARRAY(".repeat(5_000),
        ")".repeat(5_000)
    );
    refused(
        server.json("POST", "/streams", Some(json!({ "sql": deep_type }))),
        400,
        "column type nesting is above the limit of 32 levels",
    );
    still_serving(&server);

    // A long chain of operators: sqlparser builds it without recursing, the binder would not.
    let chain = format!(
        "SELECT {} AS x FROM demo",
        vec!["humidity"; 5_000].join(" + ")
    );
    assert!(chain.len() < 65_536);
    let parens = format!(
        "SELECT {}1{} FROM demo",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    let long = format!(
        "SELECT device FROM demo WHERE device = '{}'",
        "x".repeat(70_000)
    );
    let long_message = format!(
        "SQL text of {} bytes is above the limit of 65536",
        long.len()
    );
    let cases: [(&str, &str, &str); 6] = [
        (
            "/rules",
            &chain,
            "expression nesting is above the limit of 64 levels",
        ),
        (
            "/rules/validate",
            &parens,
            "expression nesting is above the limit of 64 levels",
        ),
        ("/rules", &long, &long_message),
        (
            "/rules",
            "SELECT count(*) FROM demo GROUP BY TUMBLINGWINDOW(dd, 100000)",
            "tumblingwindow length of 100000 units of 86400000 ms is above the limit of 31622400000 ms",
        ),
        (
            "/rules",
            "SELECT count(*) FROM demo GROUP BY COUNTWINDOW(4611686018427387904)",
            "countwindow size 4611686018427387904 is above the limit of 1048576 rows",
        ),
        (
            "/rules",
            "SELECT lpad(device, 100000000) FROM demo",
            "expects a width of at most 65536 for argument 2 but got 100000000",
        ),
    ];
    for (path, sql, want) in cases {
        let body = rule("r", sql, json!([{"log": {}}]));
        refused(server.json("POST", path, Some(body)), 400, want);
    }
    still_serving(&server);
    server.stop();
}

#[test]
fn a_huge_buffer_length_is_refused_and_the_rules_api_keeps_working() {
    let dir = temp_dir("limits-buffer");
    let server = Server::start(&dir);
    server.create_stream(DEMO);
    // 2^61 used to panic inside `mpsc::channel` with the rules lock held, poisoning it: every
    // later rule call panicked until a restart.
    refused(
        server.json(
            "POST",
            "/rules",
            Some(rule(
                "big",
                "SELECT device FROM demo",
                json!([{"log": {"bufferLength": 1u64 << 61}}]),
            )),
        ),
        400,
        "bufferLength 2305843009213693952 is above the limit of 1048576",
    );
    still_serving(&server);
    for (props, want) in [
        (
            json!({"batchSize": 1u64 << 40}),
            "batchSize 1099511627776 is above the limit of 1048576",
        ),
        (
            json!({"lingerInterval": u64::MAX}),
            "lingerInterval 18446744073709551615 is above the limit of 3600000",
        ),
    ] {
        refused(
            server.json(
                "POST",
                "/rules",
                Some(rule(
                    "props",
                    "SELECT device FROM demo",
                    json!([{ "log": props }]),
                )),
            ),
            400,
            want,
        );
    }
    let mut with_option = rule("opt", "SELECT device FROM demo", json!([{"log": {}}]));
    with_option["options"] = json!({"bufferLength": 1u64 << 61});
    refused(
        server.json("POST", "/rules", Some(with_option.clone())),
        400,
        "bufferLength 2305843009213693952 is above the limit of 1048576",
    );
    refused(
        server.json("POST", "/rules/validate", Some(with_option)),
        400,
        "bufferLength 2305843009213693952 is above the limit of 1048576",
    );
    // The same rule within the limits runs, and the rules API answers for it.
    let ok = rule(
        "ok",
        "SELECT device FROM demo",
        json!([{"log": {"bufferLength": 1 << 20, "batchSize": 10, "lingerInterval": 100}}]),
    );
    assert_eq!(server.call("POST", "/rules", Some(ok)).0, 201);
    assert_eq!(server.json("GET", "/rules", None).1[0]["id"], json!("ok"));
    assert_eq!(server.call("POST", "/rules/ok/restart", None).0, 200);
    still_serving(&server);
    server.stop();
}

#[test]
fn plugin_files_are_read_only_from_the_allowed_folder_and_only_if_regular() {
    let dir = temp_dir("limits-plugins");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed dir");
    let fifo = allowed.join("fifo.zip");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    std::fs::write(dir.join("outside.zip"), b"PK").expect("outside zip");
    let install = |server: &Server, file: &str| {
        server.json(
            "POST",
            "/plugins/sinks",
            Some(json!({"name": "zero", "file": file})),
        )
    };

    // Without --plugin-file-dir, no file:// at all: /dev/zero used to be read forever.
    let off = Server::start(&dir.join("data-off"));
    refused(
        install(&off, "file:///dev/zero"),
        400,
        "file:// installs are off; start quiverd with --plugin-file-dir DIR",
    );
    assert_eq!(off.call("GET", "/ping", None).0, 200);
    off.stop();

    let server = Server::start_with_plugin_files(&dir.join("data"), &allowed);
    refused(
        install(
            &server,
            &format!("file://{}", dir.join("outside.zip").display()),
        ),
        400,
        "the folder --plugin-file-dir allows",
    );
    // A FIFO used to block forever while holding the plugin lock.
    let started = Instant::now();
    refused(
        install(&server, &format!("file://{}", fifo.display())),
        400,
        "it is not a regular file",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A link inside the folder to a device outside it is outside.
    std::os::unix::fs::symlink("/dev/zero", allowed.join("zero.zip")).expect("symlink");
    refused(
        install(
            &server,
            &format!("file://{}", allowed.join("zero.zip").display()),
        ),
        400,
        "the folder --plugin-file-dir allows",
    );
    // The lock is free: another install runs to its own answer.
    refused(
        install(
            &server,
            &format!("file://{}", allowed.join("missing.zip").display()),
        ),
        400,
        "cannot read",
    );
    assert_eq!(server.call("GET", "/ping", None).0, 200);
    server.stop();

    // Allowing /dev itself still reads no devices.
    let dev = Server::start_with_plugin_files(&dir.join("data-dev"), std::path::Path::new("/dev"));
    refused(
        install(&dev, "file:///dev/zero"),
        400,
        "it is not a regular file",
    );
    assert_eq!(dev.call("GET", "/ping", None).0, 200);
    dev.stop();
}

#[test]
fn request_bodies_and_concurrency_are_bounded() {
    let dir = temp_dir("limits-rest");
    let server = Server::start(&dir);
    server.create_stream(DEMO);
    // A 2 MiB body is refused on its Content-Length, before it is read (so only its start
    // is sent here; the answer comes anyway).
    let addr = server.addr().to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "POST /rules HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"sql\": \"",
        2 << 20
    )
    .expect("head");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("request body of 2097152 bytes is above the limit of 1048576"),
        "{answer}"
    );
    still_serving(&server);

    // Requests that announce a body and never send it hold every permit (64); the next one
    // is refused at once, and once they go the server serves again. A few more than 64 are
    // sent: a request of the harness's still holding a permit as they arrive turns one of
    // them away (503), which would otherwise leave a permit free for good.
    let held: Vec<TcpStream> = (0..72)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            write!(
                s,
                "POST /rules HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .expect("head");
            s
        })
        .collect();
    // Usually at once; a machine busy building (the plugin tests) took over 10 s once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.json("GET", "/ping", None);
        if status == 503 {
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("too many requests at once: the limit is 64"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.call("GET", "/ping", None).0 != 200 {
        assert!(Instant::now() < deadline, "permits never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    still_serving(&server);
    server.stop();
}
