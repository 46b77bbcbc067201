//! Support shared by the cluster tests (loopback and network namespaces): the leader's
//! per-process counters, MQTT input spread over the processes, and window results that must
//! add up to it.

use std::collections::BTreeMap;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::mqtt::TestClient;
use super::{Server, wait_rule_status};

/// A follower process (a process other than 0, which serves no API), killed on drop.
pub struct Follower(pub Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Follower {
    /// Waits up to `within` for the process to exit; its status, `None` if it still runs.
    pub fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("the follower's status") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Per key: the count of rows and the sum of their `v`.
pub type Totals = BTreeMap<String, (i64, i64)>;

/// Sums the leader's status counters named `<prefix>...<suffix>`.
pub fn counter(st: &Value, prefix: &str, suffix: &str) -> u64 {
    st.as_object()
        .expect("a status object")
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

/// The per-process source counters in the leader's status: process `p`'s
/// `process_<p>_source_<stream>_records_in_total`.
pub fn source_in(st: &Value, p: usize) -> u64 {
    counter(st, &format!("process_{p}_source_"), "_records_in_total")
}

/// Rows process `p`'s windows took: `process_<p>_op_<n>_window_records_in_total`.
pub fn window_in(st: &Value, p: usize) -> u64 {
    counter(st, &format!("process_{p}_op_"), "_window_records_in_total")
}

/// Publishes probe rows (key "probe") on `topic` until the sources of every one of the
/// `processes` took some: each subscribes to its share once its run of `rule` starts, and the
/// broker drops what a share group gets before its first subscriber and hands messages only to
/// the subscribers it has. Then publishes rows `{k, v}` over `keys` keys, none of which can be
/// lost. Returns what those rows were, per key; the rule's status once its sources read them
/// all; and how many probes they read.
pub async fn publish_to_every_process(
    server: &Server,
    rule: &str,
    publisher: &TestClient,
    topic: &str,
    processes: usize,
    keys: usize,
) -> (Totals, Value, u64) {
    let read = |st: &Value| (0..processes).map(|p| source_in(st, p)).sum::<u64>();
    let status = || {
        tokio::task::block_in_place(|| server.json("GET", &format!("/rules/{rule}/status"), None)).1
    };
    let mut probes = 0;
    loop {
        publisher
            .publish(topic, &json!({"k": "probe", "v": 0}).to_string())
            .await;
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let st = status();
        if (0..processes).all(|p| source_in(&st, p) > 0) {
            break;
        }
        assert!(probes < 2000, "a process read no share: {st}");
    }
    // Until the probes on their way are read and counted (a follower reports every second).
    let mut probes_read = read(&status());
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let now = read(&status());
        if now == probes_read {
            break;
        }
        probes_read = now;
    }
    let mut want = Totals::new();
    let rows = keys * 20;
    for i in 0..rows {
        let k = format!("k{}", i % keys);
        publisher
            .publish(topic, &json!({"k": k, "v": i}).to_string())
            .await;
        let e = want.entry(k).or_default();
        *e = (e.0 + 1, e.1 + i as i64);
    }
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, rule, |st| read(st) == probes_read + rows as u64)
    });
    (want, st, probes_read)
}

/// Reads window results (`k`, count `c`, sum `total`) on `subscriber` until, per key, they add
/// up to `want`; fails as soon as a key has more rows than it was sent. Rows of key "probe"
/// (sent to see subscriptions take hold, some lost by design) are not counted.
pub async fn windows_add_up(subscriber: &mut TestClient, want: &Totals) {
    let mut got = Totals::new();
    while got != *want {
        let p = subscriber.next_publish().await;
        let row: Value = serde_json::from_slice(&p.payload).expect("a JSON row");
        if row["k"] == json!("probe") {
            continue;
        }
        let e = got
            .entry(row["k"].as_str().expect("a key").to_string())
            .or_default();
        *e = (
            e.0 + row["c"].as_i64().expect("a count"),
            e.1 + row["total"].as_i64().expect("a sum"),
        );
        let within = got
            .iter()
            .all(|(k, g)| want.get(k).is_some_and(|w| g.0 <= w.0));
        assert!(within, "{got:?} for {want:?}");
    }
}

/// Creates stream `s` (httppush on `/s`, read by the leader) and rule `w` on it: per key `k`,
/// a count in windows of 10 s, logged.
pub fn window_rule_on_pushed_rows(server: &Server) {
    server.create_stream(
        r#"CREATE STREAM s (k STRING, v BIGINT) WITH (DATASOURCE="/s", TYPE="httppush", FORMAT="json")"#,
    );
    let rule = json!({"id": "w", "sql": "SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)",
                      "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
}

/// Checks what the leader says once its cluster lost a process, given rule `w`'s status
/// `st`: the rule stopped, saying it starts again once the cluster forms again, and a command
/// that needs every process answers 500 at once, saying why.
pub fn says_the_cluster_stopped(server: &Server, st: &Value) {
    assert_eq!(st["status"], json!("stopped by error"), "{st}");
    let message = st["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the cluster stopped") && message.contains("forms again"),
        "{st}"
    );
    let (status, body) = server.json("POST", "/rules/w/stop", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.to_string().contains("forms again"), "{body}");
}

/// Pushes `rows` rows `{k, v}` over `keys` keys to stream `s` (from
/// [`window_rule_on_pushed_rows`]) and waits until rule `w`'s windows on the `processes`
/// processes took them all; fails unless every process's windows took some.
pub fn pushed_rows_reach_every_process(server: &Server, processes: usize, keys: usize, rows: u64) {
    for i in 0..rows {
        let row = json!({"k": format!("k{}", i as usize % keys), "v": i});
        assert_eq!(server.push("/s", &row.to_string()).0, 200);
    }
    let st = wait_rule_status(server, "w", |st| {
        (0..processes).map(|p| window_in(st, p)).sum::<u64>() == rows
    });
    for p in 0..processes {
        assert!(
            window_in(&st, p) > 0,
            "process {p}'s windows took no row: {st}"
        );
    }
}

/// Waits up to 60 s until rule `id` runs (again: the cluster formed again and the leader
/// serves its API, which is away while it restores the rules).
pub fn wait_running(server: &Server, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = server.try_request("GET", &format!("/rules/{id}/status"), None);
        if let Ok((200, body)) = &answer
            && serde_json::from_str::<Value>(body).is_ok_and(|st| st["status"] == json!("running"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rule {id} did not run again: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
