//! HTTPS for the REST API and the httppush listener (`quiverd --tls-cert PEM --tls-key PEM`).
//!
//! [`TlsListener`] is an axum listener: a task accepts TCP connections and runs each TLS
//! handshake in its own task, at most [`MAX_HANDSHAKES`] at a time and each within
//! [`HANDSHAKE_TIMEOUT`], so a client that connects and stays silent holds neither the accept
//! loop nor a slot for long. Finished handshakes queue (bounded) for axum.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use quiver_connectors::tls::{MAX_PEM_BYTES, provider};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::security::LocalAddr;

/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// The certificate chain and key files given on the command line.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key of that certificate: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files into a rustls server configuration (HTTP/1.1 only, as the server).
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let cert = read_pem(&self.cert, "--tls-cert")?;
        let key = read_pem(&self.key, "--tls-key")?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--tls-cert {}: not PEM certificates", self.cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "--tls-cert {}: no PEM certificate in it",
            self.cert.display()
        );
        let key = PrivateKeyDer::from_pem_slice(&key).with_context(|| {
            format!("--tls-key {}: no PEM private key in it", self.key.display())
        })?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!(
                    "--tls-cert {} and --tls-key {} do not make a key pair",
                    self.cert.display(),
                    self.key.display()
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Reads a regular file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file() && meta.len() <= MAX_PEM_BYTES,
        "{flag} {}: not a regular file of at most {MAX_PEM_BYTES} bytes",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

/// A TCP listener whose connections are TLS streams (see the module doc).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`; `name` labels log lines (`REST API`, `push`).
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        name: &'static str,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx, name));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    name: &'static str,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("{name}: accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls)) => {
                    drop(slot);
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("{name}: TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!(
                    "{name}: TLS handshake with {peer} took longer than {HANDSHAKE_TIMEOUT:?}"
                ),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (it only does when aborted): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for LocalAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        LocalAddr(stream.io().get_ref().0.local_addr().ok())
    }
}
