//! Throughput of TLS and WebSocket relative to plain TCP: one publisher and one subscriber on the same transport,
//! QoS 0, the publisher at most 5,000 messages ahead of the subscriber. A measurement, not a check: ignored by
//! default; run it in release mode:
//!
//! ```sh
//! cargo test --release -p corvid --test transport_throughput -- --ignored --nocapture
//! ```

mod transport_common;

use bytes::{Bytes, BytesMut};
use corvid::protocol::{Packet, decode};
use corvid::transport::{TlsOptions, WebSocketOptions};
use corvid::{Endpoint, ProtocolVersion, QoS, Server, ServerOptions};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use transport_common::*;

const V: ProtocolVersion = ProtocolVersion::V3_1_1;
const WINDOW: u64 = 5_000;
const BATCH: usize = 100;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Wss(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl Conn {
    async fn open(kind: Kind, addr: SocketAddr, pki: &Pki) -> Self {
        let ws_request = || {
            let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            request
        };
        match kind {
            Kind::Tcp => {
                let s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                Self::Tcp(s)
            }
            Kind::Tls => Self::Tls(Box::new(tls_connect(addr, client_config(&pki.ca, BOTH, None)).await.unwrap())),
            Kind::Ws => {
                let s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                Self::Ws(Box::new(tokio_tungstenite::client_async(ws_request(), s).await.unwrap().0))
            }
            Kind::Wss => {
                let s = tls_connect(addr, client_config(&pki.ca, BOTH, None)).await.unwrap();
                Self::Wss(Box::new(tokio_tungstenite::client_async(ws_request(), s).await.unwrap().0))
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await.unwrap(),
            Self::Tls(s) => {
                s.write_all(bytes).await.unwrap();
                s.flush().await.unwrap();
            }
            Self::Ws(s) => s.send(Message::Binary(Bytes::copy_from_slice(bytes))).await.unwrap(),
            Self::Wss(s) => s.send(Message::Binary(Bytes::copy_from_slice(bytes))).await.unwrap(),
        }
    }

    /// Appends received bytes to `buf`; false when the connection closed.
    async fn recv(&mut self, buf: &mut BytesMut) -> bool {
        let frame = match self {
            Self::Tcp(s) => return s.read_buf(buf).await.unwrap_or(0) > 0,
            Self::Tls(s) => return s.read_buf(buf).await.unwrap_or(0) > 0,
            Self::Ws(s) => s.next().await,
            Self::Wss(s) => s.next().await,
        };
        match frame {
            Some(Ok(Message::Binary(data))) => {
                buf.extend_from_slice(&data);
                true
            }
            Some(Ok(_)) => true,
            _ => false,
        }
    }

    async fn packet(&mut self, buf: &mut BytesMut) -> Packet {
        loop {
            if let Some(p) = decode(buf, V, u32::MAX).unwrap() {
                return p;
            }
            assert!(self.recv(buf).await, "closed");
        }
    }
}

async fn connect(kind: Kind, addr: SocketAddr, pki: &Pki, id: &str) -> (Conn, BytesMut) {
    let mut conn = Conn::open(kind, addr, pki).await;
    let mut buf = BytesMut::new();
    conn.send(&packet_bytes(&connect_packet(V, id), V)).await;
    assert!(matches!(conn.packet(&mut buf).await, Packet::ConnAck(_)));
    (conn, buf)
}

/// Messages per second and payload MB/s delivered from one publisher to one subscriber.
async fn measure(kind: Kind, addr: SocketAddr, pki: &Pki, count: u64, payload: usize) -> (f64, f64) {
    let topic = format!("bench/{kind:?}/{payload}");
    let (mut sub, mut sbuf) = connect(kind, addr, pki, &format!("sub-{kind:?}-{payload}")).await;
    sub.send(&packet_bytes(&subscribe_packet(1, &topic, QoS::AtMostOnce), V)).await;
    assert!(matches!(sub.packet(&mut sbuf).await, Packet::SubAck(_)));
    let (mut publisher, _) = connect(kind, addr, pki, &format!("pub-{kind:?}-{payload}")).await;

    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let reader = tokio::spawn(async move {
        while counter.load(Ordering::Relaxed) < count {
            match decode(&mut sbuf, V, u32::MAX).unwrap() {
                Some(Packet::Publish(_)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
                None => assert!(sub.recv(&mut sbuf).await, "subscriber closed"),
            }
        }
    });
    let body = vec![0x5a_u8; payload];
    let mut batch = BytesMut::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(&packet_bytes(&publish_packet(&topic, &body), V));
    }
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        while sent - received.load(Ordering::Relaxed) > WINDOW {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        publisher.send(&batch).await;
        sent += BATCH as u64;
    }
    tokio::time::timeout(Duration::from_secs(120), reader).await.expect("all delivered").unwrap();
    let secs = started.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    (rate, rate * payload as f64 / 1e6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn transport_throughput() {
    let pki = Pki::new();
    let tls = TlsOptions::pem(&pki.cert_file, &pki.key_file);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let options = ServerOptions::builder()
        .without_default_endpoint()
        .with_sys_interval(None)
        .with_endpoint(Endpoint::Tcp(any))
        .with_endpoint(Endpoint::Tls(any, tls.clone()))
        .with_endpoint(Endpoint::WebSocket(any, WebSocketOptions::default()))
        .with_endpoint(Endpoint::WebSocketTls(any, WebSocketOptions::default(), tls))
        .build();
    let server = Server::start(options).await.unwrap();
    let addrs = server.local_addrs().to_vec();
    let kinds = [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss];
    println!("| payload | transport | msg/s | MB/s | vs TCP |");
    println!("|---|---|---|---|---|");
    for (payload, count) in [(64usize, 300_000u64), (1024, 200_000), (16 * 1024, 30_000)] {
        // Warm-up, then the best of three runs of each transport.
        let mut tcp_rate = 0.0;
        for (kind, addr) in kinds.iter().zip(&addrs) {
            measure(*kind, *addr, &pki, count / 10, payload).await;
            let mut best = (0.0f64, 0.0f64);
            for _ in 0..3 {
                let r = measure(*kind, *addr, &pki, count, payload).await;
                if r.0 > best.0 {
                    best = r;
                }
            }
            if matches!(kind, Kind::Tcp) {
                tcp_rate = best.0;
            }
            println!("| {payload} B | {kind:?} | {:.0} | {:.1} | {:.0} % |", best.0, best.1, 100.0 * best.0 / tcp_rate);
        }
    }
    server.stop().await;
}
