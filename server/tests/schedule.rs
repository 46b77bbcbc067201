//! Scheduled rules end to end (`cron`, `duration`, `cronDatetimeRange`): a rule that runs for a
//! while at each fire of its cron, and rows that flow only while it runs.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::{Duration, Instant};

use common::{Server, temp_dir, wait_rule_status};
use http::TestServer;
use serde_json::{Value, json};

const WAITING: &str = "stopped: waiting for next schedule.";

/// A REST receiver and a quiverd with the pushed stream `sched_in`.
fn start(name: &str) -> (TestServer, Server) {
    let web = TestServer::start();
    let server = Server::start(&temp_dir(name));
    server.create_stream(
        r#"CREATE STREAM sched_in (v BIGINT) WITH (DATASOURCE="/sched", TYPE="httppush", FORMAT="json")"#,
    );
    (web, server)
}

fn scheduled_rule(web: &TestServer, options: Value) -> Value {
    json!({"id": "sched", "sql": "SELECT v FROM sched_in",
        "actions": [{"rest": {"url": format!("{}/out", web.base), "method": "post", "sendSingle": true}}],
        "options": options})
}

#[test]
fn a_scheduled_rule_runs_only_in_its_windows_and_a_stop_cancels_the_schedule() {
    let (web, server) = start("schedule");
    // eKuiper's cron takes `@every`: a run of 1.5 s every 3 s keeps the test short.
    let rule = scheduled_rule(&web, json!({"cron": "@every 3s", "duration": "1500ms"}));
    let created = server.call("POST", "/rules", Some(rule));
    assert_eq!(created.0, 201, "{created:?}");

    // Armed and waiting for its first fire, which the status announces.
    let st = wait_rule_status(&server, "sched", |st| st["status"] == json!(WAITING));
    let next = st["nextStartTimestamp"].as_i64().unwrap();
    assert!(next > 0, "{st}");
    let (_, list) = server.json("GET", "/rules", None);
    assert!(
        [json!(WAITING), json!("running")].contains(&list[0]["status"]),
        "{list}"
    );

    // While it waits, nothing reads the stream: a row pushed then is refused, not delivered
    // later. The status read after the push shows the rule was still waiting.
    let (pushed, _) = server.push("/sched", r#"{"v": -1}"#);
    let st = server.json("GET", "/rules/sched/status", None).1;
    if st["status"] == json!(WAITING) {
        assert_eq!(pushed, 404, "a waiting rule took a row: {st}");
    }

    // It starts at the fire and its rows go out while it runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while web.requests().is_empty() {
        let st = wait_rule_status(&server, "sched", |st| st["status"] == json!("running"));
        assert!(st["lastStartTimestamp"].as_i64() >= Some(next), "{st}");
        server.push("/sched", r#"{"v": 1}"#);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            Instant::now() < deadline,
            "no row went out while the rule ran"
        );
    }
    // ... and it stops when its duration is over, waiting for the next fire.
    let st = wait_rule_status(&server, "sched", |st| st["status"] == json!(WAITING));
    assert!(
        st["lastStopTimestamp"].as_i64() > st["lastStartTimestamp"].as_i64(),
        "{st}"
    );
    assert!(
        st["nextStartTimestamp"].as_i64() > st["lastStopTimestamp"].as_i64(),
        "{st}"
    );
    // And runs again at the next one.
    let first_start = st["lastStartTimestamp"].as_i64().unwrap();
    wait_rule_status(&server, "sched", |st| {
        st["status"] == json!("running") && st["lastStartTimestamp"].as_i64() > Some(first_start)
    });
    let delivered: Vec<Value> = web.requests().iter().map(|r| r.json()).collect();
    assert!(
        delivered.iter().all(|r| r["v"] == json!(1)),
        "{delivered:?}"
    );

    // A stop by hand cancels the schedule: stopped, no next start, and it stays so.
    assert_eq!(server.call("POST", "/rules/sched/stop", None).0, 200);
    let st = wait_rule_status(&server, "sched", |st| st["status"] == json!("stopped"));
    assert_eq!(st["nextStartTimestamp"], json!(0), "{st}");
    assert_eq!(st["message"], json!("canceled manually"), "{st}");
    let stopped_at = st["lastStopTimestamp"].as_i64();
    // Past the next fire time it has not started again.
    std::thread::sleep(Duration::from_millis(3_500));
    let st = server.json("GET", "/rules/sched/status", None).1;
    assert_eq!(st["status"], json!("stopped"), "{st}");
    assert_eq!(st["lastStopTimestamp"].as_i64(), stopped_at, "{st}");

    // Started again, it is scheduled again.
    assert_eq!(server.call("POST", "/rules/sched/start", None).0, 200);
    wait_rule_status(&server, "sched", |st| st["status"] == json!(WAITING));
}

#[test]
fn a_rule_with_only_ranges_runs_within_them_and_ends_with_the_last() {
    let (web, server) = start("schedule-ranges");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let rule = scheduled_rule(
        &web,
        json!({"cronDatetimeRange": [{"beginTimestamp": now - 1000, "endTimestamp": now + 2500}]}),
    );
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    // In its range it runs at once, and stops for good once the range has passed.
    let st = wait_rule_status(&server, "sched", |st| {
        st["status"] == json!("running") || st["message"] == json!("schedule terminated")
    });
    assert!(st["lastStartTimestamp"].as_i64() > Some(0), "{st}");
    let st = wait_rule_status(&server, "sched", |st| {
        st["message"] == json!("schedule terminated")
    });
    assert_eq!(st["status"], json!(WAITING), "{st}");
    assert_eq!(st["nextStartTimestamp"], json!(0), "{st}");
}

#[test]
fn bad_schedules_are_refused_naming_the_option() {
    let (web, server) = start("schedule-bad");
    for (options, named) in [
        (
            json!({"cron": "* * * * *"}),
            "rule option cron: needs \"duration\"",
        ),
        (
            json!({"cron": "not a cron", "duration": "1m"}),
            "rule option cron",
        ),
        (
            json!({"cron": "* * * * *", "duration": "later"}),
            "rule option duration",
        ),
        (json!({"duration": "1m"}), "rule option duration"),
        (
            json!({"cronDatetimeRange": [{"begin": "2024-01-01", "end": "2024-01-02 00:00:00"}]}),
            "rule option cronDatetimeRange",
        ),
    ] {
        let (status, body) = server.json(
            "POST",
            "/rules",
            Some(scheduled_rule(&web, options.clone())),
        );
        assert_eq!(status, 400, "{options}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(named),
            "{options}: {body}"
        );
    }
    assert_eq!(server.json("GET", "/rules", None).1, json!([]));
}
