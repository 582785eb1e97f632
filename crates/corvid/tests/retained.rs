//! Retained messages, MQTT 5 retain handling and retain-as-published, and No Local.

mod common;

use bytes::Bytes;
use common::{Raw, TestServer, payloads};
use corvid::protocol::{Publish, QoS, RetainHandling, SubscribeProperties, SubscriptionOptions};

fn retained(t: &str, payload: &'static [u8], q: QoS) -> Publish {
    let mut p = Publish::new(common::topic(t), Bytes::from_static(payload), q);
    p.retain = true;
    p
}

fn opts(q: QoS, handling: RetainHandling, rap: bool, no_local: bool) -> SubscriptionOptions {
    SubscriptionOptions { qos: q, no_local, retain_as_published: rap, retain_handling: handling }
}

#[tokio::test]
async fn retained_message_is_stored_and_sent_on_subscribe() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish_full(retained("r/a", b"A", QoS::AtLeastOnce)).await;
    publisher.publish_full(retained("r/b", b"B", QoS::ExactlyOnce)).await;
    publisher.publish("r/c", b"not retained", QoS::AtLeastOnce).await;

    let stored = t.server.retained_message("r/a").expect("stored");
    assert_eq!(&stored.payload[..], b"A");
    assert!(t.server.retained_message("r/c").is_none());

    let mut sub = Raw::v311(t.addr, "late").await;
    sub.subscribe("r/#", QoS::AtLeastOnce).await;
    let mut got = [sub.recv_publish_ack().await, sub.recv_publish_ack().await];
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert_eq!(payloads(&got), ["A", "B"]);
    assert!(got.iter().all(|p| p.retain), "sent with the retain flag");
    // min(published QoS, granted QoS).
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::AtLeastOnce);
    sub.expect_silence().await;
}

#[tokio::test]
async fn empty_retained_payload_deletes() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish_full(retained("del", b"x", QoS::AtMostOnce)).await;
    publisher.ping().await;
    assert!(t.server.retained_message("del").is_some());
    publisher.publish_full(retained("del", b"", QoS::AtLeastOnce)).await;
    assert!(t.server.retained_message("del").is_none());
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("del", QoS::AtLeastOnce).await;
    sub.expect_silence().await;
}

#[tokio::test]
async fn newer_retained_message_replaces_older() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish_full(retained("rep", b"old", QoS::AtLeastOnce)).await;
    publisher.publish_full(retained("rep", b"new", QoS::AtLeastOnce)).await;
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("rep", QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"new");
    sub.expect_silence().await;
}

#[tokio::test]
async fn retain_handling_0_1_2() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish_full(retained("rh", b"kept", QoS::AtLeastOnce)).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    let none = SubscribeProperties::default();

    // 0: at every subscribe.
    for _ in 0..2 {
        let o = opts(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe, false, false);
        sub.subscribe_with(&[("rh", o)], none.clone()).await;
        let p = sub.recv_publish_ack().await;
        assert!(p.retain);
        sub.expect_silence().await;
    }
    sub.unsubscribe(&["rh"]).await;

    // 1: only when the subscription is new.
    let o = opts(QoS::AtLeastOnce, RetainHandling::SendIfNew, false, false);
    sub.subscribe_with(&[("rh", o)], none.clone()).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"kept");
    sub.subscribe_with(&[("rh", o)], none.clone()).await;
    sub.expect_silence().await;

    // 2: never.
    let mut other = Raw::v5(t.addr, "other").await;
    let o = opts(QoS::AtLeastOnce, RetainHandling::DoNotSend, false, false);
    other.subscribe_with(&[("rh", o)], none.clone()).await;
    other.expect_silence().await;
}

#[tokio::test]
async fn retain_as_published_for_live_messages() {
    let t = TestServer::default().await;
    let none = SubscribeProperties::default();
    let mut keep = Raw::v5(t.addr, "keep").await;
    let o = opts(QoS::AtLeastOnce, RetainHandling::DoNotSend, true, false);
    keep.subscribe_with(&[("rap", o)], none.clone()).await;
    let mut clear = Raw::v5(t.addr, "clear").await;
    let o = opts(QoS::AtLeastOnce, RetainHandling::DoNotSend, false, false);
    clear.subscribe_with(&[("rap", o)], none.clone()).await;
    let mut old = Raw::v311(t.addr, "old").await;
    old.subscribe("rap", QoS::AtLeastOnce).await;

    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish_full(retained("rap", b"r", QoS::AtLeastOnce)).await;
    publisher.publish("rap", b"plain", QoS::AtLeastOnce).await;

    let k = [keep.recv_publish_ack().await, keep.recv_publish_ack().await];
    assert!(k[0].retain, "retain as published keeps the flag");
    assert!(!k[1].retain);
    let c = [clear.recv_publish_ack().await, clear.recv_publish_ack().await];
    assert!(!c[0].retain && !c[1].retain, "live messages have retain 0");
    let o = [old.recv_publish_ack().await, old.recv_publish_ack().await];
    assert!(!o[0].retain && !o[1].retain, "3.1.1 live messages have retain 0");
}

#[tokio::test]
async fn no_local_prevents_receiving_own_messages() {
    let t = TestServer::default().await;
    let none = SubscribeProperties::default();
    let mut me = Raw::v5(t.addr, "me").await;
    let o = opts(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe, false, true);
    me.subscribe_with(&[("chat", o)], none.clone()).await;
    let mut echo = Raw::v5(t.addr, "echo").await;
    echo.subscribe("chat", QoS::AtLeastOnce).await;

    me.publish("chat", b"from me", QoS::AtLeastOnce).await;
    assert_eq!(&echo.recv_publish_ack().await.payload[..], b"from me");
    echo.publish("chat", b"from echo", QoS::AtLeastOnce).await;
    // echo has no No Local: it hears itself.
    assert_eq!(&echo.recv_publish_ack().await.payload[..], b"from echo");
    let p = me.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"from echo");
    me.expect_silence().await;
}

#[tokio::test]
async fn retained_messages_not_sent_to_shared_subscriptions() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish_full(retained("sh/r", b"r", QoS::AtLeastOnce)).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("$share/g/sh/r", QoS::AtLeastOnce).await;
    sub.expect_silence().await;
}

#[tokio::test]
async fn retained_message_published_by_the_server() {
    let t = TestServer::default().await;
    t.server.publish(corvid::Message::new(common::topic("srv/r"), "from process", QoS::ExactlyOnce, true)).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("srv/+", QoS::ExactlyOnce).await;
    let p = sub.recv_publish_ack().await;
    assert!(p.retain);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"from process");
    assert_eq!(t.server.retained_messages().len(), 1);
}

#[tokio::test]
async fn expired_retained_message_is_not_sent() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    let mut p = retained("exp/short", b"short", QoS::AtLeastOnce);
    p.properties.message_expiry_interval = Some(1);
    publisher.publish_full(p).await;
    let mut p = retained("exp/long", b"long", QoS::AtLeastOnce);
    p.properties.message_expiry_interval = Some(100);
    publisher.publish_full(p).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("exp/#", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"long");
    assert!(matches!(p.properties.message_expiry_interval, Some(90..=99)));
    sub.expect_silence().await;
}
