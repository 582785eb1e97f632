//! `$SYS/broker/...` topics.

mod common;

use common::{Raw, TestServer, options, within};
use corvid::protocol::QoS;
use std::collections::HashMap;
use std::time::Duration;

async fn sys_server() -> TestServer {
    TestServer::start(options().with_sys_interval(Some(Duration::from_secs(1)))).await
}

/// Collects `$SYS` values until every name in `want` has been seen (the latest value of each).
async fn collect(c: &mut Raw, want: &[&str]) -> HashMap<String, String> {
    let mut seen = HashMap::new();
    within("$SYS topics", async {
        while !want.iter().all(|w| seen.contains_key(*w)) {
            let p = c.recv_publish().await;
            seen.insert(p.topic.as_str().to_owned(), String::from_utf8_lossy(&p.payload).into_owned());
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn broker_topics_are_published() {
    let t = sys_server().await;
    let mut c = Raw::v311(t.addr, "sys-watcher").await;
    c.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let seen = collect(&mut c, &["$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected"]).await;
    assert!(seen["$SYS/broker/version"].contains(env!("CARGO_PKG_VERSION")));
    assert!(seen["$SYS/broker/uptime"].ends_with("seconds"), "{seen:?}");
    // The retained value may predate this client (the first tick runs at start): wait for one that counts it.
    let mut connected: u64 = seen["$SYS/broker/clients/connected"].parse().unwrap();
    within("$SYS/broker/clients/connected >= 1", async {
        while connected < 1 {
            let p = c.recv_publish().await;
            if p.topic.as_str() == "$SYS/broker/clients/connected" {
                connected = String::from_utf8_lossy(&p.payload).parse().unwrap();
            }
        }
    })
    .await;
    assert!(connected >= 1);
}

#[tokio::test]
async fn clients_connected_follows_connections() {
    let t = sys_server().await;
    let mut c = Raw::v5(t.addr, "sys-counter").await;
    let _others = [Raw::v5(t.addr, "o1").await, Raw::v311(t.addr, "o2").await];
    c.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce).await;
    within("clients/connected = 3", async {
        loop {
            let p = c.recv_publish().await;
            if &p.payload[..] == b"3" {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn uptime_is_retained_and_updated() {
    let t = sys_server().await;
    let mut c = Raw::v5(t.addr, "sys-late").await;
    c.subscribe("$SYS/broker/uptime", QoS::AtMostOnce).await;
    let first = c.recv_publish().await;
    let second = c.recv_publish().await;
    assert_eq!(first.topic.as_str(), "$SYS/broker/uptime");
    assert!(!second.retain, "live updates are not flagged retained");
    assert!(t.server.retained_message("$SYS/broker/uptime").is_some());
}

#[tokio::test]
async fn clients_cannot_publish_to_sys() {
    let t = TestServer::default().await;
    let mut c = Raw::v311(t.addr, "sys-faker").await;
    c.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    c.publish("$SYS/broker/version", b"fake", QoS::AtLeastOnce).await;
    c.expect_silence().await;
    assert!(t.server.retained_message("$SYS/broker/version").is_none());
}
