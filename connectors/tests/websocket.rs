//! The websocket connector in client mode against real WebSocket servers the tests run on
//! loopback (tokio-tungstenite, plain and TLS): the source reads what the server sends, the
//! sink writes to it, and both come back after the server restarts.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use quiver_connectors::websocket::{
    WebsocketHub, WebsocketSink, WebsocketSinkConfig, WebsocketSource, WebsocketSourceConfig,
};
use quiver_connectors::{RawMessage, Sink, Source, SourceEvent, SourceOutput};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

#[path = "support/mqtt.rs"]
mod support;
use support::{free_port, unique};

#[path = "support/ws.rs"]
mod ws;
use ws::{PATIENCE, next_json};

#[path = "support/rows.rs"]
mod rows;

#[path = "../../server/tests/common/pki.rs"]
#[allow(dead_code)]
mod pki;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection the test server accepted, with the path the client asked for.
struct Accepted {
    path: String,
    ws: WebSocketStream<Box<dyn Io>>,
}

/// A WebSocket server on a loopback port; stops (and drops its connections) when dropped.
struct TestServer {
    accept: JoinHandle<()>,
    conns: mpsc::Receiver<Accepted>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    /// Listens on `port`, over TLS with `tls`.
    async fn start(port: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (tx, conns) = mpsc::channel(4);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let io: Box<dyn Io> = match &tls {
                    None => Box::new(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => Box::new(s),
                        Err(_) => continue,
                    },
                };
                let mut path = String::new();
                // The callback's type is tungstenite's, large error variant included.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    path = req.uri().to_string();
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(io, callback).await
                    && tx.send(Accepted { path, ws }).await.is_err()
                {
                    return;
                }
            }
        });
        TestServer { accept, conns }
    }

    /// The next connection a client made.
    async fn next_conn(&mut self) -> Accepted {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("a client connects")
            .expect("the server is listening")
    }
}

/// A running source and the events it produced.
struct RunningSource {
    rx: mpsc::Receiver<SourceEvent>,
    task: JoinHandle<Result<(), quiver_connectors::ConnectorError>>,
    state: Arc<quiver_connectors::mqtt::ConnectionState>,
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningSource {
    fn start(datasource: &str, props: Value) -> RunningSource {
        let config = WebsocketSourceConfig::parse(datasource, props.as_object().unwrap()).unwrap();
        let mut source = WebsocketSource::new(&WebsocketHub::default(), config).unwrap();
        let state = source.connection().expect("client mode has a connection");
        let (tx, rx) = mpsc::channel(16);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let task = tokio::spawn(async move { source.run(out).await });
        RunningSource { rx, task, state }
    }

    /// The next `n` messages.
    async fn messages(&mut self, n: usize) -> Vec<RawMessage> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
                Ok(Some(SourceEvent::Raw(msgs))) => got.extend(msgs),
                other => panic!("expected raw messages, got {other:?}"),
            }
        }
        got
    }
}

fn payloads(msgs: &[RawMessage]) -> Vec<Value> {
    msgs.iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

/// Waits until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn client_source_reads_text_and_binary_messages_and_reconnects() {
    let port = free_port();
    let path = format!("/feed/{}", unique());
    let mut server = TestServer::start(port, None).await;
    let mut source = RunningSource::start(&path, json!({"addr": format!("127.0.0.1:{port}")}));
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, path);
    conn.ws.send(Message::text(r#"{"a": 1}"#)).await.unwrap();
    conn.ws
        .send(Message::binary(br#"{"a": 2}"#.to_vec()))
        .await
        .unwrap();
    let msgs = source.messages(2).await;
    assert_eq!(payloads(&msgs), [json!({"a": 1}), json!({"a": 2})]);
    assert_eq!(msgs[0].topic.as_ref(), path);
    assert!(source.state.is_connected());

    // The server goes away: the source notices, and connects again once it is back.
    drop(conn);
    drop(server);
    until("the source sees the server gone", || {
        !source.state.is_connected()
    })
    .await;
    let mut server = TestServer::start(port, None).await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, path);
    conn.ws.send(Message::text(r#"{"a": 3}"#)).await.unwrap();
    assert_eq!(payloads(&source.messages(1).await), [json!({"a": 3})]);
    let status = source.state.snapshot();
    assert!(status.connected);
    assert!(status.last_error.is_some(), "the outage is recorded");
}

#[tokio::test]
async fn client_sink_writes_arrays_or_single_rows_and_reconnects() {
    let port = free_port();
    let path = format!("/results/{}", unique());
    let mut server = TestServer::start(port, None).await;
    let props = json!({"addr": format!("ws://127.0.0.1:{port}"), "path": path});
    let mut sink = WebsocketSink::new(
        WebsocketHub::default(),
        WebsocketSinkConfig::parse(&props).unwrap(),
    );
    sink.connect().await.unwrap();
    sink.collect_list(&rows::full_batch(&[("a", 1), ("b", 2)]))
        .await
        .unwrap();
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, path);
    assert_eq!(
        next_json(&mut conn.ws).await,
        json!([{"device": "a", "v": 1}, {"device": "b", "v": 2}])
    );

    // The server restarts; the next results go to the new one.
    let state = sink.status();
    drop(conn);
    drop(server);
    until("the sink sees the server gone", || !state.is_connected()).await;
    let mut server = TestServer::start(port, None).await;
    sink.collect_list(&rows::full_batch(&[("c", 3)]))
        .await
        .unwrap();
    let mut conn = server.next_conn().await;
    assert_eq!(
        next_json(&mut conn.ws).await,
        json!([{"device": "c", "v": 3}])
    );
    sink.close().await.unwrap();

    // sendSingle: one message per row.
    let mut props = props;
    props["sendSingle"] = json!(true);
    let mut sink = WebsocketSink::new(
        WebsocketHub::default(),
        WebsocketSinkConfig::parse(&props).unwrap(),
    );
    sink.collect_list(&rows::full_batch(&[("d", 4), ("e", 5)]))
        .await
        .unwrap();
    let mut conn = server.next_conn().await;
    assert_eq!(
        next_json(&mut conn.ws).await,
        json!({"device": "d", "v": 4})
    );
    assert_eq!(
        next_json(&mut conn.ws).await,
        json!({"device": "e", "v": 5})
    );
    sink.close().await.unwrap();
}

#[tokio::test]
async fn client_sink_with_check_connection_fails_when_the_server_is_away() {
    let port = free_port();
    let props = json!({"addr": format!("127.0.0.1:{port}"), "path": "/x", "checkConnection": true});
    let mut sink = WebsocketSink::new(
        WebsocketHub::default(),
        WebsocketSinkConfig::parse(&props).unwrap(),
    );
    let err = sink.connect().await.unwrap_err().to_string();
    assert!(err.contains("checkConnection"), "{err}");
}

#[tokio::test]
async fn wss_checks_the_server_certificate() {
    let dir = std::env::temp_dir().join(format!("quiver-ws-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = pki::Pki::new(&dir);
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let port = free_port();
    let mut server = TestServer::start(port, Some(acceptor)).await;
    let addr = format!("127.0.0.1:{port}");

    // A CA that did not sign the server's certificate: the connection fails, and says why.
    let wrong = RunningSource::start(
        "/tls",
        json!({"addr": addr, "scheme": "wss", "rootCaPath": pki.other_ca}),
    );
    until("the failed handshake is recorded", || {
        wrong.state.snapshot().last_error.is_some()
    })
    .await;
    let error = wrong.state.snapshot().last_error.unwrap();
    assert!(error.contains("TLS"), "{error}");
    drop(wrong);

    let mut source = RunningSource::start(
        "/tls",
        json!({"addr": format!("wss://{addr}"), "rootCaPath": pki.ca}),
    );
    let mut conn = server.next_conn().await;
    conn.ws
        .send(Message::text(r#"{"secure": true}"#))
        .await
        .unwrap();
    assert_eq!(
        payloads(&source.messages(1).await),
        [json!({"secure": true})]
    );
    std::fs::remove_dir_all(&dir).ok();
}
