//! quiverd end to end with eKuiper's rule test API: `POST /ruletest` with mocked rows, a real
//! WebSocket client on `/test/{id}` of the push listener, `POST /ruletest/{id}/start` and
//! `DELETE /ruletest/{id}`.

mod common;

#[path = "../../connectors/tests/support/ws.rs"]
mod ws;

use std::time::Duration;

use common::{Server, temp_dir};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use ws::{PATIENCE, next_json};

type Client = common::WsClient;

/// Connects to `/test/{id}` on the push listener; the HTTP status when refused.
async fn connect(server: &Server, id: &str) -> Result<Client, u16> {
    server.ws_connect(&format!("/test/{id}")).await
}

/// Waits until connecting to `/test/{id}` is refused with 404 (the test is gone).
async fn wait_gone(server: &Server, id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match connect(server, id).await {
            Err(404) => return,
            Err(status) => panic!("/test/{id} refused with {status}"),
            Ok(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/test/{id} still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads result messages (JSON arrays of rows) until `n` rows came.
async fn rows(ws: &mut Client, n: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    while rows.len() < n {
        match next_json(ws).await {
            Value::Array(batch) => rows.extend(batch),
            other => panic!("expected a list of rows, got {other}"),
        }
    }
    rows
}

/// Whether the server ended the connection: a Close frame or the end of the stream.
async fn closed(ws: &mut Client) -> bool {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(other))) => panic!("expected the end, got {other:?}"),
            Err(_) => return false,
        }
    }
}

fn demo_server(name: &str, args: &[&str]) -> Server {
    let dir = temp_dir(name);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let server = Server::start_args(&dir, &args, None);
    server.create_stream(
        r#"CREATE STREAM demo (a BIGINT, b STRING) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
    );
    server
}

#[tokio::test]
async fn a_filter_test_sends_its_rows_to_the_websocket_and_delete_ends_it() {
    let server = demo_server("ruletest-filter", &[]);
    let (status, body) = server.json(
        "POST",
        "/ruletest",
        Some(json!({
            "id": "t1",
            "sql": "SELECT a, b FROM demo WHERE a > 1",
            "mockSource": {"demo": {
                "data": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}],
                "interval": 1, "loop": false}}
        })),
    );
    assert_eq!(status, 200, "{body}");
    let port: u16 = server
        .push_addr()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body, json!({"id": "t1", "port": port}));
    // A test is not a rule.
    assert_eq!(server.json("GET", "/rules", None).1, json!([]));

    // The client connects before the start and sees every result.
    let mut viewer = connect(&server, "t1").await.expect("the endpoint is open");
    let (status, body) = server.call("POST", "/ruletest/t1/start", None);
    assert_eq!((status, body.as_str()), (200, "Test rule t1 was started"));
    // Two workers filter: the rows may come in either order.
    let mut got = rows(&mut viewer, 2).await;
    got.sort_by_key(|r| r["a"].as_i64());
    assert_eq!(got, [json!({"a": 2, "b": "y"}), json!({"a": 3, "b": "z"})]);

    let (status, body) = server.call("DELETE", "/ruletest/t1", None);
    assert_eq!((status, body.as_str()), (200, "Test rule t1 was stopped."));
    assert!(closed(&mut viewer).await, "the viewer stays connected");
    let (status, body) = server.json("POST", "/ruletest/t1/start", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["message"], "test rule \"t1\" not found");
    assert_eq!(server.call("DELETE", "/ruletest/t1", None).0, 404);
    wait_gone(&server, "t1").await;
    assert_eq!(server.json("GET", "/rules", None).1, json!([]));
}

#[tokio::test]
async fn a_window_test_honours_its_sink_props_and_unmocked_streams_read_their_source() {
    let server = demo_server("ruletest-window", &[]);
    let (status, body) = server.json(
        "POST",
        "/ruletest",
        Some(json!({
            "id": "win",
            "sql": "SELECT count(*) AS n, sum(a) AS s FROM demo GROUP BY COUNTWINDOW(2)",
            "mockSource": {"demo": {
                "data": [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}], "interval": 1, "loop": false}},
            "sinkProps": {"sendSingle": true, "fields": ["s"]}
        })),
    );
    assert_eq!(status, 200, "{body}");
    let mut viewer = connect(&server, "win").await.expect("the endpoint is open");
    assert_eq!(server.call("POST", "/ruletest/win/start", None).0, 200);
    // sendSingle: one object per row; fields: only `s`.
    assert_eq!(next_json(&mut viewer).await, json!({"s": 3}));
    assert_eq!(next_json(&mut viewer).await, json!({"s": 7}));

    // A stream the test does not mock reads its real source, here the push listener.
    server.create_stream(
        r#"CREATE STREAM pushed (a BIGINT) WITH (DATASOURCE="/feed", TYPE="httppush", FORMAT="json")"#,
    );
    let (status, body) = server.json(
        "POST",
        "/ruletest",
        Some(json!({"id": "live", "sql": "SELECT a * 10 AS b FROM pushed"})),
    );
    assert_eq!(status, 200, "{body}");
    let mut live = connect(&server, "live")
        .await
        .expect("the endpoint is open");
    assert_eq!(server.call("POST", "/ruletest/live/start", None).0, 200);
    // The push is refused (404) until the started rule reads the path.
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.push("/feed", r#"{"a": 5}"#).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the test never read /feed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&mut live, 1).await, [json!({"b": 50})]);
    assert_eq!(server.json("GET", "/rules", None).1, json!([]));
    // A server shutdown removes its tests: it stops cleanly with two open.
    server.stop();
}

#[tokio::test]
async fn refusals_name_what_is_wrong() {
    let server = demo_server("ruletest-refusals", &[]);
    let refused = |body: Value| {
        let (status, body) = server.json("POST", "/ruletest", Some(body));
        (
            status,
            body["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (status, message) = refused(json!({"id": "bad", "sql": "SELEKT a FROM demo"}));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("SELEKT"), "{message}");
    let (status, message) = refused(json!({"id": "bad", "sql": "SELECT a FROM nosuch"}));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("nosuch"), "{message}");
    let (status, message) = refused(json!({"id": "bad", "sql": "SELECT a FROM demo",
        "mockSource": {"other": {"data": [{"a": 1}]}}}));
    assert_eq!(
        (status, message.as_str()),
        (
            400,
            "mockSource \"other\" is not a stream the rule reads (it reads \"demo\")"
        )
    );
    let (status, message) = refused(json!({"id": "bad", "sql": "SELECT a FROM demo",
        "mockSource": {"demo": {"data": [{"a": 1}], "intervall": 5}}}));
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("unknown property \"intervall\""),
        "{message}"
    );
    let (status, message) = refused(json!({"id": "bad", "sql": "SELECT a FROM demo",
        "sinkProps": {"path": "/elsewhere"}}));
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("sinkProps \"path\" cannot be set"),
        "{message}"
    );
    let (status, message) = refused(json!({"id": "a/b", "sql": "SELECT a FROM demo"}));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("URL path segment"), "{message}");
    let (status, message) = refused(json!({"id": "bad", "sql": "SELECT a FROM demo", "mock": {}}));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("unknown field `mock`"), "{message}");

    // Limits: mocked rows, then open tests.
    let many: Vec<Value> = (0..10_001).map(|i| json!({"a": i})).collect();
    let (status, message) = refused(json!({"id": "big", "sql": "SELECT a FROM demo",
        "mockSource": {"demo": {"data": many}}}));
    assert_eq!(
        (status, message.as_str()),
        (400, "mockSource holds 10001 rows, above the limit of 10000")
    );
    for i in 0..16 {
        let body = json!({"id": format!("t{i}"), "sql": "SELECT a FROM demo"});
        assert_eq!(server.call("POST", "/ruletest", Some(body)).0, 200);
    }
    let (status, message) = refused(json!({"id": "t16", "sql": "SELECT a FROM demo"}));
    assert_eq!(
        (status, message.as_str()),
        (
            429,
            "too many rule tests: 16 are open, the limit; delete one first"
        )
    );
    // Replacing an open test is not a new one; deleting one makes room.
    assert_eq!(
        server
            .call(
                "POST",
                "/ruletest",
                Some(json!({"id": "t3", "sql": "SELECT b FROM demo"}))
            )
            .0,
        200
    );
    assert_eq!(server.call("DELETE", "/ruletest/t0", None).0, 200);
    assert_eq!(
        server
            .call(
                "POST",
                "/ruletest",
                Some(json!({"id": "t16", "sql": "SELECT a FROM demo"}))
            )
            .0,
        200
    );
}

#[tokio::test]
async fn a_test_left_unstarted_is_removed_after_the_idle_timeout() {
    let server = demo_server("ruletest-idle", &["--ruletest-idle-timeout", "1"]);
    let body = json!({"id": "idle", "sql": "SELECT a FROM demo"});
    assert_eq!(server.call("POST", "/ruletest", Some(body)).0, 200);
    wait_gone(&server, "idle").await;
    assert_eq!(server.call("POST", "/ruletest/idle/start", None).0, 404);
}

#[tokio::test]
async fn with_authentication_on_the_results_need_the_token_too() {
    let dir = temp_dir("ruletest-auth");
    let file = dir.join("token");
    std::fs::write(&file, "ruletest-token\n").unwrap();
    let args = ["--auth-token-file".to_string(), file.display().to_string()];
    let server = Server::start_args(&dir, &args, None);
    let auth = [("Authorization", "Bearer ruletest-token")];
    let body = json!({"id": "t", "sql": "SELECT * FROM demo"}).to_string();
    let stream = json!({"sql": r#"CREATE STREAM demo () WITH (DATASOURCE="demo", TYPE="memory")"#});
    assert_eq!(
        server
            .request("POST", "/streams", &auth, Some(&stream.to_string()))
            .0,
        201
    );
    assert_eq!(server.request("POST", "/ruletest", &[], Some(&body)).0, 401);
    assert_eq!(
        server.request("POST", "/ruletest", &auth, Some(&body)).0,
        200
    );
    // The push listener's other paths need no token; the tests' endpoints do.
    assert_eq!(connect(&server, "t").await.err(), Some(401));
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/test/t", server.push_addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer ruletest-token".parse().unwrap());
    let tcp = TcpStream::connect(server.push_addr()).await.unwrap();
    assert!(tokio_tungstenite::client_async(request, tcp).await.is_ok());
}
