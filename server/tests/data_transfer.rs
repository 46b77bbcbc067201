//! `/data/export` and `/data/import` end to end: an export imported into a fresh quiverd runs
//! the same rules with the same outputs; a failed import changes nothing.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::Duration;

use common::{Server, temp_dir, wait_rule_status};
use http::TestServer;
use serde_json::{Value, json};

const STREAM: &str = r#"CREATE STREAM readings (device STRING, t BIGINT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#;

/// A running rule that posts hot readings to `web`, and a stopped one.
fn populate(server: &Server, web: &TestServer) {
    server.create_stream(STREAM);
    let hot = json!({"id": "hot", "sql": "SELECT device, t * 10 AS t10 FROM readings WHERE t > 20",
        "actions": [{"rest": {"url": format!("{}/hot", web.base), "method": "post", "sendSingle": true}}]});
    assert_eq!(server.call("POST", "/rules", Some(hot)).0, 201);
    let idle = json!({"id": "idle", "sql": "SELECT * FROM readings", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(idle)).0, 201);
    assert_eq!(server.call("POST", "/rules/idle/stop", None).0, 200);
}

/// Pushes the same readings and returns what the rule posted, ordered by value.
fn outputs(server: &Server, web: &TestServer) -> Vec<Value> {
    wait_rule_status(server, "hot", |st| st["status"] == json!("running"));
    for t in [10, 25, 30] {
        let body = json!({"device": "a", "t": t}).to_string();
        assert_eq!(server.push("/readings", &body).0, 200);
    }
    // Sorted: with 2 workers the two rows may reach the sink in either order.
    let mut rows: Vec<Value> = web
        .wait_for(2, Duration::from_secs(20))
        .iter()
        .map(|r| r.json())
        .collect();
    rows.sort_by_key(|r| r["t10"].as_i64());
    rows
}

fn import(server: &Server, query: &str, doc: &Value) -> (u16, Value) {
    server.json(
        "POST",
        &format!("/data/import{query}"),
        Some(json!({"content": doc.to_string()})),
    )
}

#[test]
fn an_export_imported_into_a_fresh_server_runs_the_same_rules_with_the_same_outputs() {
    let web_a = TestServer::start();
    let a = Server::start(&temp_dir("data-a"));
    populate(&a, &web_a);
    let (status, text) = a.call("GET", "/data/export", None);
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    for section in [
        "streams",
        "tables",
        "rules",
        "nativePlugins",
        "sourceConfig",
        "Service",
    ] {
        assert!(doc[section].is_object(), "{section} missing: {doc}");
    }
    assert_eq!(doc["streams"]["readings"], json!(STREAM));
    let rule: Value = serde_json::from_str(doc["rules"]["idle"].as_str().unwrap()).unwrap();
    assert_eq!(rule["triggered"], json!(false), "{rule}");

    // The receiving server posts to its own receiver: the rule's URL is rewritten, nothing else.
    let web_b = TestServer::start();
    let b = Server::start(&temp_dir("data-b"));
    let doc_b: Value = serde_json::from_str(&text.replace(&web_a.base, &web_b.base)).unwrap();
    let (status, body) = import(&b, "", &doc_b);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ErrorMsg"], json!(""), "{body}");
    assert_eq!(b.json("GET", "/rules", None).1.as_array().unwrap().len(), 2);
    assert_eq!(
        b.json("GET", "/rules/idle/status", None).1["status"],
        json!("stopped")
    );
    let expected = outputs(&a, &web_a);
    assert_eq!(
        expected,
        [
            json!({"device": "a", "t10": 250}),
            json!({"device": "a", "t10": 300})
        ]
    );
    assert_eq!(outputs(&b, &web_b), expected);

    // Exporting some rules takes them and the streams they read only.
    let (status, text) = b.call("POST", "/data/export", Some(json!(["hot"])));
    assert_eq!(status, 200, "{text}");
    let some: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&String> = some["rules"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["hot"]);
    assert_eq!(some["streams"]["readings"], json!(STREAM));
    assert_eq!(b.call("POST", "/data/export", Some(json!(["nope"]))).0, 404);

    // The status of an import that worked has every section empty.
    let st = b.json("GET", "/data/import/status", None).1;
    assert!(
        st.as_object().unwrap().values().all(|s| s == &json!({})),
        "{st}"
    );
}

#[test]
fn a_failed_import_changes_nothing_and_its_status_names_the_item() {
    let web = TestServer::start();
    let server = Server::start(&temp_dir("data-fail"));
    populate(&server, &web);
    let before = server.call("GET", "/data/export", None).1;
    let other = r#"CREATE STREAM other (v BIGINT) WITH (DATASOURCE="/other", TYPE="httppush", FORMAT="json")"#;
    let doc = json!({
        "streams": {"other": other},
        "rules": {
            "good": json!({"id": "good", "sql": "SELECT v FROM other", "actions": [{"log": {}}]}).to_string(),
            "bad": json!({"id": "bad", "sql": "SELECT nope( FROM other", "actions": [{"log": {}}]}).to_string(),
        }
    });
    for query in ["", "?partial=1"] {
        let (status, body) = import(&server, query, &doc);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("rule \"bad\""),
            "{body}"
        );
        assert_eq!(
            server.call("GET", "/data/export", None).1,
            before,
            "{query}"
        );
        assert_eq!(
            server.json("GET", "/rules/hot/status", None).1["status"],
            json!("running")
        );
        let st = server.json("GET", "/data/import/status", None).1;
        assert!(st["rules"]["bad"].as_str().unwrap().contains("bad"), "{st}");
        assert_eq!(st["streams"], json!({}), "{st}");
    }
    // A full import whose rule reads a stream the import itself removes passes the check and
    // fails once the old streams are gone: what was removed comes back as it was.
    let orphan = json!({"id": "orphan", "sql": "SELECT * FROM readings", "actions": [{"log": {}}]});
    let (status, body) = import(
        &server,
        "",
        &json!({"rules": {"orphan": orphan.to_string()}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("rule \"orphan\""),
        "{body}"
    );
    assert_eq!(server.call("GET", "/data/export", None).1, before);
    assert_eq!(
        server.json("GET", "/rules/idle/status", None).1["status"],
        json!("stopped")
    );

    // The rule kept running through the failed imports: its rows still go out.
    assert_eq!(outputs(&server, &web).len(), 2);

    // Sections Quiver has no equivalent for are refused when filled, by name.
    let (status, body) = import(&server, "", &json!({"scripts": {"area": "{}"}}));
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("\"scripts\""),
        "{body}"
    );
    let (status, body) = import(&server, "", &json!({"nativePlugins": {"sinks_nope": "{}"}}));
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("not installed"),
        "{body}"
    );
    let (status, body) = import(&server, "?stop=1", &json!({}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.call("GET", "/data/export", None).1, before);
}

#[test]
fn a_partial_import_keeps_the_rest_and_a_full_one_replaces_everything() {
    let web = TestServer::start();
    let server = Server::start(&temp_dir("data-partial"));
    populate(&server, &web);
    let other = r#"CREATE STREAM other (v BIGINT) WITH (DATASOURCE="/other", TYPE="httppush", FORMAT="json")"#;
    let idle = json!({"id": "idle", "sql": "SELECT v FROM other", "actions": [{"log": {}}]});
    let doc = json!({"streams": {"other": other}, "rules": {"idle": idle.to_string()}});
    let (status, body) = import(&server, "?partial=1", &doc);
    assert_eq!(status, 200, "{body}");
    let rules: Vec<String> = server
        .json("GET", "/rules", None)
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ["hot", "idle"]);
    // The named rule was replaced (and runs, as its JSON says); the other is untouched.
    let (_, shown) = server.json("GET", "/rules/idle", None);
    assert_eq!(shown["sql"], json!("SELECT v FROM other"));
    wait_rule_status(&server, "idle", |st| st["status"] == json!("running"));

    let (status, body) = import(&server, "", &doc);
    assert_eq!(status, 200, "{body}");
    let rules = server.json("GET", "/rules", None).1;
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(server.json("GET", "/streams", None).1, json!(["other"]));
}

const PROTO: &str =
    "syntax = \"proto3\"; package readings; message Reading { string device = 1; int64 t = 2; }";
const PB_STREAM: &str = r#"CREATE STREAM pb () WITH (DATASOURCE="/pb", TYPE="httppush", FORMAT="protobuf", SCHEMAID="readings.Reading")"#;

/// A protobuf schema, a stream and rule using it, and an MQTT connection a rule publishes
/// through.
fn populate_registry(server: &Server) {
    let schema = json!({"name": "readings", "content": PROTO});
    let (status, body) = server.call("POST", "/schemas/protobuf", Some(schema));
    assert_eq!(status, 201, "{body}");
    let conn = json!({"id": "edge", "typ": "mqtt",
        "props": {"server": "tcp://127.0.0.1:1883", "username": "quiver", "password": "s3cret-pw"}});
    let (status, body) = server.call("POST", "/connections", Some(conn));
    assert_eq!(status, 201, "{body}");
    server.create_stream(PB_STREAM);
    let pb = json!({"id": "pb_log", "sql": "SELECT device, t FROM pb", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(pb)).0, 201);
    let out = json!({"id": "to_edge", "sql": "SELECT device FROM pb",
        "actions": [{"mqtt": {"connectionSelector": "edge", "topic": "quiver/export-test"}}]});
    assert_eq!(server.call("POST", "/rules", Some(out)).0, 201);
}

#[test]
fn schemas_and_connections_travel_with_the_data_document() {
    let a = Server::start(&temp_dir("data-registry-a"));
    populate_registry(&a);
    let (status, text) = a.call("GET", "/data/export", None);
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let schema: Value =
        serde_json::from_str(doc["Schema"]["protobuf_readings"].as_str().unwrap()).unwrap();
    assert_eq!(
        schema,
        json!({"type": "protobuf", "name": "readings", "content": PROTO})
    );
    // Secrets are exported as stored, as the rules' are: the document must import again.
    let conn: Value = serde_json::from_str(
        doc["connectionConfig"]["connections.mqtt.edge"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(conn["password"], json!("s3cret-pw"), "{conn}");
    assert_eq!(conn["server"], json!("tcp://127.0.0.1:1883"), "{conn}");

    // A fresh server gets the schema and the connection before the streams that need them.
    let b = Server::start(&temp_dir("data-registry-b"));
    let (status, body) = import(&b, "", &doc);
    assert_eq!(status, 200, "{body}");
    let (_, shown) = b.json("GET", "/schemas/protobuf/readings", None);
    assert_eq!(shown["content"], json!(PROTO));
    let (status, shown) = b.json("GET", "/connections/edge", None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["props"]["password"], json!("******"), "{shown}");
    assert_eq!(shown["props"]["username"], json!("quiver"), "{shown}");
    assert_eq!(b.json("GET", "/streams", None).1, json!(["pb"]));
    wait_rule_status(&b, "pb_log", |st| st["status"] == json!("running"));
    wait_rule_status(&b, "to_edge", |st| st["status"] == json!("running"));
    // Exported again, the schema and the connection are as they left the first server.
    let again: Value = serde_json::from_str(&b.call("GET", "/data/export", None).1).unwrap();
    assert_eq!(again["Schema"], doc["Schema"]);
    assert_eq!(again["connectionConfig"], doc["connectionConfig"]);

    // Importing it again over itself (schema and connection exist, rules running) works.
    let (status, body) = import(&b, "", &doc);
    assert_eq!(status, 200, "{body}");

    // Exporting some rules takes the schemas and connections those rules use, only.
    let (_, some) = b.call("POST", "/data/export", Some(json!(["pb_log"])));
    let some: Value = serde_json::from_str(&some).unwrap();
    assert!(some["Schema"]["protobuf_readings"].is_string(), "{some}");
    assert_eq!(some["connectionConfig"], json!({}), "{some}");
    let (_, some) = b.call("POST", "/data/export", Some(json!(["to_edge"])));
    let some: Value = serde_json::from_str(&some).unwrap();
    assert!(
        some["connectionConfig"]["connections.mqtt.edge"].is_string(),
        "{some}"
    );
}

#[test]
fn a_failed_import_puts_schemas_and_connections_back() {
    let server = Server::start(&temp_dir("data-registry-fail"));
    populate_registry(&server);
    let before = server.call("GET", "/data/export", None).1;
    let mut doc: Value = serde_json::from_str(&before).unwrap();

    // A schema that does not compile: refused by its key, nothing changes.
    doc["Schema"]["protobuf_bad"] =
        json!(json!({"type": "protobuf", "name": "bad", "content": "message {"}).to_string());
    let (status, body) = import(&server, "", &doc);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Schema \"protobuf_bad\""),
        "{body}"
    );
    let st = server.json("GET", "/data/import/status", None).1;
    assert!(st["Schema"]["protobuf_bad"].is_string(), "{st}");
    assert_eq!(server.call("GET", "/data/export", None).1, before);

    // A new schema and a changed connection, then a rule that reads a stream the import
    // removes (it checks, then fails once the old streams are gone): the schema is removed
    // again and the connection is as it was.
    let mut doc: Value = serde_json::from_str(&before).unwrap();
    doc["streams"] = json!({});
    doc["Schema"]["protobuf_more"] = json!(
        json!({"type": "protobuf", "name": "more", "content": "syntax = \"proto3\"; message M { int64 v = 1; }"})
            .to_string()
    );
    doc["connectionConfig"]["connections.mqtt.edge"] = json!(
        json!({"server": "tcp://127.0.0.1:1883", "username": "other", "password": "changed-pw"})
            .to_string()
    );
    let orphan = json!({"id": "orphan", "sql": "SELECT * FROM pb", "actions": [{"log": {}}]});
    doc["rules"] = json!({"orphan": orphan.to_string()});
    let (status, body) = import(&server, "", &doc);
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("changed-pw"), "{body}");
    assert_eq!(server.call("GET", "/data/export", None).1, before);
    assert_eq!(server.call("GET", "/schemas/protobuf/more", None).0, 404);
    let (_, shown) = server.json("GET", "/connections/edge", None);
    assert_eq!(shown["props"]["username"], json!("quiver"), "{shown}");
    wait_rule_status(&server, "to_edge", |st| st["status"] == json!("running"));

    // Malformed entries are refused by key.
    for (section, key, value) in [
        (
            "Schema",
            "protobuf_x",
            json!({"type": "protobuf", "name": "y", "content": PROTO}),
        ),
        (
            "connectionConfig",
            "edge",
            json!({"server": "tcp://127.0.0.1:1883"}),
        ),
        (
            "connectionConfig",
            "connections.sql.db",
            json!({"url": "mysql://user:pw-123@h/d"}),
        ),
    ] {
        let doc = json!({ section: { key: value.to_string() } });
        let (status, body) = import(&server, "?partial=1", &doc);
        assert_eq!(status, 400, "{section} {key}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(key),
            "{section} {key}: {body}"
        );
    }
    assert_eq!(server.call("GET", "/data/export", None).1, before);
}
