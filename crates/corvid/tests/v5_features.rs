//! MQTT 5 features: topic aliases both ways, message expiry, Maximum Packet Size, request/response properties,
//! CONNACK properties and subscription identifiers.

mod common;

use bytes::Bytes;
use common::{Raw, TestServer, connect_packet, options, topic};
use corvid::protocol::{
    Packet, Publish, PublishProperties, QoS, SubscribeProperties, SubscriptionOptions, TopicName, UserProperty,
};
use corvid::{Message, ProtocolVersion, ReasonCode};
use std::time::Duration;

fn aliased(t: &str, alias: u16, payload: &'static [u8]) -> Publish {
    let name = if t.is_empty() { TopicName::alias_only() } else { topic(t) };
    let mut p = Publish::new(name, Bytes::from_static(payload), QoS::AtLeastOnce);
    p.properties.topic_alias = Some(alias);
    p
}

#[tokio::test]
async fn connack_advertises_limits() {
    let t = TestServer::start(options().with_max_inflight(7).with_max_packet_size(4096)).await;
    let (_c, ack) = Raw::connect_with(t.addr, connect_packet(ProtocolVersion::V5, "props")).await;
    assert_eq!(ack.properties.receive_maximum, Some(7));
    assert_eq!(ack.properties.maximum_packet_size, Some(4096));
    assert_eq!(ack.properties.topic_alias_maximum, Some(64));
    assert!(ack.properties.assigned_client_identifier.is_none());
}

#[tokio::test]
async fn inbound_topic_alias_is_resolved() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("alias/#", QoS::AtLeastOnce).await;
    let mut c = Raw::v5(t.addr, "aliaser").await;
    c.publish_full(aliased("alias/long/topic", 3, b"set")).await;
    c.publish_full(aliased("", 3, b"use")).await;
    // Re-map the alias to another topic.
    c.publish_full(aliased("alias/other", 3, b"remap")).await;
    c.publish_full(aliased("", 3, b"use2")).await;
    let got: Vec<(String, Bytes)> = [
        sub.recv_publish_ack().await,
        sub.recv_publish_ack().await,
        sub.recv_publish_ack().await,
        sub.recv_publish_ack().await,
    ]
    .into_iter()
    .map(|p| (p.topic.as_str().to_owned(), p.payload))
    .collect();
    assert_eq!(
        got,
        [
            ("alias/long/topic".to_owned(), Bytes::from_static(b"set")),
            ("alias/long/topic".to_owned(), Bytes::from_static(b"use")),
            ("alias/other".to_owned(), Bytes::from_static(b"remap")),
            ("alias/other".to_owned(), Bytes::from_static(b"use2")),
        ]
    );
}

#[tokio::test]
async fn topic_alias_above_maximum_is_0x94() {
    let t = TestServer::default().await;
    let mut c = Raw::v5(t.addr, "greedy").await;
    let mut p = aliased("a", 65, b"x");
    p.packet_id = Some(common::pid(1));
    c.send(&Packet::Publish(p)).await;
    c.expect_disconnect(ReasonCode::TopicAliasInvalid).await;
}

#[tokio::test]
async fn unknown_topic_alias_is_a_protocol_error() {
    let t = TestServer::default().await;
    let mut c = Raw::v5(t.addr, "forgot").await;
    let mut p = aliased("", 5, b"x");
    p.packet_id = Some(common::pid(1));
    c.send(&Packet::Publish(p)).await;
    c.expect_disconnect(ReasonCode::ProtocolError).await;
}

async fn alias_subscriber(t: &TestServer, id: &str, alias_max: u16, max_packet: Option<u32>) -> Raw {
    let mut c = connect_packet(ProtocolVersion::V5, id);
    c.properties.topic_alias_maximum = Some(alias_max);
    c.properties.maximum_packet_size = max_packet;
    let mut raw = Raw::connect_with(t.addr, c).await.0;
    raw.subscribe("out/#", QoS::AtLeastOnce).await;
    raw
}

#[tokio::test]
async fn outbound_topic_alias_established_then_used() {
    let t = TestServer::default().await;
    let mut sub = alias_subscriber(&t, "aliased", 2, None).await;
    let mut plain = alias_subscriber(&t, "plain", 0, None).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for name in ["out/a", "out/a", "out/b", "out/c", "out/a", "out/c"] {
        publisher.publish(name, name.as_bytes(), QoS::AtLeastOnce).await;
    }
    let mut aliases = std::collections::HashMap::new();
    for name in ["out/a", "out/a", "out/b", "out/c", "out/a", "out/c"] {
        let p = sub.recv_publish_ack().await;
        assert_eq!(&p.payload[..], name.as_bytes());
        match (p.topic.as_str(), p.properties.topic_alias) {
            // First use: topic and the new alias.
            (t, Some(alias)) if t == name => {
                assert!((1..=2).contains(&alias));
                assert!(aliases.insert(alias, name).is_none(), "alias reused");
            }
            // Later: empty topic and a known alias.
            ("", Some(alias)) => assert_eq!(aliases.get(&alias), Some(&name)),
            // Out of aliases: the topic alone.
            (t, None) => {
                assert_eq!(t, name);
                assert_eq!(aliases.len(), 2);
            }
            other => panic!("unexpected topic/alias {other:?} for {name}"),
        }
    }
    assert_eq!(aliases.len(), 2);
    for _ in 0..6 {
        let p = plain.recv_publish_ack().await;
        assert!(p.properties.topic_alias.is_none());
        assert!(!p.topic.is_empty());
    }
}

#[tokio::test]
async fn maximum_packet_size_outbound_skips_large_messages() {
    let t = TestServer::default().await;
    let mut small = alias_subscriber(&t, "small", 0, Some(100)).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    let dropped = t.server.stats().publish_dropped;
    publisher.publish("out/x", &[b'L'; 500], QoS::AtLeastOnce).await;
    publisher.publish("out/x", b"small", QoS::AtLeastOnce).await;
    let p = small.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"small");
    small.expect_silence().await;
    assert_eq!(t.server.stats().publish_dropped, dropped + 1);
}

#[tokio::test]
async fn skipped_large_message_does_not_consume_a_topic_alias() {
    let t = TestServer::default().await;
    let mut sub = alias_subscriber(&t, "small-aliased", 4, Some(100)).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("out/big", &[b'L'; 500], QoS::AtLeastOnce).await;
    publisher.publish("out/big", b"small", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"small");
    // The client never saw the big message, so the topic must be named here.
    assert_eq!(p.topic.as_str(), "out/big", "alias used before it was established");
}

#[tokio::test]
async fn message_expiry_drops_queued_messages_and_counts_down() {
    let t = TestServer::default().await;
    let (mut sub, _) = Raw::v5_session(t.addr, "exp", true, Some(60)).await;
    sub.subscribe("exp", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    t.wait_offline("exp").await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for (payload, expiry) in [(&b"short"[..], 1), (b"long", 60)] {
        let mut p = Publish::new(topic("exp"), Bytes::copy_from_slice(payload), QoS::AtLeastOnce);
        p.properties.message_expiry_interval = Some(expiry);
        publisher.publish_full(p).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut sub, present) = Raw::v5_session(t.addr, "exp", false, Some(60)).await;
    assert!(present);
    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"long");
    let left = p.properties.message_expiry_interval.expect("expiry interval sent");
    assert!((40..=58).contains(&left), "expiry interval counts down: {left}");
    sub.expect_silence().await;
}

#[tokio::test]
async fn live_message_keeps_its_expiry_interval() {
    let t = TestServer::default().await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("live", QoS::AtMostOnce).await;
    let props = PublishProperties { message_expiry_interval: Some(30), ..PublishProperties::default() };
    let mut m = Message::new(topic("live"), "m", QoS::AtMostOnce, false);
    m.properties = props.into();
    t.server.publish(m).await;
    let p = sub.recv_publish().await;
    let left = p.properties.message_expiry_interval;
    assert!(matches!(left, Some(29..=30)), "{left:?}");
}

#[tokio::test]
async fn request_response_properties_pass_through() {
    let t = TestServer::default().await;
    let mut v5 = Raw::v5(t.addr, "v5sub").await;
    v5.subscribe("req", QoS::AtLeastOnce).await;
    let mut v3 = Raw::v311(t.addr, "v3sub").await;
    v3.subscribe("req", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    let mut p = Publish::new(topic("req"), Bytes::from_static(b"{}"), QoS::AtLeastOnce);
    p.properties = PublishProperties {
        response_topic: Some("resp/1".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        content_type: Some("application/json".into()),
        payload_format_indicator: Some(true),
        user_properties: vec![UserProperty::new("a", "1"), UserProperty::new("b", "2")],
        ..PublishProperties::default()
    }
    .into();
    let sent = p.properties.clone();
    publisher.publish_full(p).await;
    let got = v5.recv_publish_ack().await;
    assert_eq!(got.properties, sent);
    let got = v3.recv_publish_ack().await;
    assert_eq!(&got.payload[..], b"{}");
    assert!(got.properties.is_empty());
}

#[tokio::test]
async fn each_delivery_carries_its_own_properties_only() {
    // Deliveries with properties of their own (here a topic alias each) share a box per thread: a message with
    // properties, then one without, then one with others, must each arrive with exactly theirs.
    let t = TestServer::default().await;
    let mut sub = alias_subscriber(&t, "aliased", 8, None).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    let with = |content: &str, user: &str| {
        let mut p = Publish::new(topic("out/x"), Bytes::from_static(b"p"), QoS::AtLeastOnce);
        p.properties.content_type = Some(content.into());
        p.properties.user_properties.push(UserProperty::new("k", user));
        p
    };
    publisher.publish_full(with("text/plain", "1")).await;
    publisher.publish("out/x", b"bare", QoS::AtLeastOnce).await;
    publisher.publish_full(with("application/json", "2")).await;
    let first = sub.recv_publish_ack().await;
    assert_eq!(first.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(first.properties.user_properties, vec![UserProperty::new("k", "1")]);
    assert!(first.properties.topic_alias.is_some());
    let bare = sub.recv_publish_ack().await;
    assert_eq!(&bare.payload[..], b"bare");
    assert_eq!(bare.properties.content_type, None);
    assert!(bare.properties.user_properties.is_empty());
    assert_eq!(bare.properties.topic_alias, first.properties.topic_alias);
    let last = sub.recv_publish_ack().await;
    assert_eq!(last.properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(last.properties.user_properties, vec![UserProperty::new("k", "2")]);
}

#[tokio::test]
async fn subscription_identifier_on_retained_messages() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    let mut p = Publish::new(topic("sid/r"), Bytes::from_static(b"r"), QoS::AtLeastOnce);
    p.retain = true;
    publisher.publish_full(p).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    let props = SubscribeProperties { subscription_identifier: Some(268_435_455), ..SubscribeProperties::default() };
    sub.subscribe_with(&[("sid/+", SubscriptionOptions::qos(QoS::AtLeastOnce))], props).await;
    let p = sub.recv_publish_ack().await;
    assert!(p.retain);
    assert_eq!(p.properties.subscription_identifiers, [268_435_455]);
}

#[tokio::test]
async fn disconnect_client_sends_the_reason() {
    let t = TestServer::default().await;
    let mut c = Raw::v5(t.addr, "kicked").await;
    assert!(t.server.disconnect_client("kicked", ReasonCode::AdministrativeAction));
    c.expect_disconnect(ReasonCode::AdministrativeAction).await;
    assert!(!t.server.disconnect_client("nobody", ReasonCode::AdministrativeAction));
}
