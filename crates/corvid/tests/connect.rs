//! CONNECT handling: ordering and timeout, client identifier rules, protocol versions, takeover.

mod common;

use common::{Raw, TestServer, V4Client, V5Client, connect_packet, options, publish_packet, within};
use corvid::protocol::{Packet, QoS};
use corvid::{ProtocolVersion, ReasonCode};
use std::time::{Duration, Instant};

#[tokio::test]
async fn silent_socket_is_closed_after_connect_timeout() {
    let t = TestServer::start(options().with_connect_timeout(Duration::from_millis(500))).await;
    let mut raw = Raw::open(t.addr, ProtocolVersion::V3_1_1).await;
    let start = Instant::now();
    let got = raw.closed_within(Duration::from_secs(3)).await;
    assert!(got.is_empty(), "nothing is sent to a silent socket: {got:?}");
    assert!(start.elapsed() >= Duration::from_millis(400), "closed before the connect timeout");
}

#[tokio::test]
async fn publish_before_connect_closes_the_socket() {
    let t = TestServer::default().await;
    let mut raw = Raw::open(t.addr, ProtocolVersion::V3_1_1).await;
    raw.send(&Packet::Publish(publish_packet("a", b"x", QoS::AtMostOnce, 0))).await;
    let got = raw.expect_closed().await;
    assert!(got.is_empty(), "no CONNACK for a non-CONNECT first packet: {got:?}");
}

#[tokio::test]
async fn empty_client_id_v5_gets_assigned_identifier() {
    let t = TestServer::default().await;
    let (mut raw, ack) = Raw::connect_with(t.addr, connect_packet(ProtocolVersion::V5, "")).await;
    let assigned = ack.properties.assigned_client_identifier.expect("assigned client identifier in CONNACK");
    assert!(!assigned.is_empty());
    // The connection works.
    raw.subscribe("t", QoS::AtMostOnce).await;
    raw.publish("t", b"hi", QoS::AtMostOnce).await;
    assert_eq!(&raw.recv_publish().await.payload[..], b"hi");
    // Two clients with empty identifiers get different ones.
    let (_raw2, ack2) = Raw::connect_with(t.addr, connect_packet(ProtocolVersion::V5, "")).await;
    assert_ne!(ack2.properties.assigned_client_identifier, Some(assigned));
}

#[tokio::test]
async fn empty_client_id_v311_persistent_is_refused_with_code_2() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V3_1_1, "");
    c.clean_start = false;
    let (mut raw, ack) = Raw::handshake(t.addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(ack.reason_code.connack_return_code(), 2);
    assert!(!ack.session_present);
    raw.expect_closed().await;
}

#[tokio::test]
async fn empty_client_id_v311_clean_is_accepted() {
    let t = TestServer::default().await;
    let (mut raw, ack) = Raw::connect_with(t.addr, connect_packet(ProtocolVersion::V3_1_1, "")).await;
    assert!(!ack.session_present);
    raw.subscribe("t", QoS::AtLeastOnce).await;
    raw.publish("t", b"ok", QoS::AtLeastOnce).await;
    assert_eq!(&raw.recv_publish_ack().await.payload[..], b"ok");
}

#[tokio::test]
async fn mqtt_3_1_client_works_and_empty_id_is_refused() {
    let t = TestServer::default().await;
    let (mut raw, _) = Raw::connect_with(t.addr, connect_packet(ProtocolVersion::V3_1, "old-client")).await;
    raw.subscribe("legacy/#", QoS::ExactlyOnce).await;
    raw.publish("legacy/x", b"31", QoS::ExactlyOnce).await;
    let p = raw.recv_publish_ack().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"31");

    let (mut refused, ack) = Raw::handshake(t.addr, connect_packet(ProtocolVersion::V3_1, "")).await;
    assert_eq!(ack.reason_code.connack_return_code(), 2);
    refused.expect_closed().await;
}

#[tokio::test]
async fn unsupported_protocol_level_is_refused() {
    let t = TestServer::default().await;
    let mut raw = Raw::open(t.addr, ProtocolVersion::V3_1_1).await;
    // CONNECT, protocol name MQTT, level 6.
    raw.send_bytes(&[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c']).await;
    let got = raw.expect_closed().await;
    match got.as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code.connack_return_code(), 1),
        other => panic!("expected one CONNACK with return code 1, got {other:?}"),
    }
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let t = TestServer::default().await;
    let mut raw = Raw::v5(t.addr, "twice").await;
    raw.send(&Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "twice")))).await;
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
}

#[tokio::test]
async fn takeover_v5_disconnects_first_with_0x8e() {
    let t = TestServer::default().await;
    let mut first = Raw::v5(t.addr, "same").await;
    let mut second = Raw::v5(t.addr, "same").await;
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    second.subscribe("after", QoS::AtLeastOnce).await;
    second.publish("after", b"works", QoS::AtLeastOnce).await;
    assert_eq!(&second.recv_publish_ack().await.payload[..], b"works");
}

#[tokio::test]
async fn takeover_v311_closes_first_and_keeps_persistent_subscriptions() {
    let t = TestServer::default().await;
    let (mut first, present) = Raw::v311_session(t.addr, "keeper", false).await;
    assert!(!present);
    first.subscribe("kept/+", QoS::AtLeastOnce).await;
    let (mut second, present) = Raw::v311_session(t.addr, "keeper", false).await;
    assert!(present, "the session moves to the new connection");
    let got = first.expect_closed().await;
    assert!(got.is_empty(), "3.1.1 has no server DISCONNECT: {got:?}");
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("kept/1", b"still subscribed", QoS::AtLeastOnce).await;
    let p = second.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"still subscribed");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn takeover_with_clean_start_drops_the_old_session() {
    let t = TestServer::default().await;
    let (mut first, _) = Raw::v5_session(t.addr, "fresh", false, Some(60)).await;
    first.subscribe("old", QoS::AtLeastOnce).await;
    let (mut second, present) = Raw::v5_session(t.addr, "fresh", true, Some(60)).await;
    assert!(!present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("old", b"nobody", QoS::AtLeastOnce).await;
    second.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_clients_interoperate() {
    let t = TestServer::default().await;
    let mut sub = V4Client::connect(t.addr, "rq-sub").await;
    sub.subscribe("interop/#", rumqttc::QoS::AtLeastOnce).await;
    let mut sub5 = V5Client::connect(t.addr, "rq-sub5").await;
    let props = sub5.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(props.receive_max, Some(64));
    sub5.subscribe("interop/#", rumqttc::v5::mqttbytes::QoS::ExactlyOnce).await;
    let publisher = V5Client::connect(t.addr, "rq-pub").await;
    publisher.client.publish("interop/a", rumqttc::v5::mqttbytes::QoS::ExactlyOnce, false, "both").await.unwrap();
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "interop/a");
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(&p.payload[..], b"both");
    let p = sub5.next_publish().await;
    assert_eq!(&p.topic[..], b"interop/a");
    assert_eq!(p.qos, rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
    within("disconnect", sub.client.disconnect()).await.unwrap();
}
