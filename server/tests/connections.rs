//! Named connections end to end: the real quiverd, a private Mosquitto (its `$SYS` client count
//! is exact, which the shared broker's is not while other tests run), three streams and three
//! sinks sharing one MQTT client through `connectionSelector`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::mqtt::{PrivateBroker, TestClient, free_port, unique};
use common::{Server, temp_dir};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-pw";

/// Waits until `GET /connections/{id}` satisfies `done`; returns that answer.
fn wait_connection(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.json("GET", &format!("/connections/{id}"), None);
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "connection never reached the state: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The broker's connected-client count, read from `$SYS` after it has settled.
async fn connected_clients(port: u16) -> u64 {
    let mut sys = TestClient::start(port, Some("$SYS/broker/clients/connected".into()));
    sys.subscribed().await;
    // `sys_interval 1`: skip the retained value and take one published after we settled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut last = None;
    while let Ok(Some(p)) =
        tokio::time::timeout(Duration::from_millis(1500), sys.publishes.recv()).await
    {
        last = Some(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    // The count includes this `$SYS` client.
    last.expect("no $SYS client count")
        .trim()
        .parse::<u64>()
        .unwrap()
        - 1
}

/// Publishes on both input topics until every sink topic got something; returns the first
/// payload seen per sink topic.
async fn pump(
    publisher: &TestClient,
    out: &mut TestClient,
    prefix: &str,
    want: usize,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = BTreeMap::new();
    let mut n = 0;
    while seen.len() < want {
        assert!(Instant::now() < deadline, "sink topics so far: {seen:?}");
        n += 1;
        publisher
            .publish(&format!("{prefix}/a"), &format!(r#"{{"src":"a","n":{n}}}"#))
            .await;
        publisher
            .publish(
                &format!("{prefix}/k/x"),
                &format!(r#"{{"src":"kx","n":{n}}}"#),
            )
            .await;
        while let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(300), out.publishes.recv()).await
        {
            let body = String::from_utf8(p.payload.to_vec()).unwrap();
            let src: Value = serde_json::from_str(&body).unwrap();
            seen.entry(format!("{}:{}", p.topic, src["src"].as_str().unwrap()))
                .or_insert(body);
        }
    }
    seen
}

fn create_streams_and_rules(server: &Server, prefix: &str) {
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/viaShared",
        Some(json!({"connectionSelector": "shared", "qos": 1})),
    );
    assert_eq!(status, 200, "{body}");
    let filters = [
        format!("{prefix}/a"),
        format!("{prefix}/+/x"),
        format!("{prefix}/#"),
    ];
    for (i, filter) in filters.iter().enumerate() {
        server.create_stream(&format!(
            r#"CREATE STREAM s{i} (src STRING, n BIGINT) WITH (DATASOURCE="{filter}", TYPE="mqtt", FORMAT="json", CONF_KEY="viaShared")"#
        ));
        let rule = json!({
            "id": format!("r{i}"),
            "sql": format!("SELECT src, n FROM s{i}"),
            "actions": [{"mqtt": {"connectionSelector": "shared", "topic": format!("{prefix}-out/{i}"), "sendSingle": true}}]
        });
        let (status, body) = server.call("POST", "/rules", Some(rule));
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_sinks_share_one_client() {
    let port = free_port();
    let _broker = PrivateBroker::start_with(port, "sys_interval 1\n");
    let prefix = format!("conn/{}", unique());
    let dir = temp_dir("connections");
    let server = Server::start(&dir);

    // Create, then look: connected, secrets masked.
    let create = json!({"id": "shared", "typ": "mqtt", "props": {
        "server": format!("tcp://127.0.0.1:{port}"), "username": "quiver", "password": SECRET}});
    let (status, body) = server.call("POST", "/connections", Some(create.clone()));
    assert_eq!(status, 201, "{body}");
    let shown = tokio::task::block_in_place(|| {
        wait_connection(&server, "shared", |c| c["status"] == "connected")
    });
    assert_eq!(shown["typ"], "mqtt");
    assert_eq!(shown["isNamed"], true);
    assert_eq!(shown["props"]["password"], "******");
    assert_eq!(shown["props"]["username"], "quiver");
    let (_, all) = server.call("GET", "/connections", None);
    assert!(all.contains("\"shared\"") && !all.contains(SECRET), "{all}");

    // Refusals: duplicate, unsupported type by name, unknown property, secrets never echoed.
    assert_eq!(server.call("POST", "/connections", Some(create)).0, 409);
    let (status, body) = server.call(
        "POST",
        "/connections",
        Some(json!({"id": "db", "typ": "sql", "props": {"url": "mysql://root@127.0.0.1/test"}})),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("connection type \\\"sql\\\" is not supported"),
        "{body}"
    );
    let (status, body) = server.call(
        "POST",
        "/connections",
        Some(json!({"id": "bad", "typ": "mqtt", "props": {"topic": "x", "password": SECRET}})),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("\\\"topic\\\"") && !body.contains(SECRET),
        "{body}"
    );

    // Three streams and three sinks on the connection.
    create_streams_and_rules(&server, &prefix);
    let mut out = TestClient::start(port, Some(format!("{prefix}-out/#")));
    out.subscribed().await;
    let publisher = TestClient::start(port, None);
    let seen = pump(&publisher, &mut out, &prefix, 4).await;
    let topics: Vec<&String> = seen.keys().collect();
    assert_eq!(
        topics,
        [
            &format!("{prefix}-out/0:a"),
            &format!("{prefix}-out/1:kx"),
            &format!("{prefix}-out/2:a"),
            &format!("{prefix}-out/2:kx"),
        ],
        "each stream gets exactly the topics its filter matches"
    );
    let shown =
        tokio::task::block_in_place(|| wait_connection(&server, "shared", |c| c["refCount"] == 6));
    assert_eq!(shown["status"], "connected");

    // One client for quiverd: the broker sees it, the two test clients and nothing else.
    assert_eq!(connected_clients(port).await, 3);

    // In use: delete and update are refused, naming the users.
    let (status, body) = server.call("DELETE", "/connections/shared", None);
    assert_eq!(status, 400, "{body}");
    for user in ["stream \\\"s0\\\"", "stream \\\"s2\\\"", "rule \\\"r1\\\""] {
        assert!(body.contains(user), "{body}");
    }
    let (status, body) = server.call(
        "PUT",
        "/connections/shared",
        Some(json!({"typ": "mqtt", "props": {"server": format!("tcp://127.0.0.1:{port}")}})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("in use"), "{body}");

    // A restart keeps the connection, and the rules run on it again.
    server.stop();
    let server = Server::start(&dir);
    let shown = tokio::task::block_in_place(|| {
        wait_connection(&server, "shared", |c| {
            c["status"] == "connected" && c["refCount"] == 6
        })
    });
    assert_eq!(shown["props"]["password"], "******");
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), out.publishes.recv()).await
    {}
    assert_eq!(pump(&publisher, &mut out, &prefix, 4).await.len(), 4);
    assert_eq!(connected_clients(port).await, 3);

    // Once nothing uses it, it can be deleted, and its client goes.
    for i in 0..3 {
        assert_eq!(server.call("DELETE", &format!("/rules/r{i}"), None).0, 200);
        assert_eq!(
            server.call("DELETE", &format!("/streams/s{i}"), None).0,
            200
        );
    }
    // Unused, it can be replaced: a body copied from GET keeps the stored password.
    let mut edited = wait_connection(&server, "shared", |c| c.get("refCount").is_none());
    edited["props"]["clientId"] = json!(format!("quiver-{}", unique()));
    let body = json!({"id": "shared", "typ": "mqtt", "props": edited["props"]});
    let (status, text) = server.call("PUT", "/connections/shared", Some(body));
    assert_eq!(status, 200, "{text}");
    let shown = tokio::task::block_in_place(|| {
        wait_connection(&server, "shared", |c| c["status"] == "connected")
    });
    assert_eq!(shown["props"]["password"], "******");
    assert_eq!(shown["props"]["clientId"], edited["props"]["clientId"]);
    let (status, body) = server.call("DELETE", "/connections/shared", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.call("GET", "/connections/shared", None).0, 404);
    assert_eq!(connected_clients(port).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_without_its_connection_is_refused() {
    let dir = temp_dir("connections-unknown");
    let server = Server::start(&dir);
    let rule = json!({
        "id": "orphan",
        "sql": "SELECT 1 AS x FROM nowhere",
        "actions": [{"mqtt": {"connectionSelector": "missing", "topic": "t"}}]
    });
    server.create_stream(
        r#"CREATE STREAM nowhere (x BIGINT) WITH (DATASOURCE="t/in", TYPE="mqtt", FORMAT="json")"#,
    );
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert!(
        body.contains("unknown connection \\\"missing\\\""),
        "{status} {body}"
    );
    // Setting a connection property beside the selector is refused, not overridden.
    let rule = json!({
        "id": "both",
        "sql": "SELECT 1 AS x FROM nowhere",
        "actions": [{"mqtt": {"connectionSelector": "c", "server": "tcp://127.0.0.1:1883", "topic": "t"}}]
    });
    let (_, body) = server.call("POST", "/rules", Some(rule));
    assert!(
        body.contains("\\\"server\\\" cannot be set together with \\\"connectionSelector\\\""),
        "{body}"
    );
    // Sharing is MQTT's only: another connector naming a connection is refused by name.
    let rule = json!({
        "id": "rest",
        "sql": "SELECT 1 AS x FROM nowhere",
        "actions": [{"rest": {"connectionSelector": "c", "url": "http://127.0.0.1:9/x"}}]
    });
    let (_, body) = server.call("POST", "/rules", Some(rule));
    assert!(
        body.contains("on a rest sink: only mqtt connections can be shared"),
        "{body}"
    );
}
