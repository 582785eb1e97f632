//! The cost of the embedding hooks on the publish path.
//!
//! An in-process server on 127.0.0.1:0, one raw TCP MQTT 3.1.1 publisher and one raw TCP subscriber (packets
//! pre-encoded with `corvid_protocol`). One iteration writes a batch of [`BATCH`] QoS 0 PUBLISH packets and waits
//! until the subscriber has read all of them. Two variants: no hooks, and a no-op connection validator, publish
//! interceptor, subscription interceptor and delivery filter.
//!
//! ```text
//! cargo bench -p corvid --bench hooks -- --warm-up-time 2 --measurement-time 5
//! ```

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use bytes::BytesMut;
use corvid::protocol::{Connect, Packet, PacketId, Publish, QoS, Subscribe, SubscriptionOptions, encode};
use corvid::{Endpoint, ProtocolVersion, Server, ServerOptions, ServerOptionsBuilder, TopicFilter, TopicName};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Messages per iteration.
const BATCH: usize = 1000;
/// Payload bytes per message.
const PAYLOAD: usize = 64;
const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn encoded(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, V, &mut buf).expect("encodable");
    buf.to_vec()
}

/// Connects a raw 3.1.1 client and reads its CONNACK.
async fn connect(server: &Server, client_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.local_addrs()[0]).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(&encoded(&Packet::Connect(Box::new(Connect::new(V, client_id.to_owned()))))).await.unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    stream
}

/// A server with its publisher and subscriber, and the batch the publisher sends.
struct Setup {
    _server: Server,
    publisher: TcpStream,
    subscriber: TcpStream,
    batch: Vec<u8>,
    received: Vec<u8>,
}

impl Setup {
    async fn new(builder: ServerOptionsBuilder) -> Self {
        let options = builder
            .without_default_endpoint()
            .with_endpoint(Endpoint::Tcp("127.0.0.1:0".parse().unwrap()))
            .with_sys_interval(None)
            .build();
        let server = Server::start(options).await.expect("server starts");
        let mut subscriber = connect(&server, "bench-sub").await;
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![(TopicFilter::new("bench/topic").unwrap(), SubscriptionOptions::qos(QoS::AtMostOnce))],
            properties: Default::default(),
        };
        subscriber.write_all(&encoded(&Packet::Subscribe(subscribe))).await.unwrap();
        let mut suback = [0u8; 5];
        subscriber.read_exact(&mut suback).await.unwrap();
        assert_eq!(suback, [0x90, 0x03, 0x00, 0x01, 0x00], "SUBACK granted QoS 0");
        let publisher = connect(&server, "bench-pub").await;
        let publish = Publish::new(TopicName::new("bench/topic").unwrap(), vec![b'x'; PAYLOAD], QoS::AtMostOnce);
        let one = encoded(&Packet::Publish(publish));
        let batch = one.repeat(BATCH);
        let received = vec![0; batch.len()];
        let mut setup = Self { _server: server, publisher, subscriber, batch, received };
        // A QoS 0 message reaches a 3.1.1 subscriber exactly as it was published: check once.
        setup.round().await;
        assert!(setup.received == setup.batch, "the subscriber receives the batch as published");
        setup
    }

    /// Sends one batch and waits until the subscriber has it all.
    async fn round(&mut self) {
        let Self { publisher, subscriber, batch, received, .. } = self;
        let (sent, read) = tokio::join!(publisher.write_all(batch), subscriber.read_exact(received));
        sent.expect("publish");
        read.expect("receive");
    }
}

fn no_hooks() -> ServerOptionsBuilder {
    ServerOptions::builder()
}

fn no_op_hooks() -> ServerOptionsBuilder {
    ServerOptions::builder()
        .with_connection_validator(|c| {
            black_box(c);
        })
        .with_publish_interceptor(|c| {
            black_box(c);
        })
        .with_subscription_interceptor(|c| {
            black_box(c);
        })
        .with_delivery_filter(|d| black_box(d).message.qos == QoS::AtMostOnce)
}

fn hooks(c: &mut Criterion) {
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("deliver_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, builder) in [("no_hooks", no_hooks as fn() -> ServerOptionsBuilder), ("no_op_hooks", no_op_hooks)] {
        let rt: Runtime = runtime();
        let mut setup = rt.block_on(Setup::new(builder()));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        setup.round().await;
                    }
                    start.elapsed()
                })
            })
        });
        drop(setup);
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    group.finish();
}

criterion_group!(benches, hooks);
criterion_main!(benches);
