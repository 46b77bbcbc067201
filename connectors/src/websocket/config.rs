//! Settings of the websocket source and sink, parsed and validated once from eKuiper's
//! properties: `addr` (absent or empty: server mode on quiverd's push listener), `scheme`
//! (`ws` or `wss`), the path (the stream's DATASOURCE, or the sink's `path`), eKuiper's TLS
//! properties for `wss`, and the sink's `checkConnection`, `sendSingle`, `sendNilField` and
//! `omitIfEmpty`.

use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::{Props, action_props};
use crate::tls::TlsClient;

const CONNECTOR: &str = "websocket";

/// Where a websocket source or sink talks.
#[derive(Debug, Clone)]
pub enum WebsocketMode {
    /// Clients connect to quiverd's push listener at this path (`addr` absent or empty).
    Server {
        /// The URL path, starting with `/`.
        path: String,
    },
    /// Quiver connects out to a server.
    Client(ClientTarget),
}

/// The server a client-mode source or sink connects to.
#[derive(Clone)]
pub struct ClientTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 80 for `ws`, 443 for `wss`).
    pub port: u16,
    /// The URL path (and query), starting with `/`.
    pub path: String,
    /// The TLS client for `wss`; None for `ws`.
    pub tls: Option<TlsClient>,
}

impl std::fmt::Debug for ClientTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTarget({})", self.url())
    }
}

impl ClientTarget {
    /// The URL connected to, `ws://host:port/path` or `wss://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// Settings of a websocket source.
#[derive(Debug, Clone)]
pub struct WebsocketSourceConfig {
    /// Server or client mode, with the path.
    pub mode: WebsocketMode,
}

impl WebsocketSourceConfig {
    /// Validates the stream's DATASOURCE (the path) and its `CONF_KEY` properties.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new(CONNECTOR, props);
        p.refuse_unknown(
            "websocket source",
            &crate::spec::source_spec(CONNECTOR).accepted(),
        )?;
        // eKuiper reads `path` when the stream names no DATASOURCE.
        let path = match datasource.trim() {
            "" => p.string("path")?.unwrap_or(""),
            d => d,
        };
        Ok(WebsocketSourceConfig {
            mode: mode(&p, path, "DATASOURCE")?,
        })
    }
}

/// Settings of a websocket sink.
#[derive(Debug, Clone)]
pub struct WebsocketSinkConfig {
    /// Server or client mode, with the path.
    pub mode: WebsocketMode,
    /// Fail the rule's start when nobody is connected (server mode) or the server cannot be
    /// reached (client mode) (`checkConnection`, default false).
    pub check_connection: bool,
    /// One message per row instead of one JSON array per batch (`sendSingle`).
    pub send_single: bool,
    /// Keep null fields as `null` (`sendNilField`, default false).
    pub send_nil: bool,
    /// Send nothing for a batch without rows (`omitIfEmpty`, default false).
    pub omit_if_empty: bool,
    /// `format` (with `delimiter`, `hasHeader`, `fields`) and `compression`.
    pub format: std::sync::Arc<crate::codec::sink_format::SinkFormat>,
}

impl WebsocketSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let p = action_props(CONNECTOR, props)?;
        p.refuse_unknown_sink_keys(
            "websocket sink",
            &crate::spec::sink_spec(CONNECTOR).accepted(),
        )?;
        let path = p.string("path")?.unwrap_or("");
        Ok(WebsocketSinkConfig {
            mode: mode(&p, path, "path")?,
            check_connection: p.boolean("checkconnection")?.unwrap_or(false),
            send_single: p.boolean("sendsingle")?.unwrap_or(false),
            send_nil: p.boolean("sendnilfield")?.unwrap_or(false),
            omit_if_empty: p.boolean("omitifempty")?.unwrap_or(false),
            format: std::sync::Arc::new(crate::codec::sink_format::SinkFormat::parse(&p, true)?),
        })
    }
}

/// The mode `addr`, `scheme` and the TLS properties ask for, at `path` (named `what` in errors).
fn mode(p: &Props<'_>, path: &str, what: &str) -> Result<WebsocketMode, ConnectorError> {
    let path = path.trim();
    if !path.starts_with('/') {
        return Err(p.error(format!(
            "{what} \"{path}\" must be a URL path starting with \"/\""
        )));
    }
    let addr = p.string("addr")?.unwrap_or("").trim();
    let scheme = p.string("scheme")?.map(str::trim).filter(|s| !s.is_empty());
    if addr.is_empty() {
        if let Some(name) = p.tls_property_set() {
            return Err(p.error(format!(
                "\"{name}\" applies to client mode (set \"addr\"); in server mode TLS is the \
                 push listener's (quiverd --tls-cert/--tls-key)"
            )));
        }
        if let Some(s) = scheme
            && !s.eq_ignore_ascii_case("ws")
        {
            return Err(p.error(format!(
                "\"scheme\" \"{s}\" applies to client mode (set \"addr\"); in server mode the \
                 push listener's TLS decides"
            )));
        }
        if path.contains('?') || path.split('/').any(|level| level == "+" || level == "#") {
            return Err(p.error(format!(
                "{what} \"{path}\": a server-mode path has no query and no \"+\" or \"#\" level"
            )));
        }
        return Ok(WebsocketMode::Server { path: path.into() });
    }
    let (addr_scheme, rest) = match addr.split_once("://") {
        Some((s, rest)) => (Some(s), rest),
        None => (None, addr),
    };
    let scheme = match (addr_scheme, scheme) {
        (Some(a), Some(s)) if !a.eq_ignore_ascii_case(s) => {
            return Err(p.error(format!(
                "\"addr\" \"{addr}\" and \"scheme\" \"{s}\" disagree"
            )));
        }
        (Some(s), _) | (None, Some(s)) => s.to_ascii_lowercase(),
        (None, None) => "ws".into(),
    };
    let tls = match scheme.as_str() {
        "ws" => {
            if let Some(name) = p.tls_property_set() {
                return Err(p.error(format!("\"{name}\" needs TLS: set \"scheme\" to \"wss\"")));
            }
            false
        }
        "wss" => true,
        other => {
            return Err(p.error(format!(
                "\"scheme\" \"{other}\" is not supported; expected \"ws\" or \"wss\""
            )));
        }
    };
    let (host, port) = host_port(rest.trim_end_matches('/'))
        .ok_or_else(|| p.error(format!("\"addr\" \"{addr}\" must be host:port")))?;
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    Ok(WebsocketMode::Client(ClientTarget {
        host,
        port,
        path: path.into(),
        tls: if tls { Some(p.tls_client()?) } else { None },
    }))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; None when malformed.
fn host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(datasource: &str, props: Value) -> Result<WebsocketMode, String> {
        WebsocketSourceConfig::parse(datasource, props.as_object().unwrap())
            .map(|c| c.mode)
            .map_err(|e| e.to_string())
    }

    fn sink(props: Value) -> Result<WebsocketSinkConfig, String> {
        WebsocketSinkConfig::parse(&props).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_follow_addr() {
        assert!(matches!(source("/in", json!({})).unwrap(),
            WebsocketMode::Server { path } if path == "/in"));
        assert!(matches!(
            source("/in", json!({"addr": ""})).unwrap(),
            WebsocketMode::Server { .. }
        ));
        // eKuiper's `path` stands in for an empty DATASOURCE.
        assert!(matches!(source("", json!({"path": "/p"})).unwrap(),
            WebsocketMode::Server { path } if path == "/p"));
        let WebsocketMode::Client(t) =
            source("/api/data", json!({"addr": "127.0.0.1:8080"})).unwrap()
        else {
            panic!("client mode")
        };
        assert_eq!(t.url(), "ws://127.0.0.1:8080/api/data");
        let WebsocketMode::Client(t) =
            source("/x?a=1", json!({"addr": "ws://[::1]:9000"})).unwrap()
        else {
            panic!("client mode")
        };
        assert_eq!(t.url(), "ws://[::1]:9000/x?a=1");
        let WebsocketMode::Client(t) = source(
            "/x",
            json!({"addr": "example.com", "scheme": "wss", "insecureSkipVerify": true}),
        )
        .unwrap() else {
            panic!("client mode")
        };
        assert_eq!(t.url(), "wss://example.com:443/x");
        let c =
            sink(json!({"path": "/out", "sendSingle": true, "checkConnection": "true"})).unwrap();
        assert!(c.send_single && c.check_connection && !c.omit_if_empty);
        assert!(matches!(c.mode, WebsocketMode::Server { .. }));
    }

    #[test]
    fn refusals_name_the_property() {
        assert!(
            source("in", json!({}))
                .unwrap_err()
                .contains("starting with \"/\"")
        );
        assert!(sink(json!({})).unwrap_err().contains("path \"\""));
        assert!(source("/a/+", json!({})).unwrap_err().contains("\"+\""));
        assert!(
            source("/a", json!({"adr": "x"}))
                .unwrap_err()
                .contains("\"adr\"")
        );
        assert!(
            sink(json!({"path": "/a", "pth": 1}))
                .unwrap_err()
                .contains("\"pth\"")
        );
        assert!(
            sink(json!({"path": "/a", "enableCache": true}))
                .unwrap_err()
                .contains("enableCache")
        );
        assert!(
            source("/a", json!({"rootCaPath": "/ca.pem"}))
                .unwrap_err()
                .contains("\"rootCaPath\" applies to client mode")
        );
        assert!(
            source("/a", json!({"addr": "h:1", "insecureSkipVerify": true}))
                .unwrap_err()
                .contains("wss")
        );
        assert!(
            source("/a", json!({"addr": "h:1", "scheme": "http"}))
                .unwrap_err()
                .contains("\"http\"")
        );
        assert!(
            source("/a", json!({"addr": "wss://h:1", "scheme": "ws"}))
                .unwrap_err()
                .contains("disagree")
        );
        assert!(
            source("/a", json!({"addr": "h:99999"}))
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            source("/a", json!({"scheme": "wss"}))
                .unwrap_err()
                .contains("client mode")
        );
    }
}
