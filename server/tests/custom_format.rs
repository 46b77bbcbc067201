//! Custom formats end to end: a converter library (tests/plugins/format_frames, binary frames
//! of `id`, `temperature` and `device`) registered over `/schemas/custom`, a stream decoding its
//! frames and a sink encoding them, through the machine's Mosquitto; bad frames counted, the
//! library in use kept, and everything back after a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::mqtt::{TestClient, unique};
use common::plugin_zip::build_plugin;
use common::{Server, temp_dir, wait_rule_status};
use serde_json::json;

fn frame(id: i64, temperature: f64, device: &str) -> Vec<u8> {
    let mut f = id.to_le_bytes().to_vec();
    f.extend_from_slice(&temperature.to_le_bytes());
    f.extend_from_slice(device.as_bytes());
    f
}

fn read_frame(f: &[u8]) -> (i64, f64, String) {
    (
        i64::from_le_bytes(f[..8].try_into().unwrap()),
        f64::from_le_bytes(f[8..16].try_into().unwrap()),
        String::from_utf8(f[16..].to_vec()).unwrap(),
    )
}

/// Publishes `payload` until a frame arrives on the subscriber (the rule may still be
/// subscribing), then returns it.
async fn publish_until_frame(
    publisher: &TestClient,
    subscriber: &mut TestClient,
    topic: &str,
    payload: &[u8],
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        publisher.publish_bytes(topic, payload.to_vec()).await;
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), subscriber.publishes.recv()).await
        {
            return p.payload.to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived on the sink topic"
        );
    }
}

fn start(data: &Path, files: &Path) -> Server {
    tokio::task::block_in_place(|| Server::start_with_plugin_files(data, files))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converter_library_decodes_a_stream_and_encodes_a_sink() {
    let so = tokio::task::block_in_place(|| build_plugin("format_frames"));
    let prefix = format!("quiver-custom/{}", unique());
    let dir = temp_dir("custom-format");
    let files = temp_dir("custom-format-src");
    std::fs::copy(&so, files.join("frames.so")).unwrap();
    let server = start(&dir, &files);
    let so_url = format!("file://{}", files.join("frames.so").display());
    let (status, body) = server.call(
        "POST",
        "/schemas/custom",
        Some(json!({"name": "frames", "soFile": so_url})),
    );
    assert_eq!(status, 201, "{body}");

    // A message type the library does not know is refused when the stream is created.
    let (status, body) = server.call(
        "POST",
        "/streams",
        Some(json!({"sql": format!(r#"CREATE STREAM bad () WITH (DATASOURCE="{prefix}/x", FORMAT="custom", SCHEMAID="frames.Nope")"#)})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown message type \\\"Nope\\\""), "{body}");

    server.create_stream(&format!(
        r#"CREATE STREAM frames (id BIGINT, temperature FLOAT, device STRING) WITH (DATASOURCE="{prefix}/in", FORMAT="custom", SCHEMAID="frames.Reading")"#
    ));
    let rule = json!({
        "id": "frames",
        "sql": "SELECT id + 1 AS id, temperature * 2 AS temperature, upper(device) AS device FROM frames WHERE temperature > 20",
        "actions": [{"mqtt": {
            "server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"), "sendSingle": true,
            "format": "custom", "schemaId": "frames.Reading"
        }}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let topic = format!("{prefix}/in");
    let got = publish_until_frame(
        &publisher,
        &mut subscriber,
        &topic,
        &frame(7, 21.5, "dev-a"),
    )
    .await;
    assert_eq!(read_frame(&got), (8, 43.0, "DEV-A".to_string()));

    // A frame the converter refuses costs its own row, counted with the converter's reason.
    publisher.publish_bytes(&topic, b"short".to_vec()).await;
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(&server, "frames", |st| {
            st["op_2_decoder_0_exceptions_total"].as_u64() >= Some(1)
        })
    });
    assert_eq!(st["status"], json!("running"));
    assert!(
        st["op_2_decoder_0_last_exception"]
            .as_str()
            .unwrap()
            .contains("a Reading frame has at least 16 bytes, got 5"),
        "{st}"
    );

    // In use by the stream and the rule: not deleted.
    let (status, body) = server.call("DELETE", "/schemas/custom/frames", None);
    assert_eq!(status, 409, "{body}");

    // After a restart the library is loaded again before the stream and rule come back.
    tokio::task::block_in_place(|| server.stop());
    let server = start(&dir, &files);
    assert_eq!(
        server.json("GET", "/schemas/custom", None).1,
        json!(["frames"])
    );
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), subscriber.publishes.recv()).await
    {}
    let got = publish_until_frame(&publisher, &mut subscriber, &topic, &frame(1, 30.0, "b")).await;
    assert_eq!(read_frame(&got), (2, 60.0, "B".to_string()));
    tokio::task::block_in_place(|| server.stop());
}
