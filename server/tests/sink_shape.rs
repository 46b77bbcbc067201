//! What an action sends: `dataField`, `fields`, `excludeFields` and `dataTemplate` composed in
//! eKuiper's order, through quiverd and the machine's Mosquitto.

mod common;

use std::time::Duration;

use common::mqtt::{TestClient, unique};
use common::{Server, publish_until_received, temp_dir, wait_rule_status};
use serde_json::{Value, json};

async fn next_json(subscriber: &mut TestClient) -> Value {
    let p = tokio::time::timeout(Duration::from_secs(10), subscriber.next_publish())
        .await
        .expect("a message within 10 s");
    serde_json::from_slice(&p.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_field_fields_and_exclude_fields_compose_in_ekuipers_order() {
    let prefix = format!("quiver-shape/{}", unique());
    let dir = temp_dir("sink-shape");
    let server = Server::start(&dir);
    server.create_stream(&format!(
        r#"CREATE STREAM batches () WITH (DATASOURCE="{prefix}/in", TYPE="mqtt")"#
    ));
    let mqtt = |topic: &str, extra: Value| {
        let mut props =
            json!({"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/{topic}")});
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"mqtt": props})
    };
    let rule = json!({
        "id": "shape",
        "sql": "SELECT * FROM batches",
        "actions": [
            // The rows nested in `readings`, one message each, without `raw`.
            mqtt("rows", json!({"sendSingle": true, "dataField": "readings", "excludeFields": ["raw"]})),
            // The template first; `fields` then picks from its JSON output.
            mqtt("templated", json!({
                "sendSingle": true,
                "dataTemplate": "{\"site\": \"{{.site}}\", \"count\": 2, \"secret\": 1}",
                "fields": ["count", "site"]
            })),
            // A field that holds no rows: an exception of the sink, the rule keeps running.
            mqtt("bad", json!({"dataField": "site"}))
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut rows = TestClient::start(1883, Some(format!("{prefix}/rows")));
    let mut templated = TestClient::start(1883, Some(format!("{prefix}/templated")));
    rows.subscribed().await;
    templated.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let payload = json!({
        "site": "north",
        "readings": [{"t": 20.5, "raw": "0x01", "id": 1}, {"t": 21.5, "raw": "0x02", "id": 2}]
    })
    .to_string();
    let first =
        publish_until_received(&publisher, &mut rows, &format!("{prefix}/in"), &payload).await;
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first, json!({"id": 1, "t": 20.5}));
    assert_eq!(next_json(&mut rows).await, json!({"id": 2, "t": 21.5}));
    assert_eq!(
        next_json(&mut templated).await,
        json!({"count": 2, "site": "north"})
    );
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(&server, "shape", |st| {
            st["sink_mqtt_2_0_exceptions_total"].as_u64() >= Some(1)
        })
    });
    assert_eq!(st["status"], json!("running"));
    let last = st["sink_mqtt_2_0_last_exception"].as_str().unwrap();
    assert!(last.contains("dataField \"site\" holds"), "{st}");

    // Both names for one thing are refused by name.
    let (code, body) = server.call(
        "POST",
        "/rules",
        Some(json!({
            "id": "both", "sql": "SELECT * FROM batches",
            "actions": [mqtt("x", json!({"dataField": "a", "tableDataField": "b"}))]
        })),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("tableDataField"), "{body}");
    tokio::task::block_in_place(|| server.stop());
}
