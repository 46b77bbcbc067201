//! Limits on every REST request: body size, time, and how many run at once. One slow or
//! huge request must not hold the server: past a limit a request gets an error naming it,
//! and the others are served.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// The largest request body. A rule is its SQL (at most 64 KiB, see
/// `quiver_compiler::limits::MAX_SQL_BYTES`) plus a few actions; 1 MiB is ample, and bounds
/// what one request makes the server buffer.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The longest a request may take, body upload included: above the 60 s a plugin download
/// may take plus loading it. A request past it gets 503 and its work is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The most requests served at once; the rest get 503 at once rather than queueing without
/// bound. eKuiper's REST API serves tools and people, a handful at a time; 64 leaves room for
/// dashboards polling status while bounding the memory and threads the API can take.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// The limits a router enforces (constants in production; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, bytes.
    pub body: usize,
    /// Longest request.
    pub timeout: Duration,
    /// Most requests at once.
    pub concurrent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body: MAX_BODY_BYTES,
            timeout: REQUEST_TIMEOUT,
            concurrent: MAX_CONCURRENT_REQUESTS,
        }
    }
}

/// Wraps `router` in the limits: every route, every method.
pub fn apply(router: Router, limits: Limits) -> Router {
    let permits = Arc::new(Semaphore::new(limits.concurrent));
    router
        // Bodies without a Content-Length (chunked) are cut off by the extractors.
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let permits = permits.clone();
                async move { limit(limits, &permits, req, next).await }
            },
        ))
}

async fn limit(limits: Limits, permits: &Semaphore, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limits.body as u64
    {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {n} bytes is above the limit of {}",
                limits.body
            ),
        );
    }
    let Ok(_permit) = permits.try_acquire() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many requests at once: the limit is {}; try again",
                limits.concurrent
            ),
        );
    };
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than the limit of {}s",
                limits.timeout.as_secs_f64()
            ),
        ),
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};

    use super::*;

    /// Serves `router` on a free loopback port; returns its address.
    async fn serve(router: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// One request; the status and body.
    async fn request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("head");
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let raw = String::from_utf8_lossy(&raw).to_string();
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = raw
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    fn post_head(len: usize) -> String {
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    }

    fn app(limits: Limits) -> Router {
        let router = Router::new()
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/ping", get(|| async { "pong" }));
        apply(router, limits)
    }

    #[tokio::test]
    async fn bodies_above_the_limit_are_refused_with_413() {
        let addr = serve(app(Limits {
            body: 100,
            ..Limits::default()
        }))
        .await;
        let (status, body) = request(addr, &post_head(10), b"0123456789").await;
        assert_eq!((status, body.as_str()), (200, "0123456789"));
        let (status, body) = request(addr, &post_head(101), &[b'x'; 101]).await;
        assert_eq!(status, 413);
        assert!(
            body.contains("request body of 101 bytes is above the limit of 100"),
            "{body}"
        );
        // Chunked, so no Content-Length: the extractor's limit catches it.
        let chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let (status, _) = request(
            addr,
            chunked,
            b"c8\r\n"
                .iter()
                .chain(&[b'x'; 200])
                .chain(b"\r\n0\r\n\r\n")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        )
        .await;
        assert_eq!(status, 413);
    }

    #[tokio::test]
    async fn slow_requests_time_out_and_excess_ones_are_refused() {
        let addr = serve(app(Limits {
            timeout: Duration::from_millis(300),
            concurrent: 2,
            ..Limits::default()
        }))
        .await;
        let slow = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let ping = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        // Two slow requests take both permits; a third request is refused while they run.
        let a = tokio::spawn(async move { request(addr, slow, b"").await });
        let b = tokio::spawn(async move { request(addr, slow, b"").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = request(addr, ping, b"").await;
        assert_eq!(status, 503);
        assert!(
            body.contains("too many requests at once: the limit is 2"),
            "{body}"
        );
        for slow in [a, b] {
            let (status, body) = slow.await.expect("joined");
            assert_eq!(status, 503);
            assert!(body.contains("longer than the limit of 0.3s"), "{body}");
        }
        // The permits came back.
        assert_eq!(request(addr, ping, b"").await, (200, "pong".into()));
    }
}
