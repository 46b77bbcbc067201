//! quiverd as a cluster of two or three real processes on loopback (`--cluster-hosts`,
//! `--process`): process 0 serves the REST API and reads the stream; a keyed window rule
//! created there runs on every process's workers, and its results are what one process
//! computes. An MQTT stream is read by every process, each taking a share through a shared
//! subscription. A file read on the leader ends the rule in every process; a file that can be
//! split is read in byte ranges by every process.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cluster::{
    Follower, counter, publish_to_every_process, pushed_rows_reach_every_process,
    says_the_cluster_stopped, source_in, wait_running, window_in, window_rule_on_pushed_rows,
    windows_add_up,
};
use common::mqtt::{TestClient, free_port, unique};
use common::{Server, mariadb, temp_dir, wait_rule_status};
use serde_json::{Value, json};

/// Keys of the input: enough that both processes' workers own some.
const KEYS: usize = 8;
/// Rows of the input, 100 ms apart in `ts`: four windows of one second.
const ROWS: usize = 40;

/// quiverd processes of one worker each: the leader (with the REST API) and the followers.
struct Cluster {
    leader: Server,
    followers: Vec<Follower>,
    /// Where the processes keep their data and logs.
    dir: PathBuf,
    /// Each process's flags, by index.
    args: Vec<Vec<String>>,
}

impl Cluster {
    /// Starts process 0 again, with its data dir.
    fn spawn_leader(&self) -> Server {
        spawn_leader(&self.dir, &self.args[0])
    }

    /// Starts follower `p` again, with its data dir.
    fn spawn_follower(&self, p: usize) -> Follower {
        spawn_follower(&self.dir, &self.args[p], p)
    }
}

/// Starts process 0 with its data dir under `dir`; returns before it serves (it waits for
/// every other process to connect first).
fn spawn_leader(dir: &Path, args: &[String]) -> Server {
    let log = dir.join(format!("p0-{}.log", unique()));
    Server::spawn(&dir.join("p0"), args, &[], Some(&log))
}

/// Starts follower `p` with its data dir under `dir`, in a working directory of its own that
/// lies deeper than the test's: a relative path that climbs from the test's (the leader's)
/// working directory to a file names nothing from the follower's.
fn spawn_follower(dir: &Path, args: &[String], p: usize) -> Follower {
    let log = std::fs::File::create(dir.join(format!("p{p}-{}.log", unique()))).expect("log file");
    let depth = std::env::current_dir().expect("cwd").components().count();
    let mut cwd = dir.join(format!("p{p}-cwd"));
    while cwd.components().count() <= depth {
        cwd.push("d");
    }
    std::fs::create_dir_all(&cwd).expect("the follower's working directory");
    let follower = Command::new(env!("CARGO_BIN_EXE_quiverd"))
        .current_dir(&cwd)
        .arg("--data-dir")
        .arg(dir.join(format!("p{p}")))
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("the follower starts");
    Follower(follower)
}

/// A hosts file of `processes` free loopback ports.
fn hosts_file(dir: &Path, processes: usize) -> PathBuf {
    let path = dir.join("hosts");
    let mut text = "# the cluster's processes, in order\n".to_string();
    for _ in 0..processes {
        text.push_str(&format!("127.0.0.1:{}\n", free_port()));
    }
    std::fs::write(&path, text).expect("hosts file");
    path
}

/// Starts a cluster of two processes; returns once the leader answers (it waits for the
/// follower to connect before it serves).
fn cluster(name: &str) -> Cluster {
    cluster_of(name, 2, None)
}

/// A cluster of two processes whose `--config` file (the same for both) holds `profiles`.
fn cluster_with(name: &str, profiles: Option<&str>) -> Cluster {
    cluster_of(name, 2, profiles)
}

/// The arguments of process `p` of the cluster in `hosts`, 1 worker, with `config` as its
/// `--config` file if any.
fn process_args(hosts: &Path, p: usize, config: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--cluster-hosts".to_string(),
        hosts.display().to_string(),
        "--process".to_string(),
        p.to_string(),
        "--workers".to_string(),
        "1".to_string(),
    ];
    if let Some(path) = config {
        args.extend(["--config".to_string(), path.display().to_string()]);
    }
    args
}

/// A cluster of `processes` processes whose `--config` file (the same for all) holds
/// `profiles`.
fn cluster_of(name: &str, processes: usize, profiles: Option<&str>) -> Cluster {
    let dir = temp_dir(name);
    let hosts = hosts_file(&dir, processes);
    let config = profiles.map(|text| {
        let path = dir.join("profiles.yaml");
        std::fs::write(&path, text).expect("config file");
        path
    });
    let args: Vec<Vec<String>> = (0..processes)
        .map(|p| process_args(&hosts, p, config.as_deref()))
        .collect();
    let mut leader = spawn_leader(&dir, &args[0]);
    let followers = (1..processes)
        .map(|p| spawn_follower(&dir, &args[p], p))
        .collect();
    leader.wait_ready();
    Cluster {
        leader,
        followers,
        dir,
        args,
    }
}

/// The input: `ROWS` rows over `KEYS` keys in time order, then one row far later that moves
/// the watermark past every window.
fn input() -> Vec<Value> {
    let mut rows: Vec<Value> = (0..ROWS)
        .map(|i| json!({"k": format!("k{}", i % KEYS), "v": i, "ts": i * 100}))
        .collect();
    rows.push(json!({"k": "end", "v": 0, "ts": 60_000}));
    rows
}

/// What one process computes: per key and window start, the count and the sum of `v`.
fn expected() -> BTreeMap<(String, i64), (i64, i64)> {
    let mut out = BTreeMap::new();
    for i in 0..ROWS {
        let window = (i as i64 * 100) / 1000 * 1000;
        let e = out
            .entry((format!("k{}", i % KEYS), window))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += i as i64;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_window_rule_runs_on_both_processes_and_emits_what_one_process_emits() {
    let cluster = tokio::task::block_in_place(|| cluster("cluster-window"));
    let server = &cluster.leader;
    let path = format!("/cluster-{}", unique());
    let out = format!("quiver-cluster/{}/out", unique());
    tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM readings (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="{path}", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#
        ))
    });
    let mut subscriber = TestClient::start(1883, Some(out.clone()));
    subscriber.subscribed().await;
    let rule = event_time_windows("windows", &out);
    let window_rule = rule.clone();
    let (status, body) = tokio::task::block_in_place(|| server.call("POST", "/rules", Some(rule)));
    assert_eq!(status, 201, "{body}");
    // The plan spreads the window's groups over both processes' workers.
    let (_, plan) =
        tokio::task::block_in_place(|| server.call("GET", "/rules/windows/explain", None));
    assert!(plan.contains("Window by key"), "{plan}");

    // The same rows in processing time: the leader's workers read them, and the follower's
    // sources, which read nothing, keep its windows' time moving so they close.
    let mut now_subscriber = counting_rule(server, "now", "readings").await;

    for row in input() {
        let (status, body) = tokio::task::block_in_place(|| server.push(&path, &row.to_string()));
        assert_eq!(status, 200, "{body}");
    }
    let want = expected();
    assert_eq!(window_results(&mut subscriber, want.len()).await, want);
    // However the wall clock cut the windows, they add up to the input, per key.
    let mut want_now: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in input() {
        let e = want_now
            .entry(row["k"].as_str().expect("a key").to_string())
            .or_default();
        *e = (e.0 + 1, e.1 + row["v"].as_i64().expect("a value"));
    }
    windows_add_up(&mut now_subscriber, &want_now).await;

    // Both processes' windows took rows: the status on process 0 answers for the cluster.
    // Each process's counters (`process_<p>_op_3_window_records_in_total`), or the rule's
    // (`op_3_window_0_records_in_total`).
    let window_in = |st: &Value, prefix: &str| -> u64 {
        let suffix = if prefix == "op_" {
            "_window_0_records_in_total"
        } else {
            "_window_records_in_total"
        };
        counter(st, prefix, suffix)
    };
    let rows = (ROWS + 1) as u64;
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "windows", |st| {
            window_in(st, "process_0_") + window_in(st, "process_1_") == rows
        })
    });
    assert_eq!(st["status"], json!("running"), "{st}");
    assert!(window_in(&st, "process_0_") > 0, "{st}");
    assert!(
        window_in(&st, "process_1_") > 0,
        "no row reached process 1: {st}"
    );
    // The rule's own counters are summed over the processes.
    assert_eq!(window_in(&st, "op_"), rows, "{st}");

    // A stop and a delete reach both processes, and a new run builds its dataflow on both
    // again: the rule made again under its id computes the same windows.
    tokio::task::block_in_place(|| {
        assert_eq!(server.call("POST", "/rules/windows/stop", None).0, 200);
        assert_eq!(server.call("DELETE", "/rules/windows", None).0, 200);
        assert_eq!(server.call("DELETE", "/rules/now", None).0, 200);
        assert_eq!(server.call("POST", "/rules", Some(window_rule)).0, 201);
        for row in input() {
            assert_eq!(server.push(&path, &row.to_string()).0, 200);
        }
    });
    assert_eq!(window_results(&mut subscriber, want.len()).await, want);
    tokio::task::block_in_place(|| {
        assert_eq!(server.call("DELETE", "/rules/windows", None).0, 200);
        assert_eq!(server.call("DELETE", "/streams/readings", None).0, 200);
    });
}

/// Rule `id`: per key `k` of stream `readings`, the count `c` and sum `total` of `v` with the
/// window's start `ws`, in event-time windows of one second, sent to MQTT topic `out` a row
/// at a time.
fn event_time_windows(id: &str, out: &str) -> Value {
    json!({
        "id": id,
        "sql": "SELECT k, count(*) AS c, sum(v) AS total, window_start() AS ws FROM readings \
                GROUP BY k, TUMBLINGWINDOW(ss, 1)",
        "options": {"isEventTime": true, "lateTolerance": 0},
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": out, "sendSingle": true}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_stream_is_read_in_shares_by_every_process() {
    // One client id in the stream's profile: each process connects under its own variant of
    // it, or the broker would drop one client whenever the other connects.
    let profiles = format!(
        "mqtt:\n  fixed:\n    clientid: quiver-share-{}\n  bad:\n    qos: 5\n",
        unique()
    );
    let cluster = tokio::task::block_in_place(|| cluster_with("cluster-share", Some(&profiles)));
    let server = &cluster.leader;
    let topic = format!("quiver-cluster/{}/in", unique());
    tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM shared_in (k STRING, v BIGINT) WITH (DATASOURCE="{topic}", TYPE="mqtt", FORMAT="json", CONF_KEY="fixed")"#
        ))
    });
    // A bad profile, which every process would fail to connect with, is refused before any
    // process builds the rule.
    let (status, body) = tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM bad_in (k STRING, v BIGINT) WITH (DATASOURCE="{topic}", TYPE="mqtt", FORMAT="json", CONF_KEY="bad")"#
        ));
        let rule = json!({"id": "bad", "sql": "SELECT k FROM bad_in", "actions": [{"log": {}}]});
        server.json("POST", "/rules", Some(rule))
    });
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("qos"), "{body}");
    let mut subscriber = counting_rule(server, "shares", "shared_in").await;

    // Rows in rounds until both processes' sources took some.
    let publisher = TestClient::start(1883, None);
    let (want, st, probes) =
        publish_to_every_process(server, "shares", &publisher, &topic, 2, KEYS).await;
    let sent: u64 = want.values().map(|(c, _)| *c as u64).sum::<u64>() + probes;
    assert_eq!(source_in(&st, 0) + source_in(&st, 1), sent, "{st}");
    // The rule's own source counter is summed over the processes.
    let summed: u64 = st
        .as_object()
        .expect("a status object")
        .iter()
        .filter(|(k, _)| k.starts_with("source_") && k.ends_with("_records_in_total"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    assert_eq!(summed, sent, "{st}");

    // However the processes split the rows and the wall clock cut the windows, the windows
    // add up to the input, per key, and no row is counted twice.
    windows_add_up(&mut subscriber, &want).await;
    tokio::task::block_in_place(|| {
        assert_eq!(server.call("DELETE", "/rules/shares", None).0, 200);
        assert_eq!(server.call("DELETE", "/streams/shared_in", None).0, 200);
    });
}

/// A file stream that cannot be split (its profile drops its last line, which only a whole
/// read finds) is read on the leader alone. When the file ends, the leader tells the other
/// process, whose share of the dataflow ends too: an event-time window rule emits what one
/// process computes (its last window only the end of input closes), a processing-time one
/// adds up to the input, and both stop with "input ended". (The processing-time rule reads
/// on any worker: without the leader's word, the follower's workers would hold its input
/// open, and it would never stop.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_on_the_leader_ends_the_rule_in_every_process() {
    // In every process's `--config`: whether a file is split is decided in each process.
    let profiles = "file:\n  tail:\n    fileType: lines\n    ignoreEndLines: 1\n";
    let cluster = tokio::task::block_in_place(|| cluster_with("cluster-file", Some(profiles)));
    let server = &cluster.leader;
    let file = temp_dir("cluster-file-input").join("readings.jsonl");
    // No far-later row: only the end of input closes the last window. The last line, which
    // the profile drops, would be a bad row.
    let text: String = input()
        .iter()
        .take(ROWS)
        .map(|row| format!("{row}\n"))
        .chain(std::iter::once("dropped\n".to_string()))
        .collect();
    std::fs::write(&file, text).expect("input file");
    let out = format!("quiver-cluster/{}/file", unique());
    let mut subscriber = TestClient::start(1883, Some(out.clone()));
    subscriber.subscribed().await;
    let rule = event_time_windows("file-windows", &out);
    tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM readings (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json", CONF_KEY="tail", TIMESTAMP="ts")"#,
            file.display()
        ));
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    });
    let mut now_subscriber = counting_rule(server, "file-now", "readings").await;
    let want = expected();
    assert_eq!(window_results(&mut subscriber, want.len()).await, want);
    let mut want_now: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in input().iter().take(ROWS) {
        let e = want_now
            .entry(row["k"].as_str().expect("a key").to_string())
            .or_default();
        *e = (e.0 + 1, e.1 + row["v"].as_i64().expect("a value"));
    }
    windows_add_up(&mut now_subscriber, &want_now).await;
    for rule in ["file-windows", "file-now"] {
        let st = tokio::task::block_in_place(|| {
            wait_rule_status(server, rule, |st| st["status"] != json!("running"))
        });
        assert_eq!(st["status"], json!("stopped"), "{rule}: {st}");
        assert_eq!(st["message"], json!("input ended"), "{rule}: {st}");
        assert!(
            window_in(&st, 1) > 0,
            "{rule}: no row reached process 1: {st}"
        );
        assert_eq!(
            source_in(&st, 1),
            0,
            "{rule}: process 1 read the file: {st}"
        );
    }
}

/// Lines of the file [`a_file_is_read_in_byte_ranges_by_every_process`] reads: `{"id", "pad"}`
/// of varied lengths, the second half beginning exactly at the middle byte, where process 1's
/// range begins (a split off by one there loses or repeats that line).
fn lines_split_at_a_line(n: usize) -> String {
    let mut lines: Vec<String> = (0..n)
        .map(|i| json!({"id": i, "pad": "p".repeat(i * 37 % 91)}).to_string())
        .collect();
    let half = |lines: &[String]| lines.iter().map(|l| l.len() + 1).sum::<usize>();
    let (first, second) = (half(&lines[..n / 2]), half(&lines[n / 2..]));
    // The shorter half's last line takes the difference in its pad.
    let longer = |line: &str, by: usize| {
        let mut row: Value = serde_json::from_str(line).expect("a row");
        let pad = format!("{}{}", row["pad"].as_str().expect("a pad"), "q".repeat(by));
        row["pad"] = json!(pad);
        row.to_string()
    };
    if first > second {
        lines[n - 1] = longer(&lines[n - 1], first - second);
    } else {
        lines[n / 2 - 1] = longer(&lines[n / 2 - 1], second - first);
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (before, after) = text.split_at(text.len() / 2);
    assert!(before.ends_with('\n') && after.starts_with(&format!("{{\"id\":{},", n / 2)));
    text
}

/// A CSV file of `n` records (`id`, a `note` quoted over two lines), its middle byte inside a
/// quoted value that holds a line end after it: a split at the first line end after the middle
/// would cut a record in two.
fn csv_split_in_a_quoted_value(n: usize) -> String {
    for extra in 0..200 {
        let mut text = "id,note\n".to_string();
        // Where each line end inside quotes is.
        let mut inner = Vec::new();
        for i in 0..n {
            let pad = "n".repeat(i * 13 % 29 + if i == 0 { extra } else { 0 });
            text.push_str(&format!("{i},\"a {pad}"));
            inner.push(text.len());
            text.push_str(&format!("\nb, \"\"{i}\"\"\"\n"));
        }
        let middle = text.len() / 2;
        let first_end = middle - 1 + text[middle - 1..].find('\n').expect("a line end");
        if inner.contains(&first_end) {
            return text;
        }
    }
    unreachable!("some padding puts the middle in a quoted value")
}

/// A folder of `files` gzip files of JSON lines holding ids `0..n` between them; returns the
/// folder.
fn gzip_folder(dir: &Path, files: usize, n: usize) -> PathBuf {
    let folder = dir.join("gz");
    std::fs::create_dir_all(&folder).expect("input folder");
    for f in 0..files {
        let file = folder.join(format!("part-{f}.jsonl"));
        let text: String = (f * n / files..(f + 1) * n / files)
            .map(|id| format!("{}\n", json!({"id": id, "pad": "p".repeat(id % 23)})))
            .collect();
        std::fs::write(&file, text).expect("input file");
        let gzip = std::process::Command::new("gzip")
            .arg("-f")
            .arg(&file)
            .status()
            .expect("gzip (scripts/test.sh installs it)");
        assert!(gzip.success(), "gzip {}", file.display());
    }
    folder
}

/// Every process reads its byte range of a file (lines of varied lengths; CSV with quoted
/// values over two lines), and the whole files of a folder of gzip files that its files' names
/// pick, for rules any worker may take rows of: a stateless rule writes each row once (MariaDB
/// holds every id once), a processing-time window counts every row once, both processes'
/// sources read rows, and the rules stop with "input ended", every process's source having
/// ended by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_read_in_byte_ranges_by_every_process() {
    const N: usize = 10_000;
    // In every process's `--config`: the gzip folder's profile.
    let profiles = "file:\n  gz:\n    decompression: gzip\n";
    let cluster =
        tokio::task::block_in_place(|| cluster_with("cluster-file-ranges", Some(profiles)));
    let server = &cluster.leader;
    let dir = temp_dir("cluster-file-ranges-input");
    let suffix = unique().replace(['-', '/'], "_");
    let write = |name: &str, text: String| {
        let file = dir.join(name);
        std::fs::write(&file, text).expect("input file");
        file
    };
    for (stream, path, columns, conf) in [
        (
            "lines_in",
            write("rows.jsonl", lines_split_at_a_line(N)),
            "id BIGINT, pad STRING",
            "",
        ),
        (
            "csv_in",
            write("rows.csv", csv_split_in_a_quoted_value(N)),
            "id BIGINT, note STRING",
            "",
        ),
        // Eight files, read whole: the names spread them over both processes.
        (
            "gz_in",
            gzip_folder(&dir, 8, N),
            "id BIGINT, pad STRING",
            r#", CONF_KEY="gz""#,
        ),
    ] {
        let table = format!("{stream}_{suffix}");
        mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
        let out = format!("quiver-cluster/{}/{stream}", unique());
        let mut subscriber = TestClient::start(1883, Some(out.clone()));
        subscriber.subscribed().await;
        let (ids, counts) = (format!("{stream}_ids"), format!("{stream}_count"));
        tokio::task::block_in_place(|| {
            server.create_stream(&format!(
                r#"CREATE STREAM {stream} ({columns}) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json"{conf})"#,
                path.display()
            ));
            let rule = json!({"id": ids, "sql": format!("SELECT id FROM {stream}"),
                "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}]});
            let (status, body) = server.call("POST", "/rules", Some(rule));
            assert_eq!(status, 201, "{body}");
            let rule = json!({"id": counts,
                "sql": format!("SELECT count(*) AS c FROM {stream} GROUP BY TUMBLINGWINDOW(ss, 1)"),
                "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": out, "sendSingle": true}}]});
            let (status, body) = server.call("POST", "/rules", Some(rule));
            assert_eq!(status, 201, "{body}");
        });

        // However the wall clock cut the windows, they count every row once.
        let mut counted = 0;
        while counted < N as u64 {
            let p = subscriber.next_publish().await;
            let row: Value = serde_json::from_slice(&p.payload).expect("a JSON row");
            counted += row["c"].as_u64().expect("a count");
            assert!(counted <= N as u64, "{stream}: {counted} rows counted");
        }
        for rule in [&ids, &counts] {
            let st = tokio::task::block_in_place(|| {
                wait_rule_status(server, rule, |st| {
                    st["status"] != json!("running")
                        && source_in(st, 0) + source_in(st, 1) == N as u64
                })
            });
            assert_eq!(st["status"], json!("stopped"), "{rule}: {st}");
            assert_eq!(st["message"], json!("input ended"), "{rule}: {st}");
            for p in 0..2 {
                assert!(
                    source_in(&st, p) > 0,
                    "{rule}: process {p} read nothing: {st}"
                );
            }
        }
        let extra = tokio::time::timeout(
            std::time::Duration::from_millis(1500),
            subscriber.next_publish(),
        )
        .await;
        assert!(
            extra.is_err(),
            "{stream}: a window after the last: {extra:?}"
        );

        // Each process's sink writes its own rows: once both wrote them all, every id is
        // there once.
        let want = ids_summary(N as u64, N as u64);
        let got = id_summary_becomes(&table, &want).await;
        assert_eq!(got, want, "{stream}: rows, distinct ids, min, max");
    }
}

/// A file appended to while the processes read it: every process cuts its range of the length
/// the leader listed, so the rows read are the file's first rows, each once (no gap between
/// two processes' ranges, no line read by both), whatever was appended after the leader
/// listed it. When each process took its own length, the two lengths differed by what was
/// appended in between, and the lines between the two cuts were lost or read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_appended_to_while_read_is_read_up_to_the_leaders_length() {
    const FIRST: usize = 20_000;
    let cluster = tokio::task::block_in_place(|| cluster("cluster-file-growing"));
    let server = &cluster.leader;
    let file = temp_dir("cluster-file-growing-input").join("rows.jsonl");
    let line = |id: usize| format!("{}\n", json!({"id": id, "pad": "p".repeat(id % 17)}));
    std::fs::write(&file, (0..FIRST).map(line).collect::<String>()).expect("input file");
    // Appends whole lines (one write each) until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .expect("input file");
            let mut next = FIRST;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let lines: String = (next..next + 50).map(line).collect();
                out.write_all(lines.as_bytes()).expect("append");
                next += 50;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            next
        })
    };
    let table = format!("growing_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    let st = tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM growing (id BIGINT, pad STRING) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json")"#,
            file.display()
        ));
        let rule = json!({"id": "growing_ids", "sql": "SELECT id FROM growing",
            "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}]});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
        wait_rule_status(server, "growing_ids", |st| st["status"] != json!("running"))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = appender.join().expect("appender") - FIRST;
    assert_eq!(st["status"], json!("stopped"), "{st}");
    assert_eq!(st["message"], json!("input ended"), "{st}");
    // (A follower's counters reach the leader's status within a second of its own.)
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "growing_ids", |st| {
            source_in(st, 0) > 0 && source_in(st, 1) > 0
        })
    });
    assert!(source_in(&st, 0) > 0 && source_in(&st, 1) > 0, "{st}");
    // Both processes' sinks write what they read: once the table stops growing, every row
    // read is there once, ids 0.. without a gap or a repeat.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut got = id_summary(&table);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let again = id_summary(&table);
        let settled = again == got && rows_in(&got) >= FIRST as u64;
        got = again;
        if settled || std::time::Instant::now() > deadline {
            break;
        }
    }
    let rows = rows_in(&got);
    assert!(
        rows >= FIRST as u64,
        "{rows} rows of the {FIRST} written before the rule ({appended} appended)"
    );
    let want = ids_summary(rows, rows);
    assert_eq!(
        got, want,
        "rows, distinct ids, min, max ({appended} appended while read)"
    );
}

/// `restartStrategy` in a cluster: a rule whose file is not there yet fails on the leader,
/// which schedules a restart and, when it is due, restarts the rule in every process through
/// the sequence; once the file exists, a restart reads it, every process its range, and every
/// row reaches MariaDB once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rule_is_restarted_in_every_process_by_its_restart_strategy() {
    const N: usize = 2_000;
    let cluster = tokio::task::block_in_place(|| cluster("cluster-restart"));
    let server = &cluster.leader;
    let file = temp_dir("cluster-restart-input").join("late.jsonl");
    let table = format!("late_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    let st = tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM late (id BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json")"#,
            file.display()
        ));
        let rule = json!({"id": "late_ids", "sql": "SELECT id FROM late",
            "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}],
            "options": {"restartStrategy": {"attempts": 50, "delay": 300, "multiplier": 1, "jitterFactor": 0}}});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
        wait_rule_status(server, "late_ids", |st| {
            st["nextStartTimestamp"].as_i64() > Some(0)
        })
    });
    assert_eq!(st["status"], json!("stopped by error"), "{st}");
    let message = st["message"].as_str().unwrap_or_default();
    assert!(message.contains("cannot open"), "{st}");
    assert!(message.contains("of 50 due at nextStartTimestamp"), "{st}");

    // Once the file is there, a restart reads it in every process.
    let text: String = (0..N)
        .map(|id| format!("{}\n", json!({"id": id})))
        .collect();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).expect("input file");
    std::fs::rename(&tmp, &file).expect("input file");
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "late_ids", |st| {
            st["status"] == json!("stopped") && source_in(st, 0) + source_in(st, 1) == N as u64
        })
    });
    assert_eq!(st["message"], json!("input ended"), "{st}");
    assert_eq!(st["nextStartTimestamp"], json!(0), "{st}");
    assert!(source_in(&st, 0) > 0 && source_in(&st, 1) > 0, "{st}");
    let want = ids_summary(N as u64, N as u64);
    let got = id_summary_becomes(&table, &want).await;
    assert_eq!(got, want, "rows, distinct ids, min, max");
}

/// A scheduled rule (`cron`, `duration`) in a cluster: the leader's schedule starts a run in
/// every process at each fire, each run reads the file in both processes (every row once per
/// run), and a stop by hand ends the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rule_runs_in_every_process_at_each_fire() {
    const N: usize = 1_000;
    let cluster = tokio::task::block_in_place(|| cluster("cluster-schedule"));
    let server = &cluster.leader;
    let file = temp_dir("cluster-schedule-input").join("rows.jsonl");
    let text: String = (0..N)
        .map(|id| format!("{}\n", json!({"id": id})))
        .collect();
    std::fs::write(&file, text).expect("input file");
    let table = format!("sched_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM sched (id BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json")"#,
            file.display()
        ));
        let rule = json!({"id": "sched_ids", "sql": "SELECT id FROM sched",
            "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}],
            "options": {"cron": "@every 4s", "duration": "2500ms"}});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    });
    // Two fires or more, and the rule waiting for its next one with whole runs written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = rows_in(&id_summary(&table));
        let (_, st) =
            tokio::task::block_in_place(|| server.json("GET", "/rules/sched_ids/status", None));
        if rows >= 2 * N as u64
            && rows.is_multiple_of(N as u64)
            && st["status"] == json!("stopped: waiting for next schedule.")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two scheduled runs did not write: {} ({st})",
            id_summary(&table)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "sched_ids", |st| {
            source_in(st, 0) > 0 && source_in(st, 1) > 0
        })
    });
    assert!(source_in(&st, 0) > 0 && source_in(&st, 1) > 0, "{st}");
    // A stop by hand ends the schedule: over more than a period, no more rows.
    tokio::task::block_in_place(|| {
        let (status, body) = server.call("POST", "/rules/sched_ids/stop", None);
        assert_eq!(status, 200, "{body}");
    });
    let stopped = id_summary(&table);
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let later = id_summary(&table);
    assert_eq!(later, stopped, "rows written after the stop");
    let runs = rows_in(&later) / N as u64;
    assert_eq!(
        later,
        ids_summary(runs * N as u64, N as u64),
        "every row once per run"
    );
}

/// A follower that cannot read its range of a file (the file is not at that path on its
/// machine) makes the rule stop by error on the leader, naming the process, instead of ending
/// well with the leader's rows only.
#[test]
fn a_file_a_follower_cannot_read_stops_the_rule_by_error_on_the_leader() {
    let cluster = cluster("cluster-file-missing");
    let server = &cluster.leader;
    let file = temp_dir("cluster-file-missing-input").join("rows.jsonl");
    let text: String = (0..1000)
        .map(|i| format!("{}\n", json!({"k": format!("k{}", i % 7), "v": i})))
        .collect();
    std::fs::write(&file, text).expect("input file");
    // Relative to the leader's working directory (the test's); from the follower's, which lies
    // deeper, the same path names nothing.
    let cwd = std::env::current_dir().expect("cwd");
    let ups = cwd.components().count() - 1;
    let relative = format!(
        "{}{}",
        "../".repeat(ups),
        file.strip_prefix("/").expect("an absolute path").display()
    );
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/file/confKeys/lines",
        Some(json!({"fileType": "lines"})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM rows (k STRING, v BIGINT) WITH (DATASOURCE="{relative}", TYPE="file", FORMAT="json", CONF_KEY="lines")"#
    ));
    let rule = json!({"id": "rows", "sql": "SELECT k, v FROM rows", "actions": [{"log": {}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let st = status_once_stopped_by_error(server, "rows");
    assert_eq!(st["status"], json!("stopped by error"), "{st}");
    let message = st["message"].as_str().unwrap_or_default();
    assert!(message.contains("process 1"), "{st}");
}

/// A profile made over REST on the leader reaches every process (a follower keeps no catalog):
/// a `.json` file the profile says holds lines is split by both processes alike, and every
/// row is read once.
#[test]
fn a_profile_made_over_rest_reaches_every_process() {
    let cluster = cluster("cluster-file-profile");
    let server = &cluster.leader;
    // A `.json` name: without the profile its file type is a JSON document, read whole.
    let file = temp_dir("cluster-file-profile-input").join("rows.json");
    write_rows(&file, 1000);
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/file/confKeys/made_over_rest",
        Some(json!({"fileType": "lines"})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM rows (k STRING, v BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json", CONF_KEY="made_over_rest")"#,
        file.display()
    ));
    let rule = json!({"id": "rows", "sql": "SELECT k, v FROM rows", "actions": [{"log": {}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    // A follower's counters reach the leader a little after the run ends there.
    let st = wait_rule_status(server, "rows", |st| {
        st["status"] != json!("running") && source_in(st, 0) + source_in(st, 1) >= 1000
    });
    assert_eq!(st["status"], json!("stopped"), "{st}");
    assert_eq!(source_in(&st, 0) + source_in(&st, 1), 1000, "{st}");
    assert!(source_in(&st, 1) > 0, "process 1 read nothing: {st}");
}

/// Processes whose `--config` files give a file stream different profiles make the rule stop
/// by error, saying so, instead of leaving a part unread (or read twice) and workers waiting
/// for ever: the leader splits the file as lines while the follower reads it as a JSON
/// document (each reads it its own way), and the leader reads the file whole (its profile
/// drops the last line) while the follower would split it (its source waits for a listing
/// the leader never sends, until the leader's input ends).
#[test]
fn processes_that_read_a_file_differently_stop_the_rule_by_error() {
    for (case, profile, name) in [
        ("lines", "fileType: lines", "rows.json"),
        ("whole", "ignoreEndLines: 1", "rows.jsonl"),
    ] {
        let dir = temp_dir(&format!("cluster-file-disagree-{case}"));
        let hosts = hosts_file(&dir, 2);
        let leader_config = dir.join("leader.yaml");
        std::fs::write(
            &leader_config,
            format!("file:\n  differs:\n    {profile}\n"),
        )
        .expect("config");
        let mut server = spawn_leader(&dir, &process_args(&hosts, 0, Some(&leader_config)));
        let _follower = spawn_follower(&dir, &process_args(&hosts, 1, None), 1);
        server.wait_ready();
        let file = temp_dir(&format!("cluster-file-disagree-input-{case}")).join(name);
        write_rows(&file, 1000);
        server.create_stream(&format!(
            r#"CREATE STREAM rows (k STRING, v BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json", CONF_KEY="differs")"#,
            file.display()
        ));
        let rule = json!({"id": "rows", "sql": "SELECT k, v FROM rows", "actions": [{"log": {}}]});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{case}: {body}");
        let st = status_once_stopped_by_error(&server, "rows");
        assert_eq!(st["status"], json!("stopped by error"), "{case}: {st}");
        let message = st["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("process 1") && message.contains("differently"),
            "{case}: {st}"
        );
        // ... and the run ends: every process's input closed (the follower's source does not
        // wait for ever).
        let st = wait_rule_status(&server, "rows", |st| {
            st["lastStopTimestamp"].as_i64() > Some(0)
        });
        assert_eq!(st["status"], json!("stopped by error"), "{case}: {st}");
    }
}

/// Rule `id`'s status once it is `stopped by error`, or after 20 s (the caller asserts it):
/// a follower's report of a failure and the run's end travel apart, so the error may come a
/// little after the run stopped.
fn status_once_stopped_by_error(server: &Server, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, st) = server.json("GET", &format!("/rules/{id}/status"), None);
        if st["status"] == json!("stopped by error") || std::time::Instant::now() > deadline {
            return st;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `COUNT(*)`, `COUNT(DISTINCT id)`, `MIN(id)` and `MAX(id)` of `table` as the mariadb client
/// prints them.
fn id_summary(table: &str) -> String {
    mariadb(&format!(
        "SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM {table}"
    ))
}

/// The [`id_summary`] of a table holding ids `0..n`, `rows` rows in all.
fn ids_summary(rows: u64, n: u64) -> String {
    format!("{rows}\t{n}\t0\t{}\n", n - 1)
}

/// The row count of an [`id_summary`].
fn rows_in(summary: &str) -> u64 {
    summary
        .split('\t')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// Waits up to 20 s for `table`'s [`id_summary`] to be `want` (the processes' sinks write
/// apart); the last one read.
async fn id_summary_becomes(table: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = id_summary(table);
    while got != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        got = id_summary(table);
    }
    got
}

/// Writes `n` JSON lines `{"k": ..., "v": i}` to `file`.
fn write_rows(file: &Path, n: usize) {
    let text: String = (0..n)
        .map(|i| format!("{}\n", json!({"k": format!("k{}", i % 7), "v": i})))
        .collect();
    std::fs::write(file, text).expect("input file");
}

/// Three processes. A keyed event-time window over MQTT (read on the leader, its groups spread
/// over every process's workers) emits exactly what one process computes; a processing-time
/// window over another topic, read in shares by all three, adds up to its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_emit_what_one_process_emits() {
    let cluster = tokio::task::block_in_place(|| cluster_of("cluster-three", 3, None));
    let server = &cluster.leader;
    let (topic, shared_topic) = (
        format!("quiver-cluster/{}/in", unique()),
        format!("quiver-cluster/{}/shared", unique()),
    );
    let out = format!("quiver-cluster/{}/out", unique());
    let mut subscriber = TestClient::start(1883, Some(out.clone()));
    subscriber.subscribed().await;
    tokio::task::block_in_place(|| {
        server.create_stream(&format!(
            r#"CREATE STREAM readings (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="{topic}", TYPE="mqtt", FORMAT="json", TIMESTAMP="ts")"#
        ));
        server.create_stream(&format!(
            r#"CREATE STREAM shared_in (k STRING, v BIGINT) WITH (DATASOURCE="{shared_topic}", TYPE="mqtt", FORMAT="json")"#
        ));
        let rule = event_time_windows("windows", &out);
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    });
    let publisher = TestClient::start(1883, None);
    // Probe rows at time 0 until the leader's subscription takes them: from then on it gets
    // every row. They make one more window, which one process would emit too.
    let mut probes = 0i64;
    loop {
        publisher
            .publish(&topic, &json!({"k": "probe", "v": 0, "ts": 0}).to_string())
            .await;
        probes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (_, st) =
            tokio::task::block_in_place(|| server.json("GET", "/rules/windows/status", None));
        if source_in(&st, 0) > 0 {
            break;
        }
        assert!(probes < 100, "the leader never read the topic: {st}");
    }
    for row in input() {
        publisher.publish(&topic, &row.to_string()).await;
    }
    let want = expected();
    let mut got = window_results(&mut subscriber, want.len() + 1).await;
    // Probes published before the subscription took hold are not read.
    let (read_probes, total) = got
        .remove(&("probe".to_string(), 0))
        .expect("the probes' window");
    assert!(
        (1..=probes).contains(&read_probes) && total == 0,
        "{read_probes} of {probes} probes"
    );
    assert_eq!(got, want);
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "windows", |st| {
            (0..3).map(|p| window_in(st, p)).sum::<u64>() == source_in(st, 0)
        })
    });
    for p in 0..3 {
        assert!(window_in(&st, p) > 0, "no row reached process {p}: {st}");
    }

    // Shares: rows read by all three processes add up to what was sent, per key.
    let mut shares = counting_rule(server, "shares", "shared_in").await;
    let (want, _, _) =
        publish_to_every_process(server, "shares", &publisher, &shared_topic, 3, KEYS).await;
    windows_add_up(&mut shares, &want).await;
}

/// Creates rule `id`: per key `k` of `stream`, the count `c` and sum `total` of `v` in
/// processing-time windows of one second, sent to a fresh MQTT topic; its subscriber.
async fn counting_rule(server: &Server, id: &str, stream: &str) -> TestClient {
    let out = format!("quiver-cluster/{}/{id}", unique());
    let mut subscriber = TestClient::start(1883, Some(out.clone()));
    subscriber.subscribed().await;
    let rule = json!({
        "id": id,
        "sql": format!("SELECT k, count(*) AS c, sum(v) AS total FROM {stream} GROUP BY k, TUMBLINGWINDOW(ss, 1)"),
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": out, "sendSingle": true}}]
    });
    let (status, body) = tokio::task::block_in_place(|| server.call("POST", "/rules", Some(rule)));
    assert_eq!(status, 201, "{body}");
    subscriber
}

/// The next `n` window results on `subscriber`: per key and window start, the count and sum.
async fn window_results(
    subscriber: &mut TestClient,
    n: usize,
) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut got = BTreeMap::new();
    while got.len() < n {
        let p = subscriber.next_publish().await;
        let row: Value = serde_json::from_slice(&p.payload).expect("a JSON row");
        let key = (
            row["k"].as_str().expect("a key").to_string(),
            row["ws"].as_i64().expect("a window start"),
        );
        let value = (
            row["c"].as_i64().expect("a count"),
            row["total"].as_i64().expect("a sum"),
        );
        assert!(
            got.insert(key, value).is_none(),
            "a window emitted twice: {row}"
        );
    }
    got
}

#[test]
fn what_a_cluster_cannot_run_yet_is_refused_by_name() {
    let cluster = cluster("cluster-refusals");
    let server = &cluster.leader;
    let (status, body) = server.json(
        "POST",
        "/tables",
        Some(json!({"sql": r#"CREATE TABLE t (id BIGINT) WITH (DATASOURCE="/t", TYPE="httppush", FORMAT="json")"#})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("CREATE TABLE (tables) is not supported in cluster mode yet"),
        "{body}"
    );
    server.create_stream(
        r#"CREATE STREAM s (k STRING, v BIGINT) WITH (DATASOURCE="/s", TYPE="httppush", FORMAT="json")"#,
    );
    let rule = |id: &str, sql: &str, options: Value| json!({"id": id, "sql": sql, "options": options, "actions": [{"log": {}}]});
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(rule("r", "SELECT * FROM s", json!({"qos": 1}))),
    );
    assert_eq!(status, 400, "qos: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("qos") && message.contains("not supported in cluster mode yet"),
        "qos: {body}"
    );
    let named = json!({"id": "named", "sql": "SELECT * FROM s",
        "actions": [{"mqtt": {"connectionSelector": "shared", "topic": "t"}}]});
    let (status, body) = server.json("POST", "/rules", Some(named));
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("connectionSelector") && message.contains("cluster mode"),
        "{body}"
    );
    // Sinks run in every process: what would split or clash there is refused; so is
    // get_keyed_state (its store is the leader's).
    for (sql, action, named) in [
        (
            "SELECT k FROM s",
            json!({"memory": {"topic": "t"}}),
            "memory sink",
        ),
        (
            "SELECT k FROM s",
            json!({"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": "t", "clientId": "one"}}),
            "clientid",
        ),
        (
            r#"SELECT k FROM s WHERE get_keyed_state("threshold", "bigint", 0) > 1"#,
            json!({"log": {}}),
            "get_keyed_state",
        ),
    ] {
        let body = json!({"id": "split", "sql": sql, "actions": [action]});
        let (status, body) = server.json("POST", "/rules", Some(body));
        assert_eq!(status, 400, "{sql}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains("cluster mode"),
            "{sql}: {body}"
        );
    }
    // Bad SQL answers with its position, before anything reaches the other process.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(rule("bad", "SELECT k FROM s WHERE", json!({}))),
    );
    assert_eq!(status, 400, "{body}");
    // What the cluster runs is still made: a plain rule.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(rule("plain", "SELECT k FROM s", json!({}))),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = server.json("GET", "/rules/plain/status", None);
    assert_eq!(status, 200);
}

/// A lost process stops every rule, and the API says why. Once the process is back, the
/// cluster forms again by itself and the leader starts the rules again on every process.
#[test]
fn a_lost_process_stops_the_rules_until_it_is_back() {
    let mut cluster = cluster("cluster-lost");
    let server = &cluster.leader;
    window_rule_on_pushed_rows(server);
    // Timely's cluster mode has no recovery: a lost process stops every worker.
    let _ = cluster.followers[0].0.kill();
    let _ = cluster.followers[0].0.wait();
    let st = wait_rule_status(server, "w", |st| st["status"] == json!("stopped by error"));
    says_the_cluster_stopped(server, &st);
    // The process restarted (by a service manager, say): the same leader serves again, with
    // the rule running on both processes.
    cluster.followers[0] = cluster.spawn_follower(1);
    rule_runs_on_both_processes(server);
}

/// Waits until rule `w` (from `window_rule_on_pushed_rows`) runs again, then pushes rows that
/// both processes' windows take some of.
fn rule_runs_on_both_processes(server: &Server) {
    wait_running(server, "w");
    pushed_rows_reach_every_process(server, 2, KEYS, (KEYS * 4) as u64);
}

/// A follower that lost the leader waits for it: once the leader is restarted, the cluster
/// forms again and the leader restores its rules on both processes.
#[test]
fn a_follower_waits_for_a_lost_leader_and_rejoins_it() {
    let mut cluster = cluster("cluster-leader-lost");
    window_rule_on_pushed_rows(&cluster.leader);
    // Killed as a crash would, with no chance to stop the others.
    cluster.leader.crash();
    assert!(
        cluster.followers[0]
            .exited_within(std::time::Duration::from_secs(2))
            .is_none(),
        "the follower left instead of waiting for the leader"
    );
    cluster.leader = cluster.spawn_leader();
    cluster.leader.wait_ready();
    rule_runs_on_both_processes(&cluster.leader);
}
