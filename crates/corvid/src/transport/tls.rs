//! MQTT over TLS with rustls (the `ring` provider): the server certificate from PEM files or a PKCS#12 file, a
//! choice of TLS versions, optional client-certificate verification, and reloading without dropping clients.

pub use rustls;

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// Where the server's certificate chain and private key come from.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsIdentity {
    /// PEM files: the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1).
    Pem {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },
    /// A PKCS#12 (PFX) file holding the key and its chain, and its password (modern AES-256-CBC with PBKDF2 and
    /// legacy RC2 / 3DES files both work).
    Pkcs12 {
        /// The PKCS#12 file.
        path: PathBuf,
        /// Its password (empty for none).
        password: String,
    },
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem { cert, key } => f.debug_struct("Pem").field("cert", cert).field("key", key).finish(),
            Self::Pkcs12 { path, .. } => {
                f.debug_struct("Pkcs12").field("path", path).field("password", &"***").finish()
            }
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = String;

    /// `"1.2"` or `"1.3"` (also `"TLSv1.2"`, `"tlsv1.3"`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.strip_prefix("tlsv").or_else(|| lower.strip_prefix("tls")).unwrap_or(&lower) {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            _ => Err(format!("unknown TLS version {s:?} (expected \"1.2\" or \"1.3\")")),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        })
    }
}

/// The TLS settings of an endpoint.
///
/// ```
/// use corvid::transport::{TlsOptions, TlsVersion};
/// let tls = TlsOptions::pem("/etc/corvid/server.crt", "/etc/corvid/server.key")
///     .with_versions(&[TlsVersion::Tls12, TlsVersion::Tls13])
///     .with_client_ca("/etc/corvid/clients-ca.crt");
/// assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// The server's certificate chain and key.
    pub identity: TlsIdentity,
    /// The TLS versions offered; empty means 1.2 and 1.3.
    pub versions: Vec<TlsVersion>,
    /// When set, clients are asked for a certificate issued by one of the CA certificates of this PEM file; its
    /// subject reaches the connection validator as [`crate::ConnectContext::client_certificate_subject`].
    pub client_ca: Option<PathBuf>,
    /// With [`Self::client_ca`]: whether a client without a certificate is refused (the default) or connects with
    /// no subject, for the validator to decide (user name and password, say). A certificate a client does present
    /// must be valid either way.
    pub client_certificate_required: bool,
    /// How long a client has to complete the TLS handshake (10 s by default).
    pub handshake_timeout: Duration,
}

impl TlsOptions {
    /// The certificate chain and the private key from PEM files.
    pub fn pem(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self::new(TlsIdentity::Pem { cert: cert.into(), key: key.into() })
    }

    /// The key and its certificate chain from a PKCS#12 (PFX) file.
    pub fn pkcs12(path: impl Into<PathBuf>, password: impl Into<String>) -> Self {
        Self::new(TlsIdentity::Pkcs12 { path: path.into(), password: password.into() })
    }

    fn new(identity: TlsIdentity) -> Self {
        Self {
            identity,
            versions: Vec::new(),
            client_ca: None,
            client_certificate_required: true,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Only these TLS versions (empty: 1.2 and 1.3).
    pub fn with_versions(mut self, versions: &[TlsVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Requires client certificates issued by a CA of this PEM file.
    pub fn with_client_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(path.into());
        self.client_certificate_required = true;
        self
    }

    /// Accepts client certificates issued by a CA of this PEM file, and clients without one (whose
    /// [`crate::ConnectContext::client_certificate_subject`] is `None`).
    pub fn with_optional_client_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(path.into());
        self.client_certificate_required = false;
        self
    }

    /// How long a client has to complete the TLS handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Reads the files and checks them (the key matches the certificate, the PKCS#12 password is right, ...)
    /// without starting anything. The error names the file at fault.
    pub fn check(&self) -> Result<(), TlsError> {
        self.server_config().map(drop)
    }

    /// Reads the files and builds the rustls configuration the endpoint uses.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key, files) = match &self.identity {
            TlsIdentity::Pem { cert, key } => {
                let (chain, key_der) = (read_chain(cert)?, read_key(key)?);
                (chain, key_der, Files::Pem { cert: cert.clone(), key: key.clone() })
            }
            TlsIdentity::Pkcs12 { path, password } => {
                let (chain, key) = read_pkcs12(path, password)?;
                (chain, key, Files::One(path.clone()))
            }
        };
        let versions: Vec<&'static SupportedProtocolVersion> = if self.versions.is_empty() {
            vec![&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            self.versions
                .iter()
                .map(|v| match v {
                    TlsVersion::Tls12 => &rustls::version::TLS12,
                    TlsVersion::Tls13 => &rustls::version::TLS13,
                })
                .collect()
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(path) => {
                let roots = read_roots(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier =
                    if self.client_certificate_required { verifier } else { verifier.allow_unauthenticated() };
                let verifier =
                    verifier.build().map_err(|e| TlsError::ClientCa { path: path.clone(), message: e.to_string() })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| files.key_error(e))?;
        Ok(Arc::new(config))
    }
}

/// The files an identity came from, to name them in errors.
enum Files {
    Pem { cert: PathBuf, key: PathBuf },
    One(PathBuf),
}

impl Files {
    fn key_error(self, error: rustls::Error) -> TlsError {
        let mismatch = matches!(error, rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch));
        match (self, mismatch) {
            (Self::Pem { cert, key }, true) => TlsError::KeyMismatch { cert, key },
            (Self::One(path), true) => TlsError::KeyMismatch { cert: path.clone(), key: path },
            (Self::Pem { key, .. }, false) => TlsError::BadKey { path: key, message: error.to_string() },
            (Self::One(path), false) => TlsError::BadKey { path, message: error.to_string() },
        }
    }
}

/// Why TLS settings cannot be used. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A certificate file holds no PEM certificate, or bad PEM.
    #[error("{}: {message}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key file holds no usable private key.
    #[error("{}: {message}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{}: the private key does not match the certificate of {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The PKCS#12 password is wrong (or the file is damaged).
    #[error("{}: cannot open the PKCS#12 file: wrong password (or damaged file)", path.display())]
    Pkcs12Password {
        /// The file.
        path: PathBuf,
    },
    /// The PKCS#12 file cannot be used.
    #[error("{}: invalid PKCS#12 file: {message}", path.display())]
    Pkcs12 {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The client CA file cannot be used.
    #[error("{}: client CA certificates: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The combination of settings is not possible.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let bad = |message: String| TlsError::BadCertificate { path: path.to_owned(), message };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey {
        path: path.to_owned(),
        message: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (PKCS#8, PKCS#1 or SEC1; unencrypted) found".to_owned()
            }
            other => format!("invalid PEM: {other}"),
        },
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = read(path)?;
    let bad = |message: String| TlsError::ClientCa { path: path.to_owned(), message };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(format!("invalid PEM: {e}")))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate found".to_owned()));
    }
    Ok(roots)
}

fn read_pkcs12(
    path: &Path,
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let bytes = read(path)?;
    let store = KeyStore::from_pkcs12(&bytes, password, Pkcs12ImportPolicy::Relaxed).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) | p12_keystore::error::Error::UnpadError => {
            TlsError::Pkcs12Password { path: path.to_owned() }
        }
        other => TlsError::Pkcs12 { path: path.to_owned(), message: other.to_string() },
    })?;
    let Some((_, chain)) = store.private_key_chain() else {
        return Err(TlsError::Pkcs12 { path: path.to_owned(), message: "no private key in the file".to_owned() });
    };
    if chain.certs().is_empty() {
        return Err(TlsError::Pkcs12 {
            path: path.to_owned(),
            message: "no certificate for the private key in the file".to_owned(),
        });
    }
    let certs = chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()));
    Ok((certs, key))
}

/// The TLS side of an endpoint: the current configuration, replaced on reload.
pub(crate) struct TlsAcceptor {
    options: TlsOptions,
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    pub(crate) fn new(options: TlsOptions) -> Result<Self, TlsError> {
        let config = options.server_config()?;
        Ok(Self { options, config: RwLock::new(config) })
    }

    /// Reads the files again.
    pub(crate) fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.options.server_config()
    }

    /// Uses `config` for the next handshakes.
    pub(crate) fn replace(&self, config: Arc<ServerConfig>) {
        *self.config.write() = config;
    }

    /// The TLS handshake, within the handshake timeout; the subject of the client's certificate if it sent one.
    /// `None` (logged) when it fails.
    pub(crate) async fn accept<S>(&self, stream: S, remote: SocketAddr) -> Option<(TlsStream<S>, Option<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.config.read().clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stream = match tokio::time::timeout(self.options.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                // At the level of "client connected": the one clue a client refused for its certificate leaves.
                tracing::info!(%remote, %error, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return None;
            }
        };
        let subject = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first()).and_then(subject_of);
        Some((stream, subject))
    }
}

/// The subject of a DER certificate, as "CN=device-1, O=Example".
fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    x509_parser::parse_x509_certificate(cert.as_ref()).ok().map(|(_, cert)| cert.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!("1.2".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert_eq!("TLSv1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        assert!("1.1".parse::<TlsVersion>().is_err());
    }

    #[test]
    fn password_is_not_shown() {
        let options = TlsOptions::pkcs12("a.p12", "secret");
        assert!(!format!("{options:?}").contains("secret"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = TlsOptions::pem("/nonexistent/cert.pem", "/nonexistent/key.pem").check().unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/cert.pem: cannot read"), "{err}");
    }
}
