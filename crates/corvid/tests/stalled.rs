//! Clients that stop reading: the broker must still notice takeover, keep-alive expiry and shutdown while its
//! writes to them are blocked.

mod common;

use common::{Raw, TestServer, connect_packet, options, topic, within};
use corvid::protocol::QoS;
use corvid::{Message, OverflowPolicy, ProtocolVersion, ReasonCode};
use std::time::{Duration, Instant};

/// A persistent subscriber that then stops reading, and enough messages to fill its socket buffers.
async fn stalled(t: &TestServer, id: &str, keep_alive: u16) -> Raw {
    let mut c = connect_packet(ProtocolVersion::V5, id);
    c.clean_start = false;
    c.keep_alive = keep_alive;
    c.properties.session_expiry_interval = Some(60);
    let (mut raw, _) = Raw::connect_with(t.addr, c).await;
    raw.subscribe("stall", QoS::AtMostOnce).await;
    let payload = vec![b's'; 64 * 1024];
    let before = t.server.stats().publish_sent;
    for _ in 0..400 {
        t.server.publish(Message::new(topic("stall"), payload.clone(), QoS::AtMostOnce, false)).await;
    }
    // Wait until the broker has written what the socket takes and is blocked on the rest.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = t.server.stats().publish_sent - before;
        assert!(sent < 400, "socket buffers took every message; the test needs more data");
        if sent == last {
            break;
        }
        last = sent;
    }
    raw
}

fn options_for_stall() -> corvid::ServerOptionsBuilder {
    options().with_max_pending_messages(1000, OverflowPolicy::DropOldest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_of_a_stalled_connection_is_prompt() {
    let t = TestServer::start(options_for_stall()).await;
    let _old = stalled(&t, "stuck", 0).await;
    let start = Instant::now();
    let mut c = connect_packet(ProtocolVersion::V5, "stuck");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let (_new, ack) = Raw::connect_with(t.addr, c).await;
    assert!(ack.session_present, "the session moved to the new connection");
    assert!(start.elapsed() < Duration::from_secs(2), "takeover took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_still_timed_out_by_keep_alive() {
    let t = TestServer::start(options_for_stall()).await;
    let _old = stalled(&t, "stuck-ka", 1).await;
    t.wait_stats("the stalled client to be timed out", |s| s.clients_connected == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_of_a_stalled_connection_is_prompt() {
    let t = TestServer::start(options_for_stall()).await;
    let _old = stalled(&t, "stuck-kick", 0).await;
    assert!(t.server.disconnect_client("stuck-kick", ReasonCode::AdministrativeAction));
    t.wait_stats("the kicked client to go", |s| s.clients_connected == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_a_stalled_connection_is_prompt() {
    let t = TestServer::start(options_for_stall()).await;
    let _old = stalled(&t, "stuck-stop", 0).await;
    within("Server::stop", t.server.stop()).await;
}
