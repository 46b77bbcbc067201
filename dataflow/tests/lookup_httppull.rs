//! httppull lookup tables against a real HTTP server on loopback: one request per batch of
//! keys, rows matched on the table's key, and a failing server counted as exceptions while the
//! rule keeps running.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::collections::HashMap;

use http::TestServer;
use quiver_dataflow::Engine;
use serde_json::{Value, json};

/// An engine with a memory stream `demo` and the httppull lookup table `devices` whose
/// profile is `profile`, and the rule `sql` into a memory topic.
fn setup(
    rt: &tokio::runtime::Runtime,
    profile: Value,
    sql: &str,
) -> (
    Engine,
    tokio::sync::mpsc::Receiver<quiver_connectors::memory::MemoryMessage>,
) {
    let engine = common::engine(rt, 2);
    let mut httppull = HashMap::new();
    httppull.insert(
        "test".to_string(),
        profile.as_object().expect("profile object").clone(),
    );
    engine.set_source_profiles(HashMap::from([("httppull".to_string(), httppull)]));
    engine
        .create_stream(
            r#"CREATE STREAM demo (device STRING, temperature BIGINT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
        )
        .unwrap();
    engine
        .create_stream(
            r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="/devices", TYPE="httppull", KIND="lookup", KEY="id", CONF_KEY="test")"#,
        )
        .unwrap();
    let out = common::memory_rule(&engine, "lookup", sql);
    (engine, out)
}

#[test]
fn httppull_lookup_joins_rows_of_the_answer_by_key() {
    let server = TestServer::start();
    // `/echo` answers the request body: the "service" returns these devices.
    let devices = json!([
        {"id": "a", "location": "hall"},
        {"id": "b", "location": "lab"},
        {"id": "b", "location": "roof"}
    ]);
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({"url": format!("{}/echo", server.base), "method": "post",
               "body": devices.to_string()}),
        "SELECT device, temperature, location FROM demo INNER JOIN devices ON demo.device = devices.id",
    );
    let rows = rt.block_on(async {
        let batch: Vec<Value> = [("a", 1), ("zz", 2), ("b", 3)]
            .iter()
            .map(|(d, t)| json!({"device": d, "temperature": t}))
            .collect();
        engine
            .connectors()
            .memory()
            .publish_json("demo", Value::Array(batch).to_string().into_bytes())
            .await;
        common::finish_rule(&engine, "lookup", "demo", &mut out).await
    });
    assert_eq!(
        rows,
        vec![
            json!({"device": "a", "temperature": 1, "location": "hall"}),
            json!({"device": "b", "temperature": 3, "location": "lab"}),
            json!({"device": "b", "temperature": 3, "location": "roof"}),
        ]
    );
    let requests = server.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.path == "/echo/devices"));
    // One request per batch of keys, not per key.
    assert!(requests.len() <= 2, "{} requests", requests.len());
    assert_eq!(common::exceptions(&engine, "lookup").0, 0);
    engine.shutdown();
}

#[test]
fn a_failing_server_is_counted_and_the_rule_keeps_running() {
    let server = TestServer::start();
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({"url": format!("{}/status/503", server.base), "timeout": 1000}),
        "SELECT device, location FROM demo LEFT JOIN devices ON demo.device = devices.id",
    );
    let rows = rt.block_on(async {
        engine
            .connectors()
            .memory()
            .publish_json("demo", br#"{"device": "a", "temperature": 1}"#.to_vec())
            .await;
        common::finish_rule(&engine, "lookup", "demo", &mut out).await
    });
    assert!(rows.is_empty(), "{rows:?}");
    let (count, last) = common::exceptions(&engine, "lookup");
    assert!(count >= 1, "{count}");
    assert!(
        last.contains("/status/503/devices answered 503 Service Unavailable"),
        "{last}"
    );
    assert!(!server.requests().is_empty());
    engine.shutdown();
}
