//! An MQTT broker with TLS (port 8883) and WebSocket over TLS (port 8084, path `/mqtt`) endpoints, reloading its
//! certificate on SIGHUP without dropping connected clients.
//!
//! ```sh
//! cargo run -p corvid --example tls_server -- server.crt server.key        # your own certificate
//! cargo run -p corvid --example tls_server                                 # a self-signed one, made now
//! mosquitto_sub -h localhost -p 8883 --cafile <printed path> -t 'demo/#' -v
//! ```
//! With no arguments it writes a self-signed certificate for `localhost` and `127.0.0.1` into a temporary
//! directory and prints where, so that clients can trust it with `--cafile`.

use corvid::transport::{TlsOptions, WebSocketOptions};
use corvid::{Endpoint, Server, ServerOptions};
use std::net::SocketAddr;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cert, key) = match args.as_slice() {
        [cert, key] => (PathBuf::from(cert), PathBuf::from(key)),
        [] => self_signed()?,
        _ => return Err("usage: tls_server [CERT.pem KEY.pem]".into()),
    };
    let tls = TlsOptions::pem(&cert, &key);
    // Fails with a message naming the file if a file is missing or the key does not match the certificate.
    tls.check()?;
    let tls_addr: SocketAddr = "127.0.0.1:8883".parse()?;
    let wss_addr: SocketAddr = "127.0.0.1:8084".parse()?;
    let options = ServerOptions::builder()
        .without_default_endpoint()
        .with_endpoint(Endpoint::Tls(tls_addr, tls.clone()))
        .with_endpoint(Endpoint::WebSocketTls(wss_addr, WebSocketOptions::default(), tls))
        .build();
    let server = Server::start(options).await?;
    println!("MQTT over TLS on {tls_addr}, WebSocket over TLS on wss://{wss_addr}/mqtt");
    println!("certificate {}, key {}", cert.display(), key.display());
    println!("SIGHUP reloads them, Ctrl-C stops");

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => match server.reload_tls() {
                Ok(n) => println!("reloaded the certificates of {n} endpoints"),
                Err(e) => eprintln!("reload failed, keeping the old certificate: {e}"),
            },
        }
    }
    server.stop().await;
    Ok(())
}

/// Writes a self-signed certificate for localhost into a temporary directory.
fn self_signed() -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("corvid-tls-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, certified.cert.pem())?;
    std::fs::write(&key, certified.signing_key.serialize_pem())?;
    println!("self-signed certificate written; clients trust it with --cafile {}", cert.display());
    Ok((cert, key))
}
