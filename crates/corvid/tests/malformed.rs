//! Malformed and forbidden input: the offending connection alone is closed (MQTT 5 clients get DISCONNECT with
//! the reason first), and other clients keep working.

mod common;

use bytes::Bytes;
use common::{Raw, TestServer, connect_packet, options, pid};
use corvid::protocol::{ConnAck, ConnAckProperties, Packet, Publish, QoS};
use corvid::{ProtocolVersion, ReasonCode};

/// A connected subscriber and publisher that check the broker still routes for them.
struct Bystander {
    sub: Raw,
    publisher: Raw,
    n: u32,
}

impl Bystander {
    async fn new(t: &TestServer) -> Self {
        let mut sub = Raw::v5(t.addr, "bystander-sub").await;
        sub.subscribe("bystander", QoS::AtLeastOnce).await;
        let publisher = Raw::v311(t.addr, "bystander-pub").await;
        let mut b = Self { sub, publisher, n: 0 };
        b.check().await;
        b
    }

    async fn check(&mut self) {
        self.n += 1;
        let payload = self.n.to_string();
        self.publisher.publish("bystander", payload.as_bytes(), QoS::AtLeastOnce).await;
        let p = self.sub.recv_publish_ack().await;
        assert_eq!(p.payload, Bytes::from(payload));
    }
}

/// Sends `bytes` on a fresh connection of `version` and returns what came back before the close.
async fn offend(t: &TestServer, version: ProtocolVersion, bytes: &[u8]) -> Vec<Packet> {
    let mut c = Raw::connect_with(t.addr, connect_packet(version, "offender")).await.0;
    c.send_bytes(bytes).await;
    c.expect_closed().await
}

fn disconnect_code(got: &[Packet]) -> Option<ReasonCode> {
    match got {
        [Packet::Disconnect(d)] => Some(d.reason_code),
        _ => None,
    }
}

/// PUBLISH QoS 3 to "a", packet identifier 1, empty properties (MQTT 5 layout).
const PUBLISH_QOS3_V5: &[u8] = &[0x36, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, 0x00];
/// SUBSCRIBE whose fixed-header flags are 0 instead of 2 (MQTT 5 layout).
const SUBSCRIBE_BAD_FLAGS_V5: &[u8] = &[0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x01];

#[tokio::test]
async fn publish_with_qos_3_v5() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let got = offend(&t, ProtocolVersion::V5, PUBLISH_QOS3_V5).await;
    assert_eq!(disconnect_code(&got), Some(ReasonCode::MalformedPacket), "{got:?}");
    b.check().await;
}

#[tokio::test]
async fn subscribe_with_wrong_flags_v5() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let got = offend(&t, ProtocolVersion::V5, SUBSCRIBE_BAD_FLAGS_V5).await;
    assert_eq!(disconnect_code(&got), Some(ReasonCode::MalformedPacket), "{got:?}");
    b.check().await;
}

#[tokio::test]
async fn malformed_v311_is_closed_without_disconnect() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    // SUBSCRIBE with flags 0: packet id 1, topic "a", QoS 1.
    let got = offend(&t, ProtocolVersion::V3_1_1, &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]).await;
    assert!(got.is_empty(), "{got:?}");
    // PUBLISH QoS 3.
    let got = offend(&t, ProtocolVersion::V3_1_1, &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]).await;
    assert!(got.is_empty(), "{got:?}");
    b.check().await;
}

#[tokio::test]
async fn packet_above_maximum_size_is_0x95() {
    let t = TestServer::start(options().with_max_packet_size(1024)).await;
    let mut b = Bystander::new(&t).await;
    let mut c = Raw::v5(t.addr, "big").await;
    let mut p = Publish::new(common::topic("big"), Bytes::from(vec![0u8; 2000]), QoS::AtLeastOnce);
    p.packet_id = Some(pid(1));
    c.send(&Packet::Publish(p)).await;
    c.expect_disconnect(ReasonCode::PacketTooLarge).await;
    b.check().await;
}

#[tokio::test]
async fn oversized_remaining_length_is_malformed() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let got = offend(&t, ProtocolVersion::V5, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    assert_eq!(disconnect_code(&got), Some(ReasonCode::MalformedPacket), "{got:?}");
    b.check().await;
}

#[tokio::test]
async fn invalid_utf8_topic_is_malformed() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    // PUBLISH QoS 0, topic of two bytes 0xC3 0x28 (invalid UTF-8), no properties, payload "x".
    let got = offend(&t, ProtocolVersion::V5, &[0x30, 0x06, 0x00, 0x02, 0xC3, 0x28, 0x00, b'x']).await;
    assert_eq!(disconnect_code(&got), Some(ReasonCode::MalformedPacket), "{got:?}");
    b.check().await;
}

#[tokio::test]
async fn wildcard_in_publish_topic_closes_the_connection() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    // PUBLISH QoS 0 to "a/#".
    let got = offend(&t, ProtocolVersion::V5, &[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'#', 0x00, b'x']).await;
    let code = disconnect_code(&got).expect("DISCONNECT before close");
    assert!(code.is_error(), "{code:?}");
    b.check().await;
}

#[tokio::test]
async fn server_only_packet_from_client_is_a_protocol_error() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let mut c = Raw::v5(t.addr, "confused").await;
    c.send(&Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    }))
    .await;
    c.expect_disconnect(ReasonCode::ProtocolError).await;
    b.check().await;
}

#[tokio::test]
async fn garbage_instead_of_connect_is_closed() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let mut c = Raw::open(t.addr, ProtocolVersion::V5).await;
    c.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    c.expect_closed().await;
    b.check().await;
}

#[tokio::test]
async fn malformed_packet_after_valid_ones_in_one_write() {
    let t = TestServer::default().await;
    let mut b = Bystander::new(&t).await;
    let mut c = Raw::v5(t.addr, "mixed").await;
    // A valid PINGREQ followed by a PUBLISH with QoS 3, in one segment: PINGRESP, then DISCONNECT 0x81.
    let mut bytes = vec![0xC0, 0x00];
    bytes.extend_from_slice(PUBLISH_QOS3_V5);
    c.send_bytes(&bytes).await;
    let got = c.expect_closed().await;
    assert!(matches!(got.first(), Some(Packet::PingResp)), "{got:?}");
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::MalformedPacket),
        "{got:?}"
    );
    b.check().await;
}
