//! `restartStrategy` end to end: quiverd restarting a rule whose source failed, with backoff,
//! until it works or its attempts run out.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::Duration;

use common::{Server, temp_dir, wait_rule_status};
use http::TestServer;
use serde_json::{Value, json};

fn file_rule(server: &Server, id: &str, path: &std::path::Path, web: &TestServer, strategy: Value) {
    server.create_stream(&format!(
        r#"CREATE STREAM {id}_in (v BIGINT) WITH (DATASOURCE="{}", TYPE="file", FORMAT="json")"#,
        path.display()
    ));
    let rule = json!({"id": id, "sql": format!("SELECT v FROM {id}_in"),
        "actions": [{"rest": {"url": format!("{}/{id}", web.base), "method": "post", "sendSingle": true}}],
        "options": {"restartStrategy": strategy}});
    let created = server.call("POST", "/rules", Some(rule));
    assert_eq!(created.0, 201, "{created:?}");
}

#[test]
fn a_failed_rule_is_restarted_with_backoff_until_it_works_or_its_attempts_run_out() {
    let web = TestServer::start();
    let dir = temp_dir("restart");
    let server = Server::start(&dir);

    // The file is not there yet: the source fails, and a restart is scheduled.
    let late = dir.join("late.jsonl");
    file_rule(
        &server,
        "late",
        &late,
        &web,
        json!({"attempts": 50, "delay": 200, "multiplier": 1, "jitterFactor": 0}),
    );
    let st = wait_rule_status(&server, "late", |st| {
        st["nextStartTimestamp"].as_i64() > Some(0)
    });
    assert_eq!(st["status"], json!("stopped by error"), "{st}");
    let message = st["message"].as_str().unwrap();
    assert!(message.contains("cannot open"), "{st}");
    assert!(message.contains("of 50 due at nextStartTimestamp"), "{st}");

    // Once the file exists, the next restart reads it.
    let tmp = dir.join("late.tmp");
    std::fs::write(&tmp, "{\"v\": 1}\n{\"v\": 2}\n{\"v\": 3}\n").unwrap();
    std::fs::rename(&tmp, &late).unwrap();
    let got = web.wait_for(3, Duration::from_secs(20));
    let mut values: Vec<Value> = got.iter().map(|r| r.json()).collect();
    values.sort_by_key(|v| v["v"].as_i64());
    assert_eq!(values, [json!({"v": 1}), json!({"v": 2}), json!({"v": 3})]);
    let st = wait_rule_status(&server, "late", |st| st["status"] == json!("stopped"));
    assert_eq!(st["message"], json!("input ended"), "{st}");
    assert_eq!(st["nextStartTimestamp"], json!(0), "{st}");

    // A file that never comes: two restarts, then the rule stays stopped with the error.
    let never = dir.join("never.jsonl");
    file_rule(
        &server,
        "never",
        &never,
        &web,
        json!({"attempts": 2, "delay": "100ms", "maxDelay": "200ms", "jitterFactor": 0.5}),
    );
    let st = wait_rule_status(&server, "never", |st| {
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("not restarted again")
    });
    assert_eq!(st["status"], json!("stopped by error"), "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("after 2 restarts (restartStrategy attempts 2)"),
        "{st}"
    );
    assert_eq!(st["nextStartTimestamp"], json!(0), "{st}");

    // Without a strategy a failed rule stays stopped at once, as before.
    file_rule(&server, "once", &dir.join("none.jsonl"), &web, Value::Null);
    let st = wait_rule_status(&server, "once", |st| {
        st["status"] == json!("stopped by error")
    });
    let message = st["message"].as_str().unwrap();
    assert!(message.ends_with("(os error 2)"), "{st}");

    // Bad strategies are refused by name.
    for (strategy, named) in [
        (
            json!({"attempts": 3, "multipler": 2}),
            "unknown key \"multipler\"",
        ),
        (json!({"attempts": 3, "jitterFactor": 3}), "jitterFactor"),
    ] {
        let rule = json!({"id": "bad", "sql": "SELECT v FROM once_in",
            "actions": [{"log": {}}], "options": {"restartStrategy": strategy}});
        let (status, body) = server.json("POST", "/rules", Some(rule));
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
    server.stop();
}
