//! The hooks of the embedding API against real MQTT clients: connection validator (sync and async, both reason-code
//! vocabularies), publish interceptor (rewrite, refuse, drop, messages from the process), subscription and
//! unsubscription interceptors, delivery filter, and session items seen by every hook.

mod embedding_common;

use bytes::BytesMut;
use corvid::protocol::{Connect, Packet, QoS, SubscriptionOptions, UserProperty, encode};
use corvid::{
    ConnectReturnCode, Message, ProtocolVersion, PublishDecision, ReasonCode, SessionItems, SubscriptionDecision,
};
use embedding_common::{Raw, options, start, topic, within};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends an MQTT 3.1.1 CONNECT and returns the four bytes of the CONNACK exactly as they came on the wire.
async fn connack_311_bytes(addr: SocketAddr, connect: Connect) -> [u8; 4] {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V3_1_1, &mut buf).unwrap();
    stream.write_all(&buf).await.unwrap();
    let mut connack = [0u8; 4];
    within("CONNACK", stream.read_exact(&mut connack)).await.unwrap();
    connack
}

fn connect(version: ProtocolVersion, client_id: &str, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = Connect::new(version, client_id.to_owned());
    c.username = user.map(Into::into);
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    c
}

#[tokio::test]
async fn async_connection_validator_looks_up_credentials() {
    // The "database": user name to password, consulted asynchronously.
    let users: Arc<HashMap<&'static str, &'static str>> = Arc::new([("alice", "wonderland")].into_iter().collect());
    let calls = Arc::new(Mutex::new(0));
    let seen_calls = calls.clone();
    let (_server, addr) = start(options().with_async_connection_validator(move |mut c: corvid::ConnectContext| {
        let users = users.clone();
        let calls = calls.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            *calls.lock() += 1;
            let user = c.username.as_deref().unwrap_or_default().to_owned();
            let expected = users.get(user.as_str()).map(|p| p.as_bytes());
            if expected.is_none() || expected != c.password.as_deref() {
                c.refuse(ConnectReturnCode::BadUserNameOrPassword);
                c.reason_string = Some(format!("unknown user {user:?} or wrong password"));
            }
            c
        }
    }))
    .await;

    let ok = connect(ProtocolVersion::V5, "alice-1", Some("alice"), Some("wonderland"));
    let (mut alice, _) = Raw::connect_with(addr, ok).await;
    alice.ping().await;
    let bad = connect(ProtocolVersion::V5, "alice-2", Some("alice"), Some("guess"));
    let (_, ack) = Raw::handshake(addr, bad).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    assert_eq!(ack.properties.reason_string.as_deref(), Some("unknown user \"alice\" or wrong password"));
    let bad311 = connect(ProtocolVersion::V3_1_1, "bob-1", Some("bob"), Some("x"));
    assert_eq!(connack_311_bytes(addr, bad311).await, [0x20, 0x02, 0x00, 4]);
    assert_eq!(*seen_calls.lock(), 3);
}

#[tokio::test]
async fn refusals_map_between_v5_reason_codes_and_311_return_codes() {
    let (_server, addr) = start(options().with_connection_validator(|c| match &*c.client_id {
        // MQTT 3.1.1 vocabulary.
        "bad-credentials" => c.refuse(ConnectReturnCode::BadUserNameOrPassword),
        "unavailable" => c.refuse(ConnectReturnCode::ServerUnavailable),
        // MQTT 5 vocabulary, with a reason string.
        "banned" => {
            c.refuse(ReasonCode::Banned);
            c.reason_string = Some("banned until tomorrow".into());
        }
        "quota" => c.refuse(ReasonCode::QuotaExceeded),
        // A code CONNACK cannot carry.
        "taken-over" => c.refuse(ReasonCode::SessionTakenOver),
        _ => {}
    }))
    .await;

    for (client_id, v5_code, rc311) in [
        ("bad-credentials", ReasonCode::BadUserNameOrPassword, 4),
        ("unavailable", ReasonCode::ServerUnavailable, 3),
        ("banned", ReasonCode::Banned, 5),
        ("quota", ReasonCode::QuotaExceeded, 5),
        ("taken-over", ReasonCode::UnspecifiedError, 5),
    ] {
        let (_, ack) = Raw::handshake(addr, Connect::new(ProtocolVersion::V5, client_id)).await;
        assert_eq!(ack.reason_code, v5_code, "{client_id} over MQTT 5");
        let expected_string = (client_id == "banned").then_some("banned until tomorrow");
        assert_eq!(ack.properties.reason_string.as_deref(), expected_string);
        let bytes = connack_311_bytes(addr, Connect::new(ProtocolVersion::V3_1_1, client_id)).await;
        assert_eq!(bytes, [0x20, 0x02, 0x00, rc311], "{client_id} over MQTT 3.1.1");
    }
    assert_eq!(ReasonCode::from(ConnectReturnCode::BadUserNameOrPassword).as_u8(), 0x86);
    // Anyone else is accepted.
    Raw::v5(addr, "welcome").await.disconnect().await;
}

#[tokio::test]
async fn the_validator_adds_user_properties_response_information_and_a_server_reference_to_connack() {
    let (_server, addr) = start(options().with_connection_validator(|c| {
        c.response_user_properties.push(UserProperty { key: "region".into(), value: "eu-1".into() });
        if &*c.client_id == "moved" {
            c.refuse(ReasonCode::ServerMoved);
            c.server_reference = Some("mqtt2.example.com:1883".into());
        } else {
            let asked = c.request_response_information;
            c.response_information = Some(format!("replies/{}/{asked}", c.client_id));
        }
    }))
    .await;
    let region = vec![UserProperty { key: "region".into(), value: "eu-1".into() }];

    // Response Information only for a client that asks for it.
    let mut asking = Connect::new(ProtocolVersion::V5, "asking");
    asking.properties.request_response_information = Some(true);
    let (_, ack) = Raw::connect_with(addr, asking).await;
    assert_eq!(ack.properties.response_information.as_deref(), Some("replies/asking/true"));
    assert_eq!(ack.properties.user_properties, region);
    let (_, ack) = Raw::connect_with(addr, Connect::new(ProtocolVersion::V5, "silent")).await;
    assert_eq!(ack.properties.response_information, None);
    assert_eq!(ack.properties.user_properties, region);

    let (_, ack) = Raw::handshake(addr, Connect::new(ProtocolVersion::V5, "moved")).await;
    assert_eq!(ack.reason_code, ReasonCode::ServerMoved);
    assert_eq!(ack.properties.server_reference.as_deref(), Some("mqtt2.example.com:1883"));
    assert_eq!(ack.properties.user_properties, region);
    // A 3.1.1 client gets the return code alone.
    let bytes = connack_311_bytes(addr, Connect::new(ProtocolVersion::V3_1_1, "moved")).await;
    assert_eq!(bytes, [0x20, 0x02, 0x00, 3]);
}

#[tokio::test]
async fn refused_publish_gets_the_reason_code_and_is_not_delivered() {
    let (_server, addr) = start(options().with_publish_interceptor(|c| {
        if c.message.topic.starts_with("forbidden/") {
            c.decision = PublishDecision::Refuse(ReasonCode::QuotaExceeded);
        } else if c.message.topic.starts_with("odd/") {
            // A code PUBACK cannot carry.
            c.decision = PublishDecision::Refuse(ReasonCode::BadUserNameOrPassword);
        }
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("#", QoS::ExactlyOnce).await;
    let mut publisher = Raw::v5(addr, "pub").await;
    let ack = publisher.publish1("forbidden/a", b"no", false).await;
    assert_eq!(ack.reason_code, ReasonCode::QuotaExceeded);
    assert_eq!(publisher.publish1("odd/a", b"no", false).await.reason_code, ReasonCode::UnspecifiedError);
    // QoS 2: PUBREC carries the code, and the exchange ends there.
    let mut p = corvid::protocol::Publish::new(topic("forbidden/b"), "no", QoS::ExactlyOnce);
    let id = publisher.next_packet_id();
    p.packet_id = Some(id);
    publisher.send(&Packet::Publish(p)).await;
    match publisher.recv_control().await {
        Packet::PubRec(r) => assert_eq!((r.packet_id, r.reason_code), (id, ReasonCode::QuotaExceeded)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // A refused retained message is not retained either.
    publisher.publish1("forbidden/retained", b"no", true).await;
    sub.expect_silence().await;
    let mut late = Raw::v5(addr, "late").await;
    late.subscribe_code("forbidden/#", QoS::AtLeastOnce).await;
    late.expect_silence().await;
    // Allowed topics flow.
    assert_eq!(publisher.publish1("allowed/a", b"yes", false).await.reason_code, ReasonCode::Success);
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"yes");
}

#[tokio::test]
async fn dropped_publish_is_acknowledged_and_delivered_to_nobody() {
    let (server, addr) = start(options().with_publish_interceptor(|c| {
        if c.message.payload.is_empty() || c.message.topic.as_str() == "drop/me" {
            c.decision = PublishDecision::Drop;
        }
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("drop/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(addr, "pub").await;
    assert_eq!(publisher.publish1("drop/me", b"gone", true).await.reason_code, ReasonCode::Success);
    sub.expect_silence().await;
    assert!(server.retained_message("drop/me").is_none(), "a dropped message is not retained");
    assert_eq!(publisher.publish1("drop/other", b"kept", false).await.reason_code, ReasonCode::Success);
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"kept");
}

#[tokio::test]
async fn publish_interceptor_sees_messages_from_the_process_without_client_id() {
    // (publishing client, topic) of each intercepted message.
    type Seen = Vec<(Option<String>, String)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    let (server, addr) = start(options().with_publish_interceptor(move |c| {
        record.lock().push((c.client_id.as_deref().map(str::to_owned), c.message.topic.to_string()));
        assert!(c.client_id.is_some() || c.session_items.is_empty(), "no items for the process");
        // The interceptor applies to the process's messages too.
        c.message.payload =
            format!("[{}] {}", c.client_id.as_deref().unwrap_or("server"), String::from_utf8_lossy(&c.message.payload))
                .into();
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("news/#", QoS::AtLeastOnce).await;
    let queued = server.publish(Message::new(topic("news/server"), "hello", QoS::AtLeastOnce, false)).await;
    assert_eq!(queued, 1);
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"[server] hello");
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("news/client", b"hi", false).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"[pub] hi");
    assert_eq!(
        *seen.lock(),
        vec![(None, "news/server".to_owned()), (Some("pub".to_owned()), "news/client".to_owned())]
    );
}

#[tokio::test]
async fn async_publish_interceptor_rewrites_the_topic() {
    let (_server, addr) = start(options().with_async_publish_interceptor(|mut c: corvid::PublishContext| async move {
        tokio::task::yield_now().await;
        if let Some(rest) = c.message.topic.strip_prefix("raw/") {
            c.message.topic = topic(&format!("cooked/{rest}"));
        }
        c
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("cooked/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("raw/egg", b"1", false).await;
    assert_eq!(sub.recv_publish_ack().await.topic.as_str(), "cooked/egg");
}

#[tokio::test]
async fn subscription_interceptor_can_lower_the_granted_qos() {
    let (_server, addr) = start(options().with_subscription_interceptor(|c| {
        if c.topic_filter.starts_with("telemetry/") {
            c.options.qos = QoS::AtMostOnce;
        }
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    let ack = sub
        .subscribe_many(&[
            ("telemetry/#", SubscriptionOptions::qos(QoS::ExactlyOnce)),
            ("orders/#", SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ])
        .await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::Success, ReasonCode::GrantedQoS2]);
    let mut v311 = Raw::v311(addr, "sub311").await;
    assert_eq!(v311.subscribe_code("telemetry/x", QoS::AtLeastOnce).await.as_u8(), 0);
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("telemetry/temp", b"21", false).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None), "delivered at the lowered QoS");
}

#[tokio::test]
async fn refusal_codes_a_suback_or_disconnect_cannot_carry_become_unspecified_error() {
    let (_server, addr) = start(options().with_subscription_interceptor(|c| {
        if c.topic_filter.starts_with("odd/") {
            c.decision = SubscriptionDecision::Refuse(ReasonCode::BadUserNameOrPassword);
        } else if c.topic_filter.starts_with("fatal/") {
            c.decision = SubscriptionDecision::RefuseAndDisconnect(ReasonCode::BadAuthenticationMethod);
        }
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    let ack = sub
        .subscribe_many(&[
            ("odd/#", SubscriptionOptions::qos(QoS::AtLeastOnce)),
            ("fine/#", SubscriptionOptions::qos(QoS::AtLeastOnce)),
        ])
        .await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS1]);
    let ack = sub.subscribe_many(&[("fatal/#", SubscriptionOptions::qos(QoS::AtLeastOnce))]).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::UnspecifiedError]);
    sub.expect_disconnect(ReasonCode::UnspecifiedError).await;
}

#[tokio::test]
async fn unsubscription_interceptor_can_refuse() {
    let (_server, addr) = start(options().with_unsubscription_interceptor(|c| {
        if c.topic_filter.starts_with("sticky/") {
            c.decision = SubscriptionDecision::Refuse(ReasonCode::ImplementationSpecificError);
        } else if c.topic_filter.starts_with("odd/") {
            // A code UNSUBACK cannot carry.
            c.decision = SubscriptionDecision::Refuse(ReasonCode::QuotaExceeded);
        }
    }))
    .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("sticky/#", QoS::AtLeastOnce).await;
    sub.subscribe_code("loose/#", QoS::AtLeastOnce).await;
    let ack = sub.unsubscribe(&["sticky/#", "loose/#", "odd/#"]).await;
    let codes = [ReasonCode::ImplementationSpecificError, ReasonCode::Success, ReasonCode::UnspecifiedError];
    assert_eq!(ack.reason_codes, codes);
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("loose/a", b"gone", false).await;
    publisher.publish1("sticky/a", b"still here", false).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"still here");
    sub.expect_silence().await;
}

#[tokio::test]
async fn async_unsubscription_interceptor_can_refuse() {
    let (_server, addr) =
        start(options().with_async_unsubscription_interceptor(|mut c: corvid::UnsubscriptionContext| async move {
            tokio::task::yield_now().await;
            c.decision = SubscriptionDecision::Refuse(ReasonCode::NotAuthorized);
            c
        }))
        .await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("a/#", QoS::AtLeastOnce).await;
    assert_eq!(sub.unsubscribe(&["a/#"]).await.reason_codes, vec![ReasonCode::NotAuthorized]);
}

#[tokio::test]
async fn delivery_filter_skips_one_subscriber_only() {
    let (server, addr) = start(
        options().with_delivery_filter(|d| !(&**d.client_id == "blocked" && d.message.topic.starts_with("secret/"))),
    )
    .await;
    let mut allowed = Raw::v5(addr, "allowed").await;
    allowed.subscribe_code("#", QoS::AtLeastOnce).await;
    let mut blocked = Raw::v5(addr, "blocked").await;
    blocked.subscribe_code("#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("secret/plan", b"x", false).await;
    assert_eq!(allowed.recv_publish_ack().await.topic.as_str(), "secret/plan");
    blocked.expect_silence().await;
    // Messages from the process go through the filter too; other topics reach both.
    assert_eq!(server.publish(Message::new(topic("secret/other"), "y", QoS::AtLeastOnce, false)).await, 1);
    assert_eq!(allowed.recv_publish_ack().await.topic.as_str(), "secret/other");
    publisher.publish1("public/news", b"z", false).await;
    assert_eq!(allowed.recv_publish_ack().await.topic.as_str(), "public/news");
    assert_eq!(blocked.recv_publish_ack().await.topic.as_str(), "public/news");
}

/// An item the validator writes and every later hook reads and updates.
#[derive(Clone, Debug, PartialEq)]
struct Trail(Vec<&'static str>);

fn visit(items: &SessionItems, hook: &'static str) -> bool {
    items.update(|t: &mut Trail| t.0.push(hook))
}

#[tokio::test]
async fn session_items_written_by_the_validator_reach_every_hook() {
    let items_seen: Arc<Mutex<Option<SessionItems>>> = Arc::default();
    let keep = items_seen.clone();
    let (server, addr) = start(
        options()
            .with_connection_validator(move |c| {
                c.session_items.insert(Trail(vec!["validator"]));
                *keep.lock() = Some(c.session_items.clone());
            })
            .with_subscription_interceptor(|c| assert!(visit(&c.session_items, "subscribe")))
            .with_publish_interceptor(|c| assert!(visit(&c.session_items, "publish")))
            .with_delivery_filter(|d| visit(d.session_items, "deliver"))
            .with_unsubscription_interceptor(|c| assert!(visit(&c.session_items, "unsubscribe"))),
    )
    .await;
    let mut client = Raw::v5(addr, "itemised").await;
    client.subscribe_code("loop/#", QoS::AtLeastOnce).await;
    client.publish1("loop/1", b"to myself", false).await;
    assert_eq!(&client.recv_publish_ack().await.payload[..], b"to myself");
    client.unsubscribe(&["loop/#"]).await;

    let items = items_seen.lock().clone().expect("the validator ran");
    let expected = Trail(vec!["validator", "subscribe", "publish", "deliver", "unsubscribe"]);
    assert_eq!(items.get::<Trail>(), Some(expected.clone()));
    // The admin API shows the same items.
    let session = server.session("itemised").expect("the session");
    assert_eq!(session.items.get::<Trail>(), Some(expected));
}
