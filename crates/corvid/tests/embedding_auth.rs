//! MQTT 5 enhanced authentication: a multi-step AUTH exchange driven by the server's hook, and re-authentication of
//! a connected client (MQTT 5.0 section 4.12.1), over a real socket.

use bytes::{Bytes, BytesMut};
use corvid::protocol::{
    Auth, AuthProperties, ByteString, Connect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, decode, encode,
};
use corvid::{AuthDecision, Endpoint, Message, Server, ServerOptions, ServerOptionsBuilder};
use std::sync::{Arc, Mutex};
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

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn auth_packet(reason_code: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    let properties = AuthProperties {
        authentication_method: Some(method.into()),
        authentication_data: Some(Bytes::from_static(data)),
        ..Default::default()
    };
    Packet::Auth(Auth { reason_code, properties })
}

/// A toy challenge-response: the server asks for the reverse of a nonce. "banned" at the first step is refused
/// with a code only CONNACK can carry.
fn challenge_hook() -> ServerOptionsBuilder {
    challenge_hook_seen(Arc::default())
}

/// [`challenge_hook`], recording each step as (step, reauthentication).
fn challenge_hook_seen(seen: Arc<Mutex<Vec<(u32, bool)>>>) -> ServerOptionsBuilder {
    ServerOptions::builder().with_enhanced_authentication(move |ctx| {
        seen.lock().unwrap().push((ctx.step, ctx.reauthentication));
        ctx.decision = match (ctx.step, ctx.data.as_deref()) {
            (0, Some(b"hello")) => AuthDecision::Continue(Some(Bytes::from_static(b"nonce-123"))),
            (0, Some(b"banned")) => AuthDecision::Fail(ReasonCode::Banned),
            (1, Some(b"321-ecnon")) => {
                let note = if ctx.reauthentication { "re-authenticated" } else { "authenticated by challenge" };
                ctx.session_items.insert(String::from(note));
                AuthDecision::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthDecision::Fail(ReasonCode::NotAuthorized),
        };
    })
}

/// Asserts that a server packet carries the toy method and `data`.
fn assert_toy(method: &Option<ByteString>, data: &Option<Bytes>, expected: &[u8]) {
    assert_eq!(method.as_deref(), Some("TOY-CHALLENGE"));
    assert_eq!(data.as_deref(), Some(expected));
}

/// The note the hook left in the session's items.
fn note(server: &Server) -> Option<String> {
    server.session("auth-client").expect("session").items.get::<String>()
}

/// A socket to the server that has sent `connect`, and its read buffer.
async fn open(server: &Server, connect: Packet) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
    send(&mut s, connect).await;
    (s, BytesMut::new())
}

/// A client authenticated through [`challenge_hook`]'s two steps.
async fn authenticated(server: &Server) -> (TcpStream, BytesMut) {
    let (mut s, mut buf) = open(server, connect("TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(_)));
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    (s, buf)
}

/// The DISCONNECT the server closes the connection with, then the end of the stream.
async fn disconnected(s: &mut TcpStream, buf: &mut BytesMut) -> ReasonCode {
    let Packet::Disconnect(d) = recv(s, buf).await else { panic!("expected DISCONNECT") };
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_buf(buf)).await.expect("not closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "connection still open");
    d.reason_code
}

#[tokio::test]
async fn two_step_exchange_succeeds_and_connack_carries_method_and_data() {
    let server = start(challenge_hook()).await;
    let (mut s, mut buf) = open(&server, connect("TOY-CHALLENGE", b"hello")).await;
    let Packet::Auth(auth) = recv(&mut s, &mut buf).await else { panic!("expected AUTH") };
    assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
    assert_toy(&auth.properties.authentication_method, &auth.properties.authentication_data, b"nonce-123");
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_toy(&ack.properties.authentication_method, &ack.properties.authentication_data, b"welcome");
    assert_eq!(note(&server).as_deref(), Some("authenticated by challenge"));
    server.stop().await;
}

#[tokio::test]
async fn wrong_answer_is_refused_with_the_hooks_reason_code() {
    let server = start(challenge_hook()).await;
    let (mut s, mut buf) = open(&server, connect("TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(_)));
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"wrong")).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    server.stop().await;
}

#[tokio::test]
async fn a_method_without_a_hook_is_a_bad_authentication_method() {
    let server = start(ServerOptions::builder()).await;
    let (mut s, mut buf) = open(&server, connect("SCRAM-SHA-256", b"n,,n=user")).await;
    let Packet::ConnAck(ack) = recv(&mut s, &mut buf).await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    server.stop().await;
}

#[tokio::test]
async fn a_connected_client_re_authenticates_while_its_messages_keep_flowing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = start(challenge_hook_seen(seen.clone())).await;
    let (mut s, mut buf) = authenticated(&server).await;
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters: vec![(TopicFilter::new("reauth/t").unwrap(), SubscriptionOptions::default())],
        properties: Default::default(),
    };
    send(&mut s, Packet::Subscribe(subscribe)).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::SubAck(_)));

    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    let Packet::Auth(challenge) = recv(&mut s, &mut buf).await else { panic!("expected AUTH") };
    assert_eq!(challenge.reason_code, ReasonCode::ContinueAuthentication);
    assert_toy(&challenge.properties.authentication_method, &challenge.properties.authentication_data, b"nonce-123");
    // Between the steps the connection works as before: a message reaches it, a ping is answered.
    assert_eq!(server.publish(Message::new(topic("reauth/t"), "during", QoS::AtMostOnce, false)).await, 1);
    let Packet::Publish(p) = recv(&mut s, &mut buf).await else { panic!("expected PUBLISH") };
    assert_eq!(&p.payload[..], b"during");
    send(&mut s, Packet::PingReq).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::PingResp));

    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::Auth(done) = recv(&mut s, &mut buf).await else { panic!("expected AUTH") };
    assert_eq!(done.reason_code, ReasonCode::Success);
    assert_toy(&done.properties.authentication_method, &done.properties.authentication_data, b"welcome");
    // The hook saw the session's items, and each step as a re-authentication.
    assert_eq!(note(&server).as_deref(), Some("re-authenticated"));
    assert_eq!(*seen.lock().unwrap(), [(0, false), (1, false), (0, true), (1, true)]);

    // A second re-authentication starts over at step 0, and the connection still delivers afterwards.
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(
        matches!(recv(&mut s, &mut buf).await, Packet::Auth(a) if a.reason_code == ReasonCode::ContinueAuthentication)
    );
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(a) if a.reason_code == ReasonCode::Success));
    assert_eq!(server.publish(Message::new(topic("reauth/t"), "after", QoS::AtMostOnce, false)).await, 1);
    let Packet::Publish(p) = recv(&mut s, &mut buf).await else { panic!("expected PUBLISH") };
    assert_eq!(&p.payload[..], b"after");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_re_authentication_disconnects_with_the_hooks_code() {
    let server = start(challenge_hook()).await;
    let (mut s, mut buf) = authenticated(&server).await;
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(_)));
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"wrong")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::NotAuthorized);

    // A code DISCONNECT cannot carry (Banned is for CONNACK) becomes "not authorized".
    let (mut s, mut buf) = authenticated(&server).await;
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"banned")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::NotAuthorized);
    server.stop().await;
}

#[tokio::test]
async fn auth_out_of_place_is_a_protocol_error() {
    let server = start(challenge_hook()).await;
    // A client that connected without a method.
    let (mut s, mut buf) = open(&server, Packet::Connect(Box::new(Connect::new(V5, "plain-client")))).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::ConnAck(a) if a.reason_code == ReasonCode::Success));
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::ProtocolError);

    // Another method than the one the client authenticated with.
    let (mut s, mut buf) = authenticated(&server).await;
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "SCRAM-SHA-256", b"hello")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::ProtocolError);

    // "Continue" with no re-authentication under way.
    let (mut s, mut buf) = authenticated(&server).await;
    send(&mut s, auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::ProtocolError);

    // "Re-authenticate" again while one is under way.
    let (mut s, mut buf) = authenticated(&server).await;
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(recv(&mut s, &mut buf).await, Packet::Auth(_)));
    send(&mut s, auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert_eq!(disconnected(&mut s, &mut buf).await, ReasonCode::ProtocolError);
    server.stop().await;
}
