//! Quality of service: the QoS 0, 1 and 2 flows in both directions, exactly-once for inbound QoS 2, the delivered
//! QoS, and the outbound flow control (Receive Maximum, the server's inflight limit).

mod common;

use common::{Raw, TestServer, V4Client, connect_packet, options, payloads, pid, publish_packet, qos, topic};
use corvid::protocol::{Packet, PubResponse, Publish, QoS};
use corvid::{Message, ProtocolVersion, ReasonCode};

#[tokio::test]
async fn each_qos_flows_both_ways() {
    let t = TestServer::default().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut sub = Raw::connect_with(t.addr, connect_packet(version, "sub")).await.0;
        let mut publisher = Raw::connect_with(t.addr, connect_packet(version, "pub")).await.0;
        for n in 0..3 {
            let q = qos(n);
            let f = format!("flow/{n}");
            sub.subscribe(&f, q).await;
            // publish_full asserts PUBACK / PUBREC + PUBCOMP for the inbound side.
            publisher.publish(&f, format!("m{n}").as_bytes(), q).await;
            let p = sub.recv_publish().await;
            assert_eq!(p.qos, q, "{version}");
            assert_eq!(p.topic.as_str(), f);
            assert_eq!(p.packet_id.is_some(), n > 0);
            assert!(!p.dup);
            // ack asserts PUBREL for QoS 2.
            sub.ack(&p).await;
        }
        // After the flows are complete nothing is resent.
        sub.expect_silence().await;
        publisher.disconnect().await;
        sub.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_qos_flows() {
    let t = TestServer::default().await;
    let mut sub = V4Client::connect(t.addr, "rq-sub").await;
    sub.subscribe("rq/#", rumqttc::QoS::ExactlyOnce).await;
    let publisher = V4Client::connect(t.addr, "rq-pub").await;
    for (i, q) in
        [rumqttc::QoS::AtMostOnce, rumqttc::QoS::AtLeastOnce, rumqttc::QoS::ExactlyOnce].into_iter().enumerate()
    {
        publisher.client.publish(format!("rq/{i}"), q, false, vec![i as u8; 3]).await.unwrap();
        let p = sub.next_publish().await;
        assert_eq!(p.topic, format!("rq/{i}"));
        assert_eq!(p.qos, q);
        assert_eq!(&p.payload[..], &[i as u8; 3]);
    }
}

#[tokio::test]
async fn delivered_qos_is_min_of_published_and_granted() {
    let t = TestServer::default().await;
    let mut subs = Vec::new();
    for granted in 0..3 {
        let mut s = Raw::v5(t.addr, &format!("granted-{granted}")).await;
        s.subscribe("min/qos", qos(granted)).await;
        subs.push(s);
    }
    let mut publisher = Raw::v311(t.addr, "pub").await;
    for published in 0..3u8 {
        publisher.publish("min/qos", &[published], qos(published)).await;
        for (granted, s) in subs.iter_mut().enumerate() {
            let p = s.recv_publish_ack().await;
            assert_eq!(&p.payload[..], &[published]);
            assert_eq!(p.qos.as_u8(), published.min(granted as u8), "published {published}, granted {granted}");
        }
    }
}

#[tokio::test]
async fn inbound_qos2_is_delivered_exactly_once() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("once", QoS::ExactlyOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    let first = publish_packet("once", b"first", QoS::ExactlyOnce, 7);
    publisher.send(&Packet::Publish(first.clone())).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubResponse::new(pid(7))));
    // The same message again, as a resend before PUBREL.
    let mut resend = first.clone();
    resend.dup = true;
    publisher.send(&Packet::Publish(resend)).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubResponse::new(pid(7))));
    publisher.send(&Packet::PubRel(PubResponse::new(pid(7)))).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubResponse::new(pid(7))));

    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"first");
    sub.expect_silence().await;

    // Identifier 7 is free again: a new PUBLISH with it is a new message.
    publisher.publish_full(publish_packet("once", b"second", QoS::ExactlyOnce, 7)).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"second");
    sub.expect_silence().await;
}

#[tokio::test]
async fn pubrel_for_unknown_identifier_v5_gets_pubcomp_0x92() {
    let t = TestServer::default().await;
    let mut c = Raw::v5(t.addr, "c").await;
    c.send(&Packet::PubRel(PubResponse::new(pid(42)))).await;
    match c.recv().await {
        Packet::PubComp(comp) => {
            assert_eq!(comp.packet_id, pid(42));
            assert_eq!(comp.reason_code, ReasonCode::PacketIdentifierNotFound);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

#[tokio::test]
async fn qos1_messages_keep_their_order() {
    let t = TestServer::default().await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("order", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for i in 0..200u32 {
        let p = publish_packet("order", &i.to_be_bytes(), QoS::AtLeastOnce, (i + 1) as u16);
        publisher.send(&Packet::Publish(p)).await;
    }
    let mut acks = 0;
    while acks < 200 {
        match publisher.recv().await {
            Packet::PubAck(_) => acks += 1,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    for i in 0..200u32 {
        let p = sub.recv_publish_ack().await;
        assert_eq!(&p.payload[..], &i.to_be_bytes());
    }
}

async fn publish_n(t: &TestServer, t_name: &str, n: usize) {
    for i in 0..n {
        t.server.publish(Message::new(topic(t_name), format!("{i}"), QoS::AtLeastOnce, false)).await;
    }
}

#[tokio::test]
async fn receive_maximum_bounds_unacknowledged_outbound_messages() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V5, "slow");
    c.properties.receive_maximum = Some(2);
    let (mut sub, _) = Raw::connect_with(t.addr, c).await;
    sub.subscribe("rm", QoS::AtLeastOnce).await;
    publish_n(&t, "rm", 5).await;

    let a = sub.recv_publish().await;
    let b = sub.recv_publish().await;
    assert_eq!(payloads(&[a.clone(), b.clone()]), ["0", "1"]);
    sub.expect_silence().await;

    // Each acknowledgement releases one more.
    sub.ack(&a).await;
    let c3 = sub.recv_publish().await;
    assert_eq!(&c3.payload[..], b"2");
    sub.expect_silence().await;

    sub.ack(&b).await;
    sub.ack(&c3).await;
    let rest = [sub.recv_publish_ack().await, sub.recv_publish_ack().await];
    assert_eq!(payloads(&rest), ["3", "4"]);
    sub.expect_silence().await;
}

#[tokio::test]
async fn receive_maximum_does_not_hold_back_qos0() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V5, "slow");
    c.properties.receive_maximum = Some(1);
    let (mut sub, _) = Raw::connect_with(t.addr, c).await;
    sub.subscribe("rm0/#", QoS::AtLeastOnce).await;
    publish_n(&t, "rm0/one", 2).await;
    let first = sub.recv_publish().await;
    assert_eq!(first.qos, QoS::AtLeastOnce);
    sub.expect_silence().await;
    sub.ack(&first).await;
    let second = sub.recv_publish_ack().await;
    assert_eq!(&second.payload[..], b"1");
    t.server.publish(Message::new(topic("rm0/zero"), "z", QoS::AtMostOnce, false)).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"z");
}

#[tokio::test]
async fn server_max_inflight_bounds_3_1_1_clients() {
    let t = TestServer::start(options().with_max_inflight(3)).await;
    let mut sub = Raw::v311(t.addr, "slow311").await;
    sub.subscribe("mi", QoS::ExactlyOnce).await;
    for i in 0..6 {
        t.server.publish(Message::new(topic("mi"), format!("{i}"), QoS::ExactlyOnce, false)).await;
    }
    let mut got: Vec<Publish> = Vec::new();
    for _ in 0..3 {
        got.push(sub.recv_publish().await);
    }
    sub.expect_silence().await;
    for p in &got {
        sub.ack(p).await;
    }
    for _ in 0..3 {
        got.push(sub.recv_publish_ack().await);
    }
    assert_eq!(payloads(&got), ["0", "1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn too_many_unreleased_inbound_qos2_is_0x93() {
    let t = TestServer::start(options().with_max_inflight(2)).await;
    let mut c = Raw::v5(t.addr, "flooder").await;
    for id in 1..=2 {
        c.send(&Packet::Publish(publish_packet("flood", b"x", QoS::ExactlyOnce, id))).await;
        assert_eq!(c.recv().await, Packet::PubRec(PubResponse::new(pid(id))));
    }
    c.send(&Packet::Publish(publish_packet("flood", b"x", QoS::ExactlyOnce, 3))).await;
    c.expect_disconnect(ReasonCode::ReceiveMaximumExceeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_hold_up_others() {
    let t = TestServer::start(options().with_max_pending_messages(100, corvid::OverflowPolicy::DropOldest)).await;
    // Subscribes and then never reads its socket again.
    let mut stalled = Raw::v311(t.addr, "stalled").await;
    stalled.subscribe("bulk", QoS::AtMostOnce).await;
    let mut healthy = Raw::v311(t.addr, "healthy").await;
    healthy.subscribe("bulk", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    let payload = vec![b'p'; 4096];
    let reader = tokio::spawn(async move {
        for _ in 0..1000 {
            healthy.recv_publish_ack().await;
        }
        healthy
    });
    for _ in 0..1000 {
        publisher.publish("bulk", &payload, QoS::AtLeastOnce).await;
    }
    let mut healthy = common::within("healthy subscriber", reader).await.unwrap();
    healthy.expect_silence().await;
    drop(stalled);
}
