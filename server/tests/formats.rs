//! Payload formats end to end through the machine's Mosquitto: a delimited stream's rows typed
//! by its schema (a bad payload counted, the rule running), a binary stream's `self`.

mod common;

use std::time::Duration;

use common::mqtt::{TestClient, unique};
use common::{Server, publish_until_received, temp_dir, wait_metric};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimited_stream_types_its_fields_and_counts_bad_payloads() {
    let prefix = format!("quiver-formats/{}", unique());
    let dir = temp_dir("formats-delimited");
    let server = Server::start(&dir);
    server.create_stream(&format!(
        r#"CREATE STREAM csv (device STRING, temperature FLOAT, n BIGINT) WITH (DATASOURCE="{prefix}/in", FORMAT="delimited", DELIMITER=";")"#
    ));
    let rule = json!({
        "id": "csv",
        "sql": "SELECT device, temperature + 1 AS t, n * 2 AS n2 FROM csv WHERE temperature > 20",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let topic = format!("{prefix}/in");
    let first = publish_until_received(&publisher, &mut subscriber, &topic, "a;25.5;4\n").await;
    assert_eq!(first, r#"{"device":"a","n2":8,"t":26.5}"#);
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), subscriber.publishes.recv()).await
    {}
    publisher.publish(&topic, "b;hot;1").await;
    publisher.publish(&topic, "c;30").await;
    let got = String::from_utf8(subscriber.next_publish().await.payload.to_vec()).unwrap();
    assert_eq!(got, r#"{"device":"c","t":31}"#);
    let st = tokio::task::block_in_place(|| {
        wait_metric(&server, "csv", "op_2_decoder_0_exceptions_total", 1)
    });
    assert_eq!(st["status"], json!("running"));
    assert!(
        st["op_2_decoder_0_last_exception"]
            .as_str()
            .unwrap()
            .contains("cannot convert string(hot) to float"),
        "{st}"
    );
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_stream_reads_the_payload_as_self() {
    let prefix = format!("quiver-formats/{}", unique());
    let dir = temp_dir("formats-binary");
    let server = Server::start(&dir);
    server.create_stream(&format!(
        r#"CREATE STREAM frames () WITH (DATASOURCE="{prefix}/in", FORMAT="binary")"#
    ));
    let rule = json!({
        "id": "frames",
        "sql": "SELECT length(self) AS len, self FROM frames",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let got =
        publish_until_received(&publisher, &mut subscriber, &format!("{prefix}/in"), "hi!").await;
    // BYTEA prints as base64 in JSON, as eKuiper prints it.
    assert_eq!(got, r#"{"len":3,"self":"aGkh"}"#);
    tokio::task::block_in_place(|| server.stop());
}
