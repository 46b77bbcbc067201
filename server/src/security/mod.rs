//! Who may call the REST API and the push listener, and what they are shown.
//!
//! - Authentication ([`Auth`]): eKuiper's JWT RS256 tokens (`--auth jwt`, public keys in
//!   `<data-dir>/mgmt`, [`jwt`]) and/or one static token (`--auth-token-file FILE`), sent in the
//!   `Authorization` header with or without `Bearer `. When either is on, every REST request
//!   but `GET /ping` without a valid token is answered 401.
//! - Browser safety ([`guard`]): a request that is not authenticated is refused with 403 when it
//!   carries an `Origin` outside `--allow-origin` (a web page posting to the API), or a `Host`
//!   that is neither the address the connection came in on, a loopback name, nor an
//!   `--allow-host` name (DNS rebinding). curl sends no `Origin` and `Host: localhost:9081`.
//! - Exposure ([`Security::check_exposure`]): the REST API binds a non-loopback address only
//!   with authentication or an explicit `--allow-unauthenticated`.
//! - Secrets ([`mask`]): what the server shows and logs has passwords and tokens masked.
//!
//! Tokens are never logged, and a refused token is never echoed.

pub mod jwt;
pub mod mask;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::api::ApiError;

/// The security flags as given (`quiverd --auth ...`).
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// `--auth jwt`: eKuiper's RS256 tokens, checked against the PEM public keys in
    /// `<data-dir>/mgmt` (the token's `iss` names the file).
    pub jwt: bool,
    /// `--auth-token-file FILE`: a file holding one static token (surrounding whitespace is
    /// ignored); requests must send it.
    pub token_file: Option<PathBuf>,
    /// `--allow-origin ORIGIN` (repeatable): browser origins (`https://dash.example:8080`) whose
    /// requests are served without a token. Default none.
    pub allow_origins: Vec<String>,
    /// `--allow-host NAME` (repeatable): `Host` names accepted besides loopback names and the
    /// address the connection came in on.
    pub allow_hosts: Vec<String>,
    /// `--allow-unauthenticated`: serve a non-loopback `--bind` without authentication.
    pub allow_unauthenticated: bool,
}

/// The folder of JWT public keys under the data dir.
pub fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("mgmt")
}

/// How requests authenticate.
#[derive(Debug, Default)]
pub struct Auth {
    jwt: Option<jwt::KeyRing>,
    /// SHA-256 of the static token: compared digest to digest, in constant time.
    token_digest: Option<[u8; 32]>,
}

impl Auth {
    /// Whether any authentication is on.
    pub fn enabled(&self) -> bool {
        self.jwt.is_some() || self.token_digest.is_some()
    }

    /// Checks an `Authorization` header value. The error is for the caller and never holds the
    /// token.
    pub fn verify(&self, header: &HeaderValue) -> Result<(), String> {
        let value = header
            .to_str()
            .map_err(|_| "the Authorization header is not text".to_string())?
            .trim();
        let token = match value.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
            _ => value,
        };
        if token.is_empty() {
            return Err("missing_token".into());
        }
        if let Some(want) = &self.token_digest {
            let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if constant_time_eq(&got, want) {
                return Ok(());
            }
        }
        match &self.jwt {
            Some(keys) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                keys.verify(token, now)
                    .map(|_| ())
                    .map_err(|e| format!("validate token error: {e}"))
            }
            None => Err("invalid token".into()),
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The validated security settings the listeners use.
#[derive(Debug, Default)]
pub struct Security {
    /// Authentication.
    pub auth: Auth,
    /// Allowed browser origins, lowercase, without a trailing `/`.
    allow_origins: Vec<String>,
    /// Allowed `Host` names, lowercase, without port.
    allow_hosts: Vec<String>,
    allow_unauthenticated: bool,
}

impl SecuritySettings {
    /// Reads the key folder and the token file.
    pub fn validate(&self, data_dir: &Path) -> anyhow::Result<Security> {
        let jwt = if self.jwt {
            let keys = jwt::KeyRing::load(&key_dir(data_dir))?;
            if keys.is_empty() {
                tracing::warn!(
                    "--auth jwt: no public key in {}; every request but /ping will be refused \
                     until one is put there and the server restarted",
                    keys.dir().display()
                );
            } else {
                tracing::info!(keys = keys.len(), dir = %keys.dir().display(), "JWT authentication on");
            }
            Some(keys)
        } else {
            None
        };
        let token_digest = match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?;
                let token = text.trim();
                anyhow::ensure!(
                    !token.is_empty(),
                    "the token file {} is empty",
                    path.display()
                );
                tracing::info!(file = %path.display(), "static token authentication on");
                Some(Sha256::digest(token.as_bytes()).into())
            }
            None => None,
        };
        let trim = |s: &String| s.trim().trim_end_matches('/').to_ascii_lowercase();
        Ok(Security {
            auth: Auth { jwt, token_digest },
            allow_origins: self.allow_origins.iter().map(trim).collect(),
            allow_hosts: self
                .allow_hosts
                .iter()
                .map(|h| host_name(&trim(h)).to_string())
                .collect(),
            allow_unauthenticated: self.allow_unauthenticated,
        })
    }
}

impl Security {
    /// Refuses to serve the REST API on a non-loopback address without authentication, unless
    /// `--allow-unauthenticated`; says why in the log either way.
    pub fn check_exposure(&self, bind: SocketAddr) -> anyhow::Result<()> {
        if bind.ip().is_loopback() || self.auth.enabled() {
            return Ok(());
        }
        if self.allow_unauthenticated {
            tracing::warn!(
                addr = %bind,
                "the REST API is reachable beyond this machine without authentication \
                 (--allow-unauthenticated): anyone who can reach it can read every rule and \
                 install plugins, which run native code"
            );
            return Ok(());
        }
        let why = format!(
            "refusing to serve the REST API on {bind} without authentication: anyone who can \
             reach it could install a plugin (native code) and read or change every rule; use \
             --auth jwt or --auth-token-file FILE, bind a loopback address such as \
             127.0.0.1:{}, or pass --allow-unauthenticated on a network you trust",
            bind.port()
        );
        tracing::error!("{why}");
        anyhow::bail!(why)
    }

    /// Whether an unauthenticated request looks like it comes from a browser page it must not
    /// (a foreign `Origin`) or through DNS rebinding (a foreign `Host`); the reason if so.
    fn foreign(&self, headers: &HeaderMap, local: Option<SocketAddr>) -> Option<String> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
            if !self
                .allow_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                && !same_origin(origin, headers)
            {
                return Some(format!(
                    "requests from origin \"{}\" are refused; allow it with --allow-origin or \
                     send a token",
                    origin.chars().take(100).collect::<String>()
                ));
            }
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let name = host_name(&host);
        let allowed = name == "localhost"
            || self.allow_hosts.iter().any(|h| h == name)
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || local.is_some_and(|l| l.ip() == ip));
        (!allowed).then(|| {
            format!(
                "requests for host \"{}\" are refused; allow it with --allow-host or send a token",
                host.chars().take(100).collect::<String>()
            )
        })
    }
}

/// Whether `origin` is the server's own (`http://` or `https://` and the request's `Host`): the
/// web console's pages calling the API they were served from. A rebinding page's origin names
/// its own host, which the `Host` check below still refuses.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !host.is_empty()
        && origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The name part of a `Host` value: `localhost:9081` → `localhost`, `[::1]:9081` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// The local address a connection came in on (the `ConnectInfo` of both listeners).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for LocalAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// Which listener a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The REST API: authentication, when on, is required.
    Rest,
    /// The httppush listener: eKuiper's push clients send no token, so only the browser checks
    /// apply (a valid token, when authentication is on, lifts them).
    Push,
}

/// The middleware of both listeners.
pub async fn guard(
    State((security, listener)): State<(Arc<Security>, Listener)>,
    request: Request,
    next: Next,
) -> Response {
    if listener == Listener::Rest
        && (request.uri().path() == "/ping"
            || crate::console::is_public(request.method(), request.uri().path()))
    {
        return next.run(request).await;
    }
    let headers = request.headers();
    // Rule test results are the REST API's output: their viewers need a token like it.
    let strict =
        listener == Listener::Rest || request.uri().path().starts_with(crate::ruletest::WS_PREFIX);
    if security.auth.enabled() {
        let verdict = match headers.get(header::AUTHORIZATION) {
            Some(value) => security.auth.verify(value),
            None => Err("missing_token".to_string()),
        };
        match verdict {
            Ok(()) => return next.run(request).await,
            Err(why) if strict => {
                tracing::debug!(path = %request.uri().path(), "401: {why}");
                let mut response = ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    message: why,
                }
                .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            Err(_) => {}
        }
    }
    let local = request
        .extensions()
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|c| c.0.0);
    if let Some(why) = security.foreign(headers, local) {
        tracing::debug!(path = %request.uri().path(), "403: {why}");
        return ApiError {
            status: StatusCode::FORBIDDEN,
            message: why,
        }
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn security(origins: &[&str], hosts: &[&str]) -> Security {
        SecuritySettings {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
        .validate(Path::new("/nonexistent"))
        .unwrap()
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:9081"), "localhost");
        assert_eq!(host_name("[::1]:9081"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.com"), "example.com");
    }

    #[test]
    fn curl_like_requests_pass_and_browser_ones_do_not() {
        let s = security(&["https://dash.example"], &["quiver.lan"]);
        let local = Some("192.168.1.5:9081".parse().unwrap());
        for host in [
            "localhost:9081",
            "127.0.0.1:9081",
            "[::1]:9081",
            "192.168.1.5:9081",
            "quiver.lan:9081",
            "LOCALHOST",
        ] {
            assert_eq!(
                s.foreign(&headers(&[("host", host)]), local),
                None,
                "{host}"
            );
        }
        assert!(
            s.foreign(&headers(&[("host", "evil.example:9081")]), local)
                .is_some()
        );
        assert!(
            s.foreign(&headers(&[("host", "10.0.0.9:9081")]), local)
                .is_some()
        );
        assert!(s.foreign(&headers(&[]), local).is_some(), "no Host");
        let with_origin = |o| headers(&[("host", "localhost:9081"), ("origin", o)]);
        assert_eq!(s.foreign(&with_origin("https://dash.example"), local), None);
        assert_eq!(
            s.foreign(&with_origin("https://DASH.example/"), local),
            None
        );
        assert!(
            s.foreign(&with_origin("https://evil.example"), local)
                .is_some()
        );
        assert!(s.foreign(&with_origin("null"), local).is_some());
    }

    #[test]
    fn the_servers_own_pages_pass_and_rebinding_ones_do_not() {
        let s = security(&[], &[]);
        let local = Some("127.0.0.1:9081".parse().unwrap());
        let page = |host, origin| headers(&[("host", host), ("origin", origin)]);
        // The web console, served from the REST port, posting to it.
        for (host, origin) in [
            ("127.0.0.1:9081", "http://127.0.0.1:9081"),
            ("localhost:9081", "https://LOCALHOST:9081"),
        ] {
            assert_eq!(s.foreign(&page(host, origin), local), None, "{origin}");
        }
        // Another port is another origin; a rebound name is refused by the Host check.
        assert!(
            s.foreign(&page("127.0.0.1:9081", "http://127.0.0.1:3000"), local)
                .is_some()
        );
        assert!(
            s.foreign(
                &page("evil.example:9081", "http://evil.example:9081"),
                local
            )
            .is_some()
        );
    }

    #[test]
    fn the_static_token_is_accepted_with_or_without_bearer() {
        let auth = Auth {
            jwt: None,
            token_digest: Some(Sha256::digest(b"s3cret").into()),
        };
        for ok in ["s3cret", "Bearer s3cret", "bearer  s3cret "] {
            assert_eq!(
                auth.verify(&HeaderValue::from_str(ok).unwrap()),
                Ok(()),
                "{ok}"
            );
        }
        for bad in ["s3cre", "s3cret2", "Bearer", "Basic s3cret"] {
            let err = auth
                .verify(&HeaderValue::from_str(bad).unwrap())
                .unwrap_err();
            assert!(!err.contains("s3cre"), "{err}");
        }
    }

    #[test]
    fn loopback_binds_need_nothing_and_others_need_auth_or_consent() {
        let open = security(&[], &[]);
        assert!(
            open.check_exposure("127.0.0.1:9081".parse().unwrap())
                .is_ok()
        );
        assert!(open.check_exposure("[::1]:9081".parse().unwrap()).is_ok());
        let err = open
            .check_exposure("0.0.0.0:9081".parse().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("without authentication"), "{err}");
        let consent = Security {
            allow_unauthenticated: true,
            ..Default::default()
        };
        assert!(
            consent
                .check_exposure("0.0.0.0:9081".parse().unwrap())
                .is_ok()
        );
        let authed = Security {
            auth: Auth {
                jwt: None,
                token_digest: Some([0; 32]),
            },
            ..Default::default()
        };
        assert!(
            authed
                .check_exposure("0.0.0.0:9081".parse().unwrap())
                .is_ok()
        );
    }
}
