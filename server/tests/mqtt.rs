//! quiverd end to end over MQTT: the real binary, the machine's Mosquitto for the happy path
//! and restart, and a private Mosquitto on a free port for the broker outage (the shared broker
//! is never stopped).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::mqtt::{PrivateBroker, TestClient, free_port, unique};
use common::{Server, publish_until_received, temp_dir, wait_metric};
use serde_json::{Value, json};

fn create_pipeline(server: &Server, prefix: &str, port: u16) {
    let stream = format!(
        r#"CREATE STREAM sensors (device STRING, temperature FLOAT) WITH (DATASOURCE="{prefix}/in/#", TYPE="mqtt", FORMAT="json")"#
    );
    server.create_stream(&stream);
    let rule = json!({
        "id": "hot",
        "sql": "SELECT device, temperature FROM sensors WHERE temperature > 20",
        "actions": [{"mqtt": {"server": format!("tcp://127.0.0.1:{port}"), "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_in_mqtt_out_with_exact_messages_and_restart() {
    let prefix = format!("quiver-e2e/{}", unique());
    let dir = temp_dir("mqtt");
    let server = Server::start(&dir);
    create_pipeline(&server, &prefix, 1883);

    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let first = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in/1"),
        r#"{"device":"a","temperature":25,"extra":1}"#,
    )
    .await;
    assert_eq!(first, r#"{"device":"a","temperature":25}"#);
    // Drain repeats of the first message published while the rule was subscribing.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), subscriber.publishes.recv()).await
    {}

    publisher
        .publish(
            &format!("{prefix}/in/2"),
            r#"{"device":"b","temperature":10}"#,
        )
        .await;
    publisher
        .publish(
            &format!("{prefix}/in/2"),
            r#"{"device":"c", "temperature":"#,
        )
        .await;
    publisher
        .publish(
            &format!("{prefix}/in/3"),
            r#"{"device":"d","temperature":30.5}"#,
        )
        .await;
    let got = String::from_utf8(subscriber.next_publish().await.payload.to_vec()).unwrap();
    assert_eq!(got, r#"{"device":"d","temperature":30.5}"#);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), subscriber.publishes.recv())
            .await
            .is_err(),
        "the filtered and the malformed message produce nothing"
    );
    let st = tokio::task::block_in_place(|| {
        wait_metric(&server, "hot", "op_2_decoder_0_exceptions_total", 1)
    });
    assert_eq!(st["status"], json!("running"));
    assert_eq!(st["source_sensors_0_connection_status"], json!(1));

    // After a restart the rule is back and produces output.
    tokio::task::block_in_place(|| server.stop());
    let server = tokio::task::block_in_place(|| Server::start(&dir));
    let again = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in/1"),
        r#"{"device":"e","temperature":21}"#,
    )
    .await;
    assert_eq!(again, r#"{"device":"e","temperature":21}"#);
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_survives_a_broker_outage_and_reports_it() {
    let port = free_port();
    let broker = PrivateBroker::start(port);
    let prefix = format!("quiver-outage/{}", unique());
    let dir = temp_dir("outage");
    let config = dir.join("quiver.yaml");
    std::fs::write(
        &config,
        format!("mqtt:\n  default:\n    server: \"tcp://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let server = tokio::task::block_in_place(|| Server::start_with(&dir, Some(&config)));
    create_pipeline(&server, &prefix, port);

    let mut subscriber = TestClient::start(port, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(port, None);
    let topic = format!("{prefix}/in/1");
    let got = publish_until_received(
        &publisher,
        &mut subscriber,
        &topic,
        r#"{"device":"a","temperature":22}"#,
    )
    .await;
    assert_eq!(got, r#"{"device":"a","temperature":22}"#);

    drop(broker);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status: Value = loop {
        let (_, st) = server.json("GET", "/rules/hot/status", None);
        if st["source_sensors_0_connection_status"] == json!(0) {
            break st;
        }
        assert!(Instant::now() < deadline, "the outage never showed: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        status["source_sensors_0_connection_last_disconnected_message"],
        json!("")
    );
    assert_eq!(
        status["status"],
        json!("running"),
        "an outage does not stop the rule"
    );

    let _broker = PrivateBroker::start(port);
    // The test clients reconnect on their own; the rule's source resubscribes.
    subscriber.subscribed().await;
    let mut seen = BTreeSet::new();
    let got = publish_until_received(
        &publisher,
        &mut subscriber,
        &topic,
        r#"{"device":"b","temperature":23}"#,
    )
    .await;
    seen.insert(got);
    assert!(
        seen.contains(r#"{"device":"b","temperature":23}"#),
        "{seen:?}"
    );
    let (_, st) = server.json("GET", "/rules/hot/status", None);
    assert_eq!(st["source_sensors_0_connection_status"], json!(1));
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_template_shapes_the_mqtt_payload() {
    let prefix = format!("quiver-tmpl/{}", unique());
    let dir = temp_dir("tmpl");
    let server = tokio::task::block_in_place(|| Server::start(&dir));
    let stream = format!(
        r#"CREATE STREAM sensors (device STRING, temperature FLOAT) WITH (DATASOURCE="{prefix}/in", TYPE="mqtt")"#
    );
    server.create_stream(&stream);
    let rule = json!({
        "id": "tmpl",
        "sql": "SELECT device, temperature, meta(topic) AS topic, meta(qos) AS qos FROM sensors",
        "actions": [{"mqtt": {
            "server": "tcp://127.0.0.1:1883",
            "topic": format!("{prefix}/out"),
            "sendSingle": true,
            "dataTemplate": "{\"id\":\"{{.device}}\",\"t\":{{.temperature}},\"q\":{{.qos}},\"from\":\"{{.topic}}\"}"
        }}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    // A template that does not parse is a 400, not a dead rule.
    let bad = json!({"id": "bad", "sql": "SELECT * FROM sensors",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": "x", "dataTemplate": "{{.device"}}]});
    assert_eq!(server.json("POST", "/rules", Some(bad)).0, 400);

    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let got = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in"),
        r#"{"device":"a","temperature":21.5}"#,
    )
    .await;
    assert_eq!(
        got,
        format!(r#"{{"id":"a","t":21.5,"q":1,"from":"{prefix}/in"}}"#)
    );
    tokio::task::block_in_place(|| server.stop());
}

/// `sendError`: an MQTT sink (a bytes sink) publishes the error text itself, not JSON, as a
/// message of its own (eKuiper's `bytesCollect` in `topo/node/sink_node.go`); without it the
/// failing row is only counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_error_publishes_the_error_text_on_the_mqtt_sink() {
    let prefix = format!("quiver-senderr/{}", unique());
    let dir = temp_dir("senderr");
    let server = tokio::task::block_in_place(|| Server::start(&dir));
    let stream = format!(r#"CREATE STREAM sl () WITH (DATASOURCE="{prefix}/in", TYPE="mqtt")"#);
    server.create_stream(&stream);
    let rule = json!({
        "id": "errs",
        "sql": "SELECT size * 5 AS c FROM sl",
        "options": {"sendError": true},
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out")}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let got = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in"),
        r#"{"size":"big"}"#,
    )
    .await;
    assert_eq!(
        got,
        "run Select error: alias: c expr: binaryExpr:{ sl.size * 5 } meet error, err:invalid operation string(big) * int64(5)"
    );
    // A good row still arrives as JSON.
    publisher
        .publish(&format!("{prefix}/in"), r#"{"size":2}"#)
        .await;
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let p = subscriber.publishes.recv().await.expect("subscribed");
            let text = String::from_utf8(p.payload.to_vec()).unwrap();
            if text.starts_with('[') {
                return text;
            }
        }
    })
    .await
    .expect("the good row arrives");
    assert_eq!(next, r#"[{"c":10}]"#);
    tokio::task::block_in_place(|| server.stop());
}

/// Window rules of a `SHARED` MQTT stream run in its rule group: over REST each is explained as
/// such, publishes its own windows over MQTT (its filter and keys applied) and reports its own
/// window node in its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_rules_of_a_shared_mqtt_stream_run_in_its_group_with_their_own_windows() {
    let prefix = format!("quiver-wgroup/{}", unique());
    let server = Server::start(&temp_dir("mqtt-window-group"));
    server.create_stream(&format!(
        r#"CREATE STREAM ws (device STRING, v BIGINT) WITH (DATASOURCE="{prefix}/in", TYPE="mqtt", FORMAT="json", SHARED="true")"#
    ));
    for (id, sql) in [
        (
            "by_device",
            "SELECT device, count(*) AS c FROM ws WHERE v > 0 GROUP BY device, TUMBLINGWINDOW(ss, 1)",
        ),
        (
            "all",
            "SELECT count(*) AS c FROM ws GROUP BY TUMBLINGWINDOW(ss, 1)",
        ),
    ] {
        let sink = json!({"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/{id}"), "sendSingle": true});
        let rule = json!({"id": id, "sql": sql, "actions": [{"mqtt": sink}]});
        assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
        let (_, plan) = server.call("GET", &format!("/rules/{id}/explain"), None);
        assert!(plan.contains("Rule group"), "{plan}");
    }
    let mut all = TestClient::start(1883, Some(format!("{prefix}/all")));
    all.subscribed().await;
    let mut by_device = TestClient::start(1883, Some(format!("{prefix}/by_device")));
    by_device.subscribed().await;
    let publisher = TestClient::start(1883, None);
    // Probes (v = 0, which by_device filters out) until the group reads the topic.
    let topic = format!("{prefix}/in");
    let first =
        publish_until_received(&publisher, &mut all, &topic, r#"{"device":"p","v":0}"#).await;
    let first: Value = serde_json::from_str(&first).unwrap();
    for i in 0..300 {
        let msg = format!(r#"{{"device":"d{}","v":{}}}"#, i % 3, 1 + i % 4);
        publisher.publish(&topic, &msg).await;
    }
    // Every message with v > 0 is counted once, in its device's windows.
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let want: std::collections::BTreeMap<String, u64> =
        (0..3).map(|d| (format!("d{d}"), 100)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts != want && Instant::now() < deadline {
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), by_device.publishes.recv()).await
        {
            let row: Value = serde_json::from_slice(&p.payload).unwrap();
            let device = row["device"].as_str().unwrap().to_string();
            *counts.entry(device).or_default() += row["c"].as_u64().unwrap();
        }
    }
    assert_eq!(counts, want);
    // `all` counts every message it read (probes too) across its windows. The group read the
    // last message for both rules at once: by_device's windows hold all of them by now.
    let (_, status) = server.json("GET", "/rules/all/status", None);
    let read = status["source_ws_0_records_in_total"].as_u64().unwrap();
    assert!(read > 300, "{status}");
    let mut total = first["c"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while total < read && Instant::now() < deadline {
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), all.publishes.recv()).await
        {
            let row: Value = serde_json::from_slice(&p.payload).unwrap();
            total += row["c"].as_u64().unwrap();
        }
    }
    assert_eq!(total, read, "every message read is in one window");
    let (_, status) = server.json("GET", "/rules/by_device/status", None);
    let window_in = status
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.contains("window") && k.ends_with("_records_in_total"))
        .map(|(_, v)| v.as_u64().unwrap_or(0));
    assert_eq!(window_in, Some(300), "{status}");
}
