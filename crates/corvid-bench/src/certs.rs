//! Test certificates made at run time (rcgen): a CA and a server certificate it signs, for `localhost` and
//! `127.0.0.1`, ECDSA P-256 keys. The launcher writes them into the server's temporary directory; the TLS
//! scenarios trust the CA only.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// Certificate files written for a server.
#[derive(Debug, Clone)]
pub struct ServerCerts {
    /// The CA certificate (PEM), which clients trust.
    pub ca_file: PathBuf,
    /// The server certificate (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key_file: PathBuf,
    /// The CA certificate, DER.
    pub ca: CertificateDer<'static>,
}

/// Makes a fresh CA and a server certificate for `localhost` / `127.0.0.1`, and writes them into `dir`
/// (`ca.crt`, `server.crt`, `server.key`).
pub fn make_server_certs(dir: &Path) -> anyhow::Result<ServerCerts> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "corvid-bench test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?).context("making the test CA")?;

    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca).context("signing the server certificate")?;

    let files = ServerCerts {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        ca: ca.der().clone(),
    };
    std::fs::write(&files.ca_file, ca.pem())?;
    std::fs::write(&files.cert_file, cert.pem())?;
    std::fs::write(&files.key_file, key.serialize_pem())?;
    Ok(files)
}

/// Reads the certificates of a PEM file (e.g. `--tls-ca`).
pub fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_a_server_certificate() {
        let dir = std::env::temp_dir().join(format!("corvid-bench-certs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = make_server_certs(&dir).unwrap();
        assert_eq!(read_pem_certs(&certs.ca_file).unwrap(), vec![certs.ca.clone()]);
        assert_eq!(read_pem_certs(&certs.cert_file).unwrap().len(), 1);
        assert!(std::fs::read_to_string(&certs.key_file).unwrap().contains("PRIVATE KEY"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
