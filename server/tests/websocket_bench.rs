//! Messages/s out of the `websocket` sink into a local WebSocket peer, against a plain
//! tokio-tungstenite sender writing the same pre-encoded messages to the same kind of peer, in
//! the same invocation:
//! - server mode: the sink (`sendSingle`) on quiverd's push router, a client connected to its
//!   path; the plain case is a tokio-tungstenite server writing to such a client;
//! - client mode: the sink connecting out to a counting tokio-tungstenite server; the plain
//!   case is a tokio-tungstenite client writing to it.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-server --test websocket_bench
//! --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small load so the
//! harness cannot rot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use futures_util::{SinkExt, StreamExt};
use quiver_connectors::Connectors;
use quiver_connectors::codec::encode::batch_to_json_objects;
use quiver_connectors::websocket::hub::CLIENT_QUEUE;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

#[path = "../../connectors/tests/support/rows.rs"]
mod rows;

/// Rows per `collect_list` call in server mode: half a client's queue, so a producer that waits
/// for the client to take the previous half never overflows it.
const SERVER_BATCH: usize = CLIENT_QUEUE / 2;

/// `rows` result rows from `first`: `(device, v)`.
fn batch(first: i64, rows: usize) -> RecordBatch {
    let devices: Vec<String> = (0..rows).map(|i| format!("device-{}", i % 100)).collect();
    let rows: Vec<(&str, i64)> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), first + i as i64))
        .collect();
    rows::full_batch(&rows)
}

/// Counts the text messages of a connection into `count`.
async fn count_messages<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, count: Arc<AtomicUsize>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() {
            count.fetch_add(1, Ordering::Release);
        }
    }
}

/// Waits until `count` reaches `n`.
async fn until(count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "only {count:?} of {n} arrived");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// A counting WebSocket server on loopback: its address and the count of all connections.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            tokio::spawn(count_messages(ws, c.clone()));
        }
    });
    (addr, count)
}

/// A client of `url` counting what it receives.
async fn counting_client(addr: &str, path: &str) -> Arc<AtomicUsize> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(count_messages(ws, count.clone()));
    count
}

/// Server mode: rows into the sink until the client has `n` messages; returns msgs/s and how
/// many were dropped for the client.
async fn server_sink(n: usize) -> (f64, u64) {
    let connectors = Connectors::new();
    let hub = connectors.websocket().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = quiver_server::push::router(connectors.httppush().clone(), hub.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut sink = connectors
        .sink("websocket", &json!({"path": "/bench", "sendSingle": true}))
        .unwrap();
    sink.connect().await.unwrap();
    let count = counting_client(&addr, "/bench").await;
    while hub.clients("/bench") == 0 {
        tokio::task::yield_now().await;
    }
    let batches: Vec<RecordBatch> = (0..n / SERVER_BATCH)
        .map(|i| batch((i * SERVER_BATCH) as i64, SERVER_BATCH))
        .collect();
    let start = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        // The rule waits for nobody; the harness waits until the client has taken the batch
        // before the last, as a producer at the client's pace would.
        let taken = (i * SERVER_BATCH).saturating_sub(SERVER_BATCH);
        while count.load(Ordering::Acquire) + (hub.dropped("/bench") as usize) < taken {
            tokio::task::yield_now().await;
        }
        sink.collect_list(b).await.unwrap();
    }
    let dropped = hub.dropped("/bench");
    until(&count, n - dropped as usize).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    sink.close().await.unwrap();
    (rate, dropped)
}

/// A plain tokio-tungstenite server writing `messages` to its one client.
async fn plain_server(messages: &[Vec<u8>]) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let messages: Vec<Message> = messages
        .iter()
        .map(|m| Message::text(String::from_utf8(m.clone()).unwrap()))
        .collect();
    let n = messages.len();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ready_tx.send(()).unwrap();
        go_rx.await.unwrap();
        for m in messages {
            ws.send(m).await.unwrap();
        }
        // Keep the connection until the client has read everything.
        while ws.next().await.is_some() {}
    });
    let count = counting_client(&addr, "/plain").await;
    ready_rx.await.unwrap();
    let start = Instant::now();
    go_tx.send(()).unwrap();
    until(&count, n).await;
    n as f64 / start.elapsed().as_secs_f64()
}

/// Client mode: rows into a sink connecting out until the server has `n` messages.
async fn client_sink(n: usize, rows_per_batch: usize) -> f64 {
    let (addr, count) = counting_server().await;
    let connectors = Connectors::new();
    let mut sink = connectors
        .sink(
            "websocket",
            &json!({"addr": addr, "path": "/bench", "sendSingle": true, "checkConnection": true}),
        )
        .unwrap();
    sink.connect().await.unwrap();
    let batches: Vec<RecordBatch> = (0..n / rows_per_batch)
        .map(|i| batch((i * rows_per_batch) as i64, rows_per_batch))
        .collect();
    let start = Instant::now();
    for b in &batches {
        sink.collect_list(b).await.unwrap();
    }
    until(&count, n).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    sink.close().await.unwrap();
    rate
}

/// A plain tokio-tungstenite client writing `messages` to a counting server.
async fn plain_client(messages: &[Vec<u8>]) -> f64 {
    let (addr, count) = counting_server().await;
    let tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/plain"), tcp)
        .await
        .unwrap();
    let messages: Vec<Message> = messages
        .iter()
        .map(|m| Message::text(String::from_utf8(m.clone()).unwrap()))
        .collect();
    let n = messages.len();
    let start = Instant::now();
    for m in messages {
        ws.send(m).await.unwrap();
    }
    until(&count, n).await;
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sink_throughput_against_plain_tungstenite() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    // Multiples of 1,000 (client-mode batches) and of SERVER_BATCH.
    let n = if full { 256_000 } else { 16_000 };
    assert_eq!(n % 1000 + n % SERVER_BATCH, 0);
    let messages: Vec<Vec<u8>> = (0..n / 1000)
        .flat_map(|i| batch_to_json_objects(&batch(i as i64 * 1000, 1000), false))
        .collect();
    let (server, dropped) = server_sink(n).await;
    let plain_server = plain_server(&messages).await;
    let client = client_sink(n, 1000).await;
    let plain_client = plain_client(&messages).await;
    println!(
        "websocket bench, {n} messages of about {} bytes:\n\
         server mode: sink {server:.0} msgs/s ({dropped} dropped), plain server {plain_server:.0} \
         msgs/s, ratio {:.2}\n\
         client mode: sink {client:.0} msgs/s, plain client {plain_client:.0} msgs/s, ratio {:.2}",
        messages[0].len(),
        server / plain_server,
        client / plain_client,
    );
    assert_eq!(dropped, 0, "a producer at the client's pace loses nothing");
}
