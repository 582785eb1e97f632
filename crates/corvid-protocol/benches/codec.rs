//! Codec benchmarks: decode and encode of typical packets.
//!
//! Run with `cargo bench -p corvid-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`.
//!
//! `decode` measures one packet decoded from a fresh buffer holding just that packet (this includes the one-off
//! promotion of the buffer to shared storage on its first split). `decode_stream` measures packets decoded back to
//! back from one buffer, as a connection's read buffer is used; criterion reports the time for 256 packets, and
//! packets per second. Dropping the packets is not measured in either. `decode_min` is `decode_stream` timed by its
//! fastest batch, which a shared machine's preemption does not inflate.

#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use corvid_protocol::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
    UserProperty, Will, decode, encode,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

const MAX: u32 = 1 << 20;

fn publish_64() -> (Packet, ProtocolVersion) {
    // 2 bytes of fixed header, 2 + 25 of topic, 35 of payload: 64 bytes.
    let p = Publish::new(
        TopicName::new("sensors/room1/temperature").unwrap(),
        Bytes::from_static(&[b'x'; 35]),
        QoS::AtMostOnce,
    );
    (Packet::Publish(p), ProtocolVersion::V3_1_1)
}

fn publish_1k() -> (Packet, ProtocolVersion) {
    let mut p = Publish::new(TopicName::new("fleet/truck-0042/telemetry").unwrap(), Bytes::new(), QoS::AtLeastOnce);
    p.packet_id = PacketId::new(4242);
    p.properties.message_expiry_interval = Some(3600);
    p.properties.content_type = Some("application/cbor".into());
    p.properties.user_properties.push(UserProperty::new("trace", "0af7651916cd"));
    // Fill the payload up to 1 KiB in all (the remaining length takes two bytes either way).
    let header_and_fields = bytes_of(&Packet::Publish(p.clone()), ProtocolVersion::V5).len() + 1;
    p.payload = Bytes::from(vec![0xA5; 1024 - header_and_fields]);
    (Packet::Publish(p), ProtocolVersion::V5)
}

fn subscribe_3() -> (Packet, ProtocolVersion) {
    let filters = ["sensors/+/temperature", "fleet/#", "$share/workers/jobs/+"]
        .into_iter()
        .map(|f| (TopicFilter::new(f).unwrap(), SubscriptionOptions::qos(QoS::AtLeastOnce)))
        .collect();
    let mut s = Subscribe { packet_id: PacketId::new(7).unwrap(), filters, properties: Default::default() };
    s.properties.subscription_identifier = Some(12);
    (Packet::Subscribe(s), ProtocolVersion::V5)
}

fn connect_v5() -> (Packet, ProtocolVersion) {
    let mut c = Connect::new(ProtocolVersion::V5, "bench-client-0001");
    c.keep_alive = 30;
    c.username = Some("user".into());
    c.password = Some(Bytes::from_static(b"secret"));
    c.properties.session_expiry_interval = Some(600);
    c.properties.receive_maximum = Some(100);
    c.properties.maximum_packet_size = Some(MAX);
    c.properties.topic_alias_maximum = Some(16);
    let mut will = Will {
        topic: TopicName::new("clients/bench-client-0001/status").unwrap(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(5);
    will.properties.content_type = Some("text/plain".into());
    c.will = Some(will);
    (Packet::Connect(Box::new(c)), ProtocolVersion::V5)
}

fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.freeze()
}

fn benches(c: &mut Criterion) {
    let cases = [
        ("publish_64B_qos0_v311", publish_64()),
        ("publish_1KiB_qos1_v5", publish_1k()),
        ("subscribe_3_filters_v5", subscribe_3()),
        ("connect_v5_will_props", connect_v5()),
    ];
    let (p64, _) = publish_64();
    assert_eq!(bytes_of(&p64, ProtocolVersion::V3_1_1).len(), 64);
    let (p1k, _) = publish_1k();
    assert_eq!(bytes_of(&p1k, ProtocolVersion::V5).len(), 1024);

    let mut group = c.benchmark_group("decode");
    for (name, (packet, version)) in &cases {
        let bytes = bytes_of(packet, *version);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| decode(black_box(buf), *version, MAX).unwrap().unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode_stream");
    const N: usize = 256;
    for (name, (packet, version)) in &cases[..2] {
        let bytes = bytes_of(packet, *version);
        let stream: Vec<u8> = bytes.iter().copied().cycle().take(bytes.len() * N).collect();
        group.throughput(Throughput::Elements(N as u64));
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                || {
                    // The output vector's pages are touched here, outside the measurement; the packets are dropped
                    // outside it too.
                    let mut out = vec![Packet::PingReq; N];
                    out.clear();
                    (BytesMut::from(&stream[..]), out)
                },
                |(buf, out)| {
                    while let Some(p) = decode(black_box(buf), *version, MAX).unwrap() {
                        out.push(p);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // The same stream decode, timed by its fastest batch: on a shared machine (the project's has 2 cores for
    // several developers) preemption inflates means, while a 256-packet batch (tens of µs) mostly runs whole
    // inside one time slice. Criterion reports the fastest batch's time for every iteration.
    let mut group = c.benchmark_group("decode_min");
    for (name, (packet, version)) in &cases[..2] {
        let bytes = bytes_of(packet, *version);
        let stream: Vec<u8> = bytes.iter().copied().cycle().take(bytes.len() * N).collect();
        group.throughput(Throughput::Elements(N as u64));
        let mut out = vec![Packet::PingReq; N];
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut best = Duration::MAX;
                for _ in 0..iters {
                    let mut buf = BytesMut::from(&stream[..]);
                    out.clear();
                    let start = Instant::now();
                    while let Some(p) = decode(black_box(&mut buf), *version, MAX).unwrap() {
                        out.push(p);
                    }
                    best = best.min(start.elapsed());
                }
                out.clear();
                best * u32::try_from(iters).unwrap_or(u32::MAX)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (name, (packet, version)) in &cases {
        let len = bytes_of(packet, *version).len();
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = BytesMut::with_capacity(len * 2);
        group.bench_function(*name, |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(packet), *version, &mut buf).unwrap();
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
