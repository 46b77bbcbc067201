//! Payload formats end to end through the machine's Mosquitto: a delimited stream's rows typed
//! by its schema (a bad payload counted, the rule running), a binary stream's `self`, sink
//! formats read back by a stream, binary relayed byte for byte, compressed payloads both ways,
//! and custom without a registered library refused by name.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_formats_round_trip_through_the_broker() {
    let prefix = format!("quiver-formats/{}", unique());
    let dir = temp_dir("formats-sink");
    let server = Server::start(&dir);
    server.create_stream(&format!(
        r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="{prefix}/json")"#
    ));
    // Rows out as delimited lines (fields pin the order) and as urlencoded forms.
    let rule = json!({
        "id": "to_csv",
        "sql": "SELECT device, temperature FROM readings",
        "actions": [
            {"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/csv"), "sendSingle": true,
                      "format": "delimited", "delimiter": "|", "fields": ["device", "temperature"]}},
            {"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/form"),
                      "format": "urlencoded"}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    // ... and read back by a delimited stream.
    server.create_stream(&format!(
        r#"CREATE STREAM lines (device STRING, temperature FLOAT) WITH (DATASOURCE="{prefix}/csv", FORMAT="delimited", DELIMITER="|")"#
    ));
    let back = json!({
        "id": "from_csv",
        "sql": "SELECT device, temperature * 2 AS t2 FROM lines",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/back"), "sendSingle": true}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(back)).0, 201);
    let mut raw = TestClient::start(1883, Some(format!("{prefix}/csv")));
    raw.subscribed().await;
    let mut form = TestClient::start(1883, Some(format!("{prefix}/form")));
    form.subscribed().await;
    let mut back = TestClient::start(1883, Some(format!("{prefix}/back")));
    back.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let got = publish_until_received(
        &publisher,
        &mut back,
        &format!("{prefix}/json"),
        r#"{"device":"a b","temperature":21.5}"#,
    )
    .await;
    assert_eq!(got, r#"{"device":"a b","t2":43}"#);
    let line = raw.next_publish().await.payload;
    assert_eq!(&line[..], b"a b|21.5\n");
    let encoded = form.next_publish().await.payload;
    assert_eq!(&encoded[..], b"device=a+b&temperature=21.5");
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_payloads_both_ways() {
    use quiver_connectors::codec::compress::Compression;
    let prefix = format!("quiver-formats/{}", unique());
    let dir = temp_dir("formats-compressed");
    let config = dir.join("quiver.yaml");
    std::fs::write(&config, "mqtt:\n  zipped:\n    decompression: zlib\n").unwrap();
    let server = tokio::task::block_in_place(|| Server::start_with(&dir, Some(&config)));
    server.create_stream(&format!(
        r#"CREATE STREAM zipped (device STRING, temperature FLOAT) WITH (DATASOURCE="{prefix}/in", CONF_KEY="zipped")"#
    ));
    let rule = json!({
        "id": "zipped",
        "sql": "SELECT device, temperature FROM zipped",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"),
                              "sendSingle": true, "compression": "gzip"}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let topic = format!("{prefix}/in");
    let packed = Compression::Zlib.compress(br#"{"device":"z","temperature":5}"#);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        publisher.publish_bytes(&topic, packed.clone()).await;
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), subscriber.publishes.recv()).await
        {
            break p.payload;
        }
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
    };
    let plain = Compression::Gzip.decompress(&out).unwrap();
    assert_eq!(plain, br#"{"device":"z","temperature":5}"#);
    // A payload that is not zlib is a bad message, counted; the rule keeps running.
    publisher.publish(&topic, r#"{"device":"plain"}"#).await;
    let st = tokio::task::block_in_place(|| {
        wait_metric(&server, "zipped", "op_2_decoder_0_exceptions_total", 1)
    });
    assert_eq!(st["status"], json!("running"));
    assert!(
        st["op_2_decoder_0_last_exception"]
            .as_str()
            .unwrap()
            .starts_with("decompression failed: "),
        "{st}"
    );
    tokio::task::block_in_place(|| server.stop());
}

#[test]
fn custom_without_a_registered_schema_is_refused_by_name() {
    let dir = temp_dir("formats-refused");
    let server = Server::start(&dir);
    server
        .create_stream(r#"CREATE STREAM s (a BIGINT) WITH (DATASOURCE="quiver-formats/refused")"#);
    // (protobuf: server/tests/protobuf.rs.)
    // (custom with a registered library: server/tests/custom_format.rs.)
    let rule = json!({"id": "r_custom", "sql": "SELECT a FROM s", "actions": [
        {"rest": {"url": "http://127.0.0.1:1/", "format": "custom", "schemaId": "nowhere.Reading"}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("custom schema \\\"nowhere\\\" is not registered"),
        "{body}"
    );
    // A sink that writes rows, not bytes, refuses `format`.
    let rule = json!({"id": "mem", "sql": "SELECT a FROM s", "actions": [{"memory": {"topic": "t", "format": "delimited"}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("format"), "{body}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_pass_through_byte_for_byte() {
    let prefix = format!("quiver-formats/{}", unique());
    let dir = temp_dir("formats-binary-sink");
    let server = Server::start(&dir);
    server.create_stream(&format!(
        r#"CREATE STREAM frames (self BYTEA) WITH (DATASOURCE="{prefix}/in", FORMAT="binary")"#
    ));
    let rule = json!({
        "id": "relay",
        "sql": "SELECT self FROM frames",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"), "format": "binary"}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let frame = vec![0xffu8, 0x00, 0xd8, 0x7f];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        publisher
            .publish_bytes(&format!("{prefix}/in"), frame.clone())
            .await;
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), subscriber.publishes.recv()).await
        {
            break p.payload;
        }
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
    };
    assert_eq!(&got[..], &frame[..]);
    tokio::task::block_in_place(|| server.stop());
}
