//! `[[listener]]` sections as endpoints: `tcp`, `tls`, `ws` and `wss`, their TLS files and WebSocket path; and the
//! reloading of certificates on SIGHUP.
//!
//! ```toml
//! [[listener]]
//! type = "tls"                      # or "wss"
//! bind = "0.0.0.0:8883"
//! cert = "server.crt"               # PEM chain, leaf first; relative paths start at the config file's folder
//! key = "server.key"                # PEM private key (PKCS#8, PKCS#1 or SEC1)
//! # pkcs12 = "server.p12"           # instead of cert and key
//! # pkcs12_password = "secret"
//! tls_versions = ["1.2", "1.3"]     # the default
//! client_ca = "clients-ca.crt"      # optional: require client certificates from these CAs
//! require_certificate = false       # optional, with client_ca: clients without a certificate may connect too
//!
//! [[listener]]
//! type = "ws"                       # or "wss" with the TLS keys above
//! bind = "0.0.0.0:8083"
//! path = "/mqtt"                    # the default
//! ```

use crate::config::{Config, Listener, ListenerKind, Rejected};
use corvid::transport::{TlsOptions, TlsVersion, WebSocketOptions};
use corvid::{Endpoint, Server};
use std::path::{Path, PathBuf};

/// Where a listener stands in the file, for messages: "listener 2 (tls 0.0.0.0:8883)".
fn name(index: usize, listener: &Listener) -> String {
    format!("listener {} ({} {})", index + 1, kind_name(listener.kind), listener.bind)
}

fn kind_name(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Tcp => "tcp",
        ListenerKind::Tls => "tls",
        ListenerKind::Ws => "ws",
        ListenerKind::Wss => "wss",
    }
}

/// Checks the keys of every listener against its type (no file is read). The message names the listener; the
/// error, the key at fault (none when keys are missing).
pub(crate) fn check(listeners: &[Listener]) -> Result<(), Rejected> {
    for (i, l) in listeners.iter().enumerate() {
        let tls = matches!(l.kind, ListenerKind::Tls | ListenerKind::Wss);
        let ws = matches!(l.kind, ListenerKind::Ws | ListenerKind::Wss);
        let fail = |key: Option<&'static str>, message: &str| {
            Err(Rejected { table: "listener", index: i, key, message: format!("{}: {message}", name(i, l)) })
        };
        let tls_keys = [
            ("cert", l.cert.is_some()),
            ("key", l.key.is_some()),
            ("pkcs12", l.pkcs12.is_some()),
            ("pkcs12_password", l.pkcs12_password.is_some()),
            ("tls_versions", l.tls_versions.is_some()),
            ("client_ca", l.client_ca.is_some()),
            ("require_certificate", l.require_certificate.is_some()),
        ];
        if !tls && let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
            return fail(Some(key), &format!("`{key}` is for listeners of type \"tls\" or \"wss\""));
        }
        if !ws && l.path.is_some() {
            return fail(Some("path"), "`path` is for listeners of type \"ws\" or \"wss\"");
        }
        if tls {
            match (&l.cert, &l.key, &l.pkcs12) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                (_, _, Some(_)) => return fail(Some("pkcs12"), "give either `pkcs12` or `cert` and `key`, not both"),
                (None, _, None) | (_, None, None) => {
                    return fail(None, "needs `cert` and `key` (PEM files) or `pkcs12` (with `pkcs12_password`)");
                }
            }
            if l.pkcs12.is_none() && l.pkcs12_password.is_some() {
                return fail(Some("pkcs12_password"), "`pkcs12_password` without `pkcs12`");
            }
            if l.client_ca.is_none() && l.require_certificate.is_some() {
                let message = "`require_certificate` without `client_ca` (the CAs client certificates must come from)";
                return fail(Some("require_certificate"), message);
            }
            if let Some(versions) = &l.tls_versions {
                if versions.is_empty() {
                    return fail(Some("tls_versions"), "`tls_versions` is empty (use [\"1.2\"], [\"1.3\"] or both)");
                }
                for v in versions {
                    if let Err(e) = v.parse::<TlsVersion>() {
                        return fail(Some("tls_versions"), &format!("tls_versions: {e}"));
                    }
                }
            }
        }
        if let Some(path) = &l.path
            && !path.starts_with('/')
        {
            return fail(Some("path"), &format!("path {path:?} must start with '/'"));
        }
    }
    Ok(())
}

/// Makes the listeners' file names relative to the folder of the configuration file.
pub(crate) fn resolve_paths(listeners: &mut [Listener], config_file: &Path) {
    let dir = config_file.parent().unwrap_or(Path::new(""));
    let resolve = |p: &mut Option<PathBuf>| {
        if let Some(path) = p
            && path.is_relative()
        {
            *path = dir.join(&*path);
        }
    };
    for l in listeners {
        resolve(&mut l.cert);
        resolve(&mut l.key);
        resolve(&mut l.pkcs12);
        resolve(&mut l.client_ca);
    }
}

fn tls_options(l: &Listener) -> Option<TlsOptions> {
    let mut tls = match (&l.cert, &l.key, &l.pkcs12) {
        (_, _, Some(p12)) => TlsOptions::pkcs12(p12, l.pkcs12_password.clone().unwrap_or_default()),
        (Some(cert), Some(key), None) => TlsOptions::pem(cert, key),
        _ => return None,
    };
    if let Some(versions) = &l.tls_versions {
        let versions: Vec<TlsVersion> = versions.iter().filter_map(|v| v.parse().ok()).collect();
        tls = tls.with_versions(&versions);
    }
    match (&l.client_ca, l.require_certificate) {
        (Some(ca), Some(false)) => tls = tls.with_optional_client_ca(ca),
        (Some(ca), _) => tls = tls.with_client_ca(ca),
        (None, _) => {}
    }
    Some(tls)
}

/// The endpoint of a checked listener.
pub(crate) fn endpoint(l: &Listener) -> Endpoint {
    let ws = || match &l.path {
        Some(path) => WebSocketOptions::default().with_path(path.clone()),
        None => WebSocketOptions::default(),
    };
    match (l.kind, tls_options(l)) {
        (ListenerKind::Tls, Some(tls)) => Endpoint::Tls(l.bind, tls),
        (ListenerKind::Wss, Some(tls)) => Endpoint::WebSocketTls(l.bind, ws(), tls),
        (ListenerKind::Ws, _) => Endpoint::WebSocket(l.bind, ws()),
        // `check` guarantees TLS listeners have their files.
        (ListenerKind::Tcp | ListenerKind::Tls | ListenerKind::Wss, _) => Endpoint::Tcp(l.bind),
    }
}

/// Reads the certificate files of every TLS listener: a missing or unreadable file, a wrong PKCS#12 password or a
/// key that does not match its certificate is an error naming the listener and the file.
pub(crate) fn check_files(config: &Config) -> Result<(), String> {
    for (i, l) in config.listeners.iter().enumerate() {
        if let Some(tls) = tls_options(l) {
            tls.check().map_err(|e| format!("{}: {e}", name(i, l)))?;
        }
    }
    Ok(())
}

/// SIGHUP: reloads the certificates of the TLS listeners; on failure the old ones stay in use.
pub(crate) fn reload(server: &Server) {
    match server.reload_tls() {
        Ok(0) => tracing::info!("SIGHUP: no TLS listener to reload"),
        Ok(n) => tracing::info!(listeners = n, "SIGHUP: TLS certificates reloaded"),
        Err(e) => tracing::error!("SIGHUP: TLS certificates not reloaded, the previous ones stay in use: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/corvid/corvid.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn transports_parse() {
        let config = parse(
            r#"
[[listener]]
type = "tls"
bind = "0.0.0.0:8883"
cert = "server.crt"
key = "/abs/server.key"
tls_versions = ["1.2"]
client_ca = "ca.crt"
[[listener]]
type = "ws"
bind = "0.0.0.0:8083"
[[listener]]
type = "wss"
bind = "0.0.0.0:8084"
pkcs12 = "server.p12"
pkcs12_password = "secret"
path = "/ws"
client_ca = "clients.crt"
require_certificate = false
"#,
        )
        .unwrap();
        let endpoints: Vec<_> = config.listeners.iter().map(super::endpoint).collect();
        assert_eq!(endpoints.iter().map(corvid::Endpoint::kind).collect::<Vec<_>>(), ["tls", "ws", "wss"]);
        match &endpoints[0] {
            corvid::Endpoint::Tls(_, tls) => {
                assert_eq!(tls.versions, [corvid::transport::TlsVersion::Tls12]);
                assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.crt")));
                assert!(tls.client_certificate_required);
            }
            other => panic!("{other:?}"),
        }
        match &endpoints[2] {
            corvid::Endpoint::WebSocketTls(_, ws, tls) => {
                assert_eq!(ws.path, "/ws");
                assert_eq!(tls.client_ca.as_deref(), Some(Path::new("clients.crt")));
                assert!(!tls.client_certificate_required);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn relative_files_start_at_the_config_folder() {
        let mut config =
            parse("[[listener]]\ntype = \"tls\"\nbind = \"0.0.0.0:8883\"\ncert = \"a.crt\"\nkey = \"/k/a.key\"\n")
                .unwrap();
        super::resolve_paths(&mut config.listeners, Path::new("/etc/corvid/corvid.toml"));
        assert_eq!(config.listeners[0].cert.as_deref(), Some(Path::new("/etc/corvid/a.crt")));
        assert_eq!(config.listeners[0].key.as_deref(), Some(Path::new("/k/a.key")));
    }

    #[test]
    fn keys_must_fit_the_type() {
        let base = "[[listener]]\nbind = \"0.0.0.0:1\"\n";
        for (extra, expected) in [
            ("type = \"tcp\"\ncert = \"a\"\n", "`cert` is for listeners"),
            ("type = \"tls\"\n", "needs `cert` and `key`"),
            ("type = \"tls\"\ncert = \"a\"\n", "needs `cert` and `key`"),
            ("type = \"tls\"\ncert = \"a\"\nkey = \"b\"\npkcs12 = \"c\"\n", "not both"),
            ("type = \"tls\"\npkcs12 = \"c\"\ntls_versions = [\"1.1\"]\n", "unknown TLS version"),
            ("type = \"ws\"\npath = \"mqtt\"\n", "must start with '/'"),
            ("type = \"tls\"\npkcs12 = \"c\"\npath = \"/mqtt\"\n", "`path` is for listeners"),
            ("type = \"tls\"\npkcs12 = \"c\"\nrequire_certificate = false\n", "without `client_ca`"),
            ("type = \"ws\"\nrequire_certificate = true\n", "`require_certificate` is for listeners"),
        ] {
            let err = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(err.contains("listener 1") && err.contains(expected), "{extra}: {err}");
        }
    }
}
