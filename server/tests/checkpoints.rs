//! `qos` 1 end to end: quiverd killed with SIGKILL in the middle of event-time windows, over
//! MQTT, loses no row that reached it (nor those published while it was down, which the
//! broker keeps for its persistent session) and emits no partial window; a torn checkpoint
//! file is passed over for the one before it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::mqtt::{TestClient, unique};
use common::{Server, mariadb, psql, temp_dir};
use serde_json::{Value, json};

/// Event times: row `id` is at `BASE + id * STEP`, so a 1 s window holds 50 rows.
const BASE: i64 = 1_700_000_000_000;
const STEP: i64 = 20;
const ROWS: i64 = 900;

fn create(server: &Server, input: &str, output: &str) {
    server.create_stream(&format!(
        r#"CREATE STREAM ck (id BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json", TIMESTAMP="ts")"#
    ));
    let rule = json!({"id": "ck",
        "sql": "SELECT window_start() AS ws, count(*) AS c, collect(id) AS ids FROM ck WHERE id >= 0 GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": output, "sendSingle": true, "qos": 1}}],
        "options": {"qos": 1, "checkpointInterval": 200, "isEventTime": true, "lateTolerance": 0}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    // A processing-time window on the same stream: each row in one window, however often
    // that window is sent.
    let rule = json!({"id": "ck_pt",
        "sql": "SELECT window_start() AS ws, collect(id) AS ids FROM ck WHERE id >= 0 GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{output}/pt"), "sendSingle": true, "qos": 1}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    // A stateless rule on the same stream: every row goes out at least once.
    let rule = json!({"id": "ck_rows", "sql": "SELECT id FROM ck WHERE id >= 0",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{output}/rows"), "sendSingle": true, "qos": 1}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
}

/// The rules whose sources the test waits for.
const RULES: &[&str] = &["ck", "ck_rows", "ck_pt"];

/// Rows read by the rule with the fewest (the rules read the same topic).
fn records_in(server: &Server, rules: &[&str]) -> u64 {
    rules
        .iter()
        .map(|rule| {
            let (_, st) = server.json("GET", &format!("/rules/{rule}/status"), None);
            // The FROM stream's source node: `source_<stream>_0_records_in_total`.
            st.as_object()
                .and_then(|o| {
                    o.iter().find(|(k, _)| {
                        k.starts_with("source_") && k.ends_with("_0_records_in_total")
                    })
                })
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

fn row(id: i64, ts: i64) -> String {
    json!({"id": id, "ts": ts}).to_string()
}

/// Waits until the rule's source reads the topic: a row it filters out (id -1, at the first
/// window's start, behind the watermark after that) is published until one arrives after the
/// `queued` rows the broker kept while quiverd was down. Returns the count of rows read so far.
async fn subscribed(
    server: &Server,
    rules: &[&str],
    publisher: &TestClient,
    input: &str,
    queued: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(server, rules) <= queued {
        assert!(Instant::now() < deadline, "the rule never read its topic");
        publisher.publish(input, &row(-1, BASE)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Warm-up rows still on their way arrive now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    records_in(server, rules)
}

/// Publishes rows `from..to` and waits until quiverd has read every one of them.
async fn publish(
    server: &Server,
    rules: &[&str],
    publisher: &TestClient,
    input: &str,
    from: i64,
    to: i64,
) {
    let before = records_in(server, rules);
    for id in from..to {
        publisher.publish(input, &row(id, BASE + id * STEP)).await;
        if id % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let want = before + (to - from) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(server, rules) < want {
        assert!(
            Instant::now() < deadline,
            "quiverd read {} of {want} rows",
            records_in(server, rules)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `rows` (the subscriber of a rule sending each row's id) saw every id of
/// `0..ROWS` at least once.
async fn every_row_sent(rows: &mut TestClient) {
    let mut seen = BTreeSet::new();
    while seen.len() < ROWS as usize {
        match tokio::time::timeout(Duration::from_secs(10), rows.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                seen.insert(v["id"].as_i64().unwrap());
            }
            _ => panic!(
                "rows never sent: {:?}",
                (0..ROWS).filter(|i| !seen.contains(i)).collect::<Vec<_>>()
            ),
        }
    }
}

/// The ids a window result collected.
fn ids_of(v: &Value) -> BTreeSet<i64> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

fn newest_checkpoint(dir: &Path, rule: &str) -> Option<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("checkpoints").join(rule))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "qck"))
        .collect();
    files.sort();
    files.pop()
}

/// What happens during the outages of [`feed_with_kills`]: called after each kill with its
/// number, before quiverd starts again.
type Outage<'a> = Option<&'a (dyn Fn(usize) + Sync)>;

/// Publishes rows `0..ROWS`, killing quiverd with SIGKILL three times part way into windows
/// and starting it again. Rows are published while it is down twice; with `tear`, the newest
/// checkpoint of `rules[0]` is torn before the second restart, and the test checks the log
/// line.
async fn feed_with_kills(
    dir: &Path,
    mut server: Server,
    rules: &[&str],
    publisher: &TestClient,
    input: &str,
    outage: Outage<'_>,
    tear: bool,
) -> Server {
    // Kill points part way into windows; the pause before each kill lands it anywhere
    // relative to the 200 ms checkpoints.
    let kills = [(137, 90), (421, 260), (689, 30)];
    let mut next = 0;
    // Rows published while quiverd is down: the broker keeps them for its persistent session.
    let mut queued = 0;
    for (k, (at, pause)) in kills.into_iter().enumerate() {
        subscribed(&server, rules, publisher, input, queued).await;
        publish(&server, rules, publisher, input, next, at).await;
        next = at;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if k == 1 && tear {
            // The torn file below needs one to tear.
            let deadline = Instant::now() + Duration::from_secs(10);
            while newest_checkpoint(dir, rules[0]).is_none() {
                assert!(Instant::now() < deadline, "no checkpoint was written");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        server.kill();
        if let Some(f) = outage {
            f(k);
        }
        queued = if k == 1 { 0 } else { 30 };
        for id in next..next + queued as i64 {
            publisher.publish(input, &row(id, BASE + id * STEP)).await;
        }
        next += queued as i64;
        if k == 1 && tear {
            // A torn newest checkpoint: the one before it is used, and the log says so.
            let newest = newest_checkpoint(dir, rules[0]).expect("a checkpoint was written");
            let len = std::fs::metadata(&newest).unwrap().len();
            std::fs::File::options()
                .write(true)
                .open(&newest)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
            let log = dir.join("torn.log");
            server = Server::start_args(dir, &[], Some(&log));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("checkpoint file is damaged")
            {
                assert!(
                    Instant::now() < deadline,
                    "no log line about the torn checkpoint"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            server = Server::start_args(dir, &[], Some(&dir.join(format!("run{k}.log"))));
        }
    }
    subscribed(&server, rules, publisher, input, queued).await;
    publish(&server, rules, publisher, input, next, ROWS).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_window_loses_no_row_and_leaves_no_window_partial() {
    let dir = temp_dir("checkpoints-kill");
    let (input, output) = (
        format!("ck/{}/in", unique()),
        format!("ck/{}/out", unique()),
    );
    let mut results = TestClient::start(1883, Some(output.clone()));
    results.subscribed().await;
    let mut rows = TestClient::start(1883, Some(format!("{output}/rows")));
    rows.subscribed().await;
    let mut processing = TestClient::start(1883, Some(format!("{output}/pt")));
    processing.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    create(&server, &input, &output);

    let server = feed_with_kills(&dir, server, RULES, &publisher, &input, None, true).await;
    // The status says what was committed last.
    let (_, st) = server.json("GET", "/rules/ck/status", None);
    assert!(st["checkpoint_last_epoch"].as_u64() > Some(0), "{st}");
    assert!(st["checkpoint_last_bytes"].as_u64() > Some(0), "{st}");
    // A row a window ahead closes every window.
    publisher
        .publish(&input, &row(ROWS, BASE + ROWS * STEP + 1000))
        .await;

    // Every emission, by window start.
    let mut emitted: BTreeMap<i64, Vec<BTreeSet<i64>>> = BTreeMap::new();
    let last_window = BASE + (ROWS - 1) * STEP;
    let last_window = last_window - last_window.rem_euclid(1000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), results.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                if v.is_array() {
                    // An empty event-time window is sent as `[]`.
                    continue;
                }
                let ids = ids_of(&v);
                // At least once: a row the broker delivered again may be counted twice.
                assert!(v["c"].as_u64() >= Some(ids.len() as u64), "{v}");
                emitted
                    .entry(v["ws"].as_i64().unwrap())
                    .or_default()
                    .push(ids);
            }
            _ if emitted.contains_key(&last_window) => break,
            _ => assert!(
                Instant::now() < deadline,
                "the last window never came: {emitted:?}"
            ),
        }
    }
    let mut windows = 0;
    for start in (BASE..=last_window).step_by(1000) {
        let want: BTreeSet<i64> = (0..ROWS)
            .filter(|id| (start..start + 1000).contains(&(BASE + id * STEP)))
            .collect();
        let got = emitted
            .get(&start)
            .unwrap_or_else(|| panic!("window {start} was never emitted"));
        for ids in got {
            assert_eq!(ids, &want, "window {start} is partial or has foreign rows");
        }
        windows += 1;
    }
    assert_eq!(windows, 18);

    // The processing-time windows: every row in some window, and a window sent again after a
    // restart is sent whole, with the rows it had the first time.
    let mut by_window: BTreeMap<i64, BTreeSet<BTreeSet<i64>>> = BTreeMap::new();
    let mut in_windows = BTreeSet::new();
    while in_windows.len() < ROWS as usize {
        match tokio::time::timeout(Duration::from_secs(10), processing.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                let ids = ids_of(&v);
                in_windows.extend(ids.iter().copied());
                by_window
                    .entry(v["ws"].as_i64().unwrap())
                    .or_default()
                    .insert(ids);
            }
            _ => panic!(
                "rows in no processing-time window: {:?}",
                (0..ROWS)
                    .filter(|i| !in_windows.contains(i))
                    .collect::<Vec<_>>()
            ),
        }
    }
    for (start, versions) in &by_window {
        assert_eq!(
            versions.len(),
            1,
            "window {start} was sent with different rows: {versions:?}"
        );
    }

    // The stateless rule sent every row at least once.
    every_row_sent(&mut rows).await;
}

/// A qos 1 rule on a `SHARED` stream reads it with a source of its own (its own log and
/// session), next to a qos 0 rule that shares the stream's source: the same kills as above
/// lose none of the qos 1 rule's rows, those published while quiverd was down included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_1_rule_on_a_shared_stream_loses_no_row_across_sigkills() {
    let dir = temp_dir("checkpoints-shared");
    let (input, output) = (
        format!("ck/{}/in", unique()),
        format!("ck/{}/out", unique()),
    );
    let mut rows = TestClient::start(1883, Some(output.clone()));
    rows.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    // A profile naming a client id: the shared source connects with it, so the qos 1 rule's
    // own source must not (the broker would drop one of the two clients, over and over).
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/fixed",
        Some(json!({"server": "tcp://127.0.0.1:1883", "clientid": format!("ck-{}", unique().replace('/', "-"))})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM ck (id BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json", SHARED="true", CONF_KEY="fixed")"#
    ));
    for (id, options) in [
        ("shared_rows", json!({"qos": 1, "checkpointInterval": 200})),
        ("shared_plain", json!({})),
    ] {
        let topic = if id == "shared_rows" {
            output.clone()
        } else {
            format!("{output}/plain")
        };
        let rule = json!({"id": id, "sql": "SELECT id FROM ck WHERE id >= 0",
            "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": topic, "sendSingle": true, "qos": 1}}],
            "options": options});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    }
    let rules = &["shared_rows"];
    let server = feed_with_kills(&dir, server, rules, &publisher, &input, None, false).await;
    let (_, st) = server.json("GET", "/rules/shared_rows/status", None);
    assert!(st["checkpoint_last_epoch"].as_u64() > Some(0), "{st}");
    every_row_sent(&mut rows).await;
    // The qos 0 rule still shares the stream's source, and reads it.
    let (_, st) = server.json("GET", "/rules/shared_plain/status", None);
    assert_eq!(st["status"], json!("running"), "{st}");
}

/// `qos` 2 end to end: the same kills as above (without the torn file, which takes a
/// checkpoint back past what the database committed) and a MariaDB outage while quiverd is
/// down and while it runs; each window lands exactly once, whole, in MariaDB and in
/// PostgreSQL, and each row exactly once in the stateless rule's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_database_outage_at_qos_2_write_each_result_exactly_once() {
    let dir = temp_dir("checkpoints-exactly-once");
    let suffix = unique().replace(['-', '/'], "_");
    let (windows, rows) = (format!("ex_win_{suffix}"), format!("ex_rows_{suffix}"));
    mariadb(&format!(
        "CREATE TABLE {windows} (ws BIGINT, c BIGINT, s BIGINT); CREATE TABLE {rows} (id BIGINT)"
    ));
    psql(&format!(
        "CREATE TABLE {windows} (ws BIGINT, c BIGINT, s BIGINT)"
    ));
    let proxy = common::proxy::Proxy::start("127.0.0.1:3306");
    let via_proxy = format!("mysql://root@127.0.0.1:{}/test", proxy.port);
    let input = format!("ck/{}/in", unique());
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    server.create_stream(&format!(
        r#"CREATE STREAM ex (id BIGINT, ts BIGINT) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json", TIMESTAMP="ts")"#
    ));
    let rule = json!({"id": "ex_win",
        "sql": "SELECT window_start() AS ws, count(*) AS c, sum(id) AS s FROM ex WHERE id >= 0 GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [
            {"sql": {"url": via_proxy, "table": windows}},
            {"sql": {"url": "postgres://postgres@127.0.0.1:5432/test", "table": windows}}
        ],
        "options": {"qos": 2, "checkpointInterval": 200, "isEventTime": true, "lateTolerance": 0}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let rule = json!({"id": "ex_rows", "sql": "SELECT id FROM ex WHERE id >= 0",
        "actions": [{"sql": {"url": via_proxy, "table": rows}}],
        "options": {"qos": 2, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");

    // MariaDB is away across the first restart and for a while after it: results wait in
    // the checkpoints and the sink tasks, and land once it is back.
    let restore_later = std::sync::atomic::AtomicBool::new(false);
    let outage = |k: usize| {
        if k == 0 {
            proxy.cut();
            restore_later.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let rules = ["ex_win", "ex_rows"];
    let server = {
        let restorer = async {
            while !restore_later.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy.restore();
        };
        let feed = feed_with_kills(
            &dir,
            server,
            &rules,
            &publisher,
            &input,
            Some(&outage),
            false,
        );
        let (server, ()) = tokio::join!(feed, restorer);
        server
    };
    // A row a window ahead closes every window.
    publisher
        .publish(&input, &row(ROWS, BASE + ROWS * STEP + 1000))
        .await;

    let windows_want = 18;
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = |table: &str| -> (i64, i64) {
        let out = mariadb(&format!(
            "SELECT count(*), count(DISTINCT {}) FROM {table}",
            if table == rows { "id" } else { "ws" }
        ));
        let mut it = out.split_whitespace().map(|v| v.parse::<i64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    loop {
        let pg: i64 = psql(&format!("SELECT count(*) FROM {windows}"))
            .trim()
            .parse()
            .unwrap();
        if count(&windows).0 >= windows_want && pg >= windows_want && count(&rows).0 > ROWS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "results never all landed: windows {:?}, postgres {pg}, rows {:?}",
            count(&windows),
            count(&rows)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late duplicates would come within a checkpoint or two.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Every row exactly once (ROWS, plus the row that closes the windows).
    assert_eq!(
        count(&rows),
        (ROWS + 1, ROWS + 1),
        "rows missing or written twice"
    );
    // Every window exactly once, whole.
    let want: String = (0..windows_want)
        .map(|w| {
            let start = BASE + w * 1000;
            let ids: Vec<i64> = (0..ROWS)
                .filter(|id| (start..start + 1000).contains(&(BASE + id * STEP)))
                .collect();
            format!("{start}\t{}\t{}\n", ids.len(), ids.iter().sum::<i64>())
        })
        .collect();
    let got = mariadb(&format!(
        "SELECT ws, c, s FROM {windows} WHERE ws < {} ORDER BY ws",
        BASE + windows_want * 1000
    ));
    assert_eq!(
        got, want,
        "MariaDB's windows differ from an uninterrupted run's"
    );
    let got_pg = psql(&format!(
        "SELECT ws, c, s FROM {windows} WHERE ws < {} ORDER BY ws",
        BASE + windows_want * 1000
    ));
    assert_eq!(
        got_pg.replace('|', "\t"),
        want,
        "PostgreSQL's windows differ"
    );
    let progress = mariadb(
        "SELECT count(*) FROM quiver_sink_progress WHERE id LIKE 'ex_win/%' OR id LIKE 'ex_rows/%'",
    );
    assert_eq!(progress.trim(), "2", "one progress row per MariaDB sink");
    drop(server);
    mariadb(&format!("DROP TABLE {windows}; DROP TABLE {rows}"));
    psql(&format!("DROP TABLE {windows}"));
}

/// A broker restart under a qos 2 rule: the source reconnects on its persistent session, the
/// broker sends again what it had not seen acknowledged (recognised, not logged twice) and
/// what was published before the source was back, and each row lands in MariaDB exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_at_qos_2_writes_each_row_exactly_once() {
    let dir = temp_dir("checkpoints-broker-restart");
    let port = common::mqtt::free_port();
    let mut broker = common::mqtt::PrivateBroker::start_persistent(port);
    let table = format!("ex_restart_{}", unique().replace(['-', '/'], "_"));
    mariadb(&format!("CREATE TABLE {table} (id BIGINT)"));
    let server = common::server_on_own_broker(&dir, port);
    server.create_stream(
        r#"CREATE STREAM ex (id BIGINT) WITH (TYPE="mqtt", DATASOURCE="ex/in", FORMAT="json", CONF_KEY="own")"#,
    );
    let rule = json!({"id": "ex_restart", "sql": "SELECT id FROM ex WHERE id >= 0",
        "actions": [{"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}],
        "options": {"qos": 2, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let read = |server: &Server| {
        let (_, st) = server.json("GET", "/rules/ex_restart/status", None);
        st["source_ex_0_records_in_total"].as_u64().unwrap_or(0)
    };
    let landed = &table;
    let rows_in = |n: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: u64 = mariadb(&format!("SELECT count(DISTINCT id) FROM {landed}"))
                .trim()
                .parse()
                .unwrap();
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{got} of {n} rows landed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    const HALF: i64 = 300;
    for round in 0..2 {
        let publisher = TestClient::start(port, None);
        // Rows the rule filters out are sent until it reads one: then both are connected.
        // After the restart none: the rows go out before quiverd is back, and the broker
        // keeps them for the stream's persistent session, which it restored from disk.
        let deadline = Instant::now() + Duration::from_secs(30);
        let before = read(&server);
        while round == 0 && read(&server) == before {
            assert!(Instant::now() < deadline, "the rule never read its topic");
            publisher
                .publish("ex/in", &json!({"id": -1}).to_string())
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let base = read(&server);
        for i in round * HALF..(round + 1) * HALF {
            publisher
                .publish("ex/in", &json!({"id": i}).to_string())
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while read(&server) < base + HALF as u64 {
            assert!(Instant::now() < deadline, "quiverd never read every row");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if round == 0 {
            // At once: the acks of the last messages may still be on their way.
            broker.restart();
        }
    }
    rows_in((2 * HALF) as u64).await;
    // Late duplicates would come within a checkpoint or two.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let out = mariadb(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec![(2 * HALF).to_string(), (2 * HALF).to_string()],
        "each row exactly once"
    );
    drop(server);
    mariadb(&format!("DROP TABLE {table}"));
}

/// Rows (other than warm-up rows) a client received before the row with id 1000, once at
/// least `want_before` of them came.
async fn sent_before_marker(client: &mut TestClient, want_before: usize) -> usize {
    let mut before = 0;
    loop {
        let p = client.next_publish().await;
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        match v["id"].as_i64() {
            Some(1000) if before >= want_before => return before,
            Some(1000) => {}
            Some(id) if id >= 0 => before += 1,
            _ => {}
        }
    }
}

/// `enableSaveStateBeforeStop`: a rule stopped with SIGTERM takes a checkpoint first, so after
/// the restart it replays nothing; the same rule without the option (and no periodic checkpoint
/// within the test) sends its rows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_state_before_stop_resumes_without_repeating_results() {
    let dir = temp_dir("checkpoints-save-before-stop");
    let (input, output) = (
        format!("ck/{}/in", unique()),
        format!("ck/{}/out", unique()),
    );
    let mut saved = TestClient::start(1883, Some(format!("{output}/saved")));
    saved.subscribed().await;
    let mut plain = TestClient::start(1883, Some(format!("{output}/plain")));
    plain.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let log = dir.join("first.log");
    let server = Server::start_args(&dir, &[], Some(&log));
    server.create_stream(&format!(
        r#"CREATE STREAM sv (id BIGINT) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json")"#
    ));
    for (id, save) in [("sv_saved", true), ("sv_plain", false)] {
        let topic = format!("{output}/{}", &id[3..]);
        let rule = json!({"id": id, "sql": "SELECT id FROM sv WHERE id >= 0",
            "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": topic, "sendSingle": true}}],
            "options": {"qos": 1, "checkpointInterval": "1h", "enableSaveStateBeforeStop": save}});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    }
    let rules = ["sv_saved", "sv_plain"];
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(&server, &rules) == 0 {
        assert!(
            Instant::now() < deadline,
            "the rules never read their topic"
        );
        publisher.publish(&input, r#"{"id": -1}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in 0..20 {
        publisher
            .publish(&input, &json!({"id": id}).to_string())
            .await;
    }
    for client in [&mut saved, &mut plain] {
        let mut got = BTreeSet::new();
        while got.len() < 20 {
            let p = client.next_publish().await;
            let v: Value = serde_json::from_slice(&p.payload).unwrap();
            got.insert(v["id"].as_i64().unwrap());
        }
    }
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("state saved at checkpoint"),
        "no saved checkpoint in the log"
    );
    let server = Server::start_args(&dir, &[], Some(&dir.join("second.log")));
    // A row published after the restart: each rule sends it after what it replays, so what
    // came before it is what the rule sent again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(&server, &rules) == 0 {
        assert!(
            Instant::now() < deadline,
            "the rules never read their topic again"
        );
        publisher.publish(&input, r#"{"id": -1}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publisher.publish(&input, r#"{"id": 1000}"#).await;
    assert_eq!(
        sent_before_marker(&mut plain, 20).await,
        20,
        "without the option the rows are replayed"
    );
    assert_eq!(
        sent_before_marker(&mut saved, 0).await,
        0,
        "a saved rule replays nothing"
    );
    drop(server);
}

/// httppush at qos 1: a request is answered 200 only once its body is in the rule's input log,
/// so a SIGKILL right after the last answer loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_answered_200_survives_a_crash_at_qos_1() {
    let dir = temp_dir("checkpoints-push");
    let output = format!("ck/{}/out", unique());
    let mut results = TestClient::start(1883, Some(output.clone()));
    results.subscribed().await;
    let server = Server::start_args(&dir, &[], Some(&dir.join("first.log")));
    server.create_stream(
        r#"CREATE STREAM hp (id BIGINT) WITH (TYPE="httppush", DATASOURCE="/hp", FORMAT="json")"#,
    );
    let rule = json!({"id": "hp", "sql": "SELECT id FROM hp",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": output, "sendSingle": true}}],
        "options": {"qos": 1, "checkpointInterval": "1h"}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    const PUSHED: i64 = 50;
    for id in 0..PUSHED {
        let (status, body) = server.push("/hp", &json!({"id": id}).to_string());
        assert_eq!(status, 200, "{body}");
    }
    server.kill();
    let _server = Server::start_args(&dir, &[], Some(&dir.join("second.log")));
    let mut seen = BTreeSet::new();
    while seen.len() < PUSHED as usize {
        match tokio::time::timeout(Duration::from_secs(10), results.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                seen.insert(v["id"].as_i64().unwrap());
            }
            _ => panic!(
                "pushes answered 200 and lost: {:?}",
                (0..PUSHED)
                    .filter(|i| !seen.contains(i))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn qos_is_refused_by_name_where_it_cannot_be_kept() {
    let dir = temp_dir("checkpoints-refused");
    let server = Server::start(&dir);
    let topic = format!("ck/{}/in", unique());
    server.create_stream(&format!(
        r#"CREATE STREAM m (id BIGINT) WITH (TYPE="mqtt", DATASOURCE="{topic}", FORMAT="json")"#
    ));
    // A joined file stream is refused (its position is not kept); a FROM file stream is not.
    server.create_stream(&format!(
        r#"CREATE STREAM f (id BIGINT) WITH (TYPE="file", DATASOURCE="{}", FORMAT="json")"#,
        dir.join("in.jsonl").display()
    ));
    server.create_stream(&format!(
        r#"CREATE STREAM m2 (id BIGINT) WITH (TYPE="mqtt", DATASOURCE="{topic}/2", FORMAT="json")"#
    ));
    let filed = dir.join("filed.json");
    std::fs::write(&filed, r#"[{"id": 1, "name": "a"}]"#).unwrap();
    // A table whose file is deleted once read (by the shared table, at once).
    let consumed = dir.join("consumed.json");
    std::fs::write(&consumed, r#"[{"id": 1, "name": "a"}]"#).unwrap();
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/file/confKeys/once",
        Some(json!({"actionAfterRead": 1})),
    );
    assert_eq!(status, 200, "{body}");
    for table in [
        r#"CREATE TABLE scanned (id BIGINT, name STRING) WITH (DATASOURCE="scanned", TYPE="memory", KEY="id")"#.to_string(),
        r#"CREATE TABLE remembered (id BIGINT, name STRING) WITH (DATASOURCE="remembered", TYPE="memory", KIND="lookup", KEY="id")"#.to_string(),
        format!(
            r#"CREATE TABLE filed (id BIGINT, name STRING) WITH (DATASOURCE="{}", TYPE="file", KEY="id")"#,
            filed.display()
        ),
        format!(
            r#"CREATE TABLE unkeyed (id BIGINT, name STRING) WITH (DATASOURCE="{}", TYPE="file")"#,
            filed.display()
        ),
        format!(
            r#"CREATE TABLE consumed (id BIGINT, name STRING) WITH (DATASOURCE="{}", TYPE="file", KEY="id", CONF_KEY="once")"#,
            consumed.display()
        ),
    ] {
        let (status, body) = server.call("POST", "/tables", Some(json!({ "sql": table })));
        assert_eq!(status, 201, "{body}");
    }
    let cases = [
        (
            "SELECT id FROM m",
            json!({"qos": 2}),
            "the log sink does not",
        ),
        (
            "SELECT id FROM m",
            json!({"qos": 1, "checkpointInterval": 5}),
            "checkpointInterval",
        ),
        // Joins with tables or streams whose rows are not in the rule's log.
        // A scan table is read by a source of the rule's own, logged like a joined stream's.
        (
            "SELECT m.id, unkeyed.name FROM m INNER JOIN unkeyed ON m.id = unkeyed.id",
            json!({"qos": 1}),
            "a file scan table without KEY",
        ),
        (
            "SELECT m.id, consumed.name FROM m INNER JOIN consumed ON m.id = consumed.id",
            json!({"qos": 2}),
            "a file scan table with actionAfterRead 1 or 2",
        ),
        (
            "SELECT count(*) AS c FROM m INNER JOIN m2 ON m.id = m2.id INNER JOIN scanned ON m.id = scanned.id GROUP BY TUMBLINGWINDOW(ss, 1)",
            json!({"qos": 1}),
            "a rule joining both streams and scan tables",
        ),
        (
            "SELECT m.id, remembered.name FROM m INNER JOIN remembered ON m.id = remembered.id",
            json!({"qos": 2}),
            "joins with memory lookup tables",
        ),
        (
            "SELECT count(*) AS c FROM m INNER JOIN f ON m.id = f.id GROUP BY TUMBLINGWINDOW(ss, 1)",
            json!({"qos": 1}),
            "joins with file streams",
        ),
        (
            "SELECT count(*) AS c FROM f INNER JOIN m ON m.id = f.id GROUP BY TUMBLINGWINDOW(ss, 1)",
            json!({"qos": 2}),
            "a file stream joined with other streams",
        ),
        (
            "SELECT id FROM m",
            json!({"enableSaveStateBeforeStop": true}),
            "needs qos 1 or 2",
        ),
    ];
    for (i, (sql, options, says)) in cases.into_iter().enumerate() {
        let rule = json!({"id": format!("r{i}"), "sql": sql,
            "actions": [{"log": {}}], "options": options});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 400, "{sql} {options}: {body}");
        assert!(body.contains(says), "{sql} {options}: {body}");
    }
    // The same rule at qos 1 on the MQTT stream is accepted, the memory scan-table join at qos 0
    // and 1, and the keyed file table's at qos 1.
    let rule = json!({"id": "ok", "sql": "SELECT id FROM m", "actions": [{"log": {}}],
        "options": {"qos": 1}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    for (id, table, options) in [
        ("ok_scan", "scanned", json!({})),
        ("ok_scan_qos", "scanned", json!({"qos": 1})),
        ("ok_file_qos", "filed", json!({"qos": 1})),
    ] {
        let rule = json!({"id": id,
            "sql": format!("SELECT m.id, {table}.name FROM m INNER JOIN {table} ON m.id = {table}.id"),
            "actions": [{"log": {}}], "options": options});
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    }
}
