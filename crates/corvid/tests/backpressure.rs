//! Publishers faster than their subscriber: while the subscriber keeps reading, the broker stops reading the
//! publishers (their TCP windows slow them down) instead of reading messages only to drop them; a subscriber that
//! stops reading does not hold the publishers back.

mod common;

use bytes::BytesMut;
use common::{Raw, TestServer, options, publish_packet, within};
use corvid::OverflowPolicy;
use corvid::protocol::{Packet, QoS, encode};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Reads PUBLISH packets off `raw`'s socket, counting them without decoding, until `expected` have come or the
/// stream has been quiet for a second.
async fn count_publishes(mut raw: Raw, expected: usize) -> usize {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut count = 0;
    while count < expected {
        buf.reserve(64 * 1024);
        match tokio::time::timeout(Duration::from_secs(1), raw.stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        // Fixed header: type, then the remaining length (variable byte integer).
        loop {
            let (mut len, mut shift, mut at) = (0usize, 0, 1);
            let complete = loop {
                let Some(&b) = buf.get(at) else { break false };
                len |= usize::from(b & 0x7F) << shift;
                shift += 7;
                at += 1;
                if b & 0x80 == 0 {
                    break true;
                }
            };
            if !complete || buf.len() < at + len {
                break;
            }
            assert_eq!(buf[0] >> 4, 3, "only PUBLISH packets expected");
            let _ = buf.split_to(at + len);
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_wait_for_a_subscriber_that_keeps_reading() {
    // A queue bound above the high-water mark: without the wait, the publishers outrun the subscriber's task and
    // its queue overflows.
    flood_a_reading_subscriber(options().with_max_pending_messages(6000, OverflowPolicy::DropNewest)).await;
}

/// The same through the hooked path (a publish interceptor takes publishers off the direct path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_wait_on_the_hooked_path_too() {
    let builder =
        options().with_max_pending_messages(6000, OverflowPolicy::DropNewest).with_publish_interceptor(|_| {});
    flood_a_reading_subscriber(builder).await;
}

async fn flood_a_reading_subscriber(builder: corvid::ServerOptionsBuilder) {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 25_000;
    let t = TestServer::start(builder).await;
    let mut sub = Raw::v311(t.addr, "sink").await;
    sub.subscribe("flood/+", QoS::AtMostOnce).await;
    let reader = tokio::spawn(count_publishes(sub, PUBLISHERS * EACH));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut raw = Raw::v311(t.addr, &format!("pub-{p}")).await;
        publishers.push(tokio::spawn(async move {
            let mut burst = BytesMut::new();
            for n in 0..EACH {
                let packet = publish_packet(&format!("flood/{p}"), format!("{n:08}").as_bytes(), QoS::AtMostOnce, 0);
                encode(&Packet::Publish(packet), raw.version, &mut burst).expect("encodable");
            }
            raw.send_bytes(&burst).await;
            raw
        }));
    }
    let started = Instant::now();
    let mut keep = Vec::new();
    for p in publishers {
        keep.push(within("publisher", p).await.expect("publisher task"));
    }
    let received = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader ends").expect("reader");
    let stats = t.server.stats();
    assert_eq!(stats.publish_dropped, 0, "dropped while the subscriber kept reading ({:?})", started.elapsed());
    assert_eq!(received, PUBLISHERS * EACH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_hold_publishers_back() {
    let t = TestServer::start(options().with_max_pending_messages(6000, OverflowPolicy::DropOldest)).await;
    let mut stuck = Raw::v311(t.addr, "stuck").await;
    stuck.subscribe("flood/+", QoS::AtMostOnce).await;
    let mut live = Raw::v311(t.addr, "live").await;
    live.subscribe("flood/0", QoS::AtMostOnce).await;
    let mut publisher = Raw::v311(t.addr, "pub").await;
    // 60,000 messages of 1 KiB: far more than the stuck subscriber's socket and queue hold.
    let payload = vec![b'x'; 1024];
    let mut burst = BytesMut::new();
    for _ in 0..60_000 {
        let packet = publish_packet("flood/0", &payload, QoS::AtMostOnce, 0);
        encode(&Packet::Publish(packet), publisher.version, &mut burst).expect("encodable");
    }
    let sending = tokio::spawn(async move {
        publisher.send_bytes(&burst).await;
        publisher
    });
    // The publisher gets everything out (within `within`'s bound: a publisher waiting for the stuck subscriber
    // would never finish), and the live subscriber gets messages all along; the stuck one's queue overflows.
    let counting = tokio::spawn(count_publishes(live, 60_000));
    within("publisher", sending).await.expect("publisher task");
    let received = within("live subscriber", counting).await.expect("reader");
    let dropped = t.server.stats().publish_dropped;
    assert!(received > 6000, "the live subscriber got {received}");
    assert!(dropped >= 30_000, "the stuck subscriber's queue overflowed: {dropped} dropped");
    drop(stuck);
}
