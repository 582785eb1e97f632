//! MQTT 5 enhanced authentication: a multi-step AUTH exchange driven by the server's hook, over a real socket.

use bytes::{Bytes, BytesMut};
use corvid::protocol::{Auth, AuthProperties, Connect, Packet, ProtocolVersion, ReasonCode, decode, encode};
use corvid::{AuthDecision, Endpoint, Server, ServerOptions, ServerOptionsBuilder};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;

async fn start(builder: ServerOptionsBuilder) -> Server {
    let options =
        builder.without_default_endpoint().with_endpoint(Endpoint::Tcp("127.0.0.1:0".parse().unwrap())).build();
    Server::start(options).await.unwrap()
}

async fn send(stream: &mut TcpStream, packet: Packet) {
    let mut buf = BytesMut::new();
    encode(&packet, V5, &mut buf).unwrap();
    stream.write_all(&buf).await.unwrap();
}

async fn recv(stream: &mut TcpStream, buf: &mut BytesMut) -> Packet {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(p) = decode(buf, V5, u32::MAX).unwrap() {
                return p;
            }
            assert!(stream.read_buf(buf).await.unwrap() > 0, "connection closed");
        }
    })
    .await
    .expect("no packet within 3 s")
}

fn connect(method: &str, data: &'static [u8]) -> Packet {
    let mut c = Connect::new(V5, "auth-client");
    c.properties.authentication_method = Some(method.into());
    c.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Connect(Box::new(c))
}

/// A toy challenge-response: the server asks for the reverse of a nonce.
fn challenge_hook() -> ServerOptionsBuilder {
    ServerOptions::builder().with_enhanced_authentication(|ctx| {
        ctx.decision = match (ctx.step, ctx.data.as_deref()) {
            (0, Some(b"hello")) => AuthDecision::Continue(Some(Bytes::from_static(b"nonce-123"))),
            (1, Some(b"321-ecnon")) => {
                ctx.session_items.insert(String::from("authenticated by challenge"));
                AuthDecision::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthDecision::Fail(ReasonCode::NotAuthorized),
        };
    })
}

#[tokio::test]
async fn two_step_exchange_succeeds_and_connack_carries_method_and_data() {
    let server = start(challenge_hook()).await;
    let mut s = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
    let mut buf = BytesMut::new();
    send(&mut s, connect("TOY-CHALLENGE", b"hello")).await;
    let Packet::Auth(auth) = recv(&mut s, &mut buf).await else { panic!("expected AUTH") };
    assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(auth.properties.authentication_method.as_deref(), Some("TOY-CHALLENGE"));
    assert_eq!(auth.properties.authentication_data.as_deref(), Some(&b"nonce-123"[..]));
    let reply = AuthProperties {
        authentication_method: Some("TOY-CHALLENGE".into()),
        authentication_data: Some(Bytes::from_static(b"321-ecnon")),
        ..Default::default()
    };
    send(&mut s, Packet::Auth(Auth { reason_code: ReasonCode::ContinueAuthentication, properties: reply })).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(ack.properties.authentication_method.as_deref(), Some("TOY-CHALLENGE"));
    assert_eq!(ack.properties.authentication_data.as_deref(), Some(&b"welcome"[..]));
    let session = server.session("auth-client").expect("session");
    assert_eq!(session.items.get::<String>().as_deref(), Some("authenticated by challenge"));
    server.stop().await;
}

#[tokio::test]
async fn wrong_answer_is_refused_with_the_hooks_reason_code() {
    let server = start(challenge_hook()).await;
    let mut s = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
    let mut buf = BytesMut::new();
    send(&mut s, connect("TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(_)));
    let reply = AuthProperties {
        authentication_method: Some("TOY-CHALLENGE".into()),
        authentication_data: Some(Bytes::from_static(b"wrong")),
        ..Default::default()
    };
    send(&mut s, Packet::Auth(Auth { reason_code: ReasonCode::ContinueAuthentication, properties: reply })).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    server.stop().await;
}

#[tokio::test]
async fn a_method_without_a_hook_is_a_bad_authentication_method() {
    let server = start(ServerOptions::builder()).await;
    let mut s = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
    let mut buf = BytesMut::new();
    send(&mut s, connect("SCRAM-SHA-256", b"n,,n=user")).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    server.stop().await;
}
