//! eKuiper's `oAuth` for the httppull connectors: an access token fetched before the first
//! request, renewed once it expires, whose fields the request's templates can use
//! (`"headers": {"Authorization": "Bearer {{.access_token}}"}`).
//!
//! As eKuiper does it: `access` is a POST of `body` (JSON) to `url` whose JSON answer is the
//! token set; `expire` (seconds, a template over that answer, e.g. `{{.expires_in}}`) says
//! how long it lasts. With `refresh`, its POST (its `headers` and `body` templates over the
//! tokens) follows the access at once and runs again each time the token expires; its
//! answer's fields replace those of the same name. Without `refresh`, an expired token is
//! fetched again by `access`. A failed refresh falls back to `access`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::{Map, Value};

use super::client::{HttpClient, parse_url};
use super::request::{BodyType, Headers, Target};
use crate::ConnectorError;
use crate::codec::template::TextProp;
use crate::props::Props;

/// One token request (`access` or `refresh`).
#[derive(Debug, Clone)]
struct TokenRequest {
    /// Where it is POSTed.
    url: hyper::Uri,
    /// Its headers (templates over the tokens for `refresh`).
    headers: Headers,
    /// Its JSON body (a template over the tokens for `refresh`).
    body: TextProp,
}

/// The parsed `oAuth` property.
#[derive(Debug, Clone)]
pub struct OAuthSpec {
    access: TokenRequest,
    /// Seconds the token lasts, a template over the access answer; none: forever.
    expire: Option<TextProp>,
    refresh: Option<TokenRequest>,
}

/// Keys of `oAuth.access` and `oAuth.refresh` (lower case).
const ACCESS_KEYS: &[&str] = &["url", "body", "expire", "headers"];
const REFRESH_KEYS: &[&str] = &["url", "body", "headers"];

impl OAuthSpec {
    /// Reads `oAuth`, if set: `access` (with `url`) is required, `refresh` optional.
    pub(crate) fn parse(props: &Props<'_>) -> Result<Option<OAuthSpec>, ConnectorError> {
        let Some((name, value)) = props.get("oauth") else {
            return Ok(None);
        };
        let Value::Object(oauth) = value else {
            return Err(props.error(format!("\"{name}\" must be an object, got {value}")));
        };
        let part = |key: &str| oauth.iter().find(|(k, _)| k.eq_ignore_ascii_case(key));
        if let Some((k, _)) = oauth
            .iter()
            .find(|(k, _)| !["access", "refresh"].contains(&k.to_ascii_lowercase().as_str()))
        {
            return Err(props.error(format!(
                "unknown property \"{name}.{k}\"; expected access and refresh"
            )));
        }
        let access = part("access").ok_or_else(|| {
            props.error(format!("\"{name}\" needs \"access\" (its url and body)"))
        })?;
        let access_props = sub_props(props, name, access, ACCESS_KEYS)?;
        let expire = match access_props.string("expire")? {
            None | Some("") => None,
            Some(e) => Some(TextProp::parse("expire", e).map_err(|e| props.error(e))?),
        };
        let access = token_request(props, &format!("{name}.access"), &access_props)?;
        let refresh = match part("refresh") {
            None => None,
            Some(r) => {
                let p = sub_props(props, name, r, REFRESH_KEYS)?;
                Some(token_request(props, &format!("{name}.refresh"), &p)?)
            }
        };
        Ok(Some(OAuthSpec {
            access,
            expire,
            refresh,
        }))
    }
}

/// The object under `oAuth.<part>` as properties, its keys checked against `keys`.
fn sub_props<'a>(
    props: &Props<'_>,
    name: &str,
    (key, value): (&String, &'a Value),
    keys: &[&str],
) -> Result<Props<'a>, ConnectorError> {
    let Value::Object(map) = value else {
        return Err(props.error(format!("\"{name}.{key}\" must be an object, got {value}")));
    };
    let p = Props::new(props.connector(), map);
    p.refuse_unknown(&format!("{name}.{key}"), keys)?;
    Ok(p)
}

fn token_request(
    props: &Props<'_>,
    what: &str,
    p: &Props<'_>,
) -> Result<TokenRequest, ConnectorError> {
    let url = p
        .string("url")?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| props.error(format!("\"{what}.url\" is required")))?;
    let url = parse_url(url).map_err(|e| props.error(format!("\"{what}.url\": {e}")))?;
    let body =
        TextProp::parse("body", p.string("body")?.unwrap_or("")).map_err(|e| props.error(e))?;
    Ok(TokenRequest {
        url,
        headers: super::request::parse_headers(p)?,
        body,
    })
}

/// The tokens of one source or lookup table, fetched and renewed as they expire.
#[derive(Debug)]
pub struct OAuth {
    spec: OAuthSpec,
    /// The current tokens; the lock is only held to read or replace them, never over a
    /// request.
    state: Mutex<Option<Tokens>>,
}

#[derive(Debug, Clone)]
struct Tokens {
    fields: Map<String, Value>,
    fetched: Instant,
    lasts: Option<Duration>,
}

impl OAuth {
    /// A session that fetches its first token on first use.
    pub fn new(spec: OAuthSpec) -> Self {
        OAuth {
            spec,
            state: Mutex::new(None),
        }
    }

    /// The current token fields, fetched or renewed first when there are none yet or they
    /// expired.
    pub async fn tokens(&self, client: &HttpClient) -> Result<Map<String, Value>, String> {
        let current = self.state.lock().expect("oauth lock").clone();
        let fresh = match current {
            Some(t) if t.lasts.is_none_or(|d| t.fetched.elapsed() < d) => return Ok(t.fields),
            Some(t) => match &self.spec.refresh {
                Some(refresh) => match self.renew(client, refresh, t).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!("httppull oAuth: {e}; fetching a new access token");
                        self.access(client).await?
                    }
                },
                None => self.access(client).await?,
            },
            None => self.access(client).await?,
        };
        let fields = fresh.fields.clone();
        *self.state.lock().expect("oauth lock") = Some(fresh);
        Ok(fields)
    }

    /// The access request, then the refresh one if configured (as eKuiper does).
    async fn access(&self, client: &HttpClient) -> Result<Tokens, String> {
        let fields = post(client, &self.spec.access, &Value::Null, "access").await?;
        let lasts = match &self.spec.expire {
            None => None,
            Some(e) => {
                let text = e.render(&Value::Object(fields.clone()))?;
                let secs: f64 = text.trim().parse().map_err(|_| {
                    format!("oAuth access \"expire\" must render to seconds, got {text:?}")
                })?;
                // 0 or less: the token does not expire (eKuiper checks only a positive one).
                (secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
            }
        };
        let tokens = Tokens {
            fields,
            fetched: Instant::now(),
            lasts,
        };
        match &self.spec.refresh {
            Some(refresh) => self.renew(client, refresh, tokens).await,
            None => Ok(tokens),
        }
    }

    /// The refresh request over `tokens`; its answer's non-null fields replace theirs.
    async fn renew(
        &self,
        client: &HttpClient,
        refresh: &TokenRequest,
        mut tokens: Tokens,
    ) -> Result<Tokens, String> {
        let data = Value::Object(tokens.fields.clone());
        let answer = post(client, refresh, &data, "refresh").await?;
        for (k, v) in answer {
            if !v.is_null() {
                tokens.fields.insert(k, v);
            }
        }
        tokens.fetched = Instant::now();
        Ok(tokens)
    }
}

/// POSTs one token request (JSON body, its headers rendered over `data`) and returns the
/// answer's JSON object (the first one of an array).
async fn post(
    client: &HttpClient,
    request: &TokenRequest,
    data: &Value,
    what: &str,
) -> Result<Map<String, Value>, String> {
    let target = Target {
        method: Method::POST,
        uri: request.url.clone(),
        body_type: BodyType::Json,
        headers: request.headers.render(data)?,
    };
    let describe = target.describe();
    let body = Bytes::from(request.body.render(data)?);
    let response = client
        .send(target.request(body)?)
        .await
        .map_err(|e| format!("oAuth {what} {describe}: {e}"))?;
    if !response.status.is_success() {
        return Err(format!(
            "oAuth {what} {describe}: status {}: {}",
            response.status,
            response.excerpt()
        ));
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(Value::Array(items)) => match items.into_iter().next() {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(format!(
                "oAuth {what} {describe}: the answer holds no JSON object"
            )),
        },
        _ => Err(format!(
            "oAuth {what} {describe}: the answer is not a JSON object: {}",
            response.excerpt()
        )),
    }
}
