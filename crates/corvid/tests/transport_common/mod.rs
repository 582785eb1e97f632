//! Helpers of the transport tests: certificates made with rcgen in a temporary directory, rustls client
//! configurations, packets to send as bytes, and from `tests/support` the raw MQTT client (over any byte stream)
//! with a 5 s bound on every wait.

#![allow(dead_code)]

use bytes::Bytes;
use corvid::ProtocolVersion;
use corvid::protocol::{Packet, Publish, QoS, Subscribe, SubscribeProperties, SubscriptionOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// The longest any single wait in a test may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

#[path = "../support/mod.rs"]
mod support;

// Not every transport test uses each of these.
#[allow(unused_imports)]
pub(crate) use support::{Raw, packet_bytes, within};

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("corvid-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certification authority.
pub(crate) struct Ca {
    pub(crate) issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate for these names (DNS names or IP addresses), with this common name.
    pub(crate) fn leaf(&self, common_name: &str, names: &[&str]) -> Leaf {
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// A certificate and its key.
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) key_pem: String,
    pub(crate) key_der: Vec<u8>,
}

impl Leaf {
    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The certificates of a test: a server CA and server certificate for 127.0.0.1 / localhost, a client CA with a
/// client certificate "CN=device-1", and a rogue CA with a client certificate it signed. All written as PEM.
pub(crate) struct Pki {
    pub(crate) dir: TempDir,
    pub(crate) ca: Ca,
    pub(crate) server: Leaf,
    pub(crate) client_ca: Ca,
    pub(crate) client: Leaf,
    pub(crate) rogue: Leaf,
    pub(crate) ca_file: PathBuf,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) client_ca_file: PathBuf,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = TempDir::new("pki");
        let ca = Ca::new("Corvid Test CA");
        let server = ca.leaf("corvid-test-server", &["localhost", "127.0.0.1"]);
        let client_ca = Ca::new("Corvid Test Client CA");
        let client = client_ca.leaf("device-1", &[]);
        let rogue = Ca::new("Rogue CA").leaf("device-1", &[]);
        let ca_file = dir.write("ca.crt", ca.pem());
        let cert_file = dir.write("server.crt", &server.cert_pem);
        let key_file = dir.write("server.key", &server.key_pem);
        let client_ca_file = dir.write("client-ca.crt", client_ca.pem());
        Self { dir, ca, server, client_ca, client, rogue, ca_file, cert_file, key_file, client_ca_file }
    }
}

/// A rustls client configuration trusting `ca`, offering `versions`, with an optional client certificate.
pub(crate) fn client_config(
    ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    client: Option<&Leaf>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder.with_client_auth_cert(leaf.chain(), leaf.key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

pub(crate) const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS connection to `addr` (server name 127.0.0.1), or the handshake error.
pub(crate) async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = within("TCP connect", TcpStream::connect(addr)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    within("TLS handshake", connector.connect(name, tcp)).await
}

/// Whether the TLS server at `addr` refuses a client with `config` sending `connect`: in the handshake, or by closing
/// before CONNACK (with TLS 1.3 a client learns that its certificate was refused only at its first read).
pub(crate) async fn tls_refused(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    connect: corvid::protocol::Connect,
) -> bool {
    match tls_connect(addr, config).await {
        Err(_) => true,
        Ok(stream) => Raw::over(stream, connect.protocol).try_handshake(connect).await.is_none(),
    }
}

/// A clean client's CONNECT ([`support::connect_packet`]), as a packet.
pub(crate) fn connect_packet(version: ProtocolVersion, client_id: &str) -> Packet {
    Packet::Connect(Box::new(support::connect_packet(version, client_id)))
}

/// A SUBSCRIBE to one filter.
pub(crate) fn subscribe_packet(id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: support::pid(id),
        filters: vec![(support::filter(filter), SubscriptionOptions::qos(qos))],
        properties: SubscribeProperties::default(),
    })
}

/// A QoS 0 PUBLISH ([`support::publish_packet`]), as a packet.
pub(crate) fn publish_packet(t: &str, payload: &[u8]) -> Packet {
    Packet::Publish(support::publish_packet(t, payload, QoS::AtMostOnce, 0))
}

/// A PUBLISH's topic and payload.
pub(crate) fn topic_payload(p: Publish) -> (String, Bytes) {
    (p.topic.to_string(), p.payload)
}

/// Whether `path` exists as an executable on PATH.
pub(crate) fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(name).is_file()))
        .unwrap_or(false)
}
