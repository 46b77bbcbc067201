//! TLS client settings under eKuiper's property names, built into a rustls client configuration
//! (ring crypto; neither OpenSSL nor aws-lc is built).
//!
//! The properties, as eKuiper's `cert` package reads them:
//! - `certificationPath` + `privateKeyPath`: a client certificate chain and its key (PEM files);
//!   `certificationRaw` + `privateKeyRaw`: the same as base64-encoded PEM text. Paths win when
//!   both forms are given. Relative paths are relative to the server's working directory.
//! - `rootCaPath` / `rootCARaw`: the CAs that sign the server's certificate; without them the
//!   system's roots are trusted.
//! - `insecureSkipVerify`: accept any server certificate and host name (the handshake's
//!   signatures are still checked).
//! - `tlsMinVersion`: `tls1.2` (default) or `tls1.3`; `tls1.0`/`tls1.1` are refused (rustls
//!   speaks TLS 1.2 and 1.3 only). `renegotiationSupport`: only `never` (rustls never
//!   renegotiates).
//!
//! Files are read when the settings are parsed (a rule's creation or start), at most
//! [`MAX_PEM_BYTES`] each and only regular files, so a mistyped path is an error up front and a
//! FIFO or device cannot block the caller.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;

use crate::ConnectorError;
use crate::props::Props;

/// The largest certificate, key or CA file read (PEM text).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A TLS client configuration and a one-line description of it for logs.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    description: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({})", self.description)
    }
}

impl TlsClient {
    /// Verifies servers against the system's root certificates; no client certificate.
    pub fn with_system_roots() -> Result<Self, String> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| e.to_string())?
            .with_root_certificates(system_roots()?)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            description: "system roots".into(),
        })
    }

    /// Trusts no server: for a client that may never make a TLS connection, on a machine
    /// without a system root store (its TLS connections fail as unverifiable).
    pub fn without_roots() -> Self {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("ring supports every rustls protocol version")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        TlsClient {
            config: Arc::new(config),
            description: "no roots".into(),
        }
    }

    /// Trusts only the CA certificates in `pem` (PEM text, e.g. a private CA's file); no client
    /// certificate.
    pub fn with_root_ca(pem: &[u8]) -> Result<Self, String> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| e.to_string())?
            .with_root_certificates(root_store(pem)?)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            description: "root ca".into(),
        })
    }

    /// The rustls configuration, shared.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// What this configuration verifies and presents, e.g. `root ca, client certificate`.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// The crypto provider every TLS configuration of Quiver uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    // ring, not aws-lc-rs (rustls' choice, with post-quantum key exchange): aws-lc-sys is a
    // C/cmake build of over a minute on the edge machines Quiver targets.
    #[allow(deprecated)]
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The CA certificates in `pem` as a root store; an error for text that holds none.
fn root_store(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(store)
}

/// The system's root certificates, loaded once per process.
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(roots.clone());
    }
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(format!(
            "no system root certificates found ({}); set rootCaPath",
            found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the system store is empty".into())
        ));
    }
    Ok(ROOTS.get_or_init(|| Arc::new(store)).clone())
}

/// The TLS property readers shared by connectors.
impl Props<'_> {
    /// The first TLS property set to something other than its default, as the user wrote it.
    pub(crate) fn tls_property_set(&self) -> Option<&str> {
        crate::spec::shared::TLS.iter().find_map(|p| {
            match self.get(&p.name.to_ascii_lowercase())? {
                (_, Value::Bool(false)) => None,
                (_, Value::String(s)) if s.is_empty() || s.eq_ignore_ascii_case("false") => None,
                (name, _) => Some(name),
            }
        })
    }

    /// The TLS client configuration these properties describe.
    pub(crate) fn tls_client(&self) -> Result<TlsClient, ConnectorError> {
        let skip_verify = self.boolean("insecureskipverify")?.unwrap_or(false);
        let versions: &[&rustls::SupportedProtocolVersion] =
            match self.non_empty("tlsminversion")? {
                None => rustls::ALL_VERSIONS,
                Some((_, v)) if v.eq_ignore_ascii_case("tls1.2") => rustls::ALL_VERSIONS,
                Some((_, v)) if v.eq_ignore_ascii_case("tls1.3") => &[&rustls::version::TLS13],
                Some((name, v)) => {
                    return Err(self.error(format!(
                        "\"{name}\" \"{v}\" is not supported: TLS 1.2 and 1.3 only \
                         (\"tls1.2\" or \"tls1.3\")"
                    )));
                }
            };
        if let Some((name, v)) = self.non_empty("renegotiationsupport")?
            && !v.eq_ignore_ascii_case("never")
        {
            return Err(self.error(format!(
                "\"{name}\" \"{v}\" is not supported: TLS renegotiation is never done (\"never\")"
            )));
        }
        let mut description = Vec::new();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| self.error(format!("TLS: {e}")))?;
        let builder = if skip_verify {
            tracing::warn!(
                "TLS with insecureSkipVerify: any server certificate and host name is accepted"
            );
            description.push("insecureSkipVerify");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider())))
        } else {
            let roots = match self.pem("rootcapath", "rootcaraw")? {
                Some((name, pem)) => {
                    description.push("root ca");
                    Arc::new(root_store(&pem).map_err(|e| self.error(format!("\"{name}\": {e}")))?)
                }
                None => {
                    description.push("system roots");
                    system_roots().map_err(|e| self.error(e))?
                }
            };
            builder.with_root_certificates(roots)
        };
        let cert = self.pem("certificationpath", "certificationraw")?;
        let key = self.pem("privatekeypath", "privatekeyraw")?;
        let config = match (cert, key) {
            (None, None) => builder.with_no_client_auth(),
            (Some((name, _)), None) => {
                return Err(self.error(format!(
                    "\"{name}\" needs the client certificate's key (privateKeyPath or privateKeyRaw)"
                )));
            }
            (None, Some((name, _))) => {
                return Err(self.error(format!(
                    "\"{name}\" needs its certificate (certificationPath or certificationRaw)"
                )));
            }
            (Some((cert_name, cert)), Some((key_name, key))) => {
                description.push("client certificate");
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        self.error(format!("\"{cert_name}\": not a PEM certificate: {e}"))
                    })?;
                if chain.is_empty() {
                    return Err(self.error(format!("\"{cert_name}\": no PEM certificate in it")));
                }
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    self.error(format!("\"{key_name}\": no PEM private key in it ({e})"))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    self.error(format!(
                        "\"{cert_name}\" and \"{key_name}\" do not make a key pair: {e}"
                    ))
                })?
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            description: description.join(", "),
        })
    }

    /// A non-empty string property with its name as written.
    fn non_empty(&self, key: &str) -> Result<Option<(&str, &str)>, ConnectorError> {
        let Some(value) = self.string(key)?.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let (name, _) = self.get(key).expect("read above");
        Ok(Some((name, value)))
    }

    /// PEM text from the file named by `path_key` or, failing that, the base64 of `raw_key`.
    fn pem(
        &self,
        path_key: &str,
        raw_key: &str,
    ) -> Result<Option<(String, Vec<u8>)>, ConnectorError> {
        if let Some((name, path)) = self.non_empty(path_key)? {
            let text = read_pem_file(Path::new(path))
                .map_err(|e| self.error(format!("\"{name}\" \"{path}\": {e}")))?;
            return Ok(Some((name.to_string(), text)));
        }
        if let Some((name, raw)) = self.non_empty(raw_key)? {
            let text = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| self.error(format!("\"{name}\" is not base64: {e}")))?;
            return Ok(Some((name.to_string(), text)));
        }
        Ok(None)
    }
}

/// Reads a regular file of at most [`MAX_PEM_BYTES`].
fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!("larger than {MAX_PEM_BYTES} bytes"));
    }
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES).read_to_end(&mut text))
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// `insecureSkipVerify`: any certificate and host name, but the handshake's signatures are
/// still verified, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn tls(v: Value) -> Result<TlsClient, String> {
        let map: Map<String, Value> = v.as_object().unwrap().clone();
        Props::new("test", &map)
            .tls_client()
            .map_err(|e| e.to_string())
    }

    fn pem_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn raw_forms_build_a_client_with_a_certificate() {
        let (cert, key) = pem_pair();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let c = tls(
            json!({"rootCARaw": b64(&cert), "certificationRaw": b64(&cert),
                           "privateKeyRaw": b64(&key), "tlsMinVersion": "tls1.3"}),
        )
        .unwrap();
        assert_eq!(c.description(), "root ca, client certificate");
        assert!(c.config().client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn files_are_read_and_errors_name_the_property() {
        let (cert, _) = pem_pair();
        let dir = std::env::temp_dir().join(format!("quiver-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        let c = tls(json!({"rootCaPath": ca.to_str().unwrap()})).unwrap();
        assert_eq!(c.description(), "root ca");

        let e = tls(json!({"rootCaPath": dir.join("nope.pem").to_str().unwrap()})).unwrap_err();
        assert!(
            e.contains("\"rootCaPath\"") && e.contains("nope.pem"),
            "{e}"
        );
        let e = tls(json!({"rootCaPath": dir.to_str().unwrap()})).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = tls(json!({"certificationPath": ca.to_str().unwrap()})).unwrap_err();
        assert!(e.contains("privateKeyPath"), "{e}");
        let e = tls(json!({"rootCARaw": "%%%"})).unwrap_err();
        assert!(e.contains("\"rootCARaw\" is not base64"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn versions_and_renegotiation_outside_rustls_are_refused_by_name() {
        let e = tls(json!({"insecureSkipVerify": true, "tlsMinVersion": "tls1.0"})).unwrap_err();
        assert!(e.contains("\"tlsMinVersion\" \"tls1.0\""), "{e}");
        let e =
            tls(json!({"insecureSkipVerify": true, "renegotiationSupport": "once"})).unwrap_err();
        assert!(e.contains("\"renegotiationSupport\" \"once\""), "{e}");
        let c =
            tls(json!({"insecureSkipVerify": "true", "renegotiationSupport": "never"})).unwrap();
        assert_eq!(c.description(), "insecureSkipVerify");
    }

    #[test]
    fn only_non_default_values_count_as_set() {
        let map = json!({"insecureSkipVerify": false, "rootCaPath": "", "qos": 1});
        let map = map.as_object().unwrap();
        assert_eq!(Props::new("test", map).tls_property_set(), None);
        let map = json!({"insecureSkipVerify": true});
        let map = map.as_object().unwrap();
        assert_eq!(
            Props::new("test", map).tls_property_set(),
            Some("insecureSkipVerify")
        );
    }
}
