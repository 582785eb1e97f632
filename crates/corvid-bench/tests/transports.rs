//! The client's TLS and WebSocket transports against small in-process servers built on other implementations
//! (rustls's server side, tungstenite's server side) that answer only what a transport test needs: CONNACK,
//! PINGRESP, and echoed PUBLISH packets. Nothing here measures speed.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use corvid_bench::certs::make_server_certs;
use corvid_bench::client::{Client, ConnectOptions, Dial, TlsClient, Transport};
use corvid_bench::payload::{PublishTemplate, Stamp};
use corvid_bench::scenarios::{Scenario, Settings, Target, TargetKind, TlsEndpoint, run_case};
use corvid_protocol::{Packet, ProtocolVersion, QoS, decode_frame_length};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corvid-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Answers CONNECT with CONNACK and PINGREQ with PINGRESP until DISCONNECT or the end of the stream.
async fn mqtt_responder<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = BytesMut::new();
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some((header, remaining))) = decode_frame_length(&buf) {
            if buf.len() < header + remaining {
                break;
            }
            let frame = buf.split_to(header + remaining);
            let reply: &[u8] = match frame[0] >> 4 {
                1 => &[0x20, 0x02, 0x00, 0x00],
                12 => &[0xD0, 0x00],
                14 => return,
                _ => &[],
            };
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_scenario_against_a_rustls_server() {
    let dir = temp_dir("tls-test");
    let certs = make_server_certs(&dir).unwrap();
    let chain = CertificateDer::pem_file_iter(&certs.cert_file).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    mqtt_responder(tls).await;
                }
            });
        }
    });

    let mut target = Target::tcp("rustls", addr, None, TargetKind::Broker);
    target.tls = Ok(TlsEndpoint { addr, roots: vec![certs.ca.clone()], server_name: "localhost".to_owned() });
    for version in ["1.3", "1.2"] {
        let argv = ["test", "--size", "smoke", "--duration", "0.2", "--tls-version", version];
        let settings = Cli::parse_from(argv).settings;
        let case = &settings.cases(Scenario::TlsHandshake)[0];
        let result = run_case(&target, &settings, case).await;
        assert!(!result.verdict.is_fail() && !result.verdict.is_skipped(), "TLS {version}: {}", result.verdict);
        assert!(result.metric("handshakes").unwrap_or(0.0) > 0.0, "TLS {version}: {:?}", result.metrics);
        assert!(result.metric("conn/s").unwrap_or(0.0) > 0.0);
    }

    // A client that trusts another CA must fail the handshake.
    let other = make_server_certs(&temp_dir("tls-test-other")).unwrap();
    let tls = TlsClient::new(std::slice::from_ref(&other.ca), &rustls::version::TLS13, "localhost").unwrap();
    let dial = Dial { addr, transport: Transport::Tls(tls) };
    assert!(Client::connect_via(&dial, &ConnectOptions::new(ProtocolVersion::V3_1_1, "x")).await.is_err());

    // Without a TLS listener the scenario is skipped, not failed.
    let plain = Target::tcp("plain", addr, None, TargetKind::Broker);
    let settings = Cli::parse_from(["test", "--size", "smoke"]).settings;
    let result = run_case(&plain, &settings, &settings.cases(Scenario::TlsHandshake)[0]).await;
    assert!(result.verdict.is_skipped(), "{}", result.verdict);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(temp_dir("tls-test-other"));
}

/// The upgrade callback: the client must offer `mqtt`, which the server selects.
#[allow(clippy::result_large_err)] // tungstenite's signature
fn select_mqtt(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok());
    assert_eq!(offered, Some("mqtt"));
    response.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    Ok(response)
}

/// A WebSocket server (tungstenite) that selects subprotocol `mqtt`, answers CONNECT with CONNACK, and sends back
/// everything else in 7-byte binary frames with a ping between the first two; records whether a pong and a close
/// frame came back.
async fn ws_server(listener: TcpListener, ponged: Arc<AtomicBool>, closed: Arc<AtomicBool>) {
    let Ok((stream, _)) = listener.accept().await else { return };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, select_mqtt).await else { return };
    let mut connected = false;
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(data) if !connected => {
                assert_eq!(data[0] >> 4, 1, "the first packet is CONNECT");
                connected = true;
                let _ = ws.send(Message::Binary(Bytes::from_static(&[0x20, 0x02, 0x00, 0x00]))).await;
            }
            Message::Binary(data) => {
                for (i, chunk) in data.chunks(7).enumerate() {
                    if i == 1 {
                        let _ = ws.send(Message::Ping(Bytes::from_static(b"are you there"))).await;
                    }
                    let _ = ws.send(Message::Binary(Bytes::copy_from_slice(chunk))).await;
                }
            }
            Message::Pong(payload) => ponged.store(payload.as_ref() == b"are you there", Ordering::SeqCst),
            Message::Close(_) => {
                closed.store(true, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_transport_carries_a_byte_stream() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ponged, closed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let server = tokio::spawn(ws_server(listener, Arc::clone(&ponged), Arc::clone(&closed)));

    let dial = Dial { addr, transport: Transport::WebSocket { path: "/mqtt".to_owned() } };
    let version = ProtocolVersion::V3_1_1;
    let mut client = Client::connect_via(&dial, &ConnectOptions::new(version, "ws-test")).await.unwrap();
    // Three PUBLISH packets in one frame; they come back split across 7-byte frames with a ping among them.
    let template = PublishTemplate::new("t/ws", QoS::AtMostOnce, false, 64, version).unwrap();
    for seq in 0..3 {
        template.append(&mut client.wbuf, 0, Stamp { publisher: 7, seq, sent_ns: 0 });
    }
    client.flush().await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        while let Some(packet) = client.next_packet().unwrap() {
            let Packet::Publish(publish) = packet else { panic!("expected PUBLISH") };
            assert_eq!(&*publish.topic, "t/ws");
            let stamp = Stamp::read(&publish.payload).unwrap();
            assert_eq!(stamp.publisher, 7);
            seqs.push(stamp.seq);
        }
        if seqs.len() < 3 {
            tokio::time::timeout(std::time::Duration::from_secs(5), client.read_more(None)).await.unwrap().unwrap();
        }
    }
    assert_eq!(seqs, [0, 1, 2]);
    // The pong goes out with the next write.
    client.flush().await.unwrap();
    client.wbuf.extend_from_slice(&[0xC0, 0x00]);
    client.flush().await.unwrap();
    client.disconnect().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(ponged.load(Ordering::SeqCst), "no pong for the server's ping");
    assert!(closed.load(Ordering::SeqCst), "no close frame");
}
