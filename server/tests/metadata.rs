//! The metadata API eKuiper's dashboard reads (`/metadata/sources`, `/metadata/sinks`) and the
//! connection profiles (confKeys) it edits, against the real quiverd and real Mosquitto
//! brokers.

mod common;

use common::mqtt::{PrivateBroker, TestClient, free_port, unique};
use common::{Server, publish_until_received, temp_dir};
use serde_json::{Value, json};

/// The field named `name` of a metadata property list.
fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .expect("a list of fields")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|i| i["name"].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn lists_hold_every_connector_with_the_defaults_it_applies() {
    let server = Server::start(&temp_dir("meta-lists"));
    let (status, sources) = server.json("GET", "/metadata/sources", None);
    assert_eq!(status, 200, "{sources}");
    // Every type a stream or an action can name is listed.
    let registry = quiver_connectors::Connectors::new();
    let sources: Vec<String> = names(&sources)
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for want in registry.source_types() {
        assert!(sources.contains(&want.to_string()), "{want} in {sources:?}");
    }
    assert!(sources.contains(&"redissub".to_string()));
    let (_, sinks) = server.json("GET", "/metadata/sinks", None);
    let sinks = names(&sinks);
    for want in registry.sink_types() {
        assert!(sinks.contains(&want.to_string()), "{want} in {sinks:?}");
    }
    assert!(sinks.contains(&"redisPub".to_string()));

    // The defaults the connectors apply, as the dashboard shows them.
    let (status, kafka) = server.json("GET", "/metadata/sources/kafka", None);
    assert_eq!(status, 200, "{kafka}");
    let fields = &kafka["properties"]["default"];
    let max_bytes = field(fields, "maxBytes");
    assert_eq!(
        max_bytes["default"],
        json!(quiver_connectors::kafka::DEFAULT_MAX_BYTES)
    );
    assert_eq!(max_bytes["type"], "int");
    assert_eq!(max_bytes["optional"], true);
    assert!(
        max_bytes["hint"]["en_US"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    assert_eq!(field(fields, "brokers")["optional"], false);
    assert_eq!(field(fields, "offsetReset")["default"], "latest");

    let (_, mqtt_source) = server.json("GET", "/metadata/sources/mqtt", None);
    let source_fields = &mqtt_source["properties"]["default"];
    assert_eq!(field(source_fields, "qos")["default"], 1);
    assert_eq!(
        field(source_fields, "server")["default"],
        quiver_connectors::mqtt::DEFAULT_SERVER
    );
    assert_eq!(field(source_fields, "password")["control"], "password");
    let (_, mqtt_sink) = server.json("GET", "/metadata/sinks/mqtt", None);
    assert_eq!(field(&mqtt_sink["properties"], "qos")["default"], 0);
    assert_eq!(field(&mqtt_sink["properties"], "topic")["optional"], false);
    let (_, kafka_sink) = server.json("GET", "/metadata/sinks/kafka", None);
    assert_eq!(
        field(&kafka_sink["properties"], "batchBytes")["default"],
        json!(quiver_connectors::kafka::DEFAULT_BATCH_BYTES)
    );

    // Lookup table types share their type's profiles: their properties are listed too.
    let (status, redis) = server.json("GET", "/metadata/sources/redis", None);
    assert_eq!(status, 200, "{redis}");
    assert_eq!(
        field(&redis["properties"]["default"], "dataType")["default"],
        "string"
    );
    let (_, sql) = server.json("GET", "/metadata/sources/sql", None);
    assert_eq!(
        field(&sql["properties"]["default"], "interval")["default"],
        10000
    );
    assert_eq!(
        field(&sql["properties"]["default"], "timeout")["default"],
        2000
    );

    // Sources without properties are listed with none.
    let (_, memory) = server.json("GET", "/metadata/sources/memory", None);
    assert_eq!(memory["properties"]["default"], json!([]));
    // Source types match case-insensitively, as a stream's TYPE does.
    assert_eq!(
        server.json("GET", "/metadata/sources/redissub", None).0,
        200
    );
    let (status, body) = server.json("GET", "/metadata/sinks/nosuch", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"nosuch\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_made_conf_key_feeds_a_stream_survives_a_restart_and_is_deleted() {
    let prefix = format!("quiver-meta/{}", unique());
    let dir = temp_dir("meta-confkey");
    // The stream's broker is a private one: only the profile leads the stream there.
    let port = free_port();
    let _edge_broker = PrivateBroker::start(port);
    let server = Server::start(&dir);
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/edge",
        Some(json!({"server": format!("tcp://127.0.0.1:{port}"), "qos": 0})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_stream(&format!(
        r#"CREATE STREAM edge_in (v BIGINT) WITH (DATASOURCE="{prefix}/in", TYPE="mqtt", CONF_KEY="edge")"#
    ));
    let rule = json!({
        "id": "through_profile",
        "sql": "SELECT v FROM edge_in",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);

    let mut subscriber = TestClient::start(1883, Some(format!("{prefix}/out")));
    subscriber.subscribed().await;
    let publisher = TestClient::start(port, None);
    let got = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in"),
        r#"{"v":1}"#,
    )
    .await;
    assert_eq!(got, r#"{"v":1}"#);

    // After a restart the profile is still there and the restored rule reads through it.
    tokio::task::block_in_place(|| server.stop());
    let server = tokio::task::block_in_place(|| Server::start(&dir));
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(
        profiles["edge"],
        json!({"server": format!("tcp://127.0.0.1:{port}"), "qos": 0})
    );
    while let Ok(Some(_)) = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        subscriber.publishes.recv(),
    )
    .await
    {}
    let again = publish_until_received(
        &publisher,
        &mut subscriber,
        &format!("{prefix}/in"),
        r#"{"v":2}"#,
    )
    .await;
    assert_eq!(again, r#"{"v":2}"#);

    let (status, body) = server.call("DELETE", "/metadata/sources/mqtt/confKeys/edge", None);
    assert_eq!(status, 200, "{body}");
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert!(profiles.get("edge").is_none(), "{profiles}");
    let (status, _) = server.call("DELETE", "/metadata/sources/mqtt/confKeys/edge", None);
    assert_eq!(status, 404);
    tokio::task::block_in_place(|| server.stop());
    let server = Server::start(&dir);
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert!(
        profiles.get("edge").is_none(),
        "deleted for good: {profiles}"
    );
    server.stop();
}

#[test]
fn secrets_are_masked_when_shown_and_kept_when_sent_back_masked() {
    let dir = temp_dir("meta-mask");
    let server = Server::start(&dir);
    let profile = json!({"server": "tcp://127.0.0.1:1883", "username": "u", "password": "s3cret"});
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/secured",
        Some(profile),
    );
    assert_eq!(status, 200, "{body}");
    let (_, text) = server.call("GET", "/metadata/sources/yaml/mqtt", None);
    assert!(!text.contains("s3cret"), "{text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["secured"]["password"], "******");
    assert_eq!(shown["secured"]["username"], "u");

    // The dashboard saves back what it was shown, with one change: the secret stays.
    let mut edited = shown["secured"].clone();
    edited["username"] = json!("v");
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/secured",
        Some(edited),
    );
    assert_eq!(status, 200, "{body}");
    server.stop();
    let db = rusqlite::Connection::open(dir.join("quiver.db")).unwrap();
    let stored: String = db
        .query_row(
            "SELECT props FROM conf_keys WHERE source_type = 'mqtt' AND name = 'secured'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["password"], "s3cret");
    assert_eq!(stored["username"], "v");
}

#[test]
fn a_rest_made_profile_replaces_the_config_files_until_it_is_deleted() {
    let dir = temp_dir("meta-precedence");
    let config = dir.join("profiles.yaml");
    std::fs::write(
        &config,
        "mqtt:\n  shared:\n    server: tcp://127.0.0.1:1884\n    qos: 2\n",
    )
    .unwrap();
    let server = Server::start_with(&dir.join("data"), Some(&config));
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(
        profiles["shared"],
        json!({"server": "tcp://127.0.0.1:1884", "qos": 2})
    );
    // A file profile is not the REST API's to delete.
    let (status, body) = server.json("DELETE", "/metadata/sources/mqtt/confKeys/shared", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("--config"),
        "{body}"
    );

    let (status, _) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/shared",
        Some(json!({"server": "tcp://127.0.0.1:1885"})),
    );
    assert_eq!(status, 200);
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(
        profiles["shared"],
        json!({"server": "tcp://127.0.0.1:1885"}),
        "the REST-made profile replaces the file's whole"
    );
    let (status, _) = server.call("DELETE", "/metadata/sources/mqtt/confKeys/shared", None);
    assert_eq!(status, 200);
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(
        profiles["shared"],
        json!({"server": "tcp://127.0.0.1:1884", "qos": 2}),
        "the file's profile is back"
    );
}

#[test]
fn bad_conf_keys_are_refused_naming_what_is_wrong() {
    let server = Server::start(&temp_dir("meta-refuse"));
    let (status, body) = server.json(
        "PUT",
        "/metadata/sources/mqtt/confKeys/typo",
        Some(json!({"sever": "tcp://127.0.0.1:1883"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"sever\""),
        "{body}"
    );
    // A lookup table's cache settings belong in its type's profile.
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/sql/confKeys/lookups",
        Some(json!({"url": "mysql://root@127.0.0.1:3306/test", "lookup": {"cache": true}})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.json(
        "PUT",
        "/metadata/sources/nosuch/confKeys/x",
        Some(json!({})),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.json(
        "PUT",
        "/metadata/sources/mqtt/confKeys/bad%20name",
        Some(json!({})),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json(
        "PUT",
        "/metadata/sources/mqtt/confKeys/list",
        Some(json!([1, 2])),
    );
    assert_eq!(status, 400, "{body}");
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(profiles, json!({}), "nothing refused was kept");
    let (_, profiles) = server.json("GET", "/metadata/sources/yaml/sql", None);
    assert_eq!(profiles["lookups"]["lookup"], json!({"cache": true}));
}

#[test]
fn operators_list_the_graph_node_types_a_graph_rule_accepts() {
    let server = Server::start(&temp_dir("meta-ops"));
    let (status, ops) = server.json("GET", "/metadata/operators", None);
    assert_eq!(status, 200, "{ops}");
    let ops = ops.as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "function", "aggfunc", "filter", "pick", "window", "join", "groupby", "orderby"
        ]
    );
    // A graph rule built from the listed defaults runs: what the list says is what is accepted.
    let props = |name: &str| -> Value {
        let op = ops.iter().find(|o| o["name"] == name).unwrap();
        op["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["default"].clone(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    server.create_stream(
        r#"CREATE STREAM demo (device STRING, temperature FLOAT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
    );
    let rule = json!({"id": "g", "graph": {
        "nodes": {
            "demo": {"type": "source", "nodeType": "memory", "props": {"sourceName": "demo"}},
            "hot": {"type": "operator", "nodeType": "filter", "props": props("filter")},
            "p": {"type": "operator", "nodeType": "pick", "props": props("pick")},
            "out": {"type": "sink", "nodeType": "log", "props": {}}
        },
        "topo": {"sources": ["demo"], "edges": {"demo": ["hot"], "hot": ["p"], "p": ["out"]}}
    }});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
}
