//! MQTT 5 enhanced authentication: a multi-step AUTH exchange driven by the server's hook, and re-authentication of
//! a connected client (MQTT 5.0 section 4.12.1), over a real socket.

mod embedding_common;

use bytes::Bytes;
use corvid::protocol::{Auth, AuthProperties, ByteString, Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use corvid::{AuthDecision, Message, Server, ServerOptionsBuilder};
use embedding_common::{Raw, options, start, topic};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn connect(method: &str, data: &'static [u8]) -> Packet {
    let mut c = Connect::new(V5, "auth-client");
    c.properties.authentication_method = Some(method.into());
    c.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Connect(Box::new(c))
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
    options().with_enhanced_authentication(move |ctx| {
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

/// A raw MQTT 5 client that has sent `connect`.
async fn open(addr: SocketAddr, connect: Packet) -> Raw {
    let mut raw = Raw::open(addr, V5).await;
    raw.send(&connect).await;
    raw
}

/// A client authenticated through [`challenge_hook`]'s two steps.
async fn authenticated(addr: SocketAddr) -> Raw {
    let mut raw = open(addr, connect("TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(raw.recv().await, Packet::Auth(_)));
    raw.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::ConnAck(ack) = raw.recv().await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    raw
}

#[tokio::test]
async fn two_step_exchange_succeeds_and_connack_carries_method_and_data() {
    let (server, addr) = start(challenge_hook()).await;
    let mut s = open(addr, connect("TOY-CHALLENGE", b"hello")).await;
    let Packet::Auth(auth) = s.recv().await else { panic!("expected AUTH") };
    assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
    assert_toy(&auth.properties.authentication_method, &auth.properties.authentication_data, b"nonce-123");
    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::ConnAck(ack) = s.recv().await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_toy(&ack.properties.authentication_method, &ack.properties.authentication_data, b"welcome");
    assert_eq!(note(&server).as_deref(), Some("authenticated by challenge"));
    server.stop().await;
}

#[tokio::test]
async fn wrong_answer_is_refused_with_the_hooks_reason_code() {
    let (server, addr) = start(challenge_hook()).await;
    let mut s = open(addr, connect("TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(s.recv().await, Packet::Auth(_)));
    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"wrong")).await;
    let Packet::ConnAck(ack) = s.recv().await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    server.stop().await;
}

#[tokio::test]
async fn a_method_without_a_hook_is_a_bad_authentication_method() {
    let (server, addr) = start(options()).await;
    let mut s = open(addr, connect("SCRAM-SHA-256", b"n,,n=user")).await;
    let Packet::ConnAck(ack) = s.recv().await else { panic!("expected CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    server.stop().await;
}

#[tokio::test]
async fn a_connected_client_re_authenticates_while_its_messages_keep_flowing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (server, addr) = start(challenge_hook_seen(seen.clone())).await;
    let mut s = authenticated(addr).await;
    assert_eq!(s.subscribe_code("reauth/t", QoS::AtMostOnce).await, ReasonCode::Success);

    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    let Packet::Auth(challenge) = s.recv().await else { panic!("expected AUTH") };
    assert_eq!(challenge.reason_code, ReasonCode::ContinueAuthentication);
    assert_toy(&challenge.properties.authentication_method, &challenge.properties.authentication_data, b"nonce-123");
    // Between the steps the connection works as before: a message reaches it, a ping is answered.
    assert_eq!(server.publish(Message::new(topic("reauth/t"), "during", QoS::AtMostOnce, false)).await, 1);
    let Packet::Publish(p) = s.recv().await else { panic!("expected PUBLISH") };
    assert_eq!(&p.payload[..], b"during");
    s.send(&Packet::PingReq).await;
    assert!(matches!(s.recv().await, Packet::PingResp));

    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    let Packet::Auth(done) = s.recv().await else { panic!("expected AUTH") };
    assert_eq!(done.reason_code, ReasonCode::Success);
    assert_toy(&done.properties.authentication_method, &done.properties.authentication_data, b"welcome");
    // The hook saw the session's items, and each step as a re-authentication.
    assert_eq!(note(&server).as_deref(), Some("re-authenticated"));
    assert_eq!(*seen.lock().unwrap(), [(0, false), (1, false), (0, true), (1, true)]);

    // A second re-authentication starts over at step 0, and the connection still delivers afterwards.
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(s.recv().await, Packet::Auth(a) if a.reason_code == ReasonCode::ContinueAuthentication));
    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    assert!(matches!(s.recv().await, Packet::Auth(a) if a.reason_code == ReasonCode::Success));
    assert_eq!(server.publish(Message::new(topic("reauth/t"), "after", QoS::AtMostOnce, false)).await, 1);
    let Packet::Publish(p) = s.recv().await else { panic!("expected PUBLISH") };
    assert_eq!(&p.payload[..], b"after");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_re_authentication_disconnects_with_the_hooks_code() {
    let (server, addr) = start(challenge_hook()).await;
    let mut s = authenticated(addr).await;
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(s.recv().await, Packet::Auth(_)));
    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"wrong")).await;
    s.expect_disconnect(ReasonCode::NotAuthorized).await;

    // A code DISCONNECT cannot carry (Banned is for CONNACK) becomes "not authorized".
    let mut s = authenticated(addr).await;
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"banned")).await;
    s.expect_disconnect(ReasonCode::NotAuthorized).await;
    server.stop().await;
}

#[tokio::test]
async fn auth_out_of_place_is_a_protocol_error() {
    let (server, addr) = start(challenge_hook()).await;
    // A client that connected without a method.
    let mut s = open(addr, Packet::Connect(Box::new(Connect::new(V5, "plain-client")))).await;
    assert!(matches!(s.recv().await, Packet::ConnAck(a) if a.reason_code == ReasonCode::Success));
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    s.expect_disconnect(ReasonCode::ProtocolError).await;

    // Another method than the one the client authenticated with.
    let mut s = authenticated(addr).await;
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "SCRAM-SHA-256", b"hello")).await;
    s.expect_disconnect(ReasonCode::ProtocolError).await;

    // "Continue" with no re-authentication under way.
    let mut s = authenticated(addr).await;
    s.send(&auth_packet(ReasonCode::ContinueAuthentication, "TOY-CHALLENGE", b"321-ecnon")).await;
    s.expect_disconnect(ReasonCode::ProtocolError).await;

    // "Re-authenticate" again while one is under way.
    let mut s = authenticated(addr).await;
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    assert!(matches!(s.recv().await, Packet::Auth(_)));
    s.send(&auth_packet(ReasonCode::ReAuthenticate, "TOY-CHALLENGE", b"hello")).await;
    s.expect_disconnect(ReasonCode::ProtocolError).await;
    server.stop().await;
}
