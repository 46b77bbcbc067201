//! Rows/s out of three sources, each against its service's own client reading the same data in
//! the same invocation, at the connector level (`source.run(out)` into a rule's queue, counted
//! until every row arrived):
//! - `redisSub`: messages published (pipelined) to a private redis-server, against the
//!   `redis` crate's own subscriber receiving the same publishes;
//! - `httppull`: a local axum server answering each poll with the same JSON array of rows,
//!   against the same hyper client polling it in a loop;
//! - `websocket` in client mode: a local tokio-tungstenite server sending JSON messages,
//!   against a plain tokio-tungstenite client reading them.
//!
//! The `sql` source has its own harness, tests/sql_source_bench.rs.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-connectors --test source_bench
//! --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small load so the
//! harness cannot rot. One test runs the cases one after another, so they never share the CPU.

#[path = "support/source_bench.rs"]
mod bench;
#[path = "support/redis.rs"]
mod private_redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{PATIENCE, drain, payloads, report, source};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use private_redis::{PrivateRedis, free_port};
use quiver_connectors::http::HttpClient;
use quiver_connectors::httppull::HttpPullConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

// ---- redisSub ----

/// Subscribers (pattern ones) the server has now.
fn numpat(conn: &mut redis::Connection) -> i64 {
    redis::cmd("PUBSUB").arg("NUMPAT").query(conn).unwrap()
}

/// Waits until the server has `n` pattern subscribers.
fn await_numpat(conn: &mut redis::Connection, n: i64) {
    let deadline = Instant::now() + PATIENCE;
    while numpat(conn) != n {
        assert!(Instant::now() < deadline, "no {n} subscribers in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Publishes the pipelines on a thread of its own; gives back the seconds it took.
fn publish(
    server: &PrivateRedis,
    pipes: Arc<Vec<redis::Pipeline>>,
) -> std::thread::JoinHandle<f64> {
    let mut conn = server.connection();
    std::thread::spawn(move || {
        let start = Instant::now();
        for p in pipes.iter() {
            let _: () = p.query(&mut conn).unwrap();
        }
        start.elapsed().as_secs_f64()
    })
}

/// `n` messages published in pipelines of 1,000 to channel `bench`: the redisSub source
/// (`bench*`), then the `redis` crate's own subscriber, each alone on the server.
async fn redis_sub(n: usize) -> Value {
    let server = PrivateRedis::start(free_port());
    let addr = server.addr();
    server.unlimit_subscribers();
    let mut admin = server.connection();
    let bodies = payloads(n);
    let pipes: Arc<Vec<redis::Pipeline>> = Arc::new(
        bodies
            .chunks(1000)
            .map(|chunk| {
                let mut p = redis::pipe();
                for b in chunk {
                    p.cmd("PUBLISH").arg("bench").arg(b.as_slice()).ignore();
                }
                p
            })
            .collect(),
    );

    // 1. The source.
    let src = source(
        "redissub",
        "",
        json!({"address": addr, "channels": "bench*"}),
    );
    let mut publisher = None;
    let (source_secs, last) = drain(
        src,
        n,
        |_| 1,
        async |_| {
            await_numpat(&mut admin, 1);
            let start = Instant::now();
            publisher = Some(publish(&server, pipes.clone()));
            start
        },
    )
    .await;
    let source_publish_secs = publisher.unwrap().join().unwrap();
    assert_eq!(&last[..], &bodies[n - 1][..]);
    await_numpat(&mut admin, 0);

    // 2. The client: the same pattern subscription, each payload taken as bytes.
    let mut conn = server.connection();
    let subscriber = std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe("bench*").unwrap();
        pubsub.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut last = Vec::new();
        for _ in 0..n {
            last = pubsub.get_message().unwrap().get_payload_bytes().to_vec();
        }
        (Instant::now(), last)
    });
    await_numpat(&mut admin, 1);
    let start = Instant::now();
    let client_publish_secs = publish(&server, pipes).join().unwrap();
    let (end, last) = subscriber.join().unwrap();
    let client_secs = (end - start).as_secs_f64();
    assert_eq!(last, bodies[n - 1]);
    report(
        "redisSub",
        n,
        source_secs,
        client_secs,
        json!({
            "publish_rows_per_s_source_run": (n as f64 / source_publish_secs).round(),
            "publish_rows_per_s_client_run": (n as f64 / client_publish_secs).round(),
        }),
    )
}

// ---- httppull ----

/// Serves `body` (JSON) on every path, on the test's runtime; its base URL and the task.
async fn serve_json(body: Bytes) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, task)
}

/// `polls` answers of a `per_poll`-row JSON array: the httppull source (`interval` 1 ms,
/// its least), then its own hyper client polling the same URL back to back.
async fn httppull(polls: usize, per_poll: usize) -> Value {
    let rows = polls * per_poll;
    let objects = payloads(per_poll);
    let mut array = b"[".to_vec();
    array.extend(objects.join(&b","[..]));
    array.push(b']');
    let body = Bytes::from(array);
    let (base, server) = serve_json(body.clone()).await;
    let props = json!({"url": format!("{base}/rows"), "interval": 1});
    let len = body.len();
    let count = |p: &[u8]| {
        assert_eq!(p.len(), len, "a whole answer");
        per_poll
    };
    let (source_secs, last) = drain(
        source("httppull", "", props.clone()),
        rows,
        count,
        async |t| t,
    )
    .await;
    let decoded: Vec<Value> = serde_json::from_slice(&last).unwrap();
    assert_eq!(decoded.len(), per_poll);

    let config = HttpPullConfig::parse("", props.as_object().unwrap()).unwrap();
    let client = HttpClient::new(config.request.timeout, &config.request.tls);
    let target = config.request.target(&json!({})).unwrap();
    let start = Instant::now();
    let mut got = 0;
    for _ in 0..polls {
        let response = client.send(target.request(Bytes::new()).unwrap()).await;
        got += count(&response.unwrap().body);
    }
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!(got, rows);
    server.abort();
    report(
        "httppull",
        rows,
        source_secs,
        client_secs,
        json!({"rows_per_poll": per_poll, "polls": polls}),
    )
}

// ---- websocket ----

/// A server that sends `messages` to every client that connects, then keeps the connection
/// open until the client leaves; its address.
async fn ws_server(messages: Arc<Vec<Message>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let messages = messages.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                for m in messages.iter() {
                    if ws.feed(m.clone()).await.is_err() {
                        return;
                    }
                }
                let _ = ws.flush().await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    addr
}

/// `n` JSON messages from a local server: the websocket source in client mode, then a plain
/// tokio-tungstenite client; each time from connecting to the last message.
async fn websocket(n: usize) -> Value {
    let bodies = payloads(n);
    let messages: Vec<Message> = bodies
        .iter()
        .map(|b| Message::text(String::from_utf8(b.clone()).unwrap()))
        .collect();
    let addr = ws_server(Arc::new(messages)).await;
    let (source_secs, last) = drain(
        source("websocket", "/bench", json!({"addr": addr})),
        n,
        |_| 1,
        async |t| t,
    )
    .await;
    assert_eq!(&last[..], &bodies[n - 1][..]);

    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/bench"), tcp)
        .await
        .unwrap();
    let mut got = 0;
    let mut last = Bytes::new();
    while got < n {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                got += 1;
                last = Bytes::from(t);
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("after {got} of {n} messages: {other:?}"),
        }
    }
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!(&last[..], &bodies[n - 1][..]);
    report(
        "websocket client mode",
        n,
        source_secs,
        client_secs,
        json!({}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sources_against_their_services_clients() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let scale = if full { 100 } else { 1 };
    redis_sub(2_000 * scale).await;
    httppull(20 * scale, if full { 1000 } else { 100 }).await;
    websocket(2_000 * scale).await;
}
