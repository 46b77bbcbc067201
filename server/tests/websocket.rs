//! quiverd end to end with server-mode websocket streams and sinks: real WebSocket clients
//! (tokio-tungstenite) connect to the push listener, feed a stream and read a rule's results.

mod common;

#[path = "../../connectors/tests/support/ws.rs"]
mod ws;

use std::time::Duration;

use common::{Server, temp_dir};
use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use ws::{PATIENCE, next_json};

type Client = WebSocketStream<TcpStream>;

/// Connects to `path` on the push listener; the HTTP status when the upgrade is refused.
async fn connect(server: &Server, path: &str) -> Result<Client, u16> {
    server.ws_connect(path).await
}

/// Connects to `path` once a running rule serves it.
async fn connect_when_open(server: &Server, path: &str) -> Client {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match connect(server, path).await {
            Ok(ws) => return ws,
            Err(404) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("{path} refused with {status}"),
        }
    }
}

#[tokio::test]
async fn clients_feed_a_websocket_stream_and_read_a_websocket_sink() {
    let dir = temp_dir("websocket");
    let server = Server::start(&dir);
    server.create_stream(
        r#"CREATE STREAM ws_in (device STRING, v BIGINT) WITH (DATASOURCE="/ws/in", TYPE="websocket", FORMAT="json")"#,
    );
    // No rule uses the paths yet: the upgrade is refused.
    assert_eq!(connect(&server, "/ws/in").await.err(), Some(404));
    assert_eq!(connect(&server, "/ws/out").await.err(), Some(404));

    // Properties are checked when the rule is created: the error names the property.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "typo", "sql": "SELECT * FROM ws_in",
                    "actions": [{"websocket": {"path": "/ws/out", "pth": "/x"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("unknown property \"pth\""), "{body}");

    let (status, body) = server.call(
        "POST",
        "/rules",
        Some(
            json!({"id": "relay", "sql": "SELECT device, v FROM ws_in WHERE v > 1",
                    "actions": [{"websocket": {"path": "/ws/out", "sendSingle": true}}]}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    // Two viewers of the results, both get every result.
    let mut viewer = connect_when_open(&server, "/ws/out").await;
    let mut second = connect_when_open(&server, "/ws/out").await;
    let mut feeder = connect_when_open(&server, "/ws/in").await;
    feeder
        .send(Message::text(r#"{"device": "a", "v": 1}"#))
        .await
        .unwrap();
    feeder
        .send(Message::text(r#"{"device": "b", "v": 2}"#))
        .await
        .unwrap();
    // A binary message is a payload too; an array is several rows.
    feeder
        .send(Message::binary(
            br#"[{"device": "c", "v": 3}, {"device": "d", "v": 4}]"#.to_vec(),
        ))
        .await
        .unwrap();
    for ws in [&mut viewer, &mut second] {
        assert_eq!(next_json(ws).await, json!({"device": "b", "v": 2}));
        assert_eq!(next_json(ws).await, json!({"device": "c", "v": 3}));
        assert_eq!(next_json(ws).await, json!({"device": "d", "v": 4}));
    }
    // A viewer that leaves does not stop the others.
    drop(second);
    feeder
        .send(Message::text(r#"{"device": "e", "v": 5}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut viewer).await, json!({"device": "e", "v": 5}));

    // Once the rule is gone, so are its paths.
    let (status, body) = server.call("DELETE", "/rules/relay", None);
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while connect(&server, "/ws/out").await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "/ws/out stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connect(&server, "/ws/in").await.err(), Some(404));
}
