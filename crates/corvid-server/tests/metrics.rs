//! The metrics and health endpoints of the real `corvid` binary: Prometheus counters that move with real MQTT
//! traffic, `/livez`, `/readyz` answering 503 while the server drains on SIGTERM, and `--metrics ADDR`.

mod common;

use common::{Broker, Dir, PubAckReason, V4, V5, config, free_port, http_get};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The samples of a scrape, by name (labels included).
fn scrape(port: u16) -> HashMap<String, f64> {
    let response = http_get(port, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{response:?}");
    let mut samples = HashMap::new();
    for line in response.body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        samples.insert(name.to_owned(), value.parse().unwrap_or_else(|_| panic!("{line}")));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_and_readyz_drains() {
    let dir = Dir::new("metrics");
    let (port, http) = (free_port(), free_port());
    let extra = format!("allow_anonymous = true\n[metrics]\nbind = \"127.0.0.1:{http}\"\ndrain_secs = 3\n");
    let cfg = dir.write("corvid.toml", &config(port, &extra));
    let mut broker = Broker::start(&dir, &cfg, port, &[]);
    broker.wait_for_log("serving /metrics");

    assert_eq!(http_get(http, "/livez").status, 200);
    let ready = http_get(http, "/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(http_get(http, "/nothing-here").status, 404);

    let before = scrape(http);
    for name in [
        "corvid_connections_total",
        "corvid_messages_received_total",
        "corvid_messages_sent_total",
        "corvid_messages_dropped_total",
        "corvid_bytes_received_total",
        "corvid_bytes_sent_total",
        "corvid_retained_messages",
        "corvid_subscriptions",
        "corvid_sessions",
        "corvid_clients_connected",
        "corvid_uptime_seconds",
    ] {
        assert!(before.contains_key(name), "{name} missing: {before:?}");
    }
    assert_eq!(before["corvid_clients_connected"], 0.0);

    let mut sub = V4::connect(port, "sub", None).await;
    sub.subscribe("m/#").await;
    let mut publisher = V5::connect(port, "pub", None).await;
    assert_eq!(publisher.publish("m/1", "hello").await, PubAckReason::Success);
    publisher.client.publish("m/r", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, true, "kept").await.unwrap();
    assert_eq!(publisher.publish("m/2", "again").await, PubAckReason::Success);
    for expected in ["m/1", "m/r", "m/2"] {
        assert_eq!(sub.next_message().await.0, expected);
    }

    let after = scrape(http);
    let grew = |name: &str, by: f64| {
        assert!(after[name] >= before[name] + by, "{name}: {} then {}", before[name], after[name]);
    };
    grew("corvid_connections_total", 2.0);
    grew("corvid_messages_received_total", 3.0);
    grew("corvid_messages_sent_total", 3.0);
    grew("corvid_bytes_received_total", 30.0);
    grew("corvid_bytes_sent_total", 30.0);
    grew("corvid_payload_bytes_received_total", 14.0);
    grew("corvid_packets_received_total", 5.0);
    assert_eq!(after["corvid_clients_connected"], 2.0);
    assert_eq!(after["corvid_sessions"], 2.0);
    assert_eq!(after["corvid_subscriptions"], 1.0);
    assert_eq!(after["corvid_retained_messages"], 1.0);
    assert_eq!(after["corvid_ready"], 1.0);
    assert!(after["corvid_uptime_seconds"] >= before["corvid_uptime_seconds"]);
    assert!(after.keys().any(|k| k.starts_with("corvid_build_info{version=")), "{after:?}");

    // SIGTERM: /readyz says 503 at once, new clients are refused, connected ones keep working until the stop.
    let asked = Instant::now();
    broker.signal("-TERM");
    broker.wait_for_log("draining");
    let draining = http_get(http, "/readyz");
    assert_eq!((draining.status, draining.body.as_str()), (503, "draining\n"));
    assert_eq!(http_get(http, "/livez").status, 200);
    assert_eq!(scrape(http)["corvid_ready"], 0.0);
    let refused = V4::try_connect(V4::options(port, "late", None)).await.err();
    assert_eq!(refused, Some(rumqttc::ConnectReturnCode::ServiceUnavailable));
    assert_eq!(publisher.publish("m/3", "still up").await, PubAckReason::Success);
    assert_eq!(sub.next_message().await.0, "m/3");
    assert_eq!(broker.wait_exit(), Some(0));
    assert!(asked.elapsed() >= Duration::from_secs(3), "stopped before the drain time: {:?}", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_flag_and_no_endpoint_without_it() {
    let dir = Dir::new("metrics-flag");
    let (port, http) = (free_port(), free_port());
    let cfg = dir.write("corvid.toml", &config(port, "allow_anonymous = true"));
    let addr = format!("127.0.0.1:{http}");
    let mut broker = Broker::start(&dir, &cfg, port, &["--metrics", &addr]);
    broker.wait_for_log("serving /metrics");
    assert_eq!(http_get(http, "/readyz").status, 200);
    assert_eq!(scrape(http)["corvid_connections_total"], 0.0);
    V4::connect(port, "one", None).await;
    assert_eq!(scrape(http)["corvid_connections_total"], 1.0);
    // Without drain_secs, SIGTERM stops at once.
    broker.signal("-TERM");
    assert_eq!(broker.wait_exit(), Some(0));
    assert!(std::net::TcpStream::connect(("127.0.0.1", http)).is_err(), "the endpoint stopped with the server");

    // No [metrics] and no flag: nothing listens.
    let port = free_port();
    let cfg = dir.write("plain.toml", &config(port, "allow_anonymous = true"));
    let mut broker = Broker::start(&dir, &cfg, port, &[]);
    broker.wait_for_log("corvid started");
    assert!(!broker.log.contains("serving /metrics"), "{}", broker.log);
}
