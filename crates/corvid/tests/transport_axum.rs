//! MQTT over WebSocket mounted in an axum router next to ordinary HTTP routes, sharing one server with its TCP
//! listener. Needs the `axum` feature: `cargo test -p corvid --features axum --test transport_axum`.
#![cfg(feature = "axum")]

mod transport_common;

use axum::Router;
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use corvid::protocol::{Packet, decode};
use corvid::{Endpoint, ProtocolVersion, Server, ServerOptions};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use transport_common::*;

async fn start() -> (Server, SocketAddr, SocketAddr) {
    let options = ServerOptions::builder()
        .without_default_endpoint()
        .with_sys_interval(None)
        .with_endpoint(Endpoint::Tcp("127.0.0.1:0".parse().unwrap()))
        .build();
    let server = Server::start(options).await.unwrap();
    let tcp = server.local_addrs()[0];
    let app = Router::new()
        .route("/", get(|| async { "hello from axum" }))
        .route("/mqtt", corvid::transport::axum::mqtt_websocket(server.handle()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    (server, tcp, http)
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within("HTTP response", stream.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn mqtt_route_shares_the_server_with_http_routes_and_tcp() {
    let (server, tcp, http) = start().await;
    assert!(http_get(http, "/").await.contains("hello from axum"));
    let response = http_get(http, "/mqtt").await;
    assert!(response.starts_with("HTTP/1.1 4"), "a plain GET on the MQTT route is refused: {response}");

    let mut request = format!("ws://{http}/mqtt").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("soap"));
    match within("refused upgrade", tokio_tungstenite::connect_async(request)).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected HTTP 400, got {:?}", other.map(|(_, r)| r.status())),
    }

    let mut request = format!("ws://{http}/mqtt").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, response) = within("upgrade", tokio_tungstenite::connect_async(request)).await.unwrap();
    assert_eq!(response.headers().get("Sec-WebSocket-Protocol").unwrap(), "mqtt");

    let version = ProtocolVersion::V5;
    let mut frames = BytesMut::new();
    frames.extend_from_slice(&packet_bytes(&connect_packet(version, "axum-client"), version));
    frames.extend_from_slice(&packet_bytes(&subscribe_packet(1, "axum/#", corvid::QoS::AtMostOnce), version));
    for piece in frames.chunks(5) {
        ws.send(Message::Binary(Bytes::copy_from_slice(piece))).await.unwrap();
    }
    let mut rbuf = BytesMut::new();
    let mut next = async || {
        within("packet over axum WebSocket", async {
            loop {
                if let Some(p) = decode(&mut rbuf, version, u32::MAX).unwrap() {
                    return p;
                }
                match ws.next().await {
                    Some(Ok(Message::Binary(data))) => rbuf.extend_from_slice(&data),
                    other => panic!("expected a binary frame, got {other:?}"),
                }
            }
        })
        .await
    };
    assert!(matches!(next().await, Packet::ConnAck(_)));
    assert!(matches!(next().await, Packet::SubAck(_)));

    let mut publisher = Raw::v311(tcp, "tcp-publisher").await;
    publisher.publish0("axum/news", b"from TCP to axum").await;
    match next().await {
        Packet::Publish(p) => assert_eq!((p.topic.as_ref(), &p.payload[..]), ("axum/news", &b"from TCP to axum"[..])),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    let clients = server.clients();
    let client = clients.iter().find(|c| c.client_id == "axum-client").expect("listed");
    assert!(client.remote_addr.ip().is_loopback(), "{client:?}");
    server.stop().await;
}
