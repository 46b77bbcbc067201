//! The file source at `qos` 1 and 2: quiverd killed with SIGKILL part way into a file resumes
//! after what its input log holds (each row lands in MariaDB exactly once at qos 2), and a
//! file read to its end is not read again after a restart (SIGTERM or SIGKILL) or a stop and
//! start of its rule, unless it was replaced.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::mqtt::unique;
use common::{Server, mariadb, temp_dir, wait_rule_status};
use serde_json::{Value, json};

/// The rows a rule's source has read (`source_<stream>_0_records_in_total`).
fn records_in(server: &Server, rule: &str) -> u64 {
    let (_, st) = server.json("GET", &format!("/rules/{rule}/status"), None);
    st.as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.starts_with("source_") && k.ends_with("_0_records_in_total"))
        })
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(0)
}

/// `SELECT count(*), count(DISTINCT id)` of a MariaDB table.
fn counts(table: &str) -> (u64, u64) {
    let out = mariadb(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"));
    let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Waits until the rule's run ended with its input (which, at qos 1 and 2, is once its last
/// checkpoint is durable).
fn input_ended(server: &Server, rule: &str) -> Value {
    wait_rule_status(server, rule, |st| {
        st["status"] == json!("stopped") && st["message"] == json!("input ended")
    })
}

/// Waits until quiverd's log at `log` says `what`.
fn logged(log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(log).is_ok_and(|l| l.contains(what)) {
        assert!(
            Instant::now() < deadline,
            "{} never said {what:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bytes of rule `rule`'s input log files under the data directory `dir`.
fn input_logs(dir: &Path, rule: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let logs = dir.join("checkpoints").join(rule);
    std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("{}: {e}", logs.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("input-w"))
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Waits until a table holds at least `want` rows.
fn landed(table: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(table).0 < want {
        assert!(
            Instant::now() < deadline,
            "{table} holds {:?} of {want} rows",
            counts(table)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// JSON lines of the ids `ids`.
fn rows(ids: std::ops::Range<u64>) -> String {
    ids.map(|i| format!("{{\"id\": {i}}}\n")).collect()
}

/// A test directory `name` with a watched directory `in` in it (and `done` to move files to),
/// and a MariaDB table named after `prefix`: (dir, in, done, table).
fn watched_dir(
    name: &str,
    prefix: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let dir = temp_dir(&format!("file-checkpoints-{name}"));
    let (watched, done) = (dir.join("in"), dir.join("done"));
    std::fs::create_dir_all(&watched).unwrap();
    let table = format!("{prefix}_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    (dir, watched, done, table)
}

/// A file profile, a stream over `file` with it, and a qos `qos` rule writing each row's id
/// to a MariaDB table.
fn file_rule(server: &Server, name: &str, file: &Path, profile: Value, qos: u8, table: &str) {
    let (status, body) = server.call(
        "PUT",
        &format!("/metadata/sources/file/confKeys/{name}"),
        Some(profile),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM {name} (id BIGINT) WITH (TYPE="file", DATASOURCE="{}", FORMAT="json", CONF_KEY="{name}")"#,
        file.display()
    ));
    let rule = json!({"id": name, "sql": format!("SELECT id FROM {name}"),
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}],
        "options": {"qos": qos, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
}

/// qos 2, SIGKILL part way into a JSON-lines file and a CSV file (read a row at a time with
/// `sendInterval`, so the kill lands in the middle): the input logs hold where the rows are in
/// the files, not the rows; after the restart each source reads the rows after its last
/// checkpoint again from its file and resumes after the last row its input log holds, and
/// each row is in MariaDB exactly once.
#[test]
fn sigkill_mid_file_at_qos_2_writes_each_row_exactly_once() {
    const ROWS: u64 = 1500;
    let dir = temp_dir("file-checkpoints-kill");
    let suffix = unique().replace(['-', '/'], "_");
    let (lines_table, csv_table) = (format!("fl_{suffix}"), format!("fc_{suffix}"));
    mariadb(&format!(
        "CREATE TABLE {lines_table} (id BIGINT); CREATE TABLE {csv_table} (id BIGINT)"
    ));
    let lines_file = dir.join("in.jsonl");
    let text: String = (0..ROWS).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&lines_file, text).unwrap();
    let csv_file = dir.join("in.csv");
    let text: String = std::iter::once("name,id\n".to_string())
        .chain((0..ROWS).map(|i| format!("\"row, {i}\",{i}\n")))
        .collect();
    std::fs::write(&csv_file, text).unwrap();

    let first = dir.join("first.log");
    let server = Server::start_args(&dir, &[], Some(&first));
    let slow = |file_type: &str| json!({"fileType": file_type, "sendInterval": "1ms"});
    file_rule(
        &server,
        "fq_lines",
        &lines_file,
        slow("lines"),
        2,
        &lines_table,
    );
    file_rule(&server, "fq_csv", &csv_file, slow("csv"), 2, &csv_table);
    // Part way into both files, and past a checkpoint or two.
    let deadline = Instant::now() + Duration::from_secs(60);
    while records_in(&server, "fq_lines") < ROWS / 3 || records_in(&server, "fq_csv") < ROWS / 3 {
        assert!(
            Instant::now() < deadline,
            "the rules never read a third of their files"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let read_before = (
        records_in(&server, "fq_lines"),
        records_in(&server, "fq_csv"),
    );
    server.kill();
    assert!(
        read_before.0 < ROWS && read_before.1 < ROWS,
        "the kill came after the end of the files: {read_before:?}"
    );
    // The file is the log: no row of it was copied into the input logs (a JSON line starts
    // with `{"id": `, a CSV row's name with `row, `), so what the restart replays is read again
    // from the files.
    for (rule, row) in [("fq_lines", &b"{\"id\": "[..]), ("fq_csv", &b"row, "[..])] {
        let logs = input_logs(&dir, rule);
        let bytes: usize = logs.iter().map(|(_, b)| b.len()).sum();
        assert!(bytes > 0, "{rule} logged nothing");
        for (path, log) in logs {
            assert!(
                !log.windows(row.len()).any(|w| w == row),
                "{} holds rows of the file",
                path.display()
            );
        }
    }

    let second = dir.join("second.log");
    let server = Server::start_args(&dir, &[], Some(&second));
    logged(&second, "file source resumes where its input log ends");
    for (rule, table) in [("fq_lines", &lines_table), ("fq_csv", &csv_table)] {
        landed(table, ROWS);
        input_ended(&server, rule);
        assert_eq!(
            counts(table),
            (ROWS, ROWS),
            "{rule}: rows missing or written twice"
        );
        // Read on from where it was, not from the start.
        assert!(
            records_in(&server, rule) < ROWS,
            "{rule} read its file again"
        );
    }
    drop(server);
    mariadb(&format!("DROP TABLE {lines_table}; DROP TABLE {csv_table}"));
}

/// The rules of [`a_file_read_whole_at_qos_1_is_not_read_again`].
const RULES: [&str; 3] = ["fd", "fd_win", "fd_et"];

/// qos 1: a file read to its end (with a window that the end of input closes) is not read
/// again after quiverd stops with SIGTERM, nor after a SIGKILL, nor after its rule is stopped
/// and started; a file replaced by another one at the same path is read afresh.
#[test]
fn a_file_read_whole_at_qos_1_is_not_read_again() {
    const ROWS: u64 = 3000;
    let dir = temp_dir("file-checkpoints-done");
    let suffix = unique().replace(['-', '/'], "_");
    let (rows, windows, timed) = (
        format!("fd_{suffix}"),
        format!("fw_{suffix}"),
        format!("ft_{suffix}"),
    );
    mariadb(&format!(
        "CREATE TABLE {rows} (id BIGINT); CREATE TABLE {windows} (c BIGINT, s BIGINT); \
         CREATE TABLE {timed} (ws BIGINT, c BIGINT)"
    ));
    let file = dir.join("done.jsonl");
    let text: String = (0..ROWS).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&file, text).unwrap();

    let log = dir.join("run0.log");
    let mut server = Server::start_args(&dir, &[], Some(&log));
    file_rule(&server, "fd", &file, json!({}), 1, &rows);
    // A window the end of the file closes: emitted once, with every row.
    let rule = json!({"id": "fd_win",
        "sql": "SELECT count(*) AS c, sum(id) AS s FROM fd GROUP BY TUMBLINGWINDOW(hh, 1)",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": windows}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    // Event time (the id is the time, in ms): the rule's rows go through one worker, and the
    // end of the file releases the last windows.
    server.create_stream(&format!(
        r#"CREATE STREAM fd_et (id BIGINT) WITH (TYPE="file", DATASOURCE="{}", FORMAT="json", CONF_KEY="fd", TIMESTAMP="id")"#,
        file.display()
    ));
    let rule = json!({"id": "fd_et",
        "sql": "SELECT window_start() AS ws, count(*) AS c FROM fd_et GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": timed}}],
        "options": {"qos": 1, "checkpointInterval": 200, "isEventTime": true}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let sum = ROWS * (ROWS - 1) / 2;
    let per_second: String = (0..ROWS / 1000)
        .map(|w| format!("{}\t1000\n", w * 1000))
        .collect();
    let check = |when: &str| {
        assert_eq!(counts(&rows), (ROWS, ROWS), "{when}: rows read again");
        assert_eq!(
            mariadb(&format!("SELECT c, s FROM {windows}")),
            format!("{ROWS}\t{sum}\n"),
            "{when}: the window differs"
        );
        assert_eq!(
            mariadb(&format!("SELECT ws, c FROM {timed} ORDER BY ws")),
            per_second,
            "{when}: the event-time windows differ"
        );
    };
    for rule in RULES {
        input_ended(&server, rule);
    }
    check("first run");

    for (k, how) in ["SIGTERM", "SIGKILL"].into_iter().enumerate() {
        match how {
            "SIGTERM" => server.stop(),
            _ => server.kill(),
        }
        let log = dir.join(format!("run{}.log", k + 1));
        server = Server::start_args(&dir, &[], Some(&log));
        logged(&log, "file source resumes where its input log ends");
        for rule in RULES {
            input_ended(&server, rule);
        }
        check(how);
    }

    for rule in RULES {
        let (status, body) = server.call("POST", &format!("/rules/{rule}/stop"), None);
        assert_eq!(status, 200, "{body}");
        let (status, body) = server.call("POST", &format!("/rules/{rule}/start"), None);
        assert_eq!(status, 200, "{body}");
        input_ended(&server, rule);
    }
    check("stop and start");

    // Another file at the same path is another file: read from its start.
    let tmp = dir.join("done.tmp");
    let text: String = (ROWS..ROWS + 10)
        .map(|i| format!("{{\"id\": {i}}}\n"))
        .collect();
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let (status, body) = server.call("POST", "/rules/fd/restart", None);
    assert_eq!(status, 200, "{body}");
    landed(&rows, ROWS + 10);
    input_ended(&server, "fd");
    assert_eq!(counts(&rows), (ROWS + 10, ROWS + 10));
    logged(&dir.join("run2.log"), "it is read afresh from its start");
    // The same file rewritten in place (same inode, longer): its last event read again differs
    // from what was read, so it too is read from its start, not resumed in the middle.
    let text: String = (ROWS + 10..ROWS + 30)
        .map(|i| format!("{{\"id\": {i}}}\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    let (status, body) = server.call("POST", "/rules/fd/restart", None);
    assert_eq!(status, 200, "{body}");
    landed(&rows, ROWS + 30);
    input_ended(&server, "fd");
    assert_eq!(counts(&rows), (ROWS + 30, ROWS + 30));
    drop(server);
    mariadb(&format!(
        "DROP TABLE {rows}; DROP TABLE {windows}; DROP TABLE {timed}"
    ));
}

/// qos 2 on a watched directory (`interval`, `actionAfterRead` 2): SIGKILL part way into its
/// first file, whose rows the input log keeps (the file is moved once read); after the restart
/// that file is read on from where it was and moved, a file dropped in later is read in a later
/// round, and each row is in MariaDB exactly once.
#[test]
fn a_watched_directory_at_qos_2_resumes_and_moves_each_file_once() {
    const ROWS: u64 = 600;
    let (dir, watched, done, table) = watched_dir("watch", "fw");
    std::fs::write(watched.join("a.jsonl"), rows(0..ROWS)).unwrap();

    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    let profile = json!({"interval": "200ms", "actionAfterRead": 2,
        "moveTo": done.display().to_string(), "sendInterval": "1ms"});
    file_rule(&server, "fw", &watched, profile, 2, &table);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records_in(&server, "fw") < ROWS / 3 {
        assert!(
            Instant::now() < deadline,
            "the rule never read a third of a.jsonl"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    assert!(
        watched.join("a.jsonl").exists(),
        "a.jsonl was moved before it was read whole"
    );
    // A file moved once read will not be there to read again: its rows are in the input log.
    assert!(
        input_logs(&dir, "fw")
            .iter()
            .any(|(_, log)| log.windows(7).any(|w| w == b"{\"id\": ")),
        "the rows of a file moved once read are not in the input log"
    );

    let second = dir.join("second.log");
    let server = Server::start_args(&dir, &[], Some(&second));
    logged(&second, "file source resumes where its input log ends");
    landed(&table, ROWS);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done.join("a.jsonl").exists() {
        assert!(Instant::now() < deadline, "a.jsonl was never moved");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Dropped in whole (renamed from outside the watched directory).
    std::fs::write(dir.join("b.tmp"), rows(ROWS..ROWS + 100)).unwrap();
    std::fs::rename(dir.join("b.tmp"), watched.join("b.jsonl")).unwrap();
    landed(&table, ROWS + 100);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done.join("b.jsonl").exists() {
        assert!(Instant::now() < deadline, "b.jsonl was never moved");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        counts(&table),
        (ROWS + 100, ROWS + 100),
        "rows missing or written twice"
    );
    drop(server);
    mariadb(&format!("DROP TABLE {table}"));
}

/// What a file source cannot resume exactly is refused at qos 1 and 2 with a 400 naming it;
/// the same stream is accepted at qos 0.
#[test]
fn file_options_that_cannot_resume_are_refused_by_name() {
    let dir = temp_dir("file-checkpoints-refused");
    let server = Server::start(&dir);
    std::fs::write(dir.join("a.jsonl"), "{\"id\": 1}\n").unwrap();
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/file/confKeys/side",
        Some(json!({"path": dir.display().to_string(), "parallel": true})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(
        r#"CREATE STREAM side (id BIGINT) WITH (TYPE="file", DATASOURCE="", FORMAT="json", CONF_KEY="side")"#,
    );
    for qos in [1, 2] {
        let rule = json!({"id": format!("side{qos}"), "sql": "SELECT id FROM side",
            "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": "never"}}],
            "options": {"qos": qos}});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 400, "qos {qos}: {body}");
        let message: Value = serde_json::from_str(&body).unwrap();
        let message = message["message"].as_str().unwrap();
        assert!(message.contains("\"parallel\": true"), "qos {qos}: {body}");
    }
    let rule = json!({"id": "side0", "sql": "SELECT id FROM side", "actions": [{"log": {}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
}

/// qos 2, SIGKILL part way into a file, then the unsynced tail of one worker's input log lost
/// (as a power cut would lose it: SIGKILL keeps the page cache): the records after the
/// checkpoint's position on that worker are cut off, while the other worker's log holds later
/// ones. The restart cuts the records after the gap and reads their rows again from the file:
/// each row is in MariaDB exactly once.
#[test]
fn a_lost_input_log_tail_at_qos_2_writes_each_row_exactly_once() {
    use quiver_dataflow::checkpoint::{coordinator::source_part, log::InputLog, store};
    const ROWS: u64 = 1500;
    let dir = temp_dir("file-checkpoints-tail");
    let table = format!("ft_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    let file = dir.join("in.jsonl");
    let text: String = (0..ROWS).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&file, text).unwrap();

    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    let profile = json!({"fileType": "lines", "sendInterval": "1ms"});
    file_rule(&server, "ft", &file, profile, 2, &table);
    // Past a checkpoint and part way into the file.
    let deadline = Instant::now() + Duration::from_secs(60);
    while records_in(&server, "ft") < ROWS / 3 || counts(&table).0 == 0 {
        assert!(Instant::now() < deadline, "the rule never got a third in");
        std::thread::sleep(Duration::from_millis(20));
    }
    let read_before = records_in(&server, "ft");
    server.kill();
    assert!(
        read_before < ROWS,
        "the kill came after the end of the file"
    );

    // Each worker's position at the last checkpoint, and its records after it.
    let logs = dir.join("checkpoints").join("ft");
    let checkpoint = store::CheckpointStore::open(&logs)
        .unwrap()
        .latest()
        .unwrap();
    let positions: Vec<u64> = (0..2)
        .map(|w| {
            let part = &checkpoint.parts[&source_part(w)];
            let state = quiver_dataflow::state::OpState::decode(part).unwrap();
            state.number("position").unwrap() as u64
        })
        .collect();
    let log = InputLog::open(&logs, 2).unwrap();
    let after: Vec<u64> = (0..2).map(|w| log.last_seq(w) - positions[w]).collect();
    assert!(
        after.iter().all(|&n| n > 0),
        "a worker logged nothing after the checkpoint: {after:?}"
    );
    // Worker 0 loses every record after its position.
    log.cut_after(0, positions[0]).unwrap();
    drop(log);

    let second = dir.join("second.log");
    let server = Server::start_args(&dir, &[], Some(&second));
    logged(
        &second,
        "input log records after a gap left by the crash are cut off",
    );
    landed(&table, ROWS);
    input_ended(&server, "ft");
    assert_eq!(
        counts(&table),
        (ROWS, ROWS),
        "rows missing or written twice"
    );
    drop(server);
    mariadb(&format!("DROP TABLE {table}"));
}

/// qos 2, a watched directory whose files are moved once read: SIGKILL right after the first
/// file was moved, before a checkpoint counts its last rows. Those rows are read from the
/// input log (the file is gone from the directory), the second file is read on from where it
/// was, and each row is in MariaDB exactly once.
#[test]
fn a_sigkill_after_a_file_was_moved_at_qos_2_writes_each_row_exactly_once() {
    const A: u64 = 300;
    const B: u64 = 1500;
    let (dir, watched, done, table) = watched_dir("moved", "fm");
    std::fs::write(watched.join("a.jsonl"), rows(0..A)).unwrap();
    std::fs::write(watched.join("b.jsonl"), rows(A..A + B)).unwrap();

    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    let profile = json!({"actionAfterRead": 2, "moveTo": done.display().to_string(),
        "sendInterval": "1ms"});
    file_rule(&server, "fm", &watched, profile, 2, &table);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done.join("a.jsonl").exists() {
        assert!(Instant::now() < deadline, "a.jsonl was never moved");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    assert!(
        watched.join("b.jsonl").exists(),
        "b.jsonl was read whole before the kill"
    );

    let second = dir.join("second.log");
    let server = Server::start_args(&dir, &[], Some(&second));
    logged(&second, "file source resumes where its input log ends");
    landed(&table, A + B);
    input_ended(&server, "fm");
    assert!(done.join("b.jsonl").exists(), "b.jsonl was not moved");
    assert_eq!(
        counts(&table),
        (A + B, A + B),
        "rows missing or written twice"
    );
    drop(server);
    mariadb(&format!("DROP TABLE {table}"));
}
