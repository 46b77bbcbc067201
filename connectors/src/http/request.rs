//! The request properties of the HTTP connectors, parsed once into a [`RequestSpec`] and
//! rendered into a [`Target`] per request (properties may be templates).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use serde_json::{Map, Value};

use super::client::{Response, parse_url};
use crate::ConnectorError;
use crate::codec::template::TextProp;
use crate::props::Props;
use crate::tls::TlsClient;

/// eKuiper's default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

/// The longest `timeout` accepted (one hour).
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// eKuiper HTTP properties this build refuses, with the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "formdata",
        "multipart bodies (bodyType \"formdata\") are not implemented yet",
    ),
    (
        "filefieldname",
        "multipart bodies (bodyType \"formdata\") are not implemented yet",
    ),
];

/// How the request body is made and labelled (`bodyType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// No body.
    None,
    /// `application/json`.
    Json,
    /// `text/plain`.
    Text,
    /// `text/html`.
    Html,
    /// `application/xml`.
    Xml,
    /// `application/javascript`.
    Javascript,
    /// `application/x-www-form-urlencoded`: a row's fields as `key=value` pairs.
    Form,
    /// `application/octet-stream`.
    Binary,
}

impl BodyType {
    /// Parses eKuiper's names, case-insensitively.
    pub fn parse(s: &str) -> Result<BodyType, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "none" => BodyType::None,
            "json" => BodyType::Json,
            "text" => BodyType::Text,
            "html" => BodyType::Html,
            "xml" => BodyType::Xml,
            "javascript" => BodyType::Javascript,
            "form" => BodyType::Form,
            "binary" => BodyType::Binary,
            "formdata" => {
                return Err("bodyType \"formdata\" (multipart) is not implemented yet".to_string());
            }
            _ => {
                return Err(format!(
                    "unknown bodyType \"{s}\"; expected none, json, text, html, xml, \
                     javascript, form or binary"
                ));
            }
        })
    }

    /// The `Content-Type` it sends (None for no body).
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            BodyType::None => None,
            BodyType::Json => Some("application/json"),
            BodyType::Text => Some("text/plain"),
            BodyType::Html => Some("text/html"),
            BodyType::Xml => Some("application/xml"),
            BodyType::Javascript => Some("application/javascript"),
            BodyType::Form => Some("application/x-www-form-urlencoded"),
            BodyType::Binary => Some("application/octet-stream"),
        }
    }
}

/// Parses an HTTP method eKuiper allows (case-insensitive).
fn parse_method(s: &str) -> Result<Method, String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        "HEAD" => Ok(Method::HEAD),
        _ => Err(format!(
            "unsupported method \"{s}\"; expected get, post, put, patch, delete or head"
        )),
    }
}

/// Checks one header; the error names it.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name \"{name}\""))?;
    let v =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header \"{name}\""))?;
    Ok((n, v))
}

/// The extra request headers (`headers`): a map whose values may be templates, or one
/// template that renders to a JSON object of headers.
#[derive(Debug, Clone)]
pub enum Headers {
    /// Header name to value.
    Map(Vec<(String, TextProp)>),
    /// A template rendering to `{"name": "value", ...}`.
    Template(TextProp),
}

impl Headers {
    /// True when any header depends on the data.
    pub fn is_template(&self) -> bool {
        match self {
            Headers::Map(m) => m.iter().any(|(_, v)| v.is_template()),
            Headers::Template(_) => true,
        }
    }

    /// The headers for `data`.
    pub fn render(&self, data: &Value) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        match self {
            Headers::Map(m) => m
                .iter()
                .map(|(name, value)| header(name, &value.render(data)?))
                .collect(),
            Headers::Template(t) => {
                let text = t.render(data)?;
                let map: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                    format!("\"headers\" must render to a JSON object, got {text:?}: {e}")
                })?;
                map.iter()
                    .map(|(name, v)| header(name, &scalar_text(v)))
                    .collect()
            }
        }
    }
}

/// A JSON scalar as header or form text: strings as they are, others as JSON.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `application/x-www-form-urlencoded` text of an object's fields.
pub fn form(map: &Map<String, Value>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in map {
        out.append_pair(k, &scalar_text(v));
    }
    out.finish()
}

/// When a response counts as a success (`responseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// A 2xx status (eKuiper's default).
    Code,
    /// A 2xx status and a JSON body whose `code` field (in each object) is 2xx.
    Body,
}

impl ResponseType {
    /// Checks an answer: a 2xx status, and with `Body` a 2xx `code` in the body. The error
    /// starts with "answered" and quotes the start of the body.
    pub fn check(self, response: &Response) -> Result<(), String> {
        if !response.status.is_success() {
            return Err(format!(
                "answered {}: {}",
                response.status,
                response.excerpt()
            ));
        }
        if self == ResponseType::Body {
            let objects = match serde_json::from_slice::<Value>(&response.body) {
                Ok(Value::Object(o)) => vec![Value::Object(o)],
                Ok(Value::Array(a)) => a,
                _ => {
                    return Err(format!(
                        "answered a body that is not a JSON object (responseType \"body\"): {}",
                        response.excerpt()
                    ));
                }
            };
            for o in &objects {
                let code = o.get("code").and_then(Value::as_i64).unwrap_or(0);
                if !(200..300).contains(&code) {
                    return Err(format!(
                        "answered code {code} in the body: {}",
                        response.excerpt()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The request properties eKuiper's HTTP connectors share.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The HTTP method (`method`, default GET as in eKuiper).
    pub method: TextProp,
    /// The endpoint (`url`, required, `http://`).
    pub url: TextProp,
    /// The body type (`bodyType`; default none for GET and HEAD, json otherwise).
    pub body_type: TextProp,
    /// Extra headers (`headers`); they override the `Content-Type` the body type sets.
    pub headers: Headers,
    /// The longest a request may take (`timeout` ms, default 5000; 0: no limit).
    pub timeout: Option<Duration>,
    /// When an answer is a success (`responseType`, default code).
    pub response_type: ResponseType,
    /// How `https://` servers are verified and what this client presents (eKuiper's TLS
    /// properties; the system's roots when none is set).
    pub tls: TlsClient,
}

impl RequestSpec {
    /// Reads the request properties (`spec::shared::HTTP_REQUEST` and the TLS ones); `url_suffix` is appended to `url`
    /// (the httppull source's `DATASOURCE`).
    pub(crate) fn parse(props: &Props<'_>, url_suffix: &str) -> Result<Self, ConnectorError> {
        for (key, reason) in REFUSED {
            if let Some((name, _)) = props.get(key) {
                return Err(props.error(format!("\"{name}\" is not supported: {reason}")));
            }
        }
        let text = |name: &str, text: &str| TextProp::parse(name, text).map_err(|e| props.error(e));
        let url = props
            .string("url")?
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| props.error("\"url\" is required".into()))?;
        let url = text("url", &format!("{url}{url_suffix}"))?;
        if let TextProp::Fixed(u) = &url {
            parse_url(u).map_err(|e| props.error(e))?;
        }
        let method = text("method", props.string("method")?.unwrap_or("get"))?;
        let fixed_method = match &method {
            TextProp::Fixed(m) => Some(parse_method(m).map_err(|e| props.error(e))?),
            TextProp::Template(..) => None,
        };
        let body_type = match props.string("bodytype")?.filter(|b| !b.is_empty()) {
            Some(b) => text("bodyType", b)?,
            // eKuiper: no body for GET and HEAD unless asked; JSON for the others.
            None => TextProp::Fixed(
                match fixed_method {
                    Some(Method::GET) | Some(Method::HEAD) => "none",
                    _ => "json",
                }
                .into(),
            ),
        };
        if let TextProp::Fixed(b) = &body_type {
            BodyType::parse(b).map_err(|e| props.error(e))?;
        }
        let timeout = match props.uint("timeout")? {
            None => Some(DEFAULT_TIMEOUT),
            Some(0) => None,
            Some(ms) if ms > MAX_TIMEOUT_MS => {
                return Err(props.error(format!(
                    "\"timeout\" {ms} is above the limit of {MAX_TIMEOUT_MS} ms"
                )));
            }
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        let response_type = match props.string("responsetype")?.unwrap_or("code") {
            "code" => ResponseType::Code,
            "body" => ResponseType::Body,
            other => {
                return Err(props.error(format!(
                    "unknown responseType \"{other}\"; expected code or body"
                )));
            }
        };
        let tls = match props.tls_property_set() {
            Some(_) => props.tls_client()?,
            // Read when a request goes to an https URL; a machine without a root store can
            // still send plain http.
            None => TlsClient::with_system_roots().unwrap_or_else(|e| {
                tracing::debug!("http client: {e}; https servers cannot be verified");
                TlsClient::without_roots()
            }),
        };
        Ok(RequestSpec {
            method,
            url,
            body_type,
            headers: parse_headers(props)?,
            timeout,
            response_type,
            tls,
        })
    }

    /// True when a request's target (method, url, body type, headers) depends on the data.
    pub fn is_dynamic(&self) -> bool {
        self.method.is_template()
            || self.url.is_template()
            || self.body_type.is_template()
            || self.headers.is_template()
    }

    /// Renders the target for `data` (a row, or the pull times) and checks it.
    pub fn target(&self, data: &Value) -> Result<Target, String> {
        Ok(Target {
            method: parse_method(&self.method.render(data)?)?,
            uri: parse_url(&self.url.render(data)?)?,
            body_type: BodyType::parse(&self.body_type.render(data)?)?,
            headers: self.headers.render(data)?,
        })
    }
}

/// Where and how one request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The method.
    pub method: Method,
    /// The URL.
    pub uri: Uri,
    /// The body type.
    pub body_type: BodyType,
    /// The extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// `METHOD url`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }

    /// The request with `body` (dropped for body type none), the body type's
    /// `Content-Type`, then the user's headers, which win (eKuiper sets them last).
    pub fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let body = match self.body_type {
            BodyType::None => Bytes::new(),
            _ => body,
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(Full::new(body))
            .map_err(|e| format!("{}: {e}", self.describe()))?;
        let headers = request.headers_mut();
        if let Some(ct) = self.body_type.content_type() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(request)
    }
}

/// Reads `headers`: a map of names to values (each may be a template) or one template.
pub(super) fn parse_headers(props: &Props<'_>) -> Result<Headers, ConnectorError> {
    match props.get("headers") {
        None => Ok(Headers::Map(Vec::new())),
        Some((_, Value::String(s))) => {
            let t = TextProp::parse("headers", s).map_err(|e| props.error(e))?;
            if let TextProp::Fixed(text) = &t {
                // Fixed text must already be the JSON object.
                Headers::Template(t.clone())
                    .render(&Value::Null)
                    .map_err(|e| props.error(format!("\"headers\" {text:?}: {e}")))?;
            }
            Ok(Headers::Template(t))
        }
        Some((_, Value::Object(map))) => {
            let mut headers = Vec::new();
            for (name, value) in map {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    other => {
                        return Err(
                            props.error(format!("header \"{name}\" must be a string, got {other}"))
                        );
                    }
                };
                let prop = TextProp::parse(name, &text).map_err(|e| props.error(e))?;
                if let TextProp::Fixed(v) = &prop {
                    header(name, v).map_err(|e| props.error(e))?;
                } else {
                    HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| props.error(format!("invalid header name \"{name}\"")))?;
                }
                headers.push((name.clone(), prop));
            }
            Ok(Headers::Map(headers))
        }
        Some((name, other)) => Err(props.error(format!(
            "\"{name}\" must be an object of header names to values, or a template; got {other}"
        ))),
    }
}
