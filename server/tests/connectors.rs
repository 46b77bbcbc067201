//! quiverd end to end with the built-in connectors that need no broker: the `rest` sink against
//! a real HTTP server the test runs on loopback, the `simulator` source and the `nop` sink.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::Duration;

use common::{Server, temp_dir, wait_metric};
use http::TestServer;
use serde_json::json;

#[test]
fn rest_sink_posts_results_and_counts_failed_requests() {
    let web = TestServer::start();
    let dir = temp_dir("rest-sink");
    let server = Server::start(&dir);
    server.create_stream(
        r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );

    // Properties are checked when the rule is created: the error names the property.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "typo", "sql": "SELECT * FROM readings",
                    "actions": [{"rest": {"url": web.base, "methd": "post"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown property \"methd\""),
        "{body}"
    );
    let rule = json!({
        "id": "hot",
        "sql": "SELECT device, temperature FROM readings WHERE temperature > 20",
        "actions": [
            {"rest": {
                "url": format!("{}/devices/{{{{.device}}}}", web.base),
                "method": "post",
                "sendSingle": true,
                "headers": {"X-Source": "quiver"}
            }},
            {"rest": {"url": format!("{}/status/500", web.base), "method": "put"}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    assert_eq!(
        server
            .push(
                "/readings",
                r#"[{"device": "a", "temperature": 25}, {"device": "b", "temperature": 10}, {"device": "c", "temperature": 30}]"#
            )
            .0,
        200
    );
    let got = web.wait_for(3, Duration::from_secs(20));
    let mut posts: Vec<_> = got.iter().filter(|r| r.method == "POST").collect();
    posts.sort_by_key(|r| r.path.clone());
    assert_eq!(posts.len(), 2, "{got:?}");
    assert_eq!(posts[0].path, "/devices/a");
    assert_eq!(posts[0].json(), json!({"device": "a", "temperature": 25}));
    assert_eq!(posts[0].header("x-source"), Some("quiver"));
    assert_eq!(posts[1].path, "/devices/c");
    let put = got.iter().find(|r| r.method == "PUT").expect("the PUT");
    assert_eq!(
        put.json(),
        json!([{"device": "a", "temperature": 25}, {"device": "c", "temperature": 30}])
    );

    // The 500 counts against the second sink, with the status and the answer in the message.
    let st = wait_metric(&server, "hot", "sink_rest_1_0_exceptions_total", 2);
    let last = st["sink_rest_1_0_last_exception"].as_str().unwrap_or("");
    assert!(
        last.contains("answered 500 Internal Server Error: failed with 500"),
        "{st}"
    );
    assert_eq!(st["sink_rest_0_0_records_out_total"], json!(2), "{st}");
    assert_eq!(st["sink_rest_0_0_exceptions_total"], json!(0), "{st}");
    assert_eq!(st["status"], json!("running"), "{st}");
}

#[test]
fn simulator_rows_replay_into_rest_and_nop_sinks() {
    let web = TestServer::start();
    let dir = temp_dir("simulator");
    let config = dir.join("profiles.yaml");
    std::fs::write(
        &config,
        "simulator:\n  three:\n    data:\n      - {id: 1, temperature: 20.5}\n      - {id: 2, temperature: 21.5}\n      - {id: 3, temperature: 22.5}\n    interval: 20\n    loop: false\n",
    )
    .unwrap();
    let server = Server::start_with(&dir, Some(&config));
    server.create_stream(
        r#"CREATE STREAM sim (id BIGINT, temperature FLOAT) WITH (TYPE="simulator", CONF_KEY="three")"#,
    );
    let rule = json!({
        "id": "replay",
        "sql": "SELECT id, temperature * 2 AS t FROM sim",
        "actions": [
            {"rest": {"url": format!("{}/in", web.base), "method": "post", "sendSingle": true}},
            {"nop": {}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let got = web.wait_for(3, Duration::from_secs(20));
    let bodies: Vec<_> = got.iter().map(|r| r.json()).collect();
    assert_eq!(
        bodies,
        [
            json!({"id": 1, "t": 41}),
            json!({"id": 2, "t": 43}),
            json!({"id": 3, "t": 45})
        ]
    );
    let st = wait_metric(&server, "replay", "sink_nop_1_0_records_out_total", 3);
    assert_eq!(st["sink_nop_1_0_exceptions_total"], json!(0), "{st}");
    // loop: false ends the input after one pass: nothing more arrives.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(web.requests().len(), 3);

    // An unknown profile property stops the stream's rules from starting, naming it.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "simulator:\n  default:\n    dta: []\n").unwrap();
    drop(server);
    let server = Server::start_with(&temp_dir("simulator-bad"), Some(&bad));
    server.create_stream(r#"CREATE STREAM sim2 () WITH (TYPE="simulator")"#);
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "r", "sql": "SELECT * FROM sim2", "actions": [{"nop": {}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown property \"dta\""),
        "{body}"
    );
}

#[test]
fn file_sink_writes_csv_and_json_and_closes_them_when_the_rule_stops() {
    let dir = temp_dir("file-sink");
    let out = dir.join("out");
    let server = Server::start(&dir);
    server.create_stream(
        r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );
    // eKuiper's own example properties, `format` included, are accepted.
    let rule = json!({
        "id": "archive",
        "sql": "SELECT device, temperature FROM readings",
        "actions": [
            {"file": {
                "path": format!("{}/{{{{.device}}}}.csv", out.display()),
                "fileType": "csv", "format": "delimited", "hasHeader": true,
                "sendSingle": true
            }},
            {"file": {
                "path": out.join("all.json").display().to_string(),
                "fileType": "json", "format": "json", "compression": "gzip"
            }}
        ]
    });
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server
            .push(
                "/readings",
                r#"[{"device": "a", "temperature": 20.5}, {"device": "b", "temperature": 21}]"#
            )
            .0,
        200
    );
    // The second push goes out once the first is written, so the order is known.
    wait_metric(&server, "archive", "sink_file_1_0_records_out_total", 2);
    assert_eq!(
        server
            .push("/readings", r#"{"device": "a", "temperature": 22}"#)
            .0,
        200
    );
    wait_metric(&server, "archive", "sink_file_0_0_records_out_total", 3);
    wait_metric(&server, "archive", "sink_file_1_0_records_out_total", 3);
    // Plain files are readable as the rows arrive.
    assert_eq!(
        std::fs::read_to_string(out.join("a.csv")).unwrap(),
        "device,temperature\na,20.5\na,22\n"
    );
    assert_eq!(server.call("POST", "/rules/archive/stop", None).0, 200);
    // Stopping closes the JSON array and the last gzip member.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let all = loop {
        let gz = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(out.join("all.json"))
            .output()
            .unwrap();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&gz.stdout) {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "all.json never closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        all,
        json!([
            [{"device": "a", "temperature": 20.5}, {"device": "b", "temperature": 21}],
            [{"device": "a", "temperature": 22}]
        ])
    );
    assert_eq!(
        std::fs::read_to_string(out.join("b.csv")).unwrap(),
        "device,temperature\nb,21\n"
    );

    // A sink that writes rows, not bytes, still refuses `compression` by name.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "z", "sql": "SELECT * FROM readings",
                    "actions": [{"memory": {"topic": "z", "compression": "gzip"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("compression"),
        "{body}"
    );
}

#[test]
fn httppull_source_feeds_a_rule_once_per_new_answer() {
    let web = TestServer::start();
    let dir = temp_dir("httppull");
    let config = dir.join("profiles.yaml");
    std::fs::write(
        &config,
        format!(
            "httppull:\n  demo:\n    url: {}/echo\n    method: post\n    interval: 30\n    incremental: true\n    body: '{{\"device\": \"x\", \"temperature\": 30}}'\n",
            web.base
        ),
    )
    .unwrap();
    let server = Server::start_with(&dir, Some(&config));
    server.create_stream(
        r#"CREATE STREAM pulled (device STRING, temperature FLOAT) WITH (DATASOURCE="/readings", TYPE="httppull", CONF_KEY="demo")"#,
    );
    let rule = json!({
        "id": "pull",
        "sql": "SELECT device, temperature + 1 AS t FROM pulled",
        "actions": [{"rest": {"url": format!("{}/sink", web.base), "method": "post"}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    // Several pulls answer the same body: the rule sees it once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pulls = web
            .requests()
            .iter()
            .filter(|r| r.path == "/echo/readings")
            .count();
        if pulls >= 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {pulls} pulls");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = wait_metric(&server, "pull", "sink_rest_0_0_records_out_total", 1);
    assert_eq!(st["source_pulled_0_records_in_total"], json!(1), "{st}");
    let sent: Vec<_> = web
        .requests()
        .into_iter()
        .filter(|r| r.path == "/sink")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json(), json!([{"device": "x", "t": 31}]));
}
