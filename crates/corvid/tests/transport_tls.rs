//! MQTT over TLS: rumqttc and raw clients, client certificates, TLS versions, PKCS#12, configuration errors,
//! reloading, and failures that must close one connection only.

mod transport_common;

use corvid::protocol::{Connect, QoS};
use corvid::transport::{TlsError, TlsOptions, TlsVersion};
use corvid::{Endpoint, ProtocolVersion, Server, ServerOptions};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, TlsConfiguration, Transport};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transport_common::*;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server with one TCP endpoint and one TLS endpoint; returns it and both addresses.
async fn start(tls: TlsOptions, builder: corvid::ServerOptionsBuilder) -> (Server, SocketAddr, SocketAddr) {
    let options = builder
        .without_default_endpoint()
        .with_sys_interval(None)
        .with_endpoint(Endpoint::Tcp(any()))
        .with_endpoint(Endpoint::Tls(any(), tls))
        .build();
    let server = Server::start(options).await.expect("server starts");
    let (tcp, tls) = (server.local_addrs()[0], server.local_addrs()[1]);
    (server, tcp, tls)
}

#[tokio::test]
async fn rumqttc_over_tls_exchanges_messages_with_a_tcp_client() {
    let pki = Pki::new();
    let (server, tcp, tls) = start(TlsOptions::pem(&pki.cert_file, &pki.key_file), ServerOptions::builder()).await;

    let mut options = MqttOptions::new("rumqttc-tls", "127.0.0.1", tls.port());
    options.set_keep_alive(Duration::from_secs(30));
    let config = client_config(&pki.ca, BOTH, None);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("tls/#", rumqttc::QoS::AtLeastOnce).await.unwrap();
    within("SUBACK over TLS", async {
        loop {
            if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await.expect("TLS connection works") {
                return;
            }
        }
    })
    .await;

    let mut publisher = Raw::v311(tcp, "tcp-publisher").await;
    publisher.publish0("tls/greeting", b"hello over TLS").await;
    let got = within("PUBLISH over TLS", async {
        loop {
            if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await;
    assert_eq!(got.topic, "tls/greeting");
    assert_eq!(&got.payload[..], b"hello over TLS");

    // And the other way: the TLS client publishes, a TCP subscriber receives.
    let mut subscriber = Raw::v311(tcp, "tcp-subscriber").await;
    subscriber.subscribe_code("back/#", QoS::AtMostOnce).await;
    client.publish("back/1", rumqttc::QoS::AtLeastOnce, false, "from TLS").await.unwrap();
    let received = tokio::spawn(async move { topic_payload(subscriber.recv_publish().await) });
    within("PUBACK over TLS", async {
        loop {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await;
    let (topic, payload) = received.await.unwrap();
    assert_eq!((topic.as_str(), &payload[..]), ("back/1", &b"from TLS"[..]));
    server.stop().await;
}

/// Options whose connection validator records each client's certificate subject.
fn subject_recorder() -> (Arc<Mutex<Vec<Option<String>>>>, corvid::ServerOptionsBuilder) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let builder = ServerOptions::builder().with_connection_validator(move |c| {
        record.lock().unwrap().push(c.client_certificate_subject.clone());
    });
    (seen, builder)
}

#[tokio::test]
async fn client_certificate_subject_reaches_the_validator_and_untrusted_ones_are_refused() {
    let pki = Pki::new();
    let (seen, builder) = subject_recorder();
    let tls = TlsOptions::pem(&pki.cert_file, &pki.key_file).with_client_ca(&pki.client_ca_file);
    let (server, tcp, tls) = start(tls, builder).await;

    // A trusted client certificate: connected, subject "CN=device-1".
    let stream = tls_connect(tls, client_config(&pki.ca, BOTH, Some(&pki.client))).await.expect("handshake");
    let mut client = Raw::connect_over(stream, Connect::new(ProtocolVersion::V5, "device-1")).await.0;
    client.ping().await;
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some("CN=device-1".to_owned())]);

    // A certificate from another CA, and no certificate at all: refused during the handshake (with TLS 1.3 the
    // client learns it at its first read).
    for leaf in [Some(&pki.rogue), None] {
        let intruder = Connect::new(ProtocolVersion::V5, "intruder");
        let refused = tls_refused(tls, client_config(&pki.ca, BOTH, leaf), intruder).await;
        assert!(refused, "client certificate {:?} must be refused", leaf.map(|_| "rogue"));
    }
    // Plain TCP clients never carry a certificate.
    Raw::v311(tcp, "tcp-client").await.ping().await;
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some("CN=device-1".to_owned()), None]);
    client.ping().await;
    server.stop().await;
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in_and_still_refuse_untrusted_ones() {
    let pki = Pki::new();
    let (seen, builder) = subject_recorder();
    let tls = TlsOptions::pem(&pki.cert_file, &pki.key_file).with_optional_client_ca(&pki.client_ca_file);
    assert!(!tls.client_certificate_required);
    let (server, _tcp, tls) = start(tls, builder).await;

    // A trusted certificate: its subject reaches the validator.
    let stream = tls_connect(tls, client_config(&pki.ca, BOTH, Some(&pki.client))).await.expect("handshake");
    let mut with_cert = Raw::connect_over(stream, Connect::new(ProtocolVersion::V5, "device-1")).await.0;
    // No certificate: connected, no subject.
    let stream = tls_connect(tls, client_config(&pki.ca, BOTH, None)).await.expect("handshake");
    let mut without = Raw::connect_over(stream, Connect::new(ProtocolVersion::V5, "password-user")).await.0;
    with_cert.ping().await;
    without.ping().await;
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some("CN=device-1".to_owned()), None]);

    // A certificate from another CA is still refused.
    let intruder = Connect::new(ProtocolVersion::V5, "intruder");
    let refused = tls_refused(tls, client_config(&pki.ca, BOTH, Some(&pki.rogue)), intruder).await;
    assert!(refused, "an untrusted client certificate must be refused");
    assert_eq!(seen.lock().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn tls_versions_are_enforced() {
    let pki = Pki::new();
    let only12 = TlsOptions::pem(&pki.cert_file, &pki.key_file).with_versions(&[TlsVersion::Tls12]);
    let (server12, _, tls12) = start(only12, ServerOptions::builder()).await;
    let only13 = TlsOptions::pem(&pki.cert_file, &pki.key_file).with_versions(&[TlsVersion::Tls13]);
    let (server13, _, tls13) = start(only13, ServerOptions::builder()).await;

    let v12 = client_config(&pki.ca, &[&rustls::version::TLS12], None);
    let v13 = client_config(&pki.ca, &[&rustls::version::TLS13], None);
    assert!(tls_connect(tls12, v13.clone()).await.is_err(), "a 1.2-only endpoint refuses a 1.3-only client");
    assert!(tls_connect(tls13, v12.clone()).await.is_err(), "a 1.3-only endpoint refuses a 1.2-only client");

    let stream = tls_connect(tls12, v12).await.expect("1.2 handshake");
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    Raw::connect_over(stream, Connect::new(ProtocolVersion::V3_1_1, "v12")).await.0.ping().await;
    let stream = tls_connect(tls13, v13).await.expect("1.3 handshake");
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    Raw::connect_over(stream, Connect::new(ProtocolVersion::V3_1_1, "v13")).await.0.ping().await;
    server12.stop().await;
    server13.stop().await;
}

/// Makes a PKCS#12 file with the openssl command; `None` when openssl is not installed.
fn openssl_pkcs12(pki: &Pki, name: &str, password: &str, legacy: bool) -> Option<std::path::PathBuf> {
    if !have_program("openssl") {
        eprintln!("openssl not installed: PKCS#12 checks skipped");
        return None;
    }
    let out = pki.dir.path(name);
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["pkcs12", "-export", "-in"])
        .arg(&pki.cert_file)
        .arg("-inkey")
        .arg(&pki.key_file)
        .arg("-certfile")
        .arg(&pki.ca_file)
        .args(["-name", "corvid"])
        .arg("-out")
        .arg(&out)
        .arg("-passout")
        .arg(format!("pass:{password}"));
    if legacy {
        cmd.arg("-legacy");
    }
    let output = cmd.output().expect("run openssl");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if legacy {
            // OpenSSL 3 without its legacy provider cannot write RC2 / 3DES files.
            eprintln!("openssl pkcs12 -legacy failed, legacy check skipped: {stderr}");
            return None;
        }
        panic!("openssl pkcs12 failed: {stderr}");
    }
    Some(out)
}

#[tokio::test]
async fn pkcs12_identity_modern_and_legacy() {
    let pki = Pki::new();
    for (name, legacy) in [("modern.p12", false), ("legacy.p12", true)] {
        let Some(p12) = openssl_pkcs12(&pki, name, "s3cret", legacy) else { continue };
        let (server, _, tls) = start(TlsOptions::pkcs12(&p12, "s3cret"), ServerOptions::builder()).await;
        let stream =
            tls_connect(tls, client_config(&pki.ca, BOTH, None)).await.expect("handshake with PKCS#12 identity");
        Raw::connect_over(stream, Connect::new(ProtocolVersion::V3_1_1, name)).await.0.ping().await;
        server.stop().await;

        // A wrong password: an error naming the file, from check() and from Server::start.
        let wrong = TlsOptions::pkcs12(&p12, "wrong");
        let err = wrong.check().unwrap_err();
        assert!(matches!(err, TlsError::Pkcs12Password { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(name) && message.contains("wrong password"), "{message}");
        let options =
            ServerOptions::builder().without_default_endpoint().with_endpoint(Endpoint::Tls(any(), wrong)).build();
        let err = Server::start(options).await.err().expect("start fails");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[tokio::test]
async fn configuration_errors_name_the_file() {
    let pki = Pki::new();
    // A key that belongs to another certificate.
    let other = pki.ca.leaf("other", &["localhost"]);
    let other_key = pki.dir.write("other.key", &other.key_pem);
    let err = TlsOptions::pem(&pki.cert_file, &other_key).check().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("other.key") && message.contains("does not match"), "{message}");

    // A missing certificate, a certificate file without a certificate, a key file without a key.
    let missing = pki.dir.path("missing.crt");
    let message = TlsOptions::pem(&missing, &pki.key_file).check().unwrap_err().to_string();
    assert!(message.contains("missing.crt") && message.contains("cannot read"), "{message}");
    let message = TlsOptions::pem(&pki.key_file, &pki.key_file).check().unwrap_err().to_string();
    assert!(message.contains("server.key") && message.contains("no PEM certificate"), "{message}");
    let message = TlsOptions::pem(&pki.cert_file, &pki.cert_file).check().unwrap_err().to_string();
    assert!(message.contains("server.crt") && message.contains("private key"), "{message}");
    let message = TlsOptions::pem(&pki.cert_file, &pki.key_file)
        .with_client_ca(pki.dir.path("nope-ca.crt"))
        .check()
        .unwrap_err()
        .to_string();
    assert!(message.contains("nope-ca.crt"), "{message}");
}

#[tokio::test]
async fn plain_tcp_and_silent_sockets_on_the_tls_port_affect_no_one_else() {
    let pki = Pki::new();
    let tls = TlsOptions::pem(&pki.cert_file, &pki.key_file).with_handshake_timeout(Duration::from_millis(300));
    let (server, _, tls) = start(tls, ServerOptions::builder()).await;
    let stream = tls_connect(tls, client_config(&pki.ca, BOTH, None)).await.unwrap();
    let mut good = Raw::connect_over(stream, Connect::new(ProtocolVersion::V5, "good")).await.0;
    good.subscribe_code("t/#", QoS::AtMostOnce).await;

    // MQTT CONNECT in clear text on the TLS port: the connection is closed.
    let mut plain = TcpStream::connect(tls).await.unwrap();
    plain
        .write_all(&packet_bytes(&connect_packet(ProtocolVersion::V3_1_1, "plain"), ProtocolVersion::V3_1_1))
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = within("plain TCP closed", async {
        loop {
            match plain.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {} // a TLS alert
            }
        }
    })
    .await;
    assert!(closed);

    // A socket that says nothing is closed after the handshake timeout.
    let mut silent = TcpStream::connect(tls).await.unwrap();
    let started = std::time::Instant::now();
    let n = within("silent socket closed", silent.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());

    // The TLS client did not notice.
    good.publish0("t/1", b"still here").await;
    let (topic, payload) = topic_payload(good.recv_publish().await);
    assert_eq!((topic.as_str(), &payload[..]), ("t/1", &b"still here"[..]));
    server.stop().await;
}

#[tokio::test]
async fn reloading_certificates_keeps_connected_clients() {
    let pki = Pki::new();
    let (server, _, tls) = start(TlsOptions::pem(&pki.cert_file, &pki.key_file), ServerOptions::builder()).await;
    let stream = tls_connect(tls, client_config(&pki.ca, BOTH, None)).await.unwrap();
    let mut old = Raw::connect_over(stream, Connect::new(ProtocolVersion::V3_1_1, "before-reload")).await.0;
    old.subscribe_code("r/#", QoS::AtMostOnce).await;

    // A broken file: the reload fails, naming it, and the old certificate stays in use.
    std::fs::write(&pki.key_file, "not a key").unwrap();
    let err = server.reload_tls().unwrap_err();
    assert!(err.to_string().contains("server.key"), "{err}");
    tls_connect(tls, client_config(&pki.ca, BOTH, None)).await.expect("old certificate still served");

    // A certificate from a new CA.
    let new_ca = Ca::new("New CA");
    let leaf = new_ca.leaf("corvid-test-server-2", &["localhost", "127.0.0.1"]);
    std::fs::write(&pki.cert_file, &leaf.cert_pem).unwrap();
    std::fs::write(&pki.key_file, &leaf.key_pem).unwrap();
    assert_eq!(server.reload_tls().unwrap(), 1);

    let stream = tls_connect(tls, client_config(&new_ca, BOTH, None)).await.expect("new certificate served");
    let mut new = Raw::connect_over(stream, Connect::new(ProtocolVersion::V3_1_1, "after-reload")).await.0;
    let refused =
        tls_refused(tls, client_config(&pki.ca, BOTH, None), Connect::new(ProtocolVersion::V3_1_1, "x")).await;
    assert!(refused, "the old CA no longer matches");

    new.publish0("r/1", b"after reload").await;
    let (topic, payload) = topic_payload(old.recv_publish().await);
    assert_eq!((topic.as_str(), &payload[..]), ("r/1", &b"after reload"[..]));
    server.stop().await;
}
