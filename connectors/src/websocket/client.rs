//! Connecting out (client mode): TCP, TLS for `wss` (the connector's rustls client, see
//! [`crate::tls`]), then the WebSocket handshake, each step bounded by [`CONNECT_TIMEOUT`].

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::MAX_MESSAGE;
use super::config::ClientTarget;

/// How long connecting (TCP, TLS and handshake together) may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The byte stream under a client connection: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open client connection.
pub type Connection = WebSocketStream<Box<dyn Io>>;

/// The limits of a client connection: messages and frames of at most [`MAX_MESSAGE`] bytes.
fn limits() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Connects to `target`; the error says which step failed.
pub(crate) async fn connect(target: &ClientTarget) -> Result<Connection, String> {
    connect_with(target, None).await
}

/// [`connect`] with an `Authorization` header on the handshake (the quiver CLI reading a
/// rule test's results from a server with authentication on).
pub async fn connect_with(
    target: &ClientTarget,
    authorization: Option<&HeaderValue>,
) -> Result<Connection, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(target, authorization))
        .await
        .unwrap_or_else(|_| Err(format!("no connection within {CONNECT_TIMEOUT:?}")))
}

async fn connect_now(
    target: &ClientTarget,
    authorization: Option<&HeaderValue>,
) -> Result<Connection, String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", target.host, target.port))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &target.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("TLS server name \"{}\": {e}", target.host))?;
            let stream = tokio_rustls::TlsConnector::from(tls.config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", target.host))?;
            Box::new(stream)
        }
    };
    let mut request = target
        .url()
        .into_client_request()
        .map_err(|e| format!("websocket request to {}: {e}", target.url()))?;
    if let Some(value) = authorization {
        request.headers_mut().insert(AUTHORIZATION, value.clone());
    }
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, io, Some(limits()))
        .await
        .map_err(|e| format!("websocket handshake with {}: {e}", target.url()))?;
    Ok(ws)
}
