//! Keep-alive: silent clients are closed after one and a half keep-alive periods; PINGREQ keeps a client alive.

mod common;

use common::{Raw, TestServer, V4Client, connect_packet, options};
use corvid::protocol::Packet;
use corvid::{Limits, ProtocolVersion, ReasonCode};
use std::time::{Duration, Instant};

async fn silent_client_closed(version: ProtocolVersion) -> Vec<Packet> {
    let t = TestServer::default().await;
    let mut c = connect_packet(version, "silent");
    c.keep_alive = 1;
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    let start = Instant::now();
    let got = raw.closed_within(Duration::from_secs(4)).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed <= Duration::from_millis(2600),
        "closed after {elapsed:?}, expected about 1.5 s"
    );
    got
}

#[tokio::test]
async fn silent_v311_client_is_closed_after_one_and_a_half_keep_alives() {
    let got = silent_client_closed(ProtocolVersion::V3_1_1).await;
    assert!(got.is_empty(), "3.1.1 gets no DISCONNECT: {got:?}");
}

#[tokio::test]
async fn silent_v5_client_gets_disconnect_0x8d() {
    let got = silent_client_closed(ProtocolVersion::V5).await;
    match got.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::KeepAliveTimeout),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
}

#[tokio::test]
async fn pingreq_gets_pingresp_and_keeps_the_client_alive() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V3_1_1, "pinger");
    c.keep_alive = 1;
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        raw.ping().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Still connected and working.
    raw.subscribe("alive", corvid::QoS::AtLeastOnce).await;
    raw.publish("alive", b"yes", corvid::QoS::AtLeastOnce).await;
    assert_eq!(&raw.recv_publish_ack().await.payload[..], b"yes");
}

#[tokio::test]
async fn any_packet_counts_as_activity() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V5, "busy");
    c.keep_alive = 1;
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        raw.publish("busy", b"x", corvid::QoS::AtLeastOnce).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    raw.ping().await;
}

#[tokio::test]
async fn keep_alive_zero_is_never_timed_out() {
    let t = TestServer::default().await;
    let mut c = connect_packet(ProtocolVersion::V3_1_1, "forever");
    c.keep_alive = 0;
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    assert!(raw.try_recv(Duration::from_millis(2000)).await.is_none());
    raw.ping().await;
}

#[tokio::test]
async fn server_keep_alive_is_advertised_and_enforced() {
    let mut limits = Limits::default();
    limits.max_keepalive = 1;
    let t = TestServer::start(options().with_limits(limits)).await;
    let mut c = connect_packet(ProtocolVersion::V5, "told");
    c.keep_alive = 0;
    let (mut raw, ack) = Raw::connect_with(t.addr, c).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_client_pings_and_stays_connected() {
    let t = TestServer::default().await;
    let mut options = rumqttc::MqttOptions::new("rq-ka", t.addr.ip().to_string(), t.addr.port());
    options.set_keep_alive(Duration::from_secs(1));
    let mut c = V4Client::connect_with(options).await;
    loop {
        if let Ok(rumqttc::Packet::PingResp) = c.next().await {
            break;
        }
    }
    c.subscribe("ka", rumqttc::QoS::AtLeastOnce).await;
}
