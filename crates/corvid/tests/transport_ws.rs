//! MQTT over WebSocket, plain and over TLS: the upgrade (path, subprotocols), packets split across frames and
//! several packets in one frame, ping and close, and requests that must be refused.

mod transport_common;

use bytes::{Bytes, BytesMut};
use corvid::protocol::{Packet, decode};
use corvid::transport::{TlsOptions, WebSocketOptions};
use corvid::{Endpoint, ProtocolVersion, Server, ServerOptions};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};
use transport_common::*;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server with a TCP endpoint, a WebSocket endpoint at `/mqtt` and, with `tls`, a WebSocket-over-TLS one.
async fn start(tls: Option<TlsOptions>) -> (Server, Vec<SocketAddr>) {
    let mut builder = ServerOptions::builder()
        .without_default_endpoint()
        .with_sys_interval(None)
        .with_endpoint(Endpoint::Tcp(any()))
        .with_endpoint(Endpoint::WebSocket(any(), WebSocketOptions::default()));
    if let Some(tls) = tls {
        builder = builder.with_endpoint(Endpoint::WebSocketTls(any(), WebSocketOptions::default(), tls));
    }
    let server = Server::start(builder.build()).await.expect("server starts");
    let addrs = server.local_addrs().to_vec();
    (server, addrs)
}

/// Opens a WebSocket at `ws://addr{path}` offering `protocols`; the stream and the subprotocol the server chose.
async fn ws_open<S>(
    stream: S,
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<(WebSocketStream<S>, Option<String>), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocols).unwrap());
    }
    let (ws, response) = within("WebSocket handshake", client_async(request, stream)).await?;
    let protocol = response.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, protocol))
}

/// A raw MQTT client over WebSocket frames.
struct WsClient<S> {
    ws: WebSocketStream<S>,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    async fn send_frame(&mut self, bytes: &[u8]) {
        within("send frame", self.ws.send(Message::Binary(Bytes::copy_from_slice(bytes)))).await.unwrap();
    }

    /// Sends the packets as one byte stream cut into frames of `chunk` bytes.
    async fn send_chunked(&mut self, packets: &[Packet], chunk: usize) {
        let mut all = BytesMut::new();
        for p in packets {
            all.extend_from_slice(&packet_bytes(p, self.version));
        }
        for piece in all.chunks(chunk) {
            self.send_frame(piece).await;
        }
    }

    /// The next MQTT packet (frames must be binary).
    async fn recv(&mut self) -> Packet {
        within("a packet over WebSocket", async {
            loop {
                if let Some(p) = decode(&mut self.rbuf, self.version, u32::MAX).unwrap() {
                    return p;
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => self.rbuf.extend_from_slice(&data),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("expected a binary frame, got {other:?}"),
                }
            }
        })
        .await
    }

    async fn recv_publish(&mut self) -> (String, Bytes) {
        match self.recv().await {
            Packet::Publish(p) => topic_payload(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// Connects (CONNECT cut into 3-byte frames), subscribes to `filter` and publishes one message in a single frame
/// holding SUBSCRIBE and PUBLISH; checks the message comes back.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    version: ProtocolVersion,
    id: &str,
) -> WsClient<S> {
    let mut client = WsClient { ws, rbuf: BytesMut::new(), version };
    client.send_chunked(&[connect_packet(version, id)], 3).await;
    assert!(matches!(client.recv().await, Packet::ConnAck(a) if a.reason_code == corvid::ReasonCode::Success));
    let topic = format!("ws/{id}");
    client
        .send_chunked(&[subscribe_packet(7, &topic, corvid::QoS::AtMostOnce), publish_packet(&topic, b"echo")], 1 << 16)
        .await;
    assert!(matches!(client.recv().await, Packet::SubAck(_)));
    let (t, payload) = client.recv_publish().await;
    assert_eq!((t.as_str(), &payload[..]), (topic.as_str(), &b"echo"[..]));
    client
}

#[tokio::test]
async fn websocket_clients_exchange_messages_with_tcp_clients() {
    let (server, addrs) = start(None).await;
    let (tcp, ws_addr) = (addrs[0], addrs[1]);

    let stream = TcpStream::connect(ws_addr).await.unwrap();
    let (ws, protocol) = ws_open(stream, ws_addr, "/mqtt", "mqtt").await.expect("upgrade");
    assert_eq!(protocol.as_deref(), Some("mqtt"), "the subprotocol is echoed");
    let mut client = exchange(ws, ProtocolVersion::V3_1_1, "ws-1").await;
    client.send_chunked(&[subscribe_packet(8, "from-tcp/#", corvid::QoS::AtMostOnce)], 5).await;
    assert!(matches!(client.recv().await, Packet::SubAck(_)));

    // Several packets in one frame, and one packet split across many frames, from the broker's view.
    let mut tcp_client = Raw::v311(tcp, "tcp-1").await;
    tcp_client.subscribe_code("to-tcp/#", corvid::QoS::AtMostOnce).await;
    client.send_chunked(&[publish_packet("to-tcp/a", b"one"), publish_packet("to-tcp/b", &[7u8; 3000])], 1000).await;
    assert_eq!(topic_payload(tcp_client.recv_publish().await), ("to-tcp/a".to_owned(), Bytes::from_static(b"one")));
    assert_eq!(topic_payload(tcp_client.recv_publish().await), ("to-tcp/b".to_owned(), Bytes::from(vec![7u8; 3000])));

    tcp_client.publish0("from-tcp/x", b"to the browser").await;
    assert_eq!(client.recv_publish().await, ("from-tcp/x".to_owned(), Bytes::from_static(b"to the browser")));

    // WebSocket ping is answered with pong.
    within("send ping", client.ws.send(Message::Ping(Bytes::from_static(b"hi")))).await.unwrap();
    let pong = within("pong", client.ws.next()).await;
    assert!(matches!(pong, Some(Ok(Message::Pong(ref p))) if &p[..] == b"hi"), "{pong:?}");

    // A close frame ends the MQTT connection (without DISCONNECT: connection lost) and is answered.
    let mut events = server.events();
    within("send close", client.ws.close(None)).await.unwrap();
    let end = within("close answered", client.ws.next()).await;
    assert!(matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))), "{end:?}");
    within("disconnect event", async {
        loop {
            if let Ok(corvid::Event::ClientDisconnected { client_id, .. }) = events.recv().await
                && client_id == "ws-1"
            {
                return;
            }
        }
    })
    .await;
    tcp_client.ping().await;
    server.stop().await;
}

#[tokio::test]
async fn mqtt_3_1_clients_use_the_mqttv31_subprotocol() {
    let (server, addrs) = start(None).await;
    let stream = TcpStream::connect(addrs[1]).await.unwrap();
    let (ws, protocol) = ws_open(stream, addrs[1], "/mqtt", "mqttv3.1").await.expect("upgrade");
    assert_eq!(protocol.as_deref(), Some("mqttv3.1"));
    exchange(ws, ProtocolVersion::V3_1, "ws-31").await;
    // MQTT 5 over "mqtt", offered after another protocol.
    let stream = TcpStream::connect(addrs[1]).await.unwrap();
    let (ws, protocol) = ws_open(stream, addrs[1], "/mqtt", "wamp, mqtt").await.expect("upgrade");
    assert_eq!(protocol.as_deref(), Some("mqtt"));
    exchange(ws, ProtocolVersion::V5, "ws-5").await;
    server.stop().await;
}

/// Sends raw bytes and returns everything until the server closes.
async fn http_exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within("HTTP response and close", stream.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn refused_requests_get_an_http_error_and_affect_no_one_else() {
    let (server, addrs) = start(None).await;
    let ws_addr = addrs[1];
    let stream = TcpStream::connect(ws_addr).await.unwrap();
    let (ws, _) = ws_open(stream, ws_addr, "/mqtt", "mqtt").await.unwrap();
    let mut bystander = exchange(ws, ProtocolVersion::V5, "bystander").await;

    // A non-MQTT subprotocol.
    let stream = TcpStream::connect(ws_addr).await.unwrap();
    match ws_open(stream, ws_addr, "/mqtt", "soap").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected HTTP 400, got {:?}", other.map(|(_, p)| p)),
    }
    // Another path.
    let stream = TcpStream::connect(ws_addr).await.unwrap();
    match ws_open(stream, ws_addr, "/other", "mqtt").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected HTTP 404, got {:?}", other.map(|(_, p)| p)),
    }
    // An ordinary HTTP request on the MQTT path.
    let response = http_exchange(ws_addr, "GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    let response = http_exchange(ws_addr, "POST /mqtt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    // MQTT without WebSocket on the WebSocket port.
    let connect = packet_bytes(&connect_packet(ProtocolVersion::V3_1_1, "raw"), ProtocolVersion::V3_1_1);
    let mut raw = TcpStream::connect(ws_addr).await.unwrap();
    raw.write_all(&connect).await.unwrap();
    raw.write_all(b"\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    within("raw MQTT refused", raw.read_to_end(&mut response)).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 4"), "{}", String::from_utf8_lossy(&response));

    // A text frame closes that connection only.
    let stream = TcpStream::connect(ws_addr).await.unwrap();
    let (mut ws, _) = ws_open(stream, ws_addr, "/mqtt", "mqtt").await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    let end = within("text frame closes", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end);

    bystander.send_chunked(&[publish_packet("ws/bystander", b"fine")], 2).await;
    assert_eq!(bystander.recv_publish().await, ("ws/bystander".to_owned(), Bytes::from_static(b"fine")));
    server.stop().await;
}

#[tokio::test]
async fn websocket_over_tls() {
    let pki = Pki::new();
    let (server, addrs) = start(Some(TlsOptions::pem(&pki.cert_file, &pki.key_file))).await;
    let wss = addrs[2];
    let stream = tls_connect(wss, client_config(&pki.ca, BOTH, None)).await.expect("TLS handshake");
    let (ws, protocol) = ws_open(stream, wss, "/mqtt", "mqtt").await.expect("upgrade over TLS");
    assert_eq!(protocol.as_deref(), Some("mqtt"));
    let mut client = exchange(ws, ProtocolVersion::V5, "wss-1").await;

    let mut tcp = Raw::v311(addrs[0], "tcp-2").await;
    client.send_chunked(&[subscribe_packet(9, "secure/#", corvid::QoS::AtMostOnce)], 4).await;
    assert!(matches!(client.recv().await, Packet::SubAck(_)));
    tcp.publish0("secure/1", b"over wss").await;
    assert_eq!(client.recv_publish().await, ("secure/1".to_owned(), Bytes::from_static(b"over wss")));

    // Plain WebSocket on the TLS port fails without harm.
    let stream = TcpStream::connect(wss).await.unwrap();
    assert!(ws_open(stream, wss, "/mqtt", "mqtt").await.is_err());
    tcp.publish0("secure/2", b"still fine").await;
    assert_eq!(client.recv_publish().await, ("secure/2".to_owned(), Bytes::from_static(b"still fine")));
    server.stop().await;
}
