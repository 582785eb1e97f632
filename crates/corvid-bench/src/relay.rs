//! The null relay: the baseline a broker is measured against.
//!
//! It answers CONNECT with CONNACK, SUBSCRIBE with SUBACK (granting the QoS asked for), UNSUBSCRIBE with UNSUBACK
//! and PINGREQ with PINGRESP, and copies every PUBLISH frame verbatim (same bytes, same packet identifier) to each
//! connection with a matching filter, once per connection. Acknowledgements are stateless answers: PUBACK for a
//! QoS 1 PUBLISH; PUBREC for a QoS 2 PUBLISH, PUBCOMP for a PUBREL and PUBREL for a PUBREC (so QoS 2 flows run,
//! without exactly-once bookkeeping). Nothing else: no sessions, no retained messages, no will, no keep-alive,
//! no QoS downgrade, no topic aliases.
//!
//! Each connection has a reader task and a writer task joined by a bounded channel of frames; the reader of a
//! publisher waits when a subscriber's channel is full, so a slow reader slows its publishers (TCP-like
//! backpressure, no buffering policy).

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use corvid_protocol::{
    AckProperties, ConnAck, ConnAckProperties, Packet, ProtocolVersion, ReasonCode, SubAck, UnsubAck, decode,
    decode_frame_length, encode,
};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames queued per connection before its publishers wait.
const CHANNEL_FRAMES: usize = 1024;
/// The largest packet the relay accepts.
const MAX_PACKET: usize = 16 << 20;

type ConnId = u64;

/// A filter trie node.
#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Connections with a filter ending in `#` here.
    multi: Vec<ConnId>,
    /// Connections with a filter ending exactly here.
    exact: Vec<ConnId>,
}

impl Node {
    fn insert(&mut self, filter: &str, conn: ConnId) {
        let (level, rest) = split_level(filter);
        let child = match level {
            "#" => {
                if !self.multi.contains(&conn) {
                    self.multi.push(conn);
                }
                return;
            }
            "+" => self.plus.get_or_insert_with(Box::default),
            _ => self.children.entry(level.into()).or_default(),
        };
        match rest {
            None => {
                if !child.exact.contains(&conn) {
                    child.exact.push(conn);
                }
            }
            Some(rest) => child.insert(rest, conn),
        }
    }

    /// Removes `conn` from `filter`, or from every filter when `filter` is `None`; returns whether the node is
    /// now empty.
    fn remove(&mut self, filter: Option<&str>, conn: ConnId) -> bool {
        match filter.map(split_level) {
            None => {
                self.multi.retain(|&c| c != conn);
                self.exact.retain(|&c| c != conn);
                self.children.retain(|_, child| !child.remove(None, conn));
                if self.plus.as_mut().is_some_and(|p| p.remove(None, conn)) {
                    self.plus = None;
                }
            }
            Some(("#", _)) => self.multi.retain(|&c| c != conn),
            Some((level, rest)) => {
                let child = if level == "+" { self.plus.as_deref_mut() } else { self.children.get_mut(level) };
                let Some(child) = child else {
                    return self.is_empty();
                };
                let empty = match rest {
                    None => {
                        child.exact.retain(|&c| c != conn);
                        child.is_empty()
                    }
                    Some(rest) => child.remove(Some(rest), conn),
                };
                if empty {
                    if level == "+" {
                        self.plus = None;
                    } else {
                        self.children.remove(level);
                    }
                }
            }
        }
        self.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.multi.is_empty() && self.exact.is_empty()
    }

    /// Adds every connection whose filter matches the remaining `topic` levels (`None`: all consumed).
    fn collect(&self, topic: Option<&str>, first: bool, out: &mut Vec<ConnId>) {
        // A topic starting with `$` is not matched by a wildcard in the first level.
        let dollar = first && topic.is_some_and(|t| t.starts_with('$'));
        if !dollar {
            out.extend_from_slice(&self.multi);
        }
        let Some(topic) = topic else {
            out.extend_from_slice(&self.exact);
            return;
        };
        let (level, rest) = split_level(topic);
        if let Some(child) = self.children.get(level) {
            child.collect(rest, false, out);
        }
        if let (Some(plus), false) = (&self.plus, dollar) {
            plus.collect(rest, false, out);
        }
    }
}

fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// The subscriptions and the connections' outgoing channels.
#[derive(Debug, Default)]
struct Router {
    root: Node,
    outgoing: HashMap<ConnId, mpsc::Sender<Bytes>>,
}

/// Serves MQTT clients on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let router = Arc::new(RwLock::new(Router::default()));
    let mut next_id: ConnId = 0;
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let router = Arc::clone(&router);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection(stream, next_id, router) => {}
            }
        });
    }
}

/// Binds `bind` and serves until SIGINT/SIGTERM or `max_run` has passed.
pub async fn run(bind: SocketAddr, max_run: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(bind.ip().is_loopback(), "the relay binds loopback addresses only");
    let listener = TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    println!("relay listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, shutdown.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = tokio::time::sleep(max_run) => eprintln!("relay: stopping after {max_run:?}"),
    }
    shutdown.cancel();
    server.await?
}

async fn connection(stream: TcpStream, id: ConnId, router: Arc<RwLock<Router>>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    let writer = tokio::spawn(write_loop(writer, rx));
    let _ = read_loop(reader, id, tx, &router).await;
    router.write().root.remove(None, id);
    router.write().outgoing.remove(&id);
    let _ = writer.await;
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut frames = Vec::with_capacity(256);
    let mut out = BytesMut::with_capacity(256 * 1024);
    while rx.recv_many(&mut frames, 512).await > 0 {
        for frame in frames.drain(..) {
            out.extend_from_slice(&frame);
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn put_ack(out: &mut BytesMut, first: u8, frame: &[u8], at: usize) {
    out.extend_from_slice(&[first, 2]);
    out.extend_from_slice(frame.get(at..at + 2).unwrap_or(&[0, 1]));
}

async fn read_loop(
    mut reader: OwnedReadHalf,
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
    router: &RwLock<Router>,
) -> anyhow::Result<()> {
    let mut version = ProtocolVersion::V3_1_1;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut replies = BytesMut::with_capacity(4096);
    let mut matched: Vec<ConnId> = Vec::new();
    let mut targets: Vec<mpsc::Sender<Bytes>> = Vec::new();
    loop {
        rbuf.reserve(64 * 1024);
        if reader.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        while let Some((header, remaining)) = decode_frame_length(&rbuf)? {
            let size = header + remaining;
            anyhow::ensure!(size <= MAX_PACKET, "packet of {size} bytes");
            if rbuf.len() < size {
                rbuf.reserve(size - rbuf.len());
                break;
            }
            let frame = rbuf.split_to(size).freeze();
            let body = header;
            match frame[0] >> 4 {
                3 => {
                    let qos = (frame[0] >> 1) & 3;
                    anyhow::ensure!(frame.len() >= body + 2, "truncated PUBLISH");
                    let topic_len = usize::from(u16::from_be_bytes([frame[body], frame[body + 1]]));
                    let topic = frame.get(body + 2..body + 2 + topic_len).context("truncated PUBLISH")?;
                    let topic = std::str::from_utf8(topic)?;
                    {
                        let r = router.read();
                        matched.clear();
                        r.root.collect(Some(topic), true, &mut matched);
                        matched.sort_unstable();
                        matched.dedup();
                        targets.extend(matched.iter().filter_map(|c| r.outgoing.get(c).cloned()));
                    }
                    for target in targets.drain(..) {
                        let _ = target.send(frame.clone()).await;
                    }
                    match qos {
                        1 => put_ack(&mut replies, 0x40, &frame, body + 2 + topic_len),
                        2 => put_ack(&mut replies, 0x50, &frame, body + 2 + topic_len),
                        _ => {}
                    }
                }
                5 => put_ack(&mut replies, 0x62, &frame, body),
                6 => put_ack(&mut replies, 0x70, &frame, body),
                4 | 7 => {}
                12 => replies.extend_from_slice(&[0xD0, 0]),
                14 => return Ok(()),
                1 | 8 | 10 => {
                    let mut buf = BytesMut::from(&frame[..]);
                    let packet = decode(&mut buf, version, MAX_PACKET as u32)?;
                    match packet {
                        Some(Packet::Connect(connect)) => {
                            version = connect.protocol;
                            router.write().outgoing.insert(id, tx.clone());
                            let ack = ConnAck {
                                session_present: false,
                                reason_code: ReasonCode::Success,
                                properties: ConnAckProperties::default(),
                            };
                            encode(&Packet::ConnAck(ack), version, &mut replies)?;
                        }
                        Some(Packet::Subscribe(sub)) => {
                            let mut codes = Vec::with_capacity(sub.filters.len());
                            {
                                let mut r = router.write();
                                for (filter, options) in &sub.filters {
                                    r.root.insert(filter.as_str(), id);
                                    codes.push(match options.qos.as_u8() {
                                        0 => ReasonCode::Success,
                                        1 => ReasonCode::GrantedQoS1,
                                        _ => ReasonCode::GrantedQoS2,
                                    });
                                }
                            }
                            let ack = SubAck {
                                packet_id: sub.packet_id,
                                reason_codes: codes,
                                properties: AckProperties::default(),
                            };
                            encode(&Packet::SubAck(ack), version, &mut replies)?;
                        }
                        Some(Packet::Unsubscribe(unsub)) => {
                            {
                                let mut r = router.write();
                                for filter in &unsub.filters {
                                    r.root.remove(Some(filter.as_str()), id);
                                }
                            }
                            let ack = UnsubAck {
                                packet_id: unsub.packet_id,
                                reason_codes: vec![ReasonCode::Success; unsub.filters.len()],
                                properties: AckProperties::default(),
                            };
                            encode(&Packet::UnsubAck(ack), version, &mut replies)?;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !replies.is_empty() && tx.send(replies.split().freeze()).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(node: &Node, topic: &str) -> Vec<ConnId> {
        let mut out = Vec::new();
        node.collect(Some(topic), true, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn trie_matches_like_the_codec() {
        let filters = ["a/b", "a/+", "a/#", "#", "+/b", "+", "a/b/c/#", "$SYS/#", "/+", "+/+/+"];
        let topics = ["a", "a/b", "a/c", "b", "a/b/c", "a/b/c/d", "$SYS/x", "/x", "x/b", ""];
        let mut root = Node::default();
        for (i, f) in filters.iter().enumerate() {
            root.insert(f, i as ConnId);
        }
        for topic in topics {
            let expected: Vec<ConnId> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| corvid_protocol::topic::matches(f, topic))
                .map(|(i, _)| i as ConnId)
                .collect();
            assert_eq!(matches(&root, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn removal_prunes_the_trie() {
        let mut root = Node::default();
        root.insert("a/+/c", 1);
        root.insert("a/#", 1);
        root.insert("a/b", 2);
        assert_eq!(matches(&root, "a/x/c"), vec![1]);
        root.remove(Some("a/+/c"), 1);
        assert_eq!(matches(&root, "a/x/c"), vec![1]);
        root.remove(Some("a/#"), 1);
        assert!(matches(&root, "a/x/c").is_empty());
        assert_eq!(matches(&root, "a/b"), vec![2]);
        assert!(root.remove(None, 2));
    }
}
