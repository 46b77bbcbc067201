//! Joins at `qos` 1 and 2 end to end, with quiverd killed by SIGKILL part way through its
//! input: a join with a SQL lookup table on MariaDB reflects every input row (qos 1); a join of
//! two MQTT streams in event-time windows writes each window's joined result into MariaDB
//! exactly once, equal to what the input implies (qos 2), also across a restart of the broker
//! with rows published while quiverd's sessions were away; joins with an MQTT and a file scan
//! table keep the table across the kills (qos 1 and 2). The joins refused at qos 1 and 2
//! are tested with the other refusals in checkpoints.rs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::mqtt::{TestClient, unique};
use common::{Server, mariadb, temp_dir};
use serde_json::json;

/// What the tests publish: each row is a message or more per stream of the rule.
struct Feed<'a> {
    /// The rules reading the streams.
    rules: Vec<String>,
    /// The rules' streams (the FROM stream first).
    streams: &'static [&'static str],
    /// Each stream's topic, in the same order.
    topics: Vec<String>,
    publisher: &'a TestClient,
    /// Row `id`'s messages, `(topic, payload)`, one or more per stream.
    messages: &'a (dyn Fn(i64) -> Vec<(String, String)> + Sync),
    /// Messages the rule ignores (one per stream), sent until quiverd reads its topics.
    warm_up: Vec<(String, String)>,
}

impl Feed<'_> {
    /// Messages read so far by each rule's source of each stream (rule by rule, streams in
    /// order).
    fn read(&self, server: &Server) -> Vec<u64> {
        self.rules
            .iter()
            .flat_map(|rule| {
                let (_, st) = server.json("GET", &format!("/rules/{rule}/status"), None);
                self.streams
                    .iter()
                    .map(|s| {
                        st[format!("source_{s}_0_records_in_total")]
                            .as_u64()
                            .unwrap_or(0)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Messages read so far by the source that read the fewest.
    fn records_in(&self, server: &Server) -> u64 {
        self.read(server).into_iter().min().unwrap_or(0)
    }

    async fn send(&self, messages: &[(String, String)]) {
        for (topic, payload) in messages {
            self.publisher.publish(topic, payload).await;
        }
    }

    /// Waits until every stream's source has read more than the `queued` messages the broker
    /// kept while quiverd was down, sending warm-up messages meanwhile.
    async fn subscribed(&self, server: &Server, queued: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.records_in(server) <= queued {
            assert!(Instant::now() < deadline, "the rule never read its topics");
            self.send(&self.warm_up).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Warm-up messages still on their way arrive now.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Publishes rows `from..to` and waits until every rule's source of every stream has read
    /// every message of them sent to its topic.
    async fn publish(&self, server: &Server, from: i64, to: i64) {
        let before = self.read(server);
        let mut sent = vec![0u64; self.topics.len()];
        for id in from..to {
            let messages = (self.messages)(id);
            for (topic, _) in &messages {
                if let Some(s) = self.topics.iter().position(|t| t == topic) {
                    sent[s] += 1;
                }
            }
            self.send(&messages).await;
            if id % 25 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let want: Vec<u64> = before
            .iter()
            .enumerate()
            .map(|(i, b)| b + sent[i % self.topics.len()])
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let read = self.read(server);
            if read.iter().zip(&want).all(|(r, w)| r >= w) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "quiverd read {read:?} of {want:?} messages (rule by rule, stream by stream)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes rows `0..rows`, killing quiverd with SIGKILL at each of `kills` (a row, and a
    /// pause that lands the kill anywhere relative to the checkpoints) and starting it again;
    /// 30 rows are published while it is down, which the broker keeps for its sessions.
    async fn with_kills(
        &self,
        dir: &Path,
        mut server: Server,
        rows: i64,
        kills: &[(i64, u64)],
    ) -> Server {
        let mut next = 0;
        let mut queued = 0;
        for (k, &(at, pause)) in kills.iter().enumerate() {
            self.subscribed(&server, queued).await;
            self.publish(&server, next, at).await;
            next = at;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            server.kill();
            queued = 30;
            for id in next..next + queued as i64 {
                self.send(&(self.messages)(id)).await;
            }
            next += queued as i64;
            server = Server::start_args(dir, &[], Some(&dir.join(format!("run{k}.log"))));
        }
        self.subscribed(&server, queued).await;
        self.publish(&server, next, rows).await;
        server
    }
}

/// `CREATE TABLE ...` through the REST API.
fn create_table(server: &Server, sql: &str) {
    let (status, body) = server.call("POST", "/tables", Some(json!({ "sql": sql })));
    assert_eq!(status, 201, "{body}");
}

/// The one number a MariaDB query answers.
fn number(query: &str) -> i64 {
    mariadb(query).trim().parse().unwrap()
}

/// A table name no other run uses.
fn table(prefix: &str) -> String {
    format!("{prefix}_{}", unique().replace(['-', '/'], "_"))
}

/// A join with a SQL lookup table at qos 1: every row that reached quiverd, before, between
/// and after three SIGKILLs, lands in MariaDB with the value the lookup table holds for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_join_at_qos_1_reflects_every_row_across_sigkills() {
    const ROWS: i64 = 600;
    let dir = temp_dir("join-checkpoints-lookup");
    let (items, out) = (table("jl_items"), table("jl_out"));
    let values: String = (0..5)
        .map(|k| format!("('c{k}', {})", (k + 1) * 10))
        .collect::<Vec<_>>()
        .join(", ");
    mariadb(&format!(
        "CREATE TABLE {items} (code VARCHAR(16) PRIMARY KEY, factor BIGINT); INSERT INTO {items} VALUES {values}; CREATE TABLE {out} (id BIGINT, factor BIGINT)"
    ));
    let input = format!("jl/{}/in", unique());
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/sql/confKeys/jl",
        Some(json!({"url": "mysql://root@127.0.0.1:3306/test"})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM jl (id BIGINT, code STRING) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json")"#
    ));
    create_table(
        &server,
        &format!(
            r#"CREATE TABLE items (code STRING, factor BIGINT) WITH (DATASOURCE="{items}", TYPE="sql", KIND="lookup", KEY="code", CONF_KEY="jl")"#
        ),
    );
    // A rule id of its own: a run that failed may have left its MQTT session on the broker.
    let rule_id = format!("jl_{}", unique());
    let rule = json!({"id": rule_id,
        "sql": "SELECT jl.id AS id, items.factor AS factor FROM jl INNER JOIN items ON jl.code = items.code WHERE jl.id >= 0",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": out}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");

    let messages = |id: i64| {
        vec![(
            input.clone(),
            json!({"id": id, "code": format!("c{}", id % 5)}).to_string(),
        )]
    };
    let feed = Feed {
        rules: vec![rule_id],
        streams: &["jl"],
        topics: vec![input.clone()],
        publisher: &publisher,
        messages: &messages,
        warm_up: vec![(input.clone(), json!({"id": -1, "code": "c0"}).to_string())],
    };
    let server = feed
        .with_kills(&dir, server, ROWS, &[(137, 90), (311, 260), (489, 30)])
        .await;

    let distinct = || number(&format!("SELECT count(DISTINCT id) FROM {out}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while distinct() < ROWS {
        assert!(
            Instant::now() < deadline,
            "{} of {ROWS} rows landed",
            distinct()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At least once: a row may land twice, never with another value.
    let want: String = (0..ROWS)
        .map(|id| format!("{id}\t{}\n", (id % 5 + 1) * 10))
        .collect();
    let got = mariadb(&format!(
        "SELECT DISTINCT id, factor FROM {out} ORDER BY id"
    ));
    assert_eq!(got, want, "rows missing or joined with the wrong value");
    drop(server);
    mariadb(&format!("DROP TABLE {items}; DROP TABLE {out}"));
}

/// The key stream row `id` joins in the scan-table tests: one of the ten keys set before the
/// rows for the first 100 rows, then the key the table's messages of rows `id - 100` (set)
/// and `id - 50` (updated) wrote.
fn scan_key(id: i64) -> i64 {
    if id < 100 { id % 10 } else { 10 + id - 100 }
}

/// Added to a key's number in its update.
const UPDATED: i64 = 100_000;

/// The table's messages of row `id`: key `10 + id` set, and key `10 + id - 50` updated.
fn table_messages(id: i64) -> Vec<serde_json::Value> {
    let mut out = vec![json!({"k": 10 + id, "v": id})];
    if id >= 50 {
        out.push(json!({"k": 10 + id - 50, "v": UPDATED + id - 50}));
    }
    out
}

/// Where the scan-table tests kill quiverd (row, pause), each once every message of the rows
/// before it was read.
const SCAN_KILLS: [(i64, u64); 3] = [(137, 90), (311, 260), (489, 30)];

/// How many kills came before row `id`. Every table message of an earlier segment was read
/// before a row of a later one was published; within a segment quiverd's two subscriptions
/// may deliver the stream's and the table's messages in any order.
fn segment(id: i64) -> usize {
    SCAN_KILLS.iter().filter(|(at, _)| *at <= id).count()
}

/// The values stream row `id` may be joined with (`None`: no table row yet, LEFT JOIN). The
/// file table holds every key's updated value from the start.
fn allowed(id: i64, file: bool) -> Vec<Option<i64>> {
    if id < 100 {
        return vec![Some((id % 10) * 10 + 1)];
    }
    let (set, updated) = (Some(id - 100), Some(UPDATED + id - 100));
    if file || segment(id - 50) < segment(id) {
        vec![updated]
    } else if segment(id - 100) < segment(id) {
        vec![set, updated]
    } else {
        vec![None, set, updated]
    }
}

/// A join with an MQTT scan table at qos 1 and 2: each rule keeps its own copy of the table
/// in its checkpoints and logs the table's messages with the stream's. The table's messages
/// are not sent again after a restart (not retained), so a rule that lost its table after a
/// SIGKILL would join rows with keys set before the kill with nothing. Here every row is in
/// MariaDB with a value the table held for it: once at qos 2, and at qos 1 with the same value
/// every time it was sent (a replay joins it against the table as it was the first time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_table_join_at_qos_1_and_2_keeps_the_table_across_sigkills() {
    scan_table_join_across_sigkills(false).await;
}

/// The same with a file scan table holding every key (with `KEY`): it is read again from
/// its start after each restart, and every row still has its value, once at qos 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_table_join_at_qos_1_and_2_reads_the_table_again_after_sigkills() {
    scan_table_join_across_sigkills(true).await;
}

/// Joins stream `js` with table `jt` (MQTT, or a `file` holding every key) at qos 2 and at
/// qos 1 into MariaDB, killing quiverd three times, and checks what each rule wrote.
async fn scan_table_join_across_sigkills(file: bool) {
    const ROWS: i64 = 600;
    let dir = temp_dir(if file {
        "join-checkpoints-file-table"
    } else {
        "join-checkpoints-scan"
    });
    let (once, twice) = (table("js_once"), table("js_twice"));
    mariadb(&format!(
        "CREATE TABLE {once} (id BIGINT, v BIGINT); CREATE TABLE {twice} (id BIGINT, v BIGINT)"
    ));
    let (input, updates) = (format!("js/{}/in", unique()), format!("js/{}/t", unique()));
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    server.create_stream(&format!(
        r#"CREATE STREAM js (id BIGINT, k BIGINT) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json")"#
    ));
    let table_file = dir.join("jt.json");
    let file_rows: Vec<serde_json::Value> = (0..10)
        .map(|k| json!({"k": k, "v": k * 10 + 1}))
        .chain((0..ROWS).map(|id| json!({"k": 10 + id, "v": UPDATED + id})))
        .collect();
    std::fs::write(&table_file, serde_json::to_string(&file_rows).unwrap()).unwrap();
    create_table(
        &server,
        &if file {
            format!(
                r#"CREATE TABLE jt (k BIGINT, v BIGINT) WITH (DATASOURCE="{}", TYPE="file", KEY="k")"#,
                table_file.display()
            )
        } else {
            format!(
                r#"CREATE TABLE jt (k BIGINT, v BIGINT) WITH (DATASOURCE="{updates}", TYPE="mqtt", KEY="k")"#
            )
        },
    );
    // Rule ids of their own: a run that failed may have left its MQTT sessions on the broker.
    let rules: Vec<(String, u8, &String)> = vec![
        (format!("js2_{}", unique()), 2, &once),
        (format!("js1_{}", unique()), 1, &twice),
    ];
    for (id, qos, out) in &rules {
        let rule = json!({"id": id,
            "sql": "SELECT js.id AS id, jt.v AS v FROM js LEFT JOIN jt ON js.k = jt.k WHERE js.id >= 0",
            "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": out}}],
            "options": {"qos": qos, "checkpointInterval": 200}});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    }

    let messages = |id: i64| {
        let mut messages: Vec<(String, String)> = Vec::new();
        if !file {
            for m in table_messages(id) {
                messages.push((updates.clone(), m.to_string()));
            }
        }
        messages.push((
            input.clone(),
            json!({"id": id, "k": scan_key(id)}).to_string(),
        ));
        messages
    };
    let stream_warm_up = (input.clone(), json!({"id": -1, "k": -1}).to_string());
    let feed = Feed {
        rules: rules.iter().map(|(id, _, _)| id.clone()).collect(),
        streams: if file { &["js"] } else { &["js", "jt"] },
        topics: if file {
            vec![input.clone()]
        } else {
            vec![input.clone(), updates.clone()]
        },
        publisher: &publisher,
        messages: &messages,
        warm_up: match file {
            true => vec![stream_warm_up],
            false => vec![
                (updates.clone(), json!({"k": -1, "v": -1}).to_string()),
                stream_warm_up,
            ],
        },
    };
    // Table messages read by the rule that read the fewest.
    let table_read = || {
        rules
            .iter()
            .map(|(id, _, _)| {
                let (_, st) = server.json("GET", &format!("/rules/{id}/status"), None);
                st["source_jt_0_records_in_total"].as_u64().unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    };
    // The ten keys the first 100 rows join, set once before the rows: no message sets them
    // again (the file holds them and every later key).
    feed.subscribed(&server, 0).await;
    let before = if file { 0 } else { table_read() };
    if !file {
        for k in 0..10 {
            publisher
                .publish(&updates, &json!({"k": k, "v": k * 10 + 1}).to_string())
                .await;
        }
    }
    let want_read = before + if file { file_rows.len() as u64 } else { 10 };
    let deadline = Instant::now() + Duration::from_secs(30);
    while table_read() < want_read {
        assert!(
            Instant::now() < deadline,
            "the rules never read the table's rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server = feed.with_kills(&dir, server, ROWS, &SCAN_KILLS).await;

    for (id, qos, out) in &rules {
        let distinct = || number(&format!("SELECT count(DISTINCT id) FROM {out}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while distinct() < ROWS {
            assert!(
                Instant::now() < deadline,
                "qos {qos}: {} of {ROWS} rows landed; status {}",
                distinct(),
                server.call("GET", &format!("/rules/{id}/status"), None).1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Late duplicates would come within a checkpoint or two.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (_, qos, out) in &rules {
        let mut landed = std::collections::BTreeMap::<i64, Vec<Option<i64>>>::new();
        for line in mariadb(&format!("SELECT id, v FROM {out} ORDER BY id")).lines() {
            let (id, v) = line.split_once('\t').expect("two columns");
            landed
                .entry(id.parse().unwrap())
                .or_default()
                .push(v.parse().ok());
        }
        for id in 0..ROWS {
            let sent = &landed[&id];
            if *qos == 2 {
                assert_eq!(sent.len(), 1, "qos 2: row {id} written {sent:?}");
            }
            assert!(
                sent.iter().all(|v| *v == sent[0]),
                "qos {qos}: row {id} was sent joined with different values {sent:?}"
            );
            assert!(
                allowed(id, file).contains(&sent[0]),
                "qos {qos}: row {id} joined with {:?}, not one of {:?}",
                sent[0],
                allowed(id, file)
            );
        }
    }
    drop(server);
    mariadb(&format!("DROP TABLE {once}; DROP TABLE {twice}"));
}

/// Event times: row `id` of stream `ja` is at `BASE + id * STEP`, of `jb` 7 ms later, so a
/// 1 s window holds 50 rows of each.
const BASE: i64 = 1_700_000_000_000;
const STEP: i64 = 20;

/// The join key of row `id` in each stream, and `jb`'s value.
fn key_a(id: i64) -> i64 {
    id % 5
}
fn key_b(id: i64) -> i64 {
    (id / 2) % 5
}
fn value_b(id: i64) -> i64 {
    id * 2 + 1
}

/// What the join rule must write for rows `0..rows`: per window `ws, c, sa, sb`, one line each.
fn joined_windows(rows: i64) -> Vec<String> {
    let window = |ts: i64| ts - ts.rem_euclid(1000);
    let mut out = std::collections::BTreeMap::<i64, (i64, i64, i64)>::new();
    for a in 0..rows {
        for b in 0..rows {
            let ws = window(BASE + a * STEP);
            if ws == window(BASE + b * STEP + 7) && key_a(a) == key_b(b) {
                let e = out.entry(ws).or_default();
                e.0 += 1;
                e.1 += a;
                e.2 += value_b(b);
            }
        }
    }
    out.into_iter()
        .map(|(ws, (c, sa, sb))| format!("{ws}\t{c}\t{sa}\t{sb}"))
        .collect()
}

/// Waits until MariaDB table `out` holds as many windows as rows `0..rows` imply (rule `rule`
/// writes them), and then, a checkpoint or two later, checks it holds each exactly once, as
/// an uninterrupted run writes them.
async fn windows_written_once(server: &Server, rule: &str, out: &str, rows: i64) {
    let want = joined_windows(rows);
    let count = || number(&format!("SELECT count(*) FROM {out}")) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < want.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} windows landed; status {}",
            count(),
            want.len(),
            server.call("GET", &format!("/rules/{rule}/status"), None).1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late duplicates would come within a checkpoint or two.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = mariadb(&format!("SELECT ws, c, sa, sb FROM {out} ORDER BY ws, c"));
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got, want,
        "each window's joined result must be written once, as an uninterrupted run writes it"
    );
}

/// Two MQTT streams joined in event-time tumbling windows at qos 2: quiverd is killed three
/// times part way into windows, with rows of both streams published while it is down; every
/// window's joined result is in MariaDB exactly once and equals the one the input implies.
/// The same streams joined in processing-time windows at qos 1: every row is in one window,
/// and a window sent again after a restart holds the same joined rows (the replay keeps the
/// order in which the two streams' rows arrived, and their times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_join_at_qos_2_writes_each_window_exactly_once_across_sigkills() {
    const ROWS: i64 = 600;
    let dir = temp_dir("join-checkpoints-streams");
    let out = table("jw_out");
    mariadb(&format!(
        "CREATE TABLE {out} (ws BIGINT, c BIGINT, sa BIGINT, sb BIGINT)"
    ));
    let (topic_a, topic_b) = (format!("jw/{}/a", unique()), format!("jw/{}/b", unique()));
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    server.create_stream(&format!(
        r#"CREATE STREAM ja (id BIGINT, k BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="{topic_a}", FORMAT="json", TIMESTAMP="ts")"#
    ));
    server.create_stream(&format!(
        r#"CREATE STREAM jb (id BIGINT, k BIGINT, v BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="{topic_b}", FORMAT="json", TIMESTAMP="ts")"#
    ));
    // A rule id of its own: a run that failed may have left its MQTT sessions on the broker.
    let rule_id = format!("jw_{}", unique());
    let rule = json!({"id": rule_id,
        "sql": "SELECT window_start() AS ws, count(*) AS c, sum(ja.id) AS sa, sum(jb.v) AS sb FROM ja INNER JOIN jb ON ja.k = jb.k GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": out}}],
        "options": {"qos": 2, "checkpointInterval": 200, "isEventTime": true, "lateTolerance": 0}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let pt_topic = format!("jw/{}/pt", unique());
    let mut pt_results = TestClient::start(1883, Some(pt_topic.clone()));
    pt_results.subscribed().await;
    // Each row of `ja` once, with its `jb` partner if that came in the same window (results
    // stay small: the test client takes packets of up to 10 KB).
    let pt_id = format!("jp_{}", unique());
    let rule = json!({"id": pt_id,
        "sql": "SELECT window_start() AS ws, collect(ja.id) AS ids, collect(jb.id) AS bids FROM ja LEFT JOIN jb ON ja.id = jb.id WHERE ja.id >= 0 GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": pt_topic, "sendSingle": true, "qos": 1}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");

    let messages = |id: i64| {
        let ts = BASE + id * STEP;
        vec![
            (
                topic_a.clone(),
                json!({"id": id, "k": key_a(id), "ts": ts}).to_string(),
            ),
            (
                topic_b.clone(),
                json!({"id": id, "k": key_b(id), "v": value_b(id), "ts": ts + 7}).to_string(),
            ),
        ]
    };
    // Keys no row of the other stream has: they join nothing (and once the windows moved on,
    // they are late).
    let warm_up = vec![
        (
            topic_a.clone(),
            json!({"id": -1, "k": -1, "ts": BASE}).to_string(),
        ),
        (
            topic_b.clone(),
            json!({"id": -1, "k": -2, "v": 0, "ts": BASE}).to_string(),
        ),
    ];
    let feed = Feed {
        rules: vec![rule_id.clone(), pt_id.clone()],
        streams: &["ja", "jb"],
        topics: vec![topic_a.clone(), topic_b.clone()],
        publisher: &publisher,
        messages: &messages,
        warm_up,
    };
    let server = feed
        .with_kills(&dir, server, ROWS, &[(137, 90), (311, 260), (489, 30)])
        .await;
    // Rows a window ahead in both streams close every window.
    let ahead = BASE + ROWS * STEP + 1000;
    feed.send(&[
        (
            topic_a.clone(),
            json!({"id": -1, "k": -1, "ts": ahead}).to_string(),
        ),
        (
            topic_b.clone(),
            json!({"id": -1, "k": -2, "v": 0, "ts": ahead}).to_string(),
        ),
    ])
    .await;

    windows_written_once(&server, &rule_id, &out, ROWS).await;

    // Processing time: every row of `ja` in some window; each window sent the same each time.
    let mut versions = std::collections::BTreeMap::<i64, std::collections::BTreeSet<String>>::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut windows_of = std::collections::BTreeMap::<i64, std::collections::BTreeSet<i64>>::new();
    while seen.len() < ROWS as usize {
        match tokio::time::timeout(Duration::from_secs(10), pt_results.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                let ids = v["ids"].as_array().expect("ids");
                let ws = v["ws"].as_i64().unwrap();
                for id in ids.iter().filter_map(serde_json::Value::as_i64) {
                    seen.insert(id);
                    windows_of.entry(id).or_default().insert(ws);
                }
                versions
                    .entry(ws)
                    .or_default()
                    .insert(format!("{} {}", v["ids"], v["bids"]));
            }
            _ => panic!(
                "rows in no processing-time window: {:?}; status {}",
                (0..ROWS).filter(|i| !seen.contains(i)).collect::<Vec<_>>(),
                server
                    .call("GET", &format!("/rules/{pt_id}/status"), None)
                    .1
            ),
        }
    }
    // A replayed row keeps the time it was logged at, and so its window.
    for (id, windows) in &windows_of {
        assert_eq!(windows.len(), 1, "row {id} is in windows {windows:?}");
    }
    for (ws, sent) in &versions {
        assert_eq!(
            sent.len(),
            1,
            "processing-time window {ws} was sent with different joined rows: {sent:?}"
        );
    }
    drop(server);
    mariadb(&format!("DROP TABLE {out}"));
}

/// Two MQTT streams joined in event-time windows at qos 2, on a broker of their own that
/// keeps its sessions on disk: it restarts half way through the input, and the second half
/// is published before quiverd is back (each joined stream holds a persistent session of its
/// own, for which the broker keeps them). Every window's joined result is in MariaDB exactly
/// once and equals the one the input implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_join_at_qos_2_rides_out_a_broker_restart() {
    const ROWS: i64 = 400;
    let dir = temp_dir("join-checkpoints-broker");
    let port = common::mqtt::free_port();
    let mut broker = common::mqtt::PrivateBroker::start_persistent(port);
    let out = table("jr_out");
    mariadb(&format!(
        "CREATE TABLE {out} (ws BIGINT, c BIGINT, sa BIGINT, sb BIGINT)"
    ));
    let server = common::server_on_own_broker(&dir, port);
    server.create_stream(
        r#"CREATE STREAM ja (id BIGINT, k BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="jr/a", FORMAT="json", TIMESTAMP="ts", CONF_KEY="own")"#,
    );
    server.create_stream(
        r#"CREATE STREAM jb (id BIGINT, k BIGINT, v BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="jr/b", FORMAT="json", TIMESTAMP="ts", CONF_KEY="own")"#,
    );
    let rule = json!({"id": "jr",
        "sql": "SELECT window_start() AS ws, count(*) AS c, sum(ja.id) AS sa, sum(jb.v) AS sb FROM ja INNER JOIN jb ON ja.k = jb.k GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": out}}],
        "options": {"qos": 2, "checkpointInterval": 200, "isEventTime": true, "lateTolerance": 0}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    // The fewest messages either stream read.
    let read = |server: &Server| {
        let (_, st) = server.json("GET", "/rules/jr/status", None);
        ["ja", "jb"]
            .iter()
            .map(|s| {
                st[format!("source_{s}_0_records_in_total")]
                    .as_u64()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    };
    let row = |id: i64| {
        let ts = BASE + id * STEP;
        [
            ("jr/a", json!({"id": id, "k": key_a(id), "ts": ts})),
            (
                "jr/b",
                json!({"id": id, "k": key_b(id), "v": value_b(id), "ts": ts + 7}),
            ),
        ]
    };
    // Rows at `ts` with keys the other stream never has: they join nothing.
    let markers = async |publisher: &TestClient, ts: i64| {
        publisher
            .publish("jr/a", &json!({"id": -1, "k": -1, "ts": ts}).to_string())
            .await;
        publisher
            .publish(
                "jr/b",
                &json!({"id": -1, "k": -2, "v": 0, "ts": ts}).to_string(),
            )
            .await;
    };
    for round in 0..2 {
        let publisher = TestClient::start(port, None);
        // Keys the other stream never has, sent until both streams read one. After the
        // restart none: the rows go out before quiverd is back, and the broker keeps them for
        // the streams' persistent sessions, which it restored from disk.
        let deadline = Instant::now() + Duration::from_secs(30);
        let before = read(&server);
        while round == 0 && read(&server) == before {
            assert!(Instant::now() < deadline, "the rule never read both topics");
            markers(&publisher, BASE).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let base = read(&server);
        let half = ROWS / 2;
        for id in round * half..(round + 1) * half {
            for (topic, payload) in row(id) {
                publisher.publish(topic, &payload.to_string()).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while read(&server) < base + half as u64 {
            assert!(
                Instant::now() < deadline,
                "quiverd never read every row: {} of {}",
                read(&server),
                base + half as u64
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if round == 0 {
            // At once: the acks of the last messages may still be on their way.
            broker.restart();
        } else {
            // Rows a window ahead in both streams close every window.
            let ahead = BASE + ROWS * STEP + 1000;
            markers(&publisher, ahead).await;
            // The publisher's connection ends with this round: read before it goes.
            while read(&server) < base + half as u64 + 1 {
                assert!(
                    Instant::now() < deadline,
                    "quiverd never read the last rows"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    windows_written_once(&server, "jr", &out, ROWS).await;
    drop(server);
    mariadb(&format!("DROP TABLE {out}"));
}
