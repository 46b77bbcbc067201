//! Operations over REST through a real `quiverd`: ruleset export and import (eKuiper's
//! format, checked whole), rule tags kept in the catalog, bulk start and stop.

mod common;
#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::Duration;

use common::{Server, temp_dir};
use http::TestServer;
use serde_json::{Value, json};

/// A stream, a table and a tagged rule posting what it selects to `web`.
fn populate(server: &Server, web: &TestServer) {
    server.create_stream(
        r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/rs/readings", TYPE="httppush", FORMAT="json")"#,
    );
    let (status, body) = server.call(
        "POST",
        "/tables",
        Some(json!({"sql": r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="rs_devices", TYPE="memory", KEY="id")"#})),
    );
    assert_eq!(status, 201, "{body}");
    let rule = json!({
        "id": "hot",
        "sql": "SELECT device, temperature FROM readings WHERE temperature > 20",
        "actions": [{"rest": {"url": format!("{}/out", web.base), "method": "post", "sendSingle": true}}],
        "tags": ["ops"]
    });
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
}

/// Pushes three readings and returns the bodies the rule posted, sorted.
fn run(server: &Server, web: &TestServer) -> Vec<Value> {
    let readings = r#"[{"device":"a","temperature":25},{"device":"b","temperature":10},{"device":"c","temperature":30}]"#;
    assert_eq!(server.push("/rs/readings", readings).0, 200);
    let mut out: Vec<Value> = web
        .wait_for(2, Duration::from_secs(20))
        .iter()
        .map(http::Recorded::json)
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

#[test]
fn an_exported_ruleset_imports_into_a_fresh_server_and_runs_the_same() {
    let web = TestServer::start();
    let dir = temp_dir("ruleset-export");
    let server = Server::start(&dir);
    populate(&server, &web);
    let before = run(&server, &web);
    assert_eq!(
        before,
        vec![
            json!({"device": "a", "temperature": 25}),
            json!({"device": "c", "temperature": 30})
        ]
    );

    let (status, exported) = server.json("POST", "/ruleset/export", None);
    assert_eq!(status, 200, "{exported}");
    assert!(
        exported["streams"]["readings"]
            .as_str()
            .is_some_and(|s| s.starts_with("CREATE STREAM readings")),
        "{exported}"
    );
    assert!(
        exported["tables"]["devices"]
            .as_str()
            .is_some_and(|s| s.starts_with("CREATE TABLE devices")),
        "{exported}"
    );
    // A rule is its JSON as text, tags included.
    let rule: Value =
        serde_json::from_str(exported["rules"]["hot"].as_str().expect("rule text")).unwrap();
    assert_eq!(rule["id"], "hot");
    assert_eq!(rule["tags"], json!(["ops"]));
    server.stop();

    let web2 = TestServer::start();
    let text = exported.to_string().replace(&web.base, &web2.base);
    let dir2 = temp_dir("ruleset-import");
    let fresh = Server::start(&dir2);
    let (status, body) = fresh.call("POST", "/ruleset/import", Some(json!({"content": text})));
    assert_eq!(
        (status, body.as_str()),
        (200, "imported 1 streams, 1 tables and 1 rules")
    );
    assert_eq!(run(&fresh, &web2), before);
    assert_eq!(fresh.json("GET", "/tables", None).1, json!(["devices"]));
    // Existing names are left alone, as in eKuiper.
    let (status, body) = fresh.call("POST", "/ruleset/import", Some(json!({"content": text})));
    assert_eq!(
        (status, body.as_str()),
        (200, "imported 0 streams, 0 tables and 0 rules")
    );
    fresh.stop();
}

#[test]
fn a_bad_import_names_the_item_and_creates_nothing() {
    let dir = temp_dir("ruleset-bad");
    let server = Server::start(&dir);
    let good_stream = r#"CREATE STREAM s1 () WITH (DATASOURCE="rs_bad_s1", TYPE="memory")"#;
    let good_rule = json!({"id": "r1", "sql": "SELECT * FROM s1", "actions": [{"log": {}}]});
    let cases = [
        (
            json!({
                "streams": {"s1": good_stream},
                "rules": {
                    "r1": good_rule.to_string(),
                    "r2": json!({"id": "r2", "sql": "SELECT * FROM nowhere", "actions": [{"log": {}}]}).to_string()
                }
            }),
            "rule \"r2\"",
        ),
        (
            json!({"streams": {"s1": good_stream, "s2": "CREATE STREAM s2 ("}, "rules": {"r1": good_rule.to_string()}}),
            "stream \"s2\"",
        ),
        (
            json!({"streams": {"s1": good_stream}, "rules": {"r1": json!({"id": "r1", "sql": "SELECT * FROM s1", "actions": [{"nosuchsink": {}}]}).to_string()}}),
            "rule \"r1\"",
        ),
        (
            json!({"streams": {"other": good_stream}}),
            "stream \"other\": the statement creates \"s1\"",
        ),
        (
            json!({"tables": {"s1": good_stream}}),
            "table \"s1\": the statement does not create a table",
        ),
        (json!({"streams": {}, "views": {}}), "unknown field `views`"),
    ];
    for (set, named) in cases {
        let (status, body) = server.json(
            "POST",
            "/ruleset/import",
            Some(json!({"content": set.to_string()})),
        );
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().expect("an error message");
        assert!(message.contains(named), "{message} should name {named}");
        assert_eq!(server.json("GET", "/streams", None).1, json!([]));
        assert_eq!(server.json("GET", "/rules", None).1, json!([]));
    }
    let (status, body) = server.json(
        "POST",
        "/ruleset/import",
        Some(json!({"file": "file:///tmp/a.json"})),
    );
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"file\" is not supported"),
        "{body}"
    );
    server.stop();
}

#[test]
fn tags_select_rules_and_survive_a_restart() {
    let dir = temp_dir("ruleset-tags");
    let server = Server::start(&dir);
    server.create_stream(r#"CREATE STREAM t () WITH (DATASOURCE="rs_tags", TYPE="memory")"#);
    for id in ["r1", "r2", "r3"] {
        let rule = json!({"id": id, "sql": "SELECT * FROM t", "actions": [{"log": {}}]});
        assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    }
    let ok = |method: &str, path: &str, body: Value| {
        let (status, text) = server.call(method, path, Some(body));
        assert_eq!(status, 200, "{method} {path}: {text}");
    };
    ok("PUT", "/rules/r1/tags", json!({"tags": ["x", "y"]}));
    ok("PUT", "/rules/r2/tags", json!({"tags": ["x"]}));
    ok("PATCH", "/rules/r2/tags", json!({"tags": ["z", "x"]}));
    ok("DELETE", "/rules/r1/tags", json!({"keys": ["y"]}));
    let matching = |server: &Server, tags: Value| {
        let (status, body) = server.json("GET", "/rules/tags/match", Some(json!({"tags": tags})));
        assert_eq!(status, 200, "{body}");
        body
    };
    assert_eq!(
        matching(&server, json!(["x"])),
        json!({"rules": ["r1", "r2"]})
    );
    assert_eq!(
        matching(&server, json!(["x", "z"])),
        json!({"rules": ["r2"]})
    );
    assert_eq!(
        server
            .call("PUT", "/rules/nope/tags", Some(json!({"tags": ["x"]})))
            .0,
        404
    );
    assert_eq!(
        server
            .call("PUT", "/rules/r1/tags", Some(json!({"tags": "x"})))
            .0,
        400
    );
    server.stop();

    let server = Server::start(&dir);
    let (_, r2) = server.json("GET", "/rules/r2", None);
    assert_eq!(r2["tags"], json!(["x", "z"]));
    assert_eq!(matching(&server, json!(["z"])), json!({"rules": ["r2"]}));
    let (_, list) = server.json("GET", "/rules", None);
    assert_eq!(list[0]["tags"], json!(["x"]), "{list}");
    assert_eq!(list[2]["tags"], Value::Null, "{list}");
    server.stop();
}

#[test]
fn bulk_start_and_stop_answer_per_rule() {
    let dir = temp_dir("ruleset-bulk");
    let server = Server::start(&dir);
    server.create_stream(r#"CREATE STREAM b () WITH (DATASOURCE="rs_bulk", TYPE="memory")"#);
    for (id, tags) in [
        ("b1", json!(["g"])),
        ("b2", json!(["g"])),
        ("b3", json!([])),
    ] {
        let rule =
            json!({"id": id, "sql": "SELECT * FROM b", "actions": [{"log": {}}], "tags": tags});
        assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    }
    let statuses = |server: &Server| -> Vec<String> {
        let (_, list) = server.json("GET", "/rules", None);
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, results) = server.json(
        "POST",
        "/rules/bulkstop",
        Some(json!([{"id": "b1"}, {"id": "b3"}, {"id": "nope"}])),
    );
    assert_eq!(status, 200, "{results}");
    assert_eq!(results[0], json!({"id": "b1", "success": true}));
    assert_eq!(results[1], json!({"id": "b3", "success": true}));
    assert_eq!(results[2]["success"], json!(false));
    assert!(
        results[2]["error"].as_str().unwrap().contains("nope"),
        "{results}"
    );
    assert_eq!(statuses(&server), ["stopped", "running", "stopped"]);

    let (status, results) = server.json("POST", "/rules/bulkstop", Some(json!({"tags": ["g"]})));
    assert_eq!(status, 200, "{results}");
    assert_eq!(statuses(&server), ["stopped", "stopped", "stopped"]);
    // The running state is in the catalog: a restart keeps them stopped.
    server.stop();
    let server = Server::start(&dir);
    assert_eq!(statuses(&server), ["stopped", "stopped", "stopped"]);
    let (status, _) = server.json(
        "POST",
        "/rules/bulkstart",
        Some(json!([{"id": "b2"}, {"id": "b3"}])),
    );
    assert_eq!(status, 200);
    assert_eq!(statuses(&server), ["stopped", "running", "running"]);

    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"id": format!("x{i}")}))
        .collect();
    let (status, body) = server.json("POST", "/rules/bulkstart", Some(Value::Array(too_many)));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("limit of 10000"),
        "{body}"
    );
    for bad in [json!({"tags": []}), json!([{"name": "b1"}]), json!("b1")] {
        assert_eq!(server.call("POST", "/rules/bulkstop", Some(bad)).0, 400);
    }
    server.stop();
}

#[test]
fn a_graph_rule_imports_with_the_stream_it_reads() {
    let dir = temp_dir("ruleset-graph");
    let server = Server::start(&dir);
    let graph = json!({
        "id": "g",
        "graph": {
            "nodes": {
                "gs": {"type": "source", "nodeType": "httppush", "props": {"sourceName": "gs"}},
                "out": {"type": "sink", "nodeType": "log", "props": {}}
            },
            "topo": {"sources": ["gs"], "edges": {"gs": ["out"]}}
        }
    });
    let set = json!({
        "streams": {"gs": r#"CREATE STREAM gs () WITH (DATASOURCE="/rs/graph", TYPE="httppush", FORMAT="json")"#},
        "rules": {"g": graph.to_string()}
    });
    let (status, body) = server.call(
        "POST",
        "/ruleset/import",
        Some(json!({"content": set.to_string()})),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "imported 1 streams, 0 tables and 1 rules")
    );
    assert_eq!(server.push("/rs/graph", r#"{"a": 1}"#).0, 200);
    common::wait_metric(&server, "g", "sink_log_0_0_records_in_total", 1);
    server.stop();
}
