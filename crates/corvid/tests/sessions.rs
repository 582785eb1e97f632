//! Sessions: 3.1.1 clean session, MQTT 5 clean start and session expiry, queueing while away, resending
//! unacknowledged messages, and the bounded per-session queue.

mod common;

use common::{Raw, TestServer, options, payloads, pid, publish_packet, topic};
use corvid::protocol::{Disconnect, Packet, PubResponse, Publish, QoS};
use corvid::{Message, OverflowPolicy, ReasonCode};

#[tokio::test]
async fn v311_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2() {
    let t = TestServer::default().await;
    let (mut sub, present) = Raw::v311_session(t.addr, "away", false).await;
    assert!(!present);
    sub.subscribe("q/1", QoS::AtLeastOnce).await;
    sub.subscribe("q/2", QoS::ExactlyOnce).await;
    sub.subscribe("q/0", QoS::AtMostOnce).await;
    sub.disconnect().await;
    t.wait_offline("away").await;

    let mut publisher = Raw::v311(t.addr, "pub").await;
    for i in 0..6 {
        let (t_name, q) = match i % 3 {
            0 => ("q/1", QoS::AtLeastOnce),
            1 => ("q/2", QoS::ExactlyOnce),
            _ => ("q/0", QoS::AtMostOnce),
        };
        publisher.publish(t_name, format!("{i}").as_bytes(), q).await;
    }

    let (mut sub, present) = Raw::v311_session(t.addr, "away", false).await;
    assert!(present, "session present after reconnecting with clean session 0");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(sub.recv_publish_ack().await);
    }
    // QoS 0 messages are not queued for an offline client; the others arrive in order.
    assert_eq!(payloads(&got), ["0", "1", "3", "4"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
    sub.expect_silence().await;

    // Subscriptions survived: live messages still arrive.
    publisher.publish("q/1", b"live", QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"live");
}

#[tokio::test]
async fn v311_clean_session_has_nothing_after_reconnect() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v311_session(t.addr, "clean", false).await;
    sub.subscribe("c", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    t.wait_offline("clean").await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("c", b"queued", QoS::AtLeastOnce).await;

    let (mut sub, present) = Raw::v311_session(t.addr, "clean", true).await;
    assert!(!present);
    sub.expect_silence().await;
    // The old subscription is gone too.
    publisher.publish("c", b"after", QoS::AtLeastOnce).await;
    sub.expect_silence().await;
    sub.disconnect().await;
    t.wait_offline("clean").await;

    // A clean session leaves nothing behind either.
    let (_sub, present) = Raw::v311_session(t.addr, "clean", false).await;
    assert!(!present);
}

#[tokio::test]
async fn v5_session_expiry_zero_ends_session_at_disconnect() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "e0", true, None).await;
    sub.subscribe("e0", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    t.wait_offline("e0").await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("e0", b"lost", QoS::AtLeastOnce).await;
    let (mut sub, present) = Raw::v5_session(t.addr, "e0", false, Some(60)).await;
    assert!(!present);
    sub.expect_silence().await;
}

#[tokio::test]
async fn v5_session_expiry_keeps_session_and_clean_start_discards_it() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "e60", true, Some(60)).await;
    sub.subscribe("e60", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    t.wait_offline("e60").await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("e60", b"kept", QoS::ExactlyOnce).await;

    let (mut sub, present) = Raw::v5_session(t.addr, "e60", false, Some(60)).await;
    assert!(present);
    let p = sub.recv_publish_ack().await;
    assert_eq!((&p.payload[..], p.qos), (&b"kept"[..], QoS::ExactlyOnce));
    sub.disconnect().await;
    t.wait_offline("e60").await;

    let (mut sub, present) = Raw::v5_session(t.addr, "e60", true, Some(60)).await;
    assert!(!present, "clean start discards the stored session");
    publisher.publish("e60", b"unsubscribed", QoS::AtLeastOnce).await;
    sub.expect_silence().await;
}

#[tokio::test]
async fn v5_disconnect_can_shorten_session_expiry_to_zero() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "shorten", true, Some(60)).await;
    sub.subscribe("s", QoS::AtLeastOnce).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    sub.disconnect_with(d).await;
    t.wait_offline("shorten").await;
    let (_sub, present) = Raw::v5_session(t.addr, "shorten", false, Some(60)).await;
    assert!(!present, "DISCONNECT with expiry 0 ended the session");
}

#[tokio::test]
async fn v5_disconnect_can_lengthen_a_nonzero_session_expiry() {
    let t = TestServer::default().await;
    // One second would expire while the test runs; the DISCONNECT makes it an hour.
    let (mut sub, _) = Raw::v5_session(t.addr, "lengthen", true, Some(1)).await;
    sub.subscribe("l", QoS::AtLeastOnce).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(3600);
    sub.disconnect_with(d).await;
    t.wait_offline("lengthen").await;
    let expired = t.server.stats().clients_expired;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(t.server.stats().clients_expired, expired);
    let (_sub, present) = Raw::v5_session(t.addr, "lengthen", false, Some(60)).await;
    assert!(present);
}

#[tokio::test]
async fn v5_disconnect_setting_expiry_after_zero_is_a_protocol_error() {
    let t = TestServer::default().await;
    let (mut c, _) = Raw::v5_session(t.addr, "zero", true, Some(0)).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(30);
    c.send(&Packet::Disconnect(d)).await;
    c.expect_disconnect(ReasonCode::ProtocolError).await;
}

#[tokio::test]
async fn v5_session_expires_after_its_interval() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "short", true, Some(1)).await;
    sub.subscribe("short", QoS::AtLeastOnce).await;
    let before = t.server.stats().clients_expired;
    sub.disconnect().await;
    t.wait_stats("the session to expire", |s| s.clients_expired > before).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("short", b"too late", QoS::AtLeastOnce).await;
    let (mut sub, present) = Raw::v5_session(t.addr, "short", false, Some(1)).await;
    assert!(!present);
    sub.expect_silence().await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_in_order() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v311_session(t.addr, "forgetful", false).await;
    sub.subscribe("dup", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    for i in 0..3 {
        publisher.publish("dup", format!("m{i}").as_bytes(), QoS::AtLeastOnce).await;
    }
    let mut first = Vec::new();
    for _ in 0..3 {
        let p = sub.recv_publish().await;
        assert!(!p.dup);
        first.push(p);
    }
    // No PUBACK: go away and come back.
    sub.disconnect().await;
    t.wait_offline("forgetful").await;
    let (mut sub, present) = Raw::v311_session(t.addr, "forgetful", false).await;
    assert!(present);
    for original in &first {
        let p = sub.recv_publish().await;
        assert!(p.dup, "resent with DUP: {p:?}");
        assert_eq!(p.payload, original.payload);
        assert_eq!(p.packet_id, original.packet_id);
        assert_eq!(p.qos, QoS::AtLeastOnce);
        sub.ack(&p).await;
    }
    sub.expect_silence().await;
}

#[tokio::test]
async fn unacknowledged_qos1_is_resent_after_socket_loss() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "lossy", true, Some(60)).await;
    sub.subscribe("loss", QoS::AtLeastOnce).await;
    t.server.publish(Message::new(topic("loss"), "again", QoS::AtLeastOnce, false)).await;
    let original = sub.recv_publish().await;
    drop(sub);
    t.wait_offline("lossy").await;
    let (mut sub, present) = Raw::v5_session(t.addr, "lossy", false, Some(60)).await;
    assert!(present);
    let p = sub.recv_publish_ack().await;
    assert!(p.dup);
    assert_eq!((p.packet_id, p.payload), (original.packet_id, original.payload));
}

#[tokio::test]
async fn pubrel_is_resent_after_reconnect() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v311_session(t.addr, "half", false).await;
    sub.subscribe("rel", QoS::ExactlyOnce).await;
    t.server.publish(Message::new(topic("rel"), "two", QoS::ExactlyOnce, false)).await;
    let p = sub.recv_publish().await;
    let id = p.packet_id.unwrap();
    sub.send(&Packet::PubRec(PubResponse::new(id))).await;
    assert_eq!(sub.recv().await, Packet::PubRel(PubResponse::new(id)));
    // No PUBCOMP.
    sub.disconnect().await;
    t.wait_offline("half").await;
    let (mut sub, _) = Raw::v311_session(t.addr, "half", false).await;
    assert_eq!(sub.recv().await, Packet::PubRel(PubResponse::new(id)));
    sub.send(&Packet::PubComp(PubResponse::new(id))).await;
    sub.expect_silence().await;
}

#[tokio::test]
async fn inbound_qos2_state_survives_reconnect() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("in2", QoS::ExactlyOnce).await;
    let (mut publisher, _) = Raw::v311_session(t.addr, "pub2", false).await;
    let p = publish_packet("in2", b"exactly", QoS::ExactlyOnce, 9);
    publisher.send(&Packet::Publish(p.clone())).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubResponse::new(pid(9))));
    publisher.disconnect().await;
    t.wait_offline("pub2").await;

    let (mut publisher, present) = Raw::v311_session(t.addr, "pub2", false).await;
    assert!(present);
    let mut resend = p;
    resend.dup = true;
    publisher.send(&Packet::Publish(resend)).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubResponse::new(pid(9))));
    publisher.send(&Packet::PubRel(PubResponse::new(pid(9)))).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubResponse::new(pid(9))));

    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"exactly");
    sub.expect_silence().await;
}

async fn overflow(policy: OverflowPolicy) -> (Vec<Publish>, u64) {
    let t = TestServer::start(options().with_max_pending_messages(5, policy)).await;
    let (mut sub, _) = Raw::v311_session(t.addr, "offline", false).await;
    sub.subscribe("flood", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    t.wait_offline("offline").await;
    let dropped_before = t.server.stats().publish_dropped;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    for i in 0..20 {
        publisher.publish("flood", format!("{i}").as_bytes(), QoS::AtLeastOnce).await;
    }
    let dropped = t.server.stats().publish_dropped - dropped_before;
    let (mut sub, _) = Raw::v311_session(t.addr, "offline", false).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(sub.recv_publish_ack().await);
    }
    sub.expect_silence().await;
    (got, dropped)
}

#[tokio::test]
async fn full_queue_drops_oldest() {
    let (got, dropped) = overflow(OverflowPolicy::DropOldest).await;
    assert_eq!(payloads(&got), ["15", "16", "17", "18", "19"]);
    assert_eq!(dropped, 15);
}

#[tokio::test]
async fn full_queue_drops_newest() {
    let (got, dropped) = overflow(OverflowPolicy::DropNewest).await;
    assert_eq!(payloads(&got), ["0", "1", "2", "3", "4"]);
    assert_eq!(dropped, 15);
}

#[tokio::test]
async fn takeover_resends_unacknowledged_messages() {
    let t = TestServer::default().await;
    let (mut first, _) = Raw::v311_session(t.addr, "moving", false).await;
    first.subscribe("mv", QoS::AtLeastOnce).await;
    t.server.publish(Message::new(topic("mv"), "unacked", QoS::AtLeastOnce, false)).await;
    let original = first.recv_publish().await;
    let (mut second, present) = Raw::v311_session(t.addr, "moving", false).await;
    assert!(present);
    first.expect_closed().await;
    let p = second.recv_publish_ack().await;
    assert!(p.dup);
    assert_eq!((p.packet_id, p.payload), (original.packet_id, original.payload));
    second.expect_silence().await;
}

#[tokio::test]
async fn takeover_of_a_clean_session_does_not_resume_it() {
    // MQTT-3.1.2-6: the state of a clean session must not be reused in any later session, and a v5 session with
    // expiry 0 ends with its network connection, which a takeover closes.
    let t = TestServer::default().await;
    for version in [corvid::ProtocolVersion::V3_1_1, corvid::ProtocolVersion::V5] {
        let id = format!("ephemeral-{}", version.level());
        let mut c = common::connect_packet(version, &id);
        c.clean_start = true;
        let (mut first, _) = Raw::connect_with(t.addr, c).await;
        first.subscribe("eph", QoS::AtLeastOnce).await;
        let mut c = common::connect_packet(version, &id);
        c.clean_start = false;
        c.properties.session_expiry_interval = version.is_v5().then_some(60);
        let (mut second, ack) = Raw::connect_with(t.addr, c).await;
        assert!(!ack.session_present, "{version}: a clean session was resumed");
        first.expect_closed().await;
        t.server.publish(Message::new(topic("eph"), "old subscription", QoS::AtLeastOnce, false)).await;
        second.expect_silence().await;
    }
}
