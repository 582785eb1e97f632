//! Subscriptions: wildcards, `$` topics, overlapping subscriptions, unsubscribe, shared subscriptions.

mod common;

use common::{Raw, TestServer, V4Client, payloads, topic};
use corvid::protocol::{Publish, QoS, SubscribeProperties, SubscriptionOptions};
use corvid::{Message, ReasonCode};
use std::collections::BTreeSet;

async fn received_topics(c: &mut Raw) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    while let Some(p) = c.try_recv(common::QUIET).await {
        match p {
            corvid::protocol::Packet::Publish(p) => {
                c.ack(&p).await;
                got.insert(p.topic.as_str().to_owned());
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn single_and_multi_level_wildcards() {
    let t = TestServer::default().await;
    let mut plus = Raw::v311(t.addr, "plus").await;
    plus.subscribe("a/+/c", QoS::AtLeastOnce).await;
    let mut hash = Raw::v311(t.addr, "hash").await;
    hash.subscribe("x/#", QoS::AtLeastOnce).await;
    let mut all = Raw::v5(t.addr, "all").await;
    all.subscribe("#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    for name in ["a/b/c", "a/b/d", "a/b/c/d", "a//c", "x", "x/y", "x/y/z", "y/x"] {
        publisher.publish(name, b"m", QoS::AtLeastOnce).await;
    }
    let expect = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(received_topics(&mut plus).await, expect(&["a/b/c", "a//c"]));
    assert_eq!(received_topics(&mut hash).await, expect(&["x", "x/y", "x/y/z"]));
    assert_eq!(received_topics(&mut all).await.len(), 8);
}

#[tokio::test]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let t = TestServer::default().await;
    let mut hash = Raw::v311(t.addr, "hash").await;
    hash.subscribe("#", QoS::AtMostOnce).await;
    let mut plus = Raw::v311(t.addr, "plus").await;
    plus.subscribe("+/broker/#", QoS::AtMostOnce).await;
    plus.subscribe("+/test", QoS::AtMostOnce).await;
    let mut sys = Raw::v311(t.addr, "sys").await;
    sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
    t.server.publish(Message::new(topic("$SYS/broker/test"), "s", QoS::AtMostOnce, false)).await;
    t.server.publish(Message::new(topic("$SYS/test"), "s", QoS::AtMostOnce, false)).await;
    t.server.publish(Message::new(topic("plain/test"), "p", QoS::AtMostOnce, false)).await;
    assert_eq!(sys.recv_publish().await.topic.as_str(), "$SYS/broker/test");
    assert_eq!(sys.recv_publish().await.topic.as_str(), "$SYS/test");
    assert_eq!(hash.recv_publish().await.topic.as_str(), "plain/test");
    assert_eq!(plus.recv_publish().await.topic.as_str(), "plain/test");
    hash.expect_silence().await;
    plus.expect_silence().await;
    sys.expect_silence().await;
}

#[tokio::test]
async fn overlapping_subscriptions_v311_deliver_once_at_highest_qos() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "overlap").await;
    sub.subscribe("o/#", QoS::AtMostOnce).await;
    sub.subscribe("o/+", QoS::ExactlyOnce).await;
    sub.subscribe("o/x", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("o/x", b"one", QoS::ExactlyOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"one");
    sub.expect_silence().await;
}

#[tokio::test]
async fn overlapping_subscriptions_v5_deliver_once_with_every_identifier() {
    let t = TestServer::default().await;
    let mut sub = Raw::v5(t.addr, "ids").await;
    for (f, id) in [("o/#", Some(1)), ("o/+", Some(22)), ("o/x", None), ("other", Some(4))] {
        let ack = sub
            .subscribe_with(
                &[(f, SubscriptionOptions::qos(QoS::AtLeastOnce))],
                SubscribeProperties { subscription_identifier: id, ..SubscribeProperties::default() },
            )
            .await;
        assert_eq!(ack.reason_codes, [ReasonCode::GrantedQoS1]);
    }
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("o/x", b"m", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [1, 22]);
    sub.expect_silence().await;

    // Only the matching subscription's identifier.
    publisher.publish("other", b"m", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(p.properties.subscription_identifiers, [4]);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let t = TestServer::default().await;
    let mut sub = Raw::v5(t.addr, "unsub").await;
    sub.subscribe("u/1", QoS::AtLeastOnce).await;
    sub.subscribe("u/2", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("u/1", b"before", QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"before");

    let ack = sub.unsubscribe(&["u/1", "never/subscribed"]).await;
    assert_eq!(ack.reason_codes, [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]);
    assert_eq!(ReasonCode::NoSubscriptionExisted.as_u8(), 0x11);
    publisher.publish("u/1", b"after", QoS::AtLeastOnce).await;
    publisher.publish("u/2", b"other", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!(&p.payload[..], b"other");
    sub.expect_silence().await;
}

#[tokio::test]
async fn unsubscribe_v311() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "unsub311").await;
    sub.subscribe("u/#", QoS::AtMostOnce).await;
    let ack = sub.unsubscribe(&["u/#"]).await;
    assert!(ack.reason_codes.is_empty(), "3.1.1 UNSUBACK has no payload");
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("u/x", b"gone", QoS::AtLeastOnce).await;
    sub.expect_silence().await;
}

#[tokio::test]
async fn resubscribing_replaces_the_subscription() {
    let t = TestServer::default().await;
    let mut sub = Raw::v311(t.addr, "re").await;
    sub.subscribe("re", QoS::ExactlyOnce).await;
    sub.subscribe("re", QoS::AtMostOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("re", b"once", QoS::ExactlyOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.qos, QoS::AtMostOnce);
    sub.expect_silence().await;
}

async fn drain(c: &mut Raw) -> Vec<Publish> {
    let mut got = Vec::new();
    while let Some(p) = c.try_recv(common::QUIET).await {
        match p {
            corvid::protocol::Packet::Publish(p) => {
                c.ack(&p).await;
                got.push(p);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn shared_subscription_balances_across_members() {
    let t = TestServer::default().await;
    let mut a = Raw::v5(t.addr, "member-a").await;
    let mut b = Raw::v311(t.addr, "member-b").await;
    a.subscribe("$share/g/work/+", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/work/+", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for i in 0..20 {
        publisher.publish("work/item", format!("{i:02}").as_bytes(), QoS::AtLeastOnce).await;
    }
    let got_a = drain(&mut a).await;
    let got_b = drain(&mut b).await;
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both members get some");
    let mut all: Vec<String> = payloads(&got_a);
    all.extend(payloads(&got_b));
    all.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
    assert_eq!(all, expected, "each message exactly once across the group");
    assert!(got_a.iter().chain(&got_b).all(|p| p.topic.as_str() == "work/item"));
}

#[tokio::test]
async fn shared_and_normal_subscription_on_one_client() {
    let t = TestServer::default().await;
    let mut a = Raw::v5(t.addr, "both").await;
    let id = |n| SubscribeProperties { subscription_identifier: Some(n), ..SubscribeProperties::default() };
    let opts = SubscriptionOptions::qos(QoS::AtLeastOnce);
    a.subscribe_with(&[("mix", opts)], id(1)).await;
    a.subscribe_with(&[("$share/grp/mix", opts)], id(2)).await;
    let mut b = Raw::v5(t.addr, "other-member").await;
    b.subscribe("$share/grp/mix", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for i in 0..10 {
        publisher.publish("mix", format!("{i}").as_bytes(), QoS::AtLeastOnce).await;
    }
    let got_a = drain(&mut a).await;
    let got_b = drain(&mut b).await;
    let normal: Vec<&Publish> = got_a.iter().filter(|p| p.properties.subscription_identifiers == [1]).collect();
    let shared_a = got_a.iter().filter(|p| p.properties.subscription_identifiers == [2]).count();
    assert_eq!(normal.len(), 10, "the normal subscription gets every message");
    assert_eq!(normal.len() + shared_a, got_a.len());
    assert_eq!(shared_a + got_b.len(), 10, "the group gets each message once");
    assert!(!got_b.is_empty());
}

#[tokio::test]
async fn shared_subscription_member_leaving_leaves_the_rest() {
    let t = TestServer::default().await;
    let mut a = Raw::v5(t.addr, "stay").await;
    let mut b = Raw::v5(t.addr, "leave").await;
    a.subscribe("$share/g/leave", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/leave", QoS::AtLeastOnce).await;
    let ack = b.unsubscribe(&["$share/g/leave"]).await;
    assert_eq!(ack.reason_codes, [ReasonCode::Success]);
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for _ in 0..4 {
        publisher.publish("leave", b"x", QoS::AtLeastOnce).await;
    }
    assert_eq!(drain(&mut a).await.len(), 4);
    b.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_wildcard_subscriber() {
    let t = TestServer::default().await;
    let mut sub = V4Client::connect(t.addr, "rq-wild").await;
    sub.subscribe("home/+/temp", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("home/kitchen/temp", b"21", QoS::AtLeastOnce).await;
    publisher.publish("home/kitchen/humidity", b"40", QoS::AtLeastOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "home/kitchen/temp");
    sub.expect_no_publish().await;
}

#[tokio::test]
async fn shared_subscription_prefers_connected_members() {
    let t = TestServer::default().await;
    let (mut away, _) = Raw::v5_session(t.addr, "away-member", true, Some(60)).await;
    away.subscribe("$share/g/pref", QoS::AtLeastOnce).await;
    away.disconnect().await;
    t.wait_offline("away-member").await;
    let mut here = Raw::v5(t.addr, "here-member").await;
    here.subscribe("$share/g/pref", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    for i in 0..6 {
        publisher.publish("pref", format!("{i}").as_bytes(), QoS::AtLeastOnce).await;
    }
    assert_eq!(drain(&mut here).await.len(), 6, "every message goes to the connected member");
    let (mut away, present) = Raw::v5_session(t.addr, "away-member", false, Some(60)).await;
    assert!(present);
    away.expect_silence().await;
}

/// A publisher keeps the targets of the topics it publishes to; every subscribe and unsubscribe in between must
/// still take effect at its next message, for a topic it publishes to again and again and for one of many.
#[tokio::test]
async fn subscription_changes_reach_a_publisher_that_keeps_publishing() {
    let t = TestServer::default().await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    // Warm the publisher's targets: nobody listens yet; then more topics than it keeps.
    for round in 0..3 {
        publisher.publish("cache/a", b"before", QoS::AtLeastOnce).await;
        for n in 0..10 {
            publisher.publish(&format!("cache/many/{n}"), format!("{round}").as_bytes(), QoS::AtLeastOnce).await;
        }
    }
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("cache/a", QoS::AtLeastOnce).await;
    sub.subscribe("cache/many/7", QoS::AtLeastOnce).await;
    publisher.publish("cache/a", b"1", QoS::AtLeastOnce).await;
    publisher.publish("cache/many/7", b"2", QoS::AtLeastOnce).await;
    for expected in ["1", "2"] {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
        assert_eq!(&p.payload[..], expected.as_bytes());
    }
    // A second subscriber on a wildcard joins the same cached topic: both get the next one.
    let mut wild = Raw::v311(t.addr, "wild").await;
    wild.subscribe("cache/+", QoS::AtLeastOnce).await;
    publisher.publish("cache/a", b"3", QoS::AtLeastOnce).await;
    for c in [&mut sub, &mut wild] {
        let p = c.recv_publish().await;
        c.ack(&p).await;
        assert_eq!(&p.payload[..], b"3");
    }
    // After unsubscribing, nothing more for `sub`; `wild` still gets them, in order.
    sub.unsubscribe(&["cache/a", "cache/many/7"]).await;
    publisher.publish("cache/a", b"4", QoS::AtLeastOnce).await;
    publisher.publish("cache/many/7", b"5", QoS::AtLeastOnce).await;
    publisher.publish("cache/a", b"6", QoS::AtLeastOnce).await;
    for expected in ["4", "6"] {
        let p = wild.recv_publish().await;
        wild.ack(&p).await;
        assert_eq!(&p.payload[..], expected.as_bytes());
    }
    sub.expect_silence().await;
    // A shared group is resolved per message: both members share what follows.
    let mut m1 = Raw::v5(t.addr, "m1").await;
    m1.subscribe("$share/g/cache/s", QoS::AtMostOnce).await;
    let mut m2 = Raw::v5(t.addr, "m2").await;
    m2.subscribe("$share/g/cache/s", QoS::AtMostOnce).await;
    for _ in 0..10 {
        publisher.publish("cache/s", b"s", QoS::AtMostOnce).await;
    }
    let mut counts = [0; 2];
    for (i, c) in [&mut m1, &mut m2].into_iter().enumerate() {
        while c.try_recv(common::QUIET).await.is_some() {
            counts[i] += 1;
        }
    }
    assert_eq!(counts[0] + counts[1], 10, "{counts:?}");
    assert!(counts[0] > 0 && counts[1] > 0, "one member got everything: {counts:?}");
}
