//! The httppull source against a real HTTP server on loopback.

#[path = "support/http.rs"]
mod http;

use std::sync::Arc;
use std::time::Duration;

use http::TestServer;
use quiver_connectors::httppull::{HttpPullConfig, HttpPullSource};
use quiver_connectors::{Source, SourceEvent, SourceOutput};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Runs a source for `props` on `datasource`; returns its events and the task.
fn start(
    datasource: &str,
    props: Value,
) -> (mpsc::Receiver<SourceEvent>, tokio::task::JoinHandle<()>) {
    let config = HttpPullConfig::parse(datasource, props.as_object().unwrap()).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    let task = tokio::spawn(async move {
        let mut source = HttpPullSource::new(config);
        let _ = source.run(out).await;
    });
    (rx, task)
}

/// The payloads of the next `n` events, as JSON.
async fn next_payloads(rx: &mut mpsc::Receiver<SourceEvent>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the source is running");
        for m in event.into_messages().expect("raw messages") {
            assert_eq!(&*m.topic, "/items?kind=a");
            out.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn pulls_at_the_interval_with_pull_times_in_url_and_body() {
    let server = TestServer::start();
    let (mut rx, task) = start(
        "/items?kind=a",
        json!({
            "url": format!("{}/echo", server.base),
            "method": "post",
            "interval": 50,
            "headers": {"Accept": "application/json"},
            "body": "{\"from\": {{.LastPullTime}}, \"to\": {{.PullTime}}}"
        }),
    );
    let got = next_payloads(&mut rx, 3).await;
    task.abort();
    // Each pull asks for what is new since the last one.
    assert_eq!(got[1]["from"], got[0]["to"], "{got:?}");
    assert_eq!(got[2]["from"], got[1]["to"], "{got:?}");
    let first_gap = got[0]["to"].as_i64().unwrap() - got[0]["from"].as_i64().unwrap();
    assert_eq!(first_gap, 50, "the first window is one interval: {got:?}");
    let gap = got[2]["to"].as_i64().unwrap() - got[1]["to"].as_i64().unwrap();
    assert!((40..1000).contains(&gap), "pulls {gap} ms apart");
    let requests = server.requests();
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/echo/items?kind=a")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("application/json"));
    // One keep-alive connection for every pull.
    assert!(requests.iter().all(|q| q.peer == r.peer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_skips_an_unchanged_answer() {
    let server = TestServer::start();
    let (mut rx, task) = start(
        "/items?kind=a",
        json!({
            "url": format!("{}/echo", server.base),
            "method": "put",
            "interval": "20ms",
            "incremental": true,
            "body": "[{\"a\": 1}, {\"a\": 2}]"
        }),
    );
    assert_eq!(
        next_payloads(&mut rx, 1).await,
        [json!([{"a": 1}, {"a": 2}])]
    );
    server.wait_for(5, Duration::from_secs(10));
    task.abort();
    assert!(rx.try_recv().is_err(), "an unchanged answer went out again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pulls_send_nothing_and_polling_goes_on() {
    let server = TestServer::start();
    let (mut rx, task) = start(
        "",
        json!({"url": format!("{}/status/500", server.base), "interval": 20}),
    );
    server.wait_for(3, Duration::from_secs(10));
    // A bad `code` in the body fails a pull too, with responseType body.
    let (mut rx2, task2) = start(
        "",
        json!({"url": format!("{}/code/503", server.base), "interval": 20,
               "responseType": "body"}),
    );
    server.wait_for(6, Duration::from_secs(10));
    task.abort();
    task2.abort();
    assert!(rx.try_recv().is_err());
    assert!(rx2.try_recv().is_err());
    let gets = server.requests();
    assert!(gets.iter().all(|r| r.method == "GET" && r.body.is_empty()));
}

/// Polls the server until `done` holds for its requests; panics after 10 s.
fn wait_until(
    server: &TestServer,
    done: impl Fn(&[http::Recorded]) -> bool,
) -> Vec<http::Recorded> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = server.requests();
        if done(&got) {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "never came: {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every request until a pull carried `authorization` (waiting off the async threads, which
/// the source needs).
async fn pulls_until_authorized(
    server: TestServer,
    authorization: &'static str,
) -> Vec<http::Recorded> {
    tokio::task::spawn_blocking(move || {
        wait_until(&server, |r| {
            to(r, "/echo")
                .iter()
                .any(|p| p.header("authorization") == Some(authorization))
        })
    })
    .await
    .unwrap()
}

/// The requests to paths starting with `prefix`.
fn to(requests: &[http::Recorded], prefix: &str) -> Vec<http::Recorded> {
    requests
        .iter()
        .filter(|r| r.path.starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_access_token_is_fetched_used_in_headers_and_fetched_again_when_expired() {
    let server = TestServer::start();
    let (_rx, task) = start(
        "/items?kind=a",
        json!({
            "url": format!("{}/echo", server.base),
            "interval": 100,
            "headers": {"Authorization": "Bearer {{.access_token}}"},
            "oAuth": {"access": {
                "url": format!("{}/token", server.base),
                "body": "{\"user\": \"u\", \"code\": \"c\"}",
                "expire": "{{.expires_in}}"
            }}
        }),
    );
    // The token lasts 1 s (`expires_in`): a second one is fetched, and later pulls use it.
    let got = pulls_until_authorized(server, "Bearer t2").await;
    task.abort();
    let first = &got[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/token")
    );
    assert_eq!(first.json(), json!({"user": "u", "code": "c"}));
    assert_eq!(first.header("content-type"), Some("application/json"));
    let pulls = to(&got, "/echo");
    assert_eq!(pulls[0].header("authorization"), Some("Bearer t1"));
    assert_eq!(to(&got, "/token").len(), 2, "one token per second: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refresh_follows_the_access_and_renews_the_token() {
    let server = TestServer::start();
    let (_rx, task) = start(
        "/items?kind=a",
        json!({
            "url": format!("{}/echo", server.base),
            "interval": 100,
            "headers": {"Authorization": "Bearer {{.access_token}}"},
            "oAuth": {
                "access": {"url": format!("{}/token", server.base), "expire": "{{.expires_in}}"},
                "refresh": {
                    "url": format!("{}/refresh", server.base),
                    "headers": {"X-Token": "{{.access_token}}"}
                }
            }
        }),
    );
    let got = pulls_until_authorized(server, "Bearer r2").await;
    task.abort();
    let paths: Vec<&str> = got.iter().take(3).map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/token", "/refresh", "/echo/items?kind=a"]);
    let refreshes = to(&got, "/refresh");
    // The refresh carries the token it renews; the access token is fetched only once.
    assert_eq!(refreshes[0].header("x-token"), Some("t1"));
    assert_eq!(refreshes[1].header("x-token"), Some("r1"));
    assert_eq!(to(&got, "/token").len(), 1);
    assert_eq!(
        to(&got, "/echo")[0].header("authorization"),
        Some("Bearer r1")
    );
}
