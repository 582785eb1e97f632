//! Will messages: when they are published and when not, their QoS, retain flag, properties and delay.

mod common;

use bytes::Bytes;
use common::{Raw, TestServer, connect_packet, topic};
use corvid::protocol::{Connect, Disconnect, Packet, QoS, UserProperty, Will, WillProperties};
use corvid::{ProtocolVersion, ReasonCode};
use std::time::{Duration, Instant};

fn with_will(version: ProtocolVersion, id: &str, q: QoS, retain: bool) -> Connect {
    let mut c = connect_packet(version, id);
    c.will = Some(Will {
        topic: topic(&format!("will/{id}")),
        payload: Bytes::from(format!("{id} is gone")),
        qos: q,
        retain,
        properties: WillProperties::default(),
    });
    c
}

async fn watcher(t: &TestServer) -> Raw {
    let mut w = Raw::v5(t.addr, "watcher").await;
    w.subscribe("will/#", QoS::ExactlyOnce).await;
    w
}

async fn expect_will(w: &mut Raw, id: &str) {
    let p = w.recv_publish_ack().await;
    assert_eq!(p.topic.as_str(), format!("will/{id}"));
    assert_eq!(p.payload, Bytes::from(format!("{id} is gone")));
}

#[tokio::test]
async fn will_on_socket_loss() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("lost-{}", version.level());
        let (c, _) = Raw::connect_with(t.addr, with_will(version, &id, QoS::AtLeastOnce, false)).await;
        drop(c);
        expect_will(&mut w, &id).await;
    }
}

#[tokio::test]
async fn no_will_after_normal_disconnect() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (c, _) = Raw::connect_with(t.addr, with_will(version, "polite", QoS::AtLeastOnce, false)).await;
        c.disconnect().await;
        t.wait_offline("polite").await;
    }
    w.expect_silence().await;
}

#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_it() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (c, _) = Raw::connect_with(t.addr, with_will(ProtocolVersion::V5, "w04", QoS::AtMostOnce, false)).await;
    c.disconnect_with(Disconnect::new(ReasonCode::DisconnectWithWillMessage)).await;
    expect_will(&mut w, "w04").await;
}

#[tokio::test]
async fn will_on_keep_alive_timeout() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let mut c = with_will(ProtocolVersion::V5, "sleepy", QoS::AtLeastOnce, false);
    c.keep_alive = 1;
    let (mut c, _) = Raw::connect_with(t.addr, c).await;
    c.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    expect_will(&mut w, "sleepy").await;
}

#[tokio::test]
async fn will_on_protocol_error() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (mut c, _) =
        Raw::connect_with(t.addr, with_will(ProtocolVersion::V3_1_1, "broken", QoS::AtLeastOnce, false)).await;
    // PUBLISH with QoS 3.
    c.send_bytes(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]).await;
    c.expect_closed().await;
    expect_will(&mut w, "broken").await;
}

#[tokio::test]
async fn will_on_takeover() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("taken-{}", version.level());
        let (mut first, _) = Raw::connect_with(t.addr, with_will(version, &id, QoS::AtLeastOnce, false)).await;
        let _second = Raw::connect_with(t.addr, connect_packet(version, &id)).await;
        first.expect_closed().await;
        expect_will(&mut w, &id).await;
    }
}

#[tokio::test]
async fn will_qos_and_retain_are_honoured() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (c, _) = Raw::connect_with(t.addr, with_will(ProtocolVersion::V3_1_1, "kept", QoS::ExactlyOnce, true)).await;
    drop(c);
    let p = w.recv_publish_ack().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert!(!p.retain, "a live delivery has retain 0");
    let stored = t.server.retained_message("will/kept").expect("will retained");
    assert_eq!(stored.qos, QoS::ExactlyOnce);

    let mut late = Raw::v311(t.addr, "late").await;
    late.subscribe("will/kept", QoS::ExactlyOnce).await;
    let p = late.recv_publish_ack().await;
    assert!(p.retain);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"kept is gone");
}

#[tokio::test]
async fn v5_will_properties_pass_through() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let mut c = with_will(ProtocolVersion::V5, "props", QoS::AtLeastOnce, false);
    let will = c.will.as_mut().unwrap();
    will.properties.content_type = Some("text/plain".into());
    will.properties.response_topic = Some("reply/here".into());
    will.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    will.properties.payload_format_indicator = Some(true);
    will.properties.user_properties = vec![UserProperty::new("k", "v"), UserProperty::new("k", "w")];
    let (c, _) = Raw::connect_with(t.addr, c).await;
    drop(c);
    let p = w.recv_publish_ack().await;
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(p.properties.user_properties, [UserProperty::new("k", "v"), UserProperty::new("k", "w")]);
}

fn delayed(id: &str, delay: u32, expiry: u32) -> Connect {
    let mut c = with_will(ProtocolVersion::V5, id, QoS::AtLeastOnce, false);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(delay);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

#[tokio::test]
async fn will_delay_publishes_after_the_delay() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (c, _) = Raw::connect_with(t.addr, delayed("delayed", 1, 60)).await;
    let lost = Instant::now();
    drop(c);
    expect_will(&mut w, "delayed").await;
    assert!(lost.elapsed() >= Duration::from_millis(900), "published before the will delay: {:?}", lost.elapsed());
}

#[tokio::test]
async fn will_delay_is_cut_short_by_session_expiry() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    // The session ends after 1 s: the will is due then, not after an hour.
    let (c, _) = Raw::connect_with(t.addr, delayed("expiring", 3600, 1)).await;
    drop(c);
    expect_will(&mut w, "expiring").await;
}

#[tokio::test]
async fn will_delay_cancelled_by_reconnect() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (c, _) = Raw::connect_with(t.addr, delayed("back", 2, 60)).await;
    drop(c);
    t.wait_offline("back").await;
    let mut again = connect_packet(ProtocolVersion::V5, "back");
    again.clean_start = false;
    again.properties.session_expiry_interval = Some(60);
    let (mut back, ack) = Raw::connect_with(t.addr, again).await;
    assert!(ack.session_present);
    // Wait past the delay (and a sweep): no will.
    match w.try_recv(Duration::from_millis(3500)).await {
        None => {}
        Some(Packet::Publish(p)) => panic!("will published after reconnect: {p:?}"),
        Some(other) => panic!("unexpected {other:?}"),
    }
    back.ping().await;
}

#[tokio::test]
async fn will_delay_not_published_when_session_is_taken_over() {
    let t = TestServer::default().await;
    let mut w = watcher(&t).await;
    let (mut first, _) = Raw::connect_with(t.addr, delayed("handover", 1, 60)).await;
    let mut again = connect_packet(ProtocolVersion::V5, "handover");
    again.clean_start = false;
    again.properties.session_expiry_interval = Some(60);
    let (mut second, ack) = Raw::connect_with(t.addr, again).await;
    assert!(ack.session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    match w.try_recv(Duration::from_millis(2500)).await {
        None => {}
        Some(other) => panic!("will published although the session continues: {other:?}"),
    }
    second.ping().await;
}
