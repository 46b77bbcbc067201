//! The REST client: one request at a time to quiverd over the connectors' hyper client
//! (`http://`, or `https://` verified against `--ca` or the system's roots), with the bearer
//! token, and the answer's status turned into a [`CliError`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use quiver_connectors::http::{HttpClient, parse_url};
use quiver_connectors::tls::{MAX_PEM_BYTES, TlsClient};
use serde_json::Value;

use crate::args::Global;
use crate::error::{CliError, usage};
use crate::input::read_file;

pub use axum::http::Method;

/// A 2xx answer.
#[derive(Debug)]
pub struct Reply {
    /// The body (bounded by the connectors' response limit).
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, CliError> {
        self.parse()
    }

    /// The body as a `T` (e.g. [`crate::ordered::Entries`] to keep the server's key order).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, CliError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CliError::BadAnswer(format!("{e}: {}", self.text())))
    }
}

/// A client of one quiverd.
pub struct Client {
    http: HttpClient,
    /// The TLS client of an `https://` host (its push listener uses the same certificate).
    tls: Option<TlsClient>,
    /// `scheme://host:port` plus any path prefix, without a trailing `/`.
    base: String,
    /// `Bearer TOKEN`, checked to be a valid header value.
    authorization: Option<axum::http::HeaderValue>,
}

impl Client {
    /// A client of `--host` with `--token`, `--ca` and `--timeout`. A host without a scheme
    /// is `http://`.
    pub fn new(global: &Global) -> Result<Self, CliError> {
        let host = global.host.trim();
        let url = if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        let uri = parse_url(&url).map_err(|e| usage(format!("--host: {e}")))?;
        if uri.query().is_some() {
            return Err(usage(format!("--host: \"{host}\" must not have a query")));
        }
        let https = uri.scheme_str() == Some("https");
        let tls_client = match (&global.ca, https) {
            (Some(_), false) => {
                return Err(usage(format!(
                    "--ca is for https:// hosts; \"{host}\" is plain http"
                )));
            }
            (Some(path), true) => {
                let pem = read_file(path, MAX_PEM_BYTES as usize, "--ca")?;
                TlsClient::with_root_ca(&pem)
                    .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?
            }
            (None, true) => TlsClient::with_system_roots()
                .map_err(|e| usage(format!("{e}; pass the server's CA with --ca")))?,
            // Plain HTTP never uses it.
            (None, false) => TlsClient::without_roots(),
        };
        let authorization = match &global.token {
            None => None,
            Some(t) if t.trim().is_empty() => {
                return Err(usage("--token (QUIVER_TOKEN) is empty"));
            }
            Some(t) => Some(
                axum::http::HeaderValue::try_from(format!("Bearer {}", t.trim()))
                    .map_err(|_| usage("--token holds characters a header cannot carry"))?,
            ),
        };
        Ok(Client {
            http: HttpClient::new(Some(Duration::from_secs(global.timeout)), &tls_client),
            tls: https.then_some(tls_client),
            base: url.trim_end_matches('/').to_string(),
            authorization,
        })
    }

    /// The host name of `--host` (for the push listener, on the same host).
    pub fn host(&self) -> Result<String, CliError> {
        let uri = parse_url(&self.base).map_err(|e| usage(format!("--host: {e}")))?;
        let host = uri.host().unwrap_or("127.0.0.1");
        Ok(host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string())
    }

    /// The TLS client, when `--host` is `https://`.
    pub fn tls(&self) -> Option<&TlsClient> {
        self.tls.as_ref()
    }

    /// The `Authorization` header value of `--token`.
    pub fn authorization(&self) -> Option<&axum::http::HeaderValue> {
        self.authorization.as_ref()
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply, CliError> {
        self.send(Method::GET, path, None).await
    }

    /// `method path` with an optional JSON `body`; a 2xx answer or the failure.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Reply, CliError> {
        // Named in messages about answers without a body of their own.
        let what = format!("{method} {path}");
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| usage(format!("cannot make the request: {e}")))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|reason| CliError::Unreachable {
                host: self.base.clone(),
                reason,
            })?;
        let status = response.status.as_u16();
        match status {
            200..=299 => Ok(Reply {
                body: response.body,
            }),
            400..=499 => Err(CliError::Refused {
                status,
                message: server_message(&response.body, status, &what),
            }),
            _ => Err(CliError::ServerFailed {
                status,
                message: server_message(&response.body, status, &what),
            }),
        }
    }
}

/// The `message` of eKuiper's error body `{"error": code, "message": "..."}`, or the body.
fn server_message(body: &[u8], status: u16, what: &str) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(message)) = map.get("message")
    {
        return message.clone();
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("{what}: the server answered {status} without a message")
    } else {
        text
    }
}

/// `segment` percent-encoded for a URL path: names and ids may hold any character.
pub fn segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
