//! The HTTP client: hyper's pooled client over HTTP/1.1 with keep-alive, `http://` and
//! `https://` (rustls, eKuiper's TLS properties), a per-request timeout covering the whole
//! exchange, and a bounded response body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::tls::TlsClient;

/// The largest response body read; a longer one fails the request (responses are logged or
/// checked, never streamed).
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// How much of a response body an error message or log line shows.
const EXCERPT_CHARS: usize = 256;

/// How long an unused connection stays open for the next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A response: its status and (bounded) body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Bytes,
}

impl Response {
    /// The start of the body as text, for messages.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

/// The start of `body` as text (lossy UTF-8), cut at [`EXCERPT_CHARS`] characters.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// A keep-alive HTTP/1.1 client with a timeout per request.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpClient {
    /// A client whose requests fail after `timeout` (None: no limit) and whose `https://`
    /// requests use `tls`. Makes no connection yet.
    pub fn new(timeout: Option<Duration>, tls: &TlsClient) -> Self {
        let mut connector = HttpConnector::new();
        // Requests are small single writes; Nagle's algorithm would hold each one back
        // waiting for the previous acknowledgement.
        connector.set_nodelay(true);
        connector.set_connect_timeout(timeout);
        // The TLS layer below takes https URLs; plain ones pass through.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.config()).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        HttpClient { client, timeout }
    }

    /// Sends `request` and reads the response body; an error says what failed, in words.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response, String> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(describe)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the response body failed: {e}"))?
                .to_bytes();
            Ok(Response { status, body })
        };
        match self.timeout {
            None => exchange.await,
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| format!("no response within {} ms", t.as_millis()))?,
        }
    }
}

/// A client error with its causes (hyper's top-level message alone is "client error").
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses an `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("\"{url}\" is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("\"{url}\": unsupported scheme \"{other}\"")),
        None => return Err(format!("\"{url}\": expected http://host[:port]/path")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("\"{url}\": the host is missing"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_excerpts() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a?b=1").unwrap().port_u16(),
            Some(8080)
        );
        assert!(parse_url("https://x/").is_ok());
        assert!(parse_url("ftp://x/").unwrap_err().contains("scheme"));
        assert!(parse_url("/only/a/path").is_err());
        assert!(parse_url("http://exa mple/").is_err());
        assert_eq!(excerpt(b"short"), "short");
        assert_eq!(excerpt(&[b'x'; 300]).len(), 259);
    }
}
