//! Test support shared by the HTTP connector tests of several crates (included with
//! `#[path]`): a real HTTP/1.1 server on loopback, on a thread of its own, that records every
//! request it gets.
//!
//! Answers by path: `/status/<code>` answers that status with the body `failed with <code>`;
//! `/slow/<ms>` answers 200 after waiting; `/code/<n>` answers 200 with `{"code": n}`;
//! `/echo` answers 200 with the request's body; `/token` answers an OAuth access token
//! `{"access_token": "t<n>", "expires_in": 1}` and `/refresh` a refreshed one
//! `{"access_token": "r<n>"}` (n counts the requests to that path); any other path answers
//! 200 `ok`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
    /// The body as sent (a compressed body is not text).
    #[allow(dead_code)]
    pub bytes: Vec<u8>,
    /// The client's address: one per connection, so equal ones mean a reused connection.
    pub peer: SocketAddr,
}

impl Recorded {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// A running test server; stops when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> TestServer {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts a server on `addr`, e.g. the `host:port` of one that was stopped (its thread
    /// may still hold the port for a moment, so binding is retried for a few seconds).
    pub fn start_on(addr: &str) -> TestServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = requests.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(state);
                let serve = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                );
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        TestServer {
            base,
            requests,
            stop: Some(stop),
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Waits (blocking the thread) until `n` requests have arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {timeout:?}, got {}: {got:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn handle(
    State(requests): State<Arc<Mutex<Vec<Recorded>>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .expect("request body");
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // A block, so the guard is gone before any await (the handler's future must be Send).
    let earlier = {
        let mut seen = requests.lock().expect("requests lock");
        let earlier = seen
            .iter()
            .filter(|r| r.path.split('?').next() == path.split('?').next())
            .count();
        seen.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            bytes: body.to_vec(),
            peer,
        });
        earlier
    };
    let mut segments = parts.uri.path().trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next().and_then(|s| s.parse::<u64>().ok()),
    ) {
        (Some("status"), Some(code)) => (
            StatusCode::from_u16(code as u16).expect("status code"),
            format!("failed with {code}"),
        )
            .into_response(),
        (Some("slow"), Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "ok".into_response()
        }
        (Some("code"), Some(n)) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"code\": {n}}}")))
            .expect("response"),
        (Some("token"), _) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!(
                "{{\"access_token\": \"t{}\", \"expires_in\": 1}}",
                earlier + 1
            )))
            .expect("response"),
        (Some("refresh"), _) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!(
                "{{\"access_token\": \"r{}\"}}",
                earlier + 1
            )))
            .expect("response"),
        (Some("echo"), _) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("response"),
        _ => "ok".into_response(),
    }
}
