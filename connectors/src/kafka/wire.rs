//! One connection to one Kafka broker: TCP (or TLS), the API versions handshake, SASL (PLAIN
//! or SCRAM), and requests framed as the Kafka protocol frames them (a 4-byte size, a header,
//! a body).
//!
//! Each API is spoken at one fixed version ([`VERSIONS`]), checked against the range the broker
//! announces, so every field the client sets means what it was written for; a broker that
//! cannot speak a version gets an error naming the API and both ranges.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{Connection, Sasl, SaslMechanism};
use super::scram::ScramClient;

/// The version each API is spoken at: modern enough for record batches (magic 2) and
/// broker-stored group offsets, old enough for every broker since Kafka 2.4 and for Kafka 4.
pub(crate) const VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 8),
    (ApiKey::Fetch, 11),
    (ApiKey::ListOffsets, 5),
    (ApiKey::Metadata, 8),
    (ApiKey::FindCoordinator, 2),
    (ApiKey::OffsetCommit, 7),
    (ApiKey::OffsetFetch, 6),
    (ApiKey::SaslHandshake, 1),
    (ApiKey::SaslAuthenticate, 1),
    (ApiKey::CreateTopics, 4),
];

/// The largest response accepted (a fetch answers with at most `maxBytes`, 1 MB by default;
/// this bounds what a broken or hostile peer can make us allocate).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// How long connecting (TCP, TLS, handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may wait for its response: longer than any wait the request itself asks
/// of the broker (a fetch's 500 ms, a produce's 30 s), so only a hung broker reaches it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The client id sent in every request header.
const CLIENT_ID: &str = "quiver";

/// A request this client sends and the response it reads (kafka-protocol's own `Request`
/// trait needs its "broker" feature, which also builds the decoding of every request).
pub(crate) trait Request: Encodable + HeaderVersion {
    /// The API.
    const KEY: ApiKey;
    /// Its response.
    type Response: Decodable + HeaderVersion;
}

macro_rules! requests {
    ($($key:ident: $req:ty => $resp:ty),* $(,)?) => {
        $(impl Request for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        })*
    };
}

requests! {
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    Produce: ProduceRequest => ProduceResponse,
    Fetch: FetchRequest => FetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, authenticated connection to one broker.
pub(crate) struct Conn {
    stream: Box<dyn Stream>,
    address: String,
    correlation: i32,
    /// The broker's supported range for each API key we use.
    ranges: Vec<(ApiKey, i16, i16)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.address)
    }
}

impl Conn {
    /// Connects to `address` (`host:port`), wraps TLS if configured, learns the broker's API
    /// versions and logs in with SASL if configured.
    pub(crate) async fn connect(address: &str, settings: &Connection) -> Result<Conn, String> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open(address, settings))
            .await
            .map_err(|_| format!("{address}: no answer within {CONNECT_TIMEOUT:?}"))?
    }

    async fn open(address: &str, settings: &Connection) -> Result<Conn, String> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        // Produce and fetch are request/response: Nagle would hold a small request for the
        // previous response's acknowledgement.
        tcp.set_nodelay(true)
            .map_err(|e| format!("{address}: {e}"))?;
        let stream: Box<dyn Stream> = match &settings.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = address
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                    .unwrap_or(address);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("{address}: not a TLS server name: {e}"))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config());
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("{address}: TLS handshake: {e}"))?,
                )
            }
        };
        let mut conn = Conn {
            stream,
            address: address.to_string(),
            correlation: 0,
            ranges: Vec::new(),
        };
        conn.api_versions().await?;
        if let Some(sasl) = &settings.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// Asks for the broker's API version ranges (version 0: every broker answers it).
    async fn api_versions(&mut self) -> Result<(), String> {
        let response = self.exchange_at(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(format!(
                "{}: ApiVersions failed with error code {}",
                self.address, response.error_code
            ));
        }
        self.ranges = response
            .api_keys
            .iter()
            .filter_map(|k| {
                ApiKey::try_from(k.api_key)
                    .ok()
                    .map(|key| (key, k.min_version, k.max_version))
            })
            .collect();
        Ok(())
    }

    /// SASL: the handshake names the mechanism, then one authenticate round trip (PLAIN) or
    /// two (SCRAM: the client's first message, then its proof, checking the server's
    /// signature).
    async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), String> {
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(hash) => hash.mechanism(),
        };
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let response = self.send(&handshake).await?;
        if response.error_code != 0 {
            return Err(format!(
                "{}: the broker does not offer SASL {mechanism} (it offers {})",
                self.address,
                response
                    .mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match sasl.mechanism {
            SaslMechanism::Plain => {
                self.sasl_round(sasl, plain_token(sasl)).await?;
            }
            SaslMechanism::Scram(hash) => {
                let mut scram = ScramClient::new(
                    hash,
                    &sasl.username,
                    &sasl.password,
                    &ScramClient::random_nonce(),
                );
                let challenge = self
                    .sasl_round(sasl, Bytes::from(scram.first_message()))
                    .await?;
                let proof = scram
                    .final_message(&challenge)
                    .map_err(|e| self.login_error(sasl, &e))?;
                let answer = self.sasl_round(sasl, Bytes::from(proof)).await?;
                scram
                    .verify(&answer)
                    .map_err(|e| self.login_error(sasl, &e))?;
            }
        }
        Ok(())
    }

    /// One `SaslAuthenticate` round trip: sends `token`, returns the server's bytes.
    async fn sasl_round(&mut self, sasl: &Sasl, token: Bytes) -> Result<Bytes, String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let response = self.send(&request).await?;
        if response.error_code != 0 {
            let reason = response
                .error_message
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or("no reason given");
            return Err(self.login_error(sasl, reason));
        }
        Ok(response.auth_bytes)
    }

    fn login_error(&self, sasl: &Sasl, reason: &str) -> String {
        format!(
            "{}: SASL login of \"{}\" refused: {reason}",
            self.address, sasl.username
        )
    }

    /// The version this client speaks `key` at, if the broker supports it.
    fn version_of(&self, key: ApiKey) -> Result<i16, String> {
        let ours = VERSIONS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("{key:?} is not used by this client"))?;
        match self.ranges.iter().find(|(k, _, _)| *k == key) {
            Some((_, min, max)) if (*min..=*max).contains(&ours) => Ok(ours),
            Some((_, min, max)) => Err(format!(
                "{}: the broker speaks {key:?} versions {min} to {max}; this client needs {ours}",
                self.address
            )),
            None => Err(format!(
                "{}: the broker does not support {key:?}",
                self.address
            )),
        }
    }

    /// Sends `request` at this client's version for it and reads the response.
    pub(crate) async fn send<R: Request>(&mut self, request: &R) -> Result<R::Response, String> {
        let version = self.version_of(R::KEY)?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange_at(request, version))
            .await
            .map_err(|_| {
                format!(
                    "{}: no answer to {:?} within {REQUEST_TIMEOUT:?}",
                    self.address,
                    R::KEY
                )
            })?
    }

    /// Sends `request` without waiting for a response (a produce with `acks` 0, which the
    /// broker does not answer).
    pub(crate) async fn send_only<R: Request>(&mut self, request: &R) -> Result<(), String> {
        let version = self.version_of(R::KEY)?;
        self.write_request(request, version).await.map(|_| ())
    }

    async fn exchange_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, String> {
        let correlation = self.write_request(request, version).await?;
        let mut frame = self.read_frame().await?;
        let header = ResponseHeader::decode(
            &mut frame,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .map_err(|e| format!("{}: bad response header: {e}", self.address))?;
        if header.correlation_id != correlation {
            return Err(format!(
                "{}: response {} does not answer request {correlation}",
                self.address, header.correlation_id
            ));
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| format!("{}: bad {:?} response: {e}", self.address, R::KEY))
    }

    /// Writes one request; returns its correlation id.
    async fn write_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0); // the size, written below
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| format!("cannot encode {:?} v{version}: {e}", R::KEY))?;
        let size = i32::try_from(buf.len() - 4).map_err(|_| "request too large".to_string())?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&buf)
            .await
            .map_err(|e| format!("{}: {e}", self.address))?;
        self.stream
            .flush()
            .await
            .map_err(|e| format!("{}: {e}", self.address))?;
        Ok(self.correlation)
    }

    async fn read_frame(&mut self) -> Result<Bytes, String> {
        let address = &self.address;
        let size = self
            .stream
            .read_i32()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| format!("{address}: response size {size} out of range"))?;
        let mut frame = BytesMut::zeroed(size);
        self.stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        Ok(frame.freeze())
    }
}

/// The SASL PLAIN message: no authorization id, the user name and the password, NUL-separated.
fn plain_token(sasl: &Sasl) -> Bytes {
    let mut token = BytesMut::with_capacity(2 + sasl.username.len() + sasl.password.len());
    token.put_u8(0);
    token.put_slice(sasl.username.as_bytes());
    token.put_u8(0);
    token.put_slice(sasl.password.as_bytes());
    token.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_token_is_nul_separated() {
        let sasl = Sasl {
            mechanism: SaslMechanism::Plain,
            username: "u".into(),
            password: "pw".into(),
        };
        assert_eq!(&plain_token(&sasl)[..], b"\0u\0pw");
    }
}
