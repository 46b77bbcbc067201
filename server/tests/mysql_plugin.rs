//! End-to-end tests of the MySQL sink plugin (`connectors/mysql`) against the real MariaDB on
//! 127.0.0.1:3306 (user root, no password, database `test`; `scripts/test.sh` starts it).
//!
//! Each test packages the plugin with `scripts/package-plugin.sh connectors/mysql` (as the
//! tutorial does), serves `mysqlSink.zip` over loopback HTTP, installs it into a real
//! `quiverd` with `POST /plugins/sinks`, runs rules with a `mysql` action over an httppush
//! stream and reads the table back with the `mariadb` client. Every test uses its own table
//! and drops it. Outages go through a loopback TCP proxy the test cuts and restores; the
//! shared MariaDB itself is never stopped. The TLS test starts a private MariaDB that accepts
//! only TLS connections.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::proxy::Proxy;
use common::{Server, free_port, repo_root, serve_files, temp_dir, wait_metric, wait_rule_status};
use serde_json::{Value, json};

const DB_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Runs `scripts/package-plugin.sh connectors/mysql` and returns the zip it names on its
/// last line, copied into `dir` (so a concurrent run of the script cannot change it).
fn package_mysql(dir: &Path) -> PathBuf {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/package-plugin.sh"))
        .arg("connectors/mysql")
        .current_dir(&root)
        // The plugin builds in the script's own target dir (target/plugins), as in the tutorial.
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("package-plugin.sh runs");
    assert!(
        out.status.success(),
        "package-plugin.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("the zip path").trim();
    assert_eq!(last, "target/plugin-packages/mysqlSink.zip");
    let zip = dir.join("mysqlSink.zip");
    std::fs::copy(root.join(last), &zip).expect("copy the zip");
    zip
}

/// Runs SQL with the `mariadb` client in database `test`; returns the tab-separated output.
fn sql(statements: &str) -> String {
    common::mariadb(statements)
}

/// A table that is dropped when the test ends, pass or fail.
struct Table(String);

impl Table {
    fn create(name: &str, columns: &str) -> Table {
        let name = format!("{name}_{}", std::process::id());
        sql(&format!(
            "DROP TABLE IF EXISTS `{name}`; CREATE TABLE `{name}` ({columns})"
        ));
        Table(name)
    }

    fn count(&self) -> u64 {
        sql(&format!("SELECT COUNT(*) FROM `{}`", self.0))
            .trim()
            .parse()
            .expect("a count")
    }

    /// Waits until the table holds `n` rows.
    fn wait_rows(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let have = self.count();
            if have >= n {
                assert_eq!(have, n, "more rows than written");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} holds {have} rows, want {n}",
                self.0
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "test", "-e"])
            .arg(format!("DROP TABLE IF EXISTS `{}`", self.0))
            .status();
    }
}

/// A test's temp directory, removed at the end (each holds a ~75 MB plugin library twice).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A quiverd with the mysql plugin installed from its zip over loopback HTTP.
fn server_with_plugin(name: &str) -> (Server, TempDir) {
    let dir = temp_dir(name);
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    package_mysql(&zips);
    let base = serve_files(&zips);
    let server = Server::start(&dir.join("data"));
    let (status, body) = server.json(
        "POST",
        "/plugins/sinks",
        Some(json!({"name": "mysql", "file": format!("{base}/mysqlSink.zip")})),
    );
    assert_eq!(status, 201, "{body}");
    (server, TempDir(dir))
}

fn create_rule(server: &Server, id: &str, sql_text: &str, action: Value) {
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": id, "sql": sql_text, "actions": [{"mysql": action}]})),
    );
    assert_eq!(status, 201, "{body}");
}

fn push(server: &Server, path: &str, rows: &Value) {
    let (status, body) = server.push(path, &rows.to_string());
    assert_eq!(status, 200, "{body}");
}

#[test]
fn rows_land_with_their_types_nulls_fields_and_literal_strings() {
    let (server, _dir) = server_with_plugin("mysql-types");
    let (status, info) = server.json("GET", "/plugins/sinks/mysql", None);
    assert_eq!(status, 200);
    assert_eq!(info["name"], json!("mysql"));
    assert_eq!(info["version"], json!("1.0.0"));
    assert_eq!(info["properties"][0]["name"], json!("url"));

    let all = Table::create(
        "quiver_types",
        "id BIGINT, device VARCHAR(100), temperature DOUBLE, ok BOOLEAN, ts DATETIME(3), tags TEXT, note TEXT",
    );
    let picked = Table::create(
        "quiver_fields",
        "note TEXT, id BIGINT, extra VARCHAR(10) DEFAULT 'dflt'",
    );
    server.create_stream(
        r#"CREATE STREAM readings (id BIGINT, device STRING, temperature FLOAT, ok BOOLEAN, ts DATETIME, tags ARRAY(STRING), note STRING) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );
    create_rule(
        &server,
        "all",
        "SELECT id, device, temperature, ok, ts, tags, note FROM readings",
        json!({"url": DB_URL, "table": all.0, "batchSize": 5, "lingerInterval": 500}),
    );
    // eKuiper's Go-driver URL form, and `fields` choosing and ordering the columns.
    create_rule(
        &server,
        "picked",
        "SELECT * FROM readings",
        json!({"url": "root:@tcp(127.0.0.1:3306)/test", "table": picked.0, "fields": ["note", "id"]}),
    );
    let nasty = [
        "it's \"quoted\"",
        r"back\slash \' \\",
        "'); DROP TABLE x; --",
        "ünïcødé ✓ 数据 🚀",
        "`; DELETE FROM t; `",
    ];
    let mut rows = vec![
        json!({"id": 1, "device": "a", "temperature": 20.5, "ok": true, "ts": 1_700_000_000_123_i64, "tags": ["x", "y"], "note": "plain"}),
        // Missing fields write NULL.
        json!({"id": 2, "device": "b"}),
    ];
    for (i, s) in nasty.iter().enumerate() {
        rows.push(json!({"id": 10 + i, "device": s, "temperature": -1.25, "ok": false, "note": s}));
    }
    push(&server, "/readings", &Value::Array(rows));
    all.wait_rows(7, Duration::from_secs(20));
    picked.wait_rows(7, Duration::from_secs(20));

    let got = sql(&format!(
        "SELECT id, device, temperature, ok, ts, tags, note FROM `{}` WHERE id < 10 ORDER BY id",
        all.0
    ));
    assert_eq!(
        got,
        "1\ta\t20.5\t1\t2023-11-14 22:13:20.123\t[\"x\",\"y\"]\tplain\n2\tb\tNULL\tNULL\tNULL\tNULL\tNULL\n"
    );
    // Stored literally: compare with what the client reads back, byte for byte (hex).
    for (i, s) in nasty.iter().enumerate() {
        let hex = sql(&format!(
            "SELECT HEX(device), HEX(note), temperature, ok FROM `{}` WHERE id = {}",
            all.0,
            10 + i
        ));
        let want: String = s.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, format!("{want}\t{want}\t-1.25\t0\n"), "{s}");
    }
    let got = sql(&format!(
        "SELECT id, note, extra FROM `{}` WHERE id <= 10 ORDER BY id",
        picked.0
    ));
    assert_eq!(
        got,
        "1\tplain\tdflt\n2\tNULL\tdflt\n10\tit's \"quoted\"\tdflt\n"
    );
    let st = wait_metric(&server, "all", "sink_mysql_0_0_records_out_total", 7);
    assert_eq!(st["sink_mysql_0_0_exceptions_total"], json!(0), "{st}");

    // Bad configs are refused at rule creation with the plugin's message.
    for (action, want) in [
        (
            json!({"url": DB_URL, "table": all.0, "tabel": "x"}),
            "unknown property \"tabel\"; did you mean \"table\"?",
        ),
        (json!({"url": DB_URL}), "needs a \"table\" property"),
        (
            json!({"url": DB_URL, "table": "a`b"}),
            "contains a backtick",
        ),
    ] {
        let (status, err) = server.json(
            "POST",
            "/rules",
            Some(json!({"id": "bad", "sql": "SELECT * FROM readings", "actions": [{"mysql": action}]})),
        );
        assert_eq!(status, 400, "{err}");
        let message = err["message"].as_str().unwrap_or("");
        assert!(message.contains(want), "{message:?} should say {want:?}");
    }
    server.stop();
}

#[test]
fn a_10000_row_batch_is_written_in_chunks_in_one_go() {
    let (server, _dir) = server_with_plugin("mysql-large");
    let table = Table::create(
        "quiver_large",
        "id BIGINT PRIMARY KEY, device VARCHAR(20), v DOUBLE",
    );
    server.create_stream(
        r#"CREATE STREAM big (id BIGINT, device STRING, v FLOAT) WITH (DATASOURCE="/big", TYPE="httppush", FORMAT="json")"#,
    );
    create_rule(
        &server,
        "big",
        "SELECT id, device, v FROM big",
        json!({"url": DB_URL, "table": table.0, "batchSize": 10_000, "lingerInterval": 10_000}),
    );
    let rows: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": i, "device": format!("d{}", i % 7), "v": i as f64 / 2.0}))
        .collect();
    push(&server, "/big", &Value::Array(rows));
    table.wait_rows(10_000, Duration::from_secs(30));
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(DISTINCT id), SUM(id), SUM(v), MAX(device) FROM `{}`",
            table.0
        )),
        "10000\t49995000\t24997500\td6\n"
    );
    let st = wait_metric(&server, "big", "sink_mysql_0_0_records_out_total", 10_000);
    assert_eq!(st["sink_mysql_0_0_exceptions_total"], json!(0), "{st}");
    server.stop();
}

#[test]
fn a_rejected_row_is_reported_and_its_batch_rolled_back() {
    let (server, _dir) = server_with_plugin("mysql-rejected");
    let table = Table::create("quiver_rejected", "id BIGINT, name VARCHAR(5)");
    server.create_stream(
        r#"CREATE STREAM names (id BIGINT, name STRING) WITH (DATASOURCE="/names", TYPE="httppush", FORMAT="json")"#,
    );
    create_rule(
        &server,
        "names",
        "SELECT id, name FROM names",
        // The three rows reach the plugin as one batch, whichever worker decoded them.
        json!({"url": DB_URL, "table": table.0, "batchSize": 3, "lingerInterval": 5_000}),
    );
    push(
        &server,
        "/names",
        &json!([{"id": 1, "name": "ok"}, {"id": 2, "name": "much too long"}, {"id": 3, "name": "fine"}]),
    );
    let st = wait_metric(&server, "names", "sink_mysql_0_0_exceptions_total", 3);
    let last = st["sink_mysql_0_0_last_exception"].as_str().unwrap_or("");
    assert!(
        last.contains("the database rejected the batch of 3 rows, so none of it was written")
            && last.contains("Data too long for column 'name' at row ")
            && last.contains(" of the batch (error 1406)"),
        "{st}"
    );
    assert_eq!(table.count(), 0, "the whole batch rolled back");
    // The rule goes on.
    push(
        &server,
        "/names",
        &json!([{"id": 4, "name": "next"}, {"id": 5, "name": "a'b"}, {"id": 6, "name": ""}]),
    );
    table.wait_rows(3, Duration::from_secs(20));
    assert_eq!(
        sql(&format!("SELECT id, name FROM `{}` ORDER BY id", table.0)),
        "4\tnext\n5\ta'b\n6\t\n"
    );
    server.stop();
}

#[test]
fn every_row_is_written_exactly_once_across_an_outage() {
    let (server, _dir) = server_with_plugin("mysql-outage");
    // With a unique key: the plugin's exactly-once promise. (Without one, a COMMIT whose
    // answer the cut lost is written again on retry, the documented at-least-once case; on a
    // loaded machine the cut can land on a COMMIT in flight.)
    let table = Table::create("quiver_outage", "id BIGINT PRIMARY KEY, device VARCHAR(20)");
    let proxy = Proxy::start("127.0.0.1:3306");
    server.create_stream(
        r#"CREATE STREAM events (id BIGINT, device STRING) WITH (DATASOURCE="/events", TYPE="httppush", FORMAT="json")"#,
    );
    create_rule(
        &server,
        "events",
        "SELECT id, device FROM events",
        json!({
            "url": format!("mysql://root@127.0.0.1:{}/test", proxy.port),
            "table": table.0,
            "retryMaxInterval": 300,
        }),
    );
    let batch = |from: u64| -> Value {
        Value::Array(
            (from..from + 50)
                .map(|i| json!({"id": i, "device": format!("d{i}")}))
                .collect(),
        )
    };
    for b in 0..4 {
        push(&server, "/events", &batch(b * 50));
    }
    table.wait_rows(200, Duration::from_secs(20));

    proxy.cut();
    for b in 4..10 {
        push(&server, "/events", &batch(b * 50));
        std::thread::sleep(Duration::from_millis(300));
    }
    // The status shows why the rows wait, and that they are kept.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = server.json("GET", "/rules/events/status", None);
        let last = st["sink_mysql_0_0_last_exception"].as_str().unwrap_or("");
        if last.contains("cannot write to 127.0.0.1:") && last.contains("is buffered") {
            break;
        }
        assert!(Instant::now() < deadline, "no outage in the status: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(table.count(), 200, "nothing written while cut");
    std::thread::sleep(Duration::from_secs(2));
    proxy.restore();
    table.wait_rows(500, Duration::from_secs(30));
    // And the rule keeps writing afterwards.
    push(&server, "/events", &batch(500));
    table.wait_rows(550, Duration::from_secs(20));
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(DISTINCT id), MIN(id), MAX(id) FROM `{}`",
            table.0
        )),
        "550\t0\t549\n",
        "every row exactly once"
    );
    assert_eq!(
        server.json("GET", "/rules/events/status", None).1["status"],
        json!("running")
    );
    server.stop();
}

/// A lost commit answer: a 64-row batch is one autocommitted statement (one chunk), and the
/// proxy breaks the connection right after forwarding it, so the server commits it but the
/// answer never arrives. The writer cannot know, and writes the batch again: with a primary
/// key, the retry's duplicate-key error tells it the first attempt went through, so the batch
/// counts as written, nothing is reported as rejected, and every row is in the table once.
#[test]
fn a_lost_commit_answer_is_not_written_twice_with_a_key() {
    let (server, _dir) = server_with_plugin("mysql-lost-ack");
    let table = Table::create(
        "quiver_lost_ack",
        "id BIGINT PRIMARY KEY, device VARCHAR(20)",
    );
    let proxy = Proxy::start("127.0.0.1:3306");
    server.create_stream(
        r#"CREATE STREAM acks (id BIGINT, device STRING) WITH (DATASOURCE="/acks", TYPE="httppush", FORMAT="json")"#,
    );
    create_rule(
        &server,
        "acks",
        "SELECT id, device FROM acks",
        json!({
            "url": format!("mysql://root@127.0.0.1:{}/test", proxy.port),
            "table": table.0,
            "retryMaxInterval": 300,
        }),
    );
    let batch = |from: u64| -> Value {
        Value::Array(
            (from..from + 64)
                .map(|i| json!({"id": i, "device": format!("d{i}")}))
                .collect(),
        )
    };
    push(&server, "/acks", &batch(0));
    table.wait_rows(64, Duration::from_secs(20));
    proxy.lose_reply.store(true, Ordering::SeqCst);
    push(&server, "/acks", &batch(64));
    table.wait_rows(128, Duration::from_secs(20));
    // The rows are in, but the writer learns that only from its retry (after 100 ms).
    std::thread::sleep(Duration::from_millis(1_500));
    push(&server, "/acks", &batch(128));
    table.wait_rows(192, Duration::from_secs(20));
    assert!(
        !proxy.lose_reply.load(Ordering::SeqCst),
        "the proxy lost an answer"
    );
    let st = wait_metric(&server, "acks", "sink_mysql_0_0_records_out_total", 128);
    let last = st["sink_mysql_0_0_last_exception"].as_str().unwrap_or("");
    assert!(
        last.contains("cannot write to"),
        "the lost answer was seen: {st}"
    );
    // Nothing was reported as rejected: the third batch's call succeeded, and only the
    // second batch's call (buffered) failed.
    assert!(!last.contains("rejected"), "{st}");
    assert_eq!(st["sink_mysql_0_0_exceptions_total"], json!(64), "{st}");
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(DISTINCT id), MAX(id) FROM `{}`",
            table.0
        )),
        "192\t191\n"
    );
    server.stop();
}

/// Rows/s into MariaDB, three ways, in one run on one machine:
/// 1. a rule over a `memory` stream (pre-built Arrow batches of 1,000 rows) with a `mysql`
///    action, the plugin loaded from its zip, timed from the first publish until the rule
///    finished (its sink closed with every row committed);
/// 2. one autocommitted INSERT per row (the approach of eKuiper's tutorial sample), the
///    `mariadb` client running 2,000 single-row INSERTs;
/// 3. the ceiling of a plain client: the `mariadb` client loading 1,000-row INSERTs.
///
/// Best of three rounds, the three taking turns.
///
/// `cargo nextest run --release -p quiver-server --test mysql_plugin bench_` with `QUIVER_BENCH_FULL=1`
/// Messages the rule's source has read so far (0 while it starts).
fn records_in(server: &Server, rule: &str, stream: &str) -> u64 {
    let (_, st) = server.json("GET", &format!("/rules/{rule}/status"), None);
    st[format!("source_{stream}_0_records_in_total")]
        .as_u64()
        .unwrap_or(0)
}

/// Pushes `rows` to `path`, again until quiverd takes them (it may still be starting the rule).
fn push_when_listening(server: &Server, path: &str, rows: &Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.push(path, &rows.to_string());
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "push to {path}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// qos 2 through the plugin: the plugin writes each checkpoint's rows and its epoch (in
/// `quiver_sink_progress`) in one transaction, so each row lands exactly once across SIGKILLs
/// of quiverd at any point of its checkpoints and commits; a batch MariaDB refuses is rolled
/// back to its savepoint and reported, and the rest of its epoch commits.
#[test]
fn qos_2_writes_each_row_exactly_once_across_sigkills() {
    let (mut server, dir) = server_with_plugin("mysql-qos2");
    // The installed plugin, the rule and its checkpoints, kept across the restarts.
    let data = dir.0.join("data");
    let table = Table::create("quiver_exact", "id BIGINT, name VARCHAR(5)");
    // The progress row is keyed by rule id: unique, so no earlier run's epochs count.
    let rule = format!("exact_{}", std::process::id());
    server.create_stream(
        r#"CREATE STREAM exact (id BIGINT, name STRING) WITH (DATASOURCE="/exact", TYPE="httppush", FORMAT="json")"#,
    );
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": rule, "sql": "SELECT id, name FROM exact",
            "actions": [{"mysql": {"url": DB_URL, "table": table.0}}],
            "options": {"qos": 2, "checkpointInterval": 200}})),
    );
    assert_eq!(status, 201, "{body}");

    // Four rounds of 200 rows in messages of 10; quiverd is killed after each of the first
    // three, after pauses that land the kill anywhere relative to the 200 ms checkpoints.
    let (rounds, per_round, per_message) = (4u64, 200u64, 10u64);
    let pauses = [40, 170, 290];
    for round in 0..rounds {
        let before = records_in(&server, &rule, "exact");
        for m in 0..per_round / per_message {
            let from = round * per_round + m * per_message;
            let rows: Vec<Value> = (from..from + per_message)
                .map(|id| json!({"id": id, "name": "ok"}))
                .collect();
            push_when_listening(&server, "/exact", &Value::Array(rows));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while records_in(&server, &rule, "exact") < before + per_round / per_message {
            assert!(
                Instant::now() < deadline,
                "quiverd did not read round {round}: {}",
                server.json("GET", &format!("/rules/{rule}/status"), None).1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pause) = pauses.get(round as usize) {
            std::thread::sleep(Duration::from_millis(*pause));
            server.kill();
            let log = dir.0.join(format!("run{}.log", round + 1));
            server = Server::start_args(&data, &[], Some(&log));
        }
    }
    // A message of its own (one batch) that MariaDB refuses in strict mode.
    push_when_listening(
        &server,
        "/exact",
        &json!([{"id": -1, "name": "much too long"}]),
    );
    let st = wait_rule_status(&server, &rule, |st| {
        st["sink_mysql_0_0_last_exception"]
            .as_str()
            .is_some_and(|e| e.contains("Data too long for column 'name'"))
    });
    let last = st["sink_mysql_0_0_last_exception"].as_str().unwrap_or("");
    assert!(
        last.contains("the database rejected the batch of 1 rows, so none of it was written"),
        "{st}"
    );

    let want = rounds * per_round;
    table.wait_rows(want, Duration::from_secs(60));
    // Late duplicates would come within a checkpoint or two.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM `{}`",
            table.0
        )),
        format!("{want}\t{want}\t0\t{}\n", want - 1),
        "rows missing, refused ones written, or rows written twice"
    );
    let progress = sql(&format!(
        "SELECT COUNT(*), MIN(epoch) > 0 FROM quiver_sink_progress WHERE id LIKE '{rule}/%'"
    ));
    assert_eq!(progress, "1\t1\n", "one progress row for the rule's sink");
    server.kill();
    sql(&format!(
        "DELETE FROM quiver_sink_progress WHERE id LIKE '{rule}/%'"
    ));
}

#[test]
fn bench_mysql_sink_against_per_row_and_multi_row_clients() {
    use quiver_connectors::Connectors;
    use quiver_connectors::memory::MemoryPayload;
    use quiver_dataflow::{Action, Engine, EngineConfig, RuleSpec};
    use quiver_plugin_abi::ffi::PluginKind;
    use quiver_server::plugins::PluginManager;

    // CI runs a small load so the harness cannot rot; QUIVER_BENCH_FULL=1 gives the figures.
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let rows: usize = 1_000;
    let n_batches: usize = if full { 300 } else { 3 };
    let per_row: usize = if full { 2_000 } else { 20 };
    let rounds: usize = if full { 3 } else { 1 };

    const COLUMNS: &str = "id BIGINT, device VARCHAR(20), temperature DOUBLE";

    let dir = TempDir(temp_dir("mysql-bench"));
    let zip = package_mysql(&dir.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::start(
        EngineConfig {
            workers: 1,
            ..Default::default()
        },
        rt.handle().clone(),
        Connectors::new(),
    )
    .expect("engine");
    let plugins = PluginManager::open(&dir.0.join("data"), engine.clone())
        .and_then(|p| p.with_file_dir(Some(dir.0.as_path())))
        .expect("plugins");
    rt.block_on(plugins.install(
        PluginKind::Sink,
        "mysql",
        &format!("file://{}", zip.display()),
    ))
    .expect("install mysql");
    engine
        .create_stream(
            r#"CREATE STREAM bench (id BIGINT, device STRING, temperature FLOAT) WITH (DATASOURCE="bench/in", TYPE="memory")"#,
        )
        .expect("stream");
    let batches: Vec<arrow::record_batch::RecordBatch> = (0..n_batches)
        .map(|b| {
            use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
            let ids: Vec<i64> = (0..rows).map(|i| (b * rows + i) as i64).collect();
            let devices: Vec<String> = (0..rows).map(|i| format!("dev{}", i % 16)).collect();
            let temps: Vec<f64> = (0..rows).map(|i| (i % 50) as f64 + 0.5).collect();
            arrow::record_batch::RecordBatch::try_from_iter([
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("device", Arc::new(StringArray::from(devices)) as ArrayRef),
                (
                    "temperature",
                    Arc::new(Float64Array::from(temps)) as ArrayRef,
                ),
            ])
            .expect("batch")
        })
        .collect();

    // Best of rounds rounds, the three ways taking turns: [plugin, per-row, multi-row] seconds.
    let mut best = [f64::MAX; 3];
    for round in 0..rounds {
        // 1. The plugin, through a rule.
        let table = Table::create("quiver_bench_plugin", COLUMNS);
        engine
            .create_rule(RuleSpec {
                id: format!("bench{round}"),
                name: format!("bench{round}"),
                sql: "SELECT id, device, temperature FROM bench".into(),
                actions: vec![Action {
                    sink_type: "mysql".into(),
                    props: json!({"url": DB_URL, "table": table.0, "closeTimeout": 120_000}),
                }],
                options: serde_json::Map::new(),
            })
            .expect("rule");
        let bus = engine.connectors().memory().clone();
        while bus.subscribers("bench/in") == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        rt.block_on(async {
            for b in &batches {
                bus.publish("bench/in", MemoryPayload::Batch(b.clone()))
                    .await;
            }
            bus.close("bench/in");
            assert!(
                engine
                    .wait_finished(&format!("bench{round}"), Duration::from_secs(300))
                    .await
                    .expect("rule"),
                "the rule did not finish"
            );
        });
        best[0] = best[0].min(started.elapsed().as_secs_f64());
        assert_eq!(table.count(), (rows * n_batches) as u64);
        engine
            .delete_rule(&format!("bench{round}"))
            .expect("delete");
        drop(table);

        // 2. One autocommitted INSERT per row.
        let table = Table::create("quiver_bench_per_row", COLUMNS);
        let script: String = (0..per_row)
            .map(|i| {
                format!(
                    "INSERT INTO `{}` VALUES ({i}, 'dev{}', {}.5);\n",
                    table.0,
                    i % 16,
                    i % 50
                )
            })
            .collect();
        best[1] = best[1].min(run_client(&script));
        assert_eq!(table.count(), per_row as u64);
        drop(table);

        // 3. The mariadb client loading 1,000-row INSERTs.
        let table = Table::create("quiver_bench_multi_row", COLUMNS);
        let script: String = (0..n_batches)
            .map(|b| {
                let values: Vec<String> = (0..rows)
                    .map(|i| format!("({}, 'dev{}', {}.5)", b * rows + i, i % 16, i % 50))
                    .collect();
                format!("INSERT INTO `{}` VALUES {};\n", table.0, values.join(","))
            })
            .collect();
        best[2] = best[2].min(run_client(&script));
        assert_eq!(table.count(), (rows * n_batches) as u64);
        drop(table);
    }
    let [plugin_secs, per_row_secs, multi_secs] = best;
    let total = (rows * n_batches) as f64;
    let plugin = total / plugin_secs;
    let per_row = per_row as f64 / per_row_secs;
    let multi = total / multi_secs;
    println!(
        "mysql plugin through a rule: {plugin:.0} rows/s ({total} rows in {plugin_secs:.2} s)\n\
         one INSERT per row (mariadb client): {per_row:.0} rows/s ({per_row} rows in {per_row_secs:.2} s)\n\
         1,000-row INSERTs (mariadb client): {multi:.0} rows/s ({total} rows in {multi_secs:.2} s)\n\
         plugin / ceiling: {:.0}% (goal: at least 80%); plugin / per-row: {:.0}x (goal: over 100x)",
        plugin / multi * 100.0,
        plugin / per_row
    );
    let engine2 = engine.clone();
    rt.block_on(async move { tokio::task::spawn_blocking(move || engine2.shutdown()).await })
        .expect("shutdown");
}

/// Feeds `script` to the `mariadb` client; returns the seconds it took.
fn run_client(script: &str) -> f64 {
    use std::process::Stdio;
    let started = Instant::now();
    let mut child = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "test"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("the mariadb client runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    assert!(child.wait().expect("mariadb").success());
    started.elapsed().as_secs_f64()
}

/// A MariaDB of our own on a free loopback port that accepts only TLS connections, with the
/// certificate of `pki` (root, no password, database `test`); stopped on drop.
struct TlsMariaDb {
    child: std::process::Child,
    port: u16,
}

impl TlsMariaDb {
    fn start(dir: &Path, pki: &Pki) -> TlsMariaDb {
        let data = dir.join("mariadb");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new("/usr/sbin/mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .args(["--skip-log-bin", "--require-secure-transport=ON"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
            .arg(format!("--ssl-cert={}", pki.cert.display()))
            .arg(format!("--ssl-key={}", pki.key.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let db = TlsMariaDb { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.sql("CREATE DATABASE IF NOT EXISTS test").is_err() {
            assert!(
                Instant::now() < deadline,
                "the private MariaDB did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        db
    }

    /// Runs SQL in database `test` over TLS; the tab-separated output or the client's error.
    fn sql(&self, statements: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "--ssl"])
            .args(["-P", &self.port.to_string(), "-e", statements])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_in_the_url_reaches_a_server_that_only_speaks_tls() {
    let (server, dir) = server_with_plugin("mysql-tls");
    let pki = Pki::new(&dir.0);
    let db = TlsMariaDb::start(&dir.0, &pki);
    db.sql("CREATE TABLE test.t (id BIGINT)")
        .expect("create the table");
    server.create_stream(
        r#"CREATE STREAM rows (id BIGINT) WITH (DATASOURCE="/rows", TYPE="httppush", FORMAT="json")"#,
    );
    let url = |tls: &str| format!("root@tcp(127.0.0.1:{})/test?tls={tls}", db.port);

    // Encrypted without checking the certificate: the rows land.
    create_rule(
        &server,
        "skip",
        "SELECT id FROM rows",
        json!({"url": url("skip-verify"), "table": "t", "retryMaxInterval": 200}),
    );
    // Verified: the test CA is not among the plugin's roots, so nothing is written and the
    // status says why.
    create_rule(
        &server,
        "verify",
        "SELECT id + 1000 AS id FROM rows",
        json!({"url": url("true"), "table": "t", "retryMaxInterval": 200}),
    );
    push(&server, "/rows", &json!([{"id": 1}, {"id": 2}]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .sql("SELECT COUNT(*) FROM test.t WHERE id < 1000")
        .as_deref()
        != Ok("2\n")
    {
        assert!(Instant::now() < deadline, "the rows never landed over TLS");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = server.json("GET", "/rules/verify/status", None);
        let last = st["sink_mysql_0_0_last_exception"].as_str().unwrap_or("");
        if last.contains("certificate") || last.contains("UnknownIssuer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate error in the status: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM test.t WHERE id >= 1000")
            .as_deref(),
        Ok("0\n")
    );

    // tls=preferred would fall back to the clear: refused when the rule is created.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "pref", "sql": "SELECT id FROM rows",
                    "actions": [{"mysql": {"url": url("preferred"), "table": "t"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("tls=preferred"), "{body}");
}
