//! Parking: a plain-TCP connection idle past `park_idle_after` gives up its task, not its connection. Whatever
//! comes next (a packet, a delivery, a kick, a takeover, the keep-alive check, the server stopping) finds it as if
//! it had never been parked.

mod common;

use bytes::Bytes;
use common::{Raw, TestServer, V4Client, connect_packet, options, topic, within};
use corvid::protocol::Will;
use corvid::{Message, ProtocolVersion, QoS, ReasonCode, ServerOptionsBuilder};
use std::time::{Duration, Instant};

/// Short, so that tests park within one keep-alive sweep (every 500 ms).
const PARK_AFTER: Duration = Duration::from_millis(100);

fn parking() -> ServerOptionsBuilder {
    options().with_park_idle_after(Some(PARK_AFTER))
}

/// Waits until exactly `n` connections are parked.
async fn parked(t: &TestServer, n: usize) {
    let handle = t.server.handle();
    within(&format!("{n} parked connections"), async {
        while handle.parked_count() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn parked_clients_publish_and_receive_as_before() {
    let t = TestServer::start(parking()).await;
    let mut sub = Raw::v5(t.addr, "sub").await;
    sub.subscribe("p/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    for round in 0..3u8 {
        parked(&t, 2).await;
        // The publisher's packet resumes it (its socket turns readable), the delivery resumes the subscriber.
        publisher.publish("p/a", &[round], QoS::AtLeastOnce).await;
        let got = sub.recv_publish_ack().await;
        assert_eq!((got.topic.as_str(), &got.payload[..]), ("p/a", &[round][..]));
        publisher.publish("p/b", &[round], QoS::AtMostOnce).await;
        assert_eq!(&sub.recv_publish().await.payload[..], &[round]);
    }
    // A message from the process itself reaches a parked subscriber too.
    parked(&t, 2).await;
    let delivered =
        t.server.publish(Message::new(topic("p/inside"), Bytes::from_static(b"in"), QoS::AtLeastOnce, false)).await;
    assert_eq!(delivered, 1);
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"in");
    // Both park again once idle, and subscribing works after it.
    parked(&t, 2).await;
    sub.subscribe("q", QoS::AtMostOnce).await;
    publisher.publish("q", b"q", QoS::AtMostOnce).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"q");
    publisher.disconnect().await;
    sub.disconnect().await;
    parked(&t, 0).await;
}

#[tokio::test]
async fn a_client_waiting_to_acknowledge_is_not_parked() {
    let t = TestServer::start(parking()).await;
    let mut sub = Raw::v5(t.addr, "slow-ack").await;
    sub.subscribe("ack", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v5(t.addr, "pub").await;
    publisher.publish("ack", b"1", QoS::AtLeastOnce).await;
    let got = sub.recv_publish().await;
    // The publisher parks; the subscriber has a message in flight and keeps its task.
    parked(&t, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(t.server.handle().parked_count(), 1);
    sub.ack(&got).await;
    parked(&t, 2).await;
}

#[tokio::test]
async fn a_parked_client_pings_and_its_keep_alive_still_ends_it_with_its_will() {
    let t = TestServer::start(parking()).await;
    let mut watcher = V4Client::connect(t.addr, "watcher").await;
    watcher.subscribe("will/+", rumqttc::QoS::AtLeastOnce).await;
    let mut c = connect_packet(ProtocolVersion::V5, "sleeper");
    c.keep_alive = 2;
    c.will = Some(Will {
        topic: topic("will/sleeper"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    parked(&t, 2).await;
    raw.ping().await;
    parked(&t, 2).await;
    let silent_since = Instant::now();
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    let silent = silent_since.elapsed();
    assert!(silent >= Duration::from_millis(2900) && silent <= Duration::from_millis(4000), "closed after {silent:?}");
    let will = watcher.next_publish().await;
    assert_eq!((&will.topic[..], &will.payload[..]), ("will/sleeper", &b"gone"[..]));
}

#[tokio::test]
async fn a_client_closing_its_socket_while_parked_is_disconnected_with_its_will() {
    let t = TestServer::start(parking()).await;
    let mut watcher = V4Client::connect(t.addr, "watcher").await;
    watcher.subscribe("will/+", rumqttc::QoS::AtLeastOnce).await;
    let mut c = connect_packet(ProtocolVersion::V3_1_1, "dropper");
    c.will = Some(Will {
        topic: topic("will/dropper"),
        payload: Bytes::from_static(b"lost"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (raw, _) = Raw::connect_with(t.addr, c).await;
    parked(&t, 2).await;
    drop(raw);
    let will = watcher.next_publish().await;
    assert_eq!(&will.payload[..], b"lost");
    t.wait_stats("the client counted as gone", |s| s.clients_connected == 1).await;
}

#[tokio::test]
async fn takeover_kick_and_stop_reach_parked_connections() {
    let t = TestServer::start(parking()).await;
    let (mut first, _) = Raw::v5_session(t.addr, "same", true, Some(60)).await;
    first.subscribe("kept", QoS::AtLeastOnce).await;
    parked(&t, 1).await;
    // Takeover: the parked connection is told and closed; the session goes to the new one.
    let (mut second, present) = Raw::v5_session(t.addr, "same", false, Some(60)).await;
    assert!(present, "the parked connection's session was handed over");
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("kept", b"still subscribed", QoS::AtLeastOnce).await;
    assert_eq!(&second.recv_publish_ack().await.payload[..], b"still subscribed");
    // Kick.
    parked(&t, 2).await;
    assert!(t.server.disconnect_client("same", ReasonCode::AdministrativeAction));
    second.expect_disconnect(ReasonCode::AdministrativeAction).await;
    // Stop: a parked MQTT 5 client hears why, and the server stops within its bound.
    let mut last = Raw::v5(t.addr, "last").await;
    parked(&t, 2).await;
    let stopping = Instant::now();
    t.server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3), "stop took {:?}", stopping.elapsed());
    last.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    assert!(publisher.expect_closed().await.is_empty(), "3.1.1 gets no DISCONNECT");
}

#[tokio::test]
async fn parking_can_be_turned_off() {
    let t = TestServer::start(options().with_park_idle_after(None)).await;
    let mut sub = Raw::v311(t.addr, "sub").await;
    sub.subscribe("t", QoS::AtMostOnce).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(t.server.handle().parked_count(), 0);
    let mut publisher = Raw::v311(t.addr, "pub").await;
    publisher.publish("t", b"x", QoS::AtMostOnce).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn many_parked_clients_each_get_their_message() {
    let t = TestServer::start(parking()).await;
    let mut clients = Vec::new();
    for i in 0..200 {
        let mut c = Raw::v311(t.addr, &format!("c{i}")).await;
        c.subscribe(&format!("each/{i}"), QoS::AtLeastOnce).await;
        clients.push(c);
    }
    parked(&t, 200).await;
    for i in 0..200 {
        let message = Message::new(topic(&format!("each/{i}")), Bytes::from(format!("{i}")), QoS::AtLeastOnce, false);
        assert_eq!(t.server.publish(message).await, 1);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let got = c.recv_publish_ack().await;
        assert_eq!(got.payload, Bytes::from(format!("{i}")));
    }
    parked(&t, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_parked_and_resumed_over_and_over_lose_nothing() {
    const PAIRS: u64 = 40;
    const MESSAGES: u64 = 8;
    let t = TestServer::start(parking()).await;
    let handle = t.server.handle();
    let most_parked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = {
        let most = most_parked.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                most.fetch_max(handle.parked_count(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let addr = t.addr;
        pairs.push(tokio::spawn(async move {
            let mut sub = Raw::v5(addr, &format!("sub-{i}")).await;
            sub.subscribe(&format!("churn/{i}"), QoS::AtLeastOnce).await;
            let mut publisher = Raw::v311(addr, &format!("pub-{i}")).await;
            for k in 0..MESSAGES {
                // Pauses of 0-700 ms, different for every pair and message: both sides park and resume at moments
                // spread over the keep-alive sweep's period, with messages and packets arriving as they do.
                let pause = (i * 7919 + k * 104_729) % 700;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                publisher.publish(&format!("churn/{i}"), &k.to_be_bytes(), QoS::AtLeastOnce).await;
                let got = sub.recv_publish_ack().await;
                assert_eq!(got.payload.as_ref(), k.to_be_bytes(), "pair {i}");
            }
            sub.expect_silence().await;
        }));
    }
    for pair in pairs {
        pair.await.expect("every message of every pair arrives once, in order");
    }
    watching.abort();
    assert!(most_parked.load(std::sync::atomic::Ordering::Relaxed) > 0, "connections were parked along the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_parked_clients_than_one_poll_takes_all_wake_at_once() {
    // The lot takes 256 events per poll of its poller: 300 sockets turning readable together need a second one.
    const CLIENTS: usize = 300;
    let t = TestServer::start(parking()).await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(Raw::v311(t.addr, &format!("w{i}")).await);
    }
    parked(&t, CLIENTS).await;
    for c in &mut clients {
        c.send_bytes(&[0xC0, 0x00]).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(matches!(c.recv_control().await, corvid::protocol::Packet::PingResp), "client {i}");
    }
    parked(&t, CLIENTS).await;
}
