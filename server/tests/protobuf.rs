//! The schema registry and the protobuf format end to end: a schema registered over REST, a
//! `FORMAT="protobuf"` stream reading messages from the machine's Mosquitto, a rule writing
//! protobuf back through an MQTT sink, the schema listed after a restart, and the registry's
//! refusals (a schema in use, a name that is a path, unknown types).

mod common;

use common::mqtt::{TestClient, unique};
use common::{Server, temp_dir};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use serde_json::json;

const PROTO: &str = r#"syntax = "proto3";
package demo;
message Reading {
  string device = 1;
  double temperature = 2;
  repeated int64 samples = 3;
  Place at = 4;
}
message Place { string room = 1; }
message Alert {
  string device = 1;
  double t2 = 2;
  int64 n = 3;
  string room = 4;
}
"#;

/// The message type `name` of the registry's stored `readings` schema.
fn message(dir: &std::path::Path, name: &str) -> MessageDescriptor {
    let pool =
        quiver_connectors::codec::protobuf::compile(&dir.join("schemas/protobuf"), "readings")
            .unwrap();
    quiver_connectors::codec::protobuf::find_message(&pool, "readings", name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_schema_decodes_a_stream_and_encodes_a_sink() {
    let prefix = format!("quiver-protobuf/{}", unique());
    let dir = temp_dir("protobuf-e2e");
    let server = Server::start(&dir);
    let (status, body) = server.call(
        "POST",
        "/schemas/protobuf",
        Some(json!({"name": "readings", "content": PROTO})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server.json("GET", "/schemas/protobuf", None).1,
        json!(["readings"])
    );
    let (status, info) = server.json("GET", "/schemas/protobuf/readings", None);
    assert_eq!(status, 200);
    assert_eq!(info["type"], "protobuf");
    assert_eq!(info["name"], "readings");
    assert_eq!(info["content"], PROTO);
    assert!(
        info["file"]
            .as_str()
            .unwrap()
            .ends_with("schemas/protobuf/readings.proto")
    );

    // A stream naming a message type the schema lacks is refused; the right one is created.
    let (status, body) = server.call(
        "POST",
        "/streams",
        Some(json!({"sql": format!(r#"CREATE STREAM bad () WITH (DATASOURCE="{prefix}/in", FORMAT="protobuf", SCHEMAID="readings.Nope")"#)})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("message type \\\"Nope\\\" is not in protobuf schema \\\"readings\\\""),
        "{body}"
    );
    server.create_stream(&format!(
        r#"CREATE STREAM readings () WITH (DATASOURCE="{prefix}/in", FORMAT="protobuf", SCHEMAID="readings.demo.Reading")"#
    ));
    let rule = json!({
        "id": "alerts",
        "sql": "SELECT device, temperature * 2 AS t2, cardinality(samples) AS n, at.room AS room FROM readings WHERE temperature > 20",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"),
                              "format": "protobuf", "schemaId": "readings.Alert"}}]
    });
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");

    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let reading = message(&dir, "Reading");
    let mut m = DynamicMessage::new(reading.clone());
    m.set_field_by_name("device", Value::String("d1".into()));
    m.set_field_by_name("temperature", Value::F64(21.5));
    m.set_field_by_name("samples", Value::List(vec![Value::I64(1), Value::I64(2)]));
    let mut at = DynamicMessage::new(message(&dir, "Place"));
    at.set_field_by_name("room", Value::String("lab".into()));
    m.set_field_by_name("at", Value::Message(at));
    let payload = m.encode_to_vec();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        publisher
            .publish_bytes(&format!("{prefix}/in"), payload.clone())
            .await;
        if let Ok(Some(p)) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            subscriber.publishes.recv(),
        )
        .await
        {
            break p.payload.to_vec();
        }
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
    };
    let alert = DynamicMessage::decode(message(&dir, "Alert"), &out[..]).unwrap();
    assert_eq!(
        alert.get_field_by_name("device").unwrap().as_str(),
        Some("d1")
    );
    assert_eq!(alert.get_field_by_name("t2").unwrap().as_f64(), Some(43.0));
    assert_eq!(alert.get_field_by_name("n").unwrap().as_i64(), Some(2));
    assert_eq!(
        alert.get_field_by_name("room").unwrap().as_str(),
        Some("lab")
    );

    // A payload that is not a Reading costs its row, not the rule.
    publisher
        .publish_bytes(&format!("{prefix}/in"), vec![0xff, 0xff, 0xff])
        .await;
    let st = tokio::task::block_in_place(|| {
        common::wait_rule_status(&server, "alerts", |st| {
            st["op_2_decoder_0_exceptions_total"].as_u64() >= Some(1)
        })
    });
    assert_eq!(st["status"], json!("running"));
    assert!(
        st["op_2_decoder_0_last_exception"]
            .as_str()
            .unwrap()
            .starts_with("invalid protobuf payload"),
        "{st}"
    );

    // In use by the stream and the rule: no delete; an update must keep their types.
    let (status, body) = server.call("DELETE", "/schemas/protobuf/readings", None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("schema protobuf.readings is in use by stream \\\"readings\\\""),
        "{body}"
    );
    let (status, body) = server.call(
        "PUT",
        "/schemas/protobuf/readings",
        Some(json!({"name": "readings", "content": "syntax = \"proto3\"; message Alert { string device = 1; }"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\\\"demo.Reading\\\" is not in protobuf schema"),
        "{body}"
    );
    let (status, body) = server.call(
        "PUT",
        "/schemas/protobuf/readings",
        Some(json!({"name": "readings", "content": format!("{PROTO}\nmessage Extra {{ int64 x = 1; }}\n")})),
    );
    assert_eq!(status, 200, "{body}");

    // A restart lists the schema and restores the stream that uses it.
    tokio::task::block_in_place(|| server.stop());
    let server = Server::start(&dir);
    assert_eq!(
        server.json("GET", "/schemas/protobuf", None).1,
        json!(["readings"])
    );
    assert_eq!(server.call("GET", "/streams/readings", None).0, 200);
    assert_eq!(server.call("DELETE", "/rules/alerts", None).0, 200);
    assert_eq!(server.call("DELETE", "/streams/readings", None).0, 200);
    let (status, body) = server.call("DELETE", "/schemas/protobuf/readings", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.json("GET", "/schemas/protobuf", None).1, json!([]));
    tokio::task::block_in_place(|| server.stop());
}

#[test]
fn the_registry_refuses_paths_unknown_types_and_bad_schemas() {
    let dir = temp_dir("protobuf-refusals");
    let server = Server::start(&dir);
    for (method, path, body, status, want) in [
        (
            "POST",
            "/schemas/protobuf",
            json!({"name": "../../etc/evil", "content": "message A {}"}),
            400,
            "invalid schema name",
        ),
        (
            "POST",
            "/schemas/protobuf",
            json!({"name": "a.b", "content": "message A {}"}),
            400,
            "invalid schema name",
        ),
        (
            "POST",
            "/schemas/avro",
            json!({"name": "a", "content": "{}"}),
            404,
            "unknown schema type \\\"avro\\\"",
        ),
        (
            "POST",
            "/schemas/protobuf",
            json!({"name": "broken", "content": "message {"}),
            400,
            "protobuf schema \\\"broken\\\" does not compile",
        ),
        (
            "POST",
            "/schemas/protobuf",
            json!({"name": "both", "content": "message A {}", "file": "http://127.0.0.1:1/a.proto"}),
            400,
            "not both",
        ),
        (
            "POST",
            "/schemas/protobuf",
            json!({"name": "a", "content": "message A {}", "version": 2}),
            400,
            "unknown field `version`",
        ),
        (
            "POST",
            "/schemas/custom",
            json!({"name": "conv", "content": "x"}),
            400,
            "a custom schema needs \\\"soFile\\\"",
        ),
    ] {
        let (got, text) = server.call(method, path, Some(body));
        assert_eq!(got, status, "{path}: {text}");
        assert!(text.contains(want), "{text}");
    }
    assert_eq!(
        server
            .call("GET", "/schemas/protobuf/..%2F..%2Fquiver", None)
            .0,
        400
    );
    assert_eq!(server.call("GET", "/schemas/protobuf/nope", None).0, 404);
    assert!(!dir.join("etc").exists());
    // FORMAT="protobuf" needs a registered schema; SINK schemaId too; custom stays refused.
    let (status, body) = server.call(
        "POST",
        "/streams",
        Some(json!({"sql": r#"CREATE STREAM p () WITH (DATASOURCE="x", FORMAT="protobuf", SCHEMAID="nope.M")"#})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("protobuf schema \\\"nope\\\" is not registered"),
        "{body}"
    );
    let (status, body) = server.call(
        "POST",
        "/streams",
        Some(json!({"sql": r#"CREATE STREAM c () WITH (DATASOURCE="x", FORMAT="custom")"#})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("FORMAT=\\\"custom\\\" needs SCHEMAID"),
        "{body}"
    );
    server.create_stream(r#"CREATE STREAM s (a BIGINT) WITH (DATASOURCE="quiver-protobuf/x")"#);
    let rule = json!({"id": "r", "sql": "SELECT a FROM s", "actions": [
        {"mqtt": {"topic": "x", "format": "protobuf", "schemaId": "nope.M"}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("protobuf schema \\\"nope\\\" is not registered"),
        "{body}"
    );
    server.stop();
}

#[test]
fn schemas_are_read_from_files_inside_the_plugin_file_dir() {
    let dir = temp_dir("protobuf-files");
    let files = temp_dir("protobuf-files-src");
    std::fs::write(
        files.join("books.proto"),
        "syntax = \"proto3\"; message Book { string title = 1; }",
    )
    .unwrap();
    std::fs::write(files.join("conv.so"), b"\x7fELF not really").unwrap();
    let server = Server::start_with_plugin_files(&dir, &files);
    let url = |f: &str| format!("file://{}", files.join(f).display());
    let (status, body) = server.call(
        "POST",
        "/schemas/protobuf",
        Some(json!({"name": "books", "file": url("books.proto")})),
    );
    assert_eq!(status, 201, "{body}");
    let (_, info) = server.json("GET", "/schemas/protobuf/books", None);
    assert!(
        info["content"].as_str().unwrap().contains("message Book"),
        "{info}"
    );
    // A custom schema's file must be a converter library: this one is refused, not stored.
    let (status, body) = server.call(
        "POST",
        "/schemas/custom",
        Some(json!({"name": "conv", "soFile": url("conv.so")})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not a loadable shared library"), "{body}");
    assert_eq!(server.json("GET", "/schemas/custom", None).1, json!([]));
    // Outside the allowed folder: refused.
    let (status, body) = server.call(
        "POST",
        "/schemas/protobuf",
        Some(json!({"name": "passwd", "file": "file:///etc/passwd"})),
    );
    assert_eq!(status, 400, "{body}");
    server.stop();
}
