//! TLS of our own traffic, optional (`tls.grpc`, the gateway's `http.tls`): rustls on ring, no
//! OpenSSL. Certificates come from files (a mounted Kubernetes Secret) and are read again when
//! they change, without a restart:
//!
//! - a server's certificate and key ([`ReloadingCert`], a rustls `ResolvesServerCert`): every
//!   handshake looks at the two files' metadata and reloads them when it changed; a pair that
//!   does not load (half written) keeps the last good one;
//! - a caller's CA ([`ReloadingCa`], a rustls `ServerCertVerifier`): the same for the CA file
//!   that signs our servers' certificates; the server name is verified as usual.
//!
//! [`incoming`] accepts TCP connections and completes their handshakes off the accept loop (a
//! slow or silent client cannot hold up the others); the gRPC server and the gateway serve what it
//! yields. Callers of our services get TLS through [`set_client_tls`] (`crate::client`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// ALPN for gRPC (HTTP/2 only).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for the gateway: HTTP/2 and HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ring, as tonic (`tls-ring`), sqlx and redis use here (rustls deprecates it for lacking
/// post-quantum key exchange; aws-lc-rs would bring a C/CMake build into the image).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What identifies a file's version: a Secret update swaps a symlink to new files (new inode),
/// an edit in place changes the mtime or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn read_certs(path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("{path}: no PEM certificate in it");
    }
    Ok(certs)
}

fn load_pair(cert_file: &str, key_file: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = read_certs(cert_file)?;
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| anyhow::anyhow!("{key_file}: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("{key_file}: {e}"))?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match()
        .map_err(|e| anyhow::anyhow!("{cert_file} and {key_file} do not match: {e}"))?;
    Ok(Arc::new(pair))
}

/// A server certificate and key read from files, read again when either changes.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(Stamp, Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Loads the pair now (an error here stops start-up: the files are missing or wrong).
    pub fn new(cert_file: &str, key_file: &str) -> anyhow::Result<Arc<Self>> {
        let stamps = (
            stamp(cert_file.as_ref()).map_err(|e| anyhow::anyhow!("{cert_file}: {e}"))?,
            stamp(key_file.as_ref()).map_err(|e| anyhow::anyhow!("{key_file}: {e}"))?,
        );
        let pair = load_pair(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            current: RwLock::new((stamps.0, stamps.1, pair)),
        }))
    }

    /// The pair to present now, reloaded first when a file changed.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let (Ok(c), Ok(k)) = (stamp(&self.cert_file), stamp(&self.key_file)) else {
            // Mid-swap or gone: keep serving the last good pair.
            return self.current.read().ok().map(|g| g.2.clone());
        };
        {
            let now = self.current.read().ok()?;
            if now.0 == c && now.1 == k {
                return Some(now.2.clone());
            }
        }
        let mut now = self.current.write().ok()?;
        if now.0 != c || now.1 != k {
            match load_pair(
                &self.cert_file.to_string_lossy(),
                &self.key_file.to_string_lossy(),
            ) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert_file.display(), "TLS certificate changed: reloaded");
                    *now = (c, k, pair);
                }
                // A pair written one file at a time does not match until both are there: try
                // again on the next handshake, serving the last good one meanwhile.
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the previous one")
                }
            }
        }
        Some(now.2.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// A TLS acceptor presenting `cert`, offering `alpn` (no client certificates).
pub fn acceptor(cert: Arc<ReloadingCert>, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` and completes each TLS handshake in a task of its own; what
/// comes out is ready to serve. A failed handshake (a plaintext client, a client that does not
/// trust us) closes that connection only. The accepting task ends when the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: let it pass rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// The gateway's HTTPS listener for `axum::serve` (through `ListenerExt::tap_io`, which gives it
/// `ConnectInfo<SocketAddr>`).
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: incoming(listener, acceptor),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

// ------------------------------------------------------------------------------- the callers

/// Verifies our servers' certificates against the CA in a file, read again when it changes; the
/// server name is checked as usual (the URL's host, or the name a discovered address came from).
#[derive(Debug)]
pub struct ReloadingCa {
    ca_file: PathBuf,
    current: Mutex<(Stamp, Arc<dyn ServerCertVerifier>)>,
    provider: Arc<CryptoProvider>,
}

fn ca_verifier(
    ca_file: &str,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ServerCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca_file)? {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("{ca_file}: {e}"))?;
    }
    Ok(rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?)
}

impl ReloadingCa {
    pub fn new(ca_file: &str) -> anyhow::Result<Arc<Self>> {
        let provider = provider();
        let s = stamp(ca_file.as_ref()).map_err(|e| anyhow::anyhow!("{ca_file}: {e}"))?;
        let verifier = ca_verifier(ca_file, &provider)?;
        Ok(Arc::new(Self {
            ca_file: ca_file.into(),
            current: Mutex::new((s, verifier)),
            provider,
        }))
    }

    fn verifier(&self) -> Arc<dyn ServerCertVerifier> {
        let mut now = match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Ok(s) = stamp(&self.ca_file) {
            if s != now.0 {
                match ca_verifier(&self.ca_file.to_string_lossy(), &self.provider) {
                    Ok(v) => {
                        tracing::info!(ca = %self.ca_file.display(), "TLS CA changed: reloaded");
                        *now = (s, v);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS CA changed but does not load; keeping the previous one")
                    }
                }
            }
        }
        now.1.clone()
    }
}

/// The signature checks and schemes of a verifier that holds a `provider`: the crypto
/// provider's algorithms, as rustls' own verifiers check them.
macro_rules! provider_signatures {
    () => {
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
                &self.provider.signature_verification_algorithms,
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
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for ReloadingCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    provider_signatures!();
}

/// Accepts exactly the certificate in a file, whatever name it carries: `<binary> health` asks
/// its own process (on `0.0.0.0` or `127.0.0.1`, not a name in the certificate) and wants to see
/// the certificate that process was given.
#[derive(Debug)]
pub struct OwnCert {
    cert_file: String,
    provider: Arc<CryptoProvider>,
}

impl OwnCert {
    pub fn new(cert_file: &str) -> Arc<Self> {
        Arc::new(Self {
            cert_file: cert_file.to_owned(),
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for OwnCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ours =
            read_certs(&self.cert_file).map_err(|e| rustls::Error::General(e.to_string()))?;
        if ours
            .first()
            .is_some_and(|c| c.as_ref() == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server does not present the certificate in {}",
                self.cert_file
            )))
        }
    }

    provider_signatures!();
}

/// The verifier every gRPC call of this process uses, when `tls.grpc` is on.
static CLIENT_TLS: RwLock<Option<Arc<dyn ServerCertVerifier>>> = RwLock::new(None);

/// Turns TLS on (a verifier) or off (`None`) for the gRPC calls this process makes from now on:
/// `http://` upstream URLs are then dialled as `https://`, and the server's certificate must
/// chain to the CA and name the host the URL names. Services and the gateway set it from
/// `tls.grpc.ca_file` at start-up.
pub fn set_client_tls(verifier: Option<Arc<dyn ServerCertVerifier>>) {
    match CLIENT_TLS.write() {
        Ok(mut v) => *v = verifier,
        Err(p) => *p.into_inner() = verifier,
    }
}

/// Sets [`set_client_tls`] from `tls.grpc` (its CA file; off without `tls.grpc`).
pub fn set_client_tls_from(settings: &crate::config::TlsSettings) -> anyhow::Result<()> {
    let verifier = match &settings.grpc {
        Some(g) => Some(ReloadingCa::new(&g.ca_file)? as Arc<dyn ServerCertVerifier>),
        None => None,
    };
    set_client_tls(verifier);
    Ok(())
}

pub(crate) fn client_tls() -> Option<Arc<dyn ServerCertVerifier>> {
    CLIENT_TLS.read().ok().and_then(|v| v.clone())
}

/// `url` as this process dials it: `http://` becomes `https://` when gRPC TLS is on.
pub fn dial_url(url: &str) -> String {
    match (client_tls(), url.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => url.to_owned(),
    }
}

/// An endpoint for `url` (after [`dial_url`]) with TLS when it is `https://` and gRPC TLS is
/// on; `server_name` is the name the certificate must carry when it is not the URL's host (a
/// discovered address's name).
pub fn endpoint(
    url: &str,
    server_name: Option<&str>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    let url = dial_url(url);
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())?;
    match client_tls() {
        Some(verifier) if url.starts_with("https://") => {
            let mut config = tonic::transport::ClientTlsConfig::new();
            if let Some(name) = server_name {
                config = config.domain_name(name);
            }
            Ok(endpoint.tls_config_with_verifier(config, verifier)?)
        }
        _ => Ok(endpoint),
    }
}
